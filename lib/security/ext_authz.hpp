#pragma once
// Envoy's ext_authz HTTP service protocol, as Istio's envoyExtAuthzHttp
// provider configures it. Pure: the check request made from a client's
// request, and the provider's answer turned into a decision; the call
// itself goes through the upstream-connection layer (proxy/ext_authz).
//
// The check request (Envoy's raw HTTP client): the client's method, the
// provider's path_prefix + the client's normalised path and query, the
// client's Host, Authorization and the headers include_request_headers_in_check
// lets through (repeated ones joined with ','), then the additional headers
// (replacing), `x-envoy-auth-partial-body` when the body is included, and
// Content-Length: the body's size (0 without one).
//
// The answer: 200 allows (headers_to_upstream_on_allow and
// headers_to_downstream_on_allow pick headers to copy), 5xx is an error like
// an unreachable provider, anything else denies with the provider's status,
// body and headers (headers_to_downstream_on_deny; empty: all but Host and
// framing).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/request.hpp"
#include "sluice/result.hpp"
#include "sluice/security.hpp"

namespace sluice::security {

// Istio's header-name patterns: "abc" exact, "abc*" prefix, "*abc" suffix;
// case does not matter.
class HeaderPatterns {
 public:
  HeaderPatterns() = default;
  explicit HeaderPatterns(const std::vector<std::string>& patterns);
  bool matches(std::string_view name) const;
  bool empty() const { return patterns_.empty(); }

 private:
  std::vector<std::string> patterns_;  // lower case
};

// A provider, validated, with its upstream resolved.
struct CompiledExtAuthz {
  ExtAuthzHttpProvider config;
  uint32_t upstream = 0;  // index into Snapshot::upstreams
  HeaderPatterns request_headers;
  HeaderPatterns upstream_on_allow;
  HeaderPatterns downstream_on_allow;
  HeaderPatterns downstream_on_deny;
};

// Checks what reaches the wire (path_prefix, additional headers), the
// status and the body limit; errors read `ExtAuthzHttpProvider <name>:
// <field>: ...`.
Result<CompiledExtAuthz> compile_ext_authz(const ExtAuthzHttpProvider& provider, uint32_t upstream);

// Appends the check request for `head` (normalised) to `out`. `body` is what
// of the client's body goes along (at most max_request_bytes); `partial`
// says it was cut.
void append_check_request(std::string& out, const CompiledExtAuthz& provider,
                          const RequestHead& head, std::string_view body, bool partial);

// A check response's body is held whole, so it is capped; a longer one is
// an error.
inline constexpr size_t kMaxCheckResponseBody = 64 * 1024;

enum class ExtAuthzVerdict : uint8_t { ok, denied, error };

struct ExtAuthzOutcome {
  ExtAuthzVerdict verdict = ExtAuthzVerdict::error;
  uint16_t status = 0;  // denied: the provider's status
  std::string body;     // denied: the provider's body
  Headers downstream;   // denied: the client's headers; ok: added to the client's response
  Headers upstream;     // ok: set on the upstream request
};

// Envoy's reading of a complete check response.
ExtAuthzOutcome interpret_check_response(const CompiledExtAuthz& provider, const ResponseHead& head,
                                         std::string body);

}  // namespace sluice::security
