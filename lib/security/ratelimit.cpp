#include "security/ratelimit.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "http/regex.hpp"
#include "http/tokens.hpp"
#include "http/wire_check.hpp"

namespace sluice::security {

namespace {

constexpr uint32_t kMaxStage = 10;
constexpr size_t kMaxHeaderOptions = 10;
constexpr std::chrono::milliseconds kMinFillInterval{50};

Error error(std::string_view object, std::string field, std::string message) {
  return Error{std::string(object), std::move(field), std::move(message)};
}

std::string join(std::string_view prefix, std::string_view field) {
  if (prefix.empty()) return std::string(field);
  return std::string(prefix) + "." + std::string(field);
}

std::string indexed(std::string_view field, size_t i) {
  return std::string(field) + "[" + std::to_string(i) + "]";
}

Status validate_bucket(const TokenBucket& b, std::string_view object, const std::string& field) {
  if (b.max_tokens == 0) return error(object, join(field, "max_tokens"), "must be > 0");
  if (b.tokens_per_fill == 0) return error(object, join(field, "tokens_per_fill"), "must be > 0");
  if (b.fill_interval < kMinFillInterval)
    return error(object, join(field, "fill_interval"), "must be >= 50ms");
  return {};
}

Status validate_header_options(const std::vector<HeaderValueOption>& options,
                               std::string_view object, const std::string& field) {
  if (options.size() > kMaxHeaderOptions)
    return error(object, field, "at most 10 headers, got " + std::to_string(options.size()));
  for (size_t i = 0; i < options.size(); ++i) {
    std::string at = indexed(field, i);
    if (std::string why = http::check_header_name(options[i].name); !why.empty())
      return error(object, at + ".header.key", why);
    if (std::string why = http::check_header_value(options[i].value); !why.empty())
      return error(object, at + ".header.value", why);
  }
  return {};
}

Status validate_percent(const FractionalPercent& p, std::string_view object,
                        const std::string& field) {
  using D = FractionalPercent::Denominator;
  if (p.denominator != D::hundred && p.denominator != D::ten_thousand &&
      p.denominator != D::million)
    return error(object, field + ".denominator", "unknown denominator");
  return {};
}

Status validate_stage(uint32_t stage, std::string_view object, const std::string& field) {
  if (stage > kMaxStage) return error(object, field, "must be <= 10");
  return {};
}

// Text that becomes a descriptor entry or a Redis key: no control bytes, so
// a key never carries CR or LF.
std::string check_descriptor_text(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return "contains a control character: " + http::quote(s);
  return {};
}

Status validate_service_descriptors(
    const std::vector<RateLimitServiceConfig::DescriptorConfig>& list, std::string_view object,
    const std::string& field) {
  using Unit = RateLimitServiceConfig::Unit;
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const auto& d = list[i];
    std::string at = indexed(field, i);
    if (d.key.empty()) return error(object, at + ".key", "descriptor has empty key");
    if (std::string why = check_descriptor_text(d.key); !why.empty())
      return error(object, at + ".key", why);
    if (std::string why = check_descriptor_text(d.value); !why.empty())
      return error(object, at + ".value", why);
    // The service keys each level by "key" or "key_value"; two entries with
    // one composite key would shadow each other.
    std::string composite = d.value.empty() ? d.key : d.key + "_" + d.value;
    if (!seen.insert(composite).second)
      return error(object, at, "duplicate descriptor composite key '" + composite + "'");
    if (d.rate_limit) {
      const auto& rl = *d.rate_limit;
      std::string rl_at = at + ".rate_limit";
      bool has_unit = rl.unit != Unit::unset;
      if (rl.unlimited && has_unit)
        return error(object, rl_at + ".unit", "should not specify rate limit unit when unlimited");
      if (!rl.unlimited && !has_unit)
        return error(object, rl_at + ".unit", "required: second, minute, hour or day");
      if (has_unit && unit_seconds(rl.unit) == 0)
        return error(object, rl_at + ".unit", "unknown unit");
      for (size_t r = 0; r < rl.replaces.size(); ++r) {
        std::string r_at = indexed(rl_at + ".replaces", r) + ".name";
        if (rl.replaces[r].empty())
          return error(object, r_at, "should not have an empty replaces entry");
        if (rl.replaces[r] == rl.name)
          return error(object, r_at, "replaces should not contain name of same descriptor");
      }
    }
    if (Status s = validate_service_descriptors(d.descriptors, object, at + ".descriptors"); !s)
      return s;
  }
  return {};
}

}  // namespace

