#pragma once
// Rate limits as plain values (issue 12, section 4): Envoy's
// `envoy.filters.http.local_ratelimit` (token buckets shared by every worker
// of a gateway), `envoy.filters.http.ratelimit` (fixed windows that sluice
// counts itself on Redis, as Envoy's reference rate-limit service would),
// the `rate_limits` actions of virtual hosts and routes that build the
// descriptors, and the reference service's configuration file. compile()
// validates them with the rest of GatewayConfig; lib/istio builds them from
// the EnvoyFilter shapes of Istio's rate-limit task.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "sluice/matcher.hpp"

namespace sluice {

// Envoy's FractionalPercent (the default_value of a RuntimeFractionalPercent;
// sluice has no runtime). A numerator above the denominator means always.
struct FractionalPercent {
  enum class Denominator { hundred, ten_thousand, million };
  uint32_t numerator = 0;
  Denominator denominator = Denominator::hundred;

  static FractionalPercent percent(uint32_t n) { return {n, Denominator::hundred}; }
  bool operator==(const FractionalPercent&) const = default;
};

// Envoy's type.v3.TokenBucket: the bucket starts full and gains
// `tokens_per_fill` tokens (never more than `max_tokens`) at the end of every
// `fill_interval` since it was created. Each request takes one token.
struct TokenBucket {
  uint32_t max_tokens = 0;                     // > 0
  uint32_t tokens_per_fill = 1;                // > 0 (Envoy's default when unset)
  std::chrono::milliseconds fill_interval{0};  // >= 50 ms, as Envoy requires
  bool operator==(const TokenBucket&) const = default;
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
  bool operator==(const HeaderValueOption&) const = default;
};

// One entry of a rate-limit descriptor.
struct DescriptorEntry {
  std::string key;
  std::string value;
  bool operator==(const DescriptorEntry&) const = default;
};

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
  // ("remote_address", "<downstream address>"): the client address Envoy
  // computes, the peer or, with SecurityConfig::num_trusted_proxies, the
  // trusted X-Forwarded-For entry (as AuthorizationPolicy's remoteIpBlocks).
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
// or one route's. Names are VirtualHost::name and Route::name; `router`
// (RouterConfig::name) narrows it to one router, since virtual host names
// repeat across routers. Lists for a router come before those for every
// router. These are what Istio's EnvoyFilter patches at VIRTUAL_HOST and
// HTTP_ROUTE.
struct RateLimitAttachment {
  std::string virtual_host;
  std::string route;  // empty: the virtual host's rate_limits
  std::vector<RateLimitRule> rate_limits;
  std::string router;  // empty: every router
};

// Envoy's VhRateLimitsOptions: whether the virtual host's rate_limits join
// the route's. override: only when the route has none.
enum class VhRateLimits { override_route, include, ignore };

// A local descriptor with its own bucket (Envoy's LocalRateLimitDescriptor).
// It applies to a request descriptor with exactly these entries, in order.
struct LocalRateLimitDescriptor {
  std::vector<DescriptorEntry> entries;  // non-empty; every key and value non-empty
  TokenBucket token_bucket;
  bool operator==(const LocalRateLimitDescriptor&) const = default;
};

// envoy.filters.http.local_ratelimit (LocalRateLimit). As the filter's
// config `token_bucket` may be unset (limits come per virtual host or
// route); as a per-route config it must be set.
struct LocalRateLimit {
  std::string stat_prefix;  // non-empty
  uint16_t status = 429;    // below 400 means 429, as Envoy
  std::optional<TokenBucket> token_bucket;
  FractionalPercent filter_enabled;                        // Envoy's default: 0 % (checks nothing)
  FractionalPercent filter_enforced;                       // Envoy's default: 0 % (refuses nothing)
  std::vector<HeaderValueOption> response_headers_to_add;  // on refusals; at most 10
  std::vector<HeaderValueOption> request_headers_to_add_when_not_enforced;  // at most 10
  std::vector<LocalRateLimitDescriptor> descriptors;
  uint32_t stage = 0;  // 0..10
  bool always_consume_default_token_bucket = true;
  VhRateLimits vh_rate_limits = VhRateLimits::override_route;
  bool operator==(const LocalRateLimit&) const = default;
};

// A local config for one virtual host or route (Envoy's
// typed_per_filter_config): it replaces the filter's config there, with
// buckets of its own.
struct LocalRateLimitOverride {
  std::string virtual_host;  // VirtualHost::name
  std::string route;         // Route::name; empty: every route of the virtual host
  std::string router;        // RouterConfig::name; empty: every router
  LocalRateLimit config;     // token_bucket required
};

// envoy.filters.http.ratelimit (RateLimit). sluice answers the limits itself
// on Redis instead of calling a service; the limits are the service's
// configuration (RateLimitConfig::service).
struct GlobalRateLimit {
  std::string domain;  // non-empty; selects a RateLimitServiceConfig
  uint32_t stage = 0;  // 0..10
  bool failure_mode_deny = false;
  std::chrono::milliseconds timeout{20};  // Envoy's default; > 0; bounds the Redis round trip
  uint16_t rate_limited_status = 429;     // below 400 means 429
  uint16_t status_on_error = 500;         // with failure_mode_deny; below 400 means 500
  bool disable_x_envoy_ratelimited_header = false;
  FractionalPercent filter_enforced = FractionalPercent::percent(100);
  VhRateLimits vh_rate_limits = VhRateLimits::override_route;
};

// The configuration file of Envoy's reference rate-limit service
// (envoyproxy/ratelimit): a domain and its nested descriptors.
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

// Everything about rate limits on one gateway, in Envoy's filter order:
// local, then global, both after authentication and authorization, once the
// route and its destination are known.
//
// Local buckets belong to the gateway (one bucket shared by its workers).
// A reload keeps a bucket's state when its config (the filter's, or one
// override's, by router, virtual host and route) is unchanged, and starts a
// full bucket otherwise, as Envoy does for a new filter config.
//
// Global limits are counted in Redis under the reference service's keys, in
// windows aligned on the Unix epoch (GatewayOptions::wall_clock), so several
// gateways, processes or reference services on one Redis share them. When
// Redis cannot answer within `global->timeout`, requests pass and the
// limiter counts the error, unless `failure_mode_deny` (500, flag RLSE).
struct RateLimitConfig {
  std::optional<LocalRateLimit> local;
  std::vector<LocalRateLimitOverride> local_overrides;  // need `local` (Envoy's filter must run)
  std::optional<GlobalRateLimit> global;
  // The rate_limits both filters read, each at its own stage.
  std::vector<RateLimitAttachment> rate_limits;
  // The reference service's configuration files (one per domain).
  std::vector<RateLimitServiceConfig> service;
  // "host:port" of the Redis server; required with `global`. Each worker
  // keeps its own pipelined connections to it.
  std::string redis_address;
  // The service's CACHE_KEY_PREFIX, prepended to every Redis key.
  std::string redis_key_prefix;
};

}  // namespace sluice
