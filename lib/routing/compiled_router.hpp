#pragma once
// The compiled form of a RouterConfig: lowered strings, RE2 programs, hashed
// domains and a per-virtual-host path index. Immutable once built; shared by
// every Router copy and every worker.

#include <re2/re2.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sluice/matcher.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"
#include "sluice/router.hpp"

namespace sluice::detail {

// Transparent hashing so look-ups by string_view do not build a std::string.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
struct StringEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, StringEqual>;

// A StringMatch ready to run: the value lowered when the match ignores case,
// the regex compiled.
struct CompiledStringMatch {
  StringMatch::Kind kind = StringMatch::Kind::present;
  std::string value;
  bool ignore_case = false;
  std::unique_ptr<const re2::RE2> regex;

  bool matches(std::string_view input) const;
};

struct CompiledHeaderMatch {
  std::string name;  // lowered
  CompiledStringMatch match;
  bool invert = false;
};

struct CompiledQueryMatch {
  std::string name;
  CompiledStringMatch match;
};

struct CompiledMatcher {
  std::optional<CompiledStringMatch> uri;
  std::optional<CompiledStringMatch> method;
  std::optional<CompiledStringMatch> authority;
  std::optional<CompiledStringMatch> scheme;
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

// Finds the first matching route without scanning every rule. Each route is
// filed under the uri keys of its match blocks (exact path, path prefix, each
// case-sensitive or not) or, when some block has no indexable uri, in
// `always`. A request's candidates are the union of the lists its path hits;
// they are verified in rule order, so the first match is the same as a linear
// scan would find.
struct RouteIndex {
  using List = std::vector<uint32_t>;  // ascending route indices

  StringMap<List> exact;
  StringMap<List> exact_icase;  // keys lowered
  // Prefixes grouped by length, so a path probes one hash per distinct length.
  struct PrefixGroup {
    size_t length = 0;
    StringMap<List> by_prefix;
  };
  std::vector<PrefixGroup> prefix;        // ascending length
  std::vector<PrefixGroup> prefix_icase;  // keys lowered
  List always;

  void build(const std::vector<CompiledRoute>& routes);
  std::optional<RouteHit> first_match(const std::vector<CompiledRoute>& routes,
                                      const RequestHead& request) const;
};

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

}  // namespace sluice::detail
