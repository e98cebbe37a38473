#pragma once
// Per-worker load balancing. Everything here belongs to one worker thread:
// cursors, cached endpoint-state pointers and hash tables per snapshot, the
// queue of requests waiting for a connection, the health checker. Shared
// counters (active requests, ejections, health) are atomics in EndpointState.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "net/loop.hpp"
#include "upstream/cluster.hpp"
#include "upstream/compiled.hpp"

namespace sluice {

class HealthChecker;

class Balancer {
 public:
  Balancer();
  ~Balancer();
  Balancer(const Balancer&) = delete;
  Balancer& operator=(const Balancer&) = delete;

  // Picks an endpoint (index into CompiledUpstream::endpoints) from `set`
  // following the upstream's load balancer, or -1 when the set is empty.
  PickResult pick(const CompiledUpstream& upstream, const EndpointSet& set, const PickRequest& in,
                  TimePoint now, std::mt19937_64& rng);
  // Per-snapshot caches go when a new snapshot is installed.
  void reset() { upstreams_.clear(); }

  // Shared state of endpoint `index` of `upstream` (cached per snapshot).
  const std::shared_ptr<EndpointState>& endpoint_state(const CompiledUpstream& upstream,
                                                       int64_t index);

  // Requests of this worker waiting for a connection slot; a released
  // connection wakes the oldest at once (other workers' releases are seen
  // by the waiter's own short timer).
  void add_waiter(ClockTimer* t) { waiters_.push_back(t); }
  void remove_waiter(ClockTimer* t);
  void wake_one();

  std::unique_ptr<HealthChecker>& health() { return health_; }

 private:
  struct SetState {
    uint64_t cursor = 0;
    std::vector<double> current;  // smooth weighted round robin
    std::shared_ptr<const HashTable> table;
  };
  struct UpstreamRuntime {
    std::shared_ptr<ClusterState> cluster;  // upstream.state, or a private one
    std::vector<std::shared_ptr<EndpointState>> endpoints;
    std::unordered_map<const EndpointSet*, SetState> sets;
  };
  UpstreamRuntime& runtime(const CompiledUpstream& upstream);
  double weight_of(const CompiledUpstream& up, UpstreamRuntime& rt, uint32_t index,
                   TimePoint now) const;
  // The steps of pick(), over eligible_ (and mark_, set for its members).
  void collect_eligible(const CompiledUpstream& up, UpstreamRuntime& rt, const EndpointSet& set,
                        const PickRequest& in, TimePoint now);
  template <typename Weight>
  int64_t weighted_random(std::mt19937_64& rng, Weight&& weight) const;
  bool warming(const CompiledUpstream& up, UpstreamRuntime& rt, TimePoint now) const;
  int64_t pick_round_robin(const CompiledUpstream& up, UpstreamRuntime& rt, const EndpointSet& set,
                           SetState& st, TimePoint now);
  int64_t pick_least_request(const CompiledUpstream& up, UpstreamRuntime& rt,
                             const EndpointSet& set, TimePoint now, std::mt19937_64& rng);
  static std::optional<std::string_view> hash_key(const ConsistentHash& ch, const PickRequest& in,
                                                  std::mt19937_64& rng, PickResult& r,
                                                  std::string& generated);
  void pick_hashed(const CompiledUpstream& up, UpstreamRuntime& rt, const EndpointSet& set,
                   SetState& st, const PickRequest& in, std::mt19937_64& rng, PickResult& r);

  // Keyed by address: reset() on every install keeps a reused address from
  // meeting a stale entry (see reset()).
  std::unordered_map<const CompiledUpstream*, UpstreamRuntime> upstreams_;
  std::vector<uint32_t> eligible_;  // scratch, per pick
  std::vector<uint8_t> mark_;       // scratch: eligible_ as flags by endpoint index
  std::deque<ClockTimer*> waiters_;
  std::unique_ptr<HealthChecker> health_;
};

}  // namespace sluice
