// Gateway: the control side. Compiles configs, binds listener sockets, posts
// snapshots and acceptors to workers, drains on stop.

#include "sluice/gateway.hpp"

#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "config/snapshot.hpp"
#include "http/path.hpp"
#include "proxy/security_filter.hpp"
#include "runtime/jwks_fetcher.hpp"
#include "runtime/worker.hpp"
#include "telemetry/metrics.hpp"
#include "upstream/cluster.hpp"

namespace sluice {

namespace {

// The writers `snap`'s access logs need, by path: the running ones where
// the path stays (or the snapshot's own, applied again), new ones opened
// now. A file that cannot be opened fails the apply; the writers of paths
// no log names any more close when the last snapshot using them goes.
using LogWriters = std::map<std::string, std::shared_ptr<telemetry::LogWriter>>;
Result<LogWriters> open_log_writers(const Snapshot& snap, const LogWriters& running,
                                    size_t workers) {
  LogWriters next;
  if (!snap.access_logs) return next;
  for (const auto& log : snap.access_logs->logs) {
    if (next.count(log.path)) continue;
    if (log.writer) {
      next.emplace(log.path, log.writer);
    } else if (auto it = running.find(log.path); it != running.end()) {
      next.emplace(log.path, it->second);
    } else {
      auto w = telemetry::LogWriter::open(
          log.path, {.shards = workers, .flush_interval = snap.access_logs->flush_interval},
          "access log");
      if (!w) return w.error();
      next.emplace(log.path, std::move(w).value());
    }
  }
  return next;
}

// Binds `count` SO_REUSEPORT sockets to one address and port; port 0 binds the
// first to an ephemeral port and the rest to the same one.
Result<std::vector<int>> bind_listener(const ListenerConfig& cfg, size_t count, uint16_t& port) {
  asio::error_code ec;
  auto addr = asio::ip::make_address(cfg.address, ec);
  std::vector<int> fds;
  auto fail = [&](const char* what) -> Result<std::vector<int>> {
    int err = errno;
    for (int fd : fds) ::close(fd);
    return Error{"Listener " + cfg.name, "port",
                 fmt::format("cannot {} {}:{}: {}", what, cfg.address, port, std::strerror(err))};
  };
  port = cfg.port;
  for (size_t i = 0; i < count; ++i) {
    asio::ip::tcp::endpoint ep(addr, port);
    int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("create socket for");
    fds.push_back(fd);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (::bind(fd, ep.data(), ep.size()) != 0) return fail("bind");
    if (::listen(fd, 1024) != 0) return fail("listen on");
    if (port == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof(ss);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    }
  }
  return fds;
}

uint64_t seed_for(uint64_t seed, size_t worker) {
  if (seed == 0) return std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32);
  return seed * 0x9E3779B97F4A7C15ULL + worker;
}

}  // namespace

// An io_context whose handlers can be destroyed before the context itself:
// coroutine frames still suspended when the gateway goes (a wait no clock
// will end, a request cut off at the drain limit) reach their worker from
// their destructors, so they must go while the workers live.
struct OwnedContext : asio::io_context {
  OwnedContext() : asio::io_context(ASIO_CONCURRENCY_HINT_UNSAFE_IO) {}
  void destroy_pending() { shutdown(); }  // execution_context::shutdown: handlers go, services stay
};

struct Gateway::Impl {
  // Tells gateways apart for Snapshot::owner (an address could be reused).
  static inline std::atomic<uint64_t> next_id{1};
  const uint64_t id = next_id.fetch_add(1);
  GatewayOptions options;
  GatewayShared shared;
  asio::io_context* host_context = nullptr;
  std::vector<std::unique_ptr<OwnedContext>> contexts;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<std::thread> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  // Remote JWKS (jwksUri, OpenID discovery), fetched on the first worker.
  std::unique_ptr<JwksFetcher> jwks;