int64_t unit_seconds(RateLimitServiceConfig::Unit unit) {
  using Unit = RateLimitServiceConfig::Unit;
  switch (unit) {
    case Unit::second:
      return 1;
    case Unit::minute:
      return 60;
    case Unit::hour:
      return 60 * 60;
    case Unit::day:
      return 24 * 60 * 60;
    case Unit::unset:
      break;
  }
  return 0;
}

void apply_header_options(Headers& headers, const std::vector<HeaderValueOption>& options) {
  using A = HeaderValueOption::Action;
  for (const auto& o : options) {
    if (o.value.empty() && !o.keep_empty_value) continue;
    switch (o.action) {
      case A::append_if_exists_or_add:
        headers.add(o.name, o.value);
        break;
      case A::add_if_absent:
        if (!headers.contains(o.name)) headers.add(o.name, o.value);
        break;
      case A::overwrite_if_exists_or_add:
        headers.set(o.name, o.value);
        break;
      case A::overwrite_if_exists:
        if (headers.contains(o.name)) headers.set(o.name, o.value);
        break;
    }
  }
}

Status validate(const LocalRateLimit& c, std::string_view object, bool per_route) {
  if (c.stat_prefix.empty()) return error(object, "stat_prefix", "must not be empty");
  if (c.token_bucket) {
    if (Status s = validate_bucket(*c.token_bucket, object, "token_bucket"); !s) return s;
  } else if (per_route) {
    return error(object, "token_bucket",
                 "local rate limit token bucket must be set for per filter configs");
  }
  if (Status s = validate_percent(c.filter_enabled, object, "filter_enabled.default_value"); !s)
    return s;
  if (Status s = validate_percent(c.filter_enforced, object, "filter_enforced.default_value"); !s)
    return s;
  if (Status s =
          validate_header_options(c.response_headers_to_add, object, "response_headers_to_add");
      !s)
    return s;
  if (Status s = validate_header_options(c.request_headers_to_add_when_not_enforced, object,
                                         "request_headers_to_add_when_not_enforced");
      !s)
    return s;
  if (Status s = validate_stage(c.stage, object, "stage"); !s) return s;
  for (size_t i = 0; i < c.descriptors.size(); ++i) {
    const auto& d = c.descriptors[i];
    std::string at = indexed("descriptors", i);
    if (d.entries.empty()) return error(object, at + ".entries", "must not be empty");
    for (size_t e = 0; e < d.entries.size(); ++e) {
      std::string e_at = indexed(at + ".entries", e);
      if (d.entries[e].key.empty()) return error(object, e_at + ".key", "must not be empty");
      // Envoy's newer dynamic (value-less) descriptors are not supported:
      // say so rather than silently matching nothing.
      if (d.entries[e].value.empty())
        return error(object, e_at + ".value",
                     "must not be empty (dynamic descriptors are not supported)");
    }
    for (size_t j = 0; j < i; ++j)
      if (c.descriptors[j].entries == d.entries)
        return error(object, at + ".entries", "duplicate of " + indexed("descriptors", j));
    if (Status s = validate_bucket(d.token_bucket, object, at + ".token_bucket"); !s) return s;
  }
  return {};
}

Status validate(const GlobalRateLimit& c, std::string_view object) {
  if (c.domain.empty()) return error(object, "domain", "must not be empty");
  if (std::string why = check_descriptor_text(c.domain); !why.empty())
    return error(object, "domain", why);
  if (Status s = validate_stage(c.stage, object, "stage"); !s) return s;
  if (c.timeout.count() <= 0) return error(object, "timeout", "must be > 0");
  if (Status s = validate_percent(c.filter_enforced, object, "filter_enforced.default_value"); !s)
    return s;
  return {};
}

