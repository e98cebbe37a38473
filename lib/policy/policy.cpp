// Route policies: validation and compilation (config path, may allocate and
// report errors), and the pure per-request decisions the proxy session asks
// for (no exceptions, no I/O).

#include "policy/policy.hpp"

#include <fmt/format.h>

#include "http/random.hpp"
#include "http/regex.hpp"
#include "http/tokens.hpp"
#include "http/wire_check.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace sluice::policy {

namespace {

using http::is_token;
using http::trim;

bool is_authority_name(std::string_view name) {
  return http::iequals(name, "host") || http::iequals(name, ":authority");
}

using http::HostPort;
using http::split_host_port;

bool valid_percentage(double p) {
  return std::isfinite(p) && p >= 0 && p <= 100;
}

constexpr std::string_view kFaultBody = "fault filter abort";

class Compiler {
 public:
  Compiler(std::string_view object, std::string_view field) : object_(object), field_(field) {}

  Error error(std::string_view sub, std::string message) const {
    return Error{std::string(object_), fmt::format("{}.{}", field_, sub), std::move(message)};
  }

  std::optional<Error> check_conflicts(const Route& route) const {
    const char* action = route.redirect          ? "redirect"
                         : route.direct_response ? "direct_response"
                                                 : nullptr;
    if (!action) return std::nullopt;
    // Istio rejects these pairs: neither applies without forwarding.
    if (route.rewrite) return error("rewrite", fmt::format("cannot be used with {}", action));
    if (route.fault) return error("fault", fmt::format("cannot be used with {}", action));
    return std::nullopt;
  }

  std::optional<Error> check_redirect(const Redirect& r) const {
    switch (r.code) {
      case 301:
      case 302:
      case 303:
      case 307:
      case 308:
        break;
      default:
        return error("redirect.code",
                     fmt::format("must be one of 301, 302, 303, 307, 308, got {}", r.code));
    }
    if (r.port != 0 && r.derive_port != Redirect::DerivePort::none)
      return error("redirect.port", "set either port or derive_port, not both");
    // Everything here ends up in the Location header (edge invariant: no
    // CR, LF or NUL, and the grammar of its URI part).
    if (!r.uri.empty())
      if (auto why = http::check_path(r.uri, true); !why.empty()) return error("redirect.uri", why);
    if (!r.scheme.empty())
      if (auto why = http::check_scheme(r.scheme); !why.empty())
        return error("redirect.scheme", why);
    if (auto why = check_optional_authority(r.authority); !why.empty())
      return error("redirect.authority", why);
    return std::nullopt;
  }

  std::optional<Error> compile_rewrite(const Rewrite& rw, CompiledRoutePolicy& out) const {
    if (rw.uri && rw.uri_regex) return error("rewrite", "set either uri or uri_regex, not both");
    if (rw.uri && !rw.uri->empty())
      if (auto why = http::check_path(*rw.uri); !why.empty()) return error("rewrite.uri", why);
    if (rw.uri_regex) {
      const auto& [pattern, rewrite] = *rw.uri_regex;
      auto compiled = http::compile_regex(pattern);
      if (!compiled) return error("rewrite.uri_regex", compiled.error().message);
      std::unique_ptr<const re2::RE2> re = std::move(compiled).value();
      std::string why;
      if (!re->CheckRewriteString(rewrite, &why))
        return error("rewrite.uri_regex", fmt::format("invalid rewrite \"{}\" for regex \"{}\": {}",
                                                      rewrite, pattern, why));
      // The substitution's literal text goes into the request line. Its
      // captures cannot add CR, LF, NUL or spaces: they copy bytes of the
      // request path, which the parser has already refused those in (and
      // path normalisation decodes no such escape).
      if (auto bad = http::check_path_template(rewrite); !bad.empty())
        return error("rewrite.uri_regex", fmt::format("rewrite {}: {}", http::quote(rewrite), bad));
      out.uri_regex_rewrite = std::move(re);
    }
    if (auto why = check_optional_authority(rw.authority); !why.empty())
      return error("rewrite.authority", why);
    return std::nullopt;
  }

