#include "proxy/passthrough.hpp"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "http/random.hpp"
#include "http/tokens.hpp"
#include "proxy/access_log.hpp"
#include "proxy/tunnel.hpp"
#include "upstream/cluster.hpp"
#include "upstream/connect.hpp"

namespace sluice {

namespace {

using asio::awaitable;
using asio::ip::tcp;
using Timeout = ConnectionSlot::Timeout;
using Flag = ResponseFlag;
using tunnel_detail::close_socket;

// How one relayed connection went, for its log line and its metrics.
struct Relayed {
  TunnelBytes bytes;
  ResponseFlags flags;
  std::string_view upstream;  // the upstream's name; empty before one was chosen
  std::string_view endpoint;  // "ip:port"; empty when none was picked
  bool opened = false;        // counted in istio_tcp_connections_opened_total
};

struct RelayTarget {
  uint32_t upstream = 0;
  uint32_t set = 0;
  const telemetry::DestinationLabels* labels = nullptr;  // of its TCP series
  std::string_view authority;                            // for hash policies: the SNI, if any
  bool originate_tls = true;       // passthrough carries the client's own TLS: false
  std::span<const uint8_t> first;  // sent before the client's bytes
  std::string_view what;           // for messages: "passthrough for \"sni\"", "tcp route r"
};

// Istio's TCP series: a connection that relays is opened when its relay
// starts, so a scrape sees it while it lasts, and its bytes count as they
// move (the series of the relay, flags "-"). It is closed under the flags
// it ended with; one that never relayed (NR, UH, UF, UO) is opened then too.
telemetry::TcpCounters* open_series(SessionHost& worker,
                                    const telemetry::DestinationLabels* labels) {
  if (!worker.metrics_on()) return nullptr;
  telemetry::TcpCounters& c = worker.tcp_metrics().find_or_add({labels, {}});
  telemetry::add_single_writer(c.opened, 1);
  return &c;
}

void close_series(SessionHost& worker, const telemetry::DestinationLabels* labels,
                  const Relayed& relayed) {
  if (!worker.metrics_on()) return;
  telemetry::TcpCounters& c = worker.tcp_metrics().find_or_add({labels, relayed.flags});
  if (!relayed.opened) telemetry::add_single_writer(c.opened, 1);
  telemetry::add_single_writer(c.closed, 1);
}

// An endpoint of the target's set, a connection to it through the one
// upstream-connection layer (counted within max_connections like a pooled
// one, never pooled), then the relay until either side ends.
template <typename Down>
awaitable<Relayed> relay_to(SessionHost& worker, Down& down, const Snapshot& snap,
                            const RelayTarget& target, ConnectionSlot& slot,
                            const std::string& listener, const std::string& client_ip) {
  Relayed out;
  const CompiledUpstream& up = snap.upstreams[target.upstream];
  out.upstream = up.config.name;
  RequestHead head;
  head.authority = std::string(target.authority);
  PickRequest request{&head, client_ip, {}, false};
  PickResult pick = pick_endpoint(worker.upstream(), up, up.sets[target.set], request);
  if (pick.endpoint < 0) {
    worker.log(LogLevel::warning, "listener {}: {}: no healthy endpoint in {}", listener,
               target.what, up.config.name);
    out.flags.add(Flag::no_healthy_upstream);
    co_return out;
  }
  out.endpoint = up.endpoints[pick.endpoint].key;
  ConnectOptions options{.originate_tls = target.originate_tls, .raw = true};
  Lease lease = co_await open_connection(worker.upstream(), slot, up, pick.endpoint, options);
  if (!lease.conn) {
    bool overflow = lease.status == Lease::Status::overflow;
    worker.log(LogLevel::warning, "listener {}: {}: {} to {}", listener, target.what,
               overflow ? "at max_connections" : "connect failed", out.endpoint);
    out.flags.add(overflow ? Flag::upstream_overflow : Flag::upstream_connection_failure);
    co_return out;
  }
  std::unique_ptr<UpstreamConnection> conn = std::move(lease.conn);
  slot.upstream = &conn->socket;
  telemetry::TcpCounters* live = open_series(worker, target.labels);
  out.opened = live != nullptr;
  auto idle = snap.limits.idle_timeout;  // Envoy's tcp_proxy idle_timeout (Istio: 1 h)
  bool ok = true;
  uint64_t first_bytes = 0;  // the client's, read before the relay (a ClientHello)
  if (!target.first.empty()) {
    slot.set_deadline(Timeout::io, idle);
    asio::const_buffer first(target.first.data(), target.first.size());
    asio::error_code ec;
    std::tie(ec, first_bytes) = co_await write_upstream(*conn, first);
    ok = !ec;
    if (live) telemetry::add_single_writer(live->received_bytes, first_bytes);
  }
  if (ok) {
    slot.fired = Timeout::none;
    out.bytes = co_await splice(worker, down, *conn, slot, idle, live);
    if (slot.fired == Timeout::io) out.flags.add(Flag::stream_idle_timeout);
  }
  out.bytes.received += first_bytes;
  slot.upstream = nullptr;
  close_socket(conn->socket);
  conn.reset();
  // A place under max_connections is free for a waiting request.
  worker.upstream().balancer().wake_one();
  co_return out;
}

template <typename Stream>
std::string address_of(Stream& s, bool local) {
  asio::error_code ec;
  auto ep = local ? s.lowest_layer().local_endpoint(ec) : s.lowest_layer().remote_endpoint(ec);
  return ec ? std::string() : http::join_host_port(ep.address().to_string(), ep.port());
}

// Where a relayed connection came from, read before its socket closes.
struct RelayOrigin {
  std::string client;  // "ip:port"
  std::string local;   // "ip:port"
  std::string_view sni;
  std::string_view peer_identity;
  std::string_view route;
};

// One access-log line per relayed connection (TCP routes and passthrough),
// as Envoy's tcp_proxy writes: no protocol, method or path.
void log_relayed(SessionHost& worker, const Snapshot& snap, Clock::time_point started,
                 const RelayOrigin& origin, const Relayed& relayed) {
  if (!snap.access_logs) return;
  auto duration =
      std::chrono::duration_cast<std::chrono::microseconds>(worker.clock_now() - started);
  telemetry::LogRecord r;
  r.start_time = worker.wall_now() - duration;
  r.protocol = "";
  r.response_flags = relayed.flags;
  r.bytes_received = relayed.bytes.received;
  r.bytes_sent = relayed.bytes.sent;
  r.duration = duration;
  r.upstream_host = relayed.endpoint;
  r.upstream_cluster = relayed.upstream;
  r.downstream_local_address = origin.local;
  r.downstream_remote_address = origin.client;
  r.downstream_peer_uri_san = origin.peer_identity;
  r.requested_server_name = origin.sni;
  r.route_name = origin.route;
  write_access_logs(worker, *snap.access_logs, r);
}

}  // namespace

awaitable<void> relay(SessionHost& worker, tcp::socket& down, const Snapshot& snap,
                      const tls::PassthroughTarget& target, std::string_view sni,
                      std::vector<uint8_t> hello, ConnectionSlot& slot,
                      const std::string& listener) {
  auto started = worker.refresh_now();
  RelayOrigin origin{address_of(down, false), address_of(down, true), sni};
  std::string client_ip(http::split_host_port(origin.client).host);
  std::string what = fmt::format("passthrough for \"{}\"", sni);
  const CompiledListener* l = snap.listener(listener);
  bool labelled = l && target.route < l->passthrough_labels.size();
  // What read_client_hello took off the socket goes first.
  RelayTarget to{.upstream = target.upstream,
                 .set = target.set,
                 .labels = labelled ? l->passthrough_labels[target.route] : nullptr,
                 .authority = sni,
                 .originate_tls = false,
                 .first = hello,
                 .what = what};
  Relayed relayed = co_await relay_to(worker, down, snap, to, slot, listener, client_ip);
  close_socket(down);
  close_series(worker, to.labels, relayed);
  log_relayed(worker, snap, started, origin, relayed);
}

const CompiledTcpRoute* match_tcp_route(const CompiledListener& listener,
                                        std::string_view client_ip) {
  auto ip = security::IpAddress::parse(client_ip);
  security::IpAddress address = ip ? ip->unmapped() : security::IpAddress{};
  for (const auto& route : listener.tcp) {
    if (route.sources.empty()) return &route;
    for (const auto& cidr : route.sources)
      if (cidr.contains(address)) return &route;
  }
  return nullptr;
}

namespace {

// One connection on a TCP listener, from accept (or the TLS handshake) to close.
template <typename Stream>
awaitable<void> serve_tcp(SessionHost& worker, Stream& stream, std::string listener,
                          tls::DownstreamTls tls) {
  ConnectionSlot slot(&stream.lowest_layer());
  slot.counters = worker.listener_counters(listener);
  worker.attach(&slot);
  struct Detach {
    SessionHost& worker;
    ConnectionSlot& slot;
    ~Detach() { worker.detach(&slot); }
  } detach{worker, slot};
  auto started = worker.refresh_now();
  std::shared_ptr<const Snapshot> snap = worker.snapshot();
  const CompiledListener* l = snap ? snap->listener(listener) : nullptr;
  RelayOrigin origin{address_of(stream, false), address_of(stream, true), tls.sni,
                     tls.peer_identity};
  std::string client_ip(http::split_host_port(origin.client).host);
  Relayed relayed;
  const CompiledTcpRoute* route = l ? match_tcp_route(*l, client_ip) : nullptr;
  const ResolvedDestination* dest = nullptr;
  if (route && route->total_weight > 0) {
    uint64_t r = http::draw_below(worker.rng(), route->total_weight);
    for (const auto& d : route->destinations) {
      if (r < d.weight) {
        dest = &d;
        break;
      }
      r -= d.weight;
    }
  }
  if (!route) {
    relayed.flags.add(Flag::no_route_found);
  } else if (!dest) {
    relayed.flags.add(Flag::no_healthy_upstream);
  } else {
    std::string what = fmt::format("tcp route \"{}\"", route->name);
    RelayTarget to{.upstream = dest->upstream,
                   .set = dest->set,
                   .labels = dest->labels,
                   .authority = tls.sni,
                   .what = what};
    relayed = co_await relay_to(worker, stream, *snap, to, slot, listener, client_ip);
  }
  close_socket(stream.lowest_layer());
  close_series(worker, dest ? dest->labels : nullptr, relayed);
  if (route) origin.route = route->name;
  if (snap) log_relayed(worker, *snap, started, origin, relayed);
}

template <typename Stream>
void spawn_tcp(SessionHost& worker, Stream stream, const std::string& listener,
               tls::DownstreamTls tls) {
  auto owned = std::make_unique<Stream>(std::move(stream));
  Stream& s = *owned;
  asio::co_spawn(worker.context(), serve_tcp(worker, s, listener, std::move(tls)),
                 [owned = std::move(owned)](std::exception_ptr) mutable { owned.reset(); });
}

}  // namespace

void start_tcp_session(SessionHost& worker, tcp::socket socket, const std::string& listener,
                       uint16_t) {
  spawn_tcp(worker, std::move(socket), listener, tls::DownstreamTls{});
}

void start_tcp_session(SessionHost& worker, asio::ssl::stream<tcp::socket> stream,
                       const std::string& listener, uint16_t, tls::DownstreamTls tls) {
  spawn_tcp(worker, std::move(stream), listener, std::move(tls));
}

}  // namespace sluice
