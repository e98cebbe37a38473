// EnvoyFilter: only the shapes of Istio's rate-limit task ("Enabling Rate
// Limits using Envoy"), turned into GatewayConfig::rate_limits; and the
// reference rate-limit service's configuration file (--rate-limit-config).
// Every other EnvoyFilter is rejected whole, naming the resource and field:
// sluice is not Envoy, and a patch it cannot honour must not pass silently.

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "http/regex.hpp"
#include "istio/istio.hpp"
#include "istio/model.hpp"
#include "istio/yaml_load.hpp"
#include "security/ratelimit.hpp"

namespace sluice::istio {

namespace {

constexpr std::string_view kLocalName = "envoy.filters.http.local_ratelimit";
constexpr std::string_view kGlobalName = "envoy.filters.http.ratelimit";
constexpr std::string_view kLocalType =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
constexpr std::string_view kGlobalType =
    "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";
constexpr std::string_view kTypedStruct[] = {"type.googleapis.com/udpa.type.v1.TypedStruct",
                                             "type.googleapis.com/xds.type.v3.TypedStruct"};

uint32_t number(const YAML::Node& n, const Meta& m, const std::string& path,
                uint32_t max = UINT32_MAX) {
  std::string s = scalar(n, m, path);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v > max)
    fail(m, path, fmt::format("must be a whole number up to {}, got \"{}\"", max, s));
  return static_cast<uint32_t>(v);
}

void sequence(const YAML::Node& n, const Meta& m, const std::string& path) {
  if (!n.IsSequence()) fail(m, path, "must be a list");
}

uint16_t status_code(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  uint32_t code = number(f.require("code"), m, f.sub("code"), 599);
  f.finish();
  return static_cast<uint16_t>(code);
}

FractionalPercent runtime_percent(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  f.ignore({"runtime_key"});  // sluice has no runtime: the default is the value
  FractionalPercent p;
  Fields d(f.require("default_value"), m, f.sub("default_value"));
  if (auto v = d.get("numerator")) p.numerator = number(v, m, d.sub("numerator"));
  if (auto v = d.get("denominator")) {
    std::string s = scalar(v, m, d.sub("denominator"));
    using D = FractionalPercent::Denominator;
    if (s == "HUNDRED")
      p.denominator = D::hundred;
    else if (s == "TEN_THOUSAND")
      p.denominator = D::ten_thousand;
    else if (s == "MILLION")
      p.denominator = D::million;
    else
      fail(m, d.sub("denominator"), "must be HUNDRED, TEN_THOUSAND or MILLION");
  }
  d.finish();
  f.finish();
  return p;
}

TokenBucket token_bucket(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  TokenBucket b;
  b.max_tokens = number(f.require("max_tokens"), m, f.sub("max_tokens"));
  if (auto v = f.get("tokens_per_fill")) b.tokens_per_fill = number(v, m, f.sub("tokens_per_fill"));
  b.fill_interval = duration(f.require("fill_interval"), m, f.sub("fill_interval"));
  f.finish();
  return b;
}

std::vector<HeaderValueOption> header_options(const YAML::Node& n, const Meta& m,
                                              const std::string& path) {
  sequence(n, m, path);
  std::vector<HeaderValueOption> out;
  for (size_t i = 0; i < n.size(); ++i) {
    Fields f(n[i], m, index(path, i));
    HeaderValueOption o;
    Fields h(f.require("header"), m, f.sub("header"));
    o.name = scalar(h.require("key"), m, h.sub("key"));
    if (auto v = h.get("value")) o.value = scalar(v, m, h.sub("value"));
    h.finish();
    using A = HeaderValueOption::Action;
    YAML::Node append = f.get("append");
    YAML::Node action = f.get("append_action");
    if (append && action) fail(m, f.sub("append"), "append and append_action are exclusive");
    if (append)
      o.action = boolean(append, m, f.sub("append")) ? A::append_if_exists_or_add
                                                     : A::overwrite_if_exists_or_add;
    if (action) {
      std::string s = scalar(action, m, f.sub("append_action"));
      if (s == "APPEND_IF_EXISTS_OR_ADD")
        o.action = A::append_if_exists_or_add;
      else if (s == "ADD_IF_ABSENT")
        o.action = A::add_if_absent;
      else if (s == "OVERWRITE_IF_EXISTS_OR_ADD")
        o.action = A::overwrite_if_exists_or_add;
      else if (s == "OVERWRITE_IF_EXISTS")
        o.action = A::overwrite_if_exists;
      else
        fail(m, f.sub("append_action"), fmt::format("unknown action \"{}\"", s));
    }
    if (auto v = f.get("keep_empty_value"))
      o.keep_empty_value = boolean(v, m, f.sub("keep_empty_value"));
    f.finish();
    out.push_back(std::move(o));
  }
  return out;
}

VhRateLimits vh_rate_limits(const YAML::Node& n, const Meta& m, const std::string& path) {
  std::string s = scalar(n, m, path);
  if (s == "OVERRIDE") return VhRateLimits::override_route;
  if (s == "INCLUDE") return VhRateLimits::include;
  if (s == "IGNORE") return VhRateLimits::ignore;
  fail(m, path, "must be OVERRIDE, INCLUDE or IGNORE");
}

// Refuses x-ratelimit-* headers, which sluice does not send.
void no_ratelimit_headers(Fields& f) {
  if (auto v = f.get("enable_x_ratelimit_headers"))
    if (scalar(v, f.meta(), f.sub("enable_x_ratelimit_headers")) != "OFF")
      fail(f.meta(), f.sub("enable_x_ratelimit_headers"),
           "x-ratelimit-* headers are not supported (OFF only)");
}

LocalRateLimit local_config(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  LocalRateLimit c;
  c.stat_prefix = scalar(f.require("stat_prefix"), m, f.sub("stat_prefix"));
  if (auto v = f.get("status")) c.status = status_code(v, m, f.sub("status"));
  if (auto v = f.get("token_bucket")) c.token_bucket = token_bucket(v, m, f.sub("token_bucket"));
  if (auto v = f.get("filter_enabled"))
    c.filter_enabled = runtime_percent(v, m, f.sub("filter_enabled"));
  if (auto v = f.get("filter_enforced"))
    c.filter_enforced = runtime_percent(v, m, f.sub("filter_enforced"));
  if (auto v = f.get("response_headers_to_add"))
    c.response_headers_to_add = header_options(v, m, f.sub("response_headers_to_add"));
  if (auto v = f.get("request_headers_to_add_when_not_enforced"))
    c.request_headers_to_add_when_not_enforced =
        header_options(v, m, f.sub("request_headers_to_add_when_not_enforced"));
  if (auto v = f.get("descriptors")) {
    std::string dp = f.sub("descriptors");
    sequence(v, m, dp);
    for (size_t i = 0; i < v.size(); ++i) {
      Fields d(v[i], m, index(dp, i));
      LocalRateLimitDescriptor desc;
      YAML::Node entries = d.require("entries");
      sequence(entries, m, d.sub("entries"));
      for (size_t e = 0; e < entries.size(); ++e) {
        Fields en(entries[e], m, index(d.sub("entries"), e));
        DescriptorEntry entry;
        entry.key = scalar(en.require("key"), m, en.sub("key"));
        if (auto val = en.get("value")) entry.value = scalar(val, m, en.sub("value"));
        en.finish();
        desc.entries.push_back(std::move(entry));
      }
      desc.token_bucket = token_bucket(d.require("token_bucket"), m, d.sub("token_bucket"));
      d.finish();
      c.descriptors.push_back(std::move(desc));
    }
  }
  if (auto v = f.get("stage")) c.stage = number(v, m, f.sub("stage"));
  if (auto v = f.get("always_consume_default_token_bucket"))
    c.always_consume_default_token_bucket =
        boolean(v, m, f.sub("always_consume_default_token_bucket"));
  if (auto v = f.get("vh_rate_limits"))
    c.vh_rate_limits = vh_rate_limits(v, m, f.sub("vh_rate_limits"));
  if (auto v = f.get("local_rate_limit_per_downstream_connection"))
    if (boolean(v, m, f.sub("local_rate_limit_per_downstream_connection")))
      fail(m, f.sub("local_rate_limit_per_downstream_connection"),
           "per-connection buckets are not supported (buckets are per gateway)");
  no_ratelimit_headers(f);
  f.finish();
  return c;
}

GlobalRateLimit global_config(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  GlobalRateLimit c;
  c.domain = scalar(f.require("domain"), m, f.sub("domain"));
  if (auto v = f.get("stage")) c.stage = number(v, m, f.sub("stage"));
  if (auto v = f.get("failure_mode_deny"))
    c.failure_mode_deny = boolean(v, m, f.sub("failure_mode_deny"));
  if (auto v = f.get("timeout")) c.timeout = duration(v, m, f.sub("timeout"));
  if (auto v = f.get("rate_limited_status"))
    c.rate_limited_status = status_code(v, m, f.sub("rate_limited_status"));
  if (auto v = f.get("status_on_error"))
    c.status_on_error = status_code(v, m, f.sub("status_on_error"));
  if (auto v = f.get("disable_x_envoy_ratelimited_header"))
    c.disable_x_envoy_ratelimited_header =
        boolean(v, m, f.sub("disable_x_envoy_ratelimited_header"));
  if (auto v = f.get("filter_enforced"))
    c.filter_enforced = runtime_percent(v, m, f.sub("filter_enforced"));
  if (auto v = f.get("vh_rate_limits"))
    c.vh_rate_limits = vh_rate_limits(v, m, f.sub("vh_rate_limits"));
  if (auto v = f.get("request_type")) {
    std::string s = scalar(v, m, f.sub("request_type"));
    if (s != "external" && s != "both")
      fail(m, f.sub("request_type"), "only \"external\" and \"both\" requests are limited");
  }
  // Accepted and not dialled: sluice counts in Redis itself (--redis).
  Fields svc(f.require("rate_limit_service"), m, f.sub("rate_limit_service"));
  Fields grpc(svc.require("grpc_service"), m, svc.sub("grpc_service"));
  Fields eg(grpc.require("envoy_grpc"), m, grpc.sub("envoy_grpc"));
  scalar(eg.require("cluster_name"), m, eg.sub("cluster_name"));
  eg.ignore({"authority"});
  eg.finish();
  grpc.ignore({"timeout"});
  grpc.finish();
  svc.ignore({"transport_api_version"});
  svc.finish();
  f.ignore({"transport_api_version"});
  no_ratelimit_headers(f);
  f.finish();
  return c;
}

// typed_config (or a typed_per_filter_config entry): the direct type, or
// a TypedStruct wrapping it.
YAML::Node typed_value(const YAML::Node& n, const Meta& m, const std::string& path,
                       std::string_view want) {
  if (!n.IsMap()) fail(m, path, "must be a mapping");
  YAML::Node type = n["@type"];
  if (!type) fail(m, join(path, "@type"), "required field is missing");
  std::string t = scalar(type, m, join(path, "@type"));
  if (t == want) {
    YAML::Node copy = YAML::Clone(n);
    copy.remove("@type");
    return copy;
  }
  for (auto ts : kTypedStruct)
    if (t == ts) {
      Fields f(n, m, path);
      f.ignore({"@type"});
      std::string url = scalar(f.require("type_url"), m, f.sub("type_url"));
      if (url != want) fail(m, f.sub("type_url"), fmt::format("must be {}", want));
      YAML::Node value = f.get("value");
      f.finish();
      return value ? value : YAML::Node(YAML::NodeType::Map);
    }
  fail(m, join(path, "@type"), fmt::format("must be {} or a TypedStruct of it", want));
}

HeaderMatch header_matcher(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  HeaderMatch h;
  h.name = scalar(f.require("name"), m, f.sub("name"));
  int kinds = 0;
  auto regex = [&](const YAML::Node& v, const std::string& p) {
    Fields r(v, m, p);
    r.ignore({"google_re2"});
    std::string pattern = scalar(r.require("regex"), m, r.sub("regex"));
    r.finish();
    if (auto compiled = http::compile_regex(pattern); !compiled)
      fail(m, r.sub("regex"), compiled.error().message);
    return StringMatch::regex(pattern);
  };
  if (auto v = f.get("exact_match"); v && ++kinds)
    h.match = StringMatch::exact(scalar(v, m, f.sub("exact_match")));
  if (auto v = f.get("prefix_match"); v && ++kinds)
    h.match = StringMatch::prefix(scalar(v, m, f.sub("prefix_match")));
  if (auto v = f.get("suffix_match"); v && ++kinds)
    h.match = StringMatch::suffix(scalar(v, m, f.sub("suffix_match")));
  if (auto v = f.get("safe_regex_match"); v && ++kinds)
    h.match = regex(v, f.sub("safe_regex_match"));
  if (auto v = f.get("present_match"); v && ++kinds) {
    h.match = StringMatch::present();
    // present_match: false asks for absence.
    if (!boolean(v, m, f.sub("present_match"))) h.invert = !h.invert;
  }
  if (auto v = f.get("string_match"); v && ++kinds) {
    Fields s(v, m, f.sub("string_match"));
    int inner = 0;
    if (auto x = s.get("exact"); x && ++inner)
      h.match = StringMatch::exact(scalar(x, m, s.sub("exact")));
    if (auto x = s.get("prefix"); x && ++inner)
      h.match = StringMatch::prefix(scalar(x, m, s.sub("prefix")));
    if (auto x = s.get("suffix"); x && ++inner)
      h.match = StringMatch::suffix(scalar(x, m, s.sub("suffix")));
    if (auto x = s.get("safe_regex"); x && ++inner) h.match = regex(x, s.sub("safe_regex"));
    if (auto x = s.get("ignore_case"))
      if (boolean(x, m, s.sub("ignore_case")))
        fail(m, s.sub("ignore_case"), "ignore_case is not supported");
    if (inner != 1) fail(m, s.path(), "needs exactly one of exact, prefix, suffix, safe_regex");
    s.finish();
  }
  if (kinds > 1) fail(m, path, "at most one match kind");
  if (auto v = f.get("invert_match"))
    if (boolean(v, m, f.sub("invert_match"))) h.invert = !h.invert;
  f.finish();
  return h;
}

std::vector<RateLimitRule> rate_limits(const YAML::Node& n, const Meta& m,
                                       const std::string& path) {
  sequence(n, m, path);
  std::vector<RateLimitRule> out;
  for (size_t i = 0; i < n.size(); ++i) {
    Fields r(n[i], m, index(path, i));
    RateLimitRule rule;
    if (auto v = r.get("stage")) rule.stage = number(v, m, r.sub("stage"));
    YAML::Node actions = r.require("actions");
    std::string ap = r.sub("actions");
    sequence(actions, m, ap);
    for (size_t k = 0; k < actions.size(); ++k) {
      Fields a(actions[k], m, index(ap, k));
      RateLimitAction action{RateLimitAction::RemoteAddress{}};  // set below
      int kinds = 0;
      if (auto v = a.get("request_headers"); v && ++kinds) {
        Fields f(v, m, a.sub("request_headers"));
        RateLimitAction::RequestHeaders x;
        x.header_name = scalar(f.require("header_name"), m, f.sub("header_name"));
        x.descriptor_key = scalar(f.require("descriptor_key"), m, f.sub("descriptor_key"));
        if (auto s = f.get("skip_if_absent"))
          x.skip_if_absent = boolean(s, m, f.sub("skip_if_absent"));
        f.finish();
        action.action = std::move(x);
      }
      if (auto v = a.get("remote_address"); v && ++kinds) {
        Fields(v, m, a.sub("remote_address")).finish();
        action.action = RateLimitAction::RemoteAddress{};
      }
      if (auto v = a.get("destination_cluster"); v && ++kinds) {
        Fields(v, m, a.sub("destination_cluster")).finish();
        action.action = RateLimitAction::DestinationCluster{};
      }
      if (auto v = a.get("generic_key"); v && ++kinds) {
        Fields f(v, m, a.sub("generic_key"));
        RateLimitAction::GenericKey x;
        x.descriptor_value = scalar(f.require("descriptor_value"), m, f.sub("descriptor_value"));
        if (auto s = f.get("descriptor_key"))
          x.descriptor_key = scalar(s, m, f.sub("descriptor_key"));
        f.finish();
        action.action = std::move(x);
      }
      if (auto v = a.get("header_value_match"); v && ++kinds) {
        Fields f(v, m, a.sub("header_value_match"));
        RateLimitAction::HeaderValueMatch x;
        x.descriptor_value = scalar(f.require("descriptor_value"), m, f.sub("descriptor_value"));
        if (auto s = f.get("descriptor_key"))
          x.descriptor_key = scalar(s, m, f.sub("descriptor_key"));
        if (auto s = f.get("expect_match")) x.expect_match = boolean(s, m, f.sub("expect_match"));
        YAML::Node headers = f.require("headers");
        sequence(headers, m, f.sub("headers"));
        for (size_t h = 0; h < headers.size(); ++h)
          x.headers.push_back(header_matcher(headers[h], m, index(f.sub("headers"), h)));
        f.finish();
        action.action = std::move(x);
      }
      if (kinds != 1)
        fail(m, a.path(),
             "needs exactly one of request_headers, remote_address, generic_key, "
             "header_value_match, destination_cluster");
      a.finish();
      rule.actions.push_back(std::move(action));
    }
    r.finish();
    out.push_back(std::move(rule));
  }
  return out;
}

// typed_per_filter_config: only the local rate limit's.
LocalRateLimit per_filter_local(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  YAML::Node v = f.require(std::string(kLocalName).c_str());
  std::string p = f.sub(kLocalName);
  f.finish();
  return local_config(typed_value(v, m, p, kLocalType), m, p + ".value");
}

// match.routeConfiguration: the vhost name ("" or absent: every one) and
// its route (name, or action ANY).
void route_configuration(const YAML::Node& n, const Meta& m, const std::string& path,
                         bool want_route, EnvoyFilterPatchIn& out) {
  Fields rc(n, m, path);
  rc.ignore({"portNumber", "portName", "gateway", "name"});
  if (auto v = rc.get("portNumber")) out.port = number(v, m, rc.sub("portNumber"), 65535);
  if (auto v = rc.get("vhost")) {
    Fields vh(v, m, rc.sub("vhost"));
    if (auto name = vh.get("name")) out.vhost = scalar(name, m, vh.sub("name"));
    if (auto r = vh.get("route")) {
      Fields route(r, m, vh.sub("route"));
      if (auto name = route.get("name")) out.route = scalar(name, m, route.sub("name"));
      if (auto action = route.get("action"))
        if (scalar(action, m, route.sub("action")) != "ANY")
          fail(m, route.sub("action"), "only ANY is supported");
      route.finish();
    } else if (want_route) {
      // No route match: every route, as ANY.
    }
    vh.finish();
  }
  rc.finish();
}

EnvoyFilterPatchIn patch(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  EnvoyFilterPatchIn out;
  out.field = path;
  std::string apply = scalar(f.require("applyTo"), m, f.sub("applyTo"));
  Fields match(f.get("match"), m, f.sub("match"));
  if (auto v = match.get("context")) {
    out.context = scalar(v, m, match.sub("context"));
    static const std::set<std::string> contexts = {"ANY", "GATEWAY", "SIDECAR_INBOUND",
                                                   "SIDECAR_OUTBOUND"};
    if (!contexts.count(out.context))
      fail(m, match.sub("context"), fmt::format("unknown context \"{}\"", out.context));
  }
  Fields p(f.require("patch"), m, f.sub("patch"));
  std::string op = scalar(p.require("operation"), m, p.sub("operation"));
  YAML::Node value = p.get("value");
  p.finish();
  auto need_op = [&](std::string_view want) {
    if (op != want)
      fail(m, p.sub("operation"), fmt::format("{} supports only {} here", apply, want));
  };
  if (!value && apply != "CLUSTER") fail(m, p.sub("value"), "required field is missing");
  std::string vp = p.sub("value");
  if (apply == "HTTP_FILTER") {
    need_op("INSERT_BEFORE");
    Fields l(match.require("listener"), m, match.sub("listener"));
    l.ignore({"portNumber", "name"});
    Fields fc(l.require("filterChain"), m, l.sub("filterChain"));
    fc.ignore({"name", "sni", "transportProtocol", "applicationProtocols", "destinationPort"});
    Fields filter(fc.require("filter"), m, fc.sub("filter"));
    if (scalar(filter.require("name"), m, filter.sub("name")) !=
        "envoy.filters.network.http_connection_manager")
      fail(m, filter.sub("name"), "must be envoy.filters.network.http_connection_manager");
    if (auto sf = filter.get("subFilter")) {
      Fields s(sf, m, filter.sub("subFilter"));
      if (scalar(s.require("name"), m, s.sub("name")) != "envoy.filters.http.router")
        fail(m, s.sub("name"), "rate-limit filters go before envoy.filters.http.router only");
      s.finish();
    }
    filter.finish();
    fc.finish();
    l.finish();
    Fields v(value, m, vp);
    std::string name = scalar(v.require("name"), m, v.sub("name"));
    YAML::Node typed = v.require("typed_config");
    v.finish();
    if (name == kLocalName) {
      out.kind = EnvoyFilterPatchIn::Kind::local_filter;
      out.local = local_config(typed_value(typed, m, v.sub("typed_config"), kLocalType), m,
                               v.sub("typed_config"));
    } else if (name == kGlobalName) {
      out.kind = EnvoyFilterPatchIn::Kind::global_filter;
      out.global = global_config(typed_value(typed, m, v.sub("typed_config"), kGlobalType), m,
                                 v.sub("typed_config"));
    } else {
      fail(m, v.sub("name"),
           fmt::format("only {} and {} can be inserted", kLocalName, kGlobalName));
    }
  } else if (apply == "VIRTUAL_HOST" || apply == "HTTP_ROUTE") {
    need_op("MERGE");
    bool route_level = apply == "HTTP_ROUTE";
    if (auto rc = match.get("routeConfiguration"))
      route_configuration(rc, m, match.sub("routeConfiguration"), route_level, out);
    Fields v(value, m, vp);
    if (auto x = v.get("typed_per_filter_config"))
      out.local = per_filter_local(x, m, v.sub("typed_per_filter_config"));
    if (!route_level) {
      if (auto x = v.get("rate_limits")) out.rate_limits = rate_limits(x, m, v.sub("rate_limits"));
    } else if (auto r = v.get("route")) {
      Fields ra(r, m, v.sub("route"));
      out.rate_limits = rate_limits(ra.require("rate_limits"), m, ra.sub("rate_limits"));
      ra.finish();
    }
    v.finish();
    if (!out.local && out.rate_limits.empty())
      fail(m, vp,
           route_level ? "needs route.rate_limits or typed_per_filter_config"
                       : "needs rate_limits or typed_per_filter_config");
    out.kind = route_level ? EnvoyFilterPatchIn::Kind::route : EnvoyFilterPatchIn::Kind::vhost;
  } else if (apply == "CLUSTER") {
    // The task's rate_limit_cluster for the reference service: sluice
    // talks to Redis itself, so the cluster is accepted and not used.
    need_op("ADD");
    match.ignore({"cluster"});
    out.kind = EnvoyFilterPatchIn::Kind::cluster;
  } else {
    fail(m, f.sub("applyTo"),
         fmt::format("\"{}\": only HTTP_FILTER, VIRTUAL_HOST, HTTP_ROUTE and CLUSTER patches of "
                     "the rate-limit task are supported",
                     apply));
  }
  match.finish();
  f.finish();
  return out;
}

}  // namespace

