// Retries, timeouts, drain and idle parking through the C++ API (issue 11,
// item 4): behaviours covered elsewhere only through YAML, or not at all.
// Every case asserts what the upstream received, not only the status.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "support/body_pattern.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace api_behaviour_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// What on_log saw, including what RecordingHooks leaves out.
struct Seen {
  std::string target;
  uint16_t status = 0;
  std::string flags;
  std::string details;
  uint32_t attempts = 0;
  std::string client_address;
  std::chrono::microseconds duration{0};  // on the gateway's clock
};

class DetailHooks : public Hooks {
 public:
  void on_log(const RequestContext& c) override {
    Seen s{c.request.target,
           c.response_status,
           to_string(c.response_flags),
           std::string(c.response_code_details),
           c.attempts,
           std::string(c.client_address),
           c.duration};
    {
      std::lock_guard lock(mutex_);
      seen_.push_back(std::move(s));
    }
    cv_.notify_all();
  }
  bool wait_for(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return seen_.size() >= n; });
  }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  // The (only) entry for `target`; a default Seen if none.
  Seen of(std::string_view target) const {
    std::lock_guard lock(mutex_);
    for (const auto& s : seen_)
      if (s.target == target) return s;
    return {};
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Seen> seen_;
};

Route retrying(std::string retry_on, uint32_t attempts) {
  Route route = forward_all("backend");
  route.retries.retry_on = std::move(retry_on);
  route.retries.attempts = attempts;
  route.retries.backoff_base = 5ms;
  return route;
}

size_t count_target(const FakeUpstream& up, std::string_view target) {
  size_t n = 0;
  for (const auto& r : up.requests()) n += r.target == target;
  return n;
}

std::optional<HttpResponse> roundtrip(RawClient& c, const std::string& request) {
  if (!c.send(request)) return std::nullopt;
  return c.read_response();
}

constexpr size_t kBody = 1024;

}  // namespace

// --- 1, 2. Replay of a request body ----------------------------------------

// Catches: a retry that resends a truncated, empty or re-read body, a
// replayed chunked upload losing its framing, a fresh request id per attempt.
TEST_CASE("api: a POST body is replayed whole on a 5xx retry") {
  FakeUpstream up;
  std::atomic<int> calls{0};
  up.set_handler([&](const Received&) {
    Reply r;
    r.status = ++calls == 1 ? 503 : 200;
    r.body = r.status == 200 ? "stored" : "unavailable";
    return r;
  });
  auto hooks = std::make_shared<DetailHooks>();
  TestGateway gw(make_config({retrying("5xx", 2)}, {loopback_upstream("backend", {up.port()})}), 1,
                 hooks);
  RawClient c(gw.port());
  bool chunked = false;
  SUBCASE("content-length") {
    REQUIRE(c.send(make_request("POST", "/upload", "example.com", {}, pattern_string(kBody))));
  }
  SUBCASE("chunked") {
    chunked = true;
    REQUIRE(
        c.send("POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"));
    REQUIRE(c.send_pattern_chunked(kBody, 300));
  }
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  CHECK(r->body == "stored");
  auto reqs = up.requests();
  REQUIRE(reqs.size() == 2);
  for (const auto& q : reqs) {
    CHECK(q.method == "POST");
    CHECK(q.body_bytes == kBody);
    CHECK(q.body_checksum == pattern_checksum(kBody));
    CHECK(q.chunked == chunked);
  }
  REQUIRE(reqs[0].header("x-request-id"));
  CHECK(reqs[0].header("x-request-id") == reqs[1].header("x-request-id"));
  REQUIRE(hooks->wait_for(1));
  auto s = hooks->of("/upload");
  CHECK(s.attempts == 2);
  CHECK(s.flags == "-");
  CHECK(s.details.empty());
}