Status validate(const RateLimitServiceConfig& c, std::string_view object) {
  if (c.domain.empty()) return error(object, "domain", "config file cannot have empty domain");
  if (std::string why = check_descriptor_text(c.domain); !why.empty())
    return error(object, "domain", why);
  return validate_service_descriptors(c.descriptors, object, "descriptors");
}

// ---- compiled rules and descriptor generation ----

namespace {

std::optional<std::string_view> request_header(const RequestHead& r, std::string_view name) {
  if (!name.empty() && name.front() == ':') {
    if (name == ":path") return std::string_view(r.target);
    if (name == ":method") return std::string_view(r.method);
    if (name == ":authority") return std::string_view(r.authority);
    if (name == ":scheme") return std::string_view(r.scheme);
    return std::nullopt;
  }
  if (http::iequals(name, "host")) {
    if (auto v = r.headers.get(name)) return v;
    if (!r.authority.empty()) return std::string_view(r.authority);
    return std::nullopt;
  }
  return r.headers.get(name);
}

// One HeaderMatch, Envoy's HeaderUtility::matchHeaders semantics: the
// values of a repeated header joined with ','; a missing header matches
// only a `present` matcher that asks for absence. Pseudo-headers (:path
// and the others) are the request's, as in Envoy's header map.
struct CompiledHeaderMatch {
  std::string name;
  StringMatch::Kind kind = StringMatch::Kind::present;
  std::string value;
  std::shared_ptr<const re2::RE2> regex;
  bool invert = false;