  // Istio: a request may set or add Host (":authority"); removing it, or
  // touching it on a response, is refused. Pseudo-headers are refused.
  std::optional<Error> check_headers(const HeaderOperations& ops, const std::string& sub,
                                     bool request) const {
    auto check_name = [&](std::string_view name, bool host_ok,
                          const std::string& at) -> std::optional<Error> {
      if (name.empty()) return error(at, "header name must not be empty");
      if (is_authority_name(name)) {
        if (host_ok) return std::nullopt;
        return error(at, fmt::format("header \"{}\" cannot be {}", name,
                                     request ? "removed" : "modified on a response"));
      }
      if (name.front() == ':')
        return error(at, fmt::format("pseudo-header {} cannot be modified", http::quote(name)));
      if (auto why = http::check_header_name(name); !why.empty()) return error(at, why);
      return std::nullopt;
    };
    auto check_pairs = [&](const std::vector<std::pair<std::string, std::string>>& list,
                           const char* kind) -> std::optional<Error> {
      for (size_t i = 0; i < list.size(); ++i) {
        std::string at = fmt::format("{}.{}[{}]", sub, kind, i);
        if (auto e = check_name(list[i].first, request, at)) return e;
        if (auto why = http::check_header_value(list[i].second); !why.empty())
          return error(at, fmt::format("header \"{}\" {} (control characters are not allowed)",
                                       list[i].first, why));
        if (is_authority_name(list[i].first))
          if (auto why = http::check_authority(list[i].second); !why.empty())
            return error(at, fmt::format("invalid authority: {}", why));
      }
      return std::nullopt;
    };
    if (auto e = check_pairs(ops.set, "set")) return e;
    if (auto e = check_pairs(ops.add, "add")) return e;
    for (size_t i = 0; i < ops.remove.size(); ++i)
      if (auto e = check_name(ops.remove[i], false, fmt::format("{}.remove[{}]", sub, i))) return e;
    return std::nullopt;
  }

  std::optional<Error> compile_retry(const RetryPolicy& in, CompiledRetry& out) const {
    if (in.per_try_timeout.count() < 0) return error("retries.per_try_timeout", "must be >= 0");
    if (in.backoff_base.count() < 0) return error("retries.backoff_base", "must be >= 0");
    auto on = parse_retry_on(in.retry_on);
    if (!on) return error("retries.retry_on", on.error().message);
    out.attempts = in.attempts;
    out.per_try_timeout = in.per_try_timeout;
    out.on = std::move(on.value());
    out.ignore_previous_hosts = in.retry_ignore_previous_hosts;
    out.backoff_base = in.backoff_base;
    out.max_replay_bytes = in.max_replay_bytes;
    return std::nullopt;
  }

  std::optional<Error> check_fault(const Fault& f) const {
    if (!f.delay && !f.abort) return error("fault", "set delay, abort or both");
    if (f.delay) {
      if (f.delay->fixed_delay.count() < 1)
        return error("fault.delay.fixed_delay", "must be >= 1ms");
      if (!valid_percentage(f.delay->percentage))
        return error("fault.delay.percentage",
                     fmt::format("must be in [0, 100], got {}", f.delay->percentage));
    }
    if (f.abort) {
      const auto& a = *f.abort;
      if (a.http_status != 0 && a.grpc_status)
        return error("fault.abort", "set either http_status or grpc_status, not both");
      if (a.http_status == 0 && !a.grpc_status)
        return error("fault.abort", "set http_status or grpc_status");
      if (a.http_status != 0 && (a.http_status < 200 || a.http_status > 599))
        return error("fault.abort.http_status",
                     fmt::format("must be in 200..599, got {}", a.http_status));
      if (a.grpc_status && *a.grpc_status > 16)
        return error("fault.abort.grpc_status",
                     fmt::format("must be a gRPC status code 0..16, got {}", *a.grpc_status));
      if (!valid_percentage(a.percentage))
        return error("fault.abort.percentage",
                     fmt::format("must be in [0, 100], got {}", a.percentage));
    }
    return std::nullopt;
  }

  std::optional<Error> check_mirrors(const std::vector<Mirror>& mirrors) const {
    for (size_t i = 0; i < mirrors.size(); ++i) {
      if (mirrors[i].upstream.empty())
        return error(fmt::format("mirrors[{}].upstream", i), "must not be empty");
      if (!valid_percentage(mirrors[i].percentage))
        return error(fmt::format("mirrors[{}].percentage", i),
                     fmt::format("must be in [0, 100], got {}", mirrors[i].percentage));
    }
    return std::nullopt;
  }

