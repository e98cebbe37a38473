// YAML -> Resources. Every field of the four kinds is either understood,
// accepted and ignored (documented as irrelevant at an ingress), rejected as
// "not implemented yet", or an unknown-field error: nothing is dropped silently.
//
// Exceptions are used inside the loader (config path only) and converted to
// Result at the API boundary.

#include <openssl/base64.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <re2/re2.h>

#include <cmath>

#include "http/regex.hpp"
#include "http/tokens.hpp"
#include "http/wire_check.hpp"
#include "istio/gateway_api.hpp"
#include "istio/istio.hpp"
#include "istio/model.hpp"
#include "istio/yaml_load.hpp"
#include "policy/policy.hpp"
#include "security/jwks_fetch.hpp"
#include "security/jwt.hpp"

namespace sluice::istio {

std::string join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}
std::string index(std::string_view path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

std::string scalar(const YAML::Node& node, const Meta& meta, const std::string& path) {
  if (!node.IsScalar()) fail(meta, path, "must be a string");
  return node.Scalar();
}

Fields::Fields(const YAML::Node& node, const Meta& meta, std::string path)
    : node_(node), meta_(meta), path_(std::move(path)) {
  if (node_.IsNull() || !node_.IsDefined()) return;
  if (!node_.IsMap()) fail(meta_, path_.empty() ? "spec" : path_, "must be a mapping");
}

YAML::Node Fields::get(const char* key) {
  known_.insert(key);
  if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node v = node_[key];
  if (v && v.IsNull()) return YAML::Node(YAML::NodeType::Undefined);  // `key:` = absent
  return v;
}

YAML::Node Fields::require(const char* key) {
  YAML::Node v = get(key);
  if (!v) fail(meta_, sub(key), "required field is missing");
  return v;
}

void Fields::not_implemented(std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (get(k)) fail(meta_, sub(k), fmt::format("{} is not implemented yet", k));
}

void Fields::ignore(std::initializer_list<const char*> keys) {
  for (const char* k : keys) known_.insert(k);
}

void Fields::finish() const {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    std::string k = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
    if (!known_.count(k)) fail(meta_, sub(k), fmt::format("unknown field \"{}\"", k));
  }
}

namespace {

// Warnings raised while parsing (fields accepted with no effect); set by Parser.
thread_local std::vector<std::string>* parse_warnings = nullptr;

void note(const Meta& meta, const std::string& path, const std::string& message) {
  if (parse_warnings)
    parse_warnings->push_back(fmt::format("{}: {}: {}", meta.object(), path, message));
}

}  // namespace

int64_t integer(const YAML::Node& node, const Meta& meta, const std::string& path) {
  std::string text = node.IsScalar() ? node.Scalar() : std::string();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    fail(meta, path, fmt::format("must be an integer, got \"{}\"", text));
  return value;
}

uint16_t port_number(const YAML::Node& node, const Meta& meta, const std::string& path) {
  int64_t v = integer(node, meta, path);
  if (v < 1 || v > 65535) fail(meta, path, fmt::format("port {} is out of range 1-65535", v));
  return static_cast<uint16_t>(v);
}

void require_list(const YAML::Node& n, const Meta& meta, const std::string& path) {
  if (!n.IsSequence()) fail(meta, path, "must be a list");
}

bool boolean(const YAML::Node& node, const Meta& meta, const std::string& path) {
  std::string s = node.IsScalar() ? node.Scalar() : std::string();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  fail(meta, path, fmt::format("must be true or false, got \"{}\"", s));
}

double decimal(const YAML::Node& node, const Meta& meta, const std::string& path) {
  std::string text = node.IsScalar() ? node.Scalar() : std::string();
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      !std::isfinite(value))
    fail(meta, path, fmt::format("must be a number, got \"{}\"", text));
  return value;
}

namespace {

uint32_t unsigned32(const YAML::Node& node, const Meta& meta, const std::string& path) {
  int64_t v = integer(node, meta, path);
  if (v < 0 || v > UINT32_MAX)
    fail(meta, path, fmt::format("must be in 0..{}, got {}", UINT32_MAX, v));
  return static_cast<uint32_t>(v);
}

}  // namespace

// Go / protobuf duration text as Istio accepts it: "0.5s", "100ms", "1m30s",
// "2h". Only millisecond precision, never negative. (The mesh config reads
// durations too: yaml_load.hpp.)
std::chrono::milliseconds duration(const YAML::Node& node, const Meta& meta,
                                   const std::string& path) {
  std::string text = node.IsScalar() ? node.Scalar() : std::string();
  auto bad = [&](const char* why) {
    fail(meta, path, fmt::format("invalid duration \"{}\": {}", text, why));
  };
  if (text.empty()) bad("empty");
  if (text[0] == '-') bad("must not be negative");
  if (text == "0") return std::chrono::milliseconds(0);
  long double total_ns = 0;
  std::string_view rest = text;
  if (rest[0] == '+') rest.remove_prefix(1);
  while (!rest.empty()) {
    size_t n = 0;
    while (n < rest.size() && (std::isdigit(static_cast<unsigned char>(rest[n])) || rest[n] == '.'))
      ++n;
    if (n == 0) bad("expected a number (units: h, m, s, ms, us, ns)");
    std::string digits(rest.substr(0, n));
    if (std::count(digits.begin(), digits.end(), '.') > 1 || digits == ".") bad("bad number");
    rest.remove_prefix(n);
    size_t u = 0;
    while (u < rest.size() && !std::isdigit(static_cast<unsigned char>(rest[u])) && rest[u] != '.')
      ++u;
    std::string unit(rest.substr(0, u));
    rest.remove_prefix(u);
    long double scale = 0;
    if (unit == "h")
      scale = 3600e9L;
    else if (unit == "m")
      scale = 60e9L;
    else if (unit == "s")
      scale = 1e9L;
    else if (unit == "ms")
      scale = 1e6L;
    else if (unit == "us" || unit == "\xc2\xb5s" || unit == "\xce\xbcs")
      scale = 1e3L;
    else if (unit == "ns")
      scale = 1;
    else
      bad(unit.empty() ? "missing unit (h, m, s, ms, us, ns)" : "unknown unit");
    total_ns += std::stold(digits) * scale;
  }
  if (total_ns > 1e9L * 3600 * 24 * 365 * 100) bad("too large");
  long double ms = total_ns / 1e6L;
  if (std::fabs(ms - std::round(ms)) > 1e-6L)
    fail(
        meta, path,
        fmt::format("invalid duration \"{}\": only durations to ms precision are supported", text));
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

namespace {

std::chrono::seconds whole_seconds(const YAML::Node& node, const Meta& meta,
                                   const std::string& path) {
  auto ms = duration(node, meta, path);
  if (ms.count() % 1000 != 0)
    fail(meta, path, fmt::format("\"{}\" must be a whole number of seconds", node.Scalar()));
  return std::chrono::duration_cast<std::chrono::seconds>(ms);
}

// Istio Percent {value: double} in [0, 100].
double percentage(const YAML::Node& node, const Meta& meta, const std::string& path);

std::string enum_name(const YAML::Node& node, const Meta& meta, const std::string& path,
                      std::initializer_list<const char*> allowed) {
  std::string v = scalar(node, meta, path);
  for (const char* a : allowed)
    if (v == a) return v;
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  fail(meta, path, fmt::format("unknown value \"{}\" (one of {})", v, list));
}

void check_regex(const std::string& pattern, const Meta& meta, const std::string& path) {
  if (auto re = http::compile_regex(pattern); !re) fail(meta, path, re.error().message);
}

// Configuration text that reaches the wire is checked here, at parse time,
// so the error names the Istio resource and field (compile() checks the same
// with the same code, but can only name the compiled Router or Upstream).
void check_wire(const std::string& why, const Meta& meta, const std::string& path) {
  if (!why.empty()) fail(meta, path, why);
}

// "set[x-a]": a map key as an index; a key that is not plain text is quoted
// with escapes, so no raw control byte reaches an error message.
std::string keyed(std::string_view path, std::string_view key) {
  bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && c != '[' && c != ']' && c != '"';
  });
  return fmt::format("{}[{}]", path, plain ? std::string(key) : http::quote(key));
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void require_seq(const YAML::Node& n, const Meta& meta, const std::string& path) {
  if (!n.IsSequence()) fail(meta, path, "must be a list");
}

std::vector<std::string> string_list(const YAML::Node& n, const Meta& meta,
                                     const std::string& path) {
  std::vector<std::string> out;
  if (!n) return out;
  require_seq(n, meta, path);
  for (size_t i = 0; i < n.size(); ++i) out.push_back(scalar(n[i], meta, index(path, i)));
  return out;
}

}  // namespace

Labels label_map(const YAML::Node& n, const Meta& meta, const std::string& path) {
  Labels out;
  if (!n) return out;
  if (!n.IsMap()) fail(meta, path, "must be a mapping");
  for (const auto& kv : n) {
    std::string k = scalar(kv.first, meta, path);
    out[k] = scalar(kv.second, meta, join(path, k));
  }
  return out;
}

