#pragma once
// The downstream HTTP/1.1 session: one coroutine per connection reads
// requests, routes them, relays them upstream and streams responses back.

#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>
#include <string>

namespace sluice {

class Worker;

void start_session(Worker& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port);

// What a finished TLS handshake tells the HTTP layer.
struct DownstreamTls {
  std::string sni;
  std::string peer_identity;  // see RequestContext::peer_identity
  std::string xfcc;           // x-forwarded-client-cert value (Envoy format); empty: none
};

// Serves HTTP over an established (handshaken) TLS stream.
void start_tls_session(Worker& worker, asio::ssl::stream<asio::ip::tcp::socket> stream,
                       const std::string& listener, uint16_t port, DownstreamTls tls);

}  // namespace sluice