  std::optional<Error> compile_cors(const CorsPolicy& in, CompiledCors& out) const {
    out.source = in;
    for (size_t i = 0; i < in.allow_origins.size(); ++i) {
      const auto& m = in.allow_origins[i];
      std::string at = fmt::format("cors.allow_origins[{}]", i);
      if (m.kind == StringMatch::Kind::present)
        return error(at, "must be exact, prefix, suffix or regex");
      auto compiled = http::compile_string_match(m);
      if (!compiled) return error(at, compiled.error().message);
      out.allow_origins.push_back(std::move(compiled).value());
    }
    auto join = [](const std::vector<std::string>& list) {
      std::string s;
      for (const auto& v : list) s += (s.empty() ? "" : ",") + v;
      return s;
    };
    struct List {
      const std::vector<std::string>& in;
      std::string& out;
      const char* name;
    };
    for (auto [src, dst, name] : {List{in.allow_methods, out.allow_methods, "allow_methods"},
                                  List{in.allow_headers, out.allow_headers, "allow_headers"},
                                  List{in.expose_headers, out.expose_headers, "expose_headers"}}) {
      for (size_t i = 0; i < src.size(); ++i)
        if (!is_token(src[i]) && src[i] != "*")
          return error(fmt::format("cors.{}[{}]", name, i),
                       fmt::format("{} is not a valid token", http::quote(src[i])));
      dst = join(src);
    }
    if (in.max_age) {
      if (in.max_age->count() < 0) return error("cors.max_age", "must be >= 0");
      out.max_age = std::to_string(in.max_age->count());
    }
    return std::nullopt;
  }

 private:
  // Empty keeps the request's authority.
  static std::string check_optional_authority(std::string_view a) {
    if (a.empty()) return {};
    if (auto why = http::check_authority(a); !why.empty())
      return fmt::format("invalid authority: {}", why);
    return {};
  }

  std::string_view object_;
  std::string_view field_;
};

}  // namespace

// --- compilation ----------------------------------------------------------

Result<RetryOn> parse_retry_on(std::string_view retry_on) {
  static const std::string kDefault = RetryPolicy{}.retry_on;
  if (trim(retry_on).empty()) retry_on = kDefault;
  RetryOn on;
  for (bool more = true; more;) {
    size_t comma = retry_on.find(',');
    std::string_view token = trim(retry_on.substr(0, comma));
    more = comma != std::string_view::npos;
    if (more) retry_on.remove_prefix(comma + 1);
    if (token.empty()) return Error{{}, {}, "empty retry condition (stray ',')"};
    if (std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      unsigned code = 0;
      for (char c : token.substr(0, 4)) code = code * 10 + static_cast<unsigned>(c - '0');
      if (token.size() > 3 || code < 100 || code > 599)
        return Error{{}, {}, fmt::format("\"{}\" is not an HTTP status code (100..599)", token)};
      on.retriable_status_codes = true;
      if (std::find(on.status_codes.begin(), on.status_codes.end(), code) == on.status_codes.end())
        on.status_codes.push_back(static_cast<uint16_t>(code));
      continue;
    }
    struct Flag {
      std::string_view name;
      bool RetryOn::*flag;
    };
    static constexpr Flag kFlags[] = {
        {"5xx", &RetryOn::status_5xx},
        {"gateway-error", &RetryOn::gateway_error},
        {"reset", &RetryOn::reset},
        {"reset-before-request", &RetryOn::reset_before_request},
        {"connect-failure", &RetryOn::connect_failure},
        {"refused-stream", &RetryOn::refused_stream},
        {"retriable-4xx", &RetryOn::retriable_4xx},
        {"retriable-status-codes", &RetryOn::retriable_status_codes},
        {"cancelled", &RetryOn::grpc_cancelled},
        {"deadline-exceeded", &RetryOn::grpc_deadline_exceeded},
        {"resource-exhausted", &RetryOn::grpc_resource_exhausted},
        {"internal", &RetryOn::grpc_internal},
        {"unavailable", &RetryOn::grpc_unavailable},
    };
    // Accepted as Istio does, but nothing sluice sees can trigger them: no
    // retriable_headers list, no x-envoy-ratelimited, no HTTP/3.
    static constexpr std::string_view kInert[] = {"retriable-headers", "envoy-ratelimited",
                                                  "http3-post-connect-failure"};
    auto flag = std::find_if(std::begin(kFlags), std::end(kFlags),
                             [&](const Flag& f) { return f.name == token; });
    if (flag != std::end(kFlags)) {
      on.*(flag->flag) = true;
      continue;
    }
    if (std::find(std::begin(kInert), std::end(kInert), token) != std::end(kInert)) continue;
    return Error{{}, {}, fmt::format("unknown retry condition \"{}\"", token)};
  }
  return on;
}

