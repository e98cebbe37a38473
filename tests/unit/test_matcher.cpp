// Match conditions (Istio HTTPMatchRequest) evaluated through Router, one
// condition kind at a time.

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "sluice/router.hpp"

namespace test_matcher {

using namespace sluice;

namespace {

RequestHead request(std::string target,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
  RequestHead r;
  r.target = std::move(target);
  r.authority = "example.com";
  for (auto& [n, v] : headers) r.headers.add(n, v);
  return r;
}

// A router whose only route carries `m`; match() tells whether `m` holds.
Router router_for(std::vector<Matcher> matches) {
  Route route;
  route.name = "only";
  route.matches = std::move(matches);
  route.direct_response = DirectResponse{200, "ok"};
  RouterConfig cfg{"m", {VirtualHost{"all", {"*"}, {route}}}};
  auto r = Router::compile(std::move(cfg));
  REQUIRE_MESSAGE(r.ok(), r.error().to_string());
  return std::move(r).value();
}

bool holds(const Matcher& m, const RequestHead& req) {
  return router_for({m}).match(req).has_value();
}

}  // namespace

TEST_CASE("matcher: uri exact compares the path without the query") {
  Matcher m;
  m.path_exact("/reviews");
  CHECK(holds(m, request("/reviews")));
  CHECK(holds(m, request("/reviews?user=1")));
  CHECK_FALSE(holds(m, request("/reviews/")));
  CHECK_FALSE(holds(m, request("/review")));
  CHECK_FALSE(holds(m, request("/Reviews")));
}

TEST_CASE("matcher: uri prefix is a plain string prefix, not segment-aware") {
  Matcher m;
  m.path_prefix("/api");
  CHECK(holds(m, request("/api")));
  CHECK(holds(m, request("/api/v1")));
  CHECK(holds(m, request("/apix")));
  CHECK_FALSE(holds(m, request("/ap")));
  CHECK_FALSE(holds(m, request("/API/v1")));
  // The query is not part of the path.
  Matcher q;
  q.path_prefix("/a?b");
  CHECK_FALSE(holds(q, request("/a?b=1")));
}

TEST_CASE("matcher: uri regex is an RE2 full match on the path") {
  Matcher m;
  m.path_regex(R"(/users/\d+)");
  CHECK(holds(m, request("/users/42")));
  CHECK(holds(m, request("/users/42?x=y")));
  CHECK_FALSE(holds(m, request("/users/42/x")));
  CHECK_FALSE(holds(m, request("/v1/users/42")));

  Matcher tail;
  tail.path_regex(R"(\d+$)");
  CHECK_FALSE(holds(tail, request("a123")));
  CHECK(holds(tail, request("123")));

  Matcher icase;
  icase.path_regex("(?i)/abc");
  CHECK(holds(icase, request("/ABC")));
}

TEST_CASE("matcher: ignore_uri_case applies to exact and prefix only") {
  Matcher exact;
  exact.path_exact("/Reviews");
  exact.ignore_uri_case = true;
  CHECK(holds(exact, request("/reviews")));
  CHECK(holds(exact, request("/REVIEWS")));
  CHECK_FALSE(holds(exact, request("/reviewsx")));

  Matcher prefix;
  prefix.path_prefix("/API/");
  prefix.ignore_uri_case = true;
  CHECK(holds(prefix, request("/api/v1")));
  CHECK(holds(prefix, request("/Api/V1")));
  CHECK_FALSE(holds(prefix, request("/apiv1")));

  Matcher regex;
  regex.path_regex("/abc");
  regex.ignore_uri_case = true;
  CHECK(holds(regex, request("/abc")));
  CHECK_FALSE(holds(regex, request("/ABC")));
}

TEST_CASE("matcher: method, authority and scheme") {
  Matcher get;
  get.method = StringMatch::exact("GET");
  RequestHead post = request("/");
  post.method = "POST";
  CHECK(holds(get, request("/")));
  CHECK_FALSE(holds(get, post));

  Matcher p;
  p.method = StringMatch::regex("P(OST|UT)");
  CHECK(holds(p, post));
  CHECK_FALSE(holds(p, request("/")));

  Matcher authority;
  authority.authority = StringMatch::exact("example.com:8080");
  RequestHead with_port = request("/");
  with_port.authority = "example.com:8080";
  CHECK(holds(authority, with_port));
  CHECK_FALSE(holds(authority, request("/")));

  Matcher auth_prefix;
  auth_prefix.authority = StringMatch::prefix("example.");
  CHECK(holds(auth_prefix, with_port));

  Matcher https;
  https.scheme = StringMatch::exact("https");
  RequestHead secure = request("/");
  secure.scheme = "https";
  CHECK(holds(https, secure));
  CHECK_FALSE(holds(https, request("/")));
}

TEST_CASE("matcher: header kinds, case-insensitive names") {
  Matcher exact;
  exact.header("end-user", StringMatch::exact("jason"));
  CHECK(holds(exact, request("/", {{"End-User", "jason"}})));
  CHECK_FALSE(holds(exact, request("/", {{"end-user", "Jason"}})));
  CHECK_FALSE(holds(exact, request("/")));

  Matcher upper_name;
  upper_name.header("X-Tag", StringMatch::exact("a"));
  CHECK(holds(upper_name, request("/", {{"x-tag", "a"}})));

  Matcher prefix;
  prefix.header("ua", StringMatch::prefix("Mozilla/"));
  CHECK(holds(prefix, request("/", {{"ua", "Mozilla/5.0"}})));
  CHECK_FALSE(holds(prefix, request("/", {{"ua", "curl/8"}})));

  Matcher suffix;
  suffix.header("x-host", StringMatch::suffix(".internal"));
  CHECK(holds(suffix, request("/", {{"x-host", "db.internal"}})));
  CHECK_FALSE(holds(suffix, request("/", {{"x-host", "db.internal.com"}})));

  Matcher regex;
  regex.header("x-id", StringMatch::regex(R"(\d+)"));
  CHECK(holds(regex, request("/", {{"x-id", "123"}})));
  CHECK_FALSE(holds(regex, request("/", {{"x-id", "a123"}})));

  Matcher present;
  present.header("x-debug", StringMatch::present());
  CHECK(holds(present, request("/", {{"X-Debug", ""}})));
  CHECK_FALSE(holds(present, request("/", {{"x-other", "1"}})));
}

TEST_CASE("matcher: a repeated header matches its values joined with a comma") {
  Matcher joined;
  joined.header("x-v", StringMatch::exact("a,b"));
  CHECK(holds(joined, request("/", {{"x-v", "a"}, {"X-V", "b"}})));
  CHECK_FALSE(holds(joined, request("/", {{"x-v", "a"}})));

  Matcher first_only;
  first_only.header("x-v", StringMatch::exact("a"));
  CHECK_FALSE(holds(first_only, request("/", {{"x-v", "a"}, {"x-v", "b"}})));
}

TEST_CASE("matcher: pseudo-headers read the request head") {
  Matcher m;
  m.header(":authority", StringMatch::exact("example.com"));
  CHECK(holds(m, request("/")));
  Matcher method;
  method.header(":method", StringMatch::exact("POST"));
  CHECK_FALSE(holds(method, request("/")));
}

TEST_CASE("matcher: withoutHeaders holds when the positive condition does not") {
  Matcher absent;
  absent.without_header("x-canary");
  CHECK(holds(absent, request("/")));
  CHECK_FALSE(holds(absent, request("/", {{"X-Canary", "1"}})));

  Matcher not_value;
  not_value.without_header("end-user", StringMatch::exact("jason"));
  CHECK(holds(not_value, request("/")));
  CHECK(holds(not_value, request("/", {{"end-user", "bob"}})));
  CHECK_FALSE(holds(not_value, request("/", {{"end-user", "jason"}})));
}

TEST_CASE("matcher: query parameters") {
  Matcher exact;
  exact.query("v", StringMatch::exact("2"));
  CHECK(holds(exact, request("/x?a=1&v=2")));
  CHECK_FALSE(holds(exact, request("/x?v=22")));
  CHECK_FALSE(holds(exact, request("/x")));
  CHECK_FALSE(holds(exact, request("/x?V=2")));
  // The first occurrence counts (Envoy).
  CHECK(holds(exact, request("/x?v=2&v=3")));
  CHECK_FALSE(holds(exact, request("/x?v=3&v=2")));
  // Only the first '=' splits.
  Matcher eq;
  eq.query("t", StringMatch::exact("a=b"));
  CHECK(holds(eq, request("/?t=a=b")));

  Matcher prefix;
  prefix.query("user", StringMatch::prefix("adm"));
  CHECK(holds(prefix, request("/?user=admin")));
  CHECK_FALSE(holds(prefix, request("/?user=bob")));

  Matcher regex;
  regex.query("id", StringMatch::regex(R"(\d+)"));
  CHECK(holds(regex, request("/?id=77")));
  CHECK_FALSE(holds(regex, request("/?id=77x")));

  Matcher present;
  present.query("debug", StringMatch::present());
  CHECK(holds(present, request("/?debug")));
  CHECK(holds(present, request("/?a=1&debug=")));
  CHECK_FALSE(holds(present, request("/?debugx=1")));

  Matcher empty;
  empty.query("flag", StringMatch::exact(""));
  CHECK(holds(empty, request("/?flag")));
  CHECK_FALSE(holds(empty, request("/?flag=1")));
}

TEST_CASE("matcher: port is the listener port") {
  Matcher m;
  m.port = 8443;
  RequestHead r = request("/");
  r.listener_port = 8443;
  CHECK(holds(m, r));
  r.listener_port = 80;
  CHECK_FALSE(holds(m, r));
}

TEST_CASE("matcher: conditions in one block are ANDed, an empty block matches all") {
  Matcher m;
  m.path_prefix("/api").header("x-env", StringMatch::exact("prod"));
  m.method = StringMatch::exact("GET");
  m.query("v", StringMatch::present());
  CHECK(holds(m, request("/api/a?v=1", {{"x-env", "prod"}})));
  CHECK_FALSE(holds(m, request("/api/a", {{"x-env", "prod"}})));
  CHECK_FALSE(holds(m, request("/api/a?v=1", {{"x-env", "dev"}})));
  CHECK_FALSE(holds(m, request("/web?v=1", {{"x-env", "prod"}})));
  RequestHead post = request("/api/a?v=1", {{"x-env", "prod"}});
  post.method = "POST";
  CHECK_FALSE(holds(m, post));

  CHECK(holds(Matcher{}, request("/anything?at=all")));
  // A route with no match blocks matches everything too.
  CHECK(router_for({}).match(request("/z")).has_value());
}

}  // namespace test_matcher
