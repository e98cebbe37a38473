// Route policies (lib/policy): compilation and validation errors, redirects,
// rewrites, header operations, CORS, faults, percentages, retries, mirrors.

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "http/tokens.hpp"
#include "policy/policy.hpp"
#include "sluice/router.hpp"

namespace test_policy {

using namespace sluice;
using namespace std::chrono_literals;

namespace {

RequestHead request(std::string target, std::string authority = "example.com",
                    std::string scheme = "http", uint16_t listener_port = 80) {
  RequestHead r;
  r.target = std::move(target);
  r.authority = std::move(authority);
  r.scheme = std::move(scheme);
  r.listener_port = listener_port;
  r.headers.add("host", r.authority);
  return r;
}

Route forward_route() {
  Route r;
  r.destinations.push_back({"backend", "", 1});
  return r;
}

Route redirect_route(Redirect redirect) {
  Route r;
  r.redirect = std::move(redirect);
  return r;
}

policy::CompiledRoutePolicy compile_ok(const Route& route) {
  auto p = policy::compile_route_policy(route, "Router main", "virtual_hosts[0].routes[1]");
  REQUIRE_MESSAGE(p.ok(), p.error().to_string());
  return std::move(p).value();
}

Error compile_error(const Route& route) {
  auto p = policy::compile_route_policy(route, "Router main", "virtual_hosts[0].routes[1]");
  REQUIRE_FALSE(p.ok());
  return p.error();
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

std::string location(Redirect r, const RequestHead& req) {
  return policy::redirect_location(r, req);
}

// Rewrites `target` under a route with `rewrite`, selected by `matched`.
std::string rewritten(Rewrite rewrite, const Matcher* matched, std::string target,
                      RequestHead* out = nullptr) {
  Route route = forward_route();
  route.rewrite = std::move(rewrite);
  auto p = compile_ok(route);
  RequestHead req = request(std::move(target));
  policy::apply_rewrite(p, matched, req);
  std::string result = req.target;
  if (out) *out = std::move(req);
  return result;
}

policy::CompiledCors cors_of(CorsPolicy cors) {
  Route route = forward_route();
  route.cors = std::move(cors);
  auto p = compile_ok(route);
  REQUIRE(p.cors);
  return std::move(*p.cors);
}

RequestHead cors_request(std::string method, std::string origin,
                         std::vector<std::pair<std::string, std::string>> extra = {}) {
  RequestHead r = request("/api");
  r.method = std::move(method);
  if (!origin.empty()) r.headers.add("origin", std::move(origin));
  for (auto& [n, v] : extra) r.headers.add(n, v);
  return r;
}

std::string header(const Headers& h, std::string_view name) {
  auto v = h.get(name);
  return v ? std::string(*v) : std::string("<absent>");
}

std::string header(const std::vector<std::pair<std::string, std::string>>& list,
                   std::string_view name) {
  for (const auto& [n, v] : list)
    if (sluice::http::iequals(n, name)) return v;
  return "<absent>";
}

policy::CompiledRetry retry_for(std::string retry_on) {
  Route route = forward_route();
  route.retries.retry_on = std::move(retry_on);
  return compile_ok(route).retry;
}

// Share of `n` draws at `percentage` that came out true.
double share(double percentage, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  int hits = 0;
  for (int i = 0; i < n; ++i) hits += policy::draw(percentage, rng) ? 1 : 0;
  return static_cast<double>(hits) / n;
}

// Five standard deviations of a binomial share: fails by chance about once
// in 3.5 million runs, yet catches a percentage off by a few points.
double tolerance(double p, int n) {
  return 5 * std::sqrt(p * (1 - p) / n);
}

}  // namespace

// --- compilation --------------------------------------------------------------

TEST_CASE("policy compile: a plain route keeps Istio's default retry policy") {
  Route route = forward_route();
  route.timeout = 1500ms;
  auto p = compile_ok(route);
  CHECK(p.route == &route);
  CHECK(p.timeout == 1500ms);
  CHECK(p.retry.attempts == 2);
  CHECK(p.retry.per_try_timeout == 0ms);
  CHECK(p.retry.backoff_base == 25ms);
  CHECK(p.retry.ignore_previous_hosts);
  CHECK(p.retry.max_replay_bytes == 64 * 1024);
  CHECK(p.retry.on.connect_failure);
  CHECK(p.retry.on.refused_stream);
  CHECK(p.retry.on.grpc_unavailable);
  CHECK(p.retry.on.grpc_cancelled);
  CHECK(p.retry.on.retriable_status_codes);
  CHECK(p.retry.on.status_codes == std::vector<uint16_t>{503});
  CHECK_FALSE(p.retry.on.status_5xx);
  CHECK_FALSE(p.retry.on.gateway_error);
  CHECK_FALSE(p.retry.on.reset);
  CHECK_FALSE(p.uri_regex_rewrite);
  CHECK_FALSE(p.cors);
}

TEST_CASE("policy compile: a fault turns the route's retries and timeout off") {
  Route route = forward_route();
  route.timeout = 2s;
  route.retries.attempts = 5;
  route.fault = Fault{FaultDelay{5ms, 10}, std::nullopt};
  auto p = compile_ok(route);
  CHECK(p.retry.attempts == 0);
  CHECK(p.timeout == 0ms);
  // The source is untouched.
  CHECK(route.retries.attempts == 5);
  CHECK(route.timeout == 2s);
}

TEST_CASE("policy validation: redirect") {
  for (uint16_t code : {301, 302, 303, 307, 308}) {
    Redirect r;
    r.code = code;
    CHECK(policy::compile_route_policy(redirect_route(r), "Router main", "r").ok());
  }
  for (uint16_t code : {0, 200, 300, 304, 305, 306, 309, 404}) {
    Redirect r;
    r.code = code;
    Error e = compile_error(redirect_route(r));
    CHECK(e.field == "virtual_hosts[0].routes[1].redirect.code");
    CHECK(contains(e.message, std::to_string(code)));
  }
  Redirect both;
  both.port = 8443;
  both.derive_port = Redirect::DerivePort::from_request_port;
  Error e = compile_error(redirect_route(both));
  CHECK(e.to_string() ==
        "Router main: virtual_hosts[0].routes[1].redirect.port: set either port or derive_port, "
        "not both");

  Redirect relative;
  relative.uri = "v1/x";
  e = compile_error(redirect_route(relative));
  CHECK(e.field == "virtual_hosts[0].routes[1].redirect.uri");

  Redirect bad_scheme;
  bad_scheme.scheme = "ht tp";
  e = compile_error(redirect_route(bad_scheme));
  CHECK(e.field == "virtual_hosts[0].routes[1].redirect.scheme");

  Redirect bad_authority;
  bad_authority.authority = "a.com/x";
  e = compile_error(redirect_route(bad_authority));
  CHECK(e.field == "virtual_hosts[0].routes[1].redirect.authority");

  // Istio: rewrite and fault need a forwarded request.
  Route with_rewrite = redirect_route(Redirect{});
  with_rewrite.rewrite = Rewrite{"/x", std::nullopt, ""};
  e = compile_error(with_rewrite);
  CHECK(e.field == "virtual_hosts[0].routes[1].rewrite");
  CHECK(contains(e.message, "redirect"));

  Route direct_fault;
  direct_fault.direct_response = DirectResponse{200, ""};
  direct_fault.fault = Fault{std::nullopt, FaultAbort{500, std::nullopt, 100}};
  e = compile_error(direct_fault);
  CHECK(e.field == "virtual_hosts[0].routes[1].fault");
  CHECK(contains(e.message, "direct_response"));
}

TEST_CASE("policy validation: rewrite") {
  Route route = forward_route();
  route.rewrite = Rewrite{"/a", std::pair<std::string, std::string>{"x", "y"}, ""};
  Error e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].rewrite");
  CHECK(contains(e.message, "not both"));

