#pragma once
// What the proxy session asks of an upstream: pick an endpoint, lease a
// connection, report how an attempt went. Behind these calls sit the load
// balancers, connection limits (circuit breaking), outlier detection and
// health state. State shared by all workers lives in ClusterState, one per
// upstream name, carried across configuration reloads.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http/outcome.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"
#include "sluice/upstream.hpp"
#include "upstream/compiled.hpp"
#include "upstream/pool.hpp"

namespace sluice {

struct CompiledUpstream;
struct EndpointSet;
struct ConnectionSlot;
class UpstreamContext;
class HashTable;

using TimePoint = std::chrono::steady_clock::time_point;

// Shared runtime state of one endpoint ("ip:port"), read and written by
// every worker with relaxed atomics. Survives reloads while the endpoint
// stays configured.
struct EndpointState {
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::min();

  explicit EndpointState(std::string k) : key(std::move(k)) {}
  const std::string key;
  std::atomic<uint64_t> active_requests{0};
  std::atomic<uint64_t> connections{0};  // open, across workers
  std::atomic<uint32_t> consecutive_5xx{0};
  std::atomic<uint32_t> consecutive_gateway_errors{0};
  std::atomic<uint32_t> ejections{0};
  // Clock ticks (steady_clock::duration) since the clock's epoch.
  std::atomic<int64_t> ejected_until{kNever};
  std::atomic<int64_t> added_at{kNever};  // kNever: not warming up
  std::atomic<bool> healthy{true};        // active health checks
  // Health-check counters; touched by the health-check worker only.
  uint32_t check_successes = 0;
  uint32_t check_failures = 0;

  bool ejected(TimePoint now) const {
    return now.time_since_epoch().count() < ejected_until.load(std::memory_order_relaxed);
  }
};

// Shared, thread-safe runtime state of one upstream.
class ClusterState {
 public:
  explicit ClusterState(std::string name) : name_(std::move(name)) {}

  // Aligns per-endpoint state with a new endpoint list (matched by "ip:port"
  // key, so counters and ejections survive reloads). Endpoints that appear
  // after the first configuration start their warm-up now.
  void update(const CompiledUpstream& upstream);

  // Per-endpoint state for each of `upstream.endpoints`, in order. Creates
  // what update() has not seen yet (a worker may install a snapshot before
  // the control side calls update). Locks: call once per snapshot, cache.
  std::vector<std::shared_ptr<EndpointState>> resolve(const CompiledUpstream& upstream);

  // A consistent-hash table for the given members, built once and shared
  // by all workers until the next update().
  std::shared_ptr<const HashTable> hash_table(const CompiledUpstream& upstream,
                                              const EndpointSet& set);

  // Outlier ejection of `ep` at `now`, unless max_ejection_percent forbids
  // it (at least one endpoint may always be ejected, as in Envoy).
  bool try_eject(EndpointState& ep, const OutlierDetection& od, TimePoint now);

  // The time source views use for "ejected" (the gateway's injectable
  // clock; empty: steady_clock). The pointee must outlive this state.
  void attach_clock(const std::function<TimePoint()>* clock) {
    clock_.store(clock, std::memory_order_release);
  }
  TimePoint now() const;

  UpstreamView view() const;
  const std::string& name() const { return name_; }

  std::atomic<uint64_t> active_requests{0};
  std::atomic<uint64_t> pending_requests{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> overflows{0};
  std::atomic<uint64_t> retries_active{0};
  std::atomic<uint64_t> retry_overflows{0};
  // HTTP/2 streams in flight (max_requests, Istio's http2MaxRequests).
  std::atomic<uint64_t> h2_streams{0};
  // Totals for telemetry (Envoy's upstream_rq_total, upstream_cx_connect_fail,
  // upstream_rq_retry).
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> retries{0};

 private:
  std::shared_ptr<EndpointState> get_locked(const std::string& key);

  std::string name_;
  std::atomic<const std::function<TimePoint()>*> clock_{nullptr};
  mutable std::mutex mutex_;  // guards the members below (never on the hot path)
  bool initialized_ = false;
  std::vector<std::string> keys_;  // the current configuration's endpoints, in order
  std::unordered_map<std::string, std::shared_ptr<EndpointState>> endpoints_;
  std::map<std::string, std::shared_ptr<const HashTable>> tables_;
};

// All ClusterStates of one Gateway, by upstream name.
class ClusterRegistry {
 public:
  std::shared_ptr<ClusterState> get(const std::string& name);
  std::shared_ptr<ClusterState> find(std::string_view name) const;
  // Makes `state` the one for its name again (a snapshot re-applied after
  // its upstream was dropped brings its own state back).
  void adopt(std::shared_ptr<ClusterState> state);
  // Drops state of upstreams no longer configured.
  void retain(const std::vector<std::string>& names);

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<ClusterState>> states_;
};

struct PickRequest {
  const RequestHead* request = nullptr;  // for header, cookie and query hashing
  std::string_view client_ip;
  std::span<const int64_t> tried;  // endpoints already attempted for this request
  bool avoid_tried = false;
};

struct PickResult {
  int64_t endpoint = -1;   // index into CompiledUpstream::endpoints; -1: none available
  std::string set_cookie;  // Set-Cookie value to add to the response, if any
};

PickResult pick_endpoint(UpstreamContext& ctx, const CompiledUpstream& upstream,
                         const EndpointSet& set, const PickRequest& request);

// Brackets one upstream attempt (least-request counts, outlier detection).
void attempt_started(UpstreamContext& ctx, const CompiledUpstream& upstream, int64_t endpoint);
void attempt_finished(UpstreamContext& ctx, const CompiledUpstream& upstream, int64_t endpoint,
                      policy::AttemptOutcome outcome, uint16_t status);

// Retry budget (connectionPool.http.maxRetries, across workers): a retry
// may start only when admitted; each admitted retry must be followed by
// retry_finished once that attempt is over.
bool admit_retry(UpstreamContext& ctx, const CompiledUpstream& upstream);
void retry_finished(UpstreamContext& ctx, const CompiledUpstream& upstream);

// Outlier-detection bookkeeping for one finished attempt, apart from the
// worker so it can be unit-tested with a fake clock. Returns true when the
// attempt ejected the endpoint.
bool record_outcome(ClusterState& cluster, EndpointState& ep, const OutlierDetection& od,
                    policy::AttemptOutcome outcome, uint16_t status, TimePoint now);

// Active health checks: (re)started on the worker that runs them (worker 0)
// whenever it installs a snapshot; stopped on drain.
void install_health_checks(UpstreamContext& ctx, UpstreamList upstreams);
void stop_health_checks(UpstreamContext& ctx);

}  // namespace sluice