// Catches: resending a body that did not fit the replay buffer (half a
// request upstream), an off-by-one at the limit, losing the reason.
TEST_CASE("api: a body over max_replay_bytes is not retried, at the limit it is") {
  FakeUpstream up;
  up.set_handler([](const Received&) {
    Reply r;
    r.status = 503;
    r.body = "unavailable";
    return r;
  });
  auto hooks = std::make_shared<DetailHooks>();
  Route route = retrying("5xx", 2);
  SUBCASE("over the limit: the 503 stands") {
    route.retries.max_replay_bytes = kBody / 2;
    TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}), 1, hooks);
    RawClient c(gw.port());
    auto r = roundtrip(c, make_request("POST", "/big", "example.com", {}, pattern_string(kBody)));
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 503);
    CHECK(r->body == "unavailable");  // the upstream's own answer
    REQUIRE(up.request_count() == 1);
    CHECK(up.last_request()->body_checksum == pattern_checksum(kBody));
    REQUIRE(hooks->wait_for(1));
    auto s = hooks->of("/big");
    CHECK(s.details == "retry_skipped_body_over_replay_buffer");
    CHECK(s.attempts == 1);
    CHECK(s.status == 503);
  }
  SUBCASE("exactly at the limit: retried") {
    route.retries.max_replay_bytes = kBody;
    TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}), 1, hooks);
    RawClient c(gw.port());
    auto r = roundtrip(c, make_request("POST", "/fits", "example.com", {}, pattern_string(kBody)));
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 503);
    CHECK(up.request_count() == 3);  // 1 + 2 retries, each with the whole body
    for (const auto& q : up.requests()) CHECK(q.body_checksum == pattern_checksum(kBody));
    REQUIRE(hooks->wait_for(1));
    CHECK(hooks->of("/fits").attempts == 3);
    CHECK(hooks->of("/fits").details.empty());
  }
}

// --- 3. Per-try timeout, route timeout, retry backoff ----------------------------

// On a ManualClock: each try is held by the upstream, and the clock is moved
// to 1 ms before the per-try timeout, then to it. The log's duration (on the
// gateway's clock) says when the tries ended: a timeout that fired early, or
// late, shows there.
// Catches: per_try_timeout ignored (the request would hang: no route or
// upstream timeout is set), a timeout not counted as retriable under 5xx,
// the wrong code, flag or details when every try times out, a per-try
// deadline that does not follow the gateway's clock.
TEST_CASE("api: per_try_timeout ends a held try and retries, all held is 504 UT") {
  FakeUpstream up;
  std::atomic<int> calls{0};
  bool hold_all = false;
  SUBCASE("first try held, second answered") {}
  SUBCASE("every try held") {
    hold_all = true;
  }
  up.set_handler([&](const Received&) {
    Reply r;
    r.body = "second";
    r.hold = ++calls == 1 || hold_all;
    return r;
  });
  Route route = retrying("5xx", 1);
  route.retries.per_try_timeout = 200ms;
  route.retries.backoff_base = 0ms;  // the retry follows at once
  auto hooks = std::make_shared<DetailHooks>();
  ManualClock clock;
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}), 1, hooks,
                 &clock);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/slow")));
  size_t tries = hold_all ? 2 : 1;
  for (size_t held = 1; held <= tries; ++held) {
    REQUIRE(wait_until([&] { return up.held() == held; }));
    clock.settle();  // the try's deadline is armed
    clock.advance(199ms);
    clock.advance(1ms);
  }
  auto r = c.read_response();
  up.release();
  REQUIRE_MESSAGE(r, c.error());
  REQUIRE(hooks->wait_for(1));
  auto s = hooks->of("/slow");
  CHECK(up.request_count() == 2);
  CHECK(s.attempts == 2);
  if (!hold_all) {
    CHECK(s.duration == 200ms);  // the first try was waited for, exactly
    CHECK(r->status == 200);
    CHECK(r->body == "second");
    CHECK(s.flags == "-");
  } else {
    CHECK(s.duration == 400ms);  // two tries of 200 ms each
    CHECK(r->status == 504);
    CHECK(r->body == "upstream request timeout");
    CHECK(s.flags == "URX,UT");  // the retry policy's attempts are used up
    CHECK(s.details == "upstream_per_try_timeout");
  }
}