EnvoyFilterRes parse_envoy_filter(const YAML::Node& spec, const Meta& meta) {
  EnvoyFilterRes out;
  out.meta = meta;
  Fields f(spec, meta, "");
  if (auto v = f.get("workloadSelector")) {
    Fields ws(v, meta, "workloadSelector");
    Labels labels;
    if (auto l = ws.get("labels")) {
      if (!l.IsMap()) fail(meta, ws.sub("labels"), "must be a mapping");
      for (const auto& kv : l)
        labels[kv.first.Scalar()] = scalar(kv.second, meta, ws.sub("labels." + kv.first.Scalar()));
    }
    ws.finish();
    out.scope.selector = std::move(labels);
  }
  if (f.get("targetRefs")) fail(meta, "targetRefs", "not supported: use workloadSelector");
  f.ignore({"priority"});
  YAML::Node patches = f.require("configPatches");
  sequence(patches, meta, "configPatches");
  for (size_t i = 0; i < patches.size(); ++i)
    out.patches.push_back(patch(patches[i], meta, index("configPatches", i)));
  f.finish();
  return out;
}

namespace {

using Unit = RateLimitServiceConfig::Unit;

RateLimitServiceConfig::DescriptorConfig service_descriptor(const YAML::Node& n, const Meta& m,
                                                            const std::string& path) {
  Fields f(n, m, path);
  RateLimitServiceConfig::DescriptorConfig d;
  d.key = scalar(f.require("key"), m, f.sub("key"));
  if (auto v = f.get("value")) d.value = scalar(v, m, f.sub("value"));
  if (auto v = f.get("rate_limit")) {
    Fields r(v, m, f.sub("rate_limit"));
    RateLimitServiceConfig::RateLimit rl;
    if (auto u = r.get("unit")) {
      std::string s = scalar(u, m, r.sub("unit"));
      for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (s == "second")
        rl.unit = Unit::second;
      else if (s == "minute")
        rl.unit = Unit::minute;
      else if (s == "hour")
        rl.unit = Unit::hour;
      else if (s == "day")
        rl.unit = Unit::day;
      else
        fail(m, r.sub("unit"), fmt::format("unknown unit \"{}\"", s));
    }
    if (auto x = r.get("requests_per_unit"))
      rl.requests_per_unit = number(x, m, r.sub("requests_per_unit"));
    if (auto x = r.get("unlimited")) rl.unlimited = boolean(x, m, r.sub("unlimited"));
    if (auto x = r.get("name")) rl.name = scalar(x, m, r.sub("name"));
    if (auto x = r.get("replaces")) {
      sequence(x, m, r.sub("replaces"));
      for (size_t i = 0; i < x.size(); ++i) {
        Fields rep(x[i], m, index(r.sub("replaces"), i));
        rl.replaces.push_back(scalar(rep.require("name"), m, rep.sub("name")));
        rep.finish();
      }
    }
    r.finish();
    d.rate_limit = std::move(rl);
  }
  if (auto v = f.get("shadow_mode")) d.shadow_mode = boolean(v, m, f.sub("shadow_mode"));
  if (auto v = f.get("detailed_metric"))
    d.detailed_metric = boolean(v, m, f.sub("detailed_metric"));
  if (auto v = f.get("descriptors")) {
    sequence(v, m, f.sub("descriptors"));
    for (size_t i = 0; i < v.size(); ++i)
      d.descriptors.push_back(service_descriptor(v[i], m, index(f.sub("descriptors"), i)));
  }
  f.finish();
  return d;
}

RateLimitServiceConfig service_config(const YAML::Node& n, const Meta& m) {
  Fields f(n, m, "");
  RateLimitServiceConfig c;
  c.domain = scalar(f.require("domain"), m, "domain");
  if (auto v = f.get("descriptors")) {
    sequence(v, m, "descriptors");
    for (size_t i = 0; i < v.size(); ++i)
      c.descriptors.push_back(service_descriptor(v[i], m, index("descriptors", i)));
  }
  f.finish();
  if (Status s = security::validate(c, m.object()); !s) throw LoadError{s.error()};
  return c;
}

}  // namespace

