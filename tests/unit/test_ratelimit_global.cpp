// Global rate limiting without Redis (lib/security/ratelimit_global): the
// reference service's configuration matching, its Redis key naming for
// fixed windows, and the decisions from counts.

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "security/ratelimit_global.hpp"

namespace test_ratelimit_global {

using namespace sluice;
using namespace sluice::security;
using namespace std::chrono_literals;
using Unit = RateLimitServiceConfig::Unit;
using Limit = RateLimitServiceConfig::RateLimit;
using Node = RateLimitServiceConfig::DescriptorConfig;

namespace {

RateLimitService compile(std::vector<RateLimitServiceConfig> configs) {
  auto s = RateLimitService::compile(configs, "rate-limit-config");
  REQUIRE_MESSAGE(s.ok(), s.error().to_string());
  return std::move(s).value();
}

// The Istio task's service configuration.
RateLimitServiceConfig istio_task() {
  RateLimitServiceConfig c;
  c.domain = "ratelimit";
  c.descriptors.push_back({"PATH", "/productpage", Limit{Unit::minute, 1}});
  c.descriptors.push_back({"PATH", "api", Limit{Unit::minute, 2}});
  c.descriptors.push_back({"PATH", "", Limit{Unit::minute, 100}});
  return c;
}

uint32_t rpu(const std::optional<MatchedLimit>& m) {
  REQUIRE(m.has_value());
  return m->requests_per_unit;
}

std::chrono::system_clock::time_point at(int64_t unix_seconds) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds));
}

std::shared_ptr<GlobalRateLimiter> limiter(GlobalRateLimit g,
                                           std::vector<RateLimitServiceConfig> service,
                                           std::string prefix = {}) {
  auto l = GlobalRateLimiter::create(g, service, "EnvoyFilter filter-ratelimit", std::move(prefix));
  REQUIRE_MESSAGE(l.ok(), l.error().to_string());
  return l.value();
}

GlobalRateLimit filter(std::string domain = "ratelimit") {
  GlobalRateLimit g;
  g.domain = std::move(domain);
  return g;
}

}  // namespace

TEST_CASE("global ratelimit: key_value is tried before the bare key") {
  RateLimitService s = compile({istio_task()});
  CHECK(rpu(s.find("ratelimit", {{"PATH", "/productpage"}})) == 1);
  CHECK(rpu(s.find("ratelimit", {{"PATH", "api"}})) == 2);
  CHECK(rpu(s.find("ratelimit", {{"PATH", "/reviews"}})) == 100);
  CHECK_FALSE(s.find("ratelimit", {{"USER", "x"}}).has_value());
  CHECK_FALSE(s.find("other-domain", {{"PATH", "/productpage"}}).has_value());
  auto m = s.find("ratelimit", {{"PATH", "/productpage"}});
  REQUIRE(m);
  CHECK(m->unit == Unit::minute);
  CHECK(m->stat_key == "ratelimit.PATH_/productpage");
}

TEST_CASE("global ratelimit: nested descriptors match only at the descriptor's depth") {
  // The reference README's examples 2 and 4.
  RateLimitServiceConfig c;
  c.domain = "messaging";
  Node marketing{"message_type", "marketing", std::nullopt};
  marketing.descriptors.push_back({"to_number", "", Limit{Unit::day, 5}});
  c.descriptors.push_back(marketing);
  c.descriptors.push_back({"to_number", "", Limit{Unit::day, 100}});
  c.descriptors.push_back({"key", "value", Limit{Unit::second, 300}});
  RateLimitService s = compile({c});
  CHECK(rpu(s.find("messaging", {{"message_type", "marketing"}, {"to_number", "2061111111"}})) ==
        5);
  CHECK(rpu(s.find("messaging", {{"to_number", "2061111111"}})) == 100);
  // The placeholder level has no limit of its own.
  CHECK_FALSE(s.find("messaging", {{"message_type", "marketing"}}).has_value());
  // Two entries never match a one-level rule (example 4).
  CHECK_FALSE(s.find("messaging", {{"key", "value"}, {"subkey", "subvalue"}}).has_value());
  CHECK(rpu(s.find("messaging", {{"key", "value"}})) == 300);
}

