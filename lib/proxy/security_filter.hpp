#pragma once
// The gateway's security policies on one request, in Envoy's filter order:
// jwt_authn (RequestAuthentication), then authorization (AuthorizationPolicy)
// in Istio's order: CUSTOM (ext_authz), then AUDIT, DENY, ALLOW. Runs after
// admission (the path is normalised) and before the host's hooks and
// routing, so a refused request never reaches either.
//
// check_security() does what needs no I/O. When a CUSTOM policy matches it
// stops and names the provider; the session makes the call
// (proxy/ext_authz) and hands the answer to finish_security(), which
// refuses or goes on with the other policies.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/snapshot.hpp"
#include "security/ext_authz.hpp"
#include "sluice/request.hpp"
#include "sluice/router.hpp"
#include "tls/cert.hpp"

namespace sluice {

// Where the request came from, as the policies see it.
struct SecurityPeer {
  std::string_view ip;  // the downstream socket's address
  std::string_view sni;
  const tls::CertificateNames* certificate = nullptr;  // verified client certificate, if any
};

struct SecurityRefusal {
  Response response;
  std::string details;  // Envoy's response code details
};

// What the authorization engine needs again after the ext_authz call
// (the request's attributes, the verified token); internal.
struct SecurityState;

struct SecurityResult {
  SecurityResult();
  SecurityResult(SecurityResult&&) noexcept;
  SecurityResult& operator=(SecurityResult&&) noexcept;
  ~SecurityResult();

  std::optional<SecurityRefusal> refused;
  std::string principal;  // request.auth.principal ("iss/sub") of a verified token
  // A CUSTOM policy matched: ask this provider, then finish_security().
  const security::CompiledExtAuthz* ext_authz = nullptr;
  std::unique_ptr<SecurityState> pending;
};

// Authenticates (removing or forwarding tokens, writing output headers as
// the providers say) and authorizes `head` up to a CUSTOM policy. `now` is
// wall-clock time for the tokens' exp and nbf. `head` and `peer`'s
// certificate must outlive the result.
SecurityResult check_security(const CompiledSecurity& security, RequestHead& head,
                              const SecurityPeer& peer, std::chrono::system_clock::time_point now);

// After the provider allowed (or failed with fail_open): the remaining
// policies (AUDIT, DENY, ALLOW) decide; `result.refused` is set when they
// deny.
void finish_security(const CompiledSecurity& security, SecurityResult& result);

// What check_security() would decide for `head`, and why: every
// AuthorizationPolicy rule with whether it matched. Edits `head` as
// check_security() does. A CUSTOM policy that matches is reported as the
// call to its provider, whose answer explain cannot know.
SecurityExplanation explain_security(const CompiledSecurity& security, RequestHead& head,
                                     const SecurityPeer& peer,
                                     std::chrono::system_clock::time_point now);

}  // namespace sluice
