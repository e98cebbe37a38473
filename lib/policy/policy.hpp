#pragma once
// Per-route traffic policies (Istio HTTPRoute actions) in compiled form, and
// the pure decisions the proxy session asks of them. No sockets, no timers:
// the session does the waiting and the I/O.

#include <re2/re2.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "http/outcome.hpp"
#include "http/string_match.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"
#include "sluice/router.hpp"

namespace sluice::policy {

// Retry conditions parsed from RetryPolicy::retry_on (Envoy x-envoy-retry-on
// and x-envoy-retry-grpc-on tokens, as Istio passes them through).
struct RetryOn {
  bool status_5xx = false;       // "5xx": any 5xx, resets, connect failures, per-try timeouts
  bool gateway_error = false;    // "gateway-error": 502, 503, 504, and the same failures
  bool reset = false;            // "reset": no response at all (reset, connect failure, timeout)
  bool connect_failure = false;  // "connect-failure"
  bool refused_stream = false;   // "refused-stream" (HTTP/2 only; never seen on HTTP/1)
  bool retriable_4xx = false;    // "retriable-4xx": 409
  bool reset_before_request = false;  // "reset-before-request": connect failures
  // "retriable-status-codes", implied by any bare number (as Istio does).
  bool retriable_status_codes = false;
  std::vector<uint16_t> status_codes;  // bare numbers in retry_on
  // gRPC conditions, matched against a response's grpc-status only.
  bool grpc_cancelled = false;           // "cancelled": 1
  bool grpc_deadline_exceeded = false;   // "deadline-exceeded": 4
  bool grpc_resource_exhausted = false;  // "resource-exhausted": 8
  bool grpc_internal = false;            // "internal": 13
  bool grpc_unavailable = false;         // "unavailable": 14
};

// Parses a retry_on string. Unknown tokens are errors naming the token. An
// empty string means Istio's default conditions (RetryPolicy{}.retry_on).
Result<RetryOn> parse_retry_on(std::string_view retry_on);

struct CompiledRetry {
  uint32_t attempts = 0;                         // retries after the first request; 0 disables
  std::chrono::milliseconds per_try_timeout{0};  // 0: none (the route timeout bounds all)
  RetryOn on;
  bool ignore_previous_hosts = true;
  std::chrono::milliseconds backoff_base{25};
  size_t max_replay_bytes = 0;

  // True when an attempt that ended with `outcome` (and `status`, plus the
  // response's grpc-status if it had one) may be retried under this policy.
  // It does not count attempts; the caller compares with `attempts`.
  bool retriable(AttemptOutcome outcome, uint16_t status,
                 std::optional<uint32_t> grpc_status = std::nullopt) const;
  // Envoy's fully jittered exponential backoff: for retry number N (1 for
  // the first retry) a uniform draw in [0, (2^N - 1) * base), the range
  // capped at 10 * base. 0 when base is 0.
  std::chrono::milliseconds backoff(uint32_t retry, std::mt19937_64& rng) const;
};

struct CompiledCors {
  CorsPolicy source;
  std::vector<http::CompiledStringMatch> allow_origins;  // source.allow_origins, compiled
  std::string allow_methods;   // joined "," as Istio does; "*" echoes the request's
  std::string allow_headers;   // joined ","; "*" echoes the request's
  std::string expose_headers;  // joined ","
  std::string max_age;         // seconds as text, empty if unset

  // Envoy: an entry allows an origin when it matches the origin or the
  // literal "*" (so exact "*" allows every origin).
  bool origin_allowed(std::string_view origin) const;
};

struct CompiledRoutePolicy {
  const Route* route = nullptr;  // the source, owned by the snapshot's RouterConfig
  std::unique_ptr<const re2::RE2> uri_regex_rewrite;
  CompiledRetry retry;                   // attempts = 0 when the route has a fault (Istio)
  std::chrono::milliseconds timeout{0};  // 0 when the route has a fault (Istio)
  std::optional<CompiledCors> cors;
};

// Validates and compiles the policy fields of `route` (redirect, rewrite,
// header operations on the route and its destinations, retries, fault,
// mirrors, CORS). `field` is the route's path for error messages
// ("virtual_hosts[0].routes[2]"); `object` the config object ("Router main").
// Router::compile runs it too, so a Router that compiled passes here.
Result<CompiledRoutePolicy> compile_route_policy(const Route& route, std::string_view object,
                                                 std::string_view field);

// --- decisions -----------------------------------------------------------

// Location header for a redirect, an absolute URL built as Envoy builds it
// from the HTTPRedirect Istio generates:
// - scheme: redirect.scheme, else the request's;
// - host: redirect.authority, else the request's Host (whose port is kept,
//   except that a default port (:80 for http, :443 for https) is dropped
//   when the scheme changes);
// - port: redirect.port, or the listener port with FROM_REQUEST_PORT,
//   replaces any port in the host; FROM_PROTOCOL_DEFAULT removes it (the
//   scheme's default port, as Istio documents it);
// - path: redirect.uri, else the request's path; the request's query is kept
//   unless redirect.uri carries its own.
std::string redirect_location(const Redirect& redirect, const RequestHead& request);

// Applies rewrite.uri / uri_regex / authority to `request` in place.
// `matched` is the Matcher that selected the route (Router::Selection), or
// null when the route has no matches. rewrite.uri replaces the prefix the
// block matched (Envoy prefix_rewrite); with an exact or regex block it
// replaces the whole path; with no uri condition the implied prefix is "/"
// (as in Istio). The query string is kept. When a path rewrite applies, the
// original target is recorded in x-envoy-original-path, as Envoy does.
void apply_rewrite(const CompiledRoutePolicy& policy, const Matcher* matched, RequestHead& request);

// remove, then set (replacing every entry of the name), then add (append).
void apply_headers(const HeaderOperations& ops, Headers& headers);
// The same on a request head; setting or adding "host" / ":authority" also
// updates RequestHead::authority (Istio allows it on requests).
void apply_headers(const HeaderOperations& ops, RequestHead& request);

// CORS for one request (Envoy's CORS filter).
struct CorsDecision {
  // A preflight (OPTIONS with Origin and Access-Control-Request-Method)
  // answered at the gateway: 200 with the allow headers. Unset when the
  // request is not a preflight, or is an unmatched preflight that is
  // forwarded (forward_unmatched_preflights).
  std::optional<Response> preflight;
  // Headers to SET (replace) on the upstream's response: actual requests
  // from an allowed origin.
  std::vector<std::pair<std::string, std::string>> response_headers;
};
CorsDecision evaluate_cors(const CompiledCors& cors, const RequestHead& request);

// Fault decision drawn from `rng`: the delay draw first, then the abort draw.
struct FaultDecision {
  std::chrono::milliseconds delay{0};  // 0: none
  std::optional<Response> abort;       // the abort response, if drawn (sent after the delay)
};
FaultDecision decide_fault(const Fault& fault, std::mt19937_64& rng);
// The response for an abort: http_status with body "fault filter abort"; a
// gRPC abort is 200 with content-type application/grpc, grpc-status and
// grpc-message (Envoy's trailers-only reply).
Response fault_abort_response(const FaultAbort& abort);

// True with probability percentage / 100, in steps of one per million as
// Envoy's FractionalPercent; exactly never at 0 and always at 100.
bool draw(double percentage, std::mt19937_64& rng);

// Istio's mirror Host: "-shadow" appended to the host part, before any port
// ("a:8080" -> "a-shadow:8080", "[::1]:80" -> "[::1]-shadow:80").
std::string shadow_authority(std::string_view authority);

}  // namespace sluice::policy