namespace {

// Istio StringMatch: exactly one of exact / prefix / regex. `allow_empty`: `{}`
// means "present" (headers, queryParams).
StringMatch string_match(const YAML::Node& n, const Meta& meta, const std::string& path,
                         bool allow_empty) {
  Fields f(n, meta, path);
  YAML::Node exact = f.get("exact"), prefix = f.get("prefix"), regex = f.get("regex");
  f.finish();
  int count = !!exact + !!prefix + !!regex;
  if (count > 1) fail(meta, path, "exactly one of exact, prefix or regex may be set");
  if (exact) return StringMatch::exact(scalar(exact, meta, join(path, "exact")));
  if (prefix) return StringMatch::prefix(scalar(prefix, meta, join(path, "prefix")));
  if (regex) return StringMatch::regex(scalar(regex, meta, join(path, "regex")));
  if (!allow_empty) fail(meta, path, "one of exact, prefix or regex is required");
  return StringMatch::present();
}

HttpMatchIn parse_match(const YAML::Node& n, const Meta& meta, const std::string& path) {
  HttpMatchIn out;
  Fields f(n, meta, path);
  Matcher& m = out.matcher;
  if (auto v = f.get("uri")) m.uri = string_match(v, meta, f.sub("uri"), false);
  if (auto v = f.get("scheme")) m.scheme = string_match(v, meta, f.sub("scheme"), false);
  if (auto v = f.get("method")) m.method = string_match(v, meta, f.sub("method"), false);
  if (auto v = f.get("authority")) m.authority = string_match(v, meta, f.sub("authority"), false);
  for (const char* key : {"headers", "withoutHeaders"}) {
    auto v = f.get(key);
    if (!v) continue;
    std::string p = f.sub(key);
    if (!v.IsMap()) fail(meta, p, "must be a mapping of header name to match");
    for (const auto& kv : v) {
      std::string name = scalar(kv.first, meta, p);
      // Istio matches header names in lower case (Envoy lower-cases them).
      StringMatch sm = string_match(kv.second, meta, join(p, name), true);
      m.headers.push_back(
          {http::to_lower(name), std::move(sm), std::string_view(key) == "withoutHeaders"});
    }
  }
  if (auto v = f.get("queryParams")) {
    std::string p = f.sub("queryParams");
    if (!v.IsMap()) fail(meta, p, "must be a mapping of parameter name to match");
    for (const auto& kv : v) {
      std::string name = scalar(kv.first, meta, p);
      m.query_params.push_back({name, string_match(kv.second, meta, join(p, name), true)});
    }
  }
  if (auto v = f.get("port")) m.port = port_number(v, meta, f.sub("port"));
  if (auto v = f.get("ignoreUriCase")) m.ignore_uri_case = boolean(v, meta, f.sub("ignoreUriCase"));
  if (auto v = f.get("gateways")) out.gateways = string_list(v, meta, f.sub("gateways"));
  // Conditions on the calling workload exist only inside the mesh.
  if (f.get("sourceLabels") || f.get("sourceNamespace")) out.source_labels = true;
  f.ignore({"name", "statPrefix"});
  f.finish();
  return out;
}

// Istio Percent: {value: double} in [0, 100].
double percentage(const YAML::Node& node, const Meta& meta, const std::string& path) {
  Fields f(node, meta, path);
  double v = decimal(f.require("value"), meta, f.sub("value"));
  f.finish();
  if (v < 0 || v > 100) fail(meta, f.sub("value"), fmt::format("must be in [0, 100], got {}", v));
  return v;
}

// Legacy integer percent fields (fault `percent`, `mirrorPercent`).
double percent_int(const YAML::Node& node, const Meta& meta, const std::string& path) {
  int64_t v = integer(node, meta, path);
  if (v < 0 || v > 100) fail(meta, path, fmt::format("must be in [0, 100], got {}", v));
  return static_cast<double>(v);
}

// Istio Destination {host, subset, port.number}.
void parse_destination(const YAML::Node& n, const Meta& meta, const std::string& path,
                       DestinationIn& out) {
  Fields d(n, meta, path);
  out.host = scalar(d.require("host"), meta, d.sub("host"));
  if (auto v = d.get("subset")) out.subset = scalar(v, meta, d.sub("subset"));
  if (auto v = d.get("port")) {
    Fields p(v, meta, d.sub("port"));
    if (auto num = p.get("number")) out.port = port_number(num, meta, p.sub("number"));
    p.finish();
  }
  d.finish();
}

// Istio Headers {request, response} of HeaderOperations {set, add, remove}.
void parse_header_ops(const YAML::Node& n, const Meta& meta, const std::string& path,
                      HeaderOperations& request, HeaderOperations& response) {
  Fields f(n, meta, path);
  for (const char* side : {"request", "response"}) {
    auto v = f.get(side);
    if (!v) continue;
    HeaderOperations& ops = std::string_view(side) == "request" ? request : response;
    Fields o(v, meta, f.sub(side));
    for (const char* kind : {"set", "add"}) {
      auto m = o.get(kind);
      if (!m) continue;
      std::string p = o.sub(kind);
      if (!m.IsMap()) fail(meta, p, "must be a mapping of header name to value");
      auto& list = std::string_view(kind) == "set" ? ops.set : ops.add;
      for (const auto& kv : m) {
        std::string name = scalar(kv.first, meta, p);
        std::string at = keyed(p, name);
        if (name.empty()) fail(meta, at, "header name must not be empty");
        bool authority = http::to_lower(name) == ":authority" || http::to_lower(name) == "host";
        if (name.front() == ':' && !authority)
          fail(meta, at, fmt::format("pseudo-header {} cannot be modified", http::quote(name)));
        if (name.front() != ':') check_wire(http::check_header_name(name), meta, at);
        std::string value = kv.second.IsNull() ? std::string() : scalar(kv.second, meta, at);
        check_wire(http::check_header_value(value), meta, at);
        // Host is sent as the request's authority.
        if (authority && &ops == &request)
          if (auto why = http::check_authority(value); !why.empty())
            fail(meta, at, "invalid authority: " + why);
        list.emplace_back(name, std::move(value));
      }
    }
    if (auto r = o.get("remove")) {
      ops.remove = string_list(r, meta, o.sub("remove"));
      for (size_t i = 0; i < ops.remove.size(); ++i) {
        std::string name = http::to_lower(ops.remove[i]);
        if (name == "host" || name == ":authority" || (!name.empty() && name.front() == ':'))
          fail(meta, index(o.sub("remove"), i),
               fmt::format("header {} cannot be removed", http::quote(ops.remove[i])));
        check_wire(http::check_header_name(ops.remove[i]), meta, index(o.sub("remove"), i));
      }
    }
    o.finish();
    if (&ops == &response)
      for (const auto* list : {&ops.set, &ops.add})
        for (const auto& [name, value] : *list)
          if (http::to_lower(name) == "host" || http::to_lower(name) == ":authority")
            fail(meta, f.sub(side), fmt::format("header \"{}\" cannot be set on a response", name));
  }
  f.finish();
}

DestinationIn parse_route_destination(const YAML::Node& n, const Meta& meta,
                                      const std::string& path) {
  DestinationIn out;
  Fields f(n, meta, path);
  parse_destination(f.require("destination"), meta, f.sub("destination"), out);
  if (auto v = f.get("weight")) {
    out.weight = integer(v, meta, f.sub("weight"));
    if (*out.weight < 0)
      fail(meta, f.sub("weight"), fmt::format("must be >= 0, got {}", *out.weight));
  }
  if (auto v = f.get("headers"))
    parse_header_ops(v, meta, f.sub("headers"), out.request_headers, out.response_headers);
  f.finish();
  return out;
}

Redirect parse_redirect(const YAML::Node& n, const Meta& meta, const std::string& path) {
  Redirect r;
  Fields f(n, meta, path);
  // uri, authority and scheme all end up in the Location header.
  if (auto v = f.get("uri")) {
    r.uri = scalar(v, meta, f.sub("uri"));
    if (!r.uri.empty()) check_wire(http::check_path(r.uri, true), meta, f.sub("uri"));
  }
  if (auto v = f.get("authority")) {
    r.authority = scalar(v, meta, f.sub("authority"));
    if (!r.authority.empty())
      check_wire(http::check_authority(r.authority), meta, f.sub("authority"));
  }
  if (auto v = f.get("scheme")) {
    r.scheme = scalar(v, meta, f.sub("scheme"));
    if (!r.scheme.empty()) check_wire(http::check_scheme(r.scheme), meta, f.sub("scheme"));
  }
  auto port = f.get("port");
  auto derive = f.get("derivePort");
  if (port && derive) fail(meta, f.sub("derivePort"), "port and derivePort are mutually exclusive");
  if (port) r.port = port_number(port, meta, f.sub("port"));
  if (derive) {
    std::string d = enum_name(derive, meta, f.sub("derivePort"),
                              {"FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"});
    r.derive_port = d == "FROM_PROTOCOL_DEFAULT" ? Redirect::DerivePort::from_protocol_default
                                                 : Redirect::DerivePort::from_request_port;
  }
  if (auto v = f.get("redirectCode")) {
    int64_t code = integer(v, meta, f.sub("redirectCode"));
    if (code != 301 && code != 302 && code != 303 && code != 307 && code != 308)
      fail(meta, f.sub("redirectCode"),
           fmt::format("must be one of 301, 302, 303, 307, 308, got {}", code));
    r.code = static_cast<uint16_t>(code);
  }
  f.finish();
  return r;
}

Rewrite parse_rewrite(const YAML::Node& n, const Meta& meta, const std::string& path) {
  Rewrite r;
  Fields f(n, meta, path);
  if (auto v = f.get("uri")) {
    r.uri = scalar(v, meta, f.sub("uri"));
    if (!r.uri->empty()) check_wire(http::check_path(*r.uri), meta, f.sub("uri"));
  }
  if (auto v = f.get("uriRegexRewrite")) {
    std::string p = f.sub("uriRegexRewrite");
    if (r.uri) fail(meta, p, "uri and uriRegexRewrite are mutually exclusive");
    Fields x(v, meta, p);
    std::string match = scalar(x.require("match"), meta, x.sub("match"));
    std::string rewrite = scalar(x.require("rewrite"), meta, x.sub("rewrite"));
    x.finish();
    auto re = http::compile_regex(match);
    if (!re) fail(meta, x.sub("match"), re.error().message);
    std::string why;
    if (!re.value()->CheckRewriteString(rewrite, &why))
      fail(meta, x.sub("rewrite"), fmt::format("invalid rewrite \"{}\": {}", rewrite, why));
    // Captures copy bytes of the (already checked) request path; the literal
    // text must not break the request line.
    check_wire(http::check_path_template(rewrite), meta, x.sub("rewrite"));
    r.uri_regex = std::pair{match, rewrite};
  }
  if (auto v = f.get("authority")) {
    r.authority = scalar(v, meta, f.sub("authority"));
    if (!r.authority.empty())
      check_wire(http::check_authority(r.authority), meta, f.sub("authority"));
  }
  f.finish();
  return r;
}

RetryPolicy parse_retries(const YAML::Node& n, const Meta& meta, const std::string& path) {
  RetryPolicy r;
  r.attempts = 0;  // `retries` present without attempts: disabled, as in Istio
  Fields f(n, meta, path);
  if (auto v = f.get("attempts")) {
    int64_t a = integer(v, meta, f.sub("attempts"));
    if (a < 0) fail(meta, f.sub("attempts"), fmt::format("must be >= 0, got {}", a));
    if (a > 1000) fail(meta, f.sub("attempts"), fmt::format("must be <= 1000, got {}", a));
    r.attempts = static_cast<uint32_t>(a);
  }
  if (auto v = f.get("perTryTimeout"))
    r.per_try_timeout = duration(v, meta, f.sub("perTryTimeout"));
  if (auto v = f.get("retryOn")) {
    std::string on = scalar(v, meta, f.sub("retryOn"));
    std::string_view rest = on;
    for (bool more = true; more;) {
      size_t comma = rest.find(',');
      std::string token(rest.substr(0, comma));
      more = comma != std::string_view::npos;
      if (more) rest.remove_prefix(comma + 1);
      auto parsed = policy::parse_retry_on(token.empty() ? "," : token);
      if (!parsed) fail(meta, f.sub("retryOn"), parsed.error().message);
    }
    // Empty keeps Istio's default conditions.
    if (!on.empty()) r.retry_on = on;
  }
  if (auto v = f.get("retryIgnorePreviousHosts"))
    r.retry_ignore_previous_hosts = boolean(v, meta, f.sub("retryIgnorePreviousHosts"));
  if (auto v = f.get("retryRemoteLocalities")) {
    // Localities exist only with a mesh's endpoint discovery; nothing to do here.
    if (boolean(v, meta, f.sub("retryRemoteLocalities")))
      note(meta, f.sub("retryRemoteLocalities"), "accepted; has no effect (no localities here)");
  }
  if (auto v = f.get("backoff")) r.backoff_base = duration(v, meta, f.sub("backoff"));
  f.finish();
  return r;
}

// gRPC status names (grpc/doc/statuscodes.md); Istio takes names, not numbers.
uint32_t grpc_code(const YAML::Node& node, const Meta& meta, const std::string& path) {
  static const char* const names[] = {"OK",
                                      "CANCELLED",
                                      "UNKNOWN",
                                      "INVALID_ARGUMENT",
                                      "DEADLINE_EXCEEDED",
                                      "NOT_FOUND",
                                      "ALREADY_EXISTS",
                                      "PERMISSION_DENIED",
                                      "RESOURCE_EXHAUSTED",
                                      "FAILED_PRECONDITION",
                                      "ABORTED",
                                      "OUT_OF_RANGE",
                                      "UNIMPLEMENTED",
                                      "INTERNAL",
                                      "UNAVAILABLE",
                                      "DATA_LOSS",
                                      "UNAUTHENTICATED"};
  std::string v = scalar(node, meta, path);
  for (uint32_t i = 0; i < std::size(names); ++i)
    if (v == names[i]) return i;
  fail(meta, path,
       fmt::format("unknown gRPC status \"{}\" (use the name in capitals, e.g. UNAVAILABLE)", v));
}

Fault parse_fault(const YAML::Node& n, const Meta& meta, const std::string& path) {
  Fault out;
  Fields f(n, meta, path);
  if (auto v = f.get("delay")) {
    Fields d(v, meta, f.sub("delay"));
    FaultDelay delay;
    delay.fixed_delay = duration(d.require("fixedDelay"), meta, d.sub("fixedDelay"));
    if (delay.fixed_delay.count() < 1) fail(meta, d.sub("fixedDelay"), "must be at least 1ms");
    // Absent percentage: no request is delayed (Istio's current behaviour).
    if (auto p = d.get("percentage"))
      delay.percentage = percentage(p, meta, d.sub("percentage"));
    else if (auto p = d.get("percent"))
      delay.percentage = percent_int(p, meta, d.sub("percent"));
    d.get("percent");
    d.not_implemented({"exponentialDelay"});
    d.finish();
    out.delay = delay;
  }
  if (auto v = f.get("abort")) {
    Fields a(v, meta, f.sub("abort"));
    FaultAbort abort;
    auto http = a.get("httpStatus");
    auto grpc = a.get("grpcStatus");
    a.not_implemented({"http2Error"});
    if (http && grpc)
      fail(meta, a.sub("grpcStatus"), "httpStatus and grpcStatus are mutually exclusive");
    if (!http && !grpc) fail(meta, a.sub("httpStatus"), "httpStatus or grpcStatus is required");
    if (http) {
      int64_t st = integer(http, meta, a.sub("httpStatus"));
      if (st < 200 || st > 599)
        fail(meta, a.sub("httpStatus"), fmt::format("must be in 200..599, got {}", st));
      abort.http_status = static_cast<uint16_t>(st);
    }
    if (grpc) abort.grpc_status = grpc_code(grpc, meta, a.sub("grpcStatus"));
    if (auto p = a.get("percentage")) abort.percentage = percentage(p, meta, a.sub("percentage"));
    a.finish();
    out.abort = abort;
  }
  f.finish();
  if (!out.delay && !out.abort) fail(meta, path, "delay or abort is required");
  return out;
}

CorsPolicy parse_cors(const YAML::Node& n, const Meta& meta, const std::string& path) {
  CorsPolicy c;
  Fields f(n, meta, path);
  if (auto v = f.get("allowOrigins")) {
    std::string p = f.sub("allowOrigins");
    require_seq(v, meta, p);
    for (size_t i = 0; i < v.size(); ++i) {
      StringMatch m = string_match(v[i], meta, index(p, i), false);
      if (m.kind == StringMatch::Kind::regex) check_regex(m.value, meta, index(p, i) + ".regex");
      c.allow_origins.push_back(std::move(m));
    }
  }
  if (auto v = f.get("allowOrigin")) {
    // Deprecated list of exact origins; "*" allows every origin.
    for (auto& o : string_list(v, meta, f.sub("allowOrigin")))
      c.allow_origins.push_back(StringMatch::exact(std::move(o)));
  }
  struct List {
    const char* key;
    std::vector<std::string>& out;
  };
  for (auto [key, out] :
       {List{"allowMethods", c.allow_methods}, List{"allowHeaders", c.allow_headers},
        List{"exposeHeaders", c.expose_headers}}) {
    auto v = f.get(key);
    if (!v) continue;
    out = string_list(v, meta, f.sub(key));
    // Joined into access-control-* response headers.
    for (size_t i = 0; i < out.size(); ++i)
      if (!http::is_token(out[i]))
        fail(meta, index(f.sub(key), i),
             fmt::format("{} is not a valid token", http::quote(out[i])));
  }
  if (auto v = f.get("maxAge")) c.max_age = whole_seconds(v, meta, f.sub("maxAge"));
  if (auto v = f.get("allowCredentials"))
    c.allow_credentials = boolean(v, meta, f.sub("allowCredentials"));
  if (auto v = f.get("unmatchedPreflights")) {
    std::string u =
        enum_name(v, meta, f.sub("unmatchedPreflights"), {"UNSPECIFIED", "FORWARD", "IGNORE"});
    c.forward_unmatched_preflights = u != "IGNORE";
  }
  f.finish();
  return c;
}

// Standard base64 (Secret data, direct-response bytes), decoded by BoringSSL.
// Line breaks and spaces (folded YAML scalars) are dropped and missing '='
// padding is restored first, as the loader has always accepted both.
std::string decode_base64(std::string_view in, const Meta& meta, const std::string& path) {
  std::string text;
  text.reserve(in.size() + 3);
  for (char c : in)
    if (c != '\n' && c != '\r' && c != ' ') text.push_back(c);
  while (text.size() % 4 != 0) text.push_back('=');
  size_t cap = 0;
  if (!EVP_DecodedLength(&cap, text.size())) fail(meta, path, "is not valid base64");
  std::string out(cap, '\0');
  size_t n = 0;
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(out.data()), &n, cap,
                        reinterpret_cast<const uint8_t*>(text.data()), text.size()))
    fail(meta, path, "is not valid base64");
  out.resize(n);
  return out;
}