TEST_CASE("global ratelimit: wildcard values, unlimited, shadow_mode and detailed_metric") {
  RateLimitServiceConfig c;
  c.domain = "d";
  c.descriptors.push_back({"path", "/api/*", Limit{Unit::second, 7}});
  c.descriptors.push_back({"path", "/api/admin", Limit{Unit::second, 1}});
  Limit unlimited;
  unlimited.unlimited = true;
  c.descriptors.push_back({"ldap", "", unlimited});
  Node service{"service", "", std::nullopt};
  service.descriptors.push_back({"user", "user-a", Limit{Unit::second, 10}, /*shadow=*/true});
  Node detailed{"user", "", Limit{Unit::second, 20}};
  detailed.detailed_metric = true;
  service.descriptors.push_back(detailed);
  c.descriptors.push_back(service);
  RateLimitService s = compile({c});
  CHECK(rpu(s.find("d", {{"path", "/api/v1"}})) == 7);
  CHECK(rpu(s.find("d", {{"path", "/api/admin"}})) == 1);  // exact beats the wildcard
  CHECK_FALSE(s.find("d", {{"path", "/apiv1"}}).has_value());
  auto u = s.find("d", {{"ldap", "x"}});
  REQUIRE(u);
  CHECK(u->unlimited);
  auto a = s.find("d", {{"service", "auth"}, {"user", "user-a"}});
  REQUIRE(a);
  CHECK(a->shadow_mode);
  auto b = s.find("d", {{"service", "auth"}, {"user", "user-b"}});
  REQUIRE(b);
  CHECK_FALSE(b->shadow_mode);
  CHECK(b->stat_key == "d.service.user_user-b");
}

TEST_CASE("global ratelimit: two configs for one domain are rejected") {
  auto s = RateLimitService::compile({istio_task(), istio_task()}, "rate-limit-config");
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().to_string() ==
        "rate-limit-config: domain: duplicate domain 'ratelimit' in config file");
}