  route.rewrite = Rewrite{std::nullopt, std::pair<std::string, std::string>{"/(a", "/b"}, ""};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].rewrite.uri_regex");
  CHECK(contains(e.message, "invalid regex \"/(a\""));
  CHECK(contains(e.message, "missing )"));  // RE2's own words

  // A capture the regex does not have.
  route.rewrite = Rewrite{std::nullopt, std::pair<std::string, std::string>{"^/(a)$", "/\\2"}, ""};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].rewrite.uri_regex");
  CHECK(contains(e.message, "invalid rewrite"));

  route.rewrite = Rewrite{"nope", std::nullopt, ""};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].rewrite.uri");

  route.rewrite = Rewrite{std::nullopt, std::nullopt, "bad host"};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].rewrite.authority");

  route.rewrite =
      Rewrite{std::nullopt, std::pair<std::string, std::string>{"^/(a)$", "/\\1"}, "b.com"};
  auto p = compile_ok(route);
  CHECK(p.uri_regex_rewrite);
}

TEST_CASE("policy validation: header operations") {
  Route route = forward_route();
  route.request_headers.set = {{"x-ok", "1"}, {"bad name", "v"}};
  Error e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].request_headers.set[1]");
  CHECK(contains(e.message, "\"bad name\""));

  route = forward_route();
  route.request_headers.add = {{"", "v"}};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].request_headers.add[0]");
  CHECK(contains(e.message, "empty"));

  route = forward_route();
  route.request_headers.set = {{"x-a", "line\r\nbreak"}};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].request_headers.set[0]");
  CHECK(contains(e.message, "control characters"));

  // Istio: Host may be set on requests, never removed or set on responses.
  route = forward_route();
  route.request_headers.set = {{"Host", "b.com"}};
  route.request_headers.add = {{":authority", "c.com"}};
  CHECK(policy::compile_route_policy(route, "Router main", "r").ok());

  route = forward_route();
  route.request_headers.remove = {"x-a", "host"};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].request_headers.remove[1]");

  route = forward_route();
  route.response_headers.set = {{"host", "x"}};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].response_headers.set[0]");

  route = forward_route();
  route.request_headers.set = {{":path", "/x"}};
  e = compile_error(route);
  CHECK(contains(e.message, "pseudo-header"));

  route = forward_route();
  route.destinations.push_back({"other", "", 1});
  route.destinations[1].response_headers.remove = {"x(y)"};
  e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].destinations[1].response_headers.remove[0]");
}

