// Rate limit configuration (lib/security/ratelimit): validation errors that
// name the object and field, header options, and descriptor generation from
// route rate_limits actions as Envoy produces them.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "security/ratelimit.hpp"

namespace test_ratelimit {

using namespace sluice;
using namespace sluice::security;
using namespace std::chrono_literals;

namespace {

LocalRateLimit local_config() {
  LocalRateLimit c;
  c.stat_prefix = "http_local_rate_limiter";
  c.token_bucket = TokenBucket{4, 4, 60s};
  c.filter_enabled = FractionalPercent::percent(100);
  c.filter_enforced = FractionalPercent::percent(100);
  return c;
}

Error local_error(const LocalRateLimit& c, bool per_route = false) {
  Status s = validate(c, "EnvoyFilter local", per_route);
  REQUIRE_FALSE(s.ok());
  return s.error();
}

RateLimitAction request_headers(std::string header, std::string key, bool skip = false) {
  return {RateLimitAction::RequestHeaders{std::move(header), std::move(key), skip}};
}

RateLimitAction generic_key(std::string value, std::string key = {}) {
  return {RateLimitAction::GenericKey{std::move(value), std::move(key)}};
}

RateLimitRules compile_rules(std::vector<RateLimitAttachment> a) {
  auto r = RateLimitRules::compile(a, "EnvoyFilter global");
  REQUIRE_MESSAGE(r.ok(), r.error().to_string());
  return std::move(r).value();
}

Error rules_error(std::vector<RateLimitAttachment> a) {
  auto r = RateLimitRules::compile(a, "EnvoyFilter global");
  REQUIRE_FALSE(r.ok());
  return r.error();
}

RequestHead get(std::string target) {
  RequestHead r;
  r.method = "GET";
  r.target = std::move(target);
  r.authority = "bookinfo.example.com";
  r.headers.add("Host", r.authority);
  return r;
}

std::vector<Descriptor> descriptors_for(const RateLimitRules& rules, const RequestHead& request,
                                        std::string route = "default",
                                        VhRateLimits vh = VhRateLimits::override_route,
                                        uint32_t stage = 0, std::string_view remote = "10.1.2.3",
                                        std::string_view cluster = "productpage") {
  RequestAttributes in{&request, remote, cluster};
  return rules.descriptors("bookinfo", route, stage, vh, in);
}

}  // namespace

TEST_CASE("ratelimit config: a valid local config passes") {
  CHECK(validate(local_config(), "EnvoyFilter local").ok());
  LocalRateLimit global_off;
  global_off.stat_prefix = "http_local_rate_limiter";
  CHECK(validate(global_off, "EnvoyFilter local").ok());  // a filter-level config needs no bucket
}

TEST_CASE("ratelimit config: local errors name the object and the field") {
  LocalRateLimit c = local_config();
  c.stat_prefix.clear();
  CHECK(local_error(c).to_string() == "EnvoyFilter local: stat_prefix: must not be empty");

  c = local_config();
  c.token_bucket->max_tokens = 0;
  CHECK(local_error(c).to_string() == "EnvoyFilter local: token_bucket.max_tokens: must be > 0");

  c = local_config();
  c.token_bucket->tokens_per_fill = 0;
  CHECK(local_error(c).field == "token_bucket.tokens_per_fill");

  c = local_config();
  c.token_bucket->fill_interval = 49ms;
  CHECK(local_error(c).to_string() ==
        "EnvoyFilter local: token_bucket.fill_interval: must be >= 50ms");

  c = local_config();
  c.token_bucket.reset();
  CHECK(local_error(c, /*per_route=*/true).field == "token_bucket");

  c = local_config();
  c.response_headers_to_add.push_back({"x-local-rate-limit", "a\r\nb"});
  CHECK(local_error(c).field == "response_headers_to_add[0].header.value");
  c.response_headers_to_add = {{"bad name", "v"}};
  CHECK(local_error(c).field == "response_headers_to_add[0].header.key");
  c.response_headers_to_add.assign(11, HeaderValueOption{"x-a", "1"});
  CHECK(local_error(c).field == "response_headers_to_add");

  c = local_config();
  c.stage = 11;
  CHECK(local_error(c).field == "stage");

  c = local_config();
  c.descriptors.push_back({{{"path", "/a"}}, TokenBucket{1, 1, 1s}});
  CHECK(validate(c, "EnvoyFilter local").ok());
  c.descriptors.push_back({{{"path", ""}}, TokenBucket{1, 1, 1s}});
  CHECK(local_error(c).field == "descriptors[1].entries[0].value");
  c.descriptors[1] = {{}, TokenBucket{1, 1, 1s}};
  CHECK(local_error(c).field == "descriptors[1].entries");
  c.descriptors[1] = {{{"path", "/a"}}, TokenBucket{1, 1, 1s}};
  CHECK(local_error(c).field == "descriptors[1].entries");  // duplicate of [0]
  c.descriptors[1] = {{{"path", "/b"}}, TokenBucket{1, 1, 10ms}};
  CHECK(local_error(c).field == "descriptors[1].token_bucket.fill_interval");
}

TEST_CASE("ratelimit config: global filter errors") {
  GlobalRateLimit g;
  g.domain = "ratelimit";
  CHECK(validate(g, "EnvoyFilter filter-ratelimit").ok());
  g.domain.clear();
  Status s = validate(g, "EnvoyFilter filter-ratelimit");
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().to_string() == "EnvoyFilter filter-ratelimit: domain: must not be empty");
  g.domain = "ratelimit";
  g.timeout = 0ms;
  s = validate(g, "EnvoyFilter filter-ratelimit");
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().field == "timeout");
  g.timeout = 25ms;
  std::vector<RateLimitAttachment> rate_limits{{"bookinfo", "", {{{generic_key("")}, 0}}}};
  s = validate(rate_limits, "EnvoyFilter filter-ratelimit");
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().field == "rate_limits[0].rate_limits[0].actions[0].generic_key.descriptor_value");
}