Result<CompiledRoutePolicy> compile_route_policy(const Route& route, std::string_view object,
                                                 std::string_view field) {
  Compiler c(object, field);
  CompiledRoutePolicy out;
  out.route = &route;

  if (auto e = c.check_conflicts(route)) return *e;
  if (route.redirect)
    if (auto e = c.check_redirect(*route.redirect)) return *e;
  if (route.rewrite)
    if (auto e = c.compile_rewrite(*route.rewrite, out)) return *e;
  if (auto e = c.check_headers(route.request_headers, "request_headers", true)) return *e;
  if (auto e = c.check_headers(route.response_headers, "response_headers", false)) return *e;
  for (size_t k = 0; k < route.destinations.size(); ++k) {
    const auto& d = route.destinations[k];
    std::string at = fmt::format("destinations[{}]", k);
    if (auto e = c.check_headers(d.request_headers, at + ".request_headers", true)) return *e;
    if (auto e = c.check_headers(d.response_headers, at + ".response_headers", false)) return *e;
  }
  if (route.timeout.count() < 0) return c.error("timeout", "must be >= 0");
  if (auto e = c.compile_retry(route.retries, out.retry)) return *e;
  out.timeout = route.timeout;
  if (route.fault) {
    if (auto e = c.check_fault(*route.fault)) return *e;
    // Istio: "timeouts or retries will not be enabled when faults are enabled".
    out.retry.attempts = 0;
    out.timeout = std::chrono::milliseconds{0};
  }
  if (auto e = c.check_mirrors(route.mirrors)) return *e;
  if (route.cors)
    if (auto e = c.compile_cors(*route.cors, out.cors.emplace())) return *e;
  return out;
}

// --- retries --------------------------------------------------------------

bool CompiledRetry::retriable(AttemptOutcome outcome, uint16_t status,
                              std::optional<uint32_t> grpc_status) const {
  // Envoy counts a request that got no response as a 5xx (and a gateway
  // error): resets, connect failures and per-try timeouts all qualify.
  bool no_response = on.status_5xx || on.gateway_error || on.reset;
  switch (outcome) {
    case AttemptOutcome::connect_failure:
      return no_response || on.connect_failure || on.reset_before_request;
    case AttemptOutcome::reset:
    case AttemptOutcome::timeout:
      return no_response;
    case AttemptOutcome::downstream_cancelled:
      return false;
    case AttemptOutcome::response:
      break;
  }
  if (on.status_5xx && status >= 500 && status <= 599) return true;
  if (on.gateway_error && status >= 502 && status <= 504) return true;
  if (on.retriable_4xx && status == 409) return true;
  if (on.retriable_status_codes &&
      std::find(on.status_codes.begin(), on.status_codes.end(), status) != on.status_codes.end())
    return true;
  if (grpc_status) {
    switch (*grpc_status) {
      case 1:
        return on.grpc_cancelled;
      case 4:
        return on.grpc_deadline_exceeded;
      case 8:
        return on.grpc_resource_exhausted;
      case 13:
        return on.grpc_internal;
      case 14:
        return on.grpc_unavailable;
      default:
        return false;
    }
  }
  return false;
}

