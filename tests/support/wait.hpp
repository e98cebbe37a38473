#pragma once
// Waiting for a condition with a bounded deadline (never sleeping for time to
// pass: the loop ends as soon as the condition holds).

#include <chrono>
#include <functional>
#include <thread>

namespace sluice::test {

inline bool wait_until(const std::function<bool()>& predicate,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (predicate()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace sluice::test
