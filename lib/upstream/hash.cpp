#include "upstream/hash.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace sluice {

uint64_t hash_key(std::string_view key, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

namespace {
// Envoy caps rings at 8M points.
constexpr uint64_t kMaximumRingSize = 8 * 1024 * 1024;
}  // namespace

HashTable HashTable::ring(const std::vector<Member>& members, uint64_t minimum_ring_size) {
  HashTable t;
  double total = 0;
  for (const auto& m : members) total += m.weight;
  if (members.empty() || total <= 0) return t;
  // Points per unit of weight: the smallest power of two that reaches the
  // minimum ring size. Envoy scales exactly to the minimum instead, so every
  // membership change re-sizes every endpoint's share of points and moves
  // keys between endpoints that stayed; a power of two stays the same for
  // most changes, and then only the removed endpoint's keys move.
  double per_unit = std::exp2(std::ceil(std::log2(double(minimum_ring_size) / total)));
  per_unit = std::min(per_unit, double(kMaximumRingSize) / total);
  std::string buf;
  for (uint32_t i = 0; i < members.size(); ++i) {
    if (members[i].weight == 0) continue;
    uint64_t points = std::max<uint64_t>(1, std::llround(members[i].weight * per_unit));
    for (uint64_t n = 0; n < points; ++n) {
      buf = members[i].key;
      buf += '_';
      buf += std::to_string(n);
      t.points_.emplace_back(hash_key(buf), i);
    }
  }
  std::sort(t.points_.begin(), t.points_.end());
  return t;
}

HashTable HashTable::maglev(const std::vector<Member>& members, uint64_t table_size) {
  HashTable t;
  t.maglev_ = true;
  if (members.empty() || table_size == 0) return t;
  const uint64_t m = table_size;
  struct Perm {
    uint64_t offset, skip, next = 0, filled = 0;
    double weight;
  };
  std::vector<Perm> perms;
  double max_weight = 0;
  for (const auto& mem : members) {
    perms.push_back(Perm{hash_key(mem.key, 1) % m, m > 1 ? hash_key(mem.key, 2) % (m - 1) + 1 : 1,
                         0, 0, double(mem.weight)});
    max_weight = std::max(max_weight, double(mem.weight));
  }
  if (max_weight <= 0) return t;
  constexpr uint32_t kEmpty = UINT32_MAX;
  t.table_.assign(m, kEmpty);
  uint64_t filled = 0;
  // Rounds: in round r a member may take its next preferred free slot when
  // its share (weight / max weight) of r rounds is still ahead of what it
  // holds, so heavier members end up with proportionally more slots.
  for (uint64_t round = 1; filled < m; ++round) {
    for (uint32_t i = 0; i < perms.size() && filled < m; ++i) {
      Perm& p = perms[i];
      if (p.weight <= 0 || p.weight / max_weight * double(round) < double(p.filled + 1)) continue;
      uint64_t slot;
      do {
        slot = (p.offset + p.next * p.skip) % m;
        ++p.next;
      } while (t.table_[slot] != kEmpty);
      t.table_[slot] = i;
      ++p.filled;
      ++filled;
    }
  }
  return t;
}

uint32_t HashTable::at(uint64_t hash, uint64_t probe) const {
  if (maglev_) return table_[(hash % table_.size() + probe) % table_.size()];
  auto it =
      std::lower_bound(points_.begin(), points_.end(), std::pair<uint64_t, uint32_t>(hash, 0));
  size_t i = static_cast<size_t>(it - points_.begin());
  return points_[(i + probe) % points_.size()].second;
}

}  // namespace sluice