// --- TLS ------------------------------------------------------------------------

// A certificate file field: relative paths are relative to the YAML file's
// directory (the working directory for YAML given as a string).
PemFile read_pem(const YAML::Node& node, const Meta& meta, const std::string& path) {
  namespace fs = std::filesystem;
  std::string written = scalar(node, meta, path);
  if (written.empty()) fail(meta, path, "must not be empty");
  fs::path p(written);
  std::error_code ec;
  if (p.is_relative() && !meta.file.empty() && fs::is_regular_file(meta.file, ec))
    p = fs::path(meta.file).parent_path() / p;
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(meta, path, fmt::format("cannot read \"{}\"", p.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  PemFile out{path, p.lexically_normal().string(), ss.str()};
  if (out.text.find("-----BEGIN") == std::string::npos)
    fail(meta, path, fmt::format("\"{}\" holds no PEM block", out.path));
  return out;
}

TlsServer::Version tls_version(const YAML::Node& node, const Meta& meta, const std::string& path) {
  std::string v =
      enum_name(node, meta, path, {"TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"});
  if (v == "TLSV1_0") return TlsServer::Version::tls1_0;
  if (v == "TLSV1_1") return TlsServer::Version::tls1_1;
  if (v == "TLSV1_2") return TlsServer::Version::tls1_2;
  if (v == "TLSV1_3") return TlsServer::Version::tls1_3;
  return TlsServer::Version::tls_auto;
}

// Gateway servers[].tls (ServerTLSSettings).
ServerTlsIn parse_server_tls(const YAML::Node& n, const Meta& m, const std::string& path,
                             bool* mode_set) {
  ServerTlsIn out;
  Fields f(n, m, path);
  if (auto v = f.get("httpsRedirect")) out.https_redirect = boolean(v, m, f.sub("httpsRedirect"));
  *mode_set = false;
  if (auto v = f.get("mode")) {
    *mode_set = true;
    out.mode = enum_name(
        v, m, f.sub("mode"),
        {"PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"});
    if (out.mode == "ISTIO_MUTUAL")
      fail(m, f.sub("mode"), "ISTIO_MUTUAL is not supported (needs the mesh's certificates)");
    if (out.mode == "AUTO_PASSTHROUGH")
      fail(m, f.sub("mode"),
           "AUTO_PASSTHROUGH is not supported: it routes by mesh-internal SNI names, which "
           "an ingress without the mesh does not have (use PASSTHROUGH with a VirtualService "
           "tls route)");
  }
  bool terminates = out.mode == "SIMPLE" || out.mode == "MUTUAL" || out.mode == "OPTIONAL_MUTUAL";
  if (auto v = f.get("credentialName")) out.credential_name = scalar(v, m, f.sub("credentialName"));
  f.not_implemented({"credentialNames", "tlsCertificates", "caCrl"});
  // With credentialName the Secret wins, as in Istio; the files are not read.
  for (auto [key, dst] : {std::pair{"serverCertificate", &out.server_certificate},
                          std::pair{"privateKey", &out.private_key},
                          std::pair{"caCertificates", &out.ca_certificates}}) {
    auto v = f.get(key);
    if (!v) continue;
    if (!out.credential_name.empty()) {
      note(m, f.sub(key), "ignored: credentialName is set");
      continue;
    }
    if (!terminates) {
      *mode_set = true;  // certificate material: not an httpsRedirect-only block
      fail(m, f.sub(key), fmt::format("has no effect with mode {}", out.mode));
    }
    *dst = read_pem(v, m, f.sub(key));
  }
  out.subject_alt_names = string_list(f.get("subjectAltNames"), m, f.sub("subjectAltNames"));
  out.verify_certificate_spki =
      string_list(f.get("verifyCertificateSpki"), m, f.sub("verifyCertificateSpki"));
  out.verify_certificate_hash =
      string_list(f.get("verifyCertificateHash"), m, f.sub("verifyCertificateHash"));
  if (auto v = f.get("minProtocolVersion"))
    out.min_version = tls_version(v, m, f.sub("minProtocolVersion"));
  if (auto v = f.get("maxProtocolVersion"))
    out.max_version = tls_version(v, m, f.sub("maxProtocolVersion"));
  if (out.min_version != TlsServer::Version::tls_auto &&
      out.max_version != TlsServer::Version::tls_auto && out.min_version > out.max_version)
    fail(m, f.sub("minProtocolVersion"), "must not be above maxProtocolVersion");
  out.cipher_suites = string_list(f.get("cipherSuites"), m, f.sub("cipherSuites"));
  f.finish();
  if (terminates && out.credential_name.empty()) {
    if (!out.server_certificate)
      fail(m, f.sub("serverCertificate"),
           fmt::format("required with mode {} (or credentialName)", out.mode));
    if (!out.private_key)
      fail(m, f.sub("privateKey"),
           fmt::format("required with mode {} (or credentialName)", out.mode));
    if (out.mode != "SIMPLE" && !out.ca_certificates)
      fail(m, f.sub("caCertificates"),
           fmt::format("required with mode {} (or credentialName)", out.mode));
  }
  return out;
}

// DestinationRule trafficPolicy.tls (ClientTLSSettings).
ClientTlsIn parse_client_tls(const YAML::Node& n, const Meta& m, const std::string& path) {
  ClientTlsIn out;
  out.path = path;
  Fields f(n, m, path);
  if (auto v = f.get("mode"))
    out.mode = enum_name(v, m, f.sub("mode"), {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"});
  if (auto v = f.get("credentialName")) out.credential_name = scalar(v, m, f.sub("credentialName"));
  for (auto [key, dst] : {std::pair{"caCertificates", &out.ca_certificates},
                          std::pair{"clientCertificate", &out.client_certificate},
                          std::pair{"privateKey", &out.private_key}}) {
    auto v = f.get(key);
    if (!v || out.mode == "DISABLE") continue;
    if (!out.credential_name.empty()) {
      note(m, f.sub(key), "ignored: credentialName is set");
      continue;
    }
    *dst = read_pem(v, m, f.sub(key));
  }
  if (auto v = f.get("sni")) {
    out.sni = scalar(v, m, f.sub("sni"));
    if (!out.sni.empty()) {
      check_wire(http::check_authority(out.sni), m, f.sub("sni"));
      if (out.sni.find(':') != std::string::npos)
        fail(m, f.sub("sni"),
             fmt::format("{} is a server name and takes no port", http::quote(out.sni)));
    }
  }
  out.subject_alt_names = string_list(f.get("subjectAltNames"), m, f.sub("subjectAltNames"));
  if (auto v = f.get("insecureSkipVerify"))
    out.insecure_skip_verify = boolean(v, m, f.sub("insecureSkipVerify"));
  f.not_implemented({"caCrl"});
  f.finish();
  if (out.mode == "MUTUAL" && out.credential_name.empty()) {
    if (!out.client_certificate)
      fail(m, f.sub("clientCertificate"), "required with mode MUTUAL (or credentialName)");
    if (!out.private_key)
      fail(m, f.sub("privateKey"), "required with mode MUTUAL (or credentialName)");
  }
  return out;
}

// The `route` of a tls[] or tcp[] rule: weighted destinations, at least one.
std::vector<DestinationIn> parse_l4_route(Fields& f, const Meta& m) {
  std::vector<DestinationIn> out;
  auto route = f.get("route");
  std::string rp = f.sub("route");
  if (!route) fail(m, rp, "required field is missing");
  require_seq(route, m, rp);
  if (route.size() == 0) fail(m, rp, "at least one destination is required");
  for (size_t i = 0; i < route.size(); ++i) {
    Fields rf(route[i], m, index(rp, i));
    DestinationIn d;
    parse_destination(rf.require("destination"), m, rf.sub("destination"), d);
    if (auto v = rf.get("weight")) {
      d.weight = integer(v, m, rf.sub("weight"));
      if (*d.weight < 0) fail(m, rf.sub("weight"), fmt::format("must be >= 0, got {}", *d.weight));
    }
    rf.finish();
    out.push_back(std::move(d));
  }
  return out;
}

// VirtualService tls[] (TLSRoute).
TlsRuleIn parse_tls_rule(const YAML::Node& n, const Meta& m, const std::string& path) {
  TlsRuleIn out;
  Fields f(n, m, path);
  auto match = f.require("match");
  std::string mp = f.sub("match");
  require_seq(match, m, mp);
  if (match.size() == 0) fail(m, mp, "at least one match is required");
  for (size_t i = 0; i < match.size(); ++i) {
    Fields mf(match[i], m, index(mp, i));
    TlsMatchIn tm;
    tm.sni_hosts = string_list(mf.require("sniHosts"), m, mf.sub("sniHosts"));
    if (tm.sni_hosts.empty()) fail(m, mf.sub("sniHosts"), "at least one SNI host is required");
    if (auto v = mf.get("port")) tm.port = port_number(v, m, mf.sub("port"));
    tm.gateways = string_list(mf.get("gateways"), m, mf.sub("gateways"));
    if (mf.get("sourceLabels") || mf.get("sourceNamespace")) tm.source_labels = true;
    mf.not_implemented({"destinationSubnets"});
    mf.finish();
    out.matches.push_back(std::move(tm));
  }
  out.route = parse_l4_route(f, m);
  size_t weighted = 0;
  for (const auto& d : out.route) weighted += !d.weight || *d.weight > 0;
  if (weighted > 1)
    fail(m, f.sub("route"), "weighted TLS routes to several destinations are not implemented yet");
  f.finish();
  return out;
}

// core v1 Secret, as `kubectl get secret -o yaml` prints it.
SecretRes parse_secret(const YAML::Node& doc, Meta meta) {
  SecretRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  for (const auto& kv : doc) {
    std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    static const std::set<std::string> known = {"apiVersion", "kind",       "metadata", "type",
                                                "data",       "stringData", "immutable"};
    if (!known.count(k)) fail(m, k, fmt::format("unknown field \"{}\"", k));
  }
  out.type = doc["type"] ? scalar(doc["type"], m, "type") : "Opaque";
  if (YAML::Node data = doc["data"]; data && !data.IsNull()) {
    if (!data.IsMap()) fail(m, "data", "must be a mapping");
    for (const auto& kv : data) {
      std::string k = scalar(kv.first, m, "data");
      // Never the value in a message: it is secret material.
      std::string text = kv.second.IsScalar() ? kv.second.Scalar() : std::string();
      out.data[k] = decode_base64(text, m, join("data", k));
    }
  }
  if (YAML::Node data = doc["stringData"]; data && !data.IsNull()) {
    if (!data.IsMap()) fail(m, "stringData", "must be a mapping");
    for (const auto& kv : data) {
      std::string k = scalar(kv.first, m, "stringData");
      out.data[k] = kv.second.IsScalar() ? kv.second.Scalar() : std::string();
    }
  }
  return out;
}

DirectResponse parse_direct_response(const YAML::Node& n, const Meta& meta,
                                     const std::string& path) {
  Fields d(n, meta, path);
  int64_t status = integer(d.require("status"), meta, d.sub("status"));
  if (status < 200 || status > 599)
    fail(meta, d.sub("status"), fmt::format("status {} is out of range 200-599", status));
  DirectResponse dr;
  dr.status = static_cast<uint16_t>(status);
  if (auto b = d.get("body")) {
    Fields body(b, meta, d.sub("body"));
    auto s = body.get("string");
    auto bytes = body.get("bytes");
    if (s && bytes) fail(meta, body.sub("string"), "string and bytes are mutually exclusive");
    if (s) dr.body = scalar(s, meta, body.sub("string"));
    if (bytes)
      dr.body = decode_base64(scalar(bytes, meta, body.sub("bytes")), meta, body.sub("bytes"));
    body.finish();
  }
  d.finish();
  return dr;
}

// `mirror` (with mirrorPercentage, or the older mirrorPercent) or
// `mirrors[]`, each entry with its own percentage; unset when neither.
std::optional<std::vector<MirrorIn>> parse_mirrors(Fields& f, const Meta& meta) {
  auto mirror = f.get("mirror");
  auto mirrors = f.get("mirrors");
  auto mirror_percentage = f.get("mirrorPercentage");
  auto mirror_percent = f.get("mirrorPercent");
  if (!mirror_percent) mirror_percent = f.get("mirror_percent");
  if (mirror && mirrors) fail(meta, f.sub("mirrors"), "mirror and mirrors are mutually exclusive");
  if ((mirror_percentage || mirror_percent) && !mirror)
    fail(meta, f.sub(mirror_percentage ? "mirrorPercentage" : "mirrorPercent"),
         "requires mirror (mirrors[] take their own percentage)");
  std::optional<std::vector<MirrorIn>> out;
  if (mirror) {
    MirrorIn m;
    m.path = f.sub("mirror");
    parse_destination(mirror, meta, m.path, m.destination);
    if (mirror_percentage)
      m.percentage = percentage(mirror_percentage, meta, f.sub("mirrorPercentage"));
    else if (mirror_percent)
      m.percentage = percent_int(mirror_percent, meta, f.sub("mirrorPercent"));
    out.emplace().push_back(std::move(m));
  }
  if (mirrors) {
    std::string p = f.sub("mirrors");
    require_seq(mirrors, meta, p);
    auto& list = out.emplace();
    for (size_t i = 0; i < mirrors.size(); ++i) {
      Fields mf(mirrors[i], meta, index(p, i));
      MirrorIn m;
      m.path = mf.sub("destination");
      parse_destination(mf.require("destination"), meta, m.path, m.destination);
      if (auto pc = mf.get("percentage")) m.percentage = percentage(pc, meta, mf.sub("percentage"));
      mf.finish();
      list.push_back(std::move(m));
    }
  }
  return out;
}

DelegateIn parse_delegate(const YAML::Node& n, const Meta& meta, const std::string& path) {
  Fields d(n, meta, path);
  DelegateIn del;
  del.name = scalar(d.require("name"), meta, d.sub("name"));
  if (auto ns = d.get("namespace")) del.namespace_ = scalar(ns, meta, d.sub("namespace"));
  d.finish();
  return del;
}

// Exactly one action, as Istio's validation demands, and nothing that acts
// only on forwarded requests next to a redirect or direct response.
void check_rule_actions(const HttpRuleIn& rule, const Fields& f, const Meta& meta) {
  struct Action {
    const char* key;
    bool set;
  };
  const Action actions[] = {{"route", !rule.route.empty()},
                            {"redirect", rule.redirect.has_value()},
                            {"directResponse", rule.direct_response.has_value()},
                            {"delegate", rule.delegate.has_value()}};
  const Action* first = nullptr;
  for (const auto& a : actions) {
    if (!a.set) continue;
    if (first)
      fail(meta, f.sub(a.key), fmt::format("{} and {} are mutually exclusive", first->key, a.key));
    first = &a;
  }
  if (!first)
    fail(meta, f.sub("route"), "a rule needs route, redirect, directResponse or delegate");
  if (rule.redirect || rule.direct_response) {
    const char* action = rule.redirect ? "redirect" : "directResponse";
    if (rule.rewrite) fail(meta, f.sub("rewrite"), fmt::format("cannot be used with {}", action));
    if (rule.fault) fail(meta, f.sub("fault"), fmt::format("cannot be used with {}", action));
    if (rule.mirrors)
      fail(meta, rule.mirrors->empty() ? f.sub("mirrors") : rule.mirrors->front().path,
           fmt::format("cannot be used with {}", action));
  }
}

HttpRuleIn parse_http_rule(const YAML::Node& n, const Meta& meta, const std::string& path) {
  HttpRuleIn out;
  Fields f(n, meta, path);
  if (auto v = f.get("name")) out.name = scalar(v, meta, f.sub("name"));
  if (auto v = f.get("match")) {
    std::string p = f.sub("match");
    require_seq(v, meta, p);
    for (size_t i = 0; i < v.size(); ++i)
      out.matches.push_back(parse_match(v[i], meta, index(p, i)));
  }
  if (auto v = f.get("route")) {
    std::string p = f.sub("route");
    require_seq(v, meta, p);
    for (size_t i = 0; i < v.size(); ++i)
      out.route.push_back(parse_route_destination(v[i], meta, index(p, i)));
  }
  if (auto v = f.get("directResponse"))
    out.direct_response = parse_direct_response(v, meta, f.sub("directResponse"));
  if (auto v = f.get("redirect")) out.redirect = parse_redirect(v, meta, f.sub("redirect"));
  if (auto v = f.get("rewrite")) out.rewrite = parse_rewrite(v, meta, f.sub("rewrite"));
  if (auto v = f.get("headers")) {
    out.headers_set = true;
    parse_header_ops(v, meta, f.sub("headers"), out.request_headers, out.response_headers);
  }
  if (auto v = f.get("timeout")) out.timeout = duration(v, meta, f.sub("timeout"));
  if (auto v = f.get("retries")) out.retries = parse_retries(v, meta, f.sub("retries"));
  if (auto v = f.get("fault")) out.fault = parse_fault(v, meta, f.sub("fault"));
  out.mirrors = parse_mirrors(f, meta);
  if (auto v = f.get("corsPolicy")) out.cors = parse_cors(v, meta, f.sub("corsPolicy"));
  if (auto v = f.get("delegate")) out.delegate = parse_delegate(v, meta, f.sub("delegate"));
  // Deprecated: WebSocket upgrades are allowed on every route anyway
  // (GatewayConfig::upgrade_types).
  f.ignore({"websocketUpgrade"});
  f.finish();
  check_rule_actions(out, f, meta);
  return out;
}

// VirtualService tcp[] (TCPRoute).
TcpRuleIn parse_tcp_rule(const YAML::Node& n, const Meta& m, const std::string& path) {
  TcpRuleIn out;
  Fields f(n, m, path);
  if (auto match = f.get("match")) {
    std::string mp = f.sub("match");
    require_seq(match, m, mp);
    for (size_t i = 0; i < match.size(); ++i) {
      Fields mf(match[i], m, index(mp, i));
      TcpMatchIn tm;
      if (auto v = mf.get("port")) tm.port = port_number(v, m, mf.sub("port"));
      tm.gateways = string_list(mf.get("gateways"), m, mf.sub("gateways"));
      if (auto v = mf.get("sourceSubnet")) tm.source_subnet = scalar(v, m, mf.sub("sourceSubnet"));
      if (mf.get("sourceLabels") || mf.get("sourceNamespace")) tm.source_labels = true;
      mf.not_implemented({"destinationSubnets"});
      mf.finish();
      out.matches.push_back(std::move(tm));
    }
  }
  out.route = parse_l4_route(f, m);
  f.finish();
  return out;
}

VirtualServiceRes parse_virtual_service(const YAML::Node& spec, Meta meta) {
  VirtualServiceRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  // A VirtualService without hosts is a delegate, used only through a root's
  // `delegate` (Istio).
  out.hosts = string_list(f.get("hosts"), m, "hosts");
  out.gateways = string_list(f.get("gateways"), m, "gateways");
  if (auto v = f.get("http")) {
    require_seq(v, m, "http");
    for (size_t i = 0; i < v.size(); ++i)
      out.http.push_back(parse_http_rule(v[i], m, index("http", i)));
  }
  if (auto v = f.get("tls")) {
    require_seq(v, m, "tls");
    for (size_t i = 0; i < v.size(); ++i)
      out.tls.push_back(parse_tls_rule(v[i], m, index("tls", i)));
  }
  if (auto v = f.get("tcp")) {
    require_seq(v, m, "tcp");
    for (size_t i = 0; i < v.size(); ++i)
      out.tcp.push_back(parse_tcp_rule(v[i], m, index("tcp", i)));
  }
  out.meta.export_to = string_list(f.get("exportTo"), m, f.sub("exportTo"));
  f.finish();
  return out;
}

bool is_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

LoadBalancerIn parse_load_balancer(const YAML::Node& n, const Meta& m, const std::string& path) {
  LoadBalancerIn out;
  Fields l(n, m, path);
  auto simple = l.get("simple");
  auto hash = l.get("consistentHash");
  if (simple && hash)
    fail(m, l.sub("consistentHash"), "simple and consistentHash are mutually exclusive");
  if (simple) {
    std::string v = enum_name(
        simple, m, l.sub("simple"),
        {"UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"});
    // UNSPECIFIED is Istio's default, LEAST_REQUEST; LEAST_CONN is its old name.
    if (v == "ROUND_ROBIN") out.load_balancer = LoadBalancer::round_robin;
    if (v == "RANDOM") out.load_balancer = LoadBalancer::random;
    if (v == "PASSTHROUGH") out.load_balancer = LoadBalancer::passthrough;
  }
  if (hash) {
    std::string hp = l.sub("consistentHash");
    Fields h(hash, m, hp);
    ConsistentHash ch;
    const char* sources[] = {"httpHeaderName", "httpCookie", "useSourceIp",
                             "httpQueryParameterName"};
    const char* chosen = nullptr;
    for (const char* k : sources) {
      if (!h.get(k)) continue;
      if (chosen) fail(m, h.sub(k), fmt::format("{} and {} are mutually exclusive", chosen, k));
      chosen = k;
    }
    if (!chosen)
      fail(m, hp,
           "one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName is required");
    std::string_view c = chosen;
    if (c == "httpHeaderName") {
      ch.source = ConsistentHash::Source::header;
      ch.name = http::to_lower(scalar(h.get(chosen), m, h.sub(chosen)));
      check_wire(http::check_header_name(ch.name), m, h.sub(chosen));
    } else if (c == "httpQueryParameterName") {
      ch.source = ConsistentHash::Source::query_parameter;
      ch.name = scalar(h.get(chosen), m, h.sub(chosen));
    } else if (c == "useSourceIp") {
      ch.source = ConsistentHash::Source::source_ip;
      if (!boolean(h.get(chosen), m, h.sub(chosen)))
        fail(m, h.sub(chosen), "must be true when it is the hash key");
    } else {
      ch.source = ConsistentHash::Source::cookie;
      Fields ck(h.get(chosen), m, h.sub(chosen));
      // Both go into the Set-Cookie header the gateway generates.
      ch.name = scalar(ck.require("name"), m, ck.sub("name"));
      check_wire(http::check_cookie_name(ch.name), m, ck.sub("name"));
      if (auto v = ck.get("path")) {
        ch.cookie_path = scalar(v, m, ck.sub("path"));
        check_wire(http::check_cookie_path(ch.cookie_path), m, ck.sub("path"));
      }
      if (auto v = ck.get("ttl")) ch.cookie_ttl = whole_seconds(v, m, ck.sub("ttl"));
      ck.not_implemented({"attributes"});
      ck.finish();
    }
    if (ch.name.empty() && ch.source != ConsistentHash::Source::source_ip)
      fail(m, h.sub(chosen), "must not be empty");
    auto ring = h.get("ringHash");
    auto maglev = h.get("maglev");
    auto legacy = h.get("minimumRingSize");
    if (ring && maglev) fail(m, h.sub("maglev"), "ringHash and maglev are mutually exclusive");
    if (legacy && (ring || maglev))
      fail(m, h.sub("minimumRingSize"), "deprecated; do not combine with ringHash or maglev");
    auto ring_size = [&](const YAML::Node& v, const std::string& p) {
      int64_t size = integer(v, m, p);
      if (size < 1 || size > 8'388'608)
        fail(m, p, fmt::format("must be in 1..8388608, got {}", size));
      ch.minimum_ring_size = static_cast<uint64_t>(size);
    };
    if (legacy) ring_size(legacy, h.sub("minimumRingSize"));
    if (ring) {
      Fields r(ring, m, h.sub("ringHash"));
      if (auto v = r.get("minimumRingSize")) ring_size(v, r.sub("minimumRingSize"));
      r.finish();
    }
    if (maglev) {
      ch.algorithm = ConsistentHash::Algorithm::maglev;
      Fields g(maglev, m, h.sub("maglev"));
      if (auto v = g.get("tableSize")) {
        int64_t size = integer(v, m, g.sub("tableSize"));
        if (size < 1 || size > 5'000'011 || !is_prime(static_cast<uint64_t>(size)))
          fail(m, g.sub("tableSize"),
               fmt::format("must be a prime number up to 5000011, got {}", size));
        ch.maglev_table_size = static_cast<uint64_t>(size);
      }
      g.finish();
    }
    h.finish();
    out.load_balancer = LoadBalancer::consistent_hash;
    out.consistent_hash = std::move(ch);
  }
  if (auto v = l.get("warmupDurationSecs")) {
    out.warmup = whole_seconds(v, m, l.sub("warmupDurationSecs"));
    if (out.load_balancer != LoadBalancer::round_robin &&
        out.load_balancer != LoadBalancer::least_request)
      fail(m, l.sub("warmupDurationSecs"),
           "applies only to ROUND_ROBIN and LEAST_REQUEST load balancers");
  }
  l.not_implemented({"localityLbSetting", "warmup"});
  l.finish();
  return out;
}

ConnectionPoolSettings parse_connection_pool(const YAML::Node& n, const Meta& m,
                                             const std::string& path,
                                             std::string* h2_upgrade_policy) {
  ConnectionPoolSettings out;
  Fields f(n, m, path);
  std::optional<std::chrono::milliseconds> tcp_idle, http_idle;
  if (auto t = f.get("tcp")) {
    Fields tf(t, m, f.sub("tcp"));
    if (auto v = tf.get("maxConnections")) {
      out.max_connections = unsigned32(v, m, tf.sub("maxConnections"));
      if (out.max_connections == 0) out.max_connections = 0xffffffffu;  // 0: unset in Istio
    }
    if (auto v = tf.get("connectTimeout")) {
      out.connect_timeout = duration(v, m, tf.sub("connectTimeout"));
      if (out.connect_timeout.count() < 1)
        fail(m, tf.sub("connectTimeout"), "must be at least 1ms");
    }
    if (auto v = tf.get("idleTimeout")) tcp_idle = duration(v, m, tf.sub("idleTimeout"));
    if (auto v = tf.get("tcpKeepalive")) {
      Fields k(v, m, tf.sub("tcpKeepalive"));
      TcpKeepalive ka;
      if (auto x = k.get("probes")) ka.probes = unsigned32(x, m, k.sub("probes"));
      if (auto x = k.get("time")) ka.time = whole_seconds(x, m, k.sub("time"));
      if (auto x = k.get("interval")) ka.interval = whole_seconds(x, m, k.sub("interval"));
      k.finish();
      out.tcp_keepalive = ka;
    }
    tf.not_implemented({"maxConnectionDuration"});
    tf.finish();
  }
  if (auto h = f.get("http")) {
    Fields hf(h, m, f.sub("http"));
    if (auto v = hf.get("http1MaxPendingRequests")) {
      out.max_pending_requests = unsigned32(v, m, hf.sub("http1MaxPendingRequests"));
      if (out.max_pending_requests == 0) out.max_pending_requests = 0xffffffffu;
    }
    if (auto v = hf.get("http2MaxRequests")) {
      out.max_requests = unsigned32(v, m, hf.sub("http2MaxRequests"));
      if (out.max_requests == 0) out.max_requests = 0xffffffffu;  // 0: unset in Istio
    }
    if (auto v = hf.get("maxRequestsPerConnection"))
      out.max_requests_per_connection = unsigned32(v, m, hf.sub("maxRequestsPerConnection"));
    if (auto v = hf.get("maxRetries")) {
      out.max_retries = unsigned32(v, m, hf.sub("maxRetries"));
      if (out.max_retries == 0) out.max_retries = 0xffffffffu;
    }
    if (auto v = hf.get("idleTimeout")) http_idle = duration(v, m, hf.sub("idleTimeout"));
    if (auto v = hf.get("h2UpgradePolicy")) {
      std::string p =
          enum_name(v, m, hf.sub("h2UpgradePolicy"), {"DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"});
      if (h2_upgrade_policy) *h2_upgrade_policy = p;
    }
    // Clients speak HTTP/1.1 to sluice, so "use the client's protocol" is what happens anyway.
    if (auto v = hf.get("useClientProtocol")) boolean(v, m, hf.sub("useClientProtocol"));
    if (auto v = hf.get("maxConcurrentStreams")) {
      out.max_concurrent_streams = unsigned32(v, m, hf.sub("maxConcurrentStreams"));
      if (out.max_concurrent_streams == 0) out.max_concurrent_streams = 0xffffffffu;
    }
    hf.finish();
  }
  // The connection goes idle for both: the shorter bound wins.
  if (tcp_idle && http_idle)
    out.idle_timeout = std::min(*tcp_idle, *http_idle);
  else if (tcp_idle || http_idle)
    out.idle_timeout = tcp_idle ? *tcp_idle : *http_idle;
  if (out.idle_timeout.count() == 0) out.idle_timeout = ConnectionPoolSettings{}.idle_timeout;
  f.finish();
  return out;
}

OutlierDetection parse_outlier(const YAML::Node& n, const Meta& m, const std::string& path) {
  OutlierDetection out;
  Fields f(n, m, path);
  auto c5 = f.get("consecutive5xxErrors");
  auto legacy = f.get("consecutiveErrors");
  if (c5) out.consecutive_5xx = unsigned32(c5, m, f.sub("consecutive5xxErrors"));
  if (auto v = f.get("consecutiveGatewayErrors"))
    out.consecutive_gateway_errors = unsigned32(v, m, f.sub("consecutiveGatewayErrors"));
  if (legacy && !c5) {
    // Deprecated: counted 502, 503 and 504 only, i.e. gateway errors.
    uint32_t v = unsigned32(legacy, m, f.sub("consecutiveErrors"));
    out.consecutive_gateway_errors = v;
    out.consecutive_5xx = 0;
  }
  if (auto v = f.get("interval")) {
    out.interval = duration(v, m, f.sub("interval"));
    if (out.interval.count() < 1) fail(m, f.sub("interval"), "must be at least 1ms");
  }
  if (auto v = f.get("baseEjectionTime")) {
    out.base_ejection_time = duration(v, m, f.sub("baseEjectionTime"));
    if (out.base_ejection_time.count() < 1)
      fail(m, f.sub("baseEjectionTime"), "must be at least 1ms");
  }
  for (auto [key, dst] : {std::pair{"maxEjectionPercent", &out.max_ejection_percent},
                          std::pair{"minHealthPercent", &out.min_health_percent}}) {
    auto v = f.get(key);
    if (!v) continue;
    int64_t pc = integer(v, m, f.sub(key));
    if (pc < 0 || pc > 100) fail(m, f.sub(key), fmt::format("must be in [0, 100], got {}", pc));
    *dst = static_cast<uint32_t>(pc);
  }
  f.not_implemented({"splitExternalLocalOriginErrors", "consecutiveLocalOriginFailures"});
  f.finish();
  return out;
}

PolicyParts parse_policy_parts(Fields& f, const Meta& m) {
  PolicyParts out;
  if (auto v = f.get("loadBalancer"))
    out.load_balancer = parse_load_balancer(v, m, f.sub("loadBalancer"));
  if (auto v = f.get("connectionPool"))
    out.connection_pool =
        parse_connection_pool(v, m, f.sub("connectionPool"), &out.h2_upgrade_policy);
  if (auto v = f.get("outlierDetection"))
    out.outlier_detection = parse_outlier(v, m, f.sub("outlierDetection"));
  if (auto v = f.get("tls")) out.tls = parse_client_tls(v, m, f.sub("tls"));
  return out;
}

TrafficPolicyIn parse_traffic_policy(const YAML::Node& n, const Meta& m, const std::string& path) {
  TrafficPolicyIn out;
  Fields f(n, m, path);
  out.parts = parse_policy_parts(f, m);
  if (auto v = f.get("portLevelSettings")) {
    std::string p = f.sub("portLevelSettings");
    require_seq(v, m, p);
    for (size_t i = 0; i < v.size(); ++i) {
      Fields pf(v[i], m, index(p, i));
      PortPolicyIn pp;
      Fields port(pf.require("port"), m, pf.sub("port"));
      pp.port = port_number(port.require("number"), m, port.sub("number"));
      port.finish();
      for (const auto& other : out.port_level)
        if (other.port == pp.port)
          fail(m, pf.sub("port.number"), fmt::format("port {} has settings twice", pp.port));
      pp.parts = parse_policy_parts(pf, m);
      pf.finish();
      out.port_level.push_back(std::move(pp));
    }
  }
  f.not_implemented({"tunnel", "proxyProtocol", "retryBudget"});
  f.finish();
  return out;
}

DestinationRuleRes parse_destination_rule(const YAML::Node& spec, Meta meta) {
  DestinationRuleRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  out.host = scalar(f.require("host"), m, "host");
  if (auto v = f.get("subsets")) {
    require_seq(v, m, "subsets");
    std::set<std::string> seen;
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = index("subsets", i);
      Fields s(v[i], m, p);
      SubsetIn sub;
      sub.name = scalar(s.require("name"), m, s.sub("name"));
      if (!seen.insert(sub.name).second)
        fail(m, s.sub("name"), fmt::format("duplicate subset \"{}\"", sub.name));
      sub.labels = label_map(s.get("labels"), m, s.sub("labels"));
      if (auto tp = s.get("trafficPolicy"))
        sub.traffic_policy = parse_traffic_policy(tp, m, s.sub("trafficPolicy"));
      s.finish();
      out.subsets.push_back(std::move(sub));
    }
  }
  if (auto tp = f.get("trafficPolicy"))
    out.traffic_policy = parse_traffic_policy(tp, m, "trafficPolicy");
  f.not_implemented({"workloadSelector"});
  out.meta.export_to = string_list(f.get("exportTo"), m, f.sub("exportTo"));
  f.finish();
  return out;
}

ServiceEntryRes parse_service_entry(const YAML::Node& spec, Meta meta) {
  ServiceEntryRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  out.hosts = string_list(f.require("hosts"), m, "hosts");
  if (out.hosts.empty()) fail(m, "hosts", "at least one host is required");
  if (auto v = f.get("ports")) {
    require_seq(v, m, "ports");
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = index("ports", i);
      Fields pf(v[i], m, p);
      ServicePort sp;
      sp.number = port_number(pf.require("number"), m, pf.sub("number"));
      if (auto n = pf.get("name")) sp.name = scalar(n, m, pf.sub("name"));
      if (auto n = pf.get("protocol")) sp.protocol = upper(scalar(n, m, pf.sub("protocol")));
      if (auto n = pf.get("targetPort")) sp.target_port = port_number(n, m, pf.sub("targetPort"));
      pf.finish();
      for (const auto& other : out.ports)
        if (other.number == sp.number)
          fail(m, pf.sub("number"), fmt::format("port {} is declared twice", sp.number));
      out.ports.push_back(std::move(sp));
    }
  }
  out.resolution = "NONE";
  if (auto v = f.get("resolution")) {
    out.resolution = upper(scalar(v, m, "resolution"));
    static const std::set<std::string> known = {"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN",
                                                "DYNAMIC_DNS"};
    if (!known.count(out.resolution))
      fail(m, "resolution", fmt::format("unknown resolution \"{}\"", out.resolution));
  }
  if (auto v = f.get("endpoints")) {
    require_seq(v, m, "endpoints");
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = index("endpoints", i);
      Fields ef(v[i], m, p);
      WorkloadEndpoint ep;
      ep.address = scalar(ef.require("address"), m, ef.sub("address"));
      if (auto ports = ef.get("ports")) {
        std::string pp = ef.sub("ports");
        if (!ports.IsMap()) fail(m, pp, "must be a mapping of port name to number");
        for (const auto& kv : ports) {
          std::string name = scalar(kv.first, m, pp);
          ep.ports[name] = port_number(kv.second, m, join(pp, name));
        }
      }
      ep.labels = label_map(ef.get("labels"), m, ef.sub("labels"));
      if (auto w = ef.get("weight")) {
        int64_t wv = integer(w, m, ef.sub("weight"));
        if (wv < 0) fail(m, ef.sub("weight"), fmt::format("must be >= 0, got {}", wv));
        // Istio: an unset (zero) endpoint weight counts as 1.
        ep.weight = wv == 0 ? 1 : static_cast<uint32_t>(std::min<int64_t>(wv, UINT32_MAX));
      }
      ef.ignore({"network", "locality", "serviceAccount"});
      ef.finish();
      out.endpoints.push_back(std::move(ep));
    }
  }
  f.not_implemented({"workloadSelector"});
  out.subject_alt_names = string_list(f.get("subjectAltNames"), m, f.sub("subjectAltNames"));
  out.meta.export_to = string_list(f.get("exportTo"), m, f.sub("exportTo"));
  f.ignore({"addresses", "location"});
  f.finish();
  return out;
}

GatewayRes parse_gateway(const YAML::Node& spec, Meta meta) {
  GatewayRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  YAML::Node servers = f.get("servers");
  f.ignore({"selector"});
  f.finish();
  if (!servers || servers.size() == 0) fail(m, "servers", "a Gateway needs at least one server");
  require_seq(servers, m, "servers");
  for (size_t i = 0; i < servers.size(); ++i) {
    std::string p = index("servers", i);
    Fields s(servers[i], m, p);
    GatewayServer srv;
    {
      Fields pf(s.require("port"), m, s.sub("port"));
      srv.port = port_number(pf.require("number"), m, pf.sub("number"));
      if (auto v = pf.get("name")) srv.port_name = scalar(v, m, pf.sub("name"));
      srv.protocol = upper(scalar(pf.require("protocol"), m, pf.sub("protocol")));
      pf.ignore({"targetPort"});
      pf.finish();
    }
    srv.hosts = string_list(s.require("hosts"), m, s.sub("hosts"));
    if (srv.hosts.empty()) fail(m, s.sub("hosts"), "at least one host is required");
    if (auto v = s.get("name")) srv.name = scalar(v, m, s.sub("name"));
    if (auto v = s.get("tls")) {
      bool mode_set = false;
      srv.tls = parse_server_tls(v, m, s.sub("tls"), &mode_set);
      bool tls_port = srv.protocol == "HTTPS" || srv.protocol == "TLS";
      if (!tls_port && (mode_set || !srv.tls->credential_name.empty()))
        fail(m, s.sub("tls.mode"),
             fmt::format("TLS settings need protocol HTTPS or TLS (this server says {}); only "
                         "httpsRedirect applies to plain HTTP",
                         srv.protocol));
      if (srv.tls->https_redirect && tls_port)
        note(m, s.sub("tls.httpsRedirect"), "has no effect on a TLS port");
    }
    if ((srv.protocol == "HTTPS" || srv.protocol == "TLS") && !srv.tls)
      fail(m, s.sub("tls"), fmt::format("required with protocol {}", srv.protocol));
    s.not_implemented({"bind", "defaultEndpoint"});
    s.finish();
    out.servers.push_back(std::move(srv));
  }
  return out;
}

// ---- security.istio.io: RequestAuthentication, AuthorizationPolicy ----

}  // namespace

