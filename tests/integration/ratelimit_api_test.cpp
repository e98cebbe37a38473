// Rate limits through the C++ API (issue 12, sections 4 and 5): a gateway
// with GatewayConfig::rate_limits, real sockets, an injected steady clock
// for the local buckets and an injected wall clock for the global windows
// (nothing sleeps for time to pass), and a real redis-server for the
// global limit shared by two Gateway instances.

#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "config/snapshot.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/raw_client.hpp"
#include "support/redis_server.hpp"

namespace ratelimit_api_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// What on_log saw: target, status, flags and details, in order.
class LimitLog : public Hooks {
 public:
  struct Entry {
    std::string target;
    uint16_t status;
    std::string flags;
    std::string details;
  };
  void on_log(const RequestContext& c) override {
    std::lock_guard lock(mutex_);
    entries_.push_back({c.request.target, c.response_status, to_string(c.response_flags),
                        std::string(c.response_code_details)});
    cv_.notify_all();
  }
  // The last entry once `n` were logged.
  Entry nth(size_t n) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, 5s, [&] { return entries_.size() >= n; });
    return entries_.size() >= n ? entries_[n - 1] : Entry{};
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Entry> entries_;
};

// A Gateway with options of its own (the wall clock), started and driven
// by `clock`.
class Running {
 public:
  Running(const GatewayConfig& config, ManualClock& clock, unsigned workers,
          std::function<std::chrono::system_clock::time_point()> wall = {},
          std::shared_ptr<Hooks> hooks = nullptr)
      : clock_(clock) {
    GatewayOptions options;
    options.workers = workers;
    options.clock = clock.fn();
    options.wall_clock = std::move(wall);
    options.hooks = std::move(hooks);
    gateway_ = std::make_unique<Gateway>(options);
    Status applied = gateway_->apply(config);
    REQUIRE_MESSAGE(applied.ok(), (applied.ok() ? "" : applied.error().to_string()));
    gateway_->start();
    clock_.drive(*gateway_);
  }
  ~Running() {
    clock_.forget(*gateway_);
    gateway_->stop();
  }
  Gateway& gateway() { return *gateway_; }
  uint16_t port() const { return gateway_->port("main"); }

 private:
  ManualClock& clock_;
  std::unique_ptr<Gateway> gateway_;
};

std::optional<HttpResponse> get(uint16_t port, const std::string& target, HeaderList headers = {}) {
  RawClient c(port);
  c.send(make_request("GET", target, "example.com", headers));
  return c.read_response();
}

uint16_t status_of(uint16_t port, const std::string& target) {
  auto r = get(port, target);
  return r ? r->status : 0;
}

LocalRateLimit local_limit(uint32_t max_tokens, uint32_t per_fill = 1,
                           std::chrono::milliseconds interval = 60s) {
  LocalRateLimit l;
  l.stat_prefix = "http_local_rate_limiter";
  l.token_bucket = TokenBucket{max_tokens, per_fill, interval};
  l.filter_enabled = FractionalPercent::percent(100);
  l.filter_enforced = FractionalPercent::percent(100);
  l.response_headers_to_add.push_back(
      {"x-local-rate-limit", "true", HeaderValueOption::Action::overwrite_if_exists_or_add});
  return l;
}

RateLimitAction path_to(std::string key) {
  return RateLimitAction{RateLimitAction::RequestHeaders{":path", std::move(key)}};
}

// The Istio task's service config: /productpage at `per_minute`, any other
// path at 100.
RateLimitServiceConfig task_service(uint32_t per_minute) {
  using Unit = RateLimitServiceConfig::Unit;
  using Limit = RateLimitServiceConfig::RateLimit;
  RateLimitServiceConfig c;
  c.domain = "ratelimit";
  c.descriptors.push_back({"PATH", "/productpage", Limit{Unit::minute, per_minute}});
  c.descriptors.push_back({"PATH", "", Limit{Unit::minute, 100}});
  return c;
}