TEST_CASE("policy validation: timeout and retries") {
  Route route = forward_route();
  route.timeout = -1ms;
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].timeout");

  route = forward_route();
  route.retries.per_try_timeout = -5ms;
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].retries.per_try_timeout");

  route = forward_route();
  route.retries.backoff_base = -1ms;
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].retries.backoff_base");

  route = forward_route();
  route.retries.retry_on = "5xx,connect-failure,teapot";
  Error e = compile_error(route);
  CHECK(e.to_string() ==
        "Router main: virtual_hosts[0].routes[1].retries.retry_on: unknown retry condition "
        "\"teapot\"");

  for (std::string bad : {"5xx,,reset", "600", "99", "1000", "5xx,"}) {
    route.retries.retry_on = bad;
    e = compile_error(route);
    CHECK_MESSAGE(e.field == "virtual_hosts[0].routes[1].retries.retry_on", bad);
  }
}

TEST_CASE("policy validation: fault") {
  Route route = forward_route();
  route.fault = Fault{};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].fault");

  route.fault = Fault{FaultDelay{0ms, 50}, std::nullopt};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].fault.delay.fixed_delay");

  for (double bad : {-0.1, 100.5, std::nan("")}) {
    route.fault = Fault{FaultDelay{1ms, bad}, std::nullopt};
    CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].fault.delay.percentage");
    route.fault = Fault{std::nullopt, FaultAbort{500, std::nullopt, bad}};
    CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].fault.abort.percentage");
  }

  for (uint16_t bad : {100, 199, 600}) {
    route.fault = Fault{std::nullopt, FaultAbort{bad, std::nullopt, 100}};
    Error e = compile_error(route);
    CHECK(e.field == "virtual_hosts[0].routes[1].fault.abort.http_status");
    CHECK(contains(e.message, std::to_string(bad)));
  }
  route.fault = Fault{std::nullopt, FaultAbort{0, std::nullopt, 100}};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].fault.abort");
  route.fault = Fault{std::nullopt, FaultAbort{503, 14u, 100}};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].fault.abort");
  route.fault = Fault{std::nullopt, FaultAbort{0, 17u, 100}};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].fault.abort.grpc_status");

  route.fault = Fault{FaultDelay{1ms, 0}, FaultAbort{0, 14u, 100}};
  CHECK(policy::compile_route_policy(route, "Router main", "r").ok());
}

TEST_CASE("policy validation: mirrors and CORS") {
  Route route = forward_route();
  route.mirrors = {Mirror{"shadow", "", 100}, Mirror{"", "", 50}};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].mirrors[1].upstream");
  route.mirrors = {Mirror{"shadow", "", 100.01}};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].mirrors[0].percentage");
  route.mirrors = {Mirror{"shadow", "v2", 0}};
  CHECK(policy::compile_route_policy(route, "Router main", "r").ok());

  route = forward_route();
  route.cors = CorsPolicy{};
  route.cors->allow_origins = {StringMatch::exact("https://a.com"), StringMatch::regex("(")};
  Error e = compile_error(route);
  CHECK(e.field == "virtual_hosts[0].routes[1].cors.allow_origins[1]");
  CHECK(contains(e.message, "missing )"));

  route.cors->allow_origins = {StringMatch::present()};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].cors.allow_origins[0]");

  route.cors->allow_origins = {};
  route.cors->allow_methods = {"GET", "PO ST"};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].cors.allow_methods[1]");

  route.cors->allow_methods = {};
  route.cors->max_age = std::chrono::seconds{-1};
  CHECK(compile_error(route).field == "virtual_hosts[0].routes[1].cors.max_age");
}

// --- redirect -------------------------------------------------------------------

TEST_CASE("redirect: uri replaces the path and keeps the query, authority the host") {
  Redirect r;
  r.uri = "/v1/bookRatings";
  CHECK(location(r, request("/v1/getProductRatings")) == "http://example.com/v1/bookRatings");
  CHECK(location(r, request("/v1/getProductRatings?a=1&b=2")) ==
        "http://example.com/v1/bookRatings?a=1&b=2");
  // A query in the new uri replaces the request's (Envoy path_redirect).
  r.uri = "/new?x=1";
  CHECK(location(r, request("/old?a=1")) == "http://example.com/new?x=1");

  Redirect keep;
  CHECK(location(keep, request("/same/path?q")) == "http://example.com/same/path?q");

  Redirect host;
  host.authority = "newratings.default.svc.cluster.local";
  CHECK(location(host, request("/p?q=1", "ratings:9080")) ==
        "http://newratings.default.svc.cluster.local/p?q=1");
  // Without a new authority the request's host and port are kept.
  CHECK(location(keep, request("/p", "ratings:9080")) == "http://ratings:9080/p");
}

TEST_CASE("redirect: a port after an IPv6 host keeps the address in brackets") {
  Redirect port;
  port.port = 9000;
  CHECK(location(port, request("/a", "[::1]:8080")) == "http://[::1]:9000/a");
  CHECK(location(port, request("/a", "[::1]")) == "http://[::1]:9000/a");
  // A bare IPv6 Host (no brackets, so no port in it) gets them with the port.
  CHECK(location(port, request("/a", "::1")) == "http://[::1]:9000/a");
  Redirect keep;
  CHECK(location(keep, request("/a", "[::1]:8080")) == "http://[::1]:8080/a");
}

