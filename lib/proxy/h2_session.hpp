#pragma once
// The downstream HTTP/2 connection (h2c with prior knowledge, or h2 chosen
// by ALPN over TLS). Frames go through the codec in lib/http2; each stream's
// request is carried as HTTP/1.1 over a socket pair to the same Session that
// serves HTTP/1 (routing, policies, retries, mirrors, faults, telemetry and
// the access log, which names the protocol HTTP/2), and its HTTP/1.1
// response is parsed back into HTTP/2 frames.
//
// Bounds: the codec gives a stream at most its flow-control window of
// request body before this adapter has written it to the pair and credited
// it back; a stream's response is read from the pair only while less than
// kMaxPendingResponse bytes wait for the client's window.

#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>
#include <cstdint>
#include <string>

#include "tls/server.hpp"

namespace sluice {

class SessionHost;

// A plain listener's connection that may be h2c with prior knowledge: reads
// the first bytes (at most the 24 of the client preface) and hands the
// connection to HTTP/2 or, with those bytes, to the HTTP/1 session.
void start_http_session(SessionHost& worker, asio::ip::tcp::socket socket,
                        const std::string& listener, uint16_t port);

// `preread`: bytes already read off the socket (the preface the listener
// saw when it told h2c from HTTP/1).
void start_h2_session(SessionHost& worker, asio::ip::tcp::socket socket,
                      const std::string& listener, uint16_t port, std::string preread);

// Serves HTTP/2 over an established TLS stream whose ALPN chose "h2".
void start_h2_tls_session(SessionHost& worker, asio::ssl::stream<asio::ip::tcp::socket> stream,
                          const std::string& listener, uint16_t port, tls::DownstreamTls tls);

}  // namespace sluice