// A wall clock the test moves: starts on a minute boundary, so a window
// never ends between two requests unless the test says so.
struct WallClock {
  std::atomic<int64_t> seconds{1'700'000'040};  // a multiple of 60
  std::function<std::chrono::system_clock::time_point()> fn() {
    return [this] { return std::chrono::system_clock::time_point(std::chrono::seconds(seconds)); };
  }
};

}  // namespace

TEST_CASE(
    "ratelimit api: one local bucket per gateway, shared by its workers, refilled by the clock") {
  FakeUpstream up("ok");
  ManualClock clock;
  auto cfg = single_upstream_config(up.port());
  cfg.rate_limits.local = local_limit(3);
  auto log = std::make_shared<LimitLog>();
  Running gw(cfg, clock, 2, {}, log);

  // Eight connections spread over two workers: three tokens in all, not
  // three per worker.
  int ok = 0, limited = 0;
  for (int i = 0; i < 8; ++i) {
    auto r = get(gw.port(), "/r" + std::to_string(i));
    REQUIRE(r);
    if (r->status == 200) ++ok;
    if (r->status == 429) {
      ++limited;
      CHECK(r->body == "local_rate_limited");
      CHECK(r->header("x-envoy-ratelimited") == "true");
      CHECK(r->header("x-local-rate-limit") == "true");
    }
  }
  CHECK(ok == 3);
  CHECK(limited == 5);
  CHECK(up.requests().size() == 3);
  auto last = log->nth(8);
  CHECK(last.status == 429);
  CHECK(last.flags == "RL");
  CHECK(last.details == "local_rate_limited");

  // One fill interval later: one token more, then refused again.
  clock.advance(60s);
  CHECK(status_of(gw.port(), "/after") == 200);
  CHECK(status_of(gw.port(), "/again") == 429);

  // A reload with the same local config keeps the (empty) bucket; another
  // config starts a full bucket of its own.
  REQUIRE(gw.gateway().apply(cfg).ok());
  CHECK(status_of(gw.port(), "/same") == 429);
  cfg.rate_limits.local = local_limit(2);
  REQUIRE(gw.gateway().apply(cfg).ok());
  CHECK(status_of(gw.port(), "/new1") == 200);
  CHECK(status_of(gw.port(), "/new2") == 200);
  CHECK(status_of(gw.port(), "/new3") == 429);
}

TEST_CASE("ratelimit api: per-route local configs and their descriptors") {
  FakeUpstream up("ok");
  ManualClock clock;
  auto cfg = make_config({Route{.name = "api",
                                .matches = {Matcher{}.path_prefix("/api")},
                                .destinations = {destination("backend")}},
                          forward_all("backend", "other")},
                         {loopback_upstream("backend", {up.port()})});
  // The filter itself has no bucket: only the route's config limits.
  LocalRateLimit filter;
  filter.stat_prefix = "http_local_rate_limiter";
  cfg.rate_limits.local = filter;
  LocalRateLimit api = local_limit(5);
  api.descriptors.push_back({{{"PATH", "/api/a"}}, TokenBucket{1, 1, 60s}});
  cfg.rate_limits.local_overrides.push_back({"all", "api", "", api});
  cfg.rate_limits.rate_limits.push_back({"all", "api", {RateLimitRule{{path_to("PATH")}}}});
  Running gw(cfg, clock, 1);

  // /api/a has a descriptor bucket of one token.
  CHECK(status_of(gw.port(), "/api/a") == 200);
  CHECK(status_of(gw.port(), "/api/a") == 429);
  // /api/b matches no descriptor: the route's default bucket (5, one
  // taken by the first /api/a) serves it.
  for (int i = 0; i < 4; ++i) CHECK(status_of(gw.port(), "/api/b") == 200);
  CHECK(status_of(gw.port(), "/api/b") == 429);
  // The other route has no config of its own: the filter's, with no bucket.
  for (int i = 0; i < 8; ++i) CHECK(status_of(gw.port(), "/other") == 200);

  // An override without the filter is a config error naming the field.
  cfg.rate_limits.local.reset();
  auto compiled = compile(cfg);
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.error().object == "RateLimitConfig");
  CHECK(compiled.error().field == "local_overrides");
  cfg.rate_limits.local = filter;
  cfg.rate_limits.local_overrides[0].config.token_bucket.reset();
  compiled = compile(cfg);
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.error().field == "local_overrides[0].config.token_bucket");
}

