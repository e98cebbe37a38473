#include "proxy/ratelimit_filter.hpp"

#include <string>
#include <utility>
#include <vector>

#include "security/authz_address.hpp"

namespace sluice {

namespace {

constexpr std::string_view kLocalLimited = "local_rate_limited";
constexpr std::string_view kGlobalLimited = "request_rate_limited";
constexpr std::string_view kGlobalError = "rate_limiter_error";

// Envoy's remote_address action reads the downstream address the
// connection manager computed: the peer, or with trusted hops the
// X-Forwarded-For entry, as authorization's remote.ip does.
std::string remote_address(const CompiledRateLimits& rl, const RequestHead& head,
                           std::string_view peer_ip) {
  security::IpAddress peer;
  if (auto ip = security::IpAddress::parse(peer_ip)) peer = ip->unmapped();
  security::IpAddress remote = security::remote_address(peer, head.headers, rl.num_trusted_proxies);
  return remote.valid() ? remote.to_string() : std::string();
}

}  // namespace

asio::awaitable<std::optional<RateLimitRefusal>> check_rate_limits(
    SessionHost& host, std::shared_ptr<const CompiledRateLimits> limits, RequestHead& head,
    RateLimitRequest request) {
  const CompiledRateLimits& rl = *limits;
  std::string remote;
  if (!rl.rules.empty()) remote = remote_address(rl, head, request.peer_ip);
  security::RequestAttributes attributes{&head, remote, request.destination_cluster};
  auto descriptors = [&](uint32_t stage, VhRateLimits vh) {
    return rl.rules.descriptors(request.router, request.virtual_host, request.route, stage, vh,
                                attributes);
  };

  size_t index = 0;
  if (const auto* local = rl.local_for(request.router, request.virtual_host, request.route, &index);
      local && rl.limiters[index]) {
    security::LocalRateLimiter& limiter = *rl.limiters[index];
    // Descriptors matter only to a config that has some of its own.
    std::vector<security::Descriptor> found;
    if (!local->config.descriptors.empty())
      found = descriptors(local->config.stage, local->config.vh_rate_limits);
    security::LocalDecision d = limiter.check(found, host.clock_now(), host.rng());
    using Outcome = security::LocalDecision::Outcome;
    if (d.outcome == Outcome::limited && d.response) {
      RateLimitRefusal refusal{std::move(*d.response), {ResponseFlag::rate_limited}, kLocalLimited};
      co_return refusal;
    }
    if (d.outcome == Outcome::limited_not_enforced)
      security::apply_header_options(head.headers,
                                     local->config.request_headers_to_add_when_not_enforced);
  }

  if (!rl.global) co_return std::nullopt;
  const GlobalRateLimit& g = rl.global->config();
  std::vector<security::Descriptor> found = descriptors(g.stage, g.vh_rate_limits);
  // Envoy calls the service only when the route produced descriptors.
  if (found.empty()) co_return std::nullopt;
  std::shared_ptr<security::RedisClient> redis = host.redis(rl);
  if (!redis) co_return std::nullopt;
  auto now = host.wall_now();
  security::GlobalDecision d = co_await rl.global->check(*redis, std::move(found), now, host.rng());
  using Outcome = security::GlobalDecision::Outcome;
  if (d.outcome == Outcome::over_limit && d.response) {
    RateLimitRefusal refusal{std::move(*d.response), {ResponseFlag::rate_limited}, kGlobalLimited};
    co_return refusal;
  }
  if (d.outcome == Outcome::error_denied && d.response) {
    RateLimitRefusal refusal{
        std::move(*d.response), {ResponseFlag::rate_limit_service_error}, kGlobalError};
    co_return refusal;
  }
  co_return std::nullopt;
}

}  // namespace sluice
