// AuthorizationPolicy validation, compilation and evaluation. The compiled
// form mirrors what Istio generates for Envoy's RBAC filter: per rule, a list
// of sources (ORed), a list of operations (ORed) and the conditions (ANDed),
// each a list of predicates (ANDed) on one request attribute.

#include "security/authz.hpp"

#include <fmt/format.h>
#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <utility>

#include "http/regex.hpp"
#include "http/tokens.hpp"

namespace sluice::security {

std::string_view to_string(AuthzAction action) {
  switch (action) {
    case AuthzAction::allow:
      return "ALLOW";
    case AuthzAction::deny:
      return "DENY";
    case AuthzAction::audit:
      return "AUDIT";
    case AuthzAction::custom:
      return "CUSTOM";
  }
  return "ALLOW";
}

std::string_view AuthzDecision::details() const {
  if (verdict != AuthzVerdict::deny) return {};
  return rule ? std::string_view(rule->denied_details)
              : std::string_view("rbac_access_denied_matched_policy[none]");
}

AuthzRequest authz_request(const RequestHead& head) {
  AuthzRequest r;
  r.method = head.method;
  r.authority = head.authority;
  r.path = head.path();
  r.headers = &head.headers;
  r.destination_port = head.listener_port;
  return r;
}

namespace {

// The request attribute a predicate reads.
enum class Attr : uint8_t {
  host,
  method,
  path,
  destination_port,
  destination_ip,
  source_ip,
  remote_ip,
  source_principal,
  source_namespace,
  request_principal,
  audiences,
  presenter,
  claim,
  header,
  sni,
};

enum class Kind : uint8_t {
  exact,
  prefix,
  suffix,
  non_empty,      // "*" where Istio generates the regex ".+"
  present,        // "*" where Istio generates a header presence match
  prefix_suffix,  // principal "*abc": Istio's regex "spiffe://.*abc"
  glob,           // namespace: Istio's regex ".*/ns/<value, '*' as .*>/.*"
  regex,          // path template
};

struct Pattern {
  Kind kind = Kind::exact;
  std::string text;
  std::string suffix;  // prefix_suffix only
  std::unique_ptr<const re2::RE2> regex;
};

// requestPrincipals / request.auth.principal: iss and sub matched apart.
struct PrincipalPattern {
  Pattern iss;
  Pattern sub;
};

struct Predicate {
  Attr attr = Attr::path;
  std::string header;                   // Attr::header, lower-case
  std::vector<std::string> claim_path;  // Attr::claim
  std::vector<Pattern> values, not_values;
  std::vector<Cidr> cidrs, not_cidrs;
  std::vector<uint16_t> ports, not_ports;
  std::vector<PrincipalPattern> principals, not_principals;
  // The policy field it came from ("rules[0].to[0].operation.paths"), for
  // explain.
  std::string field;
};

using Conjunction = std::vector<Predicate>;

struct CompiledRule {
  AuthzRuleRef ref;
  std::vector<Conjunction> from;  // any; empty: no constraint
  std::vector<Conjunction> to;    // any; empty: no constraint
  Conjunction when;               // all
};

// ---------------------------------------------------------------------------
// Matching.

bool equal(std::string_view a, std::string_view b, bool ignore_case) {
  return ignore_case ? http::iequals(a, b) : a == b;
}

bool starts_with(std::string_view s, std::string_view p, bool ignore_case) {
  return s.size() >= p.size() && equal(s.substr(0, p.size()), p, ignore_case);
}

bool ends_with(std::string_view s, std::string_view p, bool ignore_case) {
  return s.size() >= p.size() && equal(s.substr(s.size() - p.size()), p, ignore_case);
}

// '*' matches any run of characters, everything else itself.
bool glob_match(std::string_view pattern, std::string_view s) {
  size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = i;
    } else if (p < pattern.size() && pattern[p] == s[i]) {
      ++p;
      ++i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// A value the attribute has (present attributes only).
bool matches(const Pattern& m, std::string_view v, bool ignore_case = false) {
  switch (m.kind) {
    case Kind::exact:
      return equal(v, m.text, ignore_case);
    case Kind::prefix:
      return starts_with(v, m.text, ignore_case);
    case Kind::suffix:
      return ends_with(v, m.text, ignore_case);
    case Kind::non_empty:
      return !v.empty();
    case Kind::present:
      return true;
    case Kind::prefix_suffix:
      return v.size() >= m.text.size() + m.suffix.size() && starts_with(v, m.text, false) &&
             ends_with(v, m.suffix, false);
    case Kind::glob:
      return glob_match(m.text, v);
    case Kind::regex:
      return re2::RE2::FullMatch(v, *m.regex);
  }
  return false;
}

// Istio matches request.headers values with the regex
// ^v$|^v,.*|.*,v,.*|.*,v$ over the header's lines joined with ',': the value
// must occur bounded by the start or a ',' on its left (exact, prefix) and
// by the end or a ',' on its right (exact, suffix).
bool matches_header(const Pattern& m, std::string_view joined) {
  if (m.kind == Kind::present) return true;
  bool left = m.kind == Kind::exact || m.kind == Kind::prefix;
  bool right = m.kind == Kind::exact || m.kind == Kind::suffix;
  for (size_t at = joined.find(m.text); at != std::string_view::npos;
       at = joined.find(m.text, at + 1)) {
    size_t end = at + m.text.size();
    if (left && at != 0 && joined[at - 1] != ',') continue;
    if (right && end != joined.size() && joined[end] != ',') continue;
    return true;
  }
  return false;
}

// values: at least one matches (when there are any); not_values: none does.
template <typename T, typename F>
bool holds(const std::vector<T>& values, const std::vector<T>& not_values, F&& match) {
  if (!values.empty() && std::none_of(values.begin(), values.end(), match)) return false;
  return std::none_of(not_values.begin(), not_values.end(), match);
}

bool holds_cidrs(const Predicate& p, const IpAddress& address) {
  return holds(p.cidrs, p.not_cidrs, [&](const Cidr& c) { return c.contains(address); });
}

bool holds_strings(const Predicate& p, std::string_view value, bool ignore_case = false) {
  return holds(p.values, p.not_values,
               [&](const Pattern& m) { return matches(m, value, ignore_case); });
}

// Envoy's `authenticated` principal: any URI SAN, then any DNS SAN, then the
// subject of the peer certificate.
bool holds_peer_names(const Predicate& p, const PeerIdentity* peer) {
  return holds(p.values, p.not_values, [&](const Pattern& m) {
    if (!peer) return false;
    for (const auto& san : peer->uri_sans)
      if (matches(m, san)) return true;
    for (const auto& san : peer->dns_sans)
      if (matches(m, san)) return true;
    return !peer->subject.empty() && matches(m, peer->subject);
  });
}

// Any of `values` (a JWT attribute or claim, a string or a list).
template <typename Range>
bool holds_any_of(const Predicate& p, const Range& values) {
  return holds(p.values, p.not_values, [&](const Pattern& m) {
    return std::any_of(values.begin(), values.end(), [&](const auto& v) {
      return !std::string_view(v).empty() && matches(m, v);
    });
  });
}

const JwtClaim* find_claim(const JwtIdentity& jwt, const std::vector<std::string>& path) {
  for (const auto& claim : jwt.claims)
    if (claim.path == path) return &claim;
  return nullptr;
}

bool holds_header(const Predicate& p, const Headers* headers) {
  bool present = false;
  std::string_view value;
  std::string joined;  // only when the header repeats
  if (headers) {
    for (const auto& [name, v] : headers->entries()) {
      if (!http::iequals(name, p.header)) continue;
      if (!present) {
        present = true;
        value = v;
        continue;
      }
      if (joined.empty()) joined.assign(value);
      joined += ',';
      joined += v;
      value = joined;
    }
  }
  return holds(p.values, p.not_values,
               [&](const Pattern& m) { return present && matches_header(m, value); });
}

bool holds(const Predicate& p, const AuthzRequest& r) {
  switch (p.attr) {
    case Attr::host:
      return holds_strings(p, r.authority, /*ignore_case=*/true);
    case Attr::method:
      return holds_strings(p, r.method);
    case Attr::path:
      return holds_strings(p, r.path);
    case Attr::sni:
      return holds(p.values, p.not_values,
                   [&](const Pattern& m) { return !r.sni.empty() && matches(m, r.sni); });
    case Attr::destination_port:
      return holds(p.ports, p.not_ports, [&](uint16_t port) { return port == r.destination_port; });
    case Attr::destination_ip:
      return holds_cidrs(p, r.destination_ip);
    case Attr::source_ip:
      return holds_cidrs(p, r.peer);
    case Attr::remote_ip:
      return holds_cidrs(p, r.remote.valid() ? r.remote : r.peer);
    case Attr::source_principal:
    case Attr::source_namespace:
      return holds_peer_names(p, r.peer_identity);
    case Attr::request_principal:
      return holds(p.principals, p.not_principals, [&](const PrincipalPattern& m) {
        return r.jwt && !r.jwt->issuer.empty() && !r.jwt->subject.empty() &&
               matches(m.iss, r.jwt->issuer) && matches(m.sub, r.jwt->subject);
      });
    case Attr::audiences:
      if (!r.jwt) return holds_any_of(p, std::span<const std::string>());
      return holds_any_of(p, r.jwt->audiences);
    case Attr::presenter: {
      std::string_view presenter = r.jwt ? r.jwt->presenter : std::string_view();
      return holds_any_of(p, std::span<const std::string_view>(&presenter, 1));
    }
    case Attr::claim: {
      const JwtClaim* claim = r.jwt ? find_claim(*r.jwt, p.claim_path) : nullptr;
      if (!claim) return holds_any_of(p, std::span<const std::string>());
      return holds_any_of(p, claim->values);
    }
    case Attr::header:
      return holds_header(p, r.headers);
  }
  return false;
}

bool all_hold(const Conjunction& c, const AuthzRequest& r) {
  return std::all_of(c.begin(), c.end(), [&](const Predicate& p) { return holds(p, r); });
}

bool any_holds(const std::vector<Conjunction>& list, const AuthzRequest& r) {
  return list.empty() || std::any_of(list.begin(), list.end(),
                                     [&](const Conjunction& c) { return all_hold(c, r); });
}

bool rule_matches(const CompiledRule& rule, const AuthzRequest& r) {
  // Operations first: method and path are the cheapest to reject on.
  return any_holds(rule.to, r) && any_holds(rule.from, r) && all_hold(rule.when, r);
}

const CompiledRule* first_match(const std::vector<CompiledRule>& rules, const AuthzRequest& r) {
  for (const auto& rule : rules)
    if (rule_matches(rule, r)) return &rule;
  return nullptr;
}

// The request's value of a string attribute and its name, for explain;
// null for the rest.
std::pair<const char*, std::string_view> attribute_text(const Predicate& p, const AuthzRequest& r) {
  switch (p.attr) {
    case Attr::host:
      return {"host", r.authority};
    case Attr::method:
      return {"method", r.method};
    case Attr::path:
      return {"path", r.path};
    case Attr::sni:
      return {"sni", r.sni};
    default:
      return {nullptr, {}};
  }
}

// Why `rule` does not match: the first predicate that fails, in the order
// rule_matches() tries them.
std::string first_failure(const CompiledRule& rule, const AuthzRequest& r) {
  auto failing = [&](const Conjunction& c) -> const Predicate* {
    for (const auto& p : c)
      if (!holds(p, r)) return &p;
    return nullptr;
  };
  auto describe = [&](const Predicate& p, size_t alternatives) {
    std::string out = fmt::format("{} does not hold", p.field);
    if (auto [name, value] = attribute_text(p, r); name)
      out += fmt::format(" for {} \"{}\"", name, value);
    if (alternatives > 1) out += fmt::format(", nor does any of the other {}", alternatives - 1);
    return out;
  };
  if (!any_holds(rule.to, r)) return describe(*failing(rule.to.front()), rule.to.size());
  if (!any_holds(rule.from, r)) return describe(*failing(rule.from.front()), rule.from.size());
  if (const Predicate* p = failing(rule.when)) return describe(*p, 1);
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------
// Compilation.

struct AuthzEngine::Impl {
  // Each list sorted by rule id: Envoy keeps an RBAC filter's policies in a
  // sorted map, so the first match in id order is the one reported.
  std::vector<CompiledRule> custom, audit, root_deny, deny, allow;
  bool has_allow = false;  // an ALLOW policy exists, even one without rules
  size_t policies = 0;
  std::string provider;
};

namespace {

// How a string field's values become patterns (Istio's generator per field).
enum class Flavor : uint8_t {
  plain,      // StringMatcher: "*" is ".+"
  presence,   // HeaderMatcher (methods, headers, hosts): "*" is a presence match
  principal,  // "spiffe://" in front
  ns,         // namespace glob inside the principal
  path,       // plain, or a path template
};

// Envoy's uri_template character classes: one segment of pchars (no '/'),
// and any run of pchars and '/'.
constexpr std::string_view kTemplateOne = "[a-zA-Z0-9\\-._~%!$&'()+,;:@=]+";
constexpr std::string_view kTemplateAny = "[a-zA-Z0-9\\-._~%!$&'()+,;:@=/]*";

bool is_path_template(std::string_view v) {
  return v.find("{*}") != std::string_view::npos || v.find("{**}") != std::string_view::npos;
}

class PolicyCompiler {
 public:
  PolicyCompiler(const AuthorizationPolicy& policy)
      : policy_(policy),
        object_(fmt::format("AuthorizationPolicy {}/{}", policy.ns, policy.name)) {}

  Error error(std::string field, std::string message) const {
    return Error{object_, std::move(field), std::move(message)};
  }

  Status compile(std::vector<CompiledRule>& out) {
    const auto& p = policy_;
    if (p.name.empty()) return error("metadata.name", "must not be empty");
    if (p.action != AuthzAction::custom && !p.provider.empty())
      return error("provider.name",
                   fmt::format("only allowed with action CUSTOM, found {}", to_string(p.action)));
    if (p.action == AuthzAction::custom) {
      if (p.rules.empty())
        return error("rules",
                     "CUSTOM action without rules is never triggered; add an empty rule {} to "
                     "trigger it for every request");
      if (p.provider.empty()) return error("provider.name", "must not be empty with action CUSTOM");
    }
    if (p.action == AuthzAction::deny && p.rules.empty())
      return error("rules",
                   "DENY action without rules is never triggered; add an empty rule {} to deny "
                   "every request");
    for (size_t i = 0; i < p.rules.size(); ++i) {
      CompiledRule rule;
      rule.ref.ns = p.ns;
      rule.ref.name = p.name;
      rule.ref.rule = static_cast<uint32_t>(i);
      rule.ref.action = p.action;
      rule.ref.provider = p.provider;
      rule.ref.id = fmt::format("ns[{}]-policy[{}]-rule[{}]", p.ns, p.name, i);
      rule.ref.denied_details = fmt::format("rbac_access_denied_matched_policy[{}]", rule.ref.id);
      if (Status s = compile_rule(p.rules[i], fmt::format("rules[{}]", i), rule); !s) return s;
      out.push_back(std::move(rule));
    }
    return {};
  }

 private:
  bool custom() const { return policy_.action == AuthzAction::custom; }

  Status compile_rule(const AuthzRule& in, const std::string& field, CompiledRule& out) {
    for (size_t j = 0; j < in.from.size(); ++j) {
      Conjunction c;
      if (Status s = compile_source(in.from[j], fmt::format("{}.from[{}].source", field, j), c); !s)
        return s;
      out.from.push_back(std::move(c));
    }
    for (size_t j = 0; j < in.to.size(); ++j) {
      Conjunction c;
      if (Status s = compile_operation(in.to[j], fmt::format("{}.to[{}].operation", field, j), c);
          !s)
        return s;
      out.to.push_back(std::move(c));
    }
    for (size_t j = 0; j < in.when.size(); ++j) {
      Predicate p;
      if (Status s = compile_condition(in.when[j], fmt::format("{}.when[{}]", field, j), p); !s)
        return s;
      out.when.push_back(std::move(p));
    }
    return {};
  }

  Status compile_source(const AuthzSource& s, const std::string& field, Conjunction& out) {
    bool empty = s.principals.empty() && s.not_principals.empty() && s.request_principals.empty() &&
                 s.not_request_principals.empty() && s.namespaces.empty() &&
                 s.not_namespaces.empty() && s.ip_blocks.empty() && s.not_ip_blocks.empty() &&
                 s.remote_ip_blocks.empty() && s.not_remote_ip_blocks.empty();
    if (empty) return error(field, "must not be empty");
    if (custom()) {
      // Istio's validation: CUSTOM rules cannot use the mTLS or JWT identity.
      const std::pair<const std::vector<std::string>*, const char*> identity[] = {
          {&s.principals, "principals"},
          {&s.not_principals, "notPrincipals"},
          {&s.request_principals, "requestPrincipals"},
          {&s.not_request_principals, "notRequestPrincipals"},
          {&s.namespaces, "namespaces"},
          {&s.not_namespaces, "notNamespaces"}};
      for (const auto& [values, name] : identity)
        if (!values->empty())
          return error(fmt::format("{}.{}", field, name), "not supported with action CUSTOM");
    }
    Status s1 = strings(Attr::source_principal, Flavor::principal, s.principals, s.not_principals,
                        field, "principals", "notPrincipals", out);
    if (!s1) return s1;
    if (Status st = request_principals(s.request_principals, s.not_request_principals, field,
                                       "requestPrincipals", "notRequestPrincipals", out);
        !st)
      return st;
    if (Status st = strings(Attr::source_namespace, Flavor::ns, s.namespaces, s.not_namespaces,
                            field, "namespaces", "notNamespaces", out);
        !st)
      return st;
    if (Status st = cidrs(Attr::source_ip, s.ip_blocks, s.not_ip_blocks, field, "ipBlocks",
                          "notIpBlocks", out);
        !st)
      return st;
    return cidrs(Attr::remote_ip, s.remote_ip_blocks, s.not_remote_ip_blocks, field,
                 "remoteIpBlocks", "notRemoteIpBlocks", out);
  }

  Status compile_operation(const AuthzOperation& o, const std::string& field, Conjunction& out) {
    bool empty = o.hosts.empty() && o.not_hosts.empty() && o.ports.empty() && o.not_ports.empty() &&
                 o.methods.empty() && o.not_methods.empty() && o.paths.empty() &&
                 o.not_paths.empty();
    if (empty) return error(field, "must not be empty");
    if (Status s = strings(Attr::method, Flavor::presence, o.methods, o.not_methods, field,
                           "methods", "notMethods", out);
        !s)
      return s;
    if (Status s = strings(Attr::path, Flavor::path, o.paths, o.not_paths, field, "paths",
                           "notPaths", out);
        !s)
      return s;
    if (Status s = strings(Attr::host, Flavor::presence, o.hosts, o.not_hosts, field, "hosts",
                           "notHosts", out);
        !s)
      return s;
    return ports(o.ports, o.not_ports, field, "ports", "notPorts", out);
  }

  Status compile_condition(const AuthzCondition& c, const std::string& field, Predicate& out) {
    std::string key_field = field + ".key";
    if (c.key.empty()) return error(key_field, "must not be empty");
    if (c.values.empty() && c.not_values.empty())
      return error(
          field, fmt::format("at least one of values or notValues must be set for key {}", c.key));
    std::string_view key = c.key;
    std::optional<Flavor> flavor;  // string-valued keys
    if (key == "source.ip" || key == "remote.ip" || key == "destination.ip") {
      Attr attr = key == "source.ip"   ? Attr::source_ip
                  : key == "remote.ip" ? Attr::remote_ip
                                       : Attr::destination_ip;
      Conjunction one;
      Status s = cidrs(attr, c.values, c.not_values, field, "values", "notValues", one, true);
      if (!s) return s;
      out = std::move(one.front());
      return {};
    }
    if (key == "destination.port") {
      Conjunction one;
      Status s = ports(c.values, c.not_values, field, "values", "notValues", one, true);
      if (!s) return s;
      out = std::move(one.front());
      return {};
    }
    bool identity = key == "source.namespace" || key == "source.principal" ||
                    key.substr(0, 13) == "request.auth.";
    if (custom() && identity)
      return error(key_field, fmt::format("{} is not supported with action CUSTOM", key));
    if (key == "request.auth.principal") {
      Conjunction one;
      Status s =
          request_principals(c.values, c.not_values, field, "values", "notValues", one, true);
      if (!s) return s;
      out = std::move(one.front());
      return {};
    }
    Attr attr = Attr::sni;
    if (key == "source.namespace") {
      attr = Attr::source_namespace;
      flavor = Flavor::ns;
    } else if (key == "source.principal") {
      attr = Attr::source_principal;
      flavor = Flavor::principal;
    } else if (key == "request.auth.audiences") {
      attr = Attr::audiences;
      flavor = Flavor::plain;
    } else if (key == "request.auth.presenter") {
      attr = Attr::presenter;
      flavor = Flavor::plain;
    } else if (key == "connection.sni") {
      attr = Attr::sni;
      flavor = Flavor::plain;
    } else if (key.starts_with("request.headers")) {
      std::string_view rest = key.substr(15);
      if (rest.size() < 3 || rest.front() != '[' || rest.back() != ']')
        return error(key_field,
                     fmt::format("invalid key \"{}\": expecting request.headers[NAME]", key));
      attr = Attr::header;
      out.header = http::to_lower(rest.substr(1, rest.size() - 2));
      flavor = Flavor::presence;
    } else if (key.starts_with("request.auth.claims")) {
      auto path = claim_path(key.substr(19));
      if (!path)
        return error(key_field,
                     fmt::format("invalid key \"{}\": expecting request.auth.claims[NAME] or "
                                 "nested request.auth.claims[NAME][NAME]",
                                 key));
      attr = Attr::claim;
      out.claim_path = std::move(*path);
      flavor = Flavor::plain;
    } else if (key.starts_with("experimental.envoy.filters.")) {
      return error(key_field, fmt::format("{} matches Envoy filter metadata, which sluice does "
                                          "not have; not supported",
                                          key));
    } else if (key == "destination.namespace") {
      return error(key_field, "destination.namespace is replaced by the metadata.namespace");
    } else if (key.starts_with("destination.labels")) {
      return error(key_field, fmt::format("{} is replaced by the workload selector", key));
    } else if (key == "destination.name" || key == "destination.user") {
      return error(key_field,
                   fmt::format("deprecated attribute {}: only supported in v1alpha1", key));
    } else {
      return error(key_field, fmt::format("unknown attribute \"{}\"", key));
    }
    // connection.sni and JWT attributes: Istio's StringMatcher; headers
    // keep presence for "*".
    Conjunction one;
    Status s =
        strings(attr, *flavor, c.values, c.not_values, field, "values", "notValues", one, true);
    if (!s) return s;
    one.front().header = std::move(out.header);
    one.front().claim_path = std::move(out.claim_path);
    out = std::move(one.front());
    return {};
  }

  // "[a]" -> {"a"}; "[a][b]" -> {"a", "b"}.
  static std::optional<std::vector<std::string>> claim_path(std::string_view rest) {
    std::vector<std::string> path;
    while (!rest.empty()) {
      if (rest.front() != '[') return std::nullopt;
      size_t close = rest.find(']');
      if (close == std::string_view::npos || close == 1) return std::nullopt;
      std::string_view name = rest.substr(1, close - 1);
      if (name.find('[') != std::string_view::npos) return std::nullopt;
      path.emplace_back(name);
      rest.remove_prefix(close + 1);
    }
    if (path.empty()) return std::nullopt;
    return path;
  }

  static void push(Conjunction& out, Predicate p, const std::string& field, const char* name) {
    p.field = fmt::format("{}.{}", field, name);
    out.push_back(std::move(p));
  }

  // One predicate over `values` / `not_values` of a string field, appended
  // to `out` when either list is set (or always, for a condition).
  Status strings(Attr attr, Flavor flavor, const std::vector<std::string>& values,
                 const std::vector<std::string>& not_values, const std::string& field,
                 const char* name, const char* not_name, Conjunction& out, bool always = false) {
    if (values.empty() && not_values.empty() && !always) return {};
    Predicate p;
    p.attr = attr;
    for (bool negated : {false, true}) {
      const auto& list = negated ? not_values : values;
      const char* list_name = negated ? not_name : name;
      for (size_t k = 0; k < list.size(); ++k) {
        std::string f = fmt::format("{}.{}[{}]", field, list_name, k);
        auto pattern = make_pattern(flavor, list[k], f);
        if (!pattern) return pattern.error();
        (negated ? p.not_values : p.values).push_back(std::move(*pattern));
      }
    }
    push(out, std::move(p), field, values.empty() ? not_name : name);
    return {};
  }

  Result<Pattern> make_pattern(Flavor flavor, const std::string& v, const std::string& field) {
    if (v.empty()) return error(field, "empty value not allowed");
    Pattern m;
    if (flavor == Flavor::path && is_path_template(v)) return path_template(v, field);
    if (flavor == Flavor::ns) {
      // Istio builds the regex ".*/ns/<value>/.*" with '*' as ".*" and the
      // rest unescaped; a namespace name has no regex syntax, so anything
      // else would mean something different here.
      for (char c : v)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '*'))
          return error(field, fmt::format("invalid namespace \"{}\": a Kubernetes namespace name, "
                                          "'*' allowed",
                                          v));
      m.kind = Kind::glob;
      m.text = fmt::format("*/ns/{}/*", v);
      return m;
    }
    if (v == "*") {
      m.kind = flavor == Flavor::presence ? Kind::present : Kind::non_empty;
      return m;
    }
    std::string_view lead = flavor == Flavor::principal ? "spiffe://" : "";
    if (v.front() == '*') {
      if (lead.empty()) {
        m.kind = Kind::suffix;
        m.text = v.substr(1);
      } else {
        m.kind = Kind::prefix_suffix;
        m.text = lead;
        m.suffix = v.substr(1);
      }
    } else if (v.back() == '*') {
      m.kind = Kind::prefix;
      m.text = fmt::format("{}{}", lead, std::string_view(v).substr(0, v.size() - 1));
    } else {
      m.kind = Kind::exact;
      m.text = fmt::format("{}{}", lead, v);
    }
    return m;
  }

  // "/api/{*}/items/{**}" -> an RE2 full match, as Envoy's uri_template
  // matcher compiles it. Istio's validation refuses named variables, "{}"
  // and bare '*' next to '/'; sluice also refuses any other '*', '{' or '}'
  // outside the two operators, and "{*}" after "{**}" (Envoy: "**" must be
  // the last operator).
  Result<Pattern> path_template(const std::string& v, const std::string& field) {
    auto invalid = [&](std::string_view why) {
      return error(field, fmt::format("invalid path template \"{}\": {}", v, why));
    };
    if (v.front() != '/') return invalid("must start with '/'");
    std::string regex;
    std::string_view rest = v;
    bool seen_any = false;
    while (!rest.empty()) {
      size_t op = rest.find('{');
      std::string_view literal = rest.substr(0, op);
      if (literal.find_first_of("*}") != std::string_view::npos)
        return invalid("only {*} and {**} may hold '*'");
      regex += re2::RE2::QuoteMeta(re2::StringPiece(literal.data(), literal.size()));
      if (op == std::string_view::npos) break;
      rest.remove_prefix(op);
      if (rest.starts_with("{**}")) {
        if (seen_any) return invalid("{**} must be the last operator");
        seen_any = true;
        regex += kTemplateAny;
        rest.remove_prefix(4);
      } else if (rest.starts_with("{*}")) {
        if (seen_any) return invalid("{**} must be the last operator");
        regex += kTemplateOne;
        rest.remove_prefix(3);
      } else {
        return invalid("only the operators {*} and {**} are supported");
      }
    }
    Pattern m;
    m.kind = Kind::regex;
    m.text = v;
    m.regex = std::make_unique<const re2::RE2>(regex, http::regex_options());
    if (!m.regex->ok()) return invalid(m.regex->error());
    return m;
  }

  Status request_principals(const std::vector<std::string>& values,
                            const std::vector<std::string>& not_values, const std::string& field,
                            const char* name, const char* not_name, Conjunction& out,
                            bool always = false) {
    if (values.empty() && not_values.empty() && !always) return {};
    Predicate p;
    p.attr = Attr::request_principal;
    for (bool negated : {false, true}) {
      const auto& list = negated ? not_values : values;
      for (size_t k = 0; k < list.size(); ++k) {
        const std::string& v = list[k];
        if (v.empty())
          return error(fmt::format("{}.{}[{}]", field, negated ? not_name : name, k),
                       "empty value not allowed");
        (negated ? p.not_principals : p.principals).push_back(principal_pattern(v));
      }
    }
    push(out, std::move(p), field, values.empty() ? not_name : name);
    return {};
  }

  // Istio splits "<iss>/<sub>" at the last '/' (an issuer may be a URL) and
  // matches the two claims apart: "*" any token; "*x" a sub ending in x (or,
  // with a '/', an iss ending in the part before it and that exact sub);
  // "x*" an iss starting with x (or, with a '/', that exact iss and a sub
  // starting with the rest).
  static PrincipalPattern principal_pattern(std::string_view v) {
    auto make = [](Kind kind, std::string_view text = {}) {
      Pattern m;
      m.kind = kind;
      m.text = text;
      return m;
    };
    size_t slash = v.rfind('/');
    bool found = slash != std::string_view::npos;
    std::string_view iss = found ? v.substr(0, slash) : v;
    std::string_view sub = found ? v.substr(slash + 1) : std::string_view();
    PrincipalPattern p;
    if (v == "*") {
      p.iss = make(Kind::non_empty);
      p.sub = make(Kind::non_empty);
    } else if (v.front() == '*') {
      if (found) {
        p.iss = iss == "*" ? make(Kind::non_empty) : make(Kind::suffix, iss.substr(1));
        p.sub = make(Kind::exact, sub);
      } else {
        p.iss = make(Kind::non_empty);
        p.sub = make(Kind::suffix, v.substr(1));
      }
    } else if (v.back() == '*') {
      if (found) {
        p.iss = make(Kind::exact, iss);
        p.sub =
            sub == "*" ? make(Kind::non_empty) : make(Kind::prefix, sub.substr(0, sub.size() - 1));
      } else {
        p.iss = make(Kind::prefix, v.substr(0, v.size() - 1));
        p.sub = make(Kind::non_empty);
      }
    } else {
      p.iss = make(Kind::exact, iss);
      p.sub = make(Kind::exact, sub);
    }
    return p;
  }

  Status cidrs(Attr attr, const std::vector<std::string>& values,
               const std::vector<std::string>& not_values, const std::string& field,
               const char* name, const char* not_name, Conjunction& out, bool always = false) {
    if (values.empty() && not_values.empty() && !always) return {};
    Predicate p;
    p.attr = attr;
    for (bool negated : {false, true}) {
      const auto& list = negated ? not_values : values;
      for (size_t k = 0; k < list.size(); ++k) {
        std::string f = fmt::format("{}.{}[{}]", field, negated ? not_name : name, k);
        const std::string& v = list[k];
        if (v.empty()) return error(f, "empty value not allowed");
        auto cidr = Cidr::parse(v);
        if (!cidr)
          return error(f, fmt::format("invalid {} \"{}\"",
                                      v.find('/') == std::string::npos ? "IP address" : "CIDR", v));
        (negated ? p.not_cidrs : p.cidrs).push_back(*cidr);
      }
    }
    push(out, std::move(p), field, values.empty() ? not_name : name);
    return {};
  }

  Status ports(const std::vector<std::string>& values, const std::vector<std::string>& not_values,
               const std::string& field, const char* name, const char* not_name, Conjunction& out,
               bool always = false) {
    if (values.empty() && not_values.empty() && !always) return {};
    Predicate p;
    p.attr = Attr::destination_port;
    for (bool negated : {false, true}) {
      const auto& list = negated ? not_values : values;
      for (size_t k = 0; k < list.size(); ++k) {
        std::string f = fmt::format("{}.{}[{}]", field, negated ? not_name : name, k);
        const std::string& v = list[k];
        if (v.empty()) return error(f, "empty value not allowed");
        // Istio: strconv.ParseUint(v, 10, 32) and at most 65535.
        uint32_t port = 0;
        bool ok = v.size() <= 10;
        for (char c : v) {
          if (c < '0' || c > '9' || port > 65535) ok = false;
          if (ok) port = port * 10 + static_cast<uint32_t>(c - '0');
        }
        if (!ok || port > 65535)
          return error(f, fmt::format("invalid port \"{}\": must be a number in [0, 65535]", v));
        (negated ? p.not_ports : p.ports).push_back(static_cast<uint16_t>(port));
      }
    }
    push(out, std::move(p), field, values.empty() ? not_name : name);
    return {};
  }

  const AuthorizationPolicy& policy_;
  std::string object_;
};

bool by_id(const CompiledRule& a, const CompiledRule& b) {
  return a.ref.id < b.ref.id;
}

}  // namespace

AuthzEngine::AuthzEngine() : impl_(std::make_unique<const Impl>()) {}
AuthzEngine::AuthzEngine(AuthzEngine&&) noexcept = default;
AuthzEngine& AuthzEngine::operator=(AuthzEngine&&) noexcept = default;
AuthzEngine::~AuthzEngine() = default;

Result<AuthzEngine> AuthzEngine::compile(std::span<const AuthorizationPolicy> policies,
                                         const AuthzOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->policies = policies.size();
  std::map<std::pair<std::string_view, std::string_view>, size_t> seen;
  const AuthorizationPolicy* provider_policy = nullptr;
  for (size_t i = 0; i < policies.size(); ++i) {
    const auto& policy = policies[i];
    PolicyCompiler compiler(policy);
    if (!seen.emplace(std::pair<std::string_view, std::string_view>(policy.ns, policy.name), i)
             .second)
      return compiler.error("metadata.name", "duplicate policy (same namespace and name)");
    std::vector<CompiledRule> rules;
    if (Status s = compiler.compile(rules); !s) return s.error();
    switch (policy.action) {
      case AuthzAction::custom:
        if (provider_policy && provider_policy->provider != policy.provider)
          return compiler.error(
              "provider.name",
              fmt::format("\"{}\": only one CUSTOM provider per gateway (Istio's default), and "
                          "AuthorizationPolicy {}/{} uses \"{}\"",
                          policy.provider, provider_policy->ns, provider_policy->name,
                          provider_policy->provider));
        provider_policy = &policy;
        impl->provider = policy.provider;
        std::move(rules.begin(), rules.end(), std::back_inserter(impl->custom));
        break;
      case AuthzAction::deny: {
        auto& list = policy.ns == options.root_namespace ? impl->root_deny : impl->deny;
        std::move(rules.begin(), rules.end(), std::back_inserter(list));
        break;
      }
      case AuthzAction::allow:
        impl->has_allow = true;
        std::move(rules.begin(), rules.end(), std::back_inserter(impl->allow));
        break;
      case AuthzAction::audit:
        std::move(rules.begin(), rules.end(), std::back_inserter(impl->audit));
        break;
    }
  }
  for (auto* list : {&impl->custom, &impl->audit, &impl->root_deny, &impl->deny, &impl->allow})
    std::sort(list->begin(), list->end(), by_id);
  AuthzEngine engine;
  engine.impl_ = std::move(impl);
  return engine;
}

AuthzDecision AuthzEngine::evaluate(const AuthzRequest& request, AuthzStage stage) const {
  const Impl& impl = *impl_;
  AuthzDecision d;
  if (stage == AuthzStage::custom) {
    if (const CompiledRule* r = first_match(impl.custom, request)) {
      d.verdict = AuthzVerdict::ext_authz;
      d.rule = &r->ref;
      d.provider = r->ref.provider;
      return d;
    }
  }
  if (const CompiledRule* r = first_match(impl.audit, request)) d.audit = &r->ref;
  for (const auto* list : {&impl.root_deny, &impl.deny}) {
    if (const CompiledRule* r = first_match(*list, request)) {
      d.verdict = AuthzVerdict::deny;
      d.rule = &r->ref;
      return d;
    }
  }
  if (impl.has_allow) {
    const CompiledRule* r = first_match(impl.allow, request);
    d.verdict = r ? AuthzVerdict::allow : AuthzVerdict::deny;
    d.rule = r ? &r->ref : nullptr;
  }
  return d;
}

std::vector<AuthzRuleTrace> AuthzEngine::trace(const AuthzRequest& request,
                                               AuthzStage stage) const {
  const Impl& impl = *impl_;
  std::vector<AuthzRuleTrace> out;
  for (const auto* list : {&impl.custom, &impl.audit, &impl.root_deny, &impl.deny, &impl.allow}) {
    if (list == &impl.custom && stage != AuthzStage::custom) continue;
    for (const auto& rule : *list) {
      AuthzRuleTrace t{&rule.ref, rule_matches(rule, request), {}};
      if (!t.matched) t.why = first_failure(rule, request);
      out.push_back(std::move(t));
    }
  }
  return out;
}

bool AuthzEngine::empty() const {
  return impl_->policies == 0;
}

std::string_view AuthzEngine::custom_provider() const {
  return impl_->provider;
}

}  // namespace sluice::security
