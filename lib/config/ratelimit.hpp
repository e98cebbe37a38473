#pragma once
// GatewayConfig::rate_limits compiled for a snapshot: the rate_limits
// actions, the local configs (the filter's and the per-route overrides)
// with slots for their buckets, and the global limiter. The buckets are the
// gateway's, not the snapshot's: Gateway::apply fills the slots
// (bind_local_limiters) with the gateway's clock before any worker sees the
// snapshot.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "security/ratelimit.hpp"
#include "security/ratelimit_global.hpp"
#include "security/ratelimit_local.hpp"
#include "sluice/gateway.hpp"
#include "sluice/ratelimit.hpp"
#include "sluice/result.hpp"

namespace sluice {

struct CompiledRateLimits {
  security::RateLimitRules rules;

  // One local config: the filter's (scope all empty, always locals[0] when
  // there is a filter) or an override's.
  struct Local {
    std::string router, virtual_host, route;
    LocalRateLimit config;  // status normalised as the limiter does
    std::string key;        // the gateway's bucket registry key
  };
  std::vector<Local> locals;
  bool has_local_filter = false;
  // Override index by router '\n' virtual host '\n' route (empty parts: any).
  std::map<std::string, size_t, std::less<>> overrides;

  std::shared_ptr<const security::GlobalRateLimiter> global;
  std::string redis_host;
  uint16_t redis_port = 0;
  // For remote_address descriptors (SecurityConfig::num_trusted_proxies).
  uint32_t num_trusted_proxies = 0;

  // The gateway's limiters, parallel to `locals`; written by
  // bind_local_limiters before publication, read-only afterwards.
  mutable std::vector<std::shared_ptr<security::LocalRateLimiter>> limiters;

  // The local config for a request on this route: the route's override,
  // then the virtual host's, then the filter's; none without a filter.
  const Local* local_for(std::string_view router, std::string_view virtual_host,
                         std::string_view route, size_t* index) const;
};

// Validates config.rate_limits (errors name "RateLimitConfig" and the
// field); null when nothing is configured.
Result<std::shared_ptr<const CompiledRateLimits>> compile_rate_limits(const GatewayConfig& config);

// The local buckets a gateway keeps across reloads, by config key.
using LocalLimiterRegistry = std::map<std::string, std::shared_ptr<security::LocalRateLimiter>>;

// Fills `rl.limiters` once (a snapshot applied again keeps its own): a
// config equal to the one `registry` holds for its key keeps that bucket
// and its tokens, anything else starts full at `now`. `registry` becomes
// the buckets of `rl`.
void bind_local_limiters(const CompiledRateLimits& rl, LocalLimiterRegistry& registry,
                         security::SteadyTime now);

}  // namespace sluice