// Catches: the route timeout read from steady_clock, fired early or not
// at all, the wrong answer.
TEST_CASE("api: the route timeout answers 504 UT when the clock reaches it") {
  FakeUpstream up;
  up.set_handler([](const Received&) { return Reply{.hold = true}; });
  Route route = forward_all("backend");
  route.timeout = 3s;
  auto hooks = std::make_shared<DetailHooks>();
  ManualClock clock;
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}), 1, hooks,
                 &clock);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/held")));
  REQUIRE(wait_until([&] { return up.held() == 1; }));
  clock.settle();
  // The held upstream connection is closed the moment the timeout fires.
  clock.advance(3s - 1ms);
  CHECK(gw.gateway().upstream("backend").connections == 1);
  clock.advance(1ms);
  CHECK(gw.gateway().upstream("backend").connections == 0);
  auto r = c.read_response();
  up.release();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 504);
  CHECK(r->body == "upstream request timeout");
  REQUIRE(hooks->wait_for(1));
  auto s = hooks->of("/held");
  CHECK(s.flags == "UT");
  CHECK(s.details == "upstream_timeout");
  CHECK(s.duration == 3s);
  CHECK(up.request_count() == 1);
}

// The backoff is drawn from the worker's RNG (seed 42 in TestGateway), so
// with a fixed seed it is one fixed value: the retry starts at the same
// step of the clock every run. Between steps nothing happens, whatever the
// real time.
// Catches: a backoff slept on steady_clock (the retry would start without
// the clock moving, or never), a backoff skipped.
TEST_CASE("api: the retry backoff waits on the gateway's clock") {
  FakeUpstream up;
  std::atomic<int> calls{0};
  up.set_handler([&](const Received&) {
    Reply r;
    r.status = ++calls == 1 ? 503 : 200;
    r.body = r.status == 200 ? "retried" : "unavailable";
    return r;
  });
  Route route = retrying("5xx", 1);
  route.retries.backoff_base = 1000ms;  // the first retry waits [0, 1000) ms
  auto hooks = std::make_shared<DetailHooks>();
  ManualClock clock;
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}), 1, hooks,
                 &clock);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/retry")));
  // The 503 was read and its connection closed: the session is in the backoff.
  auto view = [&] { return gw.gateway().upstream("backend"); };
  REQUIRE(wait_until([&] {
    auto v = view();
    return up.request_count() == 1 && v.active_requests == 0 && v.connections == 0;
  }));
  clock.settle();
  CHECK(view().connections == 0);
  // A retry that starts opens a connection before this advance returns.
  int steps = 0;
  while (view().connections == 0 && steps < 100) {
    clock.advance(10ms);
    ++steps;
  }
  CHECK(steps == 9);  // the backoff drawn for seed 42 is in [80, 90) ms
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  CHECK(r->body == "retried");
  REQUIRE(hooks->wait_for(1));
  CHECK(hooks->of("/retry").attempts == 2);
  CHECK(hooks->of("/retry").duration == steps * 10ms);
  CHECK(up.request_count() == 2);
}

// --- 3b. Upstream idle connections expire on the gateway's clock ---------------

// Catches: the pool's idle check on steady_clock (the third request would
// reuse the connection), or expiring a connection before its time.
TEST_CASE("api: a pooled upstream connection is reused until idle_timeout, then replaced") {
  FakeUpstream up;
  auto backend = loopback_upstream("backend", {up.port()});
  backend.pool.idle_timeout = 10s;
  ManualClock clock;
  TestGateway gw(make_config({forward_all("backend")}, {backend}), 1, nullptr, &clock);
  RawClient c(gw.port());
  auto served = [&] {
    auto r = roundtrip(c, make_request("GET", "/"));
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 200);
    clock.settle();  // the upstream connection is back in the pool
  };
  served();
  clock.advance(10s - 1ms);
  served();
  CHECK(up.connections_accepted() == 1);  // reused
  clock.advance(10s);
  served();
  CHECK(up.connections_accepted() == 2);  // idle too long: a new one
  auto reqs = up.requests();
  REQUIRE(reqs.size() == 3);
  CHECK(reqs[1].connection_index == 0);
  CHECK(reqs[2].connection_index == 1);
}

