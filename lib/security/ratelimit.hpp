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
#include "sluice/request.hpp"
#include "sluice/result.hpp"

namespace sluice::security {

// Envoy's FractionalPercent (the default_value of a RuntimeFractionalPercent;
// sluice has no runtime). A numerator above the denominator means always.
struct FractionalPercent {
  enum class Denominator { hundred, ten_thousand, million };
  uint32_t numerator = 0;
  Denominator denominator = Denominator::hundred;

  static FractionalPercent percent(uint32_t n) { return {n, Denominator::hundred}; }
};

// Envoy's type.v3.TokenBucket: the bucket starts full and gains
// `tokens_per_fill` tokens (never more than `max_tokens`) at the end of every
// `fill_interval` since it was created. Each request takes one token.
struct TokenBucket {
  uint32_t max_tokens = 0;                     // > 0
  uint32_t tokens_per_fill = 1;                // > 0 (Envoy's default when unset)
  std::chrono::milliseconds fill_interval{0};  // >= 50 ms, as Envoy requires
};

// Envoy's HeaderValueOption. `append: false` in the old form is
// overwrite_if_exists_or_add; `append: true` (and the default) is
// append_if_exists_or_add.
struct HeaderValueOption {
  enum class Action {
    append_if_exists_or_add,
    add_if_absent,
    overwrite_if_exists_or_add,
    overwrite_if_exists
  };
  std::string name;
  std::string value;
  Action action = Action::append_if_exists_or_add;
  bool keep_empty_value = false;  // Envoy drops a header whose value is empty unless set
};

// Applies `options` to `headers` in order, as Envoy's header parser does.
void apply_header_options(Headers& headers, const std::vector<HeaderValueOption>& options);

// One entry of a rate-limit descriptor.
struct DescriptorEntry {
  std::string key;
  std::string value;
  bool operator==(const DescriptorEntry&) const = default;
};
// A descriptor: entries in the order the actions produced them.
using Descriptor = std::vector<DescriptorEntry>;

// Envoy's route.v3.RateLimit.Action, the ones the Istio task uses.
struct RateLimitAction {
  // ("<descriptor_key>", "<first value of header_name>"). Pseudo-headers
  // :path (path and query), :method, :authority and :scheme are the
  // request's. A missing header drops the whole descriptor, unless
  // skip_if_absent, which only skips this entry.
  struct RequestHeaders {
    std::string header_name;
    std::string descriptor_key;
    bool skip_if_absent = false;
  };
  // ("remote_address", "<downstream address>"); no descriptor when the
  // request has no IP address.
  struct RemoteAddress {};
  // ("<descriptor_key>", "<descriptor_value>"); the key defaults to
  // "generic_key".
  struct GenericKey {
    std::string descriptor_value;
    std::string descriptor_key;
  };
  // ("<descriptor_key>", "<descriptor_value>") when all `headers` match and
  // `expect_match`, or when they do not and !expect_match; otherwise no
  // descriptor. The key defaults to "header_match".
  struct HeaderValueMatch {
    std::string descriptor_value;
    std::string descriptor_key;
    bool expect_match = true;
    std::vector<HeaderMatch> headers;
  };
  // ("destination_cluster", "<the upstream the route chose>").
  struct DestinationCluster {};