  std::mutex mutex;  // control side: apply, stop, queries
  std::condition_variable cv;
  std::shared_ptr<const Snapshot> current;
  struct Bound {
    ListenerConfig config;
    uint16_t port;
  };
  std::map<std::string, Bound> bound;  // by listener name
  // Local rate-limit buckets, kept across reloads while their config is
  // unchanged (bind_local_limiters).
  LocalLimiterRegistry local_limiters;
  // Telemetry: applies that took effect or were refused, and snapshots
  // published (applies and endpoint updates).
  std::atomic<uint64_t> reloads_ok{0}, reloads_rejected{0}, snapshot_version{0};
  // Access-log writers by path, kept across reloads while a log names it.
  std::map<std::string, std::shared_ptr<telemetry::LogWriter>> log_writers;
  // The writers, copied under the lock so that their file I/O (a flush, a
  // rotation's write to the old file) runs outside it.
  std::vector<std::shared_ptr<telemetry::LogWriter>> current_log_writers() {
    std::lock_guard lock(mutex);
    std::vector<std::shared_ptr<telemetry::LogWriter>> out;
    for (auto& [path, writer] : log_writers) out.push_back(writer);
    return out;
  }
  bool started = false;
  bool stopping = false;
  bool stopped = false;
  size_t drained = 0;

  // Endpoint sources: a lock of their own, never held with `mutex`, so a
  // sink running update_endpoints can finish while stop_sources() waits.
  std::mutex sources_mutex;
  std::vector<std::shared_ptr<EndpointSource>> sources;
  bool sources_closed = false;

  ~Impl() {
    // Pending handlers first (with the workers they refer to), then the
    // workers, then (as members) the contexts.
    for (auto& c : contexts) c->destroy_pending();
    jwks.reset();
    workers.clear();
  }

  void stop_sources() {
    std::lock_guard lock(sources_mutex);
    sources_closed = true;
    for (auto& s : sources) s->stop();
    sources.clear();
  }

  // Hands `snap` to every worker; requests in flight keep theirs.
  void publish(const std::shared_ptr<const Snapshot>& snap) {
    for (auto& w : workers) {
      Worker* wp = w.get();
      asio::post(wp->context(), [wp, snap] { wp->install(snap); });
    }
  }

  void make_workers(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      asio::io_context* ctx = host_context;
      if (!ctx) {
        // Each worker's I/O objects are touched only by its own thread; the
        // control side only posts, which stays locked.
        contexts.push_back(std::make_unique<OwnedContext>());
        ctx = contexts.back().get();
      }
      // Per-worker hooks need no locks: only this worker calls them.
      auto hooks =
          options.hooks_factory ? options.hooks_factory(static_cast<unsigned>(i)) : options.hooks;
      workers.push_back(
          std::make_unique<Worker>(i, *ctx, shared, seed_for(options.seed, i), std::move(hooks)));
    }
    jwks = std::make_unique<JwksFetcher>(workers.front()->upstream(), options.jwks,
                                         options.on_jwks_fetch);
  }

  void take_options(GatewayOptions o) {
    options = std::move(o);
    shared.logger = options.logger;
    shared.clock = options.clock;
    shared.wall_clock = options.wall_clock;
    shared.max_series = options.telemetry.max_series_per_worker;
    shared.metrics = options.telemetry.metrics;
  }
};

Gateway::Gateway(GatewayOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->take_options(std::move(options));
  unsigned n = impl_->options.workers;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  impl_->make_workers(n);
}

Gateway::Gateway(asio::io_context& host_context, GatewayOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->take_options(std::move(options));
  impl_->host_context = &host_context;
  impl_->make_workers(1);
}

Gateway::~Gateway() {
  // Sources call into this gateway from their own threads: stopped first,
  // on every path.
  impl_->stop_sources();
  // With a host context this blocks only when called off the host's thread;
  // on it, the host must keep the Gateway alive until its loop has drained.
  if (!impl_->host_context || !impl_->host_context->get_executor().running_in_this_thread()) stop();
}

Status Gateway::apply(GatewayConfig config) {
  // One path: validation happens once, in compile().
  auto compiled = compile(std::move(config));
  if (!compiled) {
    impl_->reloads_rejected.fetch_add(1, std::memory_order_relaxed);
    return compiled.error();
  }
  return apply(std::move(compiled).value());
}