// --- 4. Free resend on a pooled connection the upstream dropped --------------

// Deterministic stand-in for a stale pooled connection: the upstream reads
// the second request on its first connection and resets without a byte of
// response, which the gateway cannot tell apart from a keep-alive race. The
// route's retry_on ("retriable-4xx") does not cover resets and the retry
// budget is 0, so only the free resend can produce the 200.
// Catches: the free resend gone, counted as an attempt, charged to the retry
// budget, or done with retries off after the request reached the upstream.
TEST_CASE("api: a pooled connection reset before any response byte is resent once for free") {
  FakeUpstream up;
  std::atomic<int> second_calls{0};
  std::atomic<bool> second_503{false};
  up.set_handler([&](const Received& q) {
    Reply r;
    r.body = "ok";
    if (q.target == "/second") {
      int n = ++second_calls;
      r.reset_before_response = q.connection_index == 0 && q.index_on_connection == 1;
      if (n == 2 && second_503) r.status = 503;
    }
    return r;
  });
  auto backend = loopback_upstream("backend", {up.port()});
  auto hooks = std::make_shared<DetailHooks>();
  Route route = retrying("retriable-4xx", 1);
  uint16_t want_status = 200;
  uint32_t want_attempts = 1;
  int want_second = 2;
  SUBCASE("retries on: resent on a fresh connection, not counted") {
    backend.pool.max_retries = 0;
  }
  SUBCASE("the resend does not use up the route's attempts") {
    route.retries.retry_on = "5xx";
    second_503 = true;  // the resend gets a 503: the one real retry follows
    want_attempts = 2;
    want_second = 3;
  }
  SUBCASE("retries off: the request reached the upstream, 502 UC") {
    route.retries.attempts = 0;
    want_status = 502;
    want_second = 1;
  }
  TestGateway gw(make_config({route}, {backend}), 1, hooks);
  RawClient c(gw.port());
  auto first = roundtrip(c, make_request("GET", "/first"));
  REQUIRE_MESSAGE(first, c.error());
  CHECK(first->status == 200);
  auto second = roundtrip(c, make_request("GET", "/second"));
  REQUIRE_MESSAGE(second, c.error());
  CHECK(second->status == want_status);
  REQUIRE(hooks->wait_for(2));
  auto s = hooks->of("/second");
  CHECK(s.attempts == want_attempts);
  CHECK(count_target(up, "/second") == size_t(want_second));
  if (want_status == 200) {
    CHECK(second->body == "ok");
    CHECK(s.flags == "-");
    // The resend went out on a new upstream connection, as its first request.
    auto reqs = up.requests();
    REQUIRE(reqs.size() >= 3);
    CHECK(reqs[2].target == "/second");
    CHECK(reqs[2].connection_index == 1);
    CHECK(reqs[2].index_on_connection == 0);
  } else {
    CHECK(s.flags == "UC");
    CHECK(s.details == "upstream_reset_before_response_started");
    CHECK(up.connections_accepted() == 1);
  }
}

// Catches: a body lost or truncated on the free resend.
TEST_CASE("api: the free resend of a POST carries the whole body again") {
  FakeUpstream up;
  up.set_handler([](const Received& q) {
    Reply r;
    r.body = "ok";
    r.reset_before_response = q.connection_index == 0 && q.index_on_connection == 1;
    return r;
  });
  auto hooks = std::make_shared<DetailHooks>();
  TestGateway gw(
      make_config({retrying("retriable-4xx", 1)}, {loopback_upstream("backend", {up.port()})}), 1,
      hooks);
  RawClient c(gw.port());
  REQUIRE(roundtrip(c, make_request("GET", "/first")));
  auto r = roundtrip(c, make_request("POST", "/post", "example.com", {}, pattern_string(kBody)));
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  auto reqs = up.requests();
  REQUIRE(reqs.size() == 3);
  for (size_t i : {1, 2}) {
    CHECK(reqs[i].method == "POST");
    CHECK(reqs[i].body_bytes == kBody);
    CHECK(reqs[i].body_checksum == pattern_checksum(kBody));
  }
  REQUIRE(hooks->wait_for(2));
  CHECK(hooks->of("/post").attempts == 1);
}

