#include "support/manual_clock.hpp"

namespace sluice::test {

void ManualClock::drive(Gateway& gateway) {
  std::lock_guard lock(mutex_);
  gateways_.push_back(&gateway);
}

void ManualClock::forget(Gateway& gateway) {
  std::lock_guard lock(mutex_);
  std::erase(gateways_, &gateway);
}

void ManualClock::advance(std::chrono::steady_clock::duration d) {
  ticks_ += d.count();
  std::vector<Gateway*> gateways;
  {
    std::lock_guard lock(mutex_);
    gateways = gateways_;
  }
  for (Gateway* g : gateways) g->clock_advanced();
}

}  // namespace sluice::test
