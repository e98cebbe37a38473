// The per-virtual-host route index. It only narrows the set of rules to check;
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

uint64_t length_bit(size_t length) {
  return uint64_t{1} << std::min<size_t>(length, 63);
}

// Where one match block is filed.
struct Key {
  enum class Where { always, exact, prefix, header } where = Where::always;
  bool ignore_case = false;
  std::string value;        // path, prefix or header value
  std::string header_name;  // lowered
};

Key key_for(const CompiledMatcher& m) {
  Key key;
  if (m.uri) {
    const auto& uri = *m.uri;
    if (uri.kind == StringMatch::Kind::exact || uri.kind == StringMatch::Kind::prefix) {
      key.where = uri.kind == StringMatch::Kind::exact ? Key::Where::exact : Key::Where::prefix;
      key.ignore_case = uri.ignore_case;
      key.value = uri.value;
      return key;
    }
    if (uri.kind == StringMatch::Kind::regex && uri.regex) {
      // Regexes ignore ignore_uri_case (as Istio), so the literal is compared
      // case-sensitively; a (?i) regex yields only its caseless-safe part.
      if (std::string literal = regex_literal_prefix(*uri.regex); !literal.empty()) {
        key.where = Key::Where::prefix;
        key.value = std::move(literal);
        return key;
      }
    }
  }
  for (const auto& h : m.headers) {
    // Pseudo-headers live in RequestHead fields, not in the header list the
    // request side walks.
    if (h.invert || h.match.kind != StringMatch::Kind::exact || h.name.empty() || h.name[0] == ':')
      continue;
    key.where = Key::Where::header;
    key.header_name = h.name;
    key.value = h.match.value;
    return key;
  }
  return key;
}

// Sorted candidate lists being merged: a min-heap of cursors on the stack,
// moved to the heap allocator only when a request hits unusually many lists.
struct Cursor {
  const uint32_t* at;
  const uint32_t* end;
};

struct CursorHeap {
  static constexpr size_t kInline = 32;
  std::array<Cursor, kInline> inline_;
  std::vector<Cursor> spill;
  Cursor* data = inline_.data();
  size_t size = 0;

  static bool later(const Cursor& a, const Cursor& b) { return *a.at > *b.at; }

  void add(const RouteIndex::List& list) {
    if (list.empty()) return;
    if (size == kInline && spill.empty()) {
      spill.assign(inline_.begin(), inline_.end());
      data = spill.data();
    }
    if (!spill.empty()) {
      spill.push_back({list.data(), list.data() + list.size()});
      data = spill.data();
    } else {
      data[size] = {list.data(), list.data() + list.size()};
    }
    ++size;
  }
  void make() { std::make_heap(data, data + size, later); }
  // The smallest remaining route index; call only while size > 0.
  uint32_t pop() {
    std::pop_heap(data, data + size, later);
    Cursor& c = data[size - 1];
    uint32_t r = *c.at++;
    if (c.at == c.end)
      --size;
    else
      std::push_heap(data, data + size, later);
    return r;
  }
};

constexpr size_t kPathBuffer = 512;
constexpr size_t kNameBuffer = 128;

}  // namespace

namespace {

// The literal characters a pattern starts with, read from its text: cheap,
// and enough for the common `/api/v1/.*` shapes. Empty when the pattern could
// match something not starting with them (alternation, flags, an optional
// last character, ...): the caller then asks RE2.
std::string literal_head(std::string_view p) {
  if (p.find('|') != std::string_view::npos) return {};
  if (!p.empty() && p.front() == '^') p.remove_prefix(1);
  std::string out;
  size_t i = 0;
  while (i < p.size()) {
    char c = p[i];
    size_t len = 1;
    char lit = c;
    if (c == '\\') {
      if (i + 1 >= p.size()) return {};
      char e = p[i + 1];
      // Escaped punctuation is itself; escapes like \d or \w are classes.
      if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) break;
      lit = e;
      len = 2;
    } else if (std::string_view(".[]()*+?{}^$").find(c) != std::string_view::npos ||
               static_cast<unsigned char>(c) >= 0x80) {
      break;  // a metacharacter, or UTF-8 a quantifier could bind to as a whole
    }
    // A quantifier after this character makes it optional or repeated.
    size_t next = i + len;
    if (next < p.size() && std::string_view("*+?{").find(p[next]) != std::string_view::npos) break;
    out += lit;
    i = next;
  }
  return out;
}

}  // namespace