// --- 5. Retry budget (max_retries) and URX ------------------------------------

// Catches: the budget ignored, a refused retry made anyway, the reason lost,
// a refused retry counted as a circuit-breaking overflow (UO).
TEST_CASE("api: max_retries 0 refuses every retry: the 5xx stands with retry_overflow") {
  FakeUpstream up;
  up.set_handler([](const Received&) {
    Reply r;
    r.status = 503;
    r.body = "unavailable";
    return r;
  });
  auto backend = loopback_upstream("backend", {up.port()});
  backend.pool.max_retries = 0;
  auto hooks = std::make_shared<DetailHooks>();
  TestGateway gw(make_config({retrying("5xx", 2)}, {backend}), 1, hooks);
  RawClient c(gw.port());
  auto r = roundtrip(c, make_request("GET", "/x"));
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 503);
  CHECK(r->body == "unavailable");
  CHECK(up.request_count() == 1);
  REQUIRE(hooks->wait_for(1));
  auto s = hooks->of("/x");
  CHECK(s.details == "retry_overflow");
  CHECK(s.flags == "UO");  // Envoy: a retry refused by the budget is an overflow
  CHECK(s.attempts == 1);
  CHECK(gw.gateway().upstream("backend").overflows == 0);
}

// Catches: the budget not counting retries in flight, or never giving a
// place back once the retry is over.
TEST_CASE("api: max_retries 1: a retry in flight makes a concurrent one overflow") {
  FakeUpstream up;
  std::atomic<int> a_calls{0}, c_calls{0};
  up.set_handler([&](const Received& q) {
    Reply r;
    r.body = "ok";
    if (q.target == "/a") {
      if (++a_calls == 1)
        r.status = 503;
      else
        r.hold = true;  // A's retry stays in flight
    } else if (q.target == "/b") {
      r.status = 503;
    } else if (q.target == "/c") {
      if (++c_calls == 1) r.status = 503;
    }
    return r;
  });
  auto backend = loopback_upstream("backend", {up.port()});
  backend.pool.max_retries = 1;
  auto hooks = std::make_shared<DetailHooks>();
  TestGateway gw(make_config({retrying("5xx", 1)}, {backend}), 2, hooks);
  RawClient a(gw.port());
  REQUIRE(a.send(make_request("GET", "/a")));
  REQUIRE(wait_until([&] { return up.held() == 1; }));

  RawClient b(gw.port());
  auto rb = roundtrip(b, make_request("GET", "/b"));
  REQUIRE_MESSAGE(rb, b.error());
  CHECK(rb->status == 503);
  CHECK(count_target(up, "/b") == 1);
  REQUIRE(hooks->wait_for(1));
  CHECK(hooks->of("/b").details == "retry_overflow");
  CHECK(hooks->of("/b").flags == "UO");
  CHECK(hooks->of("/b").attempts == 1);

  up.release();
  auto ra = a.read_response();
  REQUIRE_MESSAGE(ra, a.error());
  CHECK(ra->status == 200);
  REQUIRE(hooks->wait_for(2));
  CHECK(hooks->of("/a").attempts == 2);
  CHECK(hooks->of("/a").details.empty());

  // A's retry is over: the place is free again.
  RawClient c(gw.port());
  auto rc = roundtrip(c, make_request("GET", "/c"));
  REQUIRE_MESSAGE(rc, c.error());
  CHECK(rc->status == 200);
  CHECK(count_target(up, "/c") == 2);
  REQUIRE(hooks->wait_for(3));
  CHECK(hooks->of("/c").attempts == 2);
}

