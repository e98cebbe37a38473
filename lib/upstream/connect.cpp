#include "upstream/connect.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

#include "tls/client.hpp"
#include "upstream/balancer.hpp"
#include "upstream/cluster.hpp"
#include "upstream/context.hpp"

namespace sluice {

namespace {

using Timeout = ConnectionSlot::Timeout;

// How often (real time) a request waiting for a connection looks for one
// freed on another worker (releases on its own worker wake it at once).
constexpr auto kPendingPoll = std::chrono::milliseconds(2);

// Takes a place under max_connections; false at the limit.
bool reserve_connection(ClusterState* cluster, uint32_t max) {
  if (!cluster) return true;
  uint64_t cur = cluster->connections.load(std::memory_order_relaxed);
  while (cur < max)
    if (cluster->connections.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed))
      return true;
  return false;
}

// A place under max_connections, making room by closing our own idle pooled
// connections to the upstream (they hold places too).
bool reserve_evicting(UpstreamContext& ctx, ClusterState* cluster, uint32_t max) {
  bool reserved = reserve_connection(cluster, max);
  while (!reserved && ctx.pool().evict_one(cluster)) reserved = reserve_connection(cluster, max);
  return reserved;
}

void set_socket_options(asio::ip::tcp::socket& s, const ConnectionPoolSettings& pool) {
  asio::error_code ignored;
  s.set_option(asio::ip::tcp::no_delay(true), ignored);
  if (!pool.tcp_keepalive) return;
  const TcpKeepalive& ka = *pool.tcp_keepalive;
  int fd = s.native_handle();
  int on = 1;
  int probes = static_cast<int>(ka.probes);
  int idle = static_cast<int>(ka.time.count());
  int interval = static_cast<int>(ka.interval.count());
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  if (probes > 0) ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof(probes));
  if (idle > 0) ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  if (interval > 0) ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
}

Lease::Status failure_status(const ConnectionSlot& slot) {
  if (slot.fired == Timeout::upstream_connect) return Lease::Status::connect_timeout;
  if (slot.fired != Timeout::none) return Lease::Status::cancelled;
  return Lease::Status::connect_failure;
}

// Connects a new connection whose place (when `counted`) is already
// reserved: TCP, socket options, then TLS origination when asked. On failure
// the place is given back.
asio::awaitable<Lease> connect_new(UpstreamContext& ctx, ConnectionSlot& slot,
                                   const CompiledUpstream& upstream, int64_t endpoint, bool counted,
                                   bool originate_tls, std::string_view alpn = {}) {
  const CompiledEndpoint& ep = upstream.endpoints[endpoint];
  const auto& pool = upstream.config.pool;
  // Held across the awaits: a reload may drop the balancer's caches.
  std::shared_ptr<ClusterState> cluster = counted ? upstream.state : nullptr;
  std::shared_ptr<EndpointState> ep_state =
      counted ? ctx.balancer().endpoint_state(upstream, endpoint) : nullptr;
  Lease lease;
  // A failed connect or handshake gives its place back for a waiter.
  auto failed = [&] {
    slot.upstream = nullptr;
    slot.clear_deadline();
    if (cluster) cluster->connections.fetch_sub(1, std::memory_order_relaxed);
    ctx.balancer().wake_one();
    lease.status = failure_status(slot);
    return std::move(lease);
  };

  auto conn = std::make_unique<UpstreamConnection>(asio::ip::tcp::socket(ctx.context()));
  slot.upstream = &conn->socket;
  slot.fired = Timeout::none;
  slot.set_deadline(Timeout::upstream_connect, pool.connect_timeout);
  auto [ec] = co_await conn->socket.async_connect(ep.address, kNoThrow);
  if (ec) co_return failed();
  set_socket_options(conn->socket, pool);
  if (originate_tls && upstream.tls) {
    // The handshake shares the connect deadline.
    conn->tls = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(
        conn->socket, upstream.tls->context());
    if (!alpn.empty())
      SSL_set_alpn_protos(conn->tls->native_handle(), reinterpret_cast<const uint8_t*>(alpn.data()),
                          alpn.size());
    std::error_code hs = co_await tls::handshake_client(*conn->tls, *upstream.tls, "");
    if (hs) co_return failed();
  }
  slot.upstream = nullptr;
  slot.clear_deadline();
  conn->endpoint_key = ep.pool_key;
  conn->cluster = std::move(cluster);  // already counted by the reservation
  if (ep_state) {
    ep_state->connections.fetch_add(1, std::memory_order_relaxed);
    conn->endpoint = std::move(ep_state);
  }
  lease.conn = std::move(conn);
  lease.status = Lease::Status::ok;
  co_return lease;
}

}  // namespace