// spec.selector, spec.targetRef and spec.targetRefs (Istio accepts one of
// selector and targetRef(s), and not both targetRef and targetRefs).
WorkloadScopeIn parse_scope(Fields& f, const Meta& m) {
  WorkloadScopeIn out;
  YAML::Node selector = f.get("selector"), ref = f.get("targetRef"), refs = f.get("targetRefs");
  if (ref && refs) fail(m, "targetRefs", "only one of targetRef or targetRefs can be set");
  if (selector && (ref || refs))
    fail(m, ref ? "targetRef" : "targetRefs", "only one of selector or targetRef(s) can be set");
  if (selector) {
    Fields s(selector, m, "selector");
    out.selector = label_map(s.get("matchLabels"), m, s.sub("matchLabels"));
    s.finish();
  }
  auto one = [&](const YAML::Node& n, const std::string& path) {
    Fields r(n, m, path);
    PolicyTargetIn t;
    if (auto v = r.get("group")) t.group = scalar(v, m, r.sub("group"));
    t.kind = scalar(r.require("kind"), m, r.sub("kind"));
    t.name = scalar(r.require("name"), m, r.sub("name"));
    if (auto v = r.get("namespace")) t.namespace_ = scalar(v, m, r.sub("namespace"));
    r.finish();
    if (!t.namespace_.empty() && t.namespace_ != m.namespace_)
      fail(m, r.sub("namespace"),
           fmt::format("must be the policy's own namespace \"{}\"", m.namespace_));
    out.target_refs.push_back(std::move(t));
  };
  if (ref) one(ref, "targetRef");
  if (refs) {
    require_seq(refs, m, "targetRefs");
    for (size_t i = 0; i < refs.size(); ++i) one(refs[i], index("targetRefs", i));
  }
  return out;
}

