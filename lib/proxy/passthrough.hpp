#pragma once
// TLS passthrough: the client's bytes, TLS and all, relayed to an upstream
// endpoint chosen by SNI, through the one upstream-connection layer (limits
// and counters, no TLS origination).

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/host.hpp"

namespace sluice {
namespace tls {
struct PassthroughTarget;
}

// Relays `down` to an endpoint of `target` until either side closes; `hello`
// (what was read to find the SNI) goes first. `slot` is attached.
asio::awaitable<void> relay(SessionHost& worker, asio::ip::tcp::socket& down, const Snapshot& snap,
                            const tls::PassthroughTarget& target, std::string_view sni,
                            std::vector<uint8_t> hello, ConnectionSlot& slot,
                            const std::string& listener);

}  // namespace sluice