// Catches: URX missing after retries of connect failures (or present
// without a retry), the wrong attempt count, a refused retry still made.
TEST_CASE("api: connect failures after retries are 503 URX,UF, over the budget UO,UF") {
  LoopbackPort closed;  // bound, not listening: connects are refused
  auto backend = loopback_upstream("backend", {closed.port()});
  auto hooks = std::make_shared<DetailHooks>();
  std::string want_flags;
  uint32_t want_attempts = 0;
  SUBCASE("two retries") {
    want_flags = "URX,UF";
    want_attempts = 3;
  }
  SUBCASE("budget 0: no retry") {
    backend.pool.max_retries = 0;
    want_flags = "UO,UF";  // Envoy: the refused retry is an upstream overflow
    want_attempts = 1;
  }
  TestGateway gw(make_config({retrying("connect-failure", 2)}, {backend}), 1, hooks);
  RawClient c(gw.port());
  auto r = roundtrip(c, make_request("GET", "/down"));
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 503);
  CHECK(r->body.rfind("upstream connect error or disconnect/reset before headers", 0) == 0);
  REQUIRE(hooks->wait_for(1));
  auto s = hooks->of("/down");
  CHECK(s.flags == want_flags);
  CHECK(s.attempts == want_attempts);
  // The connect failure's details replace retry_overflow (see the report).
  CHECK(s.details == "upstream_connect_failure");
}

// --- 6. Library-level drain ----------------------------------------------------

// Catches: stop() not waiting for a request in flight (or cutting it off),
// listeners left open during the drain, idle keep-alive connections kept
// until the end, a drained response that keeps its connection alive.
TEST_CASE("api: stop() drains: a request in flight completes, new connections are refused") {
  FakeUpstream up;
  up.set_handler([](const Received& q) {
    Reply r;
    r.body = "done";
    r.hold = q.target == "/hold";
    return r;
  });
  TestGateway gw(single_upstream_config(up.port()), 2);
  uint16_t port = gw.port();
  RawClient idle(port);
  auto first = roundtrip(idle, make_request("GET", "/"));
  REQUIRE_MESSAGE(first, idle.error());
  CHECK(first->status == 200);
  RawClient busy(port);
  REQUIRE(busy.send(make_request("GET", "/hold")));
  REQUIRE(wait_until([&] { return up.held() == 1; }));

  std::atomic<bool> stopped{false};
  std::jthread stopper([&] {
    gw.gateway().stop();
    stopped = true;
  });
  // The idle keep-alive connection is closed at once, not at the end.
  CHECK(idle.is_closed(2s));
  CHECK(idle.buffered().empty());
  // New connections: refused, or closed without an answer.
  CHECK(wait_until([&] {
    RawClient probe(port, 1s);
    if (!probe.connected()) return true;
    probe.send(make_request("GET", "/"));
    return probe.is_closed(1s) && probe.buffered().find("200") == std::string::npos;
  }));
  CHECK_FALSE(stopped.load());  // still waiting for /hold

  up.release();
  auto r = busy.read_response();
  REQUIRE_MESSAGE(r, busy.error());
  CHECK(r->status == 200);
  CHECK(r->body == "done");
  CHECK(r->header("connection") == std::optional<std::string>("close"));
  CHECK(busy.is_closed(2s));
  stopper.join();
  CHECK(stopped.load());
}

// Catches: stop() blocking past drain_timeout on a request that never ends,
// or returning while the client's connection stays open.
TEST_CASE("api: stop() with a hold never released returns after drain_timeout and closes") {
  FakeUpstream up;
  up.set_handler([](const Received&) {
    Reply r;
    r.hold = true;
    return r;
  });
  auto config = single_upstream_config(up.port());
  config.limits.drain_timeout = 200ms;
  TestGateway gw(std::move(config), 1);
  RawClient c(gw.port(), 5s);
  REQUIRE(c.send(make_request("GET", "/forever")));
  REQUIRE(wait_until([&] { return up.held() == 1; }));
  auto start = std::chrono::steady_clock::now();
  gw.gateway().stop();
  auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed >= 150ms);  // it did wait for the request
  CHECK(elapsed < 2s);      // default drain_timeout is 5 s
  CHECK(c.is_closed(2s));
  CHECK(c.buffered().find("200") == std::string::npos);
  up.release();
}