namespace {

void check_header(const std::string& name, const Meta& m, const std::string& path) {
  if (name.empty()) fail(m, path, "header name must not be empty");
  check_wire(http::check_header_name(name), m, path);
}

JwtProvider parse_jwt_rule(const YAML::Node& n, const Meta& m, const std::string& path) {
  JwtProvider out;
  out.source = fmt::format("RequestAuthentication {}/{}", m.namespace_, m.name);
  Fields f(n, m, path);
  out.issuer = scalar(f.require("issuer"), m, f.sub("issuer"));
  if (out.issuer.empty()) fail(m, f.sub("issuer"), "must not be empty");
  if (auto v = f.get("audiences")) out.audiences = string_list(v, m, f.sub("audiences"));
  if (auto v = f.get("jwksUri")) {
    out.jwks_uri = scalar(v, m, f.sub("jwksUri"));
    if (auto url = security::parse_http_url(out.jwks_uri); !url)
      fail(m, f.sub("jwksUri"), url.error().message);
  }
  if (auto v = f.get("jwks")) {
    out.jwks = scalar(v, m, f.sub("jwks"));
    if (auto jwks = security::Jwks::parse(out.jwks); !jwks)
      fail(m, f.sub("jwks"), jwks.error().message);
  }
  // Neither: Istio discovers the key set from the issuer (OpenID).
  if (out.jwks.empty() && out.jwks_uri.empty() &&
      !security::parse_http_url(security::openid_discovery_url(out.issuer)))
    fail(m, f.sub("jwks"),
         "required when jwksUri is not set and the issuer is not an http(s) URL to discover "
         "the key set from (OpenID discovery)");
  if (auto v = f.get("fromHeaders")) {
    std::string p = f.sub("fromHeaders");
    require_seq(v, m, p);
    for (size_t i = 0; i < v.size(); ++i) {
      Fields h(v[i], m, index(p, i));
      JwtHeaderLocation loc;
      loc.name = scalar(h.require("name"), m, h.sub("name"));
      check_header(loc.name, m, h.sub("name"));
      if (auto pre = h.get("prefix")) loc.prefix = scalar(pre, m, h.sub("prefix"));
      h.finish();
      out.from_headers.push_back(std::move(loc));
    }
  }
  if (auto v = f.get("fromParams")) out.from_params = string_list(v, m, f.sub("fromParams"));
  if (auto v = f.get("fromCookies")) out.from_cookies = string_list(v, m, f.sub("fromCookies"));
  if (auto v = f.get("outputPayloadToHeader")) {
    out.output_payload_to_header = scalar(v, m, f.sub("outputPayloadToHeader"));
    check_header(out.output_payload_to_header, m, f.sub("outputPayloadToHeader"));
  }
  if (auto v = f.get("outputClaimToHeaders")) {
    std::string p = f.sub("outputClaimToHeaders");
    require_seq(v, m, p);
    for (size_t i = 0; i < v.size(); ++i) {
      Fields c(v[i], m, index(p, i));
      JwtClaimToHeader ch;
      ch.header = scalar(c.require("header"), m, c.sub("header"));
      check_header(ch.header, m, c.sub("header"));
      ch.claim = scalar(c.require("claim"), m, c.sub("claim"));
      if (ch.claim.empty()) fail(m, c.sub("claim"), "must not be empty");
      c.finish();
      out.output_claim_to_headers.push_back(std::move(ch));
    }
  }
  if (auto v = f.get("forwardOriginalToken"))
    out.forward_original_token = boolean(v, m, f.sub("forwardOriginalToken"));
  if (auto v = f.get("spaceDelimitedClaims"))
    out.space_delimited_claims = string_list(v, m, f.sub("spaceDelimitedClaims"));
  if (auto v = f.get("timeout")) {
    out.timeout = duration(v, m, f.sub("timeout"));
    if (out.timeout.count() <= 0) fail(m, f.sub("timeout"), "must be > 0");
  }
  f.finish();
  return out;
}

RequestAuthenticationRes parse_request_authentication(const YAML::Node& spec, Meta meta) {
  RequestAuthenticationRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  out.scope = parse_scope(f, m);
  YAML::Node rules = f.get("jwtRules");
  f.finish();
  if (!rules) return out;
  require_seq(rules, m, "jwtRules");
  for (size_t i = 0; i < rules.size(); ++i)
    out.jwt_rules.push_back(parse_jwt_rule(rules[i], m, index("jwtRules", i)));
  return out;
}

// A list field of Source / Operation.
void list_field(Fields& f, const Meta& m, const char* key, std::vector<std::string>& out) {
  if (auto v = f.get(key)) out = string_list(v, m, f.sub(key));
}

AuthzRule parse_authz_rule(const YAML::Node& n, const Meta& m, const std::string& path) {
  AuthzRule out;
  Fields f(n, m, path);
  if (auto from = f.get("from")) {
    std::string p = f.sub("from");
    require_seq(from, m, p);
    for (size_t i = 0; i < from.size(); ++i) {
      Fields e(from[i], m, index(p, i));
      Fields s(e.require("source"), m, e.sub("source"));
      e.finish();
      AuthzSource src;
      list_field(s, m, "principals", src.principals);
      list_field(s, m, "notPrincipals", src.not_principals);
      list_field(s, m, "requestPrincipals", src.request_principals);
      list_field(s, m, "notRequestPrincipals", src.not_request_principals);
      list_field(s, m, "namespaces", src.namespaces);
      list_field(s, m, "notNamespaces", src.not_namespaces);
      list_field(s, m, "ipBlocks", src.ip_blocks);
      list_field(s, m, "notIpBlocks", src.not_ip_blocks);
      list_field(s, m, "remoteIpBlocks", src.remote_ip_blocks);
      list_field(s, m, "notRemoteIpBlocks", src.not_remote_ip_blocks);
      s.not_implemented({"serviceAccounts", "notServiceAccounts"});
      s.finish();
      out.from.push_back(std::move(src));
    }
  }
  if (auto to = f.get("to")) {
    std::string p = f.sub("to");
    require_seq(to, m, p);
    for (size_t i = 0; i < to.size(); ++i) {
      Fields e(to[i], m, index(p, i));
      Fields o(e.require("operation"), m, e.sub("operation"));
      e.finish();
      AuthzOperation op;
      list_field(o, m, "hosts", op.hosts);
      list_field(o, m, "notHosts", op.not_hosts);
      list_field(o, m, "ports", op.ports);
      list_field(o, m, "notPorts", op.not_ports);
      list_field(o, m, "methods", op.methods);
      list_field(o, m, "notMethods", op.not_methods);
      list_field(o, m, "paths", op.paths);
      list_field(o, m, "notPaths", op.not_paths);
      o.finish();
      out.to.push_back(std::move(op));
    }
  }
  if (auto when = f.get("when")) {
    std::string p = f.sub("when");
    require_seq(when, m, p);
    for (size_t i = 0; i < when.size(); ++i) {
      Fields c(when[i], m, index(p, i));
      AuthzCondition cond;
      cond.key = scalar(c.require("key"), m, c.sub("key"));
      list_field(c, m, "values", cond.values);
      list_field(c, m, "notValues", cond.not_values);
      c.finish();
      out.when.push_back(std::move(cond));
    }
  }
  f.finish();
  return out;
}

AuthorizationPolicyRes parse_authorization_policy(const YAML::Node& spec, Meta meta) {
  AuthorizationPolicyRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  AuthorizationPolicy& p = out.policy;
  p.name = m.name;
  p.ns = m.namespace_;
  Fields f(spec, m, "");
  out.scope = parse_scope(f, m);
  if (auto v = f.get("action")) {
    std::string a = enum_name(v, m, "action", {"ALLOW", "DENY", "AUDIT", "CUSTOM"});
    p.action = a == "DENY"     ? AuthzAction::deny
               : a == "AUDIT"  ? AuthzAction::audit
               : a == "CUSTOM" ? AuthzAction::custom
                               : AuthzAction::allow;
  }
  if (auto v = f.get("provider")) {
    Fields pr(v, m, "provider");
    p.provider = scalar(pr.require("name"), m, pr.sub("name"));
    pr.finish();
  }
  if (auto rules = f.get("rules")) {
    require_seq(rules, m, "rules");
    for (size_t i = 0; i < rules.size(); ++i)
      p.rules.push_back(parse_authz_rule(rules[i], m, index("rules", i)));
  }
  f.finish();
  return out;
}

struct Parser {
  Resources res;
  std::vector<std::string> warnings;
  std::set<std::string> seen;  // kind/ns/name

