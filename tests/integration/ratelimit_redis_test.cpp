// The global rate limit against a real redis-server (lib/security/redis,
// lib/security/ratelimit_global): each test starts its own redis-server on
// a free 127.0.0.1 port with a temporary directory and no persistence, and
// kills it at the end. Two limiter instances with their own clients share
// one limit through it; with Redis gone, requests pass (fail open) or are
// refused (failure_mode_deny).

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "security/ratelimit_global.hpp"
#include "security/redis.hpp"
#include "support/redis_server.hpp"

namespace ratelimit_redis_test {

using namespace sluice;
using namespace sluice::security;
using namespace std::chrono_literals;
using sluice::test::RedisServer;

namespace {

// Runs `task` on `context` until it finishes (bounded).
template <typename T>
std::optional<T> run(asio::io_context& context, asio::awaitable<T> task) {
  std::optional<T> out;
  asio::co_spawn(
      context,
      [&out, task = std::move(task)]() mutable -> asio::awaitable<void> {
        out.emplace(co_await std::move(task));
      },
      asio::detached);
  context.restart();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!out && std::chrono::steady_clock::now() < deadline) context.run_one_for(100ms);
  return out;
}

RedisOptions options(uint16_t port) {
  RedisOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  return o;
}

// The Istio task's service configuration, with a small limit on one path.
std::vector<RateLimitServiceConfig> service(uint32_t productpage_per_minute) {
  using Unit = RateLimitServiceConfig::Unit;
  using Limit = RateLimitServiceConfig::RateLimit;
  RateLimitServiceConfig c;
  c.domain = "ratelimit";
  c.descriptors.push_back({"PATH", "/productpage", Limit{Unit::minute, productpage_per_minute}});
  c.descriptors.push_back({"PATH", "", Limit{Unit::minute, 100}});
  return {c};
}

std::shared_ptr<GlobalRateLimiter> limiter(bool failure_mode_deny = false,
                                           uint32_t per_minute = 3) {
  GlobalRateLimit g;
  g.domain = "ratelimit";
  g.failure_mode_deny = failure_mode_deny;
  g.timeout = 2s;  // generous: sanitizer builds on a busy machine
  auto l = GlobalRateLimiter::create(g, service(per_minute), "EnvoyFilter filter-ratelimit");
  REQUIRE_MESSAGE(l.ok(), l.error().to_string());
  return l.value();
}

// A fixed wall-clock time in the middle of a minute, so every check of a
// test falls into one window.
const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'030));

GlobalDecision::Outcome check(asio::io_context& context, RedisClient& client,
                              const GlobalRateLimiter& l, std::string path, std::mt19937_64& rng) {
  std::vector<Descriptor> d{{{"PATH", std::move(path)}}};
  auto decision = run(context, l.check(client, d, kNow, rng));
  REQUIRE(decision.has_value());
  return decision->outcome;
}

}  // namespace

TEST_CASE("ratelimit redis: the client pipelines commands and returns replies in order") {
  RedisServer server;
  asio::io_context context;
  RedisClient client(context, options(server.port()));
  std::vector<RedisCommand> commands{
      {"SET", "k", "41"}, {"INCRBY", "k", "1"},    {"GET", "k"},
      {"GET", "missing"}, {"INCRBY", "text", "x"}, {"SET", "bin", std::string("a\r\n\0b", 5)},
      {"GET", "bin"}};
  auto replies = run(context, client.execute(commands, 2s));
  REQUIRE(replies.has_value());
  REQUIRE_MESSAGE(replies->ok(), replies->error().to_string());
  const auto& r = replies->value();
  REQUIRE(r.size() == 7);
  CHECK(r[0].type == RedisReply::Type::status);
  CHECK(r[0].str == "OK");
  CHECK(r[1].type == RedisReply::Type::integer);
  CHECK(r[1].integer == 42);
  CHECK(r[2].str == "42");
  CHECK(r[3].type == RedisReply::Type::nil);
  CHECK(r[4].type == RedisReply::Type::error);
  CHECK(r[6].str == std::string("a\r\n\0b", 5));
  RedisStats s = client.stats();
  CHECK(s.calls == 1);
  CHECK(s.connects == 1);
  CHECK(s.failed == 0);
}