TEST_CASE("ratelimit config: service config errors follow the reference service") {
  using Unit = RateLimitServiceConfig::Unit;
  RateLimitServiceConfig c;
  c.domain = "ratelimit";
  c.descriptors.push_back(
      {"PATH", "/productpage", RateLimitServiceConfig::RateLimit{Unit::minute, 1}});
  c.descriptors.push_back({"PATH", "", RateLimitServiceConfig::RateLimit{Unit::minute, 100}});
  CHECK(validate(c, "rate-limit-config config.yaml").ok());

  auto err = [&](const RateLimitServiceConfig& bad) {
    Status s = validate(bad, "rate-limit-config config.yaml");
    REQUIRE_FALSE(s.ok());
    return s.error();
  };
  RateLimitServiceConfig bad = c;
  bad.domain.clear();
  CHECK(err(bad).to_string() ==
        "rate-limit-config config.yaml: domain: config file cannot have empty domain");
  bad = c;
  bad.descriptors[1].value = "/productpage";
  CHECK(err(bad).to_string() ==
        "rate-limit-config config.yaml: descriptors[1]: duplicate descriptor composite key "
        "'PATH_/productpage'");
  bad = c;
  bad.descriptors[0].key.clear();
  CHECK(err(bad).field == "descriptors[0].key");
  bad = c;
  bad.descriptors[0].rate_limit->unit = Unit::unset;
  CHECK(err(bad).field == "descriptors[0].rate_limit.unit");
  bad = c;
  bad.descriptors[0].rate_limit->unlimited = true;
  CHECK(err(bad).message == "should not specify rate limit unit when unlimited");
  bad = c;
  bad.descriptors[0].rate_limit->name = "a";
  bad.descriptors[0].rate_limit->replaces = {"a"};
  CHECK(err(bad).field == "descriptors[0].rate_limit.replaces[0].name");
  bad = c;
  bad.descriptors[0].descriptors.push_back({"user", "x\ny", std::nullopt});
  CHECK(err(bad).field == "descriptors[0].descriptors[0].value");
}

TEST_CASE("ratelimit config: header options follow Envoy's append actions") {
  using A = HeaderValueOption::Action;
  Headers h;
  h.add("x-a", "1");
  apply_header_options(h, {{"x-a", "2", A::append_if_exists_or_add},
                           {"x-b", "1", A::add_if_absent},
                           {"x-b", "2", A::add_if_absent},
                           {"x-c", "1", A::overwrite_if_exists},
                           {"x-d", "1", A::overwrite_if_exists_or_add}});
  CHECK(h.count("x-a") == 2);
  CHECK(h.get("x-b") == "1");
  CHECK(h.count("x-b") == 1);
  CHECK_FALSE(h.contains("x-c"));
  CHECK(h.get("x-d") == "1");
  apply_header_options(h, {{"x-e", "", A::append_if_exists_or_add},
                           {"x-f", "", A::append_if_exists_or_add, /*keep_empty_value=*/true}});
  CHECK_FALSE(h.contains("x-e"));
  CHECK(h.get("x-f") == "");
  apply_header_options(h, {{"x-a", "3", A::overwrite_if_exists_or_add}});
  CHECK(h.count("x-a") == 1);
  CHECK(h.get("x-a") == "3");
}