  void document(const YAML::Node& doc, const std::string& origin) {
    if (!doc || doc.IsNull()) return;
    Meta file_meta;
    file_meta.kind = origin;
    if (!doc.IsMap()) throw LoadError{Error{origin, "", "a document must be a mapping"}};
    std::string kind = doc["kind"] && doc["kind"].IsScalar() ? doc["kind"].Scalar() : "";
    std::string api =
        doc["apiVersion"] && doc["apiVersion"].IsScalar() ? doc["apiVersion"].Scalar() : "";
    if (kind.empty()) throw LoadError{Error{origin, "kind", "required field is missing"}};
    // `kubectl get -o yaml` wraps objects in a List (or <Kind>List).
    if (kind.size() >= 4 && kind.ends_with("List") && doc["items"]) {
      YAML::Node items = doc["items"];
      if (!items.IsSequence()) throw LoadError{Error{origin, "items", "must be a list"}};
      for (const auto& item : items) document(item, origin);
      return;
    }
    Meta meta;
    meta.kind = kind;
    meta.file = origin;
    YAML::Node md = doc["metadata"];
    if (md && md.IsMap()) {
      if (md["name"] && md["name"].IsScalar()) meta.name = md["name"].Scalar();
      if (md["namespace"] && md["namespace"].IsScalar()) meta.namespace_ = md["namespace"].Scalar();
    }
    if (kind == "Secret" && api == "v1") {
      if (meta.name.empty()) fail(meta, "metadata.name", "required field is missing");
      if (!seen.insert(kind + "/" + meta.key()).second)
        fail(meta, "metadata.name", "defined more than once");
      res.secrets.push_back(parse_secret(doc, meta));
      return;
    }
    if (parse_gateway_api(doc, meta, api, res, seen, warnings)) return;
    if (parse_kubernetes(doc, meta, api, res, seen, warnings)) return;
    static const std::set<std::string> versions = {
        "networking.istio.io/v1alpha3", "networking.istio.io/v1beta1", "networking.istio.io/v1"};
    static const std::set<std::string> kinds = {"Gateway", "VirtualService", "DestinationRule",
                                                "ServiceEntry"};
    static const std::set<std::string> security_versions = {"security.istio.io/v1beta1",
                                                            "security.istio.io/v1"};
    static const std::set<std::string> security_kinds = {"RequestAuthentication",
                                                         "AuthorizationPolicy"};
    bool networking = (versions.count(api) && kinds.count(kind)) ||
                      (kind == "EnvoyFilter" && api == "networking.istio.io/v1alpha3");
    bool security = security_versions.count(api) && security_kinds.count(kind);
    bool telemetry = kind == "Telemetry" &&
                     (api == "telemetry.istio.io/v1" || api == "telemetry.istio.io/v1alpha1");
    if (!networking && !security && !telemetry) {
      warnings.push_back(fmt::format("{}: ignoring {} {} ({}): kind not supported", origin, kind,
                                     meta.display().empty() ? "?" : meta.display(), api));
      return;
    }
    if (meta.name.empty()) fail(meta, "metadata.name", "required field is missing");
    for (const auto& kv : doc) {
      std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (k != "apiVersion" && k != "kind" && k != "metadata" && k != "spec" && k != "status")
        fail(meta, k, fmt::format("unknown field \"{}\"", k));
    }
    if (!seen.insert(kind + "/" + meta.key()).second)
      fail(meta, "metadata.name", "defined more than once");
    YAML::Node spec = doc["spec"];
    if (!spec) fail(meta, "spec", "required field is missing");
    if (kind == "Gateway") res.gateways.push_back(parse_gateway(spec, meta));
    if (kind == "VirtualService") res.virtual_services.push_back(parse_virtual_service(spec, meta));
    if (kind == "DestinationRule")
      res.destination_rules.push_back(parse_destination_rule(spec, meta));
    if (kind == "ServiceEntry") res.service_entries.push_back(parse_service_entry(spec, meta));
    if (kind == "EnvoyFilter") res.envoy_filters.push_back(parse_envoy_filter(spec, meta));
    if (kind == "RequestAuthentication")
      res.request_authentications.push_back(parse_request_authentication(spec, meta));
    if (kind == "AuthorizationPolicy")
      res.authorization_policies.push_back(parse_authorization_policy(spec, meta));
    if (kind == "Telemetry") res.telemetries.push_back(parse_telemetry(spec, meta));
  }

