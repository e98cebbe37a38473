#pragma once
// Consistent-hash tables for one endpoint set: Envoy's ring hash (ketama
// style, weights give more points) and Maglev (a lookup table of prime size,
// weights give more entries). Built once per endpoint set and shared
// read-only by every worker. Entries are positions into the set's members.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// 64-bit hash of a key (FNV-1a, then a splitmix finaliser to spread the
// bits). Stable across runs and platforms, so a key always maps the same way.
uint64_t hash_key(std::string_view key, uint64_t seed = 0);

class HashTable {
 public:
  struct Member {
    std::string key;  // "ip:port"
    uint32_t weight = 1;
  };

  static HashTable ring(const std::vector<Member>& members, uint64_t minimum_ring_size);
  // `table_size` must be prime (validated at config compile).
  static HashTable maglev(const std::vector<Member>& members, uint64_t table_size);

  // The member for `hash`; `probe` > 0 walks on to the following entries,
  // used when the first choice is not eligible (unhealthy, ejected, tried).
  uint32_t at(uint64_t hash, uint64_t probe = 0) const;
  // Entries in the table (ring points or maglev slots).
  size_t size() const { return maglev_ ? table_.size() : points_.size(); }
  bool empty() const { return size() == 0; }

 private:
  bool maglev_ = false;
  std::vector<std::pair<uint64_t, uint32_t>> points_;  // ring: (hash, member), sorted
  std::vector<uint32_t> table_;                        // maglev
};

}  // namespace sluice
