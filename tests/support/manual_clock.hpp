#pragma once
// A clock for GatewayOptions::clock that moves only when a test moves it
// (issue 11, item 5). advance() then has every gateway it drives run what
// is due at the new time (Gateway::clock_advanced) before it returns, so a
// timeout test waits for the timeout's effect, never for time to pass.

#include <sluice/gateway.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <vector>

namespace sluice::test {

class ManualClock {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  // Starts at a fixed time, far from steady_clock's epoch (a zero time
  // point means "unset" in places).
  ManualClock() = default;
  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;

  time_point now() const { return time_point(std::chrono::steady_clock::duration(ticks_.load())); }
  // For GatewayOptions::clock; this clock must outlive the gateway.
  std::function<time_point()> fn() {
    return [this] { return now(); };
  }
  // Gateways to notify on advance(); forget() one before destroying it.
  void drive(Gateway& gateway);
  void forget(Gateway& gateway);
  // Moves time forward by `d`, then lets every driven gateway act on it:
  // when this returns, each worker has ticked (deadlines, parking and
  // waits due at the new time fired) and then run what was queued by then,
  // the tick's wake-ups included, up to their next wait.
  void advance(std::chrono::steady_clock::duration d);
  // advance() by nothing: after an event the test saw (a response read,
  // bytes the gateway took, a request the upstream got), the gateway has
  // also run the step that follows it, such as arming the next deadline.
  // Time stands still meanwhile, so a deadline armed now counts from now.
  void settle() { advance({}); }

 private:
  std::atomic<int64_t> ticks_{
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::hours(1000))
          .count()};
  std::mutex mutex_;
  std::vector<Gateway*> gateways_;
};

}  // namespace sluice::test