  void stream(std::string_view text, const std::string& origin) {
    std::vector<YAML::Node> docs;
    try {
      docs = load_all_documents(std::string(text));
    } catch (const YAML::Exception& e) {
      throw LoadError{Error{origin,
                            fmt::format("line {}, column {}", e.mark.line + 1, e.mark.column + 1),
                            "malformed YAML: " + e.msg}};
    }
    try {
      for (const auto& d : docs) document(d, origin);
    } catch (const YAML::Exception& e) {
      // Type errors yaml-cpp reports while we walk the tree.
      throw LoadError{Error{
          origin, fmt::format("line {}, column {}", e.mark.line + 1, e.mark.column + 1), e.msg}};
    }
  }

  void file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw LoadError{Error{path, "", "cannot read file"}};
    std::stringstream ss;
    ss << in.rdbuf();
    stream(ss.str(), path);
  }

  void path(const std::string& p) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> files;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        auto ext = entry.path().extension().string();
        if (entry.is_regular_file(ec) && (ext == ".yaml" || ext == ".yml"))
          files.push_back(entry.path().string());
      }
      if (ec) throw LoadError{Error{p, "", "cannot list directory: " + ec.message()}};
      std::sort(files.begin(), files.end());
      for (const auto& f : files) file(f);
      return;
    }
    if (!fs::exists(p, ec)) throw LoadError{Error{p, "", "no such file or directory"}};
    file(p);
  }

  Parsed done() {
    parse_warnings = nullptr;
    return Parsed{std::make_shared<const Resources>(std::move(res)), std::move(warnings)};
  }
};

