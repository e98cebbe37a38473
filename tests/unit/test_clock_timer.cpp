// ClockTimer and the Loop's clock without sockets: waits follow the
// gateway's injected clock, not real time (issue 11, item 5).

#include <doctest/doctest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <optional>

#include "net/loop.hpp"

namespace test_clock_timer {

using namespace sluice;
using namespace std::chrono_literals;

namespace {

// A loop on a clock the test sets.
struct Manual {
  asio::io_context ctx;
  TimePoint t = TimePoint(std::chrono::hours(1));
  std::function<TimePoint()> clock = [this] { return t; };
  Loop loop{ctx, clock, 1};

  // Moves the clock and does what a tick does for waits.
  void advance(Clock::duration d) {
    t += d;
    loop.wake_due_timers(loop.refresh_now());
    poll();
  }
  // Runs what is ready (restart: a loop that ran out of work stays stopped).
  void poll() {
    ctx.restart();
    ctx.poll();
  }
};

// Runs `timer.sleep_for(d)` on `ctx`; the result lands in `out`.
void spawn_sleep(asio::io_context& ctx, ClockTimer& timer, Clock::duration d,
                 std::optional<bool>& out) {
  asio::co_spawn(
      ctx, [&timer, d, &out]() -> asio::awaitable<void> { out = co_await timer.sleep_for(d); },
      asio::detached);
}

}  // namespace

TEST_CASE("clock timer: on an injected clock a wait ends when the loop reads its time") {
  Manual m;
  CHECK(m.loop.clock_injected());
  CHECK(m.loop.now() == m.t);
  ClockTimer timer(m.loop);
  std::optional<bool> slept;
  spawn_sleep(m.ctx, timer, 5s, slept);
  m.poll();
  CHECK_FALSE(slept);
  CHECK(m.loop.has_timers());
  m.advance(5s - 1ms);
  CHECK_FALSE(slept);
  m.advance(1ms);
  REQUIRE(slept);
  CHECK(*slept);
  CHECK_FALSE(m.loop.has_timers());
}

TEST_CASE("clock timer: cancel ends a wait with false, a past time with true at once") {
  Manual m;
  ClockTimer timer(m.loop);
  std::optional<bool> slept;
  spawn_sleep(m.ctx, timer, 1h, slept);
  m.poll();
  CHECK_FALSE(slept);
  timer.cancel();
  m.poll();
  REQUIRE(slept);
  CHECK_FALSE(*slept);

  std::optional<bool> now;
  spawn_sleep(m.ctx, timer, 0ms, now);
  m.poll();
  REQUIRE(now);
  CHECK(*now);
  CHECK_FALSE(m.loop.has_timers());
}

TEST_CASE("clock timer: wait_once samples real time for what no clock announces") {
  Manual m;
  ClockTimer timer(m.loop);
  bool woke = false;
  asio::co_spawn(
      m.ctx,
      [&]() -> asio::awaitable<void> {
        co_await timer.wait_once(m.t + 1h, 1ms);
        woke = true;
      },
      asio::detached);
  // Bounded: the 1 ms real sample ends it although the clock stands still.
  for (int i = 0; i < 200 && !woke; ++i) m.ctx.run_for(10ms);
  CHECK(woke);
  CHECK(m.loop.clock_now() == m.t);
}

TEST_CASE("clock timer: on the real clock a wait is an exact timer") {
  asio::io_context ctx;
  std::function<TimePoint()> none;  // GatewayOptions::clock left empty
  Loop loop(ctx, none, 1);
  CHECK_FALSE(loop.clock_injected());
  ClockTimer timer(loop);
  std::optional<bool> slept;
  auto start = Clock::now();
  spawn_sleep(ctx, timer, 20ms, slept);
  for (int i = 0; i < 200 && !slept; ++i) ctx.run_for(10ms);
  REQUIRE(slept);
  CHECK(*slept);
  CHECK(Clock::now() - start >= 20ms);
}

}  // namespace test_clock_timer