std::chrono::milliseconds CompiledRetry::backoff(uint32_t retry, std::mt19937_64& rng) const {
  auto base = static_cast<uint64_t>(std::max<int64_t>(backoff_base.count(), 0));
  if (base == 0) return std::chrono::milliseconds{0};
  uint32_t n = std::clamp<uint32_t>(retry, 1, 8);  // 2^4 - 1 > 10 already hits the cap
  uint64_t upper = std::min(((uint64_t{1} << n) - 1) * base, 10 * base);
  return std::chrono::milliseconds{static_cast<int64_t>(http::draw_below(rng, upper))};
}

// --- redirect and rewrite -------------------------------------------------

std::string redirect_location(const Redirect& redirect, const RequestHead& request) {
  std::string_view scheme = redirect.scheme.empty() ? std::string_view(request.scheme)
                                                    : std::string_view(redirect.scheme);
  std::string_view host;
  if (!redirect.authority.empty()) {
    host = redirect.authority;  // Envoy host_redirect: the request's port is not carried over
  } else {
    host = request.authority;
    HostPort hp = split_host_port(host);
    // Envoy: switching scheme drops the old scheme's explicit default port.
    if (scheme != request.scheme && ((request.scheme == "http" && hp.port == "80") ||
                                     (request.scheme == "https" && hp.port == "443")))
      host = hp.host;
  }
  uint16_t port = redirect.port;
  if (redirect.derive_port == Redirect::DerivePort::from_request_port) port = request.listener_port;
  if (port != 0 || redirect.derive_port == Redirect::DerivePort::from_protocol_default)
    host = split_host_port(host).host;

  std::string out;
  out.reserve(scheme.size() + host.size() + request.target.size() + redirect.uri.size() + 16);
  out.append(scheme).append("://");
  if (port != 0)
    out += http::join_host_port(host, port);
  else
    out += host;
  if (redirect.uri.empty()) {
    out += request.target;
  } else {
    out += redirect.uri;
    // Envoy path_redirect: the request's query survives unless the new path has its own.
    std::string_view query = request.query();
    if (redirect.uri.find('?') == std::string::npos && !query.empty())
      out.append("?").append(query);
  }
  return out;
}

void apply_rewrite(const CompiledRoutePolicy& policy, const Matcher* matched,
                   RequestHead& request) {
  if (!policy.route || !policy.route->rewrite) return;
  const Rewrite& rw = *policy.route->rewrite;
  std::string_view path = request.path();
  std::string_view rest(request.target);  // "?query" or empty
  rest.remove_prefix(path.size());

  std::optional<std::string> new_path;
  if (policy.uri_regex_rewrite) {
    std::string p(path);
    re2::RE2::GlobalReplace(&p, *policy.uri_regex_rewrite, rw.uri_regex->second);
    new_path = std::move(p);
  } else if (rw.uri && !rw.uri->empty()) {
    size_t cut = path.size();  // exact and regex blocks: the whole path
    const StringMatch* uri = matched && matched->uri ? &*matched->uri : nullptr;
    if (!uri)
      cut = !path.empty() && path.front() == '/' ? 1 : 0;  // Istio's implied prefix "/"
    else if (uri->kind == StringMatch::Kind::prefix)
      cut = std::min(uri->value.size(), path.size());
    new_path = *rw.uri;
    new_path->append(path.substr(cut));
  }
  if (new_path) {
    // A regex rewrite may drop the leading '/' (`^/(.*)$` -> `\1`): the
    // request line still needs an origin-form target.
    if (new_path->empty() || new_path->front() != '/') new_path->insert(0, "/");
    new_path->append(rest);
    request.headers.set("x-envoy-original-path", request.target);
    request.target = std::move(*new_path);
  }
  if (!rw.authority.empty()) {
    request.authority = rw.authority;
    request.headers.set("host", rw.authority);
  }
}

// --- header operations ----------------------------------------------------

void apply_headers(const HeaderOperations& ops, Headers& headers) {
  for (const auto& name : ops.remove) headers.remove(name);
  for (const auto& [name, value] : ops.set) headers.set(name, value);
  for (const auto& [name, value] : ops.add) headers.add(name, value);
}