Result<std::vector<RateLimitServiceConfig>> parse_rate_limit_config(std::string_view yaml,
                                                                    std::string origin) {
  Meta meta;
  meta.kind = "RateLimitConfig";
  meta.name = origin;
  meta.namespace_ = "default";
  std::vector<RateLimitServiceConfig> out;
  try {
    std::vector<YAML::Node> docs = load_all_documents(std::string(yaml));
    for (const auto& doc : docs) {
      if (!doc || doc.IsNull()) continue;
      if (!doc.IsMap()) fail(meta, "", "a document must be a mapping");
      // The task's ConfigMap: each data entry is one config file.
      if (doc["kind"] && doc["kind"].IsScalar() && doc["kind"].Scalar() == "ConfigMap") {
        YAML::Node data = doc["data"];
        if (!data || !data.IsMap()) fail(meta, "data", "required field is missing");
        for (const auto& kv : data) {
          Meta file = meta;
          file.name = fmt::format("{} data.{}", origin, kv.first.Scalar());
          for (const auto& inner : load_all_documents(scalar(kv.second, file, "")))
            if (inner && !inner.IsNull()) out.push_back(service_config(inner, file));
        }
        continue;
      }
      out.push_back(service_config(doc, meta));
    }
  } catch (const LoadError& e) {
    return e.error;
  } catch (const YAML::Exception& e) {
    return Error{meta.object(),
                 fmt::format("line {}, column {}", e.mark.line + 1, e.mark.column + 1), e.msg};
  }
  if (out.empty()) return Error{meta.object(), "domain", "no configuration found"};
  return out;
}

