// The per-virtual-host path index. It only narrows the set of rules to check;
// every candidate is verified in full, in rule order, so first-match results
// are exactly those of a linear scan.

#include <algorithm>
#include <array>

#include "routing/compiled_router.hpp"
#include "routing/text.hpp"

namespace sluice::detail {

namespace {

void append_unique(RouteIndex::List& list, uint32_t route) {
  // Routes are filed in ascending order, so a repeat can only be the last one.
  if (list.empty() || list.back() != route) list.push_back(route);
}

StringMap<RouteIndex::List>& group_for(std::vector<RouteIndex::PrefixGroup>& groups,
                                       size_t length) {
  auto it =
      std::lower_bound(groups.begin(), groups.end(), length,
                       [](const RouteIndex::PrefixGroup& g, size_t l) { return g.length < l; });
  if (it == groups.end() || it->length != length) {
    it = groups.insert(it, RouteIndex::PrefixGroup{});
    it->length = length;
  }
  return it->by_prefix;
}

// A match block can be filed under its uri only if its uri is exact or prefix;
// anything else (no uri, regex) makes the route a candidate for every request.
bool indexable(const CompiledMatcher& m) {
  return m.uri &&
         (m.uri->kind == StringMatch::Kind::exact || m.uri->kind == StringMatch::Kind::prefix);
}

// Enough lists for any sane config; beyond it first_match scans linearly.
constexpr size_t kMaxLists = 64;
constexpr size_t kPathBuffer = 512;

}  // namespace

void RouteIndex::build(const std::vector<CompiledRoute>& routes) {
  for (uint32_t r = 0; r < routes.size(); ++r) {
    const auto& route = routes[r];
    bool all_indexable = !route.matches.empty() &&
                         std::all_of(route.matches.begin(), route.matches.end(), indexable);
    if (!all_indexable) {
      always.push_back(r);
      continue;
    }
    for (const auto& m : route.matches) {
      const auto& uri = *m.uri;
      if (uri.kind == StringMatch::Kind::exact) {
        append_unique((uri.ignore_case ? exact_icase : exact)[uri.value], r);
      } else {
        auto& groups = uri.ignore_case ? prefix_icase : prefix;
        append_unique(group_for(groups, uri.value.size())[uri.value], r);
      }
    }
  }
}

std::optional<RouteHit> RouteIndex::first_match(const std::vector<CompiledRoute>& routes,
                                                const RequestHead& request) const {
  std::array<const List*, kMaxLists> lists;
  size_t count = 0;
  bool overflow = false;
  auto add = [&](const List& list) {
    if (count == kMaxLists) {
      overflow = true;
      return;
    }
    lists[count++] = &list;
  };
  auto probe_prefixes = [&](const std::vector<PrefixGroup>& groups, std::string_view path) {
    for (const auto& g : groups) {
      if (g.length > path.size()) break;
      if (auto it = g.by_prefix.find(path.substr(0, g.length)); it != g.by_prefix.end())
        add(it->second);
    }
  };

  std::string_view path = request.path();
  if (!always.empty()) add(always);
  if (auto it = exact.find(path); it != exact.end()) add(it->second);
  probe_prefixes(prefix, path);
  if (!exact_icase.empty() || !prefix_icase.empty()) {
    char buf[kPathBuffer];
    std::string spill;
    std::string_view lowered = lower_into(path, buf, sizeof buf, spill);
    if (auto it = exact_icase.find(lowered); it != exact_icase.end()) add(it->second);
    probe_prefixes(prefix_icase, lowered);
  }

  if (overflow) {
    for (size_t r = 0; r < routes.size(); ++r)
      if (auto block = routes[r].matching_block(request)) return RouteHit{r, *block};
    return std::nullopt;
  }

  // Merge the sorted candidate lists, checking each route once, lowest first.
  std::array<size_t, kMaxLists> pos{};
  for (;;) {
    uint32_t next = UINT32_MAX;
    for (size_t i = 0; i < count; ++i)
      if (pos[i] < lists[i]->size()) next = std::min(next, (*lists[i])[pos[i]]);
    if (next == UINT32_MAX) return std::nullopt;
    if (auto block = routes[next].matching_block(request)) return RouteHit{next, *block};
    for (size_t i = 0; i < count; ++i)
      if (pos[i] < lists[i]->size() && (*lists[i])[pos[i]] == next) ++pos[i];
  }
}

}  // namespace sluice::detail