TEST_CASE("redirect: scheme, port and derive_port") {
  Redirect https;
  https.scheme = "https";
  // Switching scheme drops the old scheme's explicit default port only.
  CHECK(location(https, request("/a", "a.com:80")) == "https://a.com/a");
  CHECK(location(https, request("/a", "a.com")) == "https://a.com/a");
  CHECK(location(https, request("/a", "a.com:8080")) == "https://a.com:8080/a");
  Redirect http;
  http.scheme = "http";
  CHECK(location(http, request("/a", "a.com:443", "https", 443)) == "http://a.com/a");
  // Same scheme: an explicit :80 stays.
  CHECK(location(http, request("/a", "a.com:80")) == "http://a.com:80/a");

  Redirect port;
  port.port = 8443;
  port.scheme = "https";
  CHECK(location(port, request("/a", "a.com:8080")) == "https://a.com:8443/a");
  port.authority = "b.com";
  CHECK(location(port, request("/a", "a.com:8080")) == "https://b.com:8443/a");

  Redirect from_request;
  from_request.derive_port = Redirect::DerivePort::from_request_port;
  from_request.authority = "b.com";
  CHECK(location(from_request, request("/a", "a.com", "http", 31380)) == "http://b.com:31380/a");
  CHECK(location(from_request, request("/a", "a.com:1", "http", 8080)) == "http://b.com:8080/a");
  from_request.authority.clear();
  CHECK(location(from_request, request("/a", "a.com:1", "http", 8080)) == "http://a.com:8080/a");

  Redirect from_default;
  from_default.derive_port = Redirect::DerivePort::from_protocol_default;
  from_default.scheme = "https";
  CHECK(location(from_default, request("/a?b", "a.com:8080")) == "https://a.com/a?b");
  CHECK(location(from_default, request("/a", "[::1]:8080")) == "https://[::1]/a");

  Redirect v6;
  v6.port = 9000;
  CHECK(location(v6, request("/", "[2001:db8::1]:80")) == "http://[2001:db8::1]:9000/");
}

// --- rewrite --------------------------------------------------------------------

TEST_CASE("rewrite: uri replaces the matched prefix, or the whole path for exact and regex") {
  Matcher prefix;
  prefix.path_prefix("/reviews/");
  Rewrite rw{"/", std::nullopt, ""};
  CHECK(rewritten(rw, &prefix, "/reviews/1?x=y") == "/1?x=y");
  rw.uri = "/api/v2/";
  CHECK(rewritten(rw, &prefix, "/reviews/a/b") == "/api/v2/a/b");

  // Prefix matching is not segment-aware; neither is the replacement.
  Matcher short_prefix;
  short_prefix.path_prefix("/rev");
  rw.uri = "/new";
  CHECK(rewritten(rw, &short_prefix, "/reviews") == "/newiews");

  // ignore_uri_case: the matched prefix is cut by length.
  Matcher icase;
  icase.path_prefix("/api");
  icase.ignore_uri_case = true;
  CHECK(rewritten(rw, &icase, "/API/x") == "/new/x");

  Matcher exact;
  exact.path_exact("/login");
  rw.uri = "/auth/login";
  CHECK(rewritten(rw, &exact, "/login?next=/") == "/auth/login?next=/");

  Matcher regex;
  regex.path_regex("/items/[0-9]+");
  rw.uri = "/item";
  CHECK(rewritten(rw, &regex, "/items/42?v=1") == "/item?v=1");

  // No uri condition: Istio's implied prefix is "/".
  Matcher headers_only;
  headers_only.header("x-a", StringMatch::present());
  rw.uri = "/v1/";
  CHECK(rewritten(rw, &headers_only, "/foo") == "/v1/foo");
  CHECK(rewritten(rw, nullptr, "/foo?q") == "/v1/foo?q");

  // An empty uri is no rewrite.
  rw.uri = "";
  CHECK(rewritten(rw, &prefix, "/reviews/1") == "/reviews/1");
}

TEST_CASE("rewrite: uri_regex replaces every match, with captures, and keeps the query") {
  using P = std::pair<std::string, std::string>;
  Rewrite rw{std::nullopt, P{"^/service/([^/]+)(/.*)$", "\\2/instance/\\1"}, ""};
  CHECK(rewritten(rw, nullptr, "/service/foo/v1/api?x=1") == "/v1/api/instance/foo?x=1");

  rw.uri_regex = P{"one", "two"};
  CHECK(rewritten(rw, nullptr, "/xxx/one/yyy/one/zzz") == "/xxx/two/yyy/two/zzz");

  rw.uri_regex = P{"^(.*?)one(.*)$", "\\1two\\2"};
  CHECK(rewritten(rw, nullptr, "/xxx/one/yyy/one/zzz") == "/xxx/two/yyy/one/zzz");

  rw.uri_regex = P{"(?i)/xxx/", "/yyy/"};
  CHECK(rewritten(rw, nullptr, "/aaa/XxX/bbb") == "/aaa/yyy/bbb");

  // The query is not part of the subject.
  rw.uri_regex = P{"a", "b"};
  CHECK(rewritten(rw, nullptr, "/a?a=a") == "/b?a=a");

  // No match: unchanged.
  rw.uri_regex = P{"^/nomatch$", "/x"};
  CHECK(rewritten(rw, nullptr, "/other") == "/other");

  // A result without the leading '/' still makes an origin-form target.
  rw.uri_regex = P{"^/(.*)$", "\\1"};
  CHECK(rewritten(rw, nullptr, "/foo/bar?q") == "/foo/bar?q");
  rw.uri_regex = P{"^/api(.*)$", "\\1"};
  CHECK(rewritten(rw, nullptr, "/api") == "/");
}