// --- 7. Idle parking and resuming ---------------------------------------------

// The listener's sluice_listener_downstream_cx_parked gauge.
double parked_gauge(TestGateway& gw) {
  return gw.metric("sluice_listener_downstream_cx_parked");
}

// On a ManualClock parking happens at a known step: the tick that sees
// 50 ms of idleness (kParkAfter) parks the connection, and
// ManualClock::advance returns after that tick; the connection reaches the
// parked gauge once its session has handed it over. Each request after
// that arrives on a parked connection.
// Catches: a resumed connection losing bytes, a split head or pipelined
// requests; a parked connection that no longer drains or serves again.
TEST_CASE("api: an idle connection parks and resumes on the same client connection") {
  FakeUpstream up;
  auto hooks = std::make_shared<DetailHooks>();
  ManualClock clock;
  TestGateway gw(single_upstream_config(up.port()), 1, hooks, &clock);
  RawClient c(gw.port());
  auto park = [&] {
    clock.settle();  // idle from now
    clock.advance(150ms);
    REQUIRE(wait_until([&] { return parked_gauge(gw) == 1; }));
  };
  auto r1 = roundtrip(c, make_request("GET", "/1"));
  REQUIRE_MESSAGE(r1, c.error());
  CHECK(r1->status == 200);

  park();
  auto r2 = roundtrip(c, make_request("GET", "/2"));
  REQUIRE_MESSAGE(r2, c.error());
  CHECK(r2->status == 200);

  park();  // the head arrives in two parts
  REQUIRE(c.send("GET /3 HTTP/1.1\r\nHo"));
  REQUIRE(gateway_read_everything(gw.port(), c.local_port()));
  REQUIRE(c.send("st: example.com\r\n\r\n"));
  auto r3 = c.read_response();
  REQUIRE_MESSAGE(r3, c.error());
  CHECK(r3->status == 200);

  park();  // two pipelined requests
  REQUIRE(c.send(make_request("GET", "/4") + make_request("GET", "/5")));
  auto r4 = c.read_response();
  REQUIRE_MESSAGE(r4, c.error());
  auto r5 = c.read_response();
  REQUIRE_MESSAGE(r5, c.error());
  CHECK(r4->status == 200);
  CHECK(r5->status == 200);

  REQUIRE(hooks->wait_for(5));
  std::string me = "127.0.0.1:" + std::to_string(c.local_port());
  auto seen = hooks->seen();
  REQUIRE(seen.size() == 5);
  for (size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].target == "/" + std::to_string(i + 1));
    CHECK(seen[i].client_address == me);
  }
  auto reqs = up.requests();
  REQUIRE(reqs.size() == 5);
  for (size_t i = 0; i < reqs.size(); ++i) CHECK(reqs[i].target == "/" + std::to_string(i + 1));

  // A parked connection does not hold up the drain.
  park();
  auto start = std::chrono::steady_clock::now();
  gw.stop();
  CHECK(std::chrono::steady_clock::now() - start < 2s);  // drain_timeout is 5 s
  CHECK(c.is_closed(1s));
}