Status Gateway::apply(std::shared_ptr<const Snapshot> snap) {
  Impl& m = *impl_;
  bool committed = false;
  struct CountReload {
    Impl& m;
    const bool& ok;
    ~CountReload() { (ok ? m.reloads_ok : m.reloads_rejected).fetch_add(1); }
  } count_reload{m, committed};
  if (!snap) return Error{"Gateway", "snapshot", "is null"};
  std::lock_guard lock(m.mutex);
  if (m.stopping) return Error{"Gateway", "", "stopped"};

  // ---- Prepare: everything that can fail, without touching what runs. ----

  // The upstreams' state slots are this gateway's to fill; another gateway
  // applying the same snapshot would rewrite them under our workers.
  uint64_t owner = 0;
  bool claimed = snap->owner.compare_exchange_strong(owner, m.id);
  if (!claimed && owner != m.id)
    return Error{"Gateway", "snapshot",
                 "already applied to another Gateway; compile the configuration again"};
  auto unclaim = [&] {
    if (claimed) snap->owner.store(0);
  };

  // Listeners: keep those whose address and port are unchanged; bind every
  // new one now, so a bind failure leaves the running config intact.
  struct NewListener {
    std::string name;
    uint16_t port;
    std::vector<int> fds;  // one per worker
  };
  std::vector<NewListener> fresh;
  std::map<std::string, Impl::Bound> next;
  std::vector<std::string> keep;
  for (const auto& l : snap->listeners) {
    auto it = m.bound.find(l.config.name);
    if (it != m.bound.end() && it->second.config.address == l.config.address &&
        it->second.config.port == l.config.port) {
      next.emplace(l.config.name, Impl::Bound{l.config, it->second.port});
      keep.push_back(l.config.name);
      continue;
    }
    uint16_t port = 0;
    auto fds = bind_listener(l.config, m.workers.size(), port);
    if (!fds) {
      for (auto& f : fresh)
        for (int fd : f.fds) ::close(fd);
      unclaim();
      return fds.error();
    }
    fresh.push_back({l.config.name, port, std::move(fds).value()});
    next.emplace(l.config.name, Impl::Bound{l.config, port});
  }
  using Acceptors = std::vector<std::pair<std::string, std::pair<int, uint16_t>>>;
  std::vector<Acceptors> per_worker(m.workers.size());
  for (size_t i = 0; i < m.workers.size(); ++i)
    for (auto& f : fresh) per_worker[i].push_back({f.name, {f.fds[i], f.port}});
  std::vector<std::string> upstream_names;
  for (const auto& up : snap->upstreams) upstream_names.push_back(up.config.name);
  auto writers = open_log_writers(*snap, m.log_writers, m.workers.size());
  if (!writers) {
    for (auto& f : fresh)
      for (int fd : f.fds) ::close(fd);
    unclaim();
    return writers.error();
  }

  // ---- Commit: nothing below fails. ----

  // Runtime state (connections, ejections, health) follows the upstream's
  // name across reloads. The slots are written only here, under the lock,
  // before the snapshot first reaches a worker (the posts below publish
  // them); a snapshot applied again already holds this gateway's states and
  // makes the registry agree with them, so views and traffic share state.
  for (const auto& up : snap->upstreams) {
    if (!up.state)
      up.state = m.shared.clusters.get(up.config.name);
    else
      m.shared.clusters.adopt(up.state);
    up.state->update(up);
  }
  // Remote key sets kept across the reload reach the new slots before any
  // worker serves the snapshot.
  m.jwks->update(snap->security.get());
  if (snap->access_logs)
    for (const auto& log : snap->access_logs->logs)
      if (!log.writer) log.writer = writers.value().at(log.path);
  if (snap->rate_limits)
    bind_local_limiters(*snap->rate_limits, m.local_limiters,
                        m.shared.clock ? m.shared.clock() : Clock::now());
  for (size_t i = 0; i < m.workers.size(); ++i) {
    Worker* w = m.workers[i].get();
    asio::post(w->context(), [w, snap, keep, mine = std::move(per_worker[i])] {
      w->install(snap);
      w->remove_acceptors_except(keep);
      for (const auto& [name, fd_port] : mine) w->add_acceptor(name, fd_port.first, fd_port.second);
    });
  }
  m.bound = std::move(next);
  m.current = std::move(snap);
  m.shared.clusters.retain(upstream_names);
  m.log_writers = std::move(writers).value();
  m.snapshot_version.fetch_add(1);
  committed = true;
  return {};
}