TEST_CASE("rewrite: original path header, and authority") {
  Matcher prefix;
  prefix.path_prefix("/a");
  RequestHead out;
  rewritten(Rewrite{"/b", std::nullopt, ""}, &prefix, "/a/x?q=1", &out);
  CHECK(out.target == "/b/x?q=1");
  CHECK(header(out.headers, "x-envoy-original-path") == "/a/x?q=1");
  CHECK(out.authority == "example.com");

  rewritten(Rewrite{std::nullopt, std::nullopt, "internal.svc:8080"}, &prefix, "/a/x", &out);
  CHECK(out.target == "/a/x");
  CHECK(out.authority == "internal.svc:8080");
  CHECK(header(out.headers, "host") == "internal.svc:8080");
  CHECK(out.headers.count("host") == 1);
  CHECK_FALSE(out.headers.contains("x-envoy-original-path"));

  // A route without rewrite leaves the request alone.
  Route plain = forward_route();  // outlives the policy that points at it
  auto p = compile_ok(plain);
  RequestHead req = request("/a?b");
  policy::apply_rewrite(p, &prefix, req);
  CHECK(req.target == "/a?b");
  CHECK(req.headers.size() == 1);
}

// --- header operations -------------------------------------------------------------

TEST_CASE("headers: remove, then set, then add") {
  Headers h;
  h.add("X-Keep", "1");
  h.add("x-gone", "a");
  h.add("X-Gone", "b");
  h.add("x-multi", "1");
  h.add("x-multi", "2");
  HeaderOperations ops;
  ops.remove = {"x-gone", "x-absent"};
  ops.set = {{"x-multi", "only"}, {"x-new", "n"}, {"x-gone", "back"}};
  ops.add = {{"x-multi", "appended"}, {"x-keep", "2"}};
  policy::apply_headers(ops, h);

  std::vector<std::pair<std::string, std::string>> expected = {
      {"X-Keep", "1"},    {"x-multi", "only"},     {"x-new", "n"},
      {"x-gone", "back"}, {"x-multi", "appended"}, {"x-keep", "2"}};
  CHECK(h.entries() == expected);

  // Remove runs first, so a removed-and-added header survives.
  Headers h2;
  h2.add("x-a", "old");
  HeaderOperations ops2;
  ops2.remove = {"x-a"};
  ops2.add = {{"x-a", "new"}};
  policy::apply_headers(ops2, h2);
  CHECK(h2.count("x-a") == 1);
  CHECK(header(h2, "x-a") == "new");
}

TEST_CASE("headers: Host on a request updates the authority") {
  RequestHead req = request("/");
  HeaderOperations ops;
  ops.set = {{"Host", "b.com"}, {"x-a", "1"}};
  policy::apply_headers(ops, req);
  CHECK(req.authority == "b.com");
  CHECK(header(req.headers, "host") == "b.com");
  CHECK(header(req.headers, "x-a") == "1");

  HeaderOperations add_authority;
  add_authority.add = {{":authority", "c.com"}};
  policy::apply_headers(add_authority, req);
  CHECK(req.authority == "c.com");
  CHECK(req.headers.count("host") == 1);
  CHECK(header(req.headers, "host") == "c.com");
  CHECK_FALSE(req.headers.contains(":authority"));
}

// --- CORS -------------------------------------------------------------------------

TEST_CASE("cors: preflight from an allowed origin is answered at the gateway") {
  CorsPolicy c;
  c.allow_origins = {StringMatch::exact("https://a.com"), StringMatch::prefix("https://dev."),
                     StringMatch::regex("https://[a-z]+\\.example\\.org")};
  c.allow_methods = {"GET", "POST"};
  c.allow_headers = {"x-token", "content-type"};
  c.expose_headers = {"x-trace"};
  c.max_age = std::chrono::seconds{86400};
  c.allow_credentials = true;
  auto cors = cors_of(c);

  for (std::string origin : {"https://a.com", "https://dev.b.com", "https://shop.example.org"}) {
    auto d = policy::evaluate_cors(
        cors, cors_request("OPTIONS", origin, {{"access-control-request-method", "POST"}}));
    REQUIRE_MESSAGE(d.preflight, origin);
    CHECK(d.preflight->status == 200);
    CHECK(d.preflight->body.empty());
    const Headers& h = d.preflight->headers;
    CHECK(header(h, "access-control-allow-origin") == origin);
    CHECK(header(h, "access-control-allow-methods") == "GET,POST");
    CHECK(header(h, "access-control-allow-headers") == "x-token,content-type");
    CHECK(header(h, "access-control-max-age") == "86400");
    CHECK(header(h, "access-control-allow-credentials") == "true");
    CHECK_FALSE(h.contains("access-control-expose-headers"));
    CHECK(d.response_headers.empty());
  }
  // Regex is a full match; prefix is case-sensitive.
  CHECK(policy::evaluate_cors(cors, cors_request("OPTIONS", "https://x.example.org.evil",
                                                 {{"access-control-request-method", "GET"}}))
            .preflight.has_value() == false);
  CHECK_FALSE(cors.origin_allowed("https://DEV.b.com"));
}

