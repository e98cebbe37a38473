#pragma once
// The downstream side of a listener with TLS: reads the ClientHello when it
// must route by SNI, then relays it raw (PASSTHROUGH, proxy/passthrough) or
// terminates it and hands the stream to the HTTP session.

#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>

namespace sluice {

class Worker;
class Snapshot;
struct CompiledListener;

// Takes over a freshly accepted connection on a listener with TLS
// (CompiledListener::tls set). Holds `snapshot` until the handshake ends
// or the relay finishes.
void accept_tls(Worker& worker, asio::ip::tcp::socket socket,
                std::shared_ptr<const Snapshot> snapshot, const CompiledListener& listener,
                uint16_t port);

}  // namespace sluice