  bool matches(const RequestHead& request) const {
    std::string joined;
    size_t found = 0;
    if (name.front() == ':' || http::iequals(name, "host")) {
      if (auto v = request_header(request, name)) {
        joined.assign(*v);
        found = 1;
      }
    } else {
      for (const auto& [n, v] : request.headers.entries()) {
        if (!http::iequals(n, name)) continue;
        if (found++ > 0) joined += ',';
        joined += v;
      }
    }
    if (found == 0) return kind == StringMatch::Kind::present && invert;
    bool m = false;
    switch (kind) {
      case StringMatch::Kind::exact:
        m = joined == value;
        break;
      case StringMatch::Kind::prefix:
        m = joined.starts_with(value);
        break;
      case StringMatch::Kind::suffix:
        m = joined.ends_with(value);
        break;
      case StringMatch::Kind::regex:
        m = re2::RE2::FullMatch(joined, *regex);
        break;
      case StringMatch::Kind::present:
        m = true;
        break;
    }
    return m != invert;
  }
};

struct CompiledAction {
  enum class Kind {
    request_headers,
    remote_address,
    generic_key,
    header_value_match,
    destination_cluster
  };
  Kind kind = Kind::generic_key;
  std::string header_name;  // request_headers, lower-case
  std::string key;
  std::string value;  // generic_key, header_value_match
  bool skip_if_absent = false;
  bool expect_match = true;
  std::vector<CompiledHeaderMatch> headers;
};

struct CompiledRule {
  uint32_t stage = 0;
  std::vector<CompiledAction> actions;
};

bool all_match(const std::vector<CompiledHeaderMatch>& matchers, const RequestHead& request) {
  for (const auto& m : matchers)
    if (!m.matches(request)) return false;
  return true;
}

// Appends the action's entry; false when the descriptor must be dropped.
bool populate(const CompiledAction& a, const RequestAttributes& in, Descriptor& out) {
  using K = CompiledAction::Kind;
  switch (a.kind) {
    case K::request_headers: {
      auto v = request_header(*in.request, a.header_name);
      if (!v) return a.skip_if_absent;
      out.push_back({a.key, std::string(*v)});
      return true;
    }
    case K::remote_address:
      if (in.remote_address.empty()) return false;
      out.push_back({"remote_address", std::string(in.remote_address)});
      return true;
    case K::generic_key:
      out.push_back({a.key, a.value});
      return true;
    case K::header_value_match:
      if (all_match(a.headers, *in.request) != a.expect_match) return false;
      out.push_back({a.key, a.value});
      return true;
    case K::destination_cluster:
      out.push_back({"destination_cluster", std::string(in.destination_cluster)});
      return true;
  }
  return false;
}

Result<CompiledAction> compile_action(const RateLimitAction& action, std::string_view object,
                                      const std::string& at) {
  CompiledAction c;
  if (auto* rh = std::get_if<RateLimitAction::RequestHeaders>(&action.action)) {
    c.kind = CompiledAction::Kind::request_headers;
    if (rh->header_name.empty())
      return error(object, at + ".request_headers.header_name", "must not be empty");
    if (rh->descriptor_key.empty())
      return error(object, at + ".request_headers.descriptor_key", "must not be empty");
    if (std::string why = check_descriptor_text(rh->descriptor_key); !why.empty())
      return error(object, at + ".request_headers.descriptor_key", why);
    c.header_name = http::to_lower(rh->header_name);
    c.key = rh->descriptor_key;
    c.skip_if_absent = rh->skip_if_absent;
  } else if (std::holds_alternative<RateLimitAction::RemoteAddress>(action.action)) {
    c.kind = CompiledAction::Kind::remote_address;
  } else if (auto* gk = std::get_if<RateLimitAction::GenericKey>(&action.action)) {
    c.kind = CompiledAction::Kind::generic_key;
    if (gk->descriptor_value.empty())
      return error(object, at + ".generic_key.descriptor_value", "must not be empty");
    c.key = gk->descriptor_key.empty() ? "generic_key" : gk->descriptor_key;
    c.value = gk->descriptor_value;
    if (std::string why = check_descriptor_text(c.key + c.value); !why.empty())
      return error(object, at + ".generic_key", why);
  } else if (auto* hv = std::get_if<RateLimitAction::HeaderValueMatch>(&action.action)) {
    c.kind = CompiledAction::Kind::header_value_match;
    if (hv->descriptor_value.empty())
      return error(object, at + ".header_value_match.descriptor_value", "must not be empty");
    if (hv->headers.empty())
      return error(object, at + ".header_value_match.headers", "must not be empty");
    c.key = hv->descriptor_key.empty() ? "header_match" : hv->descriptor_key;
    c.value = hv->descriptor_value;
    if (std::string why = check_descriptor_text(c.key + c.value); !why.empty())
      return error(object, at + ".header_value_match", why);
    c.expect_match = hv->expect_match;
    for (size_t i = 0; i < hv->headers.size(); ++i) {
      const HeaderMatch& h = hv->headers[i];
      std::string h_at = indexed(at + ".header_value_match.headers", i);
      if (h.name.empty()) return error(object, h_at + ".name", "must not be empty");
      CompiledHeaderMatch m;
      m.name = h.name;
      m.kind = h.match.kind;
      m.value = h.match.value;
      m.invert = h.invert;
      if (m.kind == StringMatch::Kind::regex) {
        auto re = std::make_shared<re2::RE2>(m.value, http::regex_options());
        if (!re->ok())
          return error(object, h_at + ".safe_regex_match", "invalid regex: " + re->error());
        m.regex = std::move(re);
      }
      c.headers.push_back(std::move(m));
    }
  } else {
    c.kind = CompiledAction::Kind::destination_cluster;
  }
  return c;
}

}  // namespace

class CompiledRateLimitRules {
 public:
  struct Lists {
    std::vector<CompiledRule> virtual_host;
    std::map<std::string, std::vector<CompiledRule>, std::less<>> routes;
  };
  // By router + '\n' + virtual host; router empty: every router.
  std::map<std::string, Lists, std::less<>> hosts;

  static std::string key(std::string_view router, std::string_view virtual_host) {
    std::string k;
    k.reserve(router.size() + 1 + virtual_host.size());
    k.append(router).append(1, '\n').append(virtual_host);
    return k;
  }
};

Status validate(const std::vector<RateLimitAttachment>& rate_limits, std::string_view object,
                std::string_view field) {
  auto compiled = RateLimitRules::compile(rate_limits, object);
  if (!compiled) {
    Error e = compiled.error();
    // compile() names fields from "rate_limits"; callers may nest the list.
    if (field != "rate_limits" && e.field.starts_with("rate_limits"))
      e.field = std::string(field) + e.field.substr(std::string_view("rate_limits").size());
    return e;
  }
  return {};
}

