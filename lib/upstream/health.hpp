#pragma once
// Active HTTP health checks (off unless UpstreamConfig::health_check). One
// coroutine per endpoint on the worker that owns the checker: GET the path
// every interval, bounded by the timeout; 200 is a pass (Envoy's default
// expected status). healthy_threshold passes in a row mark an endpoint
// healthy, unhealthy_threshold failures unhealthy; a pass also ends an
// outlier ejection (Envoy's successful_active_health_check_uneject_host).

#include <asio/io_context.hpp>
#include <memory>

#include "upstream/compiled.hpp"

namespace sluice {

class UpstreamContext;

class HealthChecker {
 public:
  // Probes run on `ctx`'s loop and keep `upstreams` (and their TLS
  // contexts) alive until stop().
  HealthChecker(UpstreamContext& ctx, UpstreamList upstreams);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Cancels every probe; their coroutines end at their next resumption.
  void stop();

  struct Control;

 private:
  std::shared_ptr<Control> control_;
};

}  // namespace sluice
