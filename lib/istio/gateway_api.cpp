// Gateway API objects: parsed (every field understood, ignored on purpose,
// or an error naming it) and converted into the Istio model (gateway_api.hpp).

#include "istio/gateway_api.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <re2/re2.h>

#include "http/regex.hpp"
#include "http/tokens.hpp"
#include "http/wire_check.hpp"
#include "istio/istio.hpp"
#include "istio/yaml_load.hpp"

namespace sluice::istio {
namespace {

constexpr const char* kGroup = "gateway.networking.k8s.io";

// Gateway API objects are always named with their namespace in errors and
// status ("HTTPRoute default/bookinfo"), as kubectl and the conditions do.
std::string object_name(const Meta& m) {
  return m.kind + " " + m.key();
}

[[noreturn]] void gw_fail(const Meta& m, std::string path, std::string message) {
  throw LoadError{Error{object_name(m), std::move(path), std::move(message)}};
}

std::string enum_value(const YAML::Node& n, const Meta& m, const std::string& path,
                       std::initializer_list<const char*> allowed) {
  std::string v = scalar(n, m, path);
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return v;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  fail(m, path, fmt::format("unknown value \"{}\" (one of {})", v, list));
}

// A Gateway API Hostname: a DNS name, or "*." and a DNS name; no port, no IP.
std::string hostname(const YAML::Node& n, const Meta& m, const std::string& path) {
  std::string h = http::to_lower(scalar(n, m, path));
  std::string_view rest = h;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  bool ok = !rest.empty() && rest.size() <= 253 && rest.front() != '.' && rest.back() != '.';
  for (char c : rest)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.');
  if (!ok)
    fail(m, path,
         fmt::format("\"{}\" is not a hostname (a DNS name, optionally with a leading \"*.\")", h));
  return h;
}

GwRef parse_ref(const YAML::Node& n, const Meta& m, const std::string& path, bool backend,
                const char* default_kind, const char* default_group) {
  Fields f(n, m, path);
  GwRef r;
  r.field = path;
  r.group = default_group;
  r.kind = default_kind;
  if (auto v = f.get("group")) r.group = scalar(v, m, f.sub("group"));
  if (auto v = f.get("kind")) r.kind = scalar(v, m, f.sub("kind"));
  r.name = scalar(f.require("name"), m, f.sub("name"));
  if (auto v = f.get("namespace")) r.namespace_ = scalar(v, m, f.sub("namespace"));
  if (auto v = f.get("port")) r.port = port_number(v, m, f.sub("port"));
  if (!backend) {
    if (auto v = f.get("sectionName")) r.section_name = scalar(v, m, f.sub("sectionName"));
  } else {
    if (auto v = f.get("weight")) {
      r.weight = integer(v, m, f.sub("weight"));
      if (r.weight < 0 || r.weight > 1'000'000)
        fail(m, f.sub("weight"), fmt::format("must be in 0..1000000, got {}", r.weight));
    }
  }
  f.finish();
  if (r.group == "core") r.group.clear();
  return r;
}

// RequestHeaderModifier / ResponseHeaderModifier.
HeaderOperations parse_header_modifier(const YAML::Node& n, const Meta& m,
                                       const std::string& path) {
  Fields f(n, m, path);
  HeaderOperations ops;
  auto pairs = [&](const char* key, std::vector<std::pair<std::string, std::string>>& out) {
    auto list = f.get(key);
    if (!list) return;
    std::string p = f.sub(key);
    require_list(list, m, p);
    for (size_t i = 0; i < list.size(); ++i) {
      Fields h(list[i], m, index(p, i));
      std::string name = scalar(h.require("name"), m, h.sub("name"));
      std::string value = scalar(h.require("value"), m, h.sub("value"));
      h.finish();
      if (auto why = http::check_header_name(name); !why.empty()) fail(m, h.sub("name"), why);
      if (auto why = http::check_header_value(value); !why.empty()) fail(m, h.sub("value"), why);
      out.emplace_back(http::to_lower(name), std::move(value));
    }
  };
  pairs("set", ops.set);
  pairs("add", ops.add);
  if (auto list = f.get("remove")) {
    require_list(list, m, f.sub("remove"));
    for (size_t i = 0; i < list.size(); ++i) {
      std::string name = scalar(list[i], m, index(f.sub("remove"), i));
      if (auto why = http::check_header_name(name); !why.empty())
        fail(m, index(f.sub("remove"), i), why);
      ops.remove.push_back(http::to_lower(name));
    }
  }
  f.finish();
  return ops;
}

GwPathModifier parse_path_modifier(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  std::string type =
      enum_value(f.require("type"), m, f.sub("type"), {"ReplaceFullPath", "ReplacePrefixMatch"});
  GwPathModifier out;
  YAML::Node full = f.get("replaceFullPath"), prefix = f.get("replacePrefixMatch");
  f.finish();
  const char* key = type == "ReplaceFullPath" ? "replaceFullPath" : "replacePrefixMatch";
  YAML::Node v = type == "ReplaceFullPath" ? full : prefix;
  if (!v) fail(m, join(path, key), fmt::format("required with type {}", type));
  if ((type == "ReplaceFullPath" && prefix) || (type == "ReplacePrefixMatch" && full))
    fail(m, path, fmt::format("only {} may be set with type {}", key, type));
  std::string value = scalar(v, m, join(path, key));
  if (!value.starts_with("/")) fail(m, join(path, key), "must start with \"/\"");
  if (auto why = http::check_path(value); !why.empty()) fail(m, join(path, key), why);
  (type == "ReplaceFullPath" ? out.full_path : out.prefix_replace) = value;
  return out;
}

double mirror_percentage(Fields& f, const Meta& m) {
  YAML::Node percent = f.get("percent"), fraction = f.get("fraction");
  if (percent && fraction) fail(m, f.path(), "set either percent or fraction, not both");
  if (percent) {
    int64_t p = integer(percent, m, f.sub("percent"));
    if (p < 0 || p > 100) fail(m, f.sub("percent"), "must be in 0..100");
    return static_cast<double>(p);
  }
  if (fraction) {
    Fields fr(fraction, m, f.sub("fraction"));
    int64_t num = integer(fr.require("numerator"), m, fr.sub("numerator"));
    int64_t den = 100;
    if (auto d = fr.get("denominator")) den = integer(d, m, fr.sub("denominator"));
    fr.finish();
    if (den < 1) fail(m, fr.sub("denominator"), "must be at least 1");
    if (num < 0 || num > den) fail(m, fr.sub("numerator"), "must be in 0..denominator");
    return 100.0 * static_cast<double>(num) / static_cast<double>(den);
  }
  return 100;
}

// `grpc`: a GRPCRoute filter, which has no redirect, rewrite or CORS.
void parse_filter(const YAML::Node& n, const Meta& m, const std::string& path, GwHttpRule& rule,
                  bool grpc = false) {
  Fields f(n, m, path);
  std::string type =
      grpc ? enum_value(f.require("type"), m, f.sub("type"),
                        {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
                         "ExtensionRef"})
           : enum_value(f.require("type"), m, f.sub("type"),
                        {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect",
                         "URLRewrite", "RequestMirror", "ExtensionRef", "CORS", "ExternalAuth"});
  static const std::map<std::string, const char*> keys = {
      {"RequestHeaderModifier", "requestHeaderModifier"},
      {"ResponseHeaderModifier", "responseHeaderModifier"},
      {"RequestRedirect", "requestRedirect"},
      {"URLRewrite", "urlRewrite"},
      {"RequestMirror", "requestMirror"},
      {"ExtensionRef", "extensionRef"},
      {"CORS", "cors"},
      {"ExternalAuth", "externalAuth"}};
  const char* key = keys.at(type);
  for (const auto& [t, k] : keys)
    if (t != type && f.get(k)) fail(m, f.sub(k), fmt::format("not allowed with type {}", type));
  YAML::Node body = f.get(key);
  f.finish();
  std::string at = join(path, key);
  if (type == "ExtensionRef" || type == "CORS" || type == "ExternalAuth")
    fail(m, f.sub("type"), fmt::format("filter {} is not implemented yet", type));
  if (!body) fail(m, at, fmt::format("required with type {}", type));
  auto once = [&](bool taken) {
    if (taken) fail(m, f.sub("type"), fmt::format("only one {} filter per rule", type));
  };
  if (type == "RequestHeaderModifier") {
    once(!rule.request_headers.empty());
    rule.request_headers = parse_header_modifier(body, m, at);
  } else if (type == "ResponseHeaderModifier") {
    once(!rule.response_headers.empty());
    rule.response_headers = parse_header_modifier(body, m, at);
  } else if (type == "RequestRedirect") {
    once(rule.redirect.has_value());
    Fields r(body, m, at);
    Redirect red;
    red.code = 302;
    if (auto v = r.get("scheme")) red.scheme = enum_value(v, m, r.sub("scheme"), {"http", "https"});
    if (auto v = r.get("hostname")) red.authority = hostname(v, m, r.sub("hostname"));
    if (auto v = r.get("port")) {
      red.port = port_number(v, m, r.sub("port"));
      rule.redirect_port_set = true;
    }
    if (auto v = r.get("statusCode")) {
      int64_t code = integer(v, m, r.sub("statusCode"));
      if (code != 301 && code != 302 && code != 303 && code != 307 && code != 308)
        fail(m, r.sub("statusCode"),
             fmt::format("must be 301, 302, 303, 307 or 308, got {}", code));
      red.code = static_cast<uint16_t>(code);
    }
    if (auto v = r.get("path")) {
      GwPathModifier pm = parse_path_modifier(v, m, r.sub("path"));
      if (pm.prefix_replace)
        fail(m, r.sub("path.type"),
             "ReplacePrefixMatch in a redirect is not implemented yet (ReplaceFullPath is)");
      red.uri = *pm.full_path;
    }
    r.finish();
    rule.redirect = red;
  } else if (type == "URLRewrite") {
    once(rule.rewrite_host || rule.rewrite_path);
    Fields r(body, m, at);
    rule.rewrite_field = at;
    if (auto v = r.get("hostname")) rule.rewrite_host = hostname(v, m, r.sub("hostname"));
    if (auto v = r.get("path")) rule.rewrite_path = parse_path_modifier(v, m, r.sub("path"));
    r.finish();
  } else if (type == "RequestMirror") {
    Fields r(body, m, at);
    GwMirror mirror;
    mirror.backend =
        parse_ref(r.require("backendRef"), m, r.sub("backendRef"), true, "Service", "");
    mirror.percentage = mirror_percentage(r, m);
    r.finish();
    rule.mirrors.push_back(std::move(mirror));
  }
}

std::string method_name(const YAML::Node& n, const Meta& m, const std::string& path) {
  return enum_value(
      n, m, path, {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"});
}

// matches[].headers of an HTTPRoute or GRPCRoute.
void parse_header_matches(Fields& f, const Meta& m, Matcher& matcher) {
  auto list = f.get("headers");
  if (!list) return;
  require_list(list, m, f.sub("headers"));
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string p = index(f.sub("headers"), i);
    Fields h(list[i], m, p);
    std::string type = "Exact";
    if (auto t = h.get("type"))
      type = enum_value(t, m, h.sub("type"), {"Exact", "RegularExpression"});
    std::string name = http::to_lower(scalar(h.require("name"), m, h.sub("name")));
    std::string value = scalar(h.require("value"), m, h.sub("value"));
    h.finish();
    if (auto why = http::check_header_name(name); !why.empty()) fail(m, h.sub("name"), why);
    if (type == "RegularExpression")
      if (auto re = http::compile_regex(value); !re) fail(m, h.sub("value"), re.error().message);
    // The first of several matches on one header name wins (the spec).
    if (!names.insert(name).second) continue;
    matcher.header(name, type == "Exact" ? StringMatch::exact(value) : StringMatch::regex(value));
  }
}

GwMatch parse_http_match(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  GwMatch out;
  out.field = path;
  out.matcher.uri = StringMatch::prefix("/");
  if (auto p = f.get("path")) {
    Fields pf(p, m, f.sub("path"));
    std::string type = "PathPrefix";
    if (auto t = pf.get("type"))
      type = enum_value(t, m, pf.sub("type"), {"Exact", "PathPrefix", "RegularExpression"});
    std::string value = "/";
    if (auto v = pf.get("value")) value = scalar(v, m, pf.sub("value"));
    pf.finish();
    if (type == "RegularExpression") {
      if (auto re = http::compile_regex(value); !re) fail(m, pf.sub("value"), re.error().message);
      out.matcher.uri = StringMatch::regex(value);
      out.path_rank = 1;
    } else {
      if (!value.starts_with("/")) fail(m, pf.sub("value"), "must start with \"/\"");
      if (auto why = http::check_path(value); !why.empty()) fail(m, pf.sub("value"), why);
      if (type == "Exact") {
        out.matcher.uri = StringMatch::exact(value);
        out.path_rank = 3;
      } else {
        // PathPrefix matches whole path elements: "/foo" is "/foo", "/foo/"
        // and "/foo/bar", never "/foobar" (Istio writes the same regex).
        std::string trimmed = value;
        while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
        out.prefix = trimmed;
        if (trimmed != "/")
          out.matcher.uri = StringMatch::regex(RE2::QuoteMeta(trimmed) + "(/.*)?");
      }
    }
    out.path_length = value.size();
  }
  parse_header_matches(f, m, out.matcher);
  if (auto list = f.get("queryParams")) {
    require_list(list, m, f.sub("queryParams"));
    std::set<std::string> names;
    for (size_t i = 0; i < list.size(); ++i) {
      std::string p = index(f.sub("queryParams"), i);
      Fields q(list[i], m, p);
      std::string type = "Exact";
      if (auto t = q.get("type"))
        type = enum_value(t, m, q.sub("type"), {"Exact", "RegularExpression"});
      std::string name = scalar(q.require("name"), m, q.sub("name"));
      std::string value = scalar(q.require("value"), m, q.sub("value"));
      q.finish();
      if (type == "RegularExpression")
        if (auto re = http::compile_regex(value); !re) fail(m, q.sub("value"), re.error().message);
      if (!names.insert(name).second) continue;
      out.matcher.query(name,
                        type == "Exact" ? StringMatch::exact(value) : StringMatch::regex(value));
    }
  }
  if (auto v = f.get("method"))
    out.matcher.method = StringMatch::exact(method_name(v, m, f.sub("method")));
  f.finish();
  return out;
}

std::vector<GwRef> parse_backends(const YAML::Node& list, const Meta& m, const std::string& path,
                                  bool http_filters) {
  std::vector<GwRef> out;
  if (!list) return out;
  require_list(list, m, path);
  for (size_t i = 0; i < list.size(); ++i) {
    std::string p = index(path, i);
    YAML::Node n = list[i];
    YAML::Node filters = n.IsMap() ? n["filters"] : YAML::Node();
    YAML::Node plain = n;
    if (filters) {
      plain = YAML::Clone(n);
      plain.remove("filters");
    }
    GwRef r = parse_ref(plain, m, p, true, "Service", "");
    if (filters && !filters.IsNull()) {
      if (!http_filters) fail(m, join(p, "filters"), "unknown field \"filters\"");
      require_list(filters, m, join(p, "filters"));
      for (size_t k = 0; k < filters.size(); ++k) {
        std::string fp = index(join(p, "filters"), k);
        GwHttpRule scratch;
        parse_filter(filters[k], m, fp, scratch);
        if (scratch.redirect || scratch.rewrite_host || scratch.rewrite_path ||
            !scratch.mirrors.empty())
          fail(m, join(fp, "type"),
               "only RequestHeaderModifier and ResponseHeaderModifier are implemented on a "
               "backendRef");
        if (!scratch.request_headers.empty()) r.request_headers = scratch.request_headers;
        if (!scratch.response_headers.empty()) r.response_headers = scratch.response_headers;
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

// A GRPCRoute match: the gRPC path is "/<service>/<method>", so service
// and method become a path match (the spec's validation patterns for Exact).
GwMatch parse_grpc_match(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  GwMatch out;
  out.field = path;
  out.matcher.uri = StringMatch::prefix("/");
  if (auto v = f.get("method")) {
    Fields mf(v, m, f.sub("method"));
    std::string type = "Exact";
    if (auto t = mf.get("type"))
      type = enum_value(t, m, mf.sub("type"), {"Exact", "RegularExpression"});
    std::string service, method;
    if (auto s = mf.get("service")) service = scalar(s, m, mf.sub("service"));
    if (auto s = mf.get("method")) method = scalar(s, m, mf.sub("method"));
    mf.finish();
    if (service.empty() && method.empty())
      fail(m, mf.path(), "one or both of service and method must be set");
    if (type == "Exact") {
      static const RE2 service_re(R"((?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*)");
      static const RE2 method_re(R"([A-Za-z_][A-Za-z_0-9]*)");
      if (!service.empty() && !RE2::FullMatch(service, service_re))
        fail(m, mf.sub("service"), fmt::format("\"{}\" is not a gRPC service name", service));
      if (!method.empty() && !RE2::FullMatch(method, method_re))
        fail(m, mf.sub("method"), fmt::format("\"{}\" is not a gRPC method name", method));
      if (!service.empty() && !method.empty())
        out.matcher.uri = StringMatch::exact("/" + service + "/" + method);
      else if (!service.empty())
        out.matcher.uri = StringMatch::prefix("/" + service + "/");
      else
        out.matcher.uri = StringMatch::regex("/[^/]+/" + method);
    } else {
      for (const auto& [key, value] :
           {std::pair{"service", &service}, std::pair{"method", &method}})
        if (!value->empty())
          if (auto re = http::compile_regex(*value); !re) fail(m, mf.sub(key), re.error().message);
      std::string s = service.empty() ? "[^/]+" : "(?:" + service + ")";
      std::string me = method.empty() ? "[^/]+" : "(?:" + method + ")";
      out.matcher.uri = StringMatch::regex("/" + s + "/" + me);
    }
    out.grpc_service_length = service.size();
    out.grpc_method_length = method.size();
  }
  parse_header_matches(f, m, out.matcher);
  f.finish();
  return out;
}

// An HTTPRoute or GRPCRoute rule: the same shape, but a GRPCRoute matches
// gRPC methods, takes fewer filters and has no timeouts.
GwHttpRule parse_rule(const YAML::Node& n, const Meta& m, const std::string& path, bool grpc) {
  Fields f(n, m, path);
  GwHttpRule rule;
  rule.field = path;
  f.ignore({"name"});
  if (grpc)
    f.not_implemented({"sessionPersistence"});
  else
    f.not_implemented({"retry", "sessionPersistence"});
  if (auto list = f.get("matches")) {
    require_list(list, m, f.sub("matches"));
    for (size_t i = 0; i < list.size(); ++i)
      rule.matches.push_back(grpc ? parse_grpc_match(list[i], m, index(f.sub("matches"), i))
                                  : parse_http_match(list[i], m, index(f.sub("matches"), i)));
  }
  if (rule.matches.empty()) {
    GwMatch any;
    any.matcher.uri = StringMatch::prefix("/");
    any.field = f.sub("matches");
    rule.matches.push_back(std::move(any));
  }
  if (auto list = f.get("filters")) {
    require_list(list, m, f.sub("filters"));
    for (size_t i = 0; i < list.size(); ++i)
      parse_filter(list[i], m, index(f.sub("filters"), i), rule, grpc);
  }
  rule.backends = parse_backends(f.get("backendRefs"), m, f.sub("backendRefs"), true);
  if (auto t = grpc ? YAML::Node() : f.get("timeouts")) {
    Fields tf(t, m, f.sub("timeouts"));
    if (auto v = tf.get("request")) rule.timeout = duration(v, m, tf.sub("request"));
    if (auto v = tf.get("backendRequest"))
      rule.backend_timeout = duration(v, m, tf.sub("backendRequest"));
    tf.finish();
    // The spec: backendRequest may not exceed request (0 is "no timeout").
    if (rule.timeout && rule.backend_timeout && rule.timeout->count() != 0 &&
        (rule.backend_timeout->count() == 0 || *rule.backend_timeout > *rule.timeout))
      fail(m, tf.sub("backendRequest"), "must not be longer than timeouts.request");
  }
  f.finish();
  if (rule.redirect && (rule.rewrite_host || rule.rewrite_path))
    fail(m, f.sub("filters"), "RequestRedirect and URLRewrite cannot both be set");
  if (rule.redirect && !rule.backends.empty())
    fail(m, f.sub("backendRefs"), "a rule with a RequestRedirect filter cannot have backendRefs");
  if (rule.rewrite_path && rule.rewrite_path->prefix_replace)
    for (const auto& mt : rule.matches)
      if (mt.path_rank != 2)
        fail(m, rule.rewrite_field + ".path.replacePrefixMatch",
             fmt::format("needs PathPrefix path matches; {}.path is not one", mt.field));
  return rule;
}

std::vector<GwRef> parse_parents(Fields& f, const Meta& m) {
  std::vector<GwRef> out;
  if (auto list = f.get("parentRefs")) {
    require_list(list, m, f.sub("parentRefs"));
    for (size_t i = 0; i < list.size(); ++i)
      out.push_back(parse_ref(list[i], m, index(f.sub("parentRefs"), i), false, "Gateway", kGroup));
  }
  return out;
}

std::vector<std::string> parse_hostnames(Fields& f, const Meta& m) {
  std::vector<std::string> out;
  if (auto list = f.get("hostnames")) {
    require_list(list, m, f.sub("hostnames"));
    for (size_t i = 0; i < list.size(); ++i)
      out.push_back(hostname(list[i], m, index(f.sub("hostnames"), i)));
  }
  return out;
}

// `tls`: a TLSRoute or TCPRoute, whose rules hold backendRefs only.
GwRoute parse_route(const YAML::Node& spec, const Meta& meta, bool tls) {
  GwRoute out;
  out.meta = meta;
  const Meta& m = out.meta;
  Fields f(spec, m, "spec");
  out.parents = parse_parents(f, m);
  // A TCPRoute has no hostnames: the connection carries none.
  if (meta.kind != "TCPRoute") out.hostnames = parse_hostnames(f, m);
  f.ignore({"useDefaultGateways"});
  if (auto list = f.get("rules")) {
    require_list(list, m, f.sub("rules"));
    for (size_t i = 0; i < list.size(); ++i) {
      std::string p = index(f.sub("rules"), i);
      if (!tls) {
        out.rules.push_back(parse_rule(list[i], m, p, meta.kind == "GRPCRoute"));
        continue;
      }
      Fields r(list[i], m, p);
      r.ignore({"name"});
      GwHttpRule rule;
      rule.field = p;
      rule.backends = parse_backends(r.require("backendRefs"), m, r.sub("backendRefs"), false);
      r.finish();
      out.rules.push_back(std::move(rule));
    }
  }
  f.finish();
  return out;
}

GwListener parse_listener(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  GwListener l;
  l.field = path;
  l.name = scalar(f.require("name"), m, f.sub("name"));
  if (auto v = f.get("hostname")) l.hostname = hostname(v, m, f.sub("hostname"));
  l.port = port_number(f.require("port"), m, f.sub("port"));
  l.protocol = enum_value(f.require("protocol"), m, f.sub("protocol"),
                          {"HTTP", "HTTPS", "TLS", "TCP", "UDP"});
  if (l.protocol == "UDP")
    fail(m, f.sub("protocol"), "protocol UDP is not implemented (HTTP, HTTPS, TLS and TCP)");
  if (auto t = f.get("tls")) {
    Fields tf(t, m, f.sub("tls"));
    l.tls_mode = "Terminate";
    if (auto v = tf.get("mode"))
      l.tls_mode = enum_value(v, m, tf.sub("mode"), {"Terminate", "Passthrough"});
    if (auto list = tf.get("certificateRefs")) {
      require_list(list, m, tf.sub("certificateRefs"));
      for (size_t i = 0; i < list.size(); ++i)
        l.certificate_refs.push_back(
            parse_ref(list[i], m, index(tf.sub("certificateRefs"), i), false, "Secret", ""));
    }
    tf.ignore({"options"});
    tf.not_implemented({"frontendValidation"});
    tf.finish();
  }
  if ((l.protocol == "HTTP" || l.protocol == "TCP") && !l.tls_mode.empty())
    fail(m, f.sub("tls"), fmt::format("must not be set with protocol {}", l.protocol));
  if (l.protocol == "HTTPS" && l.tls_mode != "Terminate")
    fail(m, join(f.sub("tls"), "mode"),
         l.tls_mode.empty() ? std::string("protocol HTTPS needs tls with certificateRefs")
                            : "protocol HTTPS terminates TLS; Passthrough needs protocol TLS");
  if (l.protocol == "HTTPS" && l.certificate_refs.empty())
    fail(m, join(f.sub("tls"), "certificateRefs"), "protocol HTTPS needs a certificate");
  // TLS Terminate carries TCPRoutes (Istio: a TLS server with mode SIMPLE and
  // tcp routes).
  if (l.protocol == "TLS" && l.tls_mode.empty())
    fail(m, f.sub("tls"), "required with protocol TLS (mode Passthrough or Terminate)");
  if (l.protocol == "TLS" && l.tls_mode == "Terminate" && l.certificate_refs.empty())
    fail(m, join(f.sub("tls"), "certificateRefs"), "mode Terminate needs a certificate");
  if (auto a = f.get("allowedRoutes")) {
    Fields af(a, m, f.sub("allowedRoutes"));
    if (auto ns = af.get("namespaces")) {
      Fields nf(ns, m, af.sub("namespaces"));
      if (auto v = nf.get("from"))
        l.from = enum_value(v, m, nf.sub("from"), {"Same", "All", "Selector"});
      if (auto sel = nf.get("selector")) {
        Fields sf(sel, m, nf.sub("selector"));
        l.selector = label_map(sf.get("matchLabels"), m, sf.sub("matchLabels"));
        sf.not_implemented({"matchExpressions"});
        sf.finish();
      }
      nf.finish();
      if (l.from == "Selector" && l.selector.empty())
        fail(m, nf.sub("selector"), "required with from: Selector (matchLabels)");
    }
    if (auto kinds = af.get("kinds")) {
      require_list(kinds, m, af.sub("kinds"));
      for (size_t i = 0; i < kinds.size(); ++i) {
        Fields kf(kinds[i], m, index(af.sub("kinds"), i));
        std::string group = kGroup;
        if (auto g = kf.get("group")) group = scalar(g, m, kf.sub("group"));
        std::string kind = scalar(kf.require("kind"), m, kf.sub("kind"));
        kf.finish();
        l.kinds.emplace_back(group, kind);
      }
    }
    af.finish();
  }
  f.finish();
  return l;
}

GwGateway parse_gw_gateway(const YAML::Node& spec, const Meta& meta) {
  GwGateway g;
  g.meta = meta;
  const Meta& m = g.meta;
  Fields f(spec, m, "spec");
  g.class_name = scalar(f.require("gatewayClassName"), m, f.sub("gatewayClassName"));
  YAML::Node list = f.require("listeners");
  require_list(list, m, f.sub("listeners"));
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    GwListener l = parse_listener(list[i], m, index(f.sub("listeners"), i));
    if (!names.insert(l.name).second)
      fail(m, l.field + ".name", fmt::format("listener name \"{}\" is used twice", l.name));
    g.listeners.push_back(std::move(l));
  }
  // Addresses are assigned by whoever runs sluice (it binds what it is told).
  f.ignore({"addresses", "infrastructure"});
  f.not_implemented({"backendTLS", "allowedListeners"});
  f.finish();
  return g;
}

GwReferenceGrant parse_grant(const YAML::Node& spec, const Meta& meta) {
  GwReferenceGrant g;
  g.meta = meta;
  const Meta& m = g.meta;
  Fields f(spec, m, "spec");
  YAML::Node from = f.require("from"), to = f.require("to");
  require_list(from, m, f.sub("from"));
  for (size_t i = 0; i < from.size(); ++i) {
    Fields e(from[i], m, index(f.sub("from"), i));
    GwReferenceGrant::From x;
    x.group = scalar(e.require("group"), m, e.sub("group"));
    x.kind = scalar(e.require("kind"), m, e.sub("kind"));
    x.namespace_ = scalar(e.require("namespace"), m, e.sub("namespace"));
    e.finish();
    g.from.push_back(std::move(x));
  }
  require_list(to, m, f.sub("to"));
  for (size_t i = 0; i < to.size(); ++i) {
    Fields e(to[i], m, index(f.sub("to"), i));
    GwReferenceGrant::To x;
    x.group = scalar(e.require("group"), m, e.sub("group"));
    x.kind = scalar(e.require("kind"), m, e.sub("kind"));
    if (auto v = e.get("name")) x.name = scalar(v, m, e.sub("name"));
    e.finish();
    if (x.group == "core") x.group.clear();
    g.to.push_back(std::move(x));
  }
  f.finish();
  return g;
}

}  // namespace

bool parse_gateway_api(const YAML::Node& doc, const Meta& meta, const std::string& api,
                       Resources& res, std::set<std::string>& seen,
                       std::vector<std::string>& warnings) {
  auto gw = [&]() -> GatewayApiResources& {
    if (!res.gateway_api) res.gateway_api = std::make_shared<GatewayApiResources>();
    return *res.gateway_api;
  };
  if (api == "v1" && meta.kind == "Namespace") {
    // allowedRoutes selectors match Namespace labels; Kubernetes labels
    // every Namespace with its own name.
    Labels labels;
    YAML::Node md = doc["metadata"];
    if (md && md.IsMap() && md["labels"]) labels = label_map(md["labels"], meta, "metadata.labels");
    labels["kubernetes.io/metadata.name"] = meta.name;
    gw().namespace_labels[meta.name] = std::move(labels);
    return false;
  }
  static const std::set<std::string> versions = {
      "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1",
      "gateway.networking.k8s.io/v1alpha2", "gateway.networking.k8s.io/v1alpha3"};
  if (!versions.count(api)) return false;
  const std::string& kind = meta.kind;
  static const std::set<std::string> kinds = {"GatewayClass",   "Gateway",  "HTTPRoute", "TLSRoute",
                                              "ReferenceGrant", "TCPRoute", "GRPCRoute"};
  if (!kinds.count(kind)) {
    warnings.push_back(fmt::format("{}: ignoring {} {} ({}): kind not supported", meta.file, kind,
                                   meta.name.empty() ? "?" : meta.key(), api));
    return true;
  }
  try {
    if (meta.name.empty()) fail(meta, "metadata.name", "required field is missing");
    for (const auto& kv : doc) {
      std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (k != "apiVersion" && k != "kind" && k != "metadata" && k != "spec" && k != "status")
        fail(meta, k, fmt::format("unknown field \"{}\"", k));
    }
    // GatewayClass is cluster-scoped.
    std::string id = kind + "/" + (kind == "GatewayClass" ? meta.name : meta.key());
    if (!seen.insert(id).second) fail(meta, "metadata.name", "defined more than once");
    YAML::Node spec = doc["spec"];
    if (!spec) fail(meta, "spec", "required field is missing");
    if (kind == "GatewayClass") {
      Fields f(spec, meta, "spec");
      scalar(f.require("controllerName"), meta, f.sub("controllerName"));
      f.ignore({"parametersRef", "description"});
      f.finish();
      gw().classes.push_back(meta.name);
    } else if (kind == "Gateway") {
      gw().gateways.push_back(parse_gw_gateway(spec, meta));
    } else if (kind == "ReferenceGrant") {
      gw().grants.push_back(parse_grant(spec, meta));
    } else {
      GwRoute r = parse_route(spec, meta, kind != "HTTPRoute" && kind != "GRPCRoute");
      YAML::Node md = doc["metadata"];
      if (md && md.IsMap() && md["creationTimestamp"] && md["creationTimestamp"].IsScalar())
        r.created = md["creationTimestamp"].Scalar();
      gw().routes.push_back(std::move(r));
    }
  } catch (const LoadError& e) {
    // Name the object with its namespace, as the Gateway API's tools do.
    if (e.error.object == meta.object()) gw_fail(meta, e.error.field, e.error.message);
    throw;
  }
  return true;
}

// --- conversion -------------------------------------------------------------------

namespace {

// Gateway API hostname intersection: the narrower name, or none. A wildcard
// covers any number of labels ("*.example.com" covers "a.b.example.com").
std::optional<std::string> intersect(const std::string& a, const std::string& b) {
  if (a.empty()) return b.empty() ? std::string("*") : b;
  if (b.empty()) return a;
  return intersect_hosts(a, b);
}

struct Converter {
  Resources& res;
  const GatewayApiResources& api;
  const std::string& gateway_class;
  std::vector<RouteStatus>& status;
  std::vector<std::string>& warnings;

  // The served Gateways by "ns/name".
  std::map<std::string, const GwGateway*> gateways;

  // One VirtualService per (port, domain) for HTTP; rules gathered first.
  struct Entry {
    const GwRoute* route;
    size_t route_order;  // position in precedence order of routes
    size_t rule, match;
    uint16_t port;
  };
  struct Bucket {
    std::set<std::string> gateway_keys;
    std::vector<Entry> entries;
  };
  std::map<std::pair<uint16_t, std::string>, Bucket> buckets;

  static std::string listener_key(const GwGateway& g, const GwListener& l) {
    return g.meta.namespace_ + "/" + g.meta.name + "/" + l.name;
  }

  bool grant_allows(const std::string& from_kind, const std::string& from_ns,
                    const std::string& to_group, const std::string& to_kind,
                    const std::string& to_ns, const std::string& to_name) const {
    for (const auto& g : api.grants) {
      if (g.meta.namespace_ != to_ns) continue;
      bool from = std::any_of(g.from.begin(), g.from.end(), [&](const GwReferenceGrant::From& f) {
        return f.group == kGroup && f.kind == from_kind && f.namespace_ == from_ns;
      });
      bool to = std::any_of(g.to.begin(), g.to.end(), [&](const GwReferenceGrant::To& t) {
        return t.group == to_group && t.kind == to_kind && (t.name.empty() || t.name == to_name);
      });
      if (from && to) return true;
    }
    return false;
  }

  // The PEM of a listener's certificateRefs[0].
  void listener_tls(const GwGateway& g, const GwListener& l, GatewayServer& srv) const {
    ServerTlsIn tls;
    tls.mode = l.tls_mode == "Passthrough" ? "PASSTHROUGH" : "SIMPLE";
    if (l.tls_mode == "Terminate") {
      const GwRef& ref = l.certificate_refs.front();
      std::string field = ref.field;
      if (!ref.group.empty() || ref.kind != "Secret")
        gw_fail(g.meta, field + ".kind",
                fmt::format("InvalidCertificateRef: {} {} is not a core Secret",
                            ref.group.empty() ? "core" : ref.group, ref.kind));
      std::string ns = ref.namespace_.empty() ? g.meta.namespace_ : ref.namespace_;
      if (ns != g.meta.namespace_ &&
          !grant_allows("Gateway", g.meta.namespace_, "", "Secret", ns, ref.name))
        gw_fail(g.meta, field + ".namespace",
                fmt::format("RefNotPermitted: Secret {}/{} is in another namespace and no "
                            "ReferenceGrant in {} allows it",
                            ns, ref.name, ns));
      const SecretRes* sec = nullptr;
      for (const auto& s : res.secrets)
        if (s.meta.name == ref.name && s.meta.namespace_ == ns) sec = &s;
      if (!sec)
        gw_fail(g.meta, field + ".name",
                fmt::format("InvalidCertificateRef: Secret {}/{} is not in the loaded "
                            "configuration",
                            ns, ref.name));
      auto crt = sec->data.find("tls.crt");
      auto key = sec->data.find("tls.key");
      if (crt == sec->data.end() || key == sec->data.end() || crt->second.empty() ||
          key->second.empty())
        gw_fail(g.meta, field + ".name",
                fmt::format("InvalidCertificateRef: Secret {}/{} has no tls.crt and tls.key (a "
                            "kubernetes.io/tls Secret)",
                            ns, ref.name));
      tls.server_certificate = PemFile{field, "", crt->second};
      tls.private_key = PemFile{field, "", key->second};
      if (l.certificate_refs.size() > 1)
        warnings.push_back(
            fmt::format("{}: {}.tls.certificateRefs: only the first certificate is "
                        "served",
                        object_name(g.meta), l.field));
    }
    srv.tls = std::move(tls);
  }

  void add_gateways() {
    std::map<uint16_t, std::pair<std::string, std::string>> port_family;  // port -> family, who
    for (const auto& g : api.gateways) {
      if (g.class_name != gateway_class) {
        warnings.push_back(fmt::format(
            "{}: spec.gatewayClassName: class \"{}\" is not \"{}\" (--gateway-class); ignored",
            object_name(g.meta), g.class_name, gateway_class));
        continue;
      }
      gateways[g.meta.key()] = &g;
      for (const auto& l : g.listeners) {
        // One socket per port: plain HTTP or TLS, not both.
        std::string family = l.protocol == "HTTP" ? "plain HTTP" : "TLS";
        std::string who = fmt::format("{} listener \"{}\"", object_name(g.meta), l.name);
        auto [it, fresh] = port_family.emplace(l.port, std::pair{family, who});
        if (!fresh && it->second.first != family)
          gw_fail(g.meta, l.field + ".protocol",
                  fmt::format("port {} is {} in {} and {} here", l.port, it->second.first,
                              it->second.second, family));
        GatewayRes out;
        out.meta = g.meta;
        out.meta.name = g.meta.name + "/" + l.name;
        for (const auto& existing : res.gateways)
          if (existing.meta.key() == out.meta.key())
            gw_fail(g.meta, l.field + ".name",
                    fmt::format("clashes with Gateway {}", existing.meta.display()));
        GatewayServer srv;
        srv.port = l.port;
        srv.port_name = l.name;
        srv.name = l.name;
        srv.protocol = l.protocol;
        srv.hosts = {l.hostname.empty() ? std::string("*") : l.hostname};
        if (!l.tls_mode.empty()) listener_tls(g, l, srv);
        out.servers.push_back(std::move(srv));
        res.gateways.push_back(std::move(out));
      }
    }
  }

  // Kinds a listener admits: allowedRoutes.kinds, else its protocol's.
  static bool kind_allowed(const GwListener& l, const std::string& kind) {
    // The kinds each protocol can carry (the Gateway API's defaults for them).
    auto carries = [&](const std::string& k) {
      // Istio's HTTP and HTTPS listeners admit GRPCRoutes by default too.
      if (k == "HTTPRoute" || k == "GRPCRoute")
        return l.protocol == "HTTP" || l.protocol == "HTTPS";
      if (k == "TLSRoute") return l.protocol == "TLS" && l.tls_mode == "Passthrough";
      if (k == "TCPRoute")
        return l.protocol == "TCP" || (l.protocol == "TLS" && l.tls_mode == "Terminate");
      return false;
    };
    if (l.kinds.empty()) return carries(kind);
    for (const auto& [group, k] : l.kinds)
      if (group == kGroup && k == kind) return carries(kind);
    return false;
  }

  bool namespace_allowed(const GwGateway& g, const GwListener& l, const std::string& ns) const {
    if (l.from == "All") return true;
    if (l.from == "Same") return ns == g.meta.namespace_;
    auto it = api.namespace_labels.find(ns);
    Labels labels =
        it == api.namespace_labels.end() ? Labels{{"kubernetes.io/metadata.name", ns}} : it->second;
    for (const auto& [k, v] : l.selector) {
      auto found = labels.find(k);
      if (found == labels.end() || found->second != v) return false;
    }
    return true;
  }

  // The hostnames a route serves on a listener; empty when they do not meet.
  static std::vector<std::string> effective_hosts(const GwRoute& r, const GwListener& l) {
    std::vector<std::string> out;
    if (r.hostnames.empty()) {
      out.push_back(l.hostname.empty() ? "*" : l.hostname);
      return out;
    }
    for (const auto& h : r.hostnames)
      if (auto d = intersect(h, l.hostname))
        if (std::find(out.begin(), out.end(), *d) == out.end()) out.push_back(*d);
    return out;
  }

  // ResolvedRefs of one backendRef: empty reason when it resolves; else the
  // reason and message. `host` and `port` are set when it resolves.
  std::pair<std::string, std::string> resolve(const GwRoute& r, const GwRef& ref,
                                              std::string& host) const {
    if (!ref.group.empty() || ref.kind != "Service")
      return {"InvalidKind", fmt::format("{}: {} {} is not a Service", ref.field,
                                         ref.group.empty() ? "core" : ref.group, ref.kind)};
    std::string ns = ref.namespace_.empty() ? r.meta.namespace_ : ref.namespace_;
    if (ns != r.meta.namespace_ &&
        !grant_allows(r.meta.kind, r.meta.namespace_, "", "Service", ns, ref.name))
      return {"RefNotPermitted",
              fmt::format("{}: Service {}/{} is in another namespace and no ReferenceGrant in {} "
                          "allows it",
                          ref.field, ns, ref.name, ns)};
    host = fmt::format("{}.{}.svc.cluster.local", ref.name, ns);
    for (const auto& s : res.services)
      if (s.meta.name == ref.name && s.meta.namespace_ == ns) {
        for (const auto& p : s.ports)
          if (p.port == *ref.port) return {};
        return {"BackendNotFound", fmt::format("{}: Service {}/{} has no port {}", ref.field, ns,
                                               ref.name, *ref.port)};
      }
    // A ServiceEntry declaring the Service's name serves it too (as in Istio).
    for (const auto& se : res.service_entries)
      for (const auto& h : se.hosts)
        if (http::to_lower(h) == host)
          for (const auto& p : se.ports)
            if (p.number == *ref.port) return {};
    return {"BackendNotFound", fmt::format("{}: Service {}/{} is not in the loaded configuration",
                                           ref.field, ns, ref.name)};
  }

  // Resolved backends per rule (index-aligned with rule.backends; empty
  // host: unresolved) and the route's ResolvedRefs condition.
  struct Resolved {
    std::vector<std::vector<std::string>> hosts;
    std::vector<std::vector<std::string>> mirror_hosts;
    std::string reason = "ResolvedRefs";
    std::string message;
  };
  std::map<const GwRoute*, Resolved> resolved;

  void resolve_route(const GwRoute& r) {
    Resolved out;
    auto check = [&](const GwRef& ref) {
      if (ref.kind == "Service" && ref.group.empty() && !ref.port)
        gw_fail(r.meta, ref.field + ".port", "required for a Service backend");
      std::string host;
      auto [reason, message] = resolve(r, ref, host);
      if (reason.empty()) return host;
      if (out.reason == "ResolvedRefs") {
        out.reason = reason;
        out.message = message;
      }
      return std::string();
    };
    for (const auto& rule : r.rules) {
      auto& hs = out.hosts.emplace_back();
      for (const auto& b : rule.backends) {
        hs.push_back(check(b));
        if (r.meta.kind == "GRPCRoute" && !hs.back().empty()) speak_grpc(r, b);
      }
      auto& ms = out.mirror_hosts.emplace_back();
      for (const auto& m : rule.mirrors) ms.push_back(check(m.backend));
    }
    resolved[&r] = std::move(out);
  }

  // A GRPCRoute backend is spoken to as gRPC (HTTP/2) whatever its port
  // declares: an HTTP or undeclared Service or ServiceEntry port is marked
  // GRPC before translate() reads the protocol.
  void speak_grpc(const GwRoute& r, const GwRef& ref) {
    std::string ns = ref.namespace_.empty() ? r.meta.namespace_ : ref.namespace_;
    for (auto& s : res.services)
      if (s.meta.name == ref.name && s.meta.namespace_ == ns)
        for (auto& p : s.ports) {
          std::string app = http::to_lower(p.app_protocol);
          bool h2 =
              app == "grpc" || app == "grpc-web" || app == "http2" || app == "kubernetes.io/h2c";
          if (p.port == *ref.port && !h2) p.app_protocol = "grpc";
        }
    std::string host = fmt::format("{}.{}.svc.cluster.local", ref.name, ns);
    for (auto& se : res.service_entries)
      for (const auto& h : se.hosts)
        if (http::to_lower(h) == host)
          for (auto& p : se.ports)
            if (p.number == *ref.port && (p.protocol.empty() || p.protocol == "HTTP"))
              p.protocol = "GRPC";
  }

  // Where each route's status is in `status`, for conflicts found later.
  std::map<const GwRoute*, size_t> status_index;

  void attach(const GwRoute& r, size_t order) {
    RouteStatus st;
    st.route = object_name(r.meta);
    const Resolved& rs = resolved.at(&r);
    for (const auto& p : r.parents) {
      RouteParentStatus ps;
      std::string ns = p.namespace_.empty() ? r.meta.namespace_ : p.namespace_;
      ps.parent = fmt::format("{} {}/{}", p.kind, ns, p.name);
      if (!p.section_name.empty()) ps.parent += " sectionName " + p.section_name;
      if (p.port) ps.parent += fmt::format(" port {}", *p.port);
      ps.resolved_refs = rs.reason == "ResolvedRefs";
      ps.resolved_reason = rs.reason;
      ps.resolved_message = rs.message;
      auto reject = [&](const char* reason, std::string message) {
        ps.accepted = false;
        ps.accepted_reason = reason;
        ps.accepted_message = std::move(message);
      };
      auto it = gateways.find(ns + "/" + p.name);
      if (p.group != kGroup || p.kind != "Gateway") {
        reject("NoMatchingParent",
               fmt::format("{} {} parents are not served by an ingress gateway", p.group, p.kind));
      } else if (it == gateways.end()) {
        reject("NoMatchingParent", fmt::format("no Gateway {}/{} of class \"{}\" is loaded", ns,
                                               p.name, gateway_class));
      } else {
        const GwGateway& g = *it->second;
        size_t candidates = 0, allowed = 0, attached = 0;
        for (const auto& l : g.listeners) {
          if (!p.section_name.empty() && p.section_name != l.name) continue;
          if (p.port && *p.port != l.port) continue;
          ++candidates;
          if (!kind_allowed(l, r.meta.kind) || !namespace_allowed(g, l, r.meta.namespace_))
            continue;
          ++allowed;
          auto hosts = effective_hosts(r, l);
          if (hosts.empty()) continue;
          ++attached;
          add_to_listener(r, order, g, l, hosts);
        }
        if (candidates == 0)
          reject("NoMatchingParent", "no listener of the Gateway matches sectionName / port");
        else if (allowed == 0)
          reject("NotAllowedByListeners",
                 fmt::format("the listeners' allowedRoutes do not admit a {} from namespace {}",
                             r.meta.kind, r.meta.namespace_));
        else if (attached == 0)
          reject("NoMatchingListenerHostname",
                 "no hostname of the route intersects a listener's hostname");
        else {
          ps.accepted = true;
          ps.accepted_reason = "Accepted";
          ps.accepted_message = fmt::format("attached to {} listener(s)", attached);
        }
      }
      st.parents.push_back(std::move(ps));
    }
    if (r.parents.empty())
      warnings.push_back(fmt::format("{}: spec.parentRefs: none; the route serves nothing here",
                                     object_name(r.meta)));
    status_index[&r] = status.size();
    status.push_back(std::move(st));
  }

  void add_to_listener(const GwRoute& r, size_t order, const GwGateway& g, const GwListener& l,
                       const std::vector<std::string>& hosts) {
    if (r.meta.kind == "TLSRoute") {
      add_tls_route(r, g, l, hosts);
      return;
    }
    if (r.meta.kind == "TCPRoute") {
      add_tcp_route(r, g, l, hosts);
      return;
    }
    for (const auto& h : hosts) {
      Bucket& b = buckets[{l.port, h}];
      b.gateway_keys.insert(listener_key(g, l));
      for (size_t i = 0; i < r.rules.size(); ++i)
        for (size_t k = 0; k < r.rules[i].matches.size(); ++k) {
          bool dup = std::any_of(b.entries.begin(), b.entries.end(), [&](const Entry& e) {
            return e.route == &r && e.rule == i && e.match == k;
          });
          if (!dup) b.entries.push_back(Entry{&r, order, i, k, l.port});
        }
    }
  }

  void add_tls_route(const GwRoute& r, const GwGateway& g, const GwListener& l,
                     const std::vector<std::string>& hosts) {
    const Resolved& rs = resolved.at(&r);
    VirtualServiceRes vs;
    vs.meta = r.meta;
    vs.meta.name = fmt::format("{}/{}/{}", r.meta.name, g.meta.name, l.name);
    vs.meta.namespace_ = r.meta.namespace_;
    vs.hosts = hosts;
    vs.gateways = {listener_key(g, l)};
    for (size_t i = 0; i < r.rules.size(); ++i) {
      TlsRuleIn rule;
      TlsMatchIn m;
      m.sni_hosts = hosts;
      rule.matches.push_back(std::move(m));
      for (size_t j = 0; j < r.rules[i].backends.size(); ++j) {
        const std::string& host = rs.hosts[i][j];
        const GwRef& b = r.rules[i].backends[j];
        if (host.empty() || b.weight == 0) continue;
        rule.route.push_back(DestinationIn{host, "", b.port, b.weight, {}, {}});
      }
      if (rule.route.size() > 1)
        warnings.push_back(fmt::format(
            "{}: {}.backendRefs: TLS passthrough relays to one backend; the last is used",
            object_name(r.meta), r.rules[i].field));
      if (!rule.route.empty()) vs.tls.push_back(std::move(rule));
    }
    if (!vs.tls.empty()) res.virtual_services.push_back(std::move(vs));
  }

  // A TCPRoute on a listener: a VirtualService tcp rule per route rule, its
  // backends weighted (one backend takes every connection).
  void add_tcp_route(const GwRoute& r, const GwGateway& g, const GwListener& l,
                     const std::vector<std::string>& hosts) {
    const Resolved& rs = resolved.at(&r);
    VirtualServiceRes vs;
    vs.meta = r.meta;
    vs.meta.name = fmt::format("{}/{}/{}", r.meta.name, g.meta.name, l.name);
    vs.hosts = hosts;
    vs.gateways = {listener_key(g, l)};
    for (size_t i = 0; i < r.rules.size(); ++i) {
      TcpRuleIn rule;
      for (size_t j = 0; j < r.rules[i].backends.size(); ++j) {
        const std::string& host = rs.hosts[i][j];
        const GwRef& b = r.rules[i].backends[j];
        if (host.empty() || b.weight == 0) continue;
        rule.route.push_back(DestinationIn{host, "", b.port, b.weight, {}, {}});
      }
      if (!rule.route.empty()) vs.tcp.push_back(std::move(rule));
    }
    if (!vs.tcp.empty()) res.virtual_services.push_back(std::move(vs));
  }

  // Gateway API precedence between two matches of routes on one hostname.
  bool before(const Entry& a, const Entry& b) const {
    const GwMatch& x = a.route->rules[a.rule].matches[a.match];
    const GwMatch& y = b.route->rules[b.rule].matches[b.match];
    if (a.route->meta.kind == "GRPCRoute" && b.route->meta.kind == "GRPCRoute") {
      // GRPCRoute precedence: the most characters of service, then of
      // method, then the most header matches.
      if (x.grpc_service_length != y.grpc_service_length)
        return x.grpc_service_length > y.grpc_service_length;
      if (x.grpc_method_length != y.grpc_method_length)
        return x.grpc_method_length > y.grpc_method_length;
      if (x.matcher.headers.size() != y.matcher.headers.size())
        return x.matcher.headers.size() > y.matcher.headers.size();
    } else {
      if (x.path_rank != y.path_rank) return x.path_rank > y.path_rank;
      if (x.path_length != y.path_length) return x.path_length > y.path_length;
      if (x.matcher.method.has_value() != y.matcher.method.has_value())
        return x.matcher.method.has_value();
      if (x.matcher.headers.size() != y.matcher.headers.size())
        return x.matcher.headers.size() > y.matcher.headers.size();
      if (x.matcher.query_params.size() != y.matcher.query_params.size())
        return x.matcher.query_params.size() > y.matcher.query_params.size();
    }
    if (a.route_order != b.route_order) return a.route_order < b.route_order;
    if (a.rule != b.rule) return a.rule < b.rule;
    return a.match < b.match;
  }

  HttpRuleIn http_rule(const Entry& e) const {
    const GwRoute& r = *e.route;
    const GwHttpRule& rule = r.rules[e.rule];
    const GwMatch& match = rule.matches[e.match];
    const Resolved& rs = resolved.at(&r);
    HttpRuleIn out;
    out.source_object = object_name(r.meta);
    out.source_field = match.field;
    out.matches.push_back(HttpMatchIn{match.matcher, {}, false});
    out.request_headers = rule.request_headers;
    out.response_headers = rule.response_headers;
    out.headers_set = !rule.request_headers.empty() || !rule.response_headers.empty();
    if (rule.redirect) {
      Redirect red = *rule.redirect;
      // The spec: without a port, the scheme's well-known port when the
      // scheme is set, else the listener's (left out of Location when it is
      // the request scheme's default).
      if (!rule.redirect_port_set) {
        if (!red.scheme.empty() || e.port == 80 || e.port == 443)
          red.derive_port = Redirect::DerivePort::from_protocol_default;
        else
          red.port = e.port;
      }
      out.redirect = red;
    }
    if (rule.rewrite_host || rule.rewrite_path) {
      Rewrite rw;
      if (rule.rewrite_host) rw.authority = *rule.rewrite_host;
      if (rule.rewrite_path) {
        auto escape = [](const std::string& s) {
          std::string o;
          for (char c : s) o += c == '\\' ? std::string("\\\\") : std::string(1, c);
          return o;
        };
        if (rule.rewrite_path->full_path) {
          rw.uri_regex = std::pair{std::string("^.*$"), escape(*rule.rewrite_path->full_path)};
        } else {
          // Path elements: "/foo" -> "/bar" makes "/foo/x" "/bar/x"; to "/"
          // it makes "/x", never "//x".
          const std::string& to = *rule.rewrite_path->prefix_replace;
          std::string from = match.prefix == "/" ? std::string() : RE2::QuoteMeta(match.prefix);
          if (to.ends_with("/"))
            rw.uri_regex = std::pair{"^" + from + "/?(.*)$", escape(to) + "\\1"};
          else
            rw.uri_regex = std::pair{"^" + from + "(.*)$", escape(to) + "\\1"};
        }
      }
      out.rewrite = rw;
    }
    if (!rule.redirect) {
      int64_t total = 0;
      for (size_t j = 0; j < rule.backends.size(); ++j) {
        const std::string& host = rs.hosts[e.rule][j];
        const GwRef& b = rule.backends[j];
        if (host.empty()) continue;
        DestinationIn d{host, "", b.port, b.weight, b.request_headers, b.response_headers};
        total += b.weight;
        out.route.push_back(std::move(d));
      }
      // No backend to send to (none given, none resolved, or weights all
      // 0): the spec's 500.
      if (total == 0) {
        out.route.clear();
        out.direct_response = DirectResponse{500, {}};
      }
    }
    std::vector<MirrorIn> mirrors;
    for (size_t j = 0; j < rule.mirrors.size(); ++j) {
      const std::string& host = rs.mirror_hosts[e.rule][j];
      if (host.empty()) continue;
      const GwRef& b = rule.mirrors[j].backend;
      mirrors.push_back(MirrorIn{DestinationIn{host, "", b.port, {}, {}, {}},
                                 rule.mirrors[j].percentage, b.field});
    }
    if (!mirrors.empty()) out.mirrors = std::move(mirrors);
    if (rule.timeout) out.timeout = *rule.timeout;
    if (rule.backend_timeout) {
      RetryPolicy retries;
      retries.per_try_timeout = *rule.backend_timeout;
      out.retries = retries;
    }
    return out;
  }

  // The spec: an HTTPRoute and a GRPCRoute whose hostnames meet on a
  // listener are never merged; the older (then namespace/name first) is
  // accepted there and the other is not, on every hostname of that port.
  void resolve_kind_conflicts() {
    std::map<const GwRoute*, std::pair<const GwRoute*, uint16_t>> losers;  // -> winner, port
    for (auto& [key, bucket] : buckets) {
      const Entry* first_http = nullptr;
      const Entry* first_grpc = nullptr;
      for (const auto& e : bucket.entries) {
        const Entry*& slot = e.route->meta.kind == "GRPCRoute" ? first_grpc : first_http;
        if (!slot || e.route_order < slot->route_order) slot = &e;
      }
      if (!first_http || !first_grpc) continue;
      bool grpc_wins = first_grpc->route_order < first_http->route_order;
      const GwRoute* winner = grpc_wins ? first_grpc->route : first_http->route;
      for (const auto& e : bucket.entries)
        if ((e.route->meta.kind == "GRPCRoute") != grpc_wins)
          losers.emplace(e.route, std::pair{winner, key.first});
    }
    if (losers.empty()) return;
    for (auto& kv : buckets) {
      // Not a structured binding: clang 14 (the fuzz build) cannot capture one.
      uint16_t port = kv.first.first;
      std::erase_if(kv.second.entries, [&](const Entry& e) {
        auto it = losers.find(e.route);
        return it != losers.end() && it->second.second == port;
      });
    }
    std::erase_if(buckets, [](const auto& kv) { return kv.second.entries.empty(); });
    for (const auto& [route, why] : losers) {
      for (auto& ps : status[status_index.at(route)].parents) {
        if (!ps.accepted) continue;
        ps.accepted = false;
        ps.accepted_reason = "Conflicted";
        ps.accepted_message = fmt::format(
            "{} shares a hostname on port {} and takes precedence (HTTPRoutes and "
            "GRPCRoutes are never merged)",
            object_name(why.first->meta), why.second);
      }
    }
  }

  void build_virtual_services() {
    resolve_kind_conflicts();
    for (auto& [key, bucket] : buckets) {
      auto& entries = bucket.entries;
      std::stable_sort(entries.begin(), entries.end(),
                       [&](const Entry& a, const Entry& b) { return before(a, b); });
      VirtualServiceRes vs;
      vs.meta.kind = "HTTPRoute";
      vs.meta.namespace_ = "gateway-api";
      vs.meta.name = fmt::format("{}/{}", key.first, key.second);
      vs.meta.file = "<gateway api>";
      vs.hosts = {key.second};
      vs.gateways.assign(bucket.gateway_keys.begin(), bucket.gateway_keys.end());
      for (const auto& e : entries) vs.http.push_back(http_rule(e));
      res.virtual_services.push_back(std::move(vs));
    }
  }

  void run() {
    add_gateways();
    // Oldest first, then by namespace/name: precedence between routes.
    std::vector<const GwRoute*> order;
    for (const auto& r : api.routes) order.push_back(&r);
    std::stable_sort(order.begin(), order.end(), [](const GwRoute* a, const GwRoute* b) {
      if (a->created.empty() != b->created.empty()) return !a->created.empty();
      if (a->created != b->created) return a->created < b->created;
      return a->meta.key() < b->meta.key();
    });
    for (const auto* r : order) resolve_route(*r);
    std::map<const GwRoute*, size_t> rank;
    for (size_t i = 0; i < order.size(); ++i) rank[order[i]] = i;
    for (const auto& r : api.routes) attach(r, rank.at(&r));
    build_virtual_services();
  }
};

}  // namespace

void convert_gateway_api(Resources& res, const std::string& gateway_class,
                         std::vector<RouteStatus>& status, std::vector<std::string>& warnings) {
  if (!res.gateway_api) return;
  auto api = res.gateway_api;  // kept alive while `res` grows
  Converter c{res, *api, gateway_class, status, warnings, {}, {}, {}};
  c.run();
}

}  // namespace sluice::istio
