#pragma once
// How one upstream attempt of an HTTP exchange ended. Retry policy (policy/)
// decides on it and outlier detection (upstream/) counts it; it lives here,
// below both, so neither pulls in the other (policy.hpp brings RE2).

namespace sluice {

enum class AttemptOutcome {
  connect_failure,  // no connection to the endpoint
  reset,            // the connection closed or failed before a response head
  timeout,          // the per-try timeout fired before a response head
  response,         // a response head arrived with `status`
  // The client went away or stalled: says nothing about the upstream, so it
  // is never retried and never counts toward outlier ejection.
  downstream_cancelled,
};

namespace policy {
// The spelling callers used while the enum lived in policy.hpp; drop it once
// none writes policy::AttemptOutcome.
using AttemptOutcome = sluice::AttemptOutcome;
}  // namespace policy

}  // namespace sluice
