#pragma once
// The downstream HTTP/1.1 session: one coroutine per connection reads
// requests, routes them, relays them upstream and streams responses back.

#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>
#include <string>

#include "tls/server.hpp"

namespace sluice {

class SessionHost;

void start_session(SessionHost& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port);

// Serves HTTP over an established (handshaken) TLS stream.
void start_tls_session(SessionHost& worker, asio::ssl::stream<asio::ip::tcp::socket> stream,
                       const std::string& listener, uint16_t port, tls::DownstreamTls tls);

}  // namespace sluice