void Gateway::reopen_access_logs() {
  for (auto& w : impl_->current_log_writers()) w->reopen();
}

void Gateway::flush_access_logs() {
  for (auto& w : impl_->current_log_writers()) w->flush();
}

Status Gateway::update_endpoints(std::string_view upstream, std::vector<Endpoint> endpoints) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  if (m.stopping) return Error{"Gateway", "", "stopped"};
  if (!m.current)
    return Error{fmt::format("Upstream {}", upstream), "name", "no configuration applied yet"};
  auto index = m.current->find_upstream(upstream);
  if (index && m.current->upstreams[*index].config.endpoints == endpoints) return {};
  auto derived = with_endpoints(*m.current, upstream, std::move(endpoints));
  if (!derived) return derived.error();
  std::shared_ptr<const Snapshot> snap = std::move(derived).value();
  // The state slots are the current snapshot's, this gateway's.
  snap->owner.store(m.id);
  const CompiledUpstream& up = snap->upstreams[*index];
  up.state->update(up);
  m.publish(snap);
  m.current = std::move(snap);
  m.snapshot_version.fetch_add(1);
  return {};
}

Status Gateway::add_endpoint_source(std::shared_ptr<EndpointSource> source) {
  if (!source) return Error{"Gateway", "endpoint source", "is null"};
  Impl& m = *impl_;
  std::lock_guard lock(m.sources_mutex);
  if (m.sources_closed) return Error{"Gateway", "", "stopped"};
  m.sources.push_back(source);
  source->start([this](std::string_view upstream, std::vector<Endpoint> endpoints) {
    return update_endpoints(upstream, std::move(endpoints));
  });
  return {};
}

void Gateway::remove_endpoint_source(const std::shared_ptr<EndpointSource>& source) {
  Impl& m = *impl_;
  std::lock_guard lock(m.sources_mutex);
  auto it = std::find(m.sources.begin(), m.sources.end(), source);
  if (it == m.sources.end()) return;
  (*it)->stop();
  m.sources.erase(it);
}

void Gateway::start() {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  if (m.started || m.host_context) return;
  m.started = true;
  for (auto& ctx : m.contexts) m.guards.push_back(asio::make_work_guard(*ctx));
  for (size_t i = 0; i < m.contexts.size(); ++i)
    m.threads.emplace_back([ctx = m.contexts[i].get()] { ctx->run(); });
}

void Gateway::run() {
  start();
  Impl& m = *impl_;
  std::unique_lock lock(m.mutex);
  m.cv.wait(lock, [&] { return m.stopped; });
}

