#pragma once
// The one way bytes leave for an upstream. Proxied requests, mirrors, health
// probes and passthrough relays all connect here, so connecting, TLS
// origination, circuit-breaker accounting, the open-connection counters and
// pooling live in one place. Pools are keyed by upstream, endpoint and TLS
// settings (CompiledEndpoint::pool_key), never by address alone.

#include <asio/awaitable.hpp>
#include <asio/buffer.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/read.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <cstdint>
#include <memory>
#include <string_view>
#include <tuple>

#include "upstream/pool.hpp"

namespace sluice {

struct CompiledUpstream;
struct ConnectionSlot;
class UpstreamContext;

struct Lease {
  enum class Status { ok, connect_failure, connect_timeout, overflow, cancelled };
  Status status = Status::connect_failure;
  std::unique_ptr<UpstreamConnection> conn;
  bool reused = false;
};

// A pooled or new connection to `endpoint`, within the upstream's limits:
// at max_connections the request waits (at most connect_timeout) as one of
// max_pending_requests; beyond that, or when the wait ends, Status::overflow.
// Uses `slot` for the connect deadline (Timeout::upstream_connect) and for
// cancellation (slot.upstream is the socket while it connects).
asio::awaitable<Lease> lease_connection(UpstreamContext& ctx, ConnectionSlot& slot,
                                        const CompiledUpstream& upstream, int64_t endpoint);
// lease_connection's common case without a coroutine frame: an idle pooled
// HTTP/1 connection to `endpoint`, as lease_connection would hand it out.
// False (and `out` untouched) when there is none: then lease_connection.
bool lease_pooled(UpstreamContext& ctx, ConnectionSlot& slot, const CompiledUpstream& upstream,
                  int64_t endpoint, Lease& out);
// Back to the pool when `reusable` (and the upstream's per-connection request
// limit allows), else closed; either way a waiter may proceed.
void release_connection(UpstreamContext& ctx, const CompiledUpstream& upstream,
                        std::unique_ptr<UpstreamConnection> conn, bool reusable);

struct ConnectOptions {
  // Counted against max_connections and refused (Status::overflow, no
  // waiting) when it is reached. Health probes are not: traffic that fills
  // the pool must not make its own endpoints look dead.
  bool limited = true;
  // TLS origination when the upstream has it. A passthrough relay carries
  // the client's own TLS, so it connects raw.
  bool originate_tls = true;
  // ALPN offered when TLS is originated ("\x02h2" for HTTP/2); empty: none.
  std::string_view alpn;
  // A TCP connection even to an HTTP/2 upstream: passthrough relays carry
  // the client's bytes as they are (as Envoy's tcp_proxy ignores a cluster's
  // HTTP/2 options), and the multiplexer opens its connections here.
  bool raw = false;
};

// A connection of its own (never pooled; destroying it closes it), made
// the same way lease_connection makes a new one. To an HTTP/2 upstream
// (unless `raw`) it is a stream of the multiplexer, as lease_connection
// gives, so mirrors and health probes speak HTTP/1.1 on it like on any
// connection; its request's `connection: close` ends the pair after the
// response. Unlimited ones ride connections of their own, outside
// max_connections and max_requests.
asio::awaitable<Lease> open_connection(UpstreamContext& ctx, ConnectionSlot& slot,
                                       const CompiledUpstream& upstream, int64_t endpoint,
                                       ConnectOptions options = {});

// Reads and writes on a connection, through its TLS stream when it has one.
// Not coroutines themselves: they hand back the operation's awaitable (it
// starts when awaited and holds a copy of the buffer sequence), which saves
// a coroutine frame and a resumption per call on every request.
inline constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);

template <typename Buffers>
asio::awaitable<std::tuple<asio::error_code, size_t>> write_upstream(UpstreamConnection& c,
                                                                     const Buffers& buffers) {
  if (c.tls) return asio::async_write(*c.tls, buffers, kNoThrow);
  return asio::async_write(c.socket, buffers, kNoThrow);
}

inline asio::awaitable<std::tuple<asio::error_code, size_t>> read_upstream(
    UpstreamConnection& c, asio::mutable_buffer buffer) {
  if (c.tls) return c.tls->async_read_some(buffer, kNoThrow);
  return c.socket.async_read_some(buffer, kNoThrow);
}

}  // namespace sluice