TEST_CASE("ratelimit descriptors: request_headers with :path, the Istio task's action") {
  auto rules = compile_rules({{"bookinfo", "", {{{request_headers(":path", "PATH")}, 0}}}});
  auto d = descriptors_for(rules, get("/productpage?u=1"));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"PATH", "/productpage?u=1"}});
  // Pseudo-headers and ordinary headers (case-insensitive, first value).
  rules = compile_rules({{"bookinfo",
                          "",
                          {{{request_headers(":method", "m"), request_headers(":authority", "a"),
                             request_headers(":scheme", "s"), request_headers("X-User", "u")},
                            0}}}});
  RequestHead r = get("/");
  r.headers.add("x-user", "jason");
  r.headers.add("x-user", "other");
  d = descriptors_for(rules, r);
  REQUIRE(d.size() == 1);
  CHECK(d[0] ==
        Descriptor{{"m", "GET"}, {"a", "bookinfo.example.com"}, {"s", "http"}, {"u", "jason"}});
}

TEST_CASE("ratelimit descriptors: a missing header drops the descriptor unless skip_if_absent") {
  auto rules =
      compile_rules({{"bookinfo",
                      "",
                      {{{generic_key("a"), request_headers("x-user", "user")}, 0},
                       {{generic_key("b"), request_headers("x-user", "user", /*skip=*/true)}, 0},
                       {{request_headers("x-user", "user", /*skip=*/true)}, 0}}}});
  auto d = descriptors_for(rules, get("/"));
  // The first rule produces nothing, the second skips only the header's
  // entry, the third would be empty and is not sent.
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"generic_key", "b"}});
  RequestHead with = get("/");
  with.headers.add("x-user", "jason");
  d = descriptors_for(rules, with);
  REQUIRE(d.size() == 3);
  CHECK(d[0] == Descriptor{{"generic_key", "a"}, {"user", "jason"}});
  CHECK(d[2] == Descriptor{{"user", "jason"}});
}

TEST_CASE("ratelimit descriptors: remote_address, generic_key and destination_cluster") {
  auto rules =
      compile_rules({{"bookinfo",
                      "",
                      {{{RateLimitAction{RateLimitAction::RemoteAddress{}}, generic_key("v", "k"),
                         RateLimitAction{RateLimitAction::DestinationCluster{}}},
                        0}}}});
  auto d = descriptors_for(rules, get("/"));
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"remote_address", "10.1.2.3"},
                           {"k", "v"},
                           {"destination_cluster", "productpage"}});
  // No IP address: no descriptor.
  d = descriptors_for(rules, get("/"), "default", VhRateLimits::override_route, 0, "");
  CHECK(d.empty());
}

TEST_CASE("ratelimit descriptors: header_value_match with expect_match either way") {
  RateLimitAction::HeaderValueMatch api{"api", "", true, {}};
  api.headers.push_back({":path", StringMatch::prefix("/api/"), false});
  api.headers.push_back({"x-env", StringMatch::regex("prod|stage"), false});
  RateLimitAction::HeaderValueMatch not_api = api;
  not_api.descriptor_value = "other";
  not_api.descriptor_key = "kind";
  not_api.expect_match = false;
  auto rules = compile_rules(
      {{"bookinfo", "", {{{RateLimitAction{api}}, 0}, {{RateLimitAction{not_api}}, 0}}}});
  RequestHead r = get("/api/v1/products");
  // :path matches but x-env is missing: `api` is not produced, `other` is.
  auto d = descriptors_for(rules, r);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"kind", "other"}});
  r.headers.add("x-env", "stage");
  d = descriptors_for(rules, r);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"header_match", "api"}});
  r.target = "/v1/api/";
  d = descriptors_for(rules, r);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"kind", "other"}});
  r.headers.remove("x-env");

  RateLimitAction::HeaderValueMatch env{"prod", "", true, {}};
  env.headers.push_back({"x-env", StringMatch::regex("prod|stage"), false});
  env.headers.push_back({"x-debug", StringMatch::present(), true});  // must be absent
  rules = compile_rules({{"bookinfo", "", {{{RateLimitAction{env}}, 0}}}});
  r.headers.add("x-env", "prod");
  d = descriptors_for(rules, r);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"header_match", "prod"}});
  r.headers.add("x-debug", "1");
  CHECK(descriptors_for(rules, r).empty());
  r.headers.remove("x-debug");
  r.headers.set("x-env", "production");  // regex must match the whole value
  CHECK(descriptors_for(rules, r).empty());
}