TEST_CASE("ratelimit redis: concurrent calls stay within the connection bound") {
  RedisServer server;
  asio::io_context context;
  RedisOptions o = options(server.port());
  o.max_connections = 2;
  RedisClient client(context, o);
  int done = 0, ok = 0;
  for (int i = 0; i < 50; ++i) {
    std::vector<RedisCommand> commands{{"INCRBY", "counter", "1"}};
    client.execute(commands, 2s, [&](RedisReplies r) {
      ++done;
      if (r.ok() && r.value().size() == 1 && r.value()[0].type == RedisReply::Type::integer) ++ok;
    });
  }
  CHECK(client.stats().open_connections == 2);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (done < 50 && std::chrono::steady_clock::now() < deadline) context.run_one_for(100ms);
  CHECK(done == 50);
  CHECK(ok == 50);
  CHECK(client.stats().connects == 2);
  auto total = run(context, client.execute({{"GET", "counter"}}, 2s));
  REQUIRE(total.has_value());
  REQUIRE(total->ok());
  CHECK(total->value()[0].str == "50");

  // Beyond max_pending a call fails at once instead of queueing.
  o.max_pending = 1;
  RedisClient tight(context, o);
  std::optional<bool> first_ok, second_ok;
  tight.execute({{"PING"}}, 2s, [&](RedisReplies r) { first_ok = r.ok(); });
  tight.execute({{"PING"}}, 2s, [&](RedisReplies r) { second_ok = r.ok(); });
  deadline = std::chrono::steady_clock::now() + 10s;
  while ((!first_ok || !second_ok) && std::chrono::steady_clock::now() < deadline)
    context.run_one_for(100ms);
  CHECK(first_ok == true);
  CHECK(second_ok == false);
}

TEST_CASE("ratelimit redis: two limiter instances share one limit through Redis") {
  RedisServer server;
  // Two gateways: separate limiters, clients and event loops, as two
  // processes would have.
  asio::io_context context_a, context_b;
  RedisClient client_a(context_a, options(server.port()));
  RedisClient client_b(context_b, options(server.port()));
  auto a = limiter(false, 3);
  auto b = limiter(false, 3);
  std::mt19937_64 rng(1);
  using O = GlobalDecision::Outcome;
  CHECK(check(context_a, client_a, *a, "/productpage", rng) == O::ok);
  CHECK(check(context_b, client_b, *b, "/productpage", rng) == O::ok);
  CHECK(check(context_a, client_a, *a, "/productpage", rng) == O::ok);
  // The fourth in the window is over the limit, whichever instance sees it.
  CHECK(check(context_b, client_b, *b, "/productpage", rng) == O::over_limit);
  CHECK(check(context_a, client_a, *a, "/productpage", rng) == O::over_limit);
  // Another path has its own counter.
  CHECK(check(context_b, client_b, *b, "/reviews", rng) == O::ok);
  CHECK(a->stats().ok == 2);
  CHECK(a->stats().over_limit == 1);
  CHECK(b->stats().ok == 2);
  CHECK(b->stats().over_limit == 1);
  // One round trip per request.
  CHECK(client_a.stats().calls == 3);
  CHECK(client_b.stats().calls == 3);

  // The counter sits under the reference service's key, with the window's
  // expiry.
  auto counter =
      run(context_a, client_a.execute({{"GET", "ratelimit_PATH_/productpage_1699999980"},
                                       {"TTL", "ratelimit_PATH_/productpage_1699999980"}},
                                      2s));
  REQUIRE(counter.has_value());
  REQUIRE(counter->ok());
  CHECK(counter->value()[0].str == "5");
  CHECK(counter->value()[1].integer > 0);
  CHECK(counter->value()[1].integer <= 60);

  // The next window starts over.
  std::vector<Descriptor> d{{{"PATH", "/productpage"}}};
  auto next = run(context_a, a->check(client_a, d, kNow + 60s, rng));
  REQUIRE(next.has_value());
  CHECK(next->outcome == O::ok);
}

