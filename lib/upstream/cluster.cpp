#include "upstream/cluster.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "upstream/balancer.hpp"
#include "upstream/context.hpp"
#include "upstream/hash.hpp"
#include "upstream/health.hpp"

namespace sluice {

namespace {

// Envoy's default max_ejection_time: ejections grow no longer than this
// (or base_ejection_time, if that is longer).
constexpr auto kMaxEjectionTime = std::chrono::seconds(300);

int64_t ticks(TimePoint t) {
  return t.time_since_epoch().count();
}

}  // namespace

// ---- ClusterState ----

TimePoint ClusterState::now() const {
  auto* clock = clock_.load(std::memory_order_acquire);
  return clock && *clock ? (*clock)() : std::chrono::steady_clock::now();
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
  v.retry_overflows = retry_overflows.load();
  v.requests = requests.load();
  v.connect_failures = connect_failures.load();
  v.retries = retries.load();
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
void attach_clock(UpstreamContext& ctx, const CompiledUpstream& upstream) {
  // Views and update() read the gateway's (injectable) clock through this.
  if (upstream.state) upstream.state->attach_clock(&ctx.loop().clock());
}
}  // namespace

PickResult pick_endpoint(UpstreamContext& ctx, const CompiledUpstream& upstream,
                         const EndpointSet& set, const PickRequest& request) {
  attach_clock(ctx, upstream);
  return ctx.balancer().pick(upstream, set, request, ctx.now(), ctx.rng());
}

void attempt_started(UpstreamContext& ctx, const CompiledUpstream& upstream, int64_t endpoint) {
  if (upstream.state) {
    upstream.state->active_requests.fetch_add(1, std::memory_order_relaxed);
    upstream.state->requests.fetch_add(1, std::memory_order_relaxed);
  }
  ctx.balancer()
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

void attempt_finished(UpstreamContext& ctx, const CompiledUpstream& upstream, int64_t endpoint,
                      policy::AttemptOutcome outcome, uint16_t status) {
  if (upstream.state) {
    upstream.state->active_requests.fetch_sub(1, std::memory_order_relaxed);
    if (outcome == policy::AttemptOutcome::connect_failure)
      upstream.state->connect_failures.fetch_add(1, std::memory_order_relaxed);
  }
  EndpointState& ep = *ctx.balancer().endpoint_state(upstream, endpoint);
  ep.active_requests.fetch_sub(1, std::memory_order_relaxed);
  if (upstream.config.outlier_detection && upstream.state &&
      outcome != policy::AttemptOutcome::downstream_cancelled)
    record_outcome(*upstream.state, ep, *upstream.config.outlier_detection, outcome, status,
                   ctx.now());
}

bool admit_retry(UpstreamContext& ctx, const CompiledUpstream& upstream) {
  ClusterState* cluster = upstream.state.get();
  if (!cluster) return true;
  uint64_t cur = cluster->retries_active.load(std::memory_order_relaxed);
  while (cur < upstream.config.pool.max_retries)
    if (cluster->retries_active.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) {
      cluster->retries.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  cluster->retry_overflows.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void retry_finished(UpstreamContext& ctx, const CompiledUpstream& upstream) {
  if (upstream.state) upstream.state->retries_active.fetch_sub(1, std::memory_order_relaxed);
}

void install_health_checks(UpstreamContext& ctx, UpstreamList upstreams) {
  auto& checker = ctx.balancer().health();
  checker.reset();  // stops the previous snapshot's probes
  if (!upstreams) return;
  bool any = false;
  for (const auto& up : *upstreams) {
    if (up.config.health_check) {
      any = true;
    } else if (up.state) {
      // Checks switched off: nothing can mark these unhealthy any more.
      for (auto& s : up.state->resolve(up)) s->healthy.store(true, std::memory_order_relaxed);
    }
  }
  if (any) checker = std::make_unique<HealthChecker>(ctx, std::move(upstreams));
}

void stop_health_checks(UpstreamContext& ctx) {
  ctx.balancer().health().reset();
}

}  // namespace sluice