TEST_CASE("ratelimit api: limits run before the route's own action, on the request as received") {
  FakeUpstream up("ok");
  ManualClock clock;
  Route direct{.name = "direct", .matches = {Matcher{}.path_prefix("/direct")}};
  direct.direct_response = DirectResponse{200, "hello"};
  Route rewritten{.name = "rewritten",
                  .matches = {Matcher{}.path_prefix("/old")},
                  .destinations = {destination("backend")}};
  rewritten.rewrite = Rewrite{.uri = "/new"};
  rewritten.request_headers.set.push_back({"x-tier", "gold"});
  auto cfg = make_config({direct, rewritten}, {loopback_upstream("backend", {up.port()})});
  LocalRateLimit filter = local_limit(100);
  // One token for the path as the client sent it, one for the route's
  // header: neither the rewrite nor the header edit has happened yet.
  filter.descriptors.push_back({{{"PATH", "/old/x"}}, TokenBucket{1, 1, 60s}});
  filter.descriptors.push_back({{{"TIER", "gold"}}, TokenBucket{1, 1, 60s}});
  cfg.rate_limits.local = filter;
  LocalRateLimit one = local_limit(1);
  cfg.rate_limits.local_overrides.push_back({"all", "direct", "", one});
  cfg.rate_limits.rate_limits.push_back({"all", "", {RateLimitRule{{path_to("PATH")}}}});
  cfg.rate_limits.rate_limits.push_back(
      {"all",
       "",
       {RateLimitRule{{RateLimitAction{RateLimitAction::RequestHeaders{"x-tier", "TIER"}}}}}});
  Running gw(cfg, clock, 1);

  // A direct response is limited like any route (Envoy answers it in the
  // router, after the rate-limit filters).
  auto first = get(gw.port(), "/direct");
  REQUIRE(first);
  CHECK(first->status == 200);
  CHECK(first->body == "hello");
  CHECK(status_of(gw.port(), "/direct") == 429);

  // The PATH descriptor is the path received, so its bucket empties; the
  // TIER descriptor never appears (the header is added after the limits).
  CHECK(status_of(gw.port(), "/old/x") == 200);
  CHECK(status_of(gw.port(), "/old/x") == 429);
  CHECK(status_of(gw.port(), "/old/y") == 200);
  CHECK(status_of(gw.port(), "/old/y") == 200);
  auto seen = up.requests();
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].target == "/new/x");
  CHECK(seen[0].header("x-tier") == "gold");
}

TEST_CASE(
    "ratelimit api: filter_enforced 0 forwards limited requests with the not-enforced header") {
  FakeUpstream up("ok");
  ManualClock clock;
  auto cfg = single_upstream_config(up.port());
  LocalRateLimit l = local_limit(1);
  l.filter_enforced = FractionalPercent::percent(0);
  l.request_headers_to_add_when_not_enforced.push_back({"x-over-limit", "yes"});
  cfg.rate_limits.local = l;
  Running gw(cfg, clock, 1);

  CHECK(status_of(gw.port(), "/one") == 200);
  CHECK(status_of(gw.port(), "/two") == 200);
  auto seen = up.requests();
  REQUIRE(seen.size() == 2);
  CHECK_FALSE(seen[0].header("x-over-limit"));
  CHECK(seen[1].header("x-over-limit") == "yes");
}

