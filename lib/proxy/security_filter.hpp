#pragma once
// The gateway's security policies on one request, in Envoy's filter order:
// jwt_authn (RequestAuthentication), then rbac (AuthorizationPolicy). Runs
// after admission (the path is normalised) and before the host's hooks and
// routing, so a refused request never reaches either.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/snapshot.hpp"
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

struct SecurityResult {
  std::optional<SecurityRefusal> refused;
  std::string principal;  // request.auth.principal ("iss/sub") of a verified token
};

// Authenticates (removing or forwarding tokens, writing output headers as
// the providers say) and authorizes `head`. `now` is wall-clock time for
// the tokens' exp and nbf.
SecurityResult check_security(const CompiledSecurity& security, RequestHead& head,
                              const SecurityPeer& peer, std::chrono::system_clock::time_point now);

// What check_security() would decide for `head`, and why: every
// AuthorizationPolicy rule with whether it matched. Edits `head` as
// check_security() does. A CUSTOM policy that matches is reported as the
// call to its provider, whose answer explain cannot know.
SecurityExplanation explain_security(const CompiledSecurity& security, RequestHead& head,
                                     const SecurityPeer& peer,
                                     std::chrono::system_clock::time_point now);

}  // namespace sluice