void Gateway::stop() {
  Impl& m = *impl_;
  m.stop_sources();
  // Before the drain: a fetch in flight holds a connection slot.
  m.jwks->stop();
  std::unique_lock lock(m.mutex);
  if (m.stopping) {
    if (!m.host_context) m.cv.wait(lock, [&] { return m.stopped; });
    return;
  }
  m.stopping = true;
  auto drain = m.current ? m.current->limits.drain_timeout : Limits{}.drain_timeout;
  if (m.host_context) {
    // The host runs the loop: drain there, force-closing whatever is left
    // after the drain time.
    Worker* w = m.workers.front().get();
    auto timer = std::make_shared<asio::steady_timer>(*m.host_context, drain);
    asio::post(*m.host_context, [&m, w, timer] {
      timer->async_wait([w](asio::error_code ec) {
        if (!ec) w->force_close();
      });
      w->on_drained([&m, timer] {
        timer->cancel();  // lets the host loop run dry
        std::lock_guard l(m.mutex);
        m.stopped = true;
        m.cv.notify_all();
      });
      w->begin_drain();
    });
    // On the host's own thread the drain completes as its loop runs.
    if (m.host_context->get_executor().running_in_this_thread()) return;
    bool done = m.cv.wait_for(lock, drain + std::chrono::seconds(2), [&] { return m.stopped; });
    lock.unlock();
    if (done) {
      // Handlers the drain queued (cancelled timers, closed sockets) still
      // refer to the worker: wait for one posted after them.
      std::promise<void> barrier;
      asio::post(*m.host_context, [&barrier] { barrier.set_value(); });
      barrier.get_future().wait_for(std::chrono::seconds(2));
    }
    return;
  }
  size_t total = m.workers.size();
  for (auto& w : m.workers) {
    Worker* wp = w.get();
    asio::post(wp->context(), [&m, wp] {
      wp->on_drained([&m] {
        std::lock_guard l(m.mutex);
        ++m.drained;
        m.cv.notify_all();
      });
      wp->begin_drain();
    });
  }
  if (!m.started) {
    // Workers never ran: run their loops just long enough to drain.
    lock.unlock();
    for (auto& ctx : m.contexts) ctx->poll();
    lock.lock();
  } else if (!m.cv.wait_for(lock, drain, [&] { return m.drained == total; })) {
    for (auto& w : m.workers) {
      Worker* wp = w.get();
      asio::post(wp->context(), [wp] { wp->force_close(); });
    }
    // Closed sockets end their sessions promptly.
    m.cv.wait_for(lock, std::chrono::seconds(2), [&] { return m.drained == total; });
  }
  m.guards.clear();
  for (auto& ctx : m.contexts) ctx->stop();
  lock.unlock();
  for (auto& t : m.threads) t.join();
  lock.lock();
  m.threads.clear();
  m.stopped = true;
  m.cv.notify_all();
}

void Gateway::clock_advanced() {
  Impl& m = *impl_;
  std::vector<Worker*> others;
  for (auto& w : m.workers) {
    // On a worker's own thread (a hook, a host context's thread) its tick
    // runs here; waiting for it would wait for ourselves.
    if (w->context().get_executor().running_in_this_thread())
      w->tick();
    else
      others.push_back(w.get());
  }
  bool running;
  {
    std::lock_guard lock(m.mutex);
    running = (m.started || m.host_context) && !m.stopped;
  }
  if (others.empty()) return;
  // Each worker ticks, then posts the barrier behind what the tick woke, so
  // those have run to their next wait when this returns.
  auto left = std::make_shared<std::atomic<size_t>>(others.size());
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  for (Worker* w : others)
    asio::post(w->context(), [w, left, done] {
      w->tick();
      asio::post(w->context(), [left, done] {
        if (left->fetch_sub(1) == 1) done->set_value();
      });
    });
  // Loops not running yet take the tick when they start.
  if (running) future.wait_for(std::chrono::seconds(5));
}

std::vector<JwksFetchStatus> Gateway::jwks_status() const {
  return impl_->jwks->status();
}

bool Gateway::wait_jwks_fetched(std::chrono::milliseconds timeout) const {
  return impl_->jwks->wait_fetched(timeout);
}

uint16_t Gateway::port(std::string_view listener) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->bound.find(std::string(listener));
  return it == impl_->bound.end() ? 0 : it->second.port;
}

std::shared_ptr<const Snapshot> Gateway::snapshot() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->current;
}

UpstreamView Gateway::upstream(std::string_view name) const {
  auto state = impl_->shared.clusters.find(name);
  return state ? state->view() : UpstreamView{};
}