std::string regex_literal_prefix(const re2::RE2& re) {
  // Flags such as (?i) start with '(' and fall through to RE2 below.
  if (std::string head = literal_head(re.pattern()); !head.empty()) return head;
  // Any string s the regex matches satisfies min <= s <= max, so s starts
  // with their common prefix: a shorter s or one differing earlier would
  // fall outside the range. Longer ranges buy nothing for indexing.
  constexpr int kMaxLength = 128;
  std::string min, max;
  if (!re.PossibleMatchRange(&min, &max, kMaxLength)) return {};
  size_t n = 0;
  while (n < min.size() && n < max.size() && min[n] == max[n]) ++n;
  min.resize(n);
  return min;
}

void RouteIndex::build(const std::vector<CompiledRoute>& routes) {
  std::vector<Key> keys;
  for (uint32_t r = 0; r < routes.size(); ++r) {
    const auto& route = routes[r];
    keys.clear();
    bool any_always = route.matches.empty();
    for (const auto& m : route.matches) {
      keys.push_back(key_for(m));
      if (keys.back().where == Key::Where::always) any_always = true;
    }
    if (any_always) {
      always.push_back(r);
      continue;
    }
    for (const auto& key : keys) {
      switch (key.where) {
        case Key::Where::exact:
          append_unique((key.ignore_case ? exact_icase : exact)[key.value], r);
          break;
        case Key::Where::prefix: {
          auto& groups = key.ignore_case ? prefix_icase : prefix;
          append_unique(group_for(groups, key.value.size())[key.value], r);
          break;
        }
        case Key::Where::header:
          append_unique(headers[key.header_name][key.value], r);
          header_lengths |= length_bit(key.header_name.size());
          break;
        case Key::Where::always:
          break;
      }
    }
  }
}

std::optional<RouteHit> RouteIndex::first_match(const std::vector<CompiledRoute>& routes,
                                                const RequestHead& request) const {
  CursorHeap heap;
  auto probe_prefixes = [&](const std::vector<PrefixGroup>& groups, std::string_view path) {
    for (const auto& g : groups) {
      if (g.length > path.size()) break;
      if (auto it = g.by_prefix.find(path.substr(0, g.length)); it != g.by_prefix.end())
        heap.add(it->second);
    }
  };

  std::string_view path = request.path();
  heap.add(always);
  if (auto it = exact.find(path); it != exact.end()) heap.add(it->second);
  probe_prefixes(prefix, path);
  if (!exact_icase.empty() || !prefix_icase.empty()) {
    char buf[kPathBuffer];
    std::string spill;
    std::string_view lowered = lower_into(path, buf, sizeof buf, spill);
    if (auto it = exact_icase.find(lowered); it != exact_icase.end()) heap.add(it->second);
    probe_prefixes(prefix_icase, lowered);
  }

  if (!headers.empty()) {
    // Each indexed header the request carries contributes the routes filed
    // under its value. A repeated header is matched as its values joined
    // with "," (as the matcher does), so it is looked up once, joined.
    const auto& entries = request.headers.entries();
    char buf[kNameBuffer];
    std::string name_spill, joined;
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto& [name, value] = entries[i];
      if (!(header_lengths & length_bit(name.size()))) continue;
      std::string_view lowered = lower_into(name, buf, sizeof buf, name_spill);
      auto by_name = headers.find(lowered);
      if (by_name == headers.end()) continue;
      bool seen = false;
      for (size_t j = 0; j < i && !seen; ++j) seen = http::iequals(entries[j].first, name);
      if (seen) continue;
      std::string_view full = value;
      bool repeated = false;
      for (size_t j = i + 1; j < entries.size(); ++j) {
        if (!http::iequals(entries[j].first, name)) continue;
        if (!repeated) joined.assign(value);
        repeated = true;
        joined += ',';
        joined += entries[j].second;
        full = joined;
      }
      if (auto it = by_name->second.find(full); it != by_name->second.end()) heap.add(it->second);
    }
  }

  // Verify candidates lowest first, each once (a route may sit in several
  // lists; the merge yields repeats next to each other).
  heap.make();
  uint32_t last = UINT32_MAX;
  while (heap.size > 0) {
    uint32_t r = heap.pop();
    if (r == last) continue;
    last = r;
    if (auto block = routes[r].matching_block(request)) return RouteHit{r, *block};
  }
  return std::nullopt;
}

}  // namespace sluice::detail