// Parked connections are records in pages of about 400 and descriptors in a
// per-worker epoll set. Catches: a record placed or found wrong past its
// page's first ones, a readiness lost when many come at once, a connection
// resumed on another's descriptor, a client's close not ending its record
// (cx_active), and the drain not closing what is parked.
TEST_CASE("api: many parked connections resume, end when their clients close, and drain") {
  // Each client holds two descriptors here (its own and the gateway's).
  constexpr size_t kClients = 600;
  rlimit rl{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  REQUIRE(rl.rlim_cur >= 2 * kClients + 256);

  FakeUpstream up;
  ManualClock clock;
  TestGateway gw(single_upstream_config(up.port()), 1, nullptr, &clock);
  auto active = [&] { return gw.metric("envoy_listener_downstream_cx_active"); };
  auto park = [&] {
    clock.settle();
    clock.advance(150ms);
    clock.settle();
    CHECK(wait_until([&] { return parked_gauge(gw) == active(); }));
  };
  auto serve = [&](RawClient& c, size_t i) {
    auto r = roundtrip(c, make_request("GET", "/" + std::to_string(i)));
    return r && r->status == 200;
  };
  std::vector<std::unique_ptr<RawClient>> clients;
  for (size_t i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<RawClient>(gw.port()));
    REQUIRE(serve(*clients.back(), i));
  }
  park();
  CHECK(active() == kClients);

  // All come back, in the reverse order of parking, two at once.
  for (size_t i = kClients; i >= 2; i -= 2) {
    REQUIRE(clients[i - 1]->send(make_request("GET", "/a")));
    REQUIRE(clients[i - 2]->send(make_request("GET", "/b")));
    auto a = clients[i - 1]->read_response();
    auto b = clients[i - 2]->read_response();
    REQUIRE_MESSAGE(a, clients[i - 1]->error());
    REQUIRE_MESSAGE(b, clients[i - 2]->error());
    CHECK(a->status == 200);
    CHECK(b->status == 200);
  }
  size_t before = up.request_count();
  park();
  // Every other client goes away while parked.
  for (size_t i = 0; i < kClients; i += 2) clients[i]->close();
  CHECK(wait_until([&] { return active() == kClients / 2; }));
  for (size_t i = 1; i < kClients; i += 2) REQUIRE(serve(*clients[i], i));
  CHECK(up.request_count() == before + kClients / 2);

  park();
  gw.stop();
  CHECK(active() == 0);
  for (size_t i = 1; i < kClients; i += 2) CHECK(clients[i]->is_closed(1s));
}

// Envoy's x-envoy-upstream-service-time: milliseconds from the request
// reaching the upstream to its response head, on the gateway's clock; it
// replaces an upstream's own value and a route can remove it.
// Catches: the header missing, measured on another clock, the upstream's
// value kept, or added after the route's edits (which could not remove it).
TEST_CASE("api: x-envoy-upstream-service-time counts the upstream's time, a route removes it") {
  FakeUpstream up;
  up.set_handler([](const Received&) {
    Reply r;
    r.headers.emplace_back("x-envoy-upstream-service-time", "999");
    r.hold = true;
    return r;
  });
  Route kept = forward_all("backend", "kept");
  kept.matches = {Matcher{}.path_prefix("/kept")};
  Route hidden = forward_all("backend", "hidden");
  hidden.response_headers.remove.push_back("x-envoy-upstream-service-time");
  ManualClock clock;
  TestGateway gw(make_config({kept, hidden}, {loopback_upstream("backend", {up.port()})}), 1,
                 nullptr, &clock);
  RawClient c(gw.port());

  REQUIRE(c.send(make_request("GET", "/kept")));
  REQUIRE(wait_until([&] { return up.held() == 1; }));
  // The upstream can hold the request before the gateway's write completion
  // ran (it stamps the send time): let the gateway catch up first.
  clock.settle();
  clock.advance(7ms);
  up.release();
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->header("x-envoy-upstream-service-time") == "7");
  CHECK(r->header_count("x-envoy-upstream-service-time") == 1);

  REQUIRE(c.send(make_request("GET", "/other")));
  REQUIRE(wait_until([&] { return up.held() == 1; }));
  clock.settle();
  clock.advance(3ms);
  up.release();
  auto hiddenr = c.read_response();
  REQUIRE_MESSAGE(hiddenr, c.error());
  CHECK(hiddenr->status == 200);
  CHECK_FALSE(hiddenr->header("x-envoy-upstream-service-time"));
}

}  // namespace api_behaviour_test