Explanation explain(const Snapshot& snap, std::string_view listener, const RequestHead& request,
                    const ExplainInput& input) {
  const CompiledListener* l = snap.listener(listener);
  if (!l) {
    Explanation e;
    e.host_match = fmt::format("no listener named \"{}\"", listener);
    return e;
  }
  if (!l->tcp.empty()) {
    Explanation e;
    e.host_match = fmt::format("listener \"{}\" carries TCP, not HTTP", listener);
    return e;
  }
  // Explained as served: on the normalised path (an invalid one is left as
  // given; serving would answer it 400 before routing).
  RequestHead normalised = request;
  if (normalised.target != "*" &&
      !http::normalize_target(normalised.target, snap.source->path_normalization).empty())
    normalised.target = request.target;
  // Routing sees the request as the security filter leaves it (a token
  // removed, claims copied to headers), as when it is served.
  RequestHead routed = normalised;
  std::optional<SecurityExplanation> security;
  if (snap.security) {
    SecurityPeer peer{input.client_ip, input.sni, nullptr};
    security = explain_security(*snap.security, routed, peer,
                                input.now.value_or(std::chrono::system_clock::now()));
  }
  Explanation e = snap.routers[l->router].explain(routed);
  e.security = std::move(security);
  return e;
}

Explanation Gateway::explain(std::string_view listener, const RequestHead& request,
                             const ExplainInput& input) const {
  std::shared_ptr<const Snapshot> snap = snapshot();
  if (!snap) return Explanation{};
  ExplainInput in = input;
  if (!in.now && impl_->options.wall_clock) in.now = impl_->options.wall_clock();
  return sluice::explain(*snap, listener, request, in);
}

}  // namespace sluice

namespace sluice {

namespace {

// Appends the gateway's counters and gauges, Envoy's names where it has one.
class MetricList {
 public:
  explicit MetricList(std::vector<MetricValue>& out) : out_(out) {}
  void add(std::string name, std::string label, std::string value, double v, bool gauge,
           std::string help) {
    MetricValue m{std::move(name), {}, v, gauge, std::move(help)};
    if (!label.empty()) m.labels.emplace_back(std::move(label), std::move(value));
    out_.push_back(std::move(m));
  }

