#pragma once
// The downstream side of a TLS listener: PASSTHROUGH by SNI (raw relay to
// an upstream) or termination (handshake, then the HTTP session).

#include <asio/ip/tcp.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace sluice {
class Worker;
class Snapshot;
struct CompiledListener;
struct DownstreamTls;
}  // namespace sluice

namespace asio::ssl {
template <typename>
class stream;
}

namespace sluice::tls {

// Takes over a freshly accepted connection on a listener with TLS
// (CompiledListener::tls set). Holds `snapshot` until the handshake ends
// or the relay finishes.
void accept(Worker& worker, asio::ip::tcp::socket socket, std::shared_ptr<const Snapshot> snapshot,
            const CompiledListener& listener, uint16_t port);

// What the HTTP layer learns from a finished server handshake.
DownstreamTls downstream_info(asio::ssl::stream<asio::ip::tcp::socket>& stream);

}  // namespace sluice::tls
