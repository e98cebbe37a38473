#pragma once
// The one bidirectional byte relay: an HTTP/1.1 connection after a 101
// (WebSocket and other allowed upgrades), a TCP route's connection and a TLS
// passthrough connection all end here. Bytes go both ways until either side
// closes; the connection slot's idle deadline bounds every wait, and the
// worker's drain and force-close reach it through the slot like any request.

#include <asio/awaitable.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "net/loop.hpp"
#include "sluice/request.hpp"
#include "telemetry/metrics.hpp"
#include "upstream/connect.hpp"

namespace sluice {

// What an `Upgrade` request asks for, decided before routing.
struct UpgradeDecision {
  enum class Verdict {
    none,      // no upgrade asked for
    allowed,   // tunnel after a 101: `token` names the protocol
    refused,   // a type not in the allowed list (403 upgrade_failed)
    has_body,  // an upgrade request with a body: refused (smuggling)
  };
  Verdict verdict = Verdict::none;
  std::string token;  // lower case
};

// `parser_upgrade`: the parser saw `Connection: upgrade` with an `Upgrade`
// header. One `Upgrade` header naming one protocol is accepted when that
// protocol (without a "/version") is in `allowed` (compared without case);
// a list of protocols, several headers or a body are refused.
UpgradeDecision decide_upgrade(const Headers& headers, bool parser_upgrade, bool body_expected,
                               std::span<const std::string> allowed);

// Bytes carried by a tunnel: `received` from the client, `sent` to it.
struct TunnelBytes {
  uint64_t received = 0;
  uint64_t sent = 0;
};

namespace tunnel_detail {

using ReadResult = std::tuple<asio::error_code, size_t>;

template <typename S>
asio::awaitable<ReadResult> read_some(S& s, asio::mutable_buffer b) {
  co_return co_await s.async_read_some(b, kNoThrow);
}
// Coroutines themselves, not forwarders: write_upstream keeps a reference
// to its buffer, which must live in a frame until the write ends.
inline asio::awaitable<ReadResult> read_some(UpstreamConnection& c, asio::mutable_buffer b) {
  co_return co_await read_upstream(c, b);
}
template <typename S>
asio::awaitable<ReadResult> write_all(S& s, asio::const_buffer b) {
  co_return co_await asio::async_write(s, b, kNoThrow);
}
inline asio::awaitable<ReadResult> write_all(UpstreamConnection& c, asio::const_buffer b) {
  co_return co_await write_upstream(c, b);
}

void close_socket(asio::ip::tcp::socket::lowest_layer_type& s);
template <typename S>
void close(S& s) {
  close_socket(s.lowest_layer());
}
inline void close(UpstreamConnection& c) {
  close_socket(c.socket);
}

// Passes an EOF on as a half-close where the transport has one (plain TCP);
// over TLS (either side) the tunnel ends instead: false.
template <typename S>
bool half_close(S& s) {
  if constexpr (std::is_same_v<S, asio::ip::tcp::socket>) {
    asio::error_code ignored;
    s.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    return true;
  } else {
    return false;
  }
}
inline bool half_close(UpstreamConnection& c) {
  if (c.tls) return false;
  return half_close(c.socket);
}

// One direction until EOF (passed on as a half-close) or an error (which
// closes both sides, ending the other direction too). What is written adds
// to `count` and, when there is one, to the `live` counter a scrape reads.
template <typename From, typename To>
asio::awaitable<void> pump(Loop& loop, From& from, To& to, ConnectionSlot& slot,
                           std::chrono::milliseconds idle, uint64_t& count,
                           std::atomic<uint64_t>* live) {
  IoBuffer buf = loop.take_buffer();
  // Named locals, no structured bindings or temporaries across the awaits
  // (GCC 12 misplaces them in the coroutine frame).
  asio::mutable_buffer space(buf.get(), Loop::kBufferSize);
  for (;;) {
    asio::error_code ec;
    size_t n = 0;
    std::tie(ec, n) = co_await read_some(from, space);
    if (ec == asio::error::eof && half_close(to)) break;
    if (!ec) {
      slot.set_deadline(ConnectionSlot::Timeout::io, idle);
      asio::const_buffer data(buf.get(), n);
      size_t written = 0;
      std::tie(ec, written) = co_await write_all(to, data);
      count += written;
      if (live) telemetry::add_single_writer(*live, written);
      slot.set_deadline(ConnectionSlot::Timeout::io, idle);
    }
    if (ec) {
      close(from);
      close(to);
      break;
    }
  }
  loop.give_buffer(std::move(buf));
}

}  // namespace tunnel_detail

// Relays `down` <-> `up` until both directions end. The caller attached
// `slot` with slot.socket on `down` and slot.upstream on `up`'s socket, so the
// idle deadline (`idle`, 0: none) and a drain's force-close interrupt both
// directions. Neither side is closed cleanly on return: the caller closes.
// `live`: the TCP series that counts the bytes as they move (TCP routes and
// passthrough; an HTTP upgrade's are its request's and it has none).
template <typename Down>
asio::awaitable<TunnelBytes> splice(Loop& loop, Down& down, UpstreamConnection& up,
                                    ConnectionSlot& slot, std::chrono::milliseconds idle,
                                    telemetry::TcpCounters* live = nullptr) {
  using namespace asio::experimental::awaitable_operators;
  TunnelBytes bytes;
  slot.idle = false;  // a drain waits for it, bounded by the drain timeout
  slot.set_deadline(ConnectionSlot::Timeout::io, idle);
  co_await (tunnel_detail::pump(loop, down, up, slot, idle, bytes.received,
                                live ? &live->received_bytes : nullptr) &&
            tunnel_detail::pump(loop, up, down, slot, idle, bytes.sent,
                                live ? &live->sent_bytes : nullptr));
  slot.clear_deadline();
  co_return bytes;
}

}  // namespace sluice