// Routes note() to a parser's warnings for the duration of a parse.
struct WarningSink {
  explicit WarningSink(std::vector<std::string>& w) { parse_warnings = &w; }
  ~WarningSink() { parse_warnings = nullptr; }
};

}  // namespace

std::vector<std::string> referenced_files(const Parsed& parsed) {
  std::set<std::string> out;
  auto add = [&](const std::optional<PemFile>& f) {
    if (f) out.insert(f->path);
  };
  auto add_parts = [&](const PolicyParts& p) {
    if (!p.tls) return;
    add(p.tls->ca_certificates);
    add(p.tls->client_certificate);
    add(p.tls->private_key);
  };
  auto add_policy = [&](const std::optional<TrafficPolicyIn>& tp) {
    if (!tp) return;
    add_parts(tp->parts);
    for (const auto& pl : tp->port_level) add_parts(pl.parts);
  };
  for (const auto& g : parsed.resources->gateways)
    for (const auto& s : g.servers)
      if (s.tls) {
        add(s.tls->server_certificate);
        add(s.tls->private_key);
        add(s.tls->ca_certificates);
      }
  for (const auto& dr : parsed.resources->destination_rules) {
    add_policy(dr.traffic_policy);
    for (const auto& sub : dr.subsets) add_policy(sub.traffic_policy);
  }
  return {out.begin(), out.end()};
}

Result<Parsed> parse_files(const std::vector<std::string>& paths) {
  Parser parser;
  WarningSink sink(parser.warnings);
  try {
    for (const auto& p : paths) parser.path(p);
  } catch (const LoadError& e) {
    return e.error;
  }
  return parser.done();
}

Result<Parsed> parse_string(std::string_view yaml, std::string origin) {
  Parser parser;
  WarningSink sink(parser.warnings);
  try {
    parser.stream(yaml, origin);
  } catch (const LoadError& e) {
    return e.error;
  }
  return parser.done();
}

}  // namespace sluice::istio
