#pragma once
// Per-worker load-balancer state. Cursors live per worker (no locks) and are
// reset when a new snapshot arrives.

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "config/snapshot.hpp"

namespace sluice {

class Balancer {
 public:
  // Picks an endpoint index (into CompiledUpstream::endpoints) from `set`, or
  // -1 when the set is empty.
  int64_t pick(const CompiledUpstream& upstream, const EndpointSet& set, std::mt19937_64& rng);
  void reset() { state_.clear(); }

 private:
  struct State {
    uint64_t cursor = 0;
    std::vector<int64_t> current;  // smooth weighted round robin
  };
  std::unordered_map<const EndpointSet*, State> state_;
};

}  // namespace sluice