bool lease_pooled(UpstreamContext& ctx, ConnectionSlot& slot, const CompiledUpstream& upstream,
                  int64_t endpoint, Lease& out) {
  if (upstream.config.protocol == UpstreamProtocol::http2) return false;
  auto conn = ctx.pool().take(upstream.endpoints[endpoint].pool_key,
                              upstream.config.pool.idle_timeout, ctx.loop().now());
  if (!conn) return false;
  slot.fired = Timeout::none;
  out.conn = std::move(conn);
  out.reused = true;
  out.status = Lease::Status::ok;
  return true;
}

asio::awaitable<Lease> lease_connection(UpstreamContext& ctx, ConnectionSlot& slot,
                                        const CompiledUpstream& upstream, int64_t endpoint) {
  const CompiledEndpoint& ep = upstream.endpoints[endpoint];
  const auto& pool = upstream.config.pool;
  std::shared_ptr<ClusterState> cluster = upstream.state;
  // HTTP/2: a stream on a multiplexed connection, as a socket pair.
  if (upstream.config.protocol == UpstreamProtocol::http2)
    co_return co_await ctx.h2().lease(ctx, slot, upstream, endpoint);
  Lease lease;
  if (lease_pooled(ctx, slot, upstream, endpoint, lease)) co_return lease;
  slot.fired = Timeout::none;
  Loop& loop = ctx.loop();

  if (!reserve_connection(cluster.get(), pool.max_connections)) {
    // Circuit breaking: at max_connections a request may wait as one of
    // max_pending_requests (across workers); beyond that it overflows.
    uint64_t pending = cluster->pending_requests.fetch_add(1, std::memory_order_relaxed);
    if (pending >= pool.max_pending_requests) {
      cluster->pending_requests.fetch_sub(1, std::memory_order_relaxed);
      cluster->overflows.fetch_add(1, std::memory_order_relaxed);
      lease.status = Lease::Status::overflow;
      co_return lease;
    }
    ctx.pool().sweep(pool.idle_timeout, cluster.get(), loop.now());
    // The wait is bounded by connect_timeout on the gateway's clock.
    auto give_up = loop.clock_now() + pool.connect_timeout;
    ClockTimer timer(loop);
    bool reserved = false;
    for (;;) {
      if ((lease.conn = ctx.pool().take(ep.pool_key, pool.idle_timeout, loop.now()))) break;
      if ((reserved = reserve_evicting(ctx, cluster.get(), pool.max_connections))) break;
      if (slot.fired != Timeout::none || loop.clock_now() >= give_up) break;
      ctx.balancer().add_waiter(&timer);
      co_await timer.wait_once(give_up, kPendingPoll);
      ctx.balancer().remove_waiter(&timer);
    }
    cluster->pending_requests.fetch_sub(1, std::memory_order_relaxed);
    if (lease.conn) {
      lease.reused = true;
      lease.status = Lease::Status::ok;
      co_return lease;
    }
    if (!reserved) {
      if (slot.fired != Timeout::none) {
        lease.status = Lease::Status::cancelled;
      } else {
        cluster->overflows.fetch_add(1, std::memory_order_relaxed);
        lease.status = Lease::Status::overflow;
      }
      co_return lease;
    }
  }
  co_return co_await connect_new(ctx, slot, upstream, endpoint, true, true);
}

void release_connection(UpstreamContext& ctx, const CompiledUpstream& upstream,
                        std::unique_ptr<UpstreamConnection> conn, bool reusable) {
  if (!conn) return;
  const auto& pool = upstream.config.pool;
  if (reusable && !conn->h2 &&
      (pool.max_requests_per_connection == 0 || conn->requests < pool.max_requests_per_connection))
    ctx.pool().put(std::move(conn), pool.max_idle_per_endpoint, ctx.loop().now());
  conn.reset();
  // A place (or a pooled connection) is free: the oldest waiter looks first.
  ctx.balancer().wake_one();
}

asio::awaitable<Lease> open_connection(UpstreamContext& ctx, ConnectionSlot& slot,
                                       const CompiledUpstream& upstream, int64_t endpoint,
                                       ConnectOptions options) {
  if (!options.raw && upstream.config.protocol == UpstreamProtocol::http2)
    co_return co_await ctx.h2().lease(ctx, slot, upstream, endpoint, options.limited);
  if (options.limited &&
      !reserve_evicting(ctx, upstream.state.get(), upstream.config.pool.max_connections)) {
    upstream.state->overflows.fetch_add(1, std::memory_order_relaxed);
    Lease lease;
    lease.status = Lease::Status::overflow;
    co_return lease;
  }
  co_return co_await connect_new(ctx, slot, upstream, endpoint, options.limited,
                                 options.originate_tls, options.alpn);
}

}  // namespace sluice
