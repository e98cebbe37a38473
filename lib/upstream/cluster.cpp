#include "upstream/cluster.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include "config/snapshot.hpp"
#include "runtime/worker.hpp"

namespace sluice {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
}

void ClusterState::update(const CompiledUpstream& upstream) {
  std::lock_guard lock(mutex_);
  keys_.clear();
  for (const auto& ep : upstream.endpoints) keys_.push_back(ep.key);
}

UpstreamView ClusterState::view() const {
  UpstreamView v;
  v.name = name_;
  {
    std::lock_guard lock(mutex_);
    for (const auto& k : keys_) v.endpoints.push_back(UpstreamView::EndpointView{.address = k});
  }
  v.active_requests = active_requests.load();
  v.pending_requests = pending_requests.load();
  v.connections = connections.load();
  v.overflows = overflows.load();
  return v;
}

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

void ClusterRegistry::retain(const std::vector<std::string>& names) {
  std::lock_guard lock(mutex_);
  std::erase_if(states_, [&](const auto& kv) {
    return std::find(names.begin(), names.end(), kv.first) == names.end();
  });
}

PickResult pick_endpoint(Worker& worker, const CompiledUpstream& upstream, const EndpointSet& set,
                         const PickRequest& request) {
  PickResult r;
  // Retries avoid endpoints already tried, within a few selections (Istio: 5).
  constexpr int kSelections = 5;
  for (int k = 0; k < kSelections; ++k) {
    r.endpoint = worker.balancer().pick(upstream, set, worker.rng());
    if (r.endpoint < 0 || !request.avoid_tried) break;
    if (std::find(request.tried.begin(), request.tried.end(), r.endpoint) == request.tried.end())
      break;
  }
  return r;
}

asio::awaitable<Lease> lease_connection(Worker& worker, ConnectionSlot& slot,
                                        const CompiledUpstream& upstream, int64_t endpoint) {
  const CompiledEndpoint& ep = upstream.endpoints[endpoint];
  const auto& pool = upstream.config.pool;
  Lease lease;
  lease.conn = worker.pool().take(ep.key, pool.idle_timeout);
  if (lease.conn) {
    lease.reused = true;
    lease.status = Lease::Status::ok;
    co_return lease;
  }
  asio::ip::tcp::socket s(worker.context());
  slot.upstream = &s;
  slot.fired = ConnectionSlot::Timeout::none;
  slot.set_deadline(ConnectionSlot::Timeout::upstream_connect, pool.connect_timeout);
  auto [ec] = co_await s.async_connect(ep.address, nothrow);
  slot.upstream = nullptr;
  slot.clear_deadline();
  if (ec) {
    if (slot.fired == ConnectionSlot::Timeout::upstream_connect)
      lease.status = Lease::Status::connect_timeout;
    else if (slot.fired != ConnectionSlot::Timeout::none)
      lease.status = Lease::Status::cancelled;
    else
      lease.status = Lease::Status::connect_failure;
    co_return lease;
  }
  asio::error_code ignored;
  s.set_option(asio::ip::tcp::no_delay(true), ignored);
  lease.conn = std::make_unique<UpstreamConnection>(std::move(s));
  lease.conn->endpoint_key = ep.key;
  lease.conn->cluster = upstream.state;
  if (upstream.state) upstream.state->connections.fetch_add(1, std::memory_order_relaxed);
  lease.status = Lease::Status::ok;
  co_return lease;
}

void release_connection(Worker& worker, const CompiledUpstream& upstream,
                        std::unique_ptr<UpstreamConnection> conn, bool reusable) {
  if (!conn) return;
  const auto& pool = upstream.config.pool;
  if (reusable &&
      (pool.max_requests_per_connection == 0 || conn->requests < pool.max_requests_per_connection))
    worker.pool().put(std::move(conn), pool.max_idle_per_endpoint);
}

void attempt_started(Worker& worker, const CompiledUpstream& upstream, int64_t endpoint) {
  if (upstream.state) upstream.state->active_requests.fetch_add(1, std::memory_order_relaxed);
}

void attempt_finished(Worker& worker, const CompiledUpstream& upstream, int64_t endpoint,
                      policy::AttemptOutcome outcome, uint16_t status) {
  if (upstream.state) upstream.state->active_requests.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace sluice
