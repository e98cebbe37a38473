#pragma once
// Connections relayed as bytes, through the one upstream-connection layer
// (limits, counters) and the one relay (proxy/tunnel.hpp): TLS passthrough
// (the client's TLS goes through, endpoint chosen by SNI) and TCP routes
// (Istio `tcp:` routes on TCP servers, or on TLS servers after termination).

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/host.hpp"
#include "tls/server.hpp"

namespace sluice {

// Relays `down` to an endpoint of `target` until either side closes; `hello`
// (what was read to find the SNI) goes first. `slot` is attached.
asio::awaitable<void> relay(SessionHost& worker, asio::ip::tcp::socket& down, const Snapshot& snap,
                            const tls::PassthroughTarget& target, std::string_view sni,
                            std::vector<uint8_t> hello, ConnectionSlot& slot,
                            const std::string& listener);

// Serves a connection on a listener with TCP routes: the first route whose
// source ranges hold the client, one of its destinations by weight (the
// worker's RNG), an endpoint by the upstream's balancer, then the relay.
// One access-log line when it ends. The session owns the stream.
void start_tcp_session(SessionHost& worker, asio::ip::tcp::socket socket,
                       const std::string& listener, uint16_t port);
void start_tcp_session(SessionHost& worker, asio::ssl::stream<asio::ip::tcp::socket> stream,
                       const std::string& listener, uint16_t port, tls::DownstreamTls tls);

// The TCP route for a client address (IPv4-mapped addresses as IPv4); null
// when none matches.
const CompiledTcpRoute* match_tcp_route(const CompiledListener& listener,
                                        std::string_view client_ip);

}  // namespace sluice
