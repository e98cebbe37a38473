#pragma once
// Rate limiting, the configuration half (issue 12, section 4): plain values
// mirroring Envoy's `envoy.filters.http.local_ratelimit`,
// `envoy.filters.http.ratelimit`, the route `rate_limits` actions, and the
// configuration file of Envoy's reference rate-limit service; their
// validation; and descriptor generation from a request. The Istio loader
// turns the task's EnvoyFilter shapes and the service's YAML into these.
//
// The limiters themselves: ratelimit_local.hpp (token buckets shared by all
// workers) and ratelimit_global.hpp (fixed windows on Redis).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "sluice/matcher.hpp"
#include "sluice/ratelimit.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"

namespace sluice::security {

// The values are public (include/sluice/ratelimit.hpp); the limiters here.
using sluice::DescriptorEntry;
using sluice::FractionalPercent;
using sluice::GlobalRateLimit;
using sluice::HeaderValueOption;
using sluice::LocalRateLimit;
using sluice::LocalRateLimitDescriptor;
using sluice::RateLimitAction;
using sluice::RateLimitAttachment;
using sluice::RateLimitRule;
using sluice::RateLimitServiceConfig;
using sluice::TokenBucket;
using sluice::VhRateLimits;

// Applies `options` to `headers` in order, as Envoy's header parser does.
void apply_header_options(Headers& headers, const std::vector<HeaderValueOption>& options);

// A descriptor: entries in the order the actions produced them.
using Descriptor = std::vector<DescriptorEntry>;

// Seconds in a unit (the reference service's window length); 0 for unset.
int64_t unit_seconds(RateLimitServiceConfig::Unit unit);

// Validation. `object` names the configuration object in errors (e.g.
// "EnvoyFilter filter-local-ratelimit"); fields are named as in Envoy's
// YAML (`token_bucket.fill_interval`, `descriptors[1].entries[0].key`).
// `per_route`: the LocalRateLimit is a virtual host or route config, which
// must have a token bucket.
Status validate(const LocalRateLimit& config, std::string_view object, bool per_route = false);
Status validate(const GlobalRateLimit& config, std::string_view object);
Status validate(const RateLimitServiceConfig& config, std::string_view object);
Status validate(const std::vector<RateLimitAttachment>& rate_limits, std::string_view object,
                std::string_view field = "rate_limits");

// What descriptor generation reads from a request.
struct RequestAttributes {
  const RequestHead* request = nullptr;  // required
  std::string_view remote_address;       // the downstream client's IP as text; empty if none
  std::string_view destination_cluster;  // the upstream the route chose
};

class CompiledRateLimitRules;

// The virtual host's and the route's rate_limits, compiled (header regexes
// into RE2 programs). Immutable; shared by the workers.
class RateLimitRules {
 public:
  // Validates and compiles. Errors name `object` and the field.
  static Result<RateLimitRules> compile(const std::vector<RateLimitAttachment>& rate_limits,
                                        std::string_view object);
  RateLimitRules();
  ~RateLimitRules();
  RateLimitRules(RateLimitRules&&) noexcept;
  RateLimitRules& operator=(RateLimitRules&&) noexcept;

  // The descriptors Envoy would produce for a request on `route` of
  // `virtual_host` of `router`: the route's rules of `stage`, then the
  // virtual host's as `vh` says, one descriptor per rule whose actions all
  // produced their entry (a rule with no entries at all produces none).
  std::vector<Descriptor> descriptors(std::string_view router, std::string_view virtual_host,
                                      std::string_view route, uint32_t stage, VhRateLimits vh,
                                      const RequestAttributes& request) const;
  // The same on a virtual host attached for every router.
  std::vector<Descriptor> descriptors(std::string_view virtual_host, std::string_view route,
                                      uint32_t stage, VhRateLimits vh,
                                      const RequestAttributes& request) const {
    return descriptors({}, virtual_host, route, stage, vh, request);
  }
  bool empty() const;

 private:
  std::unique_ptr<CompiledRateLimitRules> impl_;
};

}  // namespace sluice::security
