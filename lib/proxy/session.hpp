#pragma once
// The downstream HTTP/1.1 session: one coroutine per connection reads
// requests, routes them, relays them upstream and streams responses back.

#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>
#include <string>

#include "net/loop.hpp"
#include "tls/server.hpp"

namespace sluice {

class SessionHost;

// `idle_since`: for a connection resumed from parking, when it went idle;
// its idle timeout keeps counting from then until a request starts (bytes
// that make no request, such as a partial TLS record, must not restart it).
void start_session(SessionHost& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port, TimePoint idle_since = {});

// Serves HTTP over an established (handshaken) TLS stream.
void start_tls_session(SessionHost& worker, asio::ssl::stream<asio::ip::tcp::socket> stream,
                       const std::string& listener, uint16_t port, tls::DownstreamTls tls,
                       TimePoint idle_since = {});

// Serves HTTP/1 on a plain socket whose first bytes were already read.
void start_session(SessionHost& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port, std::string_view preread);

// Where a request came from when it reaches the session through another
// protocol's stream (one HTTP/2 stream, carried to the session as HTTP/1.1
// over a socket pair): the real connection's addresses and scheme, and the
// protocol the access log names. Routing, policies and telemetry see these.
struct StreamOrigin {
  std::string client_ip;
  std::string client_address;  // "ip:port"
  std::string local_address;   // "ip:port"
  bool tls = false;            // scheme https
  std::string_view protocol = "HTTP/2";
};

// Serves the one request carried over `pipe` (its peer is the protocol
// adapter), as if it came from `origin`.
void start_stream_session(SessionHost& worker, asio::ip::tcp::socket pipe,
                          const std::string& listener, uint16_t port, tls::DownstreamTls tls,
                          StreamOrigin origin);

}  // namespace sluice
