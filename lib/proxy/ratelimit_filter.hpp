#pragma once
// The gateway's rate limits on one request, in Envoy's filter order:
// local_ratelimit (token buckets, synchronous), then ratelimit (fixed
// windows on Redis, awaited on the worker's client, never blocking the
// loop). Runs once the route and its destination are known (the
// destination_cluster action reads it), after authentication and
// authorization, before the request goes upstream.

#include <asio/awaitable.hpp>
#include <optional>
#include <string_view>

#include "config/ratelimit.hpp"
#include "proxy/host.hpp"
#include "sluice/request.hpp"
#include "sluice/response_flags.hpp"

namespace sluice {

struct RateLimitRefusal {
  Response response;
  ResponseFlags flags;  // RL, or RLSE when Redis failed under failure_mode_deny
  std::string_view
      details;  // Envoy's: local_rate_limited, request_rate_limited, rate_limiter_error
};

// What the limits see of a request besides its head.
struct RateLimitRequest {
  std::string_view peer_ip;  // the downstream socket's address
  std::string_view router;
  std::string_view virtual_host;
  std::string_view route;
  std::string_view destination_cluster;  // empty when the route has none
};

// A refusal, or none: the request goes on (with the local filter's
// request_headers_to_add_when_not_enforced added when it was over a limit
// that is not enforced).
asio::awaitable<std::optional<RateLimitRefusal>> check_rate_limits(
    SessionHost& host, std::shared_ptr<const CompiledRateLimits> limits, RequestHead& head,
    RateLimitRequest request);

}  // namespace sluice
