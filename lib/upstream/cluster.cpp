#include "upstream/cluster.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "config/snapshot.hpp"
#include "runtime/worker.hpp"
#include "upstream/balancer.hpp"
#include "upstream/hash.hpp"
#include "upstream/health.hpp"

namespace sluice {

namespace {

// Envoy's limits for the hash tables.
constexpr uint64_t kMaxRingSize = 8 * 1024 * 1024;
constexpr uint64_t kMaxMaglevTableSize = 5'000'011;
// Envoy's default max_ejection_time: ejections grow no longer than this
// (or base_ejection_time, if that is longer).
constexpr auto kMaxEjectionTime = std::chrono::seconds(300);

bool is_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

int64_t ticks(TimePoint t) {
  return t.time_since_epoch().count();
}

}  // namespace

Status validate_upstream(const UpstreamConfig& cfg, std::string_view object_name) {
  std::string object(object_name);
  auto fail = [&](std::string field, std::string message) -> Status {
    return Error{object, std::move(field), std::move(message)};
  };
  if (cfg.load_balancer == LoadBalancer::consistent_hash && !cfg.consistent_hash)
    return fail("consistent_hash", "required when load_balancer is consistent_hash");
  if (cfg.load_balancer != LoadBalancer::consistent_hash && cfg.consistent_hash)
    return fail("consistent_hash", "set, but load_balancer is not consistent_hash");
  if (const auto& ch = cfg.consistent_hash) {
    if (ch->source != ConsistentHash::Source::source_ip && ch->name.empty())
      return fail("consistent_hash.name", "must name the header, cookie or query parameter");
    if (ch->cookie_ttl.count() < 0) return fail("consistent_hash.cookie_ttl", "must be >= 0");
    if (ch->algorithm == ConsistentHash::Algorithm::ring_hash &&
        (ch->minimum_ring_size == 0 || ch->minimum_ring_size > kMaxRingSize))
      return fail("consistent_hash.minimum_ring_size", fmt::format("must be 1..{}", kMaxRingSize));
    if (ch->algorithm == ConsistentHash::Algorithm::maglev) {
      if (ch->maglev_table_size > kMaxMaglevTableSize)
        return fail("consistent_hash.maglev_table_size",
                    fmt::format("must be <= {}", kMaxMaglevTableSize));
      if (!is_prime(ch->maglev_table_size))
        return fail("consistent_hash.maglev_table_size",
                    fmt::format("{} is not a prime number", ch->maglev_table_size));
    }
  }
  if (cfg.warmup.count() < 0) return fail("warmup", "must be >= 0");
  const auto& pool = cfg.pool;
  if (pool.idle_timeout.count() <= 0) return fail("pool.idle_timeout", "must be > 0");
  if (pool.max_connections == 0) return fail("pool.max_connections", "must be >= 1");
  if (const auto& od = cfg.outlier_detection) {
    if (od->interval.count() <= 0) return fail("outlier_detection.interval", "must be > 0");
    if (od->base_ejection_time.count() <= 0)
      return fail("outlier_detection.base_ejection_time", "must be > 0");
    if (od->max_ejection_percent > 100)
      return fail("outlier_detection.max_ejection_percent", "must be 0..100");
    if (od->min_health_percent > 100)
      return fail("outlier_detection.min_health_percent", "must be 0..100");
  }
  if (const auto& hc = cfg.health_check) {
    if (hc->path.empty() || hc->path.front() != '/')
      return fail("health_check.path", "must start with '/'");
    if (hc->path.find_first_of(" \r\n") != std::string::npos)
      return fail("health_check.path", "must not contain spaces or line breaks");
    if (hc->host.find_first_of(" \r\n") != std::string::npos)
      return fail("health_check.host", "must not contain spaces or line breaks");
    if (hc->interval.count() <= 0) return fail("health_check.interval", "must be > 0");
    if (hc->timeout.count() <= 0) return fail("health_check.timeout", "must be > 0");
    if (hc->healthy_threshold == 0) return fail("health_check.healthy_threshold", "must be >= 1");
    if (hc->unhealthy_threshold == 0)
      return fail("health_check.unhealthy_threshold", "must be >= 1");
  }
  return {};
}

// ---- ClusterState ----

TimePoint ClusterState::now() const {
  auto* clock = clock_.load(std::memory_order_acquire);
  return clock ? (*clock)() : std::chrono::steady_clock::now();
}

std::shared_ptr<EndpointState> ClusterState::get_locked(const std::string& key) {
  auto& s = endpoints_[key];
  if (!s) {
    s = std::make_shared<EndpointState>(key);
    // Endpoints of the first configuration serve at full weight at once;
    // later additions warm up (slow start) from now.
    if (initialized_) s->added_at.store(ticks(now()), std::memory_order_relaxed);
  }
  return s;
}

void ClusterState::update(const CompiledUpstream& upstream) {
  std::lock_guard lock(mutex_);
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> next;
  keys_.clear();
  for (const auto& ep : upstream.endpoints) {
    keys_.push_back(ep.key);
    next.emplace(ep.key, get_locked(ep.key));
  }
  // Removed endpoints lose their state (requests in flight keep theirs alive).
  endpoints_ = std::move(next);
  tables_.clear();
  initialized_ = true;
}

std::vector<std::shared_ptr<EndpointState>> ClusterState::resolve(
    const CompiledUpstream& upstream) {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<EndpointState>> out;
  out.reserve(upstream.endpoints.size());
  for (const auto& ep : upstream.endpoints) out.push_back(get_locked(ep.key));
  return out;
}

std::shared_ptr<const HashTable> ClusterState::hash_table(const CompiledUpstream& upstream,
                                                          const EndpointSet& set) {
  const ConsistentHash ch = upstream.config.consistent_hash.value_or(ConsistentHash{});
  bool maglev = ch.algorithm == ConsistentHash::Algorithm::maglev;
  std::vector<HashTable::Member> members;
  std::string signature = fmt::format("{}/{}", maglev ? "maglev" : "ring",
                                      maglev ? ch.maglev_table_size : ch.minimum_ring_size);
  for (uint32_t i : set.members) {
    const auto& ep = upstream.endpoints[i];
    members.push_back({ep.key, ep.weight});
    signature += fmt::format(",{}*{}", ep.key, ep.weight);
  }
  std::lock_guard lock(mutex_);
  auto& t = tables_[signature];
  if (!t)
    t = std::make_shared<const HashTable>(maglev ? HashTable::maglev(members, ch.maglev_table_size)
                                                 : HashTable::ring(members, ch.minimum_ring_size));
  return t;
}

bool ClusterState::try_eject(EndpointState& ep, const OutlierDetection& od, TimePoint now) {
  std::lock_guard lock(mutex_);
  if (ep.ejected(now)) return false;
  size_t total = std::max<size_t>(keys_.size(), 1);
  size_t ejected = 0;
  for (const auto& key : keys_) {
    auto it = endpoints_.find(key);
    if (it != endpoints_.end() && it->second->ejected(now)) ++ejected;
  }
  // max_ejection_percent bounds ejections, but one is always allowed.
  if (ejected > 0 && (ejected + 1) * 100 > uint64_t(od.max_ejection_percent) * total) return false;
  uint32_t n = ep.ejections.fetch_add(1, std::memory_order_relaxed) + 1;
  auto cap = std::max<std::chrono::milliseconds>(od.base_ejection_time, kMaxEjectionTime);
  auto duration = std::min<std::chrono::milliseconds>(od.base_ejection_time * n, cap);
  ep.ejected_until.store(ticks(now + duration), std::memory_order_relaxed);
  return true;
}

UpstreamView ClusterState::view() const {
  UpstreamView v;
  v.name = name_;
  TimePoint t = now();
  {
    std::lock_guard lock(mutex_);
    for (const auto& k : keys_) {
      UpstreamView::EndpointView e{.address = k};
      auto it = endpoints_.find(k);
      if (it != endpoints_.end()) {
        const EndpointState& s = *it->second;
        e.healthy = s.healthy.load(std::memory_order_relaxed);
        e.ejected = s.ejected(t);
        e.ejections = s.ejections.load(std::memory_order_relaxed);
        e.active_requests = s.active_requests.load(std::memory_order_relaxed);
        e.connections = s.connections.load(std::memory_order_relaxed);
      }
      v.endpoints.push_back(std::move(e));
    }
  }
  v.active_requests = active_requests.load();
  v.pending_requests = pending_requests.load();
  v.connections = connections.load();
  v.overflows = overflows.load();
  return v;
}

// ---- ClusterRegistry ----

std::shared_ptr<ClusterState> ClusterRegistry::get(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto& s = states_[name];
  if (!s) s = std::make_shared<ClusterState>(name);
  return s;
}

std::shared_ptr<ClusterState> ClusterRegistry::find(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = states_.find(std::string(name));
  return it == states_.end() ? nullptr : it->second;
}

void ClusterRegistry::adopt(std::shared_ptr<ClusterState> state) {
  std::lock_guard lock(mutex_);
  auto& s = states_[state->name()];
  s = std::move(state);
}

void ClusterRegistry::retain(const std::vector<std::string>& names) {
  std::lock_guard lock(mutex_);
  std::erase_if(states_, [&](const auto& kv) {
    return std::find(names.begin(), names.end(), kv.first) == names.end();
  });
}

// ---- the session's interface ----

namespace {
void attach_clock(Worker& worker, const CompiledUpstream& upstream) {
  // Views and update() read the gateway's (injectable) clock through this.
  if (upstream.state) upstream.state->attach_clock(&worker.shared().clock);
}
}  // namespace

PickResult pick_endpoint(Worker& worker, const CompiledUpstream& upstream, const EndpointSet& set,
                         const PickRequest& request) {
  attach_clock(worker, upstream);
  PickInput in{.request = &request.request,
               .client_ip = request.client_ip,
               .tried = request.tried,
               .avoid_tried = request.avoid_tried,
               .now = worker.shared().now()};
  return worker.balancer().pick(upstream, set, in, worker.rng());
}

void attempt_started(Worker& worker, const CompiledUpstream& upstream, int64_t endpoint) {
  if (upstream.state) upstream.state->active_requests.fetch_add(1, std::memory_order_relaxed);
  worker.balancer()
      .endpoint_state(upstream, endpoint)
      ->active_requests.fetch_add(1, std::memory_order_relaxed);
}

bool record_outcome(ClusterState& cluster, EndpointState& ep, const OutlierDetection& od,
                    policy::AttemptOutcome outcome, uint16_t status, TimePoint now) {
  // Envoy without split_external_local_origin_errors (Istio's setting):
  // connect failures, resets and timeouts count as 5xx and gateway errors.
  bool local = outcome != policy::AttemptOutcome::response;
  bool is_5xx = local || status >= 500;
  bool is_gateway = local || status == 502 || status == 503 || status == 504;
  bool trigger = false;
  if (is_5xx) {
    uint32_t n = ep.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1;
    trigger |= od.consecutive_5xx > 0 && n >= od.consecutive_5xx;
  } else {
    ep.consecutive_5xx.store(0, std::memory_order_relaxed);
  }
  if (is_gateway) {
    uint32_t n = ep.consecutive_gateway_errors.fetch_add(1, std::memory_order_relaxed) + 1;
    trigger |= od.consecutive_gateway_errors > 0 && n >= od.consecutive_gateway_errors;
  } else {
    ep.consecutive_gateway_errors.store(0, std::memory_order_relaxed);
  }
  if (!trigger || !cluster.try_eject(ep, od, now)) return false;
  ep.consecutive_5xx.store(0, std::memory_order_relaxed);
  ep.consecutive_gateway_errors.store(0, std::memory_order_relaxed);
  return true;
}

void attempt_finished(Worker& worker, const CompiledUpstream& upstream, int64_t endpoint,
                      policy::AttemptOutcome outcome, uint16_t status) {
  if (upstream.state) upstream.state->active_requests.fetch_sub(1, std::memory_order_relaxed);
  EndpointState& ep = *worker.balancer().endpoint_state(upstream, endpoint);
  ep.active_requests.fetch_sub(1, std::memory_order_relaxed);
  if (upstream.config.outlier_detection && upstream.state &&
      outcome != policy::AttemptOutcome::downstream_cancelled)
    record_outcome(*upstream.state, ep, *upstream.config.outlier_detection, outcome, status,
                   worker.shared().now());
}

bool admit_retry(Worker& worker, const CompiledUpstream& upstream) {
  ClusterState* cluster = upstream.state.get();
  if (!cluster) return true;
  uint64_t cur = cluster->retries_active.load(std::memory_order_relaxed);
  while (cur < upstream.config.pool.max_retries)
    if (cluster->retries_active.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed))
      return true;
  cluster->retry_overflows.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void retry_finished(Worker& worker, const CompiledUpstream& upstream) {
  if (upstream.state) upstream.state->retries_active.fetch_sub(1, std::memory_order_relaxed);
}

void install_health_checks(Worker& worker, std::shared_ptr<const Snapshot> snapshot) {
  auto& checker = worker.balancer().health();
  checker.reset();  // stops the previous snapshot's probes
  if (!snapshot) return;
  bool any = false;
  for (const auto& up : snapshot->upstreams) {
    if (up.config.health_check) {
      any = true;
    } else if (up.state) {
      // Checks switched off: nothing can mark these unhealthy any more.
      for (auto& s : up.state->resolve(up)) s->healthy.store(true, std::memory_order_relaxed);
    }
  }
  if (any) checker = std::make_unique<HealthChecker>(worker, std::move(snapshot));
}

void stop_health_checks(Worker& worker) {
  worker.balancer().health().reset();
}

}  // namespace sluice