void apply_headers(const HeaderOperations& ops, RequestHead& request) {
  auto put = [&](const std::string& name, const std::string& value, bool append) {
    if (is_authority_name(name)) {
      // One Host only: add behaves as set.
      request.authority = value;
      request.headers.set("host", value);
    } else if (append) {
      request.headers.add(name, value);
    } else {
      request.headers.set(name, value);
    }
  };
  for (const auto& name : ops.remove)
    if (!is_authority_name(name)) request.headers.remove(name);
  for (const auto& [name, value] : ops.set) put(name, value, false);
  for (const auto& [name, value] : ops.add) put(name, value, true);
}

// --- CORS -----------------------------------------------------------------

bool CompiledCors::origin_allowed(std::string_view origin) const {
  for (const auto& m : allow_origins)
    if (m.matches("*") || m.matches(origin)) return true;
  return false;
}

CorsDecision evaluate_cors(const CompiledCors& cors, const RequestHead& request) {
  CorsDecision out;
  auto origin = request.headers.get("origin");
  if (!origin || origin->empty()) return out;
  bool allowed = cors.origin_allowed(*origin);
  auto request_method = request.headers.get("access-control-request-method");
  bool preflight = request.method == "OPTIONS" && request_method && !request_method->empty();
  bool credentials = cors.source.allow_credentials.value_or(false);

  if (!preflight) {
    if (!allowed) return out;
    out.response_headers.emplace_back("access-control-allow-origin", std::string(*origin));
    if (credentials) out.response_headers.emplace_back("access-control-allow-credentials", "true");
    if (!cors.expose_headers.empty())
      out.response_headers.emplace_back("access-control-expose-headers", cors.expose_headers);
    return out;
  }
  if (!allowed && cors.source.forward_unmatched_preflights) return out;

  // Envoy answers every other preflight itself; an unmatched one (IGNORE)
  // just lacks access-control-allow-origin, so the browser refuses it.
  Response& r = out.preflight.emplace();
  r.status = 200;
  if (allowed) r.headers.add("access-control-allow-origin", std::string(*origin));
  if (credentials) r.headers.add("access-control-allow-credentials", "true");
  if (cors.allow_methods == "*")
    r.headers.add("access-control-allow-methods", std::string(*request_method));
  else if (!cors.allow_methods.empty())
    r.headers.add("access-control-allow-methods", cors.allow_methods);
  if (cors.allow_headers == "*") {
    auto requested = request.headers.get("access-control-request-headers");
    if (requested && !requested->empty())
      r.headers.add("access-control-allow-headers", std::string(*requested));
  } else if (!cors.allow_headers.empty()) {
    r.headers.add("access-control-allow-headers", cors.allow_headers);
  }
  if (!cors.max_age.empty()) r.headers.add("access-control-max-age", cors.max_age);
  return out;
}

// --- faults, percentages, mirrors ----------------------------------------

bool draw(double percentage, std::mt19937_64& rng) {
  if (!(percentage > 0)) return false;  // also NaN
  if (percentage >= 100) return true;
  // Envoy FractionalPercent with denominator MILLION, as Istio translates it.
  auto numerator = static_cast<uint64_t>(std::llround(percentage * 10'000));
  return http::draw_per_million(rng, numerator);
}

Response fault_abort_response(const FaultAbort& abort) {
  Response r;
  if (abort.http_status != 0) {
    r.status = abort.http_status;
    r.headers.add("content-type", "text/plain");
    r.body = kFaultBody;
    return r;
  }
  r.status = 200;
  r.headers.add("content-type", "application/grpc");
  r.headers.add("grpc-status", std::to_string(abort.grpc_status.value_or(2)));
  r.headers.add("grpc-message", std::string(kFaultBody));
  return r;
}

FaultDecision decide_fault(const Fault& fault, std::mt19937_64& rng) {
  FaultDecision out;
  if (fault.delay && fault.delay->fixed_delay.count() > 0 && draw(fault.delay->percentage, rng))
    out.delay = fault.delay->fixed_delay;
  if (fault.abort && draw(fault.abort->percentage, rng))
    out.abort = fault_abort_response(*fault.abort);
  return out;
}

std::string shadow_authority(std::string_view authority) {
  HostPort hp = split_host_port(authority);
  std::string out(hp.host);
  out += "-shadow";
  // Everything after the host part (":port", or a malformed tail) is kept.
  out.append(authority.substr(hp.host.size()));
  return out;
}

}  // namespace sluice::policy
