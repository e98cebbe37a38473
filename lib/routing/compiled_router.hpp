#pragma once
// The compiled form of a RouterConfig: lowered strings, RE2 programs, hashed
// domains and a per-virtual-host path index. Immutable once built; shared by
// every Router copy and every worker.

#include <re2/re2.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http/string_match.hpp"
#include "sluice/matcher.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"
#include "sluice/router.hpp"

namespace sluice::policy {
struct CompiledRoutePolicy;
}

namespace sluice::detail {

// Transparent hashing so look-ups by string_view do not build a std::string.
// Inline and word-at-a-time: keys are short paths, prefixes and names, and a
// request probes several tables. Tables are built from configuration only,
// so requests cannot shape their chains.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ s.size();
    const char* p = s.data();
    size_t n = s.size();
    for (; n >= 8; p += 8, n -= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      h = (h ^ w) * 0xff51afd7ed558ccdull;
      h ^= h >> 32;
    }
    if (n > 0) {
      uint64_t w = 0;
      std::memcpy(&w, p, n);
      h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return static_cast<size_t>(h);
  }
};
struct StringEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, StringEqual>;

struct CompiledHeaderMatch {
  std::string name;  // lowered
  http::CompiledStringMatch match;
  bool invert = false;
};

struct CompiledQueryMatch {
  std::string name;
  http::CompiledStringMatch match;
};

struct CompiledMatcher {
  std::optional<http::CompiledStringMatch> uri;
  std::optional<http::CompiledStringMatch> method;
  std::optional<http::CompiledStringMatch> authority;
  std::optional<http::CompiledStringMatch> scheme;
  std::vector<CompiledHeaderMatch> headers;
  std::vector<CompiledQueryMatch> query_params;
  std::optional<uint16_t> port;

  bool matches(const RequestHead& request) const;
  // Why the request fails this block; empty when it matches.
  std::string failure(const RequestHead& request) const;
};

struct CompiledRoute {
  std::vector<CompiledMatcher> matches;  // ORed; empty matches everything

  // Which block a request satisfies: kEveryRequest when the route has no
  // blocks, the first matching block's index, or nullopt.
  static constexpr size_t kEveryRequest = SIZE_MAX;
  std::optional<size_t> matching_block(const RequestHead& request) const;
  bool accepts(const RequestHead& request) const { return matching_block(request).has_value(); }
};

// A route chosen by RouteIndex and the block that chose it.
struct RouteHit {
  size_t route = 0;
  size_t block = CompiledRoute::kEveryRequest;
};

// Finds the first matching route without scanning every rule. Each match
// block is filed under one key that any request it accepts must carry:
//   - an exact or prefix uri (case-sensitive or not);
//   - a regex uri's literal prefix (every string the regex fully matches
//     starts with it), filed with the prefixes;
//   - otherwise an exact, non-inverted header value (name lowered).
// A route with a block that has none of these is in `always`. A request's
// candidates are the union of the lists its path and headers hit; they are
// merged and verified in rule order, so the first match is the one a linear
// scan would find.
struct RouteIndex {
  using List = std::vector<uint32_t>;  // ascending route indices

  StringMap<List> exact;
  StringMap<List> exact_icase;  // keys lowered
  // Prefixes grouped by length, so a path probes one hash per distinct
  // length that exists, not one per rule.
  struct PrefixGroup {
    size_t length = 0;
    StringMap<List> by_prefix;
  };
  std::vector<PrefixGroup> prefix;        // ascending length; with regex prefixes
  std::vector<PrefixGroup> prefix_icase;  // keys lowered
  // Lowered header name -> exact value -> routes.
  StringMap<StringMap<List>> headers;
  // Bit n set: some indexed header name has length n (n < 64; bit 63 also
  // stands for every longer name). Skips hashing most request headers.
  uint64_t header_lengths = 0;
  List always;

  void build(const std::vector<CompiledRoute>& routes);
  std::optional<RouteHit> first_match(const std::vector<CompiledRoute>& routes,
                                      const RequestHead& request) const;
};

// The literal every full match of `re` starts with ("" when there is none),
// from RE2::PossibleMatchRange.
std::string regex_literal_prefix(const re2::RE2& re);

struct CompiledVirtualHost {
  std::vector<CompiledRoute> routes;
  RouteIndex index;
};

// Where a domain entry sends a request, and which entry it was (for explain).
struct DomainTarget {
  uint32_t virtual_host = 0;
  uint32_t domain = 0;    // index into VirtualHost::domains
  bool has_port = false;  // the entry names a port: it must match host:port
};

struct CompiledRouter {
  RouterConfig config;  // Selection pointers and config() refer into this
  std::vector<CompiledVirtualHost> virtual_hosts;

  StringMap<DomainTarget> exact_domains;  // lowered; may carry ":port"
  // Wildcard suffixes ("*.example.com" -> ".example.com"), longest first.
  struct SuffixGroup {
    size_t length = 0;
    StringMap<DomainTarget> by_suffix;
  };
  std::vector<SuffixGroup> wildcard_domains;
  std::optional<DomainTarget> catch_all;  // "*"

  static Result<std::shared_ptr<const CompiledRouter>> build(RouterConfig config);

  std::optional<DomainTarget> find_virtual_host(std::string_view authority) const;
};

// Compiled route policies by [virtual host][route].
using RoutePolicies = std::vector<std::vector<policy::CompiledRoutePolicy>>;

// Router::compile that also hands over the route policies it compiles to
// validate them, so the snapshot compiler does not compile them again. They
// point into the Router's config (Route objects), so they live as long as
// the returned Router. `policies` is filled only on success.
Result<Router> compile_router(RouterConfig config, RoutePolicies& policies);

}  // namespace sluice::detail
