#include "upstream/balancer.hpp"

namespace sluice {

int64_t Balancer::pick(const CompiledUpstream& upstream, const EndpointSet& set,
                       std::mt19937_64& rng) {
  const auto& m = set.members;
  if (m.empty()) return -1;
  if (m.size() == 1) return m[0];
  if (upstream.config.load_balancer == LoadBalancer::random) {
    // Weighted random.
    uint64_t total = 0;
    for (auto i : m) total += upstream.endpoints[i].weight;
    uint64_t r = std::uniform_int_distribution<uint64_t>(0, total - 1)(rng);
    for (auto i : m) {
      if (r < upstream.endpoints[i].weight) return i;
      r -= upstream.endpoints[i].weight;
    }
    return m.back();
  }
  State& st = state_[&set];
  if (set.equal_weights) return m[st.cursor++ % m.size()];
  // Smooth weighted round robin: every endpoint gains its weight, the
  // richest is picked and pays the total. Spreads picks evenly in time.
  if (st.current.size() != m.size()) st.current.assign(m.size(), 0);
  int64_t total = 0;
  size_t best = 0;
  for (size_t k = 0; k < m.size(); ++k) {
    int64_t w = upstream.endpoints[m[k]].weight;
    st.current[k] += w;
    total += w;
    if (st.current[k] > st.current[best]) best = k;
  }
  st.current[best] -= total;
  return m[best];
}

}  // namespace sluice
