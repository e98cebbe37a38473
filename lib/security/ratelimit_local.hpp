#pragma once
// Local rate limiting (envoy.filters.http.local_ratelimit): token buckets
// shared by every worker of a gateway. One atomic word per bucket; a bucket
// refills lazily from the time the caller passes in (the worker's injectable
// clock), so there is no timer thread and a test controls time exactly.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "security/ratelimit.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"

namespace sluice::security {

using SteadyTime = std::chrono::steady_clock::time_point;

// True with probability p (Envoy's runtime featureEnabled on a fractional
// percent), drawn from the worker's generator; 0 and full percentages draw
// nothing.
bool percent_enabled(const FractionalPercent& p, std::mt19937_64& rng);

// A token bucket safe to share between threads without a lock: the state is
// one 64-bit word, (fill count since `start` mod 2^32, tokens), updated by
// compare-and-swap. Fills happen at `start + k * fill_interval`, k >= 1, as
// Envoy's timer-driven bucket; times before the stored fill (another worker
// saw a later clock) add nothing. A bucket idle for 2^31 fill intervals
// (over three years at 50 ms) may miss its refill until the count wraps.
class AtomicTokenBucket {
 public:
  AtomicTokenBucket(const TokenBucket& config, SteadyTime start);

  // Takes one token if there is one at `now`.
  bool try_consume(SteadyTime now);
  // Tokens available at `now` (refill applied, nothing taken).
  uint32_t available(SteadyTime now) const;

  uint32_t max_tokens() const { return max_tokens_; }
  // Tokens per second, for ordering descriptors as Envoy does.
  double fill_rate() const;

 private:
  uint32_t fill_index(SteadyTime now) const;
  // The state after refilling `state` up to fill `index`.
  uint64_t refilled(uint64_t state, uint32_t index) const;

  std::atomic<uint64_t> state_;
  SteadyTime start_;
  std::chrono::nanoseconds interval_;
  uint32_t max_tokens_;
  uint32_t tokens_per_fill_;
};

// What the filter decided for one request.
struct LocalDecision {
  enum class Outcome {
    not_enabled,           // filter_enabled drew no: the limiter was not consulted
    allowed,               // a token was taken from every bucket that applied
    limited_not_enforced,  // no token, but filter_enforced drew no: forward
                           // the request with request_headers_to_add_when_not_enforced
    limited,               // refuse with `response` (response flag RL)
  };
  Outcome outcome = Outcome::allowed;
  std::optional<Response> response;  // set when limited
};

struct LocalRateLimitStats {
  std::atomic<uint64_t> enabled{0};       // requests for which the limiter was consulted
  std::atomic<uint64_t> ok{0};            // under limit
  std::atomic<uint64_t> rate_limited{0};  // no token (enforced or not)
  std::atomic<uint64_t> enforced{0};      // refused
};

// One LocalRateLimit config's buckets: the default bucket and one per
// descriptor. Create one per filter config (and one per route config: a
// route's bucket is its own) and share it between the workers.
class LocalRateLimiter {
 public:
  // Validates `config` (see validate()); the buckets start full at `start`.
  static Result<std::shared_ptr<LocalRateLimiter>> create(const LocalRateLimit& config,
                                                          std::string_view object, SteadyTime start,
                                                          bool per_route = false);

  // The filter's decision for a request whose route produced `descriptors`
  // (RateLimitRules::descriptors at this config's stage and vh_rate_limits;
  // ignored when the config has no descriptors, as Envoy). Descriptors that
  // match a local descriptor's entries exactly take a token from its bucket,
  // strictest fill rate first, stopping at the first empty one; then the
  // default bucket, unless a descriptor matched and
  // always_consume_default_token_bucket is off. Without a default bucket
  // only descriptors limit.
  LocalDecision check(std::span<const Descriptor> descriptors, SteadyTime now,
                      std::mt19937_64& rng);

  // Only the bucket part of check(): whether every applicable bucket had a
  // token (and took it).
  bool request_allowed(std::span<const Descriptor> descriptors, SteadyTime now);

  // The 429 (or configured status) Envoy sends: body "local_rate_limited",
  // content-type text/plain, x-envoy-ratelimited: true, then
  // response_headers_to_add.
  Response limited_response() const;

  const LocalRateLimit& config() const { return config_; }
  const LocalRateLimitStats& stats() const { return stats_; }

 private:
  LocalRateLimiter(const LocalRateLimit& config, SteadyTime start);

  struct DescriptorBucket {
    const LocalRateLimitDescriptor* config;
    std::unique_ptr<AtomicTokenBucket> bucket;
  };

  LocalRateLimit config_;
  std::unique_ptr<AtomicTokenBucket> default_bucket_;
  std::vector<DescriptorBucket> descriptors_;
  LocalRateLimitStats stats_;
};

}  // namespace sluice::security