RateLimitRules::RateLimitRules() : impl_(std::make_unique<CompiledRateLimitRules>()) {}
RateLimitRules::~RateLimitRules() = default;
RateLimitRules::RateLimitRules(RateLimitRules&&) noexcept = default;
RateLimitRules& RateLimitRules::operator=(RateLimitRules&&) noexcept = default;

Result<RateLimitRules> RateLimitRules::compile(const std::vector<RateLimitAttachment>& rate_limits,
                                               std::string_view object) {
  RateLimitRules out;
  for (size_t i = 0; i < rate_limits.size(); ++i) {
    const RateLimitAttachment& a = rate_limits[i];
    std::string at = indexed("rate_limits", i);
    if (a.virtual_host.empty())
      return error(object, at + ".virtual_host", "must name a virtual host");
    auto& lists = out.impl_->hosts[CompiledRateLimitRules::key(a.router, a.virtual_host)];
    auto& rules = a.route.empty() ? lists.virtual_host : lists.routes[a.route];
    for (size_t r = 0; r < a.rate_limits.size(); ++r) {
      const RateLimitRule& rule = a.rate_limits[r];
      std::string r_at = indexed(at + ".rate_limits", r);
      if (Status s = validate_stage(rule.stage, object, r_at + ".stage"); !s) return s.error();
      if (rule.actions.empty()) return error(object, r_at + ".actions", "must not be empty");
      CompiledRule compiled{rule.stage, {}};
      for (size_t k = 0; k < rule.actions.size(); ++k) {
        auto action = compile_action(rule.actions[k], object, indexed(r_at + ".actions", k));
        if (!action) return action.error();
        compiled.actions.push_back(std::move(action).value());
      }
      rules.push_back(std::move(compiled));
    }
  }
  // A router's own lists come first, then those for every router.
  auto& hosts = out.impl_->hosts;
  for (auto& [k, lists] : hosts) {
    if (k.front() == '\n') continue;
    auto any = hosts.find(std::string_view(k).substr(k.find('\n')));
    if (any == hosts.end()) continue;
    const auto& from = any->second;
    lists.virtual_host.insert(lists.virtual_host.end(), from.virtual_host.begin(),
                              from.virtual_host.end());
    for (const auto& [route, rules] : from.routes) {
      auto& to = lists.routes[route];
      to.insert(to.end(), rules.begin(), rules.end());
    }
  }
  return out;
}

bool RateLimitRules::empty() const {
  return impl_->hosts.empty();
}

std::vector<Descriptor> RateLimitRules::descriptors(std::string_view router,
                                                    std::string_view virtual_host,
                                                    std::string_view route, uint32_t stage,
                                                    VhRateLimits vh,
                                                    const RequestAttributes& request) const {
  std::vector<Descriptor> out;
  if (impl_->hosts.empty() || request.request == nullptr) return out;
  auto host = impl_->hosts.end();
  if (!router.empty()) host = impl_->hosts.find(CompiledRateLimitRules::key(router, virtual_host));
  if (host == impl_->hosts.end())
    host = impl_->hosts.find(CompiledRateLimitRules::key({}, virtual_host));
  if (host == impl_->hosts.end()) return out;
  auto add = [&](const std::vector<CompiledRule>& rules) {
    for (const CompiledRule& rule : rules) {
      if (rule.stage != stage) continue;
      Descriptor d;
      bool ok = true;
      for (const CompiledAction& a : rule.actions)
        if (!(ok = populate(a, request, d))) break;
      if (ok && !d.empty()) out.push_back(std::move(d));
    }
  };
  const std::vector<CompiledRule>* route_rules = nullptr;
  if (auto r = host->second.routes.find(route); r != host->second.routes.end())
    route_rules = &r->second;
  if (route_rules) add(*route_rules);
  switch (vh) {
    case VhRateLimits::ignore:
      break;
    case VhRateLimits::include:
      add(host->second.virtual_host);
      break;
    case VhRateLimits::override_route:
      if (route_rules == nullptr || route_rules->empty()) add(host->second.virtual_host);
      break;
  }
  return out;
}

}  // namespace sluice::security