TEST_CASE("cors: actual requests from an allowed origin get response headers") {
  CorsPolicy c;
  c.allow_origins = {StringMatch::exact("https://a.com")};
  c.expose_headers = {"x-trace", "x-id"};
  c.allow_credentials = true;
  auto cors = cors_of(c);

  auto d = policy::evaluate_cors(cors, cors_request("GET", "https://a.com"));
  CHECK_FALSE(d.preflight);
  CHECK(header(d.response_headers, "access-control-allow-origin") == "https://a.com");
  CHECK(header(d.response_headers, "access-control-allow-credentials") == "true");
  CHECK(header(d.response_headers, "access-control-expose-headers") == "x-trace,x-id");
  CHECK(d.response_headers.size() == 3);

  // OPTIONS without Access-Control-Request-Method is an ordinary request.
  d = policy::evaluate_cors(cors, cors_request("OPTIONS", "https://a.com"));
  CHECK_FALSE(d.preflight);
  CHECK(header(d.response_headers, "access-control-allow-origin") == "https://a.com");

  // Other origins, or no Origin at all: nothing.
  CHECK(policy::evaluate_cors(cors, cors_request("GET", "https://b.com")).response_headers.empty());
  CHECK(policy::evaluate_cors(cors, cors_request("GET", "")).response_headers.empty());

  // allow_credentials false or unset: no credentials header.
  c.allow_credentials = false;
  c.expose_headers.clear();
  auto plain = cors_of(c);
  d = policy::evaluate_cors(plain, cors_request("POST", "https://a.com"));
  CHECK(d.response_headers.size() == 1);
  CHECK(header(d.response_headers, "access-control-allow-origin") == "https://a.com");
}

TEST_CASE("cors: unmatched preflights are forwarded, or answered without allow-origin") {
  CorsPolicy c;
  c.allow_origins = {StringMatch::exact("https://a.com")};
  c.allow_methods = {"GET"};
  c.max_age = std::chrono::seconds{60};
  auto forward = cors_of(c);
  RequestHead preflight =
      cors_request("OPTIONS", "https://evil.com", {{"access-control-request-method", "GET"}});
  auto d = policy::evaluate_cors(forward, preflight);
  CHECK_FALSE(d.preflight);
  CHECK(d.response_headers.empty());

  c.forward_unmatched_preflights = false;  // Istio unmatchedPreflights: IGNORE
  auto ignore = cors_of(c);
  d = policy::evaluate_cors(ignore, preflight);
  REQUIRE(d.preflight);
  CHECK(d.preflight->status == 200);
  CHECK_FALSE(d.preflight->headers.contains("access-control-allow-origin"));
  CHECK(header(d.preflight->headers, "access-control-allow-methods") == "GET");
  CHECK(d.response_headers.empty());
}

TEST_CASE("cors: \"*\" origins and echoed methods and headers") {
  CorsPolicy c;
  c.allow_origins = {StringMatch::exact("*")};
  c.allow_methods = {"*"};
  c.allow_headers = {"*"};
  auto cors = cors_of(c);
  CHECK(cors.origin_allowed("https://anything.test"));
  auto d =
      policy::evaluate_cors(cors, cors_request("OPTIONS", "https://x.test",
                                               {{"access-control-request-method", "PATCH"},
                                                {"access-control-request-headers", "x-a, x-b"}}));
  REQUIRE(d.preflight);
  const Headers& h = d.preflight->headers;
  CHECK(header(h, "access-control-allow-origin") == "https://x.test");  // echoed, not "*"
  CHECK(header(h, "access-control-allow-methods") == "PATCH");
  CHECK(header(h, "access-control-allow-headers") == "x-a, x-b");
  CHECK_FALSE(h.contains("access-control-allow-credentials"));
  CHECK_FALSE(h.contains("access-control-max-age"));

  // No allow_origins: nothing is allowed.
  auto none = cors_of(CorsPolicy{});
  CHECK_FALSE(none.origin_allowed("https://a.com"));
  CHECK_FALSE(policy::evaluate_cors(none, cors_request("OPTIONS", "https://a.com",
                                                       {{"access-control-request-method", "GET"}}))
                  .preflight);
}

// --- percentages and faults -------------------------------------------------------

// The one statistical check of the percentage draw: over large samples (fixed
// seeds), each share is within five standard deviations of its percentage.
// Every other percentage test asserts exact counts for its seed.
TEST_CASE("draw: exact at 0 and 100, proportional in between") {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    REQUIRE_FALSE(policy::draw(0, rng));
    REQUIRE(policy::draw(100, rng));
  }
  CHECK_FALSE(policy::draw(std::nan(""), rng));
  CHECK_FALSE(policy::draw(-5, rng));

  constexpr int n = 200000;
  for (double pct : {0.5, 10.0, 50.0, 90.0, 99.9}) {
    double p = pct / 100;
    double got = share(pct, n, 42 + static_cast<uint64_t>(pct * 10));
    CHECK_MESSAGE(std::abs(got - p) <= tolerance(p, n), pct << "% drew " << got);
  }
  // A tiny percentage still fires (per-million grain), just rarely.
  double tiny = share(0.01, 1'000'000, 3);
  CHECK(tiny > 0);
  CHECK(tiny < 0.0003);
}

