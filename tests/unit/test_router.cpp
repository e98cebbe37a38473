// Router: virtual host selection, first-match order, validation errors and
// explain().

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "sluice/router.hpp"

namespace test_router {

using namespace sluice;

namespace {

Route forward(std::string name, std::vector<Matcher> matches = {}) {
  Route r;
  r.name = std::move(name);
  r.matches = std::move(matches);
  r.destinations.push_back({"backend", "", 1});
  return r;
}

Matcher prefix(std::string p) {
  Matcher m;
  m.path_prefix(std::move(p));
  return m;
}

RequestHead request(std::string authority, std::string target = "/") {
  RequestHead r;
  r.authority = std::move(authority);
  r.target = std::move(target);
  return r;
}

Router compile_ok(RouterConfig cfg) {
  auto r = Router::compile(std::move(cfg));
  REQUIRE_MESSAGE(r.ok(), r.error().to_string());
  return std::move(r).value();
}

// Name of the virtual host picked for `authority`, or "" when none.
std::string host_for(const Router& router, std::string authority) {
  auto s = router.match(request(std::move(authority)));
  return s ? s->virtual_host->name : std::string();
}

VirtualHost vhost(std::string name, std::vector<std::string> domains) {
  Route route = forward(name + "-route");
  return VirtualHost{std::move(name), std::move(domains), {std::move(route)}};
}

Error compile_error(RouterConfig cfg) {
  auto r = Router::compile(std::move(cfg));
  REQUIRE_FALSE(r.ok());
  return r.error();
}

RouterConfig one_route(Route route) {
  return RouterConfig{"main", {VirtualHost{"vh", {"*"}, {std::move(route)}}}};
}

RouterConfig one_route_list(std::vector<Route> routes) {
  return RouterConfig{"main", {VirtualHost{"vh", {"*"}, std::move(routes)}}};
}

}  // namespace

TEST_CASE("router: exact domain beats wildcard beats catch-all") {
  Router router = compile_ok(RouterConfig{"main",
                                          {vhost("any", {"*"}), vhost("wild", {"*.example.com"}),
                                           vhost("exact", {"api.example.com"})}});
  CHECK(host_for(router, "api.example.com") == "exact");
  CHECK(host_for(router, "web.example.com") == "wild");
  CHECK(host_for(router, "a.b.example.com") == "wild");
  CHECK(host_for(router, "example.org") == "any");
  // "*" stands for at least one character.
  CHECK(host_for(router, "example.com") == "any");
  CHECK(host_for(router, ".example.com") == "any");
}

TEST_CASE("router: the longest wildcard suffix wins") {
  Router router =
      compile_ok(RouterConfig{"main",
                              {vhost("short", {"*.com"}), vhost("long", {"*.example.com"}),
                               vhost("dash", {"*-bar.example.com"})}});
  CHECK(host_for(router, "a.example.com") == "long");
  CHECK(host_for(router, "foo-bar.example.com") == "dash");
  CHECK(host_for(router, "foo.bar.example.com") == "long");
  CHECK(host_for(router, "other.com") == "short");
  CHECK(host_for(router, "-bar.example.com") == "long");
  CHECK(host_for(router, "other.org").empty());
}

TEST_CASE("router: host matching ignores case and the request port") {
  Router router =
      compile_ok(RouterConfig{"main",
                              {vhost("exact", {"API.Example.com"}),
                               vhost("wild", {"*.Example.org"}), vhost("v6", {"[::1]"})}});
  CHECK(host_for(router, "api.example.COM") == "exact");
  CHECK(host_for(router, "api.example.com:8080") == "exact");
  CHECK(host_for(router, "WWW.example.org:443") == "wild");
  CHECK(host_for(router, "[::1]:8080") == "v6");
  CHECK(host_for(router, "[::1]") == "v6");
}

TEST_CASE("router: a domain that names a port matches only that port") {
  Router router = compile_ok(
      RouterConfig{"main",
                   {vhost("plain", {"example.com"}), vhost("port", {"example.com:8080"}),
                    vhost("wildport", {"*.example.org:9000"}), vhost("wild", {"*.example.org"})}});
  CHECK(host_for(router, "example.com:8080") == "port");
  CHECK(host_for(router, "example.com:9090") == "plain");
  CHECK(host_for(router, "example.com") == "plain");
  CHECK(host_for(router, "a.example.org:9000") == "wildport");
  CHECK(host_for(router, "a.example.org:9001") == "wild");
  CHECK(host_for(router, "a.example.org") == "wild");

  Router only_port = compile_ok(RouterConfig{"main", {vhost("port", {"example.com:8080"})}});
  CHECK(host_for(only_port, "example.com").empty());
  CHECK(host_for(only_port, "example.com:8081").empty());

  // Only a port of digits is a port: anything else stays part of the host.
  CHECK(host_for(router, "example.com:80x").empty());
  CHECK(host_for(router, "example.com:").empty());
  Router v6 =
      compile_ok(RouterConfig{"main", {vhost("v6", {"[::1]"}), vhost("v6port", {"[::1]:80"})}});
  CHECK(host_for(v6, "[::1]:80") == "v6port");
  CHECK(host_for(v6, "[::1]:81") == "v6");
  CHECK(host_for(v6, "[::1]:").empty());
  CHECK(host_for(v6, "[::1]x").empty());
}

TEST_CASE("router: no virtual host means no selection") {
  Router router = compile_ok(RouterConfig{"main", {vhost("a", {"a.com"})}});
  CHECK_FALSE(router.match(request("b.com")).has_value());
  CHECK_FALSE(router.match(request("")).has_value());
}

TEST_CASE("router: first match wins, in rule order") {
  Matcher api_v1 = prefix("/api/v1");
  Router router = compile_ok(RouterConfig{
      "main",
      {VirtualHost{"vh",
                   {"*"},
                   {forward("v1", {api_v1}), forward("api", {prefix("/api")}),
                    forward("v1-shadowed", {prefix("/api/v1/x")}), forward("rest")}}}});
  auto pick = [&](std::string target) {
    auto s = router.match(request("h", std::move(target)));
    REQUIRE(s.has_value());
    return s->route->name;
  };
  CHECK(pick("/api/v1/x") == "v1");
  CHECK(pick("/api/v2") == "api");
  CHECK(pick("/other") == "rest");

  auto s = router.match(request("h", "/api/v2"));
  REQUIRE(s);
  CHECK(s->route_index == 1);
  CHECK(s->virtual_host_index == 0);
  CHECK(s->route == &router.config().virtual_hosts[0].routes[1]);
  CHECK(s->virtual_host == &router.config().virtual_hosts[0]);
}

TEST_CASE("router: match blocks are ORed") {
  Matcher get;
  get.method = StringMatch::exact("GET");
  get.path_exact("/a");
  Matcher header;
  header.header("x-force", StringMatch::present());
  Router router =
      compile_ok(RouterConfig{"main", {VirtualHost{"vh", {"*"}, {forward("or", {get, header})}}}});
  CHECK(router.match(request("h", "/a")));
  RequestHead post = request("h", "/a");
  post.method = "POST";
  CHECK_FALSE(router.match(post));
  post.headers.add("X-Force", "1");
  CHECK(router.match(post));
}

TEST_CASE("router: Selection::matched points at the block that selected the route") {
  Matcher header_block;
  header_block.header("x-user", StringMatch::exact("jason"));
  Matcher prefix_block = prefix("/api");
  Route two_blocks = forward("two", {header_block, prefix_block});
  Route regex_route = forward("regex", {Matcher{}.path_regex("/r/[0-9]+")});
  Route catch_all = forward("all");
  Router router =
      compile_ok(one_route_list({std::move(two_blocks), std::move(regex_route), catch_all}));
  const Route& first = router.config().virtual_hosts[0].routes[0];

  // Both blocks hold: the first one in order is reported.
  RequestHead both = request("a.com", "/api/x");
  both.headers.add("x-user", "jason");
  auto s = router.match(both);
  REQUIRE(s);
  CHECK(s->route_index == 0);
  CHECK(s->matched == &first.matches[0]);

  s = router.match(request("a.com", "/api/y"));
  REQUIRE(s);
  CHECK(s->route_index == 0);
  CHECK(s->matched == &first.matches[1]);
  CHECK(s->matched->uri->value == "/api");

  s = router.match(request("a.com", "/r/42"));
  REQUIRE(s);
  CHECK(s->route_index == 1);
  CHECK(s->matched == &router.config().virtual_hosts[0].routes[1].matches[0]);

  // A route without matches matches everything; there is no block to name.
  s = router.match(request("a.com", "/other"));
  REQUIRE(s);
  CHECK(s->route_index == 2);
  CHECK(s->matched == nullptr);
}

TEST_CASE("router: Selection::matched with many candidate lists") {
  // More candidate lists than the index merges inline (it spills to the
  // heap); it must still pick the first route and report its block.
  std::vector<Route> routes;
  for (int i = 0; i < 80; ++i) {
    std::string p = "/" + std::string(static_cast<size_t>(i + 1), 'a');
    routes.push_back(forward("r" + std::to_string(i), {prefix("/zzz"), prefix(p)}));
  }
  Router router = compile_ok(one_route_list(std::move(routes)));
  auto s = router.match(request("a.com", "/" + std::string(100, 'a')));
  REQUIRE(s);
  CHECK(s->route_index == 0);
  CHECK(s->matched == &router.config().virtual_hosts[0].routes[0].matches[1]);
}

TEST_CASE("router: empty virtual host list and no routes") {
  Router empty = compile_ok(RouterConfig{"main", {}});
  CHECK_FALSE(empty.match(request("a.com")));
  Router no_routes = compile_ok(RouterConfig{"main", {VirtualHost{"vh", {"*"}, {}}}});
  CHECK_FALSE(no_routes.match(request("a.com")));
  Explanation e = no_routes.explain(request("a.com"));
  CHECK(e.host_matched);
  CHECK_FALSE(e.route_index.has_value());
  CHECK(e.to_string().find("no route matched") != std::string::npos);
}

TEST_CASE("router: a copy outlives the original, config() is kept") {
  std::optional<Router> copy;
  {
    Router original = compile_ok(RouterConfig{"main", {vhost("a", {"a.com"})}});
    copy.emplace(original);
  }
  CHECK(copy->config().name == "main");
  auto s = copy->match(request("a.com"));
  REQUIRE(s);
  CHECK(s->route->name == "a-route");
  CHECK(s->route->destinations.at(0).upstream == "backend");
}

TEST_CASE("router validation: invalid regexes name the field and carry RE2's error") {
  Matcher bad_uri;
  bad_uri.path_regex("(");
  Error e = compile_error(one_route(forward("r", {Matcher{}, bad_uri})));
  CHECK(e.object == "Router main");
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[1].uri");
  CHECK(e.message.find("invalid regex \"(\"") != std::string::npos);
  CHECK(e.message.find("missing )") != std::string::npos);
  CHECK(e.to_string().rfind("Router main: virtual_hosts[0].routes[0].matches[1].uri: ", 0) == 0);

  Matcher bad_header;
  bad_header.header("a", StringMatch::exact("x")).header("b", StringMatch::regex("[z"));
  e = compile_error(one_route(forward("r", {bad_header})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].headers[1]");
  CHECK(e.message.find("invalid regex") != std::string::npos);

  Matcher bad_query;
  bad_query.query("q", StringMatch::regex("a**"));
  e = compile_error(one_route(forward("r", {bad_query})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].query_params[0]");

  Matcher bad_method;
  bad_method.method = StringMatch::regex("(GET");
  e = compile_error(one_route(forward("r", {bad_method})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].method");

  Matcher bad_authority;
  bad_authority.authority = StringMatch::regex(")");
  e = compile_error(one_route(forward("r", {bad_authority})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].authority");

  Matcher bad_scheme;
  bad_scheme.scheme = StringMatch::regex("[");
  e = compile_error(one_route(forward("r", {bad_scheme})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].scheme");
}

TEST_CASE("router validation: the error names the right virtual host and route") {
  Matcher bad;
  bad.path_regex("(");
  RouterConfig cfg{
      "edge",
      {vhost("a", {"a.com"}), VirtualHost{"b", {"b.com"}, {forward("ok"), forward("bad", {bad})}}}};
  Error e = compile_error(std::move(cfg));
  CHECK(e.object == "Router edge");
  CHECK(e.field == "virtual_hosts[1].routes[1].matches[0].uri");
}

TEST_CASE("router validation: uri accepts only exact, prefix and regex") {
  Matcher suffix;
  suffix.uri = StringMatch::suffix(".png");
  Error e = compile_error(one_route(forward("r", {suffix})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].uri");
  CHECK(e.message.find("suffix") != std::string::npos);

  Matcher present;
  present.uri = StringMatch::present();
  e = compile_error(one_route(forward("r", {present})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].uri");

  Matcher query_suffix;
  query_suffix.query("a", StringMatch::suffix("x"));
  e = compile_error(one_route(forward("r", {query_suffix})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].query_params[0]");

  Matcher nameless;
  nameless.header("", StringMatch::present());
  e = compile_error(one_route(forward("r", {nameless})));
  CHECK(e.field == "virtual_hosts[0].routes[0].matches[0].headers[0].name");
}

TEST_CASE("router validation: actions") {
  Route none;
  none.name = "none";
  Error e = compile_error(one_route(none));
  CHECK(e.field == "virtual_hosts[0].routes[0]");
  CHECK(e.message.find("no action") != std::string::npos);

  Route both = forward("both");
  both.direct_response = DirectResponse{200, ""};
  e = compile_error(one_route(both));
  CHECK(e.field == "virtual_hosts[0].routes[0]");
  CHECK(e.message.find("both") != std::string::npos);

  Route redirect_only;
  redirect_only.redirect = Redirect{};
  CHECK(Router::compile(one_route(redirect_only)).ok());

  Route forward_redirect = forward("fr");
  forward_redirect.redirect = Redirect{};
  e = compile_error(one_route(forward_redirect));
  CHECK(e.field == "virtual_hosts[0].routes[0]");
  CHECK(e.message == "has both destinations and redirect; set exactly one");

  Route redirect_direct;
  redirect_direct.redirect = Redirect{};
  redirect_direct.direct_response = DirectResponse{200, ""};
  e = compile_error(one_route(redirect_direct));
  CHECK(e.to_string() ==
        "Router main: virtual_hosts[0].routes[0]: has both redirect and direct_response; set "
        "exactly one");

  // Policy fields are validated by Router::compile as well.
  Route bad_code;
  bad_code.redirect = Redirect{};
  bad_code.redirect->code = 200;
  e = compile_error(one_route(bad_code));
  CHECK(e.field == "virtual_hosts[0].routes[0].redirect.code");

  Route zero = forward("zero");
  zero.destinations = {{"a", "", 0}, {"b", "v1", 0}};
  e = compile_error(one_route(zero));
  CHECK(e.field == "virtual_hosts[0].routes[0].destinations");
  CHECK(e.message.find("weights") != std::string::npos);

  Route some_zero = forward("some-zero");
  some_zero.destinations = {{"a", "", 0}, {"b", "", 3}};
  CHECK(Router::compile(one_route(some_zero)).ok());

  Route unnamed = forward("unnamed");
  unnamed.destinations = {{"a", "", 1}, {"", "", 1}};
  e = compile_error(one_route(unnamed));
  CHECK(e.field == "virtual_hosts[0].routes[0].destinations[1].upstream");

  for (uint16_t status : {uint16_t(0), uint16_t(199), uint16_t(600)}) {
    Route direct;
    direct.direct_response = DirectResponse{status, ""};
    e = compile_error(one_route(direct));
    CHECK(e.field == "virtual_hosts[0].routes[0].direct_response.status");
    CHECK(e.message.find(std::to_string(status)) != std::string::npos);
  }
  for (uint16_t status : {uint16_t(200), uint16_t(599)}) {
    Route direct;
    direct.direct_response = DirectResponse{status, ""};
    CHECK(Router::compile(one_route(direct)).ok());
  }
}

TEST_CASE("router validation: domains") {
  Error e = compile_error(RouterConfig{"main", {vhost("a", {"a.com", ""})}});
  CHECK(e.field == "virtual_hosts[0].domains[1]");
  CHECK(e.message.find("empty") != std::string::npos);

  e = compile_error(RouterConfig{"main", {vhost("a", {"a.com"}), vhost("b", {"x.com", "A.com"})}});
  CHECK(e.field == "virtual_hosts[1].domains[1]");
  CHECK(e.message.find("duplicate") != std::string::npos);
  CHECK(e.message.find("virtual_hosts[0]") != std::string::npos);

  e = compile_error(RouterConfig{"main", {vhost("a", {"*"}), vhost("b", {"*"})}});
  CHECK(e.field == "virtual_hosts[1].domains[0]");

  e = compile_error(RouterConfig{"main", {vhost("a", {"*.a.com"}), vhost("b", {"*.a.com"})}});
  CHECK(e.field == "virtual_hosts[1].domains[0]");

  for (std::string bad : {"a.*.com", "foo.*", "**.a.com", "a*"}) {
    e = compile_error(RouterConfig{"main", {vhost("a", {"ok.com", bad})}});
    CHECK(e.field == "virtual_hosts[0].domains[1]");
    CHECK(e.message.find("wildcard") != std::string::npos);
  }

  e = compile_error(RouterConfig{"main", {vhost("a", {})}});
  CHECK(e.field == "virtual_hosts[0].domains");

  // The same entry twice inside one virtual host is harmless.
  CHECK(Router::compile(RouterConfig{"main", {vhost("a", {"a.com", "A.COM"})}}).ok());
  // A port makes a different domain.
  CHECK(Router::compile(RouterConfig{"main", {vhost("a", {"a.com"}), vhost("b", {"a.com:81"})}})
            .ok());
}

TEST_CASE("router explain: reasons for each skipped rule") {
  Matcher user;
  user.header("end-user", StringMatch::exact("jason"));
  Matcher ratings = prefix("/reviews");
  Matcher get;
  get.method = StringMatch::exact("GET");
  get.path_exact("/ratings");
  Matcher query;
  query.query("v", StringMatch::exact("2"));
  Matcher chosen = prefix("/rat");
  Router router = compile_ok(RouterConfig{
      "main",
      {vhost("other", {"other.com"}),
       VirtualHost{
           "reviews",
           {"reviews.com", "*.example.com"},
           {forward("jason", {user}), forward("multi", {ratings, get}), forward("q", {query}),
            forward("ratings", {ratings, chosen}), forward("rest")}}}});
  RequestHead r = request("www.example.com:8080", "/ratings?v=1");
  r.method = "POST";
  Explanation e = router.explain(r);
  CHECK(e.host_matched);
  CHECK(e.virtual_host == "reviews");
  CHECK(e.virtual_host_index == 1);
  CHECK(e.host_match == "*.example.com");
  REQUIRE(e.route_index.has_value());
  CHECK(*e.route_index == 3);
  CHECK(e.route_name == "ratings");
  REQUIRE(e.match_index.has_value());
  CHECK(*e.match_index == 1);
  REQUIRE(e.skipped.size() == 3);
  CHECK(e.skipped[0].route_index == 0);
  CHECK(e.skipped[0].route_name == "jason");
  CHECK(e.skipped[0].reason == R"(match[0]: header "end-user" is absent)");
  CHECK(e.skipped[1].route_name == "multi");
  CHECK(
      e.skipped[1].reason ==
      R"(match[0]: uri "/ratings" does not match prefix "/reviews"; match[1]: method "POST" is not exact "GET")");
  CHECK(e.skipped[2].reason == R"(match[0]: query parameter "v" value "1" is not exact "2")");

  std::string text = e.to_string();
  CHECK(text.find("reviews") != std::string::npos);
  CHECK(text.find("*.example.com") != std::string::npos);
  CHECK(text.find(R"(header "end-user" is absent)") != std::string::npos);
  CHECK(text.find("route[3] \"ratings\": selected, match[1] matched") != std::string::npos);

  // explain() and match() agree.
  auto s = router.match(r);
  REQUIRE(s);
  CHECK(s->route_index == *e.route_index);
}

TEST_CASE("router explain: other failure reasons") {
  Matcher without;
  without.without_header("x-canary");
  Matcher header_value;
  header_value.header("x-env", StringMatch::prefix("prod"));
  Matcher port;
  port.port = 8443;
  Matcher icase;
  icase.path_exact("/Admin");
  icase.ignore_uri_case = true;
  Router router =
      compile_ok(RouterConfig{"main",
                              {VirtualHost{"vh",
                                           {"*"},
                                           {forward("w", {without}), forward("h", {header_value}),
                                            forward("p", {port}), forward("i", {icase})}}}});
  RequestHead r = request("h", "/x");
  r.headers.add("X-Canary", "1");
  r.headers.add("x-env", "dev");
  r.listener_port = 80;
  Explanation e = router.explain(r);
  CHECK_FALSE(e.route_index.has_value());
  REQUIRE(e.skipped.size() == 4);
  CHECK(e.skipped[0].reason == R"(match[0]: header "x-canary" is present (withoutHeaders))");
  CHECK(e.skipped[1].reason ==
        R"(match[0]: header "x-env" value "dev" does not match prefix "prod")");
  CHECK(e.skipped[2].reason == "match[0]: port 80 is not 8443");
  CHECK(e.skipped[3].reason.find("ignoring case") != std::string::npos);
  CHECK(e.to_string().find("no route matched") != std::string::npos);
}

TEST_CASE("router explain: a rule without matches and no virtual host") {
  Router router = compile_ok(RouterConfig{"main", {vhost("a", {"a.com", "*.b.com"})}});
  Explanation e = router.explain(request("a.com"));
  CHECK(e.host_matched);
  CHECK(e.route_index == std::optional<size_t>(0));
  CHECK_FALSE(e.match_index.has_value());
  CHECK(e.skipped.empty());
  CHECK(e.to_string().find("no match conditions") != std::string::npos);

  Explanation none = router.explain(request("c.com"));
  CHECK_FALSE(none.host_matched);
  CHECK_FALSE(none.route_index.has_value());
  std::string text = none.to_string();
  CHECK(text.find("no virtual host matched") != std::string::npos);
  CHECK(text.find("c.com") != std::string::npos);
  CHECK(text.find("a.com, *.b.com") != std::string::npos);
}

TEST_CASE("router: regex literal prefixes never hide a match") {
  // Each regex is indexed by the literal text it must start with; a
  // quantified last character, escapes, alternation and UTF-8 must not make
  // that prefix longer than the regex guarantees.
  struct Case {
    const char* regex;
    const char* path;
  };
  const Case cases[] = {
      {"/ab?c", "/ac"},
      {"/x+y", "/xxy"},
      {"\\/api\\/.*", "/api/1"},
      {"/v1|/v2", "/v2"},
      {"/caf\xc3\xa9*", "/caf"},
      {"/n\\d+", "/n42"},
      {"^/anchored/.*", "/anchored/x"},
      {"(?i)/CaSe", "/case"},
      {"/a{2}b", "/aab"},
  };
  for (const auto& c : cases) {
    std::vector<Route> routes;
    // Enough other rules that the index, not a short scan, decides.
    for (int i = 0; i < 50; ++i) {
      Matcher m;
      m.path_exact("/other/" + std::to_string(i));
      routes.push_back(forward("other" + std::to_string(i), {m}));
    }
    Matcher m;
    m.path_regex(c.regex);
    routes.push_back(forward("target", {m}));
    Router router = compile_ok(one_route_list(std::move(routes)));
    auto s = router.match(request("h", c.path));
    INFO(c.regex);
    REQUIRE(s);
    CHECK(s->route->name == "target");
  }
}

}  // namespace test_router