TEST_CASE("global ratelimit: Redis keys are the reference service's fixed-window keys") {
  Descriptor d{{"PATH", "/productpage"}};
  CHECK(cache_key("", "ratelimit", d, Unit::minute, 1'700'000'059) ==
        "ratelimit_PATH_/productpage_1700000040");
  CHECK(cache_key("", "ratelimit", d, Unit::second, 1'700'000'059) ==
        "ratelimit_PATH_/productpage_1700000059");
  CHECK(cache_key("", "ratelimit", d, Unit::hour, 1'700'000'059) ==
        "ratelimit_PATH_/productpage_1699999200");
  CHECK(cache_key("", "ratelimit", d, Unit::day, 1'700'000'059) ==
        "ratelimit_PATH_/productpage_1699920000");
  Descriptor two{{"message_type", "marketing"}, {"to_number", "2061111111"}};
  CHECK(cache_key("prefix:", "messaging", two, Unit::day, 86'400 * 3 + 5) ==
        "prefix:messaging_message_type_marketing_to_number_2061111111_259200");
}

TEST_CASE("global ratelimit: a plan counts each limited descriptor once per window") {
  auto l = limiter(filter(), {istio_task()});
  std::vector<Descriptor> ds{{{"PATH", "/productpage"}}, {{"USER", "x"}}, {{"PATH", "/r"}}};
  GlobalPlan p = l->plan(ds, at(1'700'000'059));
  REQUIRE(p.counters.size() == 2);  // USER matches nothing
  CHECK(p.counters[0].key == "ratelimit_PATH_/productpage_1700000040");
  CHECK(p.counters[0].requests_per_unit == 1);
  CHECK(p.counters[0].expire_seconds == 60);
  CHECK(p.counters[1].key == "ratelimit_PATH_/r_1700000040");
  auto commands = p.commands();
  REQUIRE(commands.size() == 4);
  CHECK(commands[0] == RedisCommand{"INCRBY", "ratelimit_PATH_/productpage_1700000040", "1"});
  CHECK(commands[1] == RedisCommand{"EXPIRE", "ratelimit_PATH_/productpage_1700000040", "60"});
  // Nothing limited: nothing to ask Redis.
  std::vector<Descriptor> none{{{"USER", "x"}}};
  CHECK(l->plan(none, at(0)).counters.empty());
}

TEST_CASE("global ratelimit: unlimited and replaced limits are not counted") {
  RateLimitServiceConfig c;
  c.domain = "example7";
  Node k1{"key_1", "value_1", std::nullopt};
  Limit specific{Unit::second, 5};
  specific.name = "specific_limit";
  k1.descriptors.push_back({"user", "bkthomps", specific});
  Node k2{"key_2", "value_2", std::nullopt};
  Limit replacing{Unit::second, 10};
  replacing.replaces = {"specific_limit"};
  k2.descriptors.push_back({"user", "bkthomps", replacing});
  c.descriptors = {k1, k2};
  Limit unlimited;
  unlimited.unlimited = true;
  c.descriptors.push_back({"ldap", "", unlimited});
  auto l = limiter(filter("example7"), {c});
  std::vector<Descriptor> both{{{"key_1", "value_1"}, {"user", "bkthomps"}},
                               {{"key_2", "value_2"}, {"user", "bkthomps"}}};
  GlobalPlan p = l->plan(both, at(10));
  REQUIRE(p.counters.size() == 1);
  CHECK(p.counters[0].requests_per_unit == 10);
  std::vector<Descriptor> one{{{"key_1", "value_1"}, {"user", "bkthomps"}}};
  p = l->plan(one, at(10));
  REQUIRE(p.counters.size() == 1);
  CHECK(p.counters[0].requests_per_unit == 5);
  std::vector<Descriptor> ldap{{{"ldap", "x"}}};
  CHECK(l->plan(ldap, at(10)).counters.empty());
}

TEST_CASE("global ratelimit: decisions from counts") {
  RateLimitServiceConfig c = istio_task();
  c.descriptors.push_back({"SOFT", "", Limit{Unit::second, 1}, /*shadow=*/true});
  auto l = limiter(filter(), {c});
  std::mt19937_64 rng(1);
  std::vector<Descriptor> ds{{{"PATH", "/productpage"}}};
  GlobalPlan p = l->plan(ds, at(0));
  std::vector<int64_t> one{1}, two{2};
  CHECK(l->judge(p, one, rng).outcome == GlobalDecision::Outcome::ok);
  GlobalDecision over = l->judge(p, two, rng);
  CHECK(over.outcome == GlobalDecision::Outcome::over_limit);
  REQUIRE(over.response);
  CHECK(over.response->status == 429);
  CHECK(over.response->body.empty());
  CHECK(over.response->headers.get("x-envoy-ratelimited") == "true");
  // shadow_mode: over its limit, still OK.
  std::vector<Descriptor> soft{{{"SOFT", "x"}}};
  GlobalPlan sp = l->plan(soft, at(0));
  std::vector<int64_t> many{50};
  CHECK(l->judge(sp, many, rng).outcome == GlobalDecision::Outcome::ok);
  CHECK(l->stats().shadow_mode == 1);
  CHECK(l->stats().over_limit == 1);
  CHECK(l->stats().ok == 2);
}

TEST_CASE("global ratelimit: failure fails open unless failure_mode_deny") {
  auto open = limiter(filter(), {istio_task()});
  GlobalDecision d = open->failed("connect: Connection refused");
  CHECK(d.outcome == GlobalDecision::Outcome::error_allowed);
  CHECK_FALSE(d.response.has_value());
  CHECK(open->stats().failure_mode_allowed == 1);
  CHECK(open->stats().error == 1);

  GlobalRateLimit g = filter();
  g.failure_mode_deny = true;
  auto deny = limiter(g, {istio_task()});
  d = deny->failed("timeout");
  CHECK(d.outcome == GlobalDecision::Outcome::error_denied);
  REQUIRE(d.response);
  CHECK(d.response->status == 500);
  CHECK(deny->stats().failure_mode_allowed == 0);
}

TEST_CASE("global ratelimit: statuses and the x-envoy-ratelimited switch") {
  GlobalRateLimit g = filter();
  g.rate_limited_status = 200;  // below 400: 429
  g.disable_x_envoy_ratelimited_header = true;
  auto l = limiter(g, {istio_task()});
  Response r = l->over_limit_response();
  CHECK(r.status == 429);
  CHECK_FALSE(r.headers.contains("x-envoy-ratelimited"));
  g.rate_limited_status = 503;
  CHECK(limiter(g, {istio_task()})->over_limit_response().status == 503);
}

TEST_CASE("global ratelimit: create reports the filter's and the service's errors") {
  auto bad = GlobalRateLimiter::create(filter(""), {istio_task()}, "EnvoyFilter f");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().field == "domain");
  RateLimitServiceConfig c = istio_task();
  c.descriptors[0].rate_limit->unit = Unit::unset;
  bad = GlobalRateLimiter::create(filter(), {c}, "EnvoyFilter f");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().field == "descriptors[0].rate_limit.unit");
}

}  // namespace test_ratelimit_global