TEST_CASE("draw: the same seed gives the same sequence") {
  std::mt19937_64 a(123), b(123);
  for (int i = 0; i < 1000; ++i) REQUIRE(policy::draw(37.5, a) == policy::draw(37.5, b));
}

TEST_CASE("fault: abort and delay at 100% and 0%") {
  std::mt19937_64 rng(1);
  Fault f{FaultDelay{2000ms, 100}, FaultAbort{500, std::nullopt, 100}};
  auto d = policy::decide_fault(f, rng);
  CHECK(d.delay == 2000ms);
  REQUIRE(d.abort);
  CHECK(d.abort->status == 500);
  CHECK(d.abort->body == "fault filter abort");
  CHECK(header(d.abort->headers, "content-type") == "text/plain");

  Fault never{FaultDelay{2000ms, 0}, FaultAbort{500, std::nullopt, 0}};
  for (int i = 0; i < 1000; ++i) {
    auto n = policy::decide_fault(never, rng);
    REQUIRE(n.delay == 0ms);
    REQUIRE_FALSE(n.abort);
  }

  Fault delay_only{FaultDelay{7ms, 100}, std::nullopt};
  d = policy::decide_fault(delay_only, rng);
  CHECK(d.delay == 7ms);
  CHECK_FALSE(d.abort);
}

TEST_CASE("fault: gRPC abort is a 200 with grpc-status") {
  std::mt19937_64 rng(1);
  Fault f{std::nullopt, FaultAbort{0, 14u, 100}};
  auto d = policy::decide_fault(f, rng);
  REQUIRE(d.abort);
  CHECK(d.abort->status == 200);
  CHECK(header(d.abort->headers, "content-type") == "application/grpc");
  CHECK(header(d.abort->headers, "grpc-status") == "14");
  CHECK(header(d.abort->headers, "grpc-message") == "fault filter abort");
  CHECK(d.abort->body.empty());
}

// Exact counts for seed 2024 (mt19937_64 and integer draws give the same
// sequence with any standard library). Near 30 %, 20 % and 6 % of 10 000:
// delay and abort are drawn independently.
TEST_CASE("fault: percentages of a seeded run, delay and abort drawn independently") {
  std::mt19937_64 rng(2024);
  Fault f{FaultDelay{1ms, 30}, FaultAbort{503, std::nullopt, 20}};
  constexpr int n = 10000;
  int delays = 0, aborts = 0, both = 0;
  for (int i = 0; i < n; ++i) {
    auto d = policy::decide_fault(f, rng);
    bool delayed = d.delay == 1ms;
    delays += delayed;
    aborts += d.abort.has_value();
    both += delayed && d.abort.has_value();
  }
  CHECK(delays == 3063);
  CHECK(aborts == 2028);
  CHECK(both == 610);
}

// --- retries ------------------------------------------------------------------------

TEST_CASE("retry_on: parsing tokens and bare status codes") {
  auto on =
      policy::parse_retry_on("5xx, gateway-error,reset ,connect-failure,retriable-4xx,429,503");
  REQUIRE(on.ok());
  CHECK(on->status_5xx);
  CHECK(on->gateway_error);
  CHECK(on->reset);
  CHECK(on->connect_failure);
  CHECK(on->retriable_4xx);
  CHECK_FALSE(on->refused_stream);
  CHECK(on->retriable_status_codes);  // implied by the numbers, as Istio does
  CHECK(on->status_codes == std::vector<uint16_t>{429, 503});

  on = policy::parse_retry_on(
      "refused-stream,retriable-status-codes,retriable-headers,envoy-ratelimited,"
      "reset-before-request,cancelled,deadline-exceeded,internal,resource-exhausted,unavailable");
  REQUIRE(on.ok());
  CHECK(on->refused_stream);
  CHECK(on->retriable_status_codes);
  CHECK(on->status_codes.empty());
  CHECK(on->reset_before_request);
  CHECK(on->grpc_cancelled);
  CHECK(on->grpc_deadline_exceeded);
  CHECK(on->grpc_internal);
  CHECK(on->grpc_resource_exhausted);
  CHECK(on->grpc_unavailable);

  // Empty means Istio's default.
  on = policy::parse_retry_on("");
  REQUIRE(on.ok());
  CHECK(on->connect_failure);
  CHECK(on->status_codes == std::vector<uint16_t>{503});

  on = policy::parse_retry_on("5XX");
  REQUIRE_FALSE(on.ok());
  CHECK(on.error().message == "unknown retry condition \"5XX\"");
}

