// Local rate limiting (lib/security/ratelimit_local): the atomic token
// bucket under an injected time, percentages, descriptor buckets and the
// response Envoy sends.

#include <doctest/doctest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "security/ratelimit_local.hpp"

namespace test_ratelimit_local {

using namespace sluice;
using namespace sluice::security;
using namespace std::chrono_literals;

namespace {

const SteadyTime t0 = SteadyTime{} + 1000h;  // any fixed origin

LocalRateLimit config(TokenBucket bucket) {
  LocalRateLimit c;
  c.stat_prefix = "http_local_rate_limiter";
  c.token_bucket = bucket;
  c.filter_enabled = FractionalPercent::percent(100);
  c.filter_enforced = FractionalPercent::percent(100);
  return c;
}

std::shared_ptr<LocalRateLimiter> limiter(const LocalRateLimit& c) {
  auto l = LocalRateLimiter::create(c, "EnvoyFilter local", t0);
  REQUIRE_MESSAGE(l.ok(), l.error().to_string());
  return l.value();
}

int take_all(AtomicTokenBucket& b, SteadyTime now) {
  int n = 0;
  while (b.try_consume(now) && n < 1'000'000) ++n;
  return n;
}

}  // namespace

TEST_CASE("local ratelimit: a bucket starts full and refills per whole interval") {
  AtomicTokenBucket b(TokenBucket{4, 2, 1s}, t0);
  CHECK(b.available(t0) == 4);
  CHECK(take_all(b, t0) == 4);
  CHECK_FALSE(b.try_consume(t0 + 999ms));  // no fill before the interval ends
  CHECK(b.available(t0 + 1s) == 2);
  CHECK(take_all(b, t0 + 1s) == 2);
  CHECK(take_all(b, t0 + 1999ms) == 0);
  // Three intervals later: 3 fills of 2, capped at max_tokens.
  CHECK(b.available(t0 + 4s) == 4);
  CHECK(take_all(b, t0 + 4s + 500ms) == 4);
}

TEST_CASE("local ratelimit: an earlier time seen after a later one adds nothing") {
  AtomicTokenBucket b(TokenBucket{1, 1, 1s}, t0);
  CHECK(b.try_consume(t0 + 5s));
  // Another worker's clock read a little earlier: no refill, no underflow.
  CHECK_FALSE(b.try_consume(t0 + 4s));
  CHECK_FALSE(b.try_consume(t0 + 5s));
  CHECK(b.try_consume(t0 + 6s));
  // Before the bucket's start counts as its start.
  AtomicTokenBucket c(TokenBucket{1, 1, 1s}, t0);
  CHECK(c.try_consume(t0 - 10s));
  CHECK_FALSE(c.try_consume(t0 - 10s));
}

TEST_CASE("local ratelimit: one bucket shared by threads hands out exactly its tokens") {
  AtomicTokenBucket b(TokenBucket{10'000, 1, 1h}, t0);
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5'000; ++i)
        if (b.try_consume(t0 + 1ms)) taken.fetch_add(1);
    });
  for (auto& t : threads) t.join();
  CHECK(taken.load() == 10'000);
  CHECK(b.available(t0 + 1ms) == 0);
}

TEST_CASE("local ratelimit: the Istio task's limit, 4 per minute, then 429 with Envoy's body") {
  LocalRateLimit c = config(TokenBucket{4, 4, 60s});
  c.response_headers_to_add.push_back(
      {"x-local-rate-limit", "true", HeaderValueOption::Action::overwrite_if_exists_or_add});
  auto l = limiter(c);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 4; ++i)
    CHECK(l->check({}, t0 + std::chrono::seconds(i), rng).outcome ==
          LocalDecision::Outcome::allowed);
  LocalDecision d = l->check({}, t0 + 59s, rng);
  CHECK(d.outcome == LocalDecision::Outcome::limited);
  REQUIRE(d.response.has_value());
  CHECK(d.response->status == 429);
  CHECK(d.response->body == "local_rate_limited");
  CHECK(d.response->headers.get("x-envoy-ratelimited") == "true");
  CHECK(d.response->headers.get("x-local-rate-limit") == "true");
  CHECK(d.response->headers.get("content-type") == "text/plain");
  // The next minute brings four more.
  CHECK(l->check({}, t0 + 60s, rng).outcome == LocalDecision::Outcome::allowed);
  CHECK(l->stats().enabled == 6);
  CHECK(l->stats().ok == 5);
  CHECK(l->stats().rate_limited == 1);
  CHECK(l->stats().enforced == 1);
}

TEST_CASE("local ratelimit: filter_enabled and filter_enforced percentages") {
  std::mt19937_64 rng(7);
  LocalRateLimit c = config(TokenBucket{1, 1, 1h});
  c.filter_enabled = FractionalPercent{};  // Envoy's default: 0 %
  auto off = limiter(c);
  for (int i = 0; i < 10; ++i)
    CHECK(off->check({}, t0, rng).outcome == LocalDecision::Outcome::not_enabled);
  CHECK(off->stats().enabled == 0);

  c.filter_enabled = FractionalPercent::percent(100);
  c.filter_enforced = FractionalPercent{};
  c.request_headers_to_add_when_not_enforced.push_back({"x-limited", "1"});
  auto shadow = limiter(c);
  CHECK(shadow->check({}, t0, rng).outcome == LocalDecision::Outcome::allowed);
  LocalDecision d = shadow->check({}, t0, rng);
  CHECK(d.outcome == LocalDecision::Outcome::limited_not_enforced);
  CHECK_FALSE(d.response.has_value());
  CHECK(shadow->stats().rate_limited == 1);
  CHECK(shadow->stats().enforced == 0);

  // Half of the requests enabled, drawn from the seeded generator.
  c.filter_enabled = {5'000, FractionalPercent::Denominator::ten_thousand};
  c.filter_enforced = FractionalPercent::percent(100);
  c.token_bucket = TokenBucket{1'000'000, 1, 1h};
  auto half = limiter(c);
  int enabled = 0;
  for (int i = 0; i < 2'000; ++i)
    if (half->check({}, t0, rng).outcome != LocalDecision::Outcome::not_enabled) ++enabled;
  CHECK(enabled > 850);
  CHECK(enabled < 1150);
}

TEST_CASE("local ratelimit: status below 400 means 429, as Envoy") {
  LocalRateLimit c = config(TokenBucket{1, 1, 1h});
  c.status = 302;
  CHECK(limiter(c)->limited_response().status == 429);
  c.status = 503;
  CHECK(limiter(c)->limited_response().status == 503);
}

TEST_CASE("local ratelimit: descriptors take their own bucket, then the default one") {
  LocalRateLimit c = config(TokenBucket{3, 3, 60s});
  c.descriptors.push_back({{{"path", "/slow"}}, TokenBucket{1, 1, 60s}});
  c.descriptors.push_back({{{"path", "/fast"}}, TokenBucket{10, 10, 1s}});
  auto l = limiter(c);
  std::vector<Descriptor> slow{{{"path", "/slow"}}};
  std::vector<Descriptor> other{{{"path", "/other"}}};
  std::vector<Descriptor> slow_and_fast{{{"path", "/fast"}}, {{"path", "/slow"}}};
  CHECK(l->request_allowed(slow, t0));        // slow 1 -> 0, default 3 -> 2
  CHECK_FALSE(l->request_allowed(slow, t0));  // slow empty; default untouched
  CHECK(l->request_allowed(other, t0));       // no match: default 2 -> 1
  // The strictest (slow) is tried first and refuses: fast keeps its tokens.
  CHECK_FALSE(l->request_allowed(slow_and_fast, t0));
  // Descriptors must match verbatim: a longer descriptor matches nothing.
  std::vector<Descriptor> longer{{{"path", "/slow"}, {"user", "a"}}};
  CHECK(l->request_allowed(longer, t0));        // default 1 -> 0
  CHECK_FALSE(l->request_allowed(longer, t0));  // default empty
  std::vector<Descriptor> fast{{{"path", "/fast"}}};
  CHECK_FALSE(l->request_allowed(fast, t0));  // fast has tokens, the default does not
}

TEST_CASE(
    "local ratelimit: without always_consume_default_token_bucket a match spares the default") {
  LocalRateLimit c = config(TokenBucket{1, 1, 60s});
  c.always_consume_default_token_bucket = false;
  c.descriptors.push_back({{{"path", "/a"}}, TokenBucket{2, 2, 60s}});
  auto l = limiter(c);
  std::vector<Descriptor> a{{{"path", "/a"}}};
  CHECK(l->request_allowed(a, t0));
  CHECK(l->request_allowed(a, t0));
  CHECK_FALSE(l->request_allowed(a, t0));
  CHECK(l->request_allowed({}, t0));  // the default bucket is still full
  CHECK_FALSE(l->request_allowed({}, t0));
}

TEST_CASE("local ratelimit: no default bucket limits only by descriptors") {
  LocalRateLimit c = config(TokenBucket{1, 1, 60s});
  c.token_bucket.reset();
  c.descriptors.push_back({{{"path", "/a"}}, TokenBucket{1, 1, 60s}});
  auto l = limiter(c);
  std::vector<Descriptor> a{{{"path", "/a"}}};
  for (int i = 0; i < 5; ++i) CHECK(l->request_allowed({}, t0));
  CHECK(l->request_allowed(a, t0));
  CHECK_FALSE(l->request_allowed(a, t0));
}

TEST_CASE("local ratelimit: check ignores descriptors when the config has none") {
  auto l = limiter(config(TokenBucket{1, 1, 60s}));
  std::mt19937_64 rng(3);
  std::vector<Descriptor> a{{{"path", "/a"}}};
  CHECK(l->check(a, t0, rng).outcome == LocalDecision::Outcome::allowed);
  CHECK(l->check(a, t0, rng).outcome == LocalDecision::Outcome::limited);
}

TEST_CASE("local ratelimit: create rejects an invalid config") {
  LocalRateLimit c = config(TokenBucket{0, 1, 1s});
  auto l = LocalRateLimiter::create(c, "EnvoyFilter local", t0);
  REQUIRE_FALSE(l.ok());
  CHECK(l.error().to_string() == "EnvoyFilter local: token_bucket.max_tokens: must be > 0");
  LocalRateLimit route;
  route.stat_prefix = "r";
  CHECK_FALSE(LocalRateLimiter::create(route, "EnvoyFilter local", t0, /*per_route=*/true).ok());
}

}  // namespace test_ratelimit_local