 private:
  std::vector<MetricValue>& out_;
};

void listener_metrics(const GatewayShared& shared, MetricList& list) {
  for (const auto& [name, c] : shared.listeners.all()) {
    auto load = [](const auto& a) {
      return static_cast<double>(a.load(std::memory_order_relaxed));
    };
    list.add("envoy_listener_downstream_cx_active", "listener", name,
             static_cast<double>(c->active.load(std::memory_order_acquire)), true,
             "Open downstream connections.");
    list.add("sluice_listener_downstream_cx_parked", "listener", name,
             static_cast<double>(c->parked.load(std::memory_order_relaxed)), true,
             "Of the open downstream connections, idle ones parked: no session, no buffers.");
    list.add("envoy_listener_downstream_cx_total", "listener", name, load(c->total), false,
             "Downstream connections accepted.");
    list.add("envoy_listener_ssl_handshake", "listener", name, load(c->tls_handshakes), false,
             "TLS handshakes completed.");
    list.add("envoy_listener_ssl_connection_error", "listener", name, load(c->tls_failures), false,
             "TLS handshakes failed.");
  }
}

void cluster_metrics(const Snapshot& snap, MetricList& list) {
  for (const auto& up : snap.upstreams) {
    if (!up.state) continue;
    UpstreamView v = up.state->view();
    size_t healthy = 0, ejected = 0;
    for (const auto& e : v.endpoints) {
      healthy += e.healthy && !e.ejected;
      ejected += e.ejected;
    }
    const std::string& n = v.name;
    auto add = [&](const char* name, double value, bool gauge, const char* help) {
      list.add(name, "cluster_name", n, value, gauge, help);
    };
    add("envoy_cluster_upstream_rq_total", double(v.requests), false,
        "Requests sent upstream, retries included.");
    add("envoy_cluster_upstream_rq_active", double(v.active_requests), true,
        "Upstream requests in flight.");
    add("envoy_cluster_upstream_rq_pending_active", double(v.pending_requests), true,
        "Requests waiting for a connection.");
    add("envoy_cluster_upstream_rq_retry", double(v.retries), false, "Retries sent.");
    add("envoy_cluster_upstream_rq_retry_overflow", double(v.retry_overflows), false,
        "Retries refused by max_retries.");
    add("envoy_cluster_upstream_rq_pending_overflow", double(v.overflows), false,
        "Requests refused by circuit breaking.");
    add("envoy_cluster_upstream_cx_active", double(v.connections), true,
        "Open upstream connections, pooled and in use.");
    add("envoy_cluster_upstream_cx_connect_fail", double(v.connect_failures), false,
        "Upstream connections that failed to open.");
    add("envoy_cluster_membership_total", double(v.endpoints.size()), true, "Endpoints.");
    add("envoy_cluster_membership_healthy", double(healthy), true,
        "Endpoints healthy and not ejected.");
    add("envoy_cluster_outlier_detection_ejections_active", double(ejected), true,
        "Endpoints ejected by outlier detection.");
  }
}

}  // namespace

Stats Gateway::stats() const {
  const Impl& m = *impl_;
  Stats s;
  s.source_workload = m.options.telemetry.workload;
  s.source_workload_namespace = m.options.telemetry.workload_namespace;
  // Listener counters first: a connection is counted closed in its series
  // before it leaves cx_active (release there, acquire here), so a scrape
  // that no longer shows it open also shows its close.
  MetricList list(s.metrics);
  listener_metrics(m.shared, list);
  std::vector<const telemetry::RequestMetrics*> workers;
  for (const auto& w : m.workers) workers.push_back(&w->request_metrics());
  s.requests = telemetry::collect_series(workers);
  std::vector<const telemetry::TcpMetrics*> tcp_workers;
  for (const auto& w : m.workers) tcp_workers.push_back(&w->tcp_metrics());
  s.tcp = telemetry::collect_tcp_series(tcp_workers);

  if (auto snap = snapshot()) cluster_metrics(*snap, list);
  list.add("sluice_downstream_cx_active", "", "", double(m.shared.connections.load()), true,
           "Open downstream connections, all listeners.");
  list.add("sluice_config_reloads_total", "result", "ok", double(m.reloads_ok.load()), false,
           "Configurations applied, or refused whole.");
  list.add("sluice_config_reloads_total", "result", "rejected", double(m.reloads_rejected.load()),
           false, "Configurations applied, or refused whole.");
  list.add("sluice_config_snapshot_version", "", "", double(m.snapshot_version.load()), true,
           "Snapshots published (applies and endpoint updates).");
  TraceExportStats spans = trace_export_stats();
  const std::pair<const char*, uint64_t> span_counts[] = {{"sampled", spans.spans_sampled},
                                                          {"exported", spans.spans_exported},
                                                          {"dropped", spans.spans_dropped}};
  for (const auto& [what, n] : span_counts)
    list.add("sluice_tracing_spans_total", "result", what, double(n), false,
             "Spans sampled, exported to the collector, or dropped.");
  list.add("sluice_tracing_export_requests_total", "", "", double(spans.export_requests), false,
           "OTLP export requests sent.");
  list.add("sluice_tracing_export_failures_total", "", "", double(spans.export_failures), false,
           "OTLP export requests without a 2xx answer.");
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& [path, writer] : m.log_writers) {
      list.add("sluice_access_log_lines_total", "path", path, double(writer->lines_written()),
               false, "Access-log lines written.");
      list.add("sluice_access_log_dropped_total", "path", path, double(writer->lines_dropped()),
               false, "Access-log lines dropped because the writer fell behind.");
    }
  }
  std::stable_sort(s.metrics.begin(), s.metrics.end(),
                   [](const MetricValue& a, const MetricValue& b) { return a.name < b.name; });
  return s;
}

TraceExportStats Gateway::trace_export_stats() const {
  TraceExportStats total;
  for (const auto& w : impl_->workers) {
    TraceExportStats s = w->tracer().stats();
    total.spans_sampled += s.spans_sampled;
    total.spans_exported += s.spans_exported;
    total.spans_dropped += s.spans_dropped;
    total.export_requests += s.export_requests;
    total.export_failures += s.export_failures;
  }
  return total;
}

void Gateway::count_rejected_config() {
  impl_->reloads_rejected.fetch_add(1);
}

bool Gateway::ready() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->current && !impl_->stopping;
}

}  // namespace sluice
