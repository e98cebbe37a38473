// Edge invariant: configuration that reaches the wire is checked at load for
// CR, LF and NUL and for its grammar, through the C++ API (compile()), with
// the object and field named. Also the shared checks of lib/http/wire_check.

#include <doctest/doctest.h>

#include <string>
#include <utility>

#include "http/wire_check.hpp"
#include "policy/policy.hpp"
#include "sluice/gateway.hpp"

namespace test_config_wire {

using namespace sluice;
using namespace std::string_literals;

namespace {

// One listener, one router "main" with one virtual host, upstream "backend".
GatewayConfig base_config(Route route) {
  GatewayConfig c;
  c.upstreams.push_back({.name = "backend", .endpoints = {{.address = "127.0.0.1", .port = 9}}});
  c.routers.push_back(
      {.name = "main", .virtual_hosts = {{.name = "vh", .domains = {"*"}, .routes = {route}}}});
  c.listeners.push_back({.name = "http", .address = "127.0.0.1", .port = 0, .router = "main"});
  return c;
}

Route forward() {
  Route r;
  r.name = "r";
  r.destinations.push_back({.upstream = "backend"});
  return r;
}

std::string error_of(GatewayConfig c) {
  auto s = compile(std::move(c));
  REQUIRE_MESSAGE(!s.ok(), "expected the configuration to be rejected");
  return s.error().to_string();
}

std::string route_error(Route r) {
  return error_of(base_config(std::move(r)));
}

void compiles(GatewayConfig c) {
  auto s = compile(std::move(c));
  CHECK_MESSAGE(s.ok(), (s.ok() ? std::string() : s.error().to_string()));
}

const std::string at = "Router main: virtual_hosts[0].routes[0].";

}  // namespace

TEST_CASE("wire check: tokens, header names and values") {
  CHECK(http::is_token("x-request-id"));
  CHECK_FALSE(http::is_token(""));
  CHECK_FALSE(http::is_token("a b"));
  CHECK_FALSE(http::is_token("a:b"));
  CHECK(http::check_header_name("x-a").empty());
  CHECK(http::check_header_name("") == "header name must not be empty");
  CHECK(http::check_header_name("x\r\ny") == "header name \"x\\r\\ny\" contains CR, LF or NUL");
  CHECK(http::check_header_name("a b") == "header name \"a b\" is not a valid token (RFC 9110)");
  CHECK(http::check_header_value("v\tw \x80").empty());  // HTAB and obs-text are fine
  CHECK(http::check_header_value("a\r\nX-Injected: 1") == "value contains CR, LF or NUL");
  CHECK(http::check_header_value("a\0b"s) == "value contains CR, LF or NUL");
  CHECK(http::check_header_value("a\x01") == "value contains control character 0x01");
  CHECK(http::check_header_value("a\x7f") == "value contains control character 0x7f");
  CHECK(http::quote("a\"\\\r\n\t\0\x01\xff"s) == R"("a\"\\\r\n\t\0\x01\xff")");
}

TEST_CASE("wire check: paths, templates, authorities, schemes, cookies") {
  CHECK(http::check_path("/a/b?c=d%20e").empty());
  CHECK(http::check_path("/new\r\nX-Injected: 1") == "contains CR, LF or NUL");
  CHECK(http::check_path("/a b") == "contains a space (percent-encode it as %20)");
  CHECK(http::check_path("/a\x1b") == "contains control character 0x1b");
  CHECK(http::check_path("/caf\xc3\xa9") == "contains non-ASCII byte 0xc3 (percent-encode it)");
  CHECK(http::check_path("/a#f") == "contains '#' (a fragment is never sent upstream)");
  CHECK(http::check_path("/a#f", true).empty());
  CHECK(http::check_path("a/b") == "\"a/b\" must be a path starting with '/'");
  CHECK(http::check_path("") == "\"\" must be a path starting with '/'");

  // RE2 rewrite templates: captures may supply the leading '/'.
  CHECK(http::check_path_template("\\2/instance/\\1").empty());
  CHECK(http::check_path_template("/a\\\\b").empty());
  CHECK(http::check_path_template("/new\r\nX-Injected: 1") == "contains CR, LF or NUL");
  CHECK(http::check_path_template("/\\1 x") == "contains a space (percent-encode it as %20)");

  for (const char* ok : {"a.com", "a.com:8080", "127.0.0.1:80", "[::1]", "[::1]:443", "*.a.com"})
    CHECK_MESSAGE(http::check_authority(ok).empty(), ok);
  CHECK(http::check_authority("a.com/x") ==
        "\"a.com/x\" contains '/' (an authority is host[:port] only)");
  CHECK(http::check_authority("u@a.com") ==
        "\"u@a.com\" contains '@' (an authority is host[:port] only)");
  CHECK(http::check_authority("bad host") == "\"bad host\" contains whitespace");
  CHECK(http::check_authority("a\r\nb") == "contains CR, LF or NUL");
  CHECK(http::check_authority("a.com:") == "\"a.com:\" has an empty port");
  CHECK(http::check_authority("a.com:99999") == "\"a.com:99999\" has an invalid port");
  CHECK(http::check_authority("::1") == "\"::1\": an IPv6 address needs brackets");
  CHECK(http::check_authority("") == "must not be empty");

  CHECK(http::check_scheme("https").empty());
  CHECK(http::check_scheme("coap+tcp").empty());
  CHECK(http::check_scheme("1http") ==
        "invalid scheme \"1http\" (ALPHA *( ALPHA / DIGIT / \"+\" / \"-\" / \".\" ))");
  CHECK_FALSE(http::check_scheme("ht\r\ntp").empty());

  CHECK(http::check_cookie_name("session").empty());
  CHECK(http::check_cookie_name("a=b") == "cookie name \"a=b\" is not a valid token (RFC 6265)");
  CHECK(http::check_cookie_name("a\nb") == "cookie name \"a\\nb\" contains CR, LF or NUL");
  CHECK(http::check_cookie_path("/app").empty());
  CHECK(http::check_cookie_path("/; Domain=evil.com") ==
        "\"/; Domain=evil.com\" contains ';', which would end the attribute");
  CHECK(http::check_cookie_path("/\r\n") == "contains CR, LF or NUL");
}

TEST_CASE("compile: route header operations are checked for the wire") {
  Route r = forward();
  r.request_headers.set = {{"x-a", "1\r\nX-Injected: 1"}};
  CHECK(route_error(r) == at +
                              "request_headers.set[0]: header \"x-a\" value contains CR, LF or NUL "
                              "(control characters are not allowed)");

  r = forward();
  r.response_headers.add = {{"x-b", "nul\0"s}};
  CHECK(route_error(r) == at + "response_headers.add[0]: header \"x-b\" value contains CR, LF or "
                               "NUL (control characters are not allowed)");

  r = forward();
  r.request_headers.set = {{"x-a\r\nx-b", "1"}};
  CHECK(route_error(r) ==
        at + "request_headers.set[0]: header name \"x-a\\r\\nx-b\" contains CR, LF or NUL");

  r = forward();
  r.response_headers.remove = {"bad name"};
  CHECK(route_error(r) ==
        at +
            "response_headers.remove[0]: header name \"bad name\" is not a valid token (RFC 9110)");

  r = forward();
  r.request_headers.set = {{"host", "a.com\r\nx: y"}};
  CHECK(route_error(r) == at + "request_headers.set[0]: header \"host\" value contains CR, LF or "
                               "NUL (control characters are not allowed)");
  r = forward();
  r.request_headers.set = {{"host", "a.com/x"}};
  CHECK(route_error(r) == at + "request_headers.set[0]: invalid authority: \"a.com/x\" contains "
                               "'/' (an authority is host[:port] only)");

  // Per-destination operations too.
  r = forward();
  r.destinations[0].request_headers.add = {{"x-c", "a\nb"}};
  CHECK(route_error(r) == at + "destinations[0].request_headers.add[0]: header \"x-c\" value "
                               "contains CR, LF or NUL (control characters are not allowed)");

  // Tabs and non-ASCII bytes are legal in a field value.
  r = forward();
  r.request_headers.set = {{"x-a", "a\tb \xc3\xa9"}};
  compiles(base_config(r));
}

TEST_CASE("compile: redirect fields are checked for the wire") {
  Route r;
  r.redirect.emplace();
  r.redirect->uri = "/a b";
  CHECK(route_error(r) == at + "redirect.uri: contains a space (percent-encode it as %20)");
  r.redirect->uri = "/x\r\nSet-Cookie: a=b";
  CHECK(route_error(r) == at + "redirect.uri: contains CR, LF or NUL");
  r.redirect->uri = "v1/x";
  CHECK(route_error(r) == at + "redirect.uri: \"v1/x\" must be a path starting with '/'");
  r.redirect->uri = "/ok#frag";  // a Location may carry a fragment
  compiles(base_config(r));

  r.redirect->uri = "";
  r.redirect->authority = "a.com\r\n";
  CHECK(route_error(r) == at + "redirect.authority: invalid authority: contains CR, LF or NUL");
  r.redirect->authority = "evil.com@a.com";
  CHECK(route_error(r) == at + "redirect.authority: invalid authority: \"evil.com@a.com\" contains "
                               "'@' (an authority is host[:port] only)");
  r.redirect->authority = "a.com:8443";
  compiles(base_config(r));

  r.redirect->scheme = "ht\ntp";
  CHECK(route_error(r) == at + "redirect.scheme: invalid scheme \"ht\\ntp\" (ALPHA *( ALPHA / "
                               "DIGIT / \"+\" / \"-\" / \".\" ))");
  r.redirect->scheme = "https";
  compiles(base_config(r));
}

TEST_CASE("compile: rewrite fields are checked for the wire") {
  Route r = forward();
  // The issue's example: served, it sent `GET /new\r\nX-Injected: 1` upstream.
  r.rewrite = Rewrite{
      .uri_regex = std::pair<std::string, std::string>{"^/old(.*)$", "/new\r\nX-Injected: 1"}};
  CHECK(route_error(r) ==
        at + "rewrite.uri_regex: rewrite \"/new\\r\\nX-Injected: 1\": contains CR, LF or NUL");
  r.rewrite = Rewrite{.uri_regex = std::pair<std::string, std::string>{"^/old(.*)$", "/n w\\1"}};
  CHECK(
      route_error(r) ==
      at + "rewrite.uri_regex: rewrite \"/n w\\\\1\": contains a space (percent-encode it as %20)");
  // Captures may supply the leading '/', as in Istio's own example.
  r.rewrite = Rewrite{.uri_regex = std::pair<std::string, std::string>{"^/service/([^/]+)(/.*)$",
                                                                       "\\2/instance/\\1"}};
  compiles(base_config(r));

  r.rewrite = Rewrite{.uri = "/v2\n"};
  CHECK(route_error(r) == at + "rewrite.uri: contains CR, LF or NUL");
  r.rewrite = Rewrite{.uri = "/v2 x"};
  CHECK(route_error(r) == at + "rewrite.uri: contains a space (percent-encode it as %20)");
  r.rewrite = Rewrite{.uri = "/v2#x"};
  CHECK(route_error(r) == at + "rewrite.uri: contains '#' (a fragment is never sent upstream)");

  r.rewrite = Rewrite{.authority = "b.com\0"s};
  CHECK(route_error(r) == at + "rewrite.authority: invalid authority: contains CR, LF or NUL");
  r.rewrite = Rewrite{.authority = "b.com:8080"};
  compiles(base_config(r));
}

TEST_CASE("compile: CORS lists are tokens and the direct response status is bounded") {
  Route r = forward();
  r.cors = CorsPolicy{};
  r.cors->allow_headers = {"x-a", "x-b\r\nx-c"};
  CHECK(route_error(r) == at + "cors.allow_headers[1]: \"x-b\\r\\nx-c\" is not a valid token");
  r.cors->allow_headers = {"*"};
  r.cors->expose_headers = {"a b"};
  CHECK(route_error(r) == at + "cors.expose_headers[0]: \"a b\" is not a valid token");

  Route direct;
  direct.direct_response = DirectResponse{.status = 99};
  CHECK(route_error(direct) == at + "direct_response.status: must be in 200..599, got 99");
  // The body is length-delimited: any bytes may go in it.
  direct.direct_response = DirectResponse{.status = 200, .body = "a\r\n\0b"s};
  compiles(base_config(direct));
  // Its headers are the route's response header operations, checked above.
  direct.response_headers.set = {{"x-a", "b\rc"}};
  CHECK(route_error(direct) == at + "response_headers.set[0]: header \"x-a\" value contains CR, "
                                    "LF or NUL (control characters are not allowed)");
}

TEST_CASE("compile: upstream hash cookie, health check and SNI are checked for the wire") {
  auto with = [](auto edit) {
    GatewayConfig c = base_config(forward());
    edit(c.upstreams[0]);
    return c;
  };
  auto cookie = [](std::string name, std::string path) {
    return [=](UpstreamConfig& u) {
      u.load_balancer = LoadBalancer::consistent_hash;
      u.consistent_hash = ConsistentHash{
          .source = ConsistentHash::Source::cookie, .name = name, .cookie_path = path};
    };
  };
  compiles(with(cookie("session", "/app")));
  CHECK(error_of(with(cookie("a=b", ""))) ==
        "Upstream backend: consistent_hash.name: cookie name \"a=b\" is not a valid token (RFC "
        "6265)");
  CHECK(error_of(with(cookie("s\r\nSet-Cookie: x", ""))) ==
        "Upstream backend: consistent_hash.name: cookie name \"s\\r\\nSet-Cookie: x\" contains CR, "
        "LF or NUL");
  CHECK(error_of(with(cookie("s", "/; Domain=evil.com"))) ==
        "Upstream backend: consistent_hash.cookie_path: \"/; Domain=evil.com\" contains ';', which "
        "would end the attribute");
  CHECK(error_of(with(cookie("s", "/\n"))) ==
        "Upstream backend: consistent_hash.cookie_path: contains CR, LF or NUL");

  CHECK(error_of(with([](UpstreamConfig& u) {
          u.load_balancer = LoadBalancer::consistent_hash;
          u.consistent_hash = ConsistentHash{.name = "x user"};
        })) ==
        "Upstream backend: consistent_hash.name: header name \"x user\" is not a valid token (RFC "
        "9110)");

  CHECK(error_of(with([](UpstreamConfig& u) { u.health_check = HealthCheck{.path = "/h\0"s}; })) ==
        "Upstream backend: health_check.path: contains CR, LF or NUL");
  CHECK(error_of(with([](UpstreamConfig& u) {
          u.health_check = HealthCheck{.path = "/h", .host = "a\x01"};
        })) == "Upstream backend: health_check.host: \"a\\x01\" contains byte 0x01");

  CHECK(error_of(with([](UpstreamConfig& u) { u.tls = UpstreamTls{.sni = "a.com\0b"s}; })) ==
        "Upstream backend: tls.sni: contains CR, LF or NUL");
  CHECK(error_of(with([](UpstreamConfig& u) { u.tls = UpstreamTls{.sni = "a.com:443"}; })) ==
        "Upstream backend: tls.sni: \"a.com:443\" is a server name and takes no port");
}

TEST_CASE("compile: Router::compile alone applies the same checks") {
  Route r = forward();
  r.rewrite = Rewrite{.uri = "/a\r\nb"};
  auto router = Router::compile(
      {.name = "main", .virtual_hosts = {{.name = "vh", .domains = {"*"}, .routes = {r}}}});
  REQUIRE_FALSE(router.ok());
  CHECK(router.error().to_string() == at + "rewrite.uri: contains CR, LF or NUL");
}

TEST_CASE("regex rewrite at run time: captures cannot bring CR, LF or a space") {
  // The template is checked at load; captures copy bytes of the request
  // path, and the parser admits none of CR, LF, NUL or space in a target. So
  // a checked template cannot produce them; this shows the substitution
  // keeps percent-escapes as they are (it does not decode %0D%0A).
  Route r = forward();
  r.rewrite = Rewrite{.uri_regex = std::pair<std::string, std::string>{"^/old/(.*)$", "/new/\\1"}};
  auto p = policy::compile_route_policy(r, "Router main", "virtual_hosts[0].routes[0]");
  REQUIRE(p.ok());
  RequestHead req;
  req.target = "/old/a%0D%0AX-Injected:%201";
  req.authority = "a.com";
  policy::apply_rewrite(*p, nullptr, req);
  CHECK(req.target == "/new/a%0D%0AX-Injected:%201");
  CHECK(http::check_path(req.target).empty());
}

}  // namespace test_config_wire