TEST_CASE("ratelimit api: a global limit on Redis is shared by two gateways") {
  RedisServer redis;
  FakeUpstream up("ok");
  ManualClock clock;
  WallClock wall;
  auto cfg = single_upstream_config(up.port());
  GlobalRateLimit g;
  g.domain = "ratelimit";
  g.timeout = 2s;
  cfg.rate_limits.global = g;
  cfg.rate_limits.service.push_back(task_service(3));
  cfg.rate_limits.rate_limits.push_back({"all", "", {RateLimitRule{{path_to("PATH")}}}});
  cfg.rate_limits.redis_address = "127.0.0.1:" + std::to_string(redis.port());
  auto log = std::make_shared<LimitLog>();
  Running a(cfg, clock, 2, wall.fn(), log);
  Running b(cfg, clock, 1, wall.fn());

  CHECK(status_of(a.port(), "/productpage") == 200);
  CHECK(status_of(b.port(), "/productpage") == 200);
  CHECK(status_of(a.port(), "/productpage") == 200);
  auto over = get(b.port(), "/productpage");
  REQUIRE(over);
  CHECK(over->status == 429);
  CHECK(over->header("x-envoy-ratelimited") == "true");
  CHECK(status_of(a.port(), "/productpage") == 429);
  auto entry = log->nth(3);
  CHECK(entry.flags == "RL");
  CHECK(entry.details == "request_rate_limited");
  // Other paths have a limit of their own (100 a minute).
  CHECK(status_of(a.port(), "/reviews") == 200);
  CHECK(up.requests().size() == 4);

  // The next minute is a new window.
  wall.seconds += 60;
  CHECK(status_of(b.port(), "/productpage") == 200);
}

TEST_CASE("ratelimit api: with Redis down requests pass, or are refused with failure_mode_deny") {
  std::string address;
  {
    RedisServer redis;
    address = "127.0.0.1:" + std::to_string(redis.port());
  }  // stopped: nothing listens there any more
  FakeUpstream up("ok");
  ManualClock clock;
  WallClock wall;
  auto cfg = single_upstream_config(up.port());
  GlobalRateLimit g;
  g.domain = "ratelimit";
  g.timeout = 2s;
  cfg.rate_limits.global = g;
  cfg.rate_limits.service.push_back(task_service(1));
  cfg.rate_limits.rate_limits.push_back({"all", "", {RateLimitRule{{path_to("PATH")}}}});
  cfg.rate_limits.redis_address = address;
  auto log = std::make_shared<LimitLog>();
  Running gw(cfg, clock, 1, wall.fn(), log);

  CHECK(status_of(gw.port(), "/productpage") == 200);
  CHECK(status_of(gw.port(), "/productpage") == 200);
  auto snap = gw.gateway().snapshot();
  REQUIRE(snap->rate_limits);
  CHECK(snap->rate_limits->global->stats().failure_mode_allowed.load() == 2);

  cfg.rate_limits.global->failure_mode_deny = true;
  REQUIRE(gw.gateway().apply(cfg).ok());
  auto refused = get(gw.port(), "/productpage");
  REQUIRE(refused);
  CHECK(refused->status == 500);
  auto entry = log->nth(3);
  CHECK(entry.flags == "RLSE");
  CHECK(entry.details == "rate_limiter_error");
  CHECK(up.requests().size() == 2);
}

TEST_CASE("ratelimit api: config errors name the field") {
  auto cfg = single_upstream_config(1);
  GlobalRateLimit g;
  g.domain = "ratelimit";
  cfg.rate_limits.global = g;
  auto compiled = compile(cfg);
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.error().to_string().starts_with("RateLimitConfig: redis_address: required"));
  cfg.rate_limits.redis_address = "localhost";
  compiled = compile(cfg);
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.error().field == "redis_address");
  cfg.rate_limits.redis_address = "127.0.0.1:6379";
  cfg.rate_limits.global->timeout = 0ms;
  compiled = compile(cfg);
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.error().field == "global.timeout");
  cfg.rate_limits.global->timeout = 20ms;
  cfg.rate_limits.rate_limits.push_back({"all", "", {RateLimitRule{}}});
  compiled = compile(cfg);
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.error().field == "rate_limits[0].rate_limits[0].actions");
}

}  // namespace ratelimit_api_test