  std::variant<RequestHeaders, RemoteAddress, GenericKey, HeaderValueMatch, DestinationCluster>
      action;
};

// Envoy's route.v3.RateLimit: one descriptor, built from `actions` in order.
struct RateLimitRule {
  std::vector<RateLimitAction> actions;  // at least one
  uint32_t stage = 0;                    // 0..10; a filter reads its own stage only
};

// Where a list of rate_limits sits: a virtual host's own list (route empty)
// or one route's. These are what the task's EnvoyFilter patches at
// VIRTUAL_HOST and HTTP_ROUTE.
struct RateLimitAttachment {
  std::string virtual_host;
  std::string route;  // empty: the virtual host's rate_limits
  std::vector<RateLimitRule> rate_limits;
};

// Envoy's VhRateLimitsOptions: whether the virtual host's rate_limits join
// the route's. override: only when the route has none.
enum class VhRateLimits { override_route, include, ignore };

// A local descriptor with its own bucket (Envoy's LocalRateLimitDescriptor).
// It applies to a request descriptor with exactly these entries, in order.
struct LocalRateLimitDescriptor {
  std::vector<DescriptorEntry> entries;  // non-empty; every key and value non-empty
  TokenBucket token_bucket;
};

// envoy.filters.http.local_ratelimit (LocalRateLimit). As a filter-level
// config `token_bucket` may be unset (limits come per virtual host or
// route); as a per-route config it must be set.
struct LocalRateLimit {
  std::string stat_prefix;  // non-empty
  uint16_t status = 429;    // below 400 means 429, as Envoy
  std::optional<TokenBucket> token_bucket;
  FractionalPercent filter_enabled;                        // Envoy's default: 0 % (checks nothing)
  FractionalPercent filter_enforced;                       // Envoy's default: 0 % (refuses nothing)
  std::vector<HeaderValueOption> response_headers_to_add;  // at most 10
  std::vector<HeaderValueOption> request_headers_to_add_when_not_enforced;  // at most 10
  std::vector<LocalRateLimitDescriptor> descriptors;
  uint32_t stage = 0;  // 0..10
  bool always_consume_default_token_bucket = true;
  VhRateLimits vh_rate_limits = VhRateLimits::override_route;
  // The virtual host and route rate_limits this filter reads (Envoy keeps
  // them on the route and both filters read them, told apart by stage).
  std::vector<RateLimitAttachment> rate_limits;
};

// envoy.filters.http.ratelimit (RateLimit). sluice answers the limits itself
// on Redis (ratelimit_global.hpp) instead of calling a service.
struct GlobalRateLimit {
  std::string domain;  // non-empty; selects a RateLimitServiceConfig
  uint32_t stage = 0;  // 0..10
  bool failure_mode_deny = false;
  std::chrono::milliseconds timeout{20};  // Envoy's default; > 0
  uint16_t rate_limited_status = 429;     // below 400 means 429
  uint16_t status_on_error = 500;         // with failure_mode_deny; below 400 means 500
  bool disable_x_envoy_ratelimited_header = false;
  FractionalPercent filter_enforced = FractionalPercent::percent(100);
  VhRateLimits vh_rate_limits = VhRateLimits::override_route;
  std::vector<RateLimitAttachment> rate_limits;
};

// The reference service's configuration file (envoyproxy/ratelimit).
struct RateLimitServiceConfig {
  enum class Unit { unset, second, minute, hour, day };
  struct RateLimit {
    Unit unit = Unit::unset;  // required unless unlimited, forbidden with it
    uint32_t requests_per_unit = 0;
    bool unlimited = false;
    std::string name;                   // for `replaces`
    std::vector<std::string> replaces;  // names of limits this one replaces
  };
  struct DescriptorConfig {
    std::string key;    // non-empty
    std::string value;  // empty: any value; a trailing '*' matches by prefix
    std::optional<RateLimit> rate_limit;
    bool shadow_mode = false;      // counted, never refused
    bool detailed_metric = false;  // the stat key carries the request's value
    std::vector<DescriptorConfig> descriptors;
  };

  std::string domain;  // non-empty
  std::vector<DescriptorConfig> descriptors;
};

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
  // `virtual_host`: the route's rules of `stage`, then the virtual host's
  // as `vh` says, one descriptor per rule whose actions all produced their
  // entry (a rule with no entries at all produces none).
  std::vector<Descriptor> descriptors(std::string_view virtual_host, std::string_view route,
                                      uint32_t stage, VhRateLimits vh,
                                      const RequestAttributes& request) const;

 private:
  std::unique_ptr<CompiledRateLimitRules> impl_;
};

}  // namespace sluice::security