TEST_CASE(
    "ratelimit redis: with Redis stopped requests pass, or are refused with failure_mode_deny") {
  RedisServer server;
  asio::io_context context;
  RedisClient client(context, options(server.port()));
  auto open = limiter(/*failure_mode_deny=*/false);
  auto deny = limiter(/*failure_mode_deny=*/true);
  std::mt19937_64 rng(1);
  using O = GlobalDecision::Outcome;
  // A connection is open when Redis goes away.
  CHECK(check(context, client, *open, "/productpage", rng) == O::ok);
  server.stop();

  CHECK(check(context, client, *open, "/productpage", rng) == O::error_allowed);
  CHECK(check(context, client, *open, "/productpage", rng) == O::error_allowed);
  CHECK(open->stats().failure_mode_allowed == 2);
  CHECK(open->stats().error == 2);

  std::vector<Descriptor> d{{{"PATH", "/productpage"}}};
  auto refused = run(context, deny->check(client, d, kNow, rng));
  REQUIRE(refused.has_value());
  CHECK(refused->outcome == O::error_denied);
  REQUIRE(refused->response.has_value());
  CHECK(refused->response->status == 500);
  CHECK_FALSE(refused->error.empty());
  CHECK(deny->stats().failure_mode_allowed == 0);
  CHECK(client.stats().connect_failures >= 1);
}

TEST_CASE("ratelimit redis: a server that never answers times out and the connection is dropped") {
  // Connections queue on a listening socket nobody accepts from: the
  // connect completes, the reply never comes.
  test::LoopbackPort silent(/*backlog=*/8);
  asio::io_context context;
  RedisClient client(context, options(silent.port()));
  auto replies = run(context, client.execute({{"PING"}}, 100ms));
  REQUIRE(replies.has_value());
  REQUIRE_FALSE(replies->ok());
  CHECK(replies->error().message == "timeout");
  CHECK(client.stats().timeouts == 1);
  CHECK(client.stats().open_connections == 0);

  GlobalRateLimit g;
  g.domain = "ratelimit";
  g.failure_mode_deny = true;
  g.timeout = 100ms;
  auto l = GlobalRateLimiter::create(g, service(3), "EnvoyFilter filter-ratelimit");
  REQUIRE(l.ok());
  std::mt19937_64 rng(1);
  std::vector<Descriptor> d{{{"PATH", "/productpage"}}};
  auto decision = run(context, l.value()->check(client, d, kNow, rng));
  REQUIRE(decision.has_value());
  CHECK(decision->outcome == GlobalDecision::Outcome::error_denied);
}

TEST_CASE("ratelimit redis: nothing to count asks Redis nothing") {
  // No server at all: a request whose descriptors match no limit passes
  // without a call.
  test::LoopbackPort closed;  // bound, not listening: connects are refused
  asio::io_context context;
  RedisClient client(context, options(closed.port()));
  auto l = limiter(/*failure_mode_deny=*/true);
  std::mt19937_64 rng(1);
  std::vector<Descriptor> d{{{"USER", "jason"}}};
  auto decision = run(context, l->check(client, d, kNow, rng));
  REQUIRE(decision.has_value());
  CHECK(decision->outcome == GlobalDecision::Outcome::ok);
  CHECK(client.stats().calls == 0);
  CHECK(check(context, client, *l, "/productpage", rng) == GlobalDecision::Outcome::error_denied);
  CHECK(client.stats().calls == 1);
}

}  // namespace ratelimit_redis_test