TEST_CASE("ratelimit descriptors: route rules, virtual host rules and stages") {
  auto rules = compile_rules(
      {{"bookinfo", "", {{{generic_key("vh")}, 0}}},
       {"bookinfo", "reviews", {{{generic_key("route")}, 0}, {{generic_key("stage1")}, 1}}}});
  auto d = descriptors_for(rules, get("/"), "reviews", VhRateLimits::override_route);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"generic_key", "route"}});
  d = descriptors_for(rules, get("/"), "reviews", VhRateLimits::include);
  REQUIRE(d.size() == 2);
  CHECK(d[1] == Descriptor{{"generic_key", "vh"}});
  d = descriptors_for(rules, get("/"), "reviews", VhRateLimits::ignore);
  CHECK(d.size() == 1);
  d = descriptors_for(rules, get("/"), "reviews", VhRateLimits::override_route, 1);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"generic_key", "stage1"}});
  // A route without rules of its own gets the virtual host's.
  d = descriptors_for(rules, get("/"), "ratings", VhRateLimits::override_route);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"generic_key", "vh"}});
  // Another virtual host: nothing.
  RequestHead r = get("/");
  RequestAttributes in{&r, "10.0.0.1", "x"};
  CHECK(rules.descriptors("other", "reviews", 0, VhRateLimits::include, in).empty());
}

TEST_CASE("ratelimit descriptors: a router's own lists come before those for every router") {
  auto generic = [](std::string v) {
    return RateLimitAction{RateLimitAction::GenericKey{std::move(v), {}}};
  };
  auto rules = compile_rules({{"*", "", {{{generic("any-router")}, 0}}},
                              {"*", "", {{{generic("http.8080")}, 0}}, "http.8080"}});
  RequestHead r = get("/");
  RequestAttributes in{&r, "10.0.0.1", "x"};
  auto d = rules.descriptors("http.8080", "*", "r", 0, VhRateLimits::override_route, in);
  REQUIRE(d.size() == 2);
  CHECK(d[0] == Descriptor{{"generic_key", "http.8080"}});
  CHECK(d[1] == Descriptor{{"generic_key", "any-router"}});
  d = rules.descriptors("http.9090", "*", "r", 0, VhRateLimits::override_route, in);
  REQUIRE(d.size() == 1);
  CHECK(d[0] == Descriptor{{"generic_key", "any-router"}});
  CHECK(rules.descriptors("http.8080", "other", "r", 0, VhRateLimits::include, in).empty());
}

TEST_CASE("ratelimit descriptors: compile errors name the action") {
  CHECK(rules_error({{"", "", {}}}).field == "rate_limits[0].virtual_host");
  CHECK(rules_error({{"bookinfo", "", {{{}, 0}}}}).field ==
        "rate_limits[0].rate_limits[0].actions");
  CHECK(rules_error({{"bookinfo", "", {{{request_headers("", "k")}, 0}}}}).field ==
        "rate_limits[0].rate_limits[0].actions[0].request_headers.header_name");
  CHECK(rules_error({{"bookinfo", "", {{{request_headers("x", "")}, 0}}}}).field ==
        "rate_limits[0].rate_limits[0].actions[0].request_headers.descriptor_key");
  CHECK(rules_error({{"bookinfo", "", {{{generic_key("v")}, 11}}}}).field ==
        "rate_limits[0].rate_limits[0].stage");
  RateLimitAction::HeaderValueMatch bad{"v", "", true, {}};
  CHECK(rules_error({{"bookinfo", "", {{{RateLimitAction{bad}}, 0}}}}).field ==
        "rate_limits[0].rate_limits[0].actions[0].header_value_match.headers");
  bad.headers.push_back({"x", StringMatch::regex("("), false});
  Error e = rules_error({{"bookinfo", "", {{{RateLimitAction{bad}}, 0}}}});
  CHECK(e.field ==
        "rate_limits[0].rate_limits[0].actions[0].header_value_match.headers[0].safe_regex_match");
  CHECK(e.message.starts_with("invalid regex"));
}

}  // namespace test_ratelimit