Result<std::vector<RateLimitServiceConfig>> load_rate_limit_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{path, "", "cannot read file"};
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_rate_limit_config(ss.str(), path);
}

}  // namespace sluice::istio

namespace sluice::istio {

namespace {

std::string labels_text(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

// Whether an EnvoyFilter applies to the gateway workload: in the root
// namespace (every workload) or the gateway's, with a workloadSelector whose
// labels the gateway has (none: every workload there).
std::optional<std::string> selects_gateway(const EnvoyFilterRes& ef, const TranslateOptions& o,
                                           std::string& why_not) {
  const std::string& ns = ef.meta.namespace_;
  if (ns != o.root_namespace && ns != o.gateway_namespace) {
    why_not = fmt::format("namespace {} is neither the root namespace ({}) nor the gateway's ({})",
                          ns, o.root_namespace, o.gateway_namespace);
    return std::nullopt;
  }
  if (!ef.scope.selector || ef.scope.selector->empty()) return std::string("no workloadSelector");
  for (const auto& [k, v] : *ef.scope.selector) {
    auto it = o.gateway_labels.find(k);
    if (it == o.gateway_labels.end() || it->second != v) {
      why_not = fmt::format("workloadSelector {} does not match the gateway's labels {}",
                            labels_text(*ef.scope.selector), labels_text(o.gateway_labels));
      return std::nullopt;
    }
  }
  return "workloadSelector " + labels_text(*ef.scope.selector);
}

class EnvoyFilters {
 public:
  EnvoyFilters(const TranslateOptions& options, LoadedConfig& out)
      : options_(options), out_(out), rl_(out.config.rate_limits) {}

  void add(const EnvoyFilterRes& ef) {
    const Meta& m = ef.meta;
    std::string object = fmt::format("EnvoyFilter {}/{}", m.namespace_, m.name);
    std::string why_not;
    auto why = selects_gateway(ef, options_, why_not);
    if (!why) {
      out_.envoy_filters_skipped.push_back({object, why_not});
      return;
    }
    std::vector<std::string> done;
    for (const auto& p : ef.patches) {
      if (!p.context.empty() && p.context != "ANY" && p.context != "GATEWAY") {
        done.push_back(fmt::format("{} skipped (context {})", p.field, p.context));
        continue;
      }
      done.push_back(apply(m, object, p));
    }
    std::string detail = *why;
    for (const auto& d : done) detail += "; " + d;
    out_.envoy_filters_applied.push_back({object, detail});
  }

  void finish() {
    if (!rl_.local && !rl_.local_overrides.empty()) {
      out_.warnings.push_back(
          "EnvoyFilter: local_ratelimit typed_per_filter_config without the "
          "envoy.filters.http.local_ratelimit filter has no effect (as in Envoy)");
      rl_.local_overrides.clear();
    }
  }

 private:
  std::string apply(const Meta& m, const std::string& object, const EnvoyFilterPatchIn& p) {
    using K = EnvoyFilterPatchIn::Kind;
    auto check = [&](Status s, const std::string& field) {
      if (!s) fail(m, field + "." + s.error().field, s.error().message);
    };
    switch (p.kind) {
      case K::cluster:
        return p.field + " CLUSTER accepted, not used (sluice counts in Redis itself)";
      case K::local_filter:
        if (rl_.local)
          fail(m, p.field,
               fmt::format("a second {} filter ({} inserted one)", kLocalName, local_from_));
        check(security::validate(*p.local, object), p.field + ".patch.value.typed_config");
        rl_.local = *p.local;
        local_from_ = object;
        return p.field + " local_ratelimit filter";
      case K::global_filter:
        if (rl_.global)
          fail(m, p.field,
               fmt::format("a second {} filter ({} inserted one)", kGlobalName, global_from_));
        check(security::validate(*p.global, object), p.field + ".patch.value.typed_config");
        rl_.global = *p.global;
        global_from_ = object;
        return fmt::format("{} ratelimit filter, domain {}", p.field, p.global->domain);
      case K::vhost:
      case K::route:
        break;
    }
    if (p.local)
      check(security::validate(*p.local, object, true),
            p.field + ".patch.value.typed_per_filter_config");
    size_t matched = 0;
    for (size_t l = 0; l < out_.listeners.size() && l < out_.config.listeners.size(); ++l) {
      const ListenerInfo& info = out_.listeners[l];
      if (p.port && *p.port != info.port) continue;
      const std::string& router_name = out_.config.listeners[l].router;
      const RouterConfig* router = nullptr;
      for (const auto& r : out_.config.routers)
        if (r.name == router_name) router = &r;
      if (!router) continue;
      for (const auto& vh : router->virtual_hosts) {
        // Istio names a gateway's virtual hosts "<host>:<server port>".
        if (!p.vhost.empty() && p.vhost != fmt::format("{}:{}", vh.name, info.port)) continue;
        if (p.kind == K::vhost) {
          attach(router_name, vh.name, {}, p);
          ++matched;
          continue;
        }
        for (const auto& route : vh.routes) {
          auto origin = info.routes.find(route.name);
          std::string rule = origin == info.routes.end() ? route.name : origin->second.rule_name;
          if (!p.route.empty() && p.route != rule) continue;
          attach(router_name, vh.name, route.name, p);
          ++matched;
        }
      }
    }
    if (matched == 0)
      out_.warnings.push_back(fmt::format("{}: {}: matches no {} of the gateway", object, p.field,
                                          p.kind == K::vhost ? "virtual host" : "route"));
    return fmt::format("{} {} on {} {}", p.field,
                       p.local ? "local_ratelimit per-route config" : "rate_limits", matched,
                       p.kind == K::vhost ? "virtual host(s)" : "route(s)");
  }

  void attach(const std::string& router, const std::string& vh, const std::string& route,
              const EnvoyFilterPatchIn& p) {
    if (!p.rate_limits.empty())
      rl_.rate_limits.push_back(RateLimitAttachment{vh, route, p.rate_limits, router});
    if (p.local) {
      // A later patch on the same place replaces the earlier one (MERGE).
      for (auto it = rl_.local_overrides.begin(); it != rl_.local_overrides.end(); ++it)
        if (it->router == router && it->virtual_host == vh && it->route == route) {
          rl_.local_overrides.erase(it);
          break;
        }
      rl_.local_overrides.push_back(LocalRateLimitOverride{vh, route, router, *p.local});
    }
  }

  const TranslateOptions& options_;
  LoadedConfig& out_;
  RateLimitConfig& rl_;
  std::string local_from_, global_from_;
};

}  // namespace

void apply_envoy_filters(const Resources& resources, const TranslateOptions& options,
                         LoadedConfig& out) {
  EnvoyFilters filters(options, out);
  for (const auto& ef : resources.envoy_filters) filters.add(ef);
  filters.finish();
}

}  // namespace sluice::istio