TEST_CASE("retry: retriable() follows Envoy's conditions") {
  using O = policy::AttemptOutcome;
  struct Row {
    const char* retry_on;
    O outcome;
    uint16_t status;
    bool expected;
  };
  const Row rows[] = {
      // 5xx: any 5xx and every no-response outcome.
      {"5xx", O::response, 500, true},
      {"5xx", O::response, 503, true},
      {"5xx", O::response, 599, true},
      {"5xx", O::response, 499, false},
      {"5xx", O::response, 200, false},
      {"5xx", O::connect_failure, 0, true},
      {"5xx", O::reset, 0, true},
      {"5xx", O::timeout, 0, true},
      // gateway-error: 502-504 and no-response outcomes.
      {"gateway-error", O::response, 502, true},
      {"gateway-error", O::response, 503, true},
      {"gateway-error", O::response, 504, true},
      {"gateway-error", O::response, 500, false},
      {"gateway-error", O::response, 501, false},
      {"gateway-error", O::connect_failure, 0, true},
      {"gateway-error", O::reset, 0, true},
      {"gateway-error", O::timeout, 0, true},
      // reset: no response at all, any status is final.
      {"reset", O::reset, 0, true},
      {"reset", O::connect_failure, 0, true},
      {"reset", O::timeout, 0, true},
      {"reset", O::response, 503, false},
      // connect-failure: only that.
      {"connect-failure", O::connect_failure, 0, true},
      {"connect-failure", O::reset, 0, false},
      {"connect-failure", O::timeout, 0, false},
      {"connect-failure", O::response, 503, false},
      {"reset-before-request", O::connect_failure, 0, true},
      {"reset-before-request", O::reset, 0, false},
      // retriable-4xx: 409 only.
      {"retriable-4xx", O::response, 409, true},
      {"retriable-4xx", O::response, 404, false},
      {"retriable-4xx", O::response, 429, false},
      // status codes.
      {"429,503", O::response, 429, true},
      {"429,503", O::response, 503, true},
      {"429,503", O::response, 500, false},
      {"429,503", O::reset, 0, false},
      {"retriable-status-codes", O::response, 503, false},
      // refused-stream never matches on HTTP/1 outcomes.
      {"refused-stream", O::reset, 0, false},
      {"refused-stream", O::connect_failure, 0, false},
      // gRPC conditions need a grpc-status; none here.
      {"unavailable,cancelled", O::response, 503, false},
      {"unavailable,cancelled", O::response, 200, false},
      // Istio's default policy.
      {"", O::connect_failure, 0, true},
      {"", O::response, 503, true},
      {"", O::response, 502, false},
      {"", O::reset, 0, false},
      {"", O::timeout, 0, false},
  };
  for (const auto& row : rows) {
    auto retry = retry_for(row.retry_on);
    CHECK_MESSAGE(retry.retriable(row.outcome, row.status) == row.expected,
                  "retry_on=\"" << row.retry_on << "\" outcome=" << static_cast<int>(row.outcome)
                                << " status=" << row.status);
  }
}

TEST_CASE("retry: gRPC conditions match the response's grpc-status") {
  using O = policy::AttemptOutcome;
  auto retry = retry_for("unavailable,cancelled");
  CHECK(retry.retriable(O::response, 200, 14u));
  CHECK(retry.retriable(O::response, 200, 1u));
  CHECK_FALSE(retry.retriable(O::response, 200, 4u));
  CHECK_FALSE(retry.retriable(O::response, 200, 0u));
  auto all = retry_for("deadline-exceeded,internal,resource-exhausted");
  CHECK(all.retriable(O::response, 200, 4u));
  CHECK(all.retriable(O::response, 200, 13u));
  CHECK(all.retriable(O::response, 200, 8u));
  CHECK_FALSE(all.retriable(O::response, 200, 14u));
}

TEST_CASE("retry: backoff is jittered within Envoy's bounds") {
  auto retry = retry_for("5xx");
  REQUIRE(retry.backoff_base == 25ms);
  std::mt19937_64 rng(99);
  // Upper bounds (exclusive): (2^N - 1) * 25 ms, capped at 250 ms.
  const std::pair<uint32_t, int64_t> bounds[] = {{1, 25},  {2, 75},   {3, 175},
                                                 {4, 250}, {10, 250}, {1000, 250}};
  for (auto [n, upper] : bounds) {
    int64_t lo = INT64_MAX, hi = -1;
    for (int i = 0; i < 5000; ++i) {
      int64_t ms = retry.backoff(n, rng).count();
      lo = std::min(lo, ms);
      hi = std::max(hi, ms);
    }
    CHECK_MESSAGE(lo >= 0, "retry " << n);
    CHECK_MESSAGE(hi < upper, "retry " << n << " max " << hi);
    // The whole range is used: the top tenth is reached and so is the bottom.
    CHECK_MESSAGE(hi >= upper * 9 / 10, "retry " << n << " max " << hi);
    CHECK_MESSAGE(lo <= upper / 10, "retry " << n << " min " << lo);
  }
  // Retry 0 is treated as the first retry.
  for (int i = 0; i < 1000; ++i) REQUIRE(retry.backoff(0, rng) < 25ms);

  policy::CompiledRetry none;
  none.backoff_base = 0ms;
  CHECK(none.backoff(3, rng) == 0ms);

  // Reproducible from the seed.
  std::mt19937_64 a(5), b(5);
  for (uint32_t n = 1; n < 6; ++n) CHECK(retry.backoff(n, a) == retry.backoff(n, b));
}

// --- mirrors --------------------------------------------------------------------

TEST_CASE("shadow_authority appends -shadow to the host part") {
  CHECK(policy::shadow_authority("reviews") == "reviews-shadow");
  CHECK(policy::shadow_authority("reviews:9080") == "reviews-shadow:9080");
  CHECK(policy::shadow_authority("a.b.svc.cluster.local") == "a.b.svc.cluster.local-shadow");
  CHECK(policy::shadow_authority("[::1]:8080") == "[::1]-shadow:8080");
  CHECK(policy::shadow_authority("[2001:db8::1]") == "[2001:db8::1]-shadow");
  CHECK(policy::shadow_authority("") == "-shadow");
}

}  // namespace test_policy
