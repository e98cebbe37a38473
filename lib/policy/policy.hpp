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

#include "sluice/request.hpp"
#include "sluice/result.hpp"
#include "sluice/router.hpp"

namespace sluice::policy {

// Retry conditions parsed from RetryPolicy::retry_on.
struct RetryOn {
  bool status_5xx = false;         // "5xx": any 5xx, and resets / connect failures
  bool gateway_error = false;      // "gateway-error": 502, 503, 504 + connect failures
  bool reset = false;              // "reset": upstream reset before response
  bool connect_failure = false;    // "connect-failure"
  bool refused_stream = false;     // "refused-stream" (HTTP/2; never seen on HTTP/1)
  bool retriable_4xx = false;      // "retriable-4xx": 409
  bool retriable_status_codes = false;
  std::vector<uint16_t> status_codes;  // bare numbers and "unavailable" (503), "cancelled"...
};

enum class AttemptOutcome { connect_failure, reset, timeout, response };

struct CompiledRetry {
  uint32_t attempts = 0;
  std::chrono::milliseconds per_try_timeout{0};
  RetryOn on;
  bool ignore_previous_hosts = true;
  std::chrono::milliseconds backoff_base{25};
  size_t max_replay_bytes = 0;

  // True when an attempt that ended with `outcome` (and `status` for
  // responses) may be retried under this policy.
  bool retriable(AttemptOutcome outcome, uint16_t status) const;
  // Envoy's backoff: random in [0, base * 2^retry), capped at 10 * base.
  std::chrono::milliseconds backoff(uint32_t retry, std::mt19937_64& rng) const;
};

struct CompiledCors {
  std::vector<std::unique_ptr<const re2::RE2>> origin_regexes;  // per allow_origins entry
  CorsPolicy source;
  std::string allow_methods;   // joined ", "
  std::string allow_headers;   // joined ", "
  std::string expose_headers;  // joined ", "
  std::string max_age;         // seconds as text, empty if unset
};

struct CompiledRoutePolicy {
  const Route* route = nullptr;  // the source, owned by the snapshot's RouterConfig
  std::unique_ptr<const re2::RE2> uri_regex_rewrite;
  CompiledRetry retry;  // attempts = 0 when the route has a fault (Istio)
  std::chrono::milliseconds timeout{0};  // 0 when the route has a fault (Istio)
  std::optional<CompiledCors> cors;
};

// Validates and compiles the policy fields of `route`. `field` is the route's
// path for error messages ("virtual_hosts[0].routes[2]"); `object` the
// config object ("Router main").
Result<CompiledRoutePolicy> compile_route_policy(const Route& route, std::string_view object,
                                                 std::string_view field);

// --- decisions -----------------------------------------------------------

// Location header for a redirect: scheme://authority[:port]/path, built from
// the request and the redirect's fields (Istio HTTPRedirect semantics;
// derivePort FROM_PROTOCOL_DEFAULT omits the port, FROM_REQUEST_PORT keeps
// the listener port).
std::string redirect_location(const Redirect& redirect, const RequestHead& request);

// Applies rewrite.uri / uri_regex / authority to `request` in place.
// `matched` is the Matcher that selected the route (for prefix replacement),
// or null when the route matched everything.
void apply_rewrite(const CompiledRoutePolicy& policy, const Matcher* matched,
                   RequestHead& request);

// remove, then set, then add.
void apply_headers(const HeaderOperations& ops, Headers& headers);

// CORS for one request.
struct CorsDecision {
  // A preflight answered at the gateway (status 200 with the allow headers).
  std::optional<Response> preflight;
  // Headers to add to the upstream's response (actual requests from an
  // allowed origin).
  std::vector<std::pair<std::string, std::string>> response_headers;
};
CorsDecision evaluate_cors(const CompiledCors& cors, const RequestHead& request);

// Fault decision drawn from `rng`.
struct FaultDecision {
  std::chrono::milliseconds delay{0};  // 0: none
  std::optional<Response> abort;       // the abort response, if drawn
};
FaultDecision decide_fault(const Fault& fault, std::mt19937_64& rng);

// True with probability percentage / 100 (percentage in [0, 100]).
bool draw(double percentage, std::mt19937_64& rng);

// Istio's mirror Host: "-shadow" appended to the host part, before any port.
std::string shadow_authority(std::string_view authority);

}  // namespace sluice::policy
