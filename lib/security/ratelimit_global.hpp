#pragma once
// Global rate limiting (envoy.filters.http.ratelimit) answered by sluice
// itself, as Envoy's reference rate-limit service (envoyproxy/ratelimit)
// would answer it: descriptors are matched against the service's
// configuration, and each matched limit is a fixed window counted in Redis
// under the service's own key, so sluice processes and reference services
// pointed at one Redis share their counts.

#include <asio/awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "security/ratelimit.hpp"
#include "security/redis.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"

namespace sluice::security {

class CompiledServiceConfig;

// A limit found for a descriptor.
struct MatchedLimit {
  RateLimitServiceConfig::Unit unit = RateLimitServiceConfig::Unit::unset;
  uint32_t requests_per_unit = 0;
  bool unlimited = false;
  bool shadow_mode = false;
  std::string name;
  std::vector<std::string> replaces;
  // The service's stat key: "domain.key_value.subkey" (with the request's
  // value appended under detailed_metric).
  std::string stat_key;
};

// The service configuration files, compiled for look-ups. Immutable.
class RateLimitService {
 public:
  // Validates every config; two configs for one domain are an error, as in
  // the service (without MERGE_DOMAIN_CONFIG).
  static Result<RateLimitService> compile(const std::vector<RateLimitServiceConfig>& configs,
                                          std::string_view object);
  RateLimitService();
  ~RateLimitService();
  RateLimitService(RateLimitService&&) noexcept;
  RateLimitService& operator=(RateLimitService&&) noexcept;

  // The service's look-up: level by level, "key_value" first, then a
  // value ending in '*' by prefix, then the bare key; the limit counts only
  // at the level of the descriptor's last entry. None for an unknown domain
  // or no match.
  std::optional<MatchedLimit> find(std::string_view domain, const Descriptor& descriptor) const;

 private:
  std::unique_ptr<CompiledServiceConfig> impl_;
};

// The reference service's Redis key for a fixed window:
// prefix + domain + "_" + key + "_" + value + "_" ... + window start, where
// the window start is `unix_seconds` rounded down to the unit.
std::string cache_key(std::string_view prefix, std::string_view domain,
                      const Descriptor& descriptor, RateLimitServiceConfig::Unit unit,
                      int64_t unix_seconds);

// The Redis work for one request: a counter per limited descriptor.
struct GlobalPlan {
  struct Counter {
    std::string key;
    uint32_t requests_per_unit = 0;
    int64_t expire_seconds = 0;  // the window's length
    bool shadow_mode = false;
    std::string stat_key;
  };
  std::vector<Counter> counters;  // empty: nothing to count, the request passes

  // INCRBY key hits and EXPIRE key window for each counter, to send in one
  // pipelined write.
  std::vector<RedisCommand> commands(uint32_t hits = 1) const;
};

struct GlobalDecision {
  enum class Outcome {
    ok,                       // under every limit, or nothing to limit
    over_limit,               // refused: `response` (flag RL)
    over_limit_not_enforced,  // over a limit, but filter_enforced drew no
    error_allowed,            // Redis failed; failure_mode_deny off: forwarded (counted)
    error_denied,  // Redis failed; failure_mode_deny: refused with `response` (flag RLSE)
  };
  Outcome outcome = Outcome::ok;
  std::optional<Response> response;
  std::string error;  // what failed, for the log
};

struct GlobalRateLimitStats {
  std::atomic<uint64_t> ok{0};
  std::atomic<uint64_t> over_limit{0};
  std::atomic<uint64_t> error{0};
  std::atomic<uint64_t> failure_mode_allowed{0};
  std::atomic<uint64_t> shadow_mode{0};  // over a shadow_mode limit, let through
};

// One GlobalRateLimit filter with the service's limits. Immutable apart
// from its counters; shared by the workers, each of which brings its own
// RedisClient.
class GlobalRateLimiter {
 public:
  // `key_prefix` is the service's CACHE_KEY_PREFIX (empty by default).
  // The filter's domain needs no config of its own: an unknown domain
  // limits nothing, as in the service.
  static Result<std::shared_ptr<GlobalRateLimiter>> create(
      const GlobalRateLimit& config, const std::vector<RateLimitServiceConfig>& service,
      std::string_view object, std::string key_prefix = {});

  // The counters for `descriptors` at `now` (wall-clock time: windows are
  // aligned on the Unix epoch so that every process agrees). Unlimited
  // limits and limits replaced by another matched limit count nothing.
  GlobalPlan plan(std::span<const Descriptor> descriptors,
                  std::chrono::system_clock::time_point now) const;

  // The decision from the counts INCRBY returned, one per counter.
  GlobalDecision judge(const GlobalPlan& plan, std::span<const int64_t> counts,
                       std::mt19937_64& rng) const;
  // The decision when Redis could not answer.
  GlobalDecision failed(std::string why) const;

  // plan, one round trip on `redis` (none when nothing is limited), judge.
  // `rng` must outlive the call (the worker's generator).
  asio::awaitable<GlobalDecision> check(RedisClient& redis, std::vector<Descriptor> descriptors,
                                        std::chrono::system_clock::time_point now,
                                        std::mt19937_64& rng) const;

  // The response for over_limit: rate_limited_status, empty body,
  // x-envoy-ratelimited: true unless disabled.
  Response over_limit_response() const;

  const GlobalRateLimit& config() const { return config_; }
  const RateLimitService& service() const { return service_; }
  const GlobalRateLimitStats& stats() const { return stats_; }

 private:
  GlobalRateLimiter() = default;

  GlobalRateLimit config_;
  RateLimitService service_;
  std::string key_prefix_;
  mutable GlobalRateLimitStats stats_;
};

}  // namespace sluice::security
