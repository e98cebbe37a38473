#pragma once
// Istio AuthorizationPolicy (security.istio.io v1 / v1beta1) at an ingress
// gateway: the policies as plain values, their validation, and a compiled
// engine the request path asks for a decision. Pure: no I/O, no clock; the
// caller supplies the request's attributes (peer certificate, JWT identity,
// addresses) and acts on the decision (403, ext_authz call, audit log).
//
// Semantics are Istio's translation to Envoy's RBAC filter:
// - Actions are evaluated CUSTOM, then DENY, then ALLOW. A matching CUSTOM
//   policy hands the request to its ext_authz provider first; any matching
//   DENY policy denies; if ALLOW policies exist and none matches, the request
//   is denied (403 "RBAC: access denied"). AUDIT policies only mark the
//   request for audit and never deny.
// - A policy matches when one of its rules matches. A rule matches when one
//   of its `from` sources, one of its `to` operations and all of its `when`
//   conditions match; an empty list places no constraint, so the rule `{}`
//   matches every request. A policy without rules matches nothing (the
//   `spec: {}` ALLOW policy allows nothing).
// - Inside a source, operation or condition, fields are ANDed; the values of
//   a field are ORed; `notX` holds when none of its values matches. An
//   attribute the request does not have matches no value, so a `notX` on it
//   holds.
// - String values: "abc" exact, "abc*" prefix, "*abc" suffix, "*" any
//   non-empty value (a header or host: present).
// - hosts match the whole :authority, port included, ignoring ASCII case
//   ("example.com" does not match "example.com:8080"; "example.com:*" does).
// - paths match the normalised path without the query. Path templates
//   "{*}" (one segment) and "{**}" (any number, the last operator) are
//   supported as Envoy's uri_template does.
// - principals / source.principal match the peer certificate's URI SANs,
//   then DNS SANs, then subject, with "spiffe://" in front of the value
//   ("cluster.local/ns/default/sa/sleep"). namespaces / source.namespace
//   match ".../ns/<value>/..." in the same names.
// - requestPrincipals / request.auth.principal ("iss/sub") split the value
//   at its last '/' and match the token's iss and sub claims separately.
// - request.headers[...] values match any one of the header's
//   comma-separated values (all its lines joined with ','), as Istio's
//   regex does.
// - Denials report Envoy's RESPONSE_CODE_DETAILS,
//   rbac_access_denied_matched_policy[ns[NS]-policy[NAME]-rule[N]] or [none].

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "security/authz_address.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"
#include "sluice/security.hpp"

namespace sluice::security {

// ---------------------------------------------------------------------------
// Configuration values, mirroring the Istio API (field names in errors are
// the API's camelCase names).

using sluice::AuthorizationPolicy;
using sluice::AuthzAction;
using sluice::AuthzCondition;
using sluice::AuthzOperation;
using sluice::AuthzRule;
using sluice::AuthzSource;

std::string_view to_string(AuthzAction action);  // "ALLOW", "DENY", "AUDIT", "CUSTOM"

struct AuthzOptions {
  // Istio's root namespace: its DENY policies are evaluated before the
  // others (a separate RBAC filter in front), which decides the policy a
  // denial reports when several match.
  std::string root_namespace = "istio-system";
};

// ---------------------------------------------------------------------------
// Request attributes. Views into the caller's request; nothing is copied.

// A JWT claim the token carried, flattened to its path: {"groups"} or, for
// a nested claim, {"realm", "roles"}. A string claim is one value, a list of
// strings its elements (Istio splits the space-delimited "scope" and
// "permission" claims into elements); claims of other types are left out,
// since Istio matches only strings and lists of strings.
struct JwtClaim {
  std::vector<std::string> path;
  std::vector<std::string> values;
};

// The identity of a validated JWT (Istio's request.auth.*).
struct JwtIdentity {
  std::string_view issuer;                 // iss
  std::string_view subject;                // sub
  std::string_view presenter;              // azp; empty when absent
  std::span<const std::string> audiences;  // aud, a string or each element of a list
  std::span<const JwtClaim> claims;
};

// The verified client certificate of an mTLS connection.
struct PeerIdentity {
  std::span<const std::string> uri_sans;  // e.g. "spiffe://cluster.local/ns/default/sa/sleep"
  std::span<const std::string> dns_sans;
  std::string_view subject;
};

struct AuthzRequest {
  std::string_view method;
  std::string_view authority;  // :authority / Host, as received
  std::string_view path;       // normalised, without the query
  const Headers* headers = nullptr;
  uint16_t destination_port = 0;  // the listener port
  IpAddress destination_ip;       // the listener's local address
  IpAddress peer;                 // the socket peer (ipBlocks, source.ip)
  IpAddress remote;      // the client (remoteIpBlocks, remote.ip): remote_address(); unset = peer
  std::string_view sni;  // TLS server name; empty without TLS or SNI
  const PeerIdentity* peer_identity = nullptr;  // null: no client certificate
  const JwtIdentity* jwt = nullptr;             // null: no validated token
};

// The attributes a request head carries: method, authority, path without
// the query (normalise the target first), headers, and the listener port as
// the destination port. Addresses, TLS and JWT identities are the caller's
// to add. Views into `head`.
AuthzRequest authz_request(const RequestHead& head);

// ---------------------------------------------------------------------------
// Decisions.

// One rule of one policy: Envoy's RBAC policy id and what logs show.
struct AuthzRuleRef {
  std::string ns;
  std::string name;
  uint32_t rule = 0;  // index in the policy's rules
  AuthzAction action = AuthzAction::allow;
  std::string provider;        // CUSTOM
  std::string id;              // "ns[NS]-policy[NAME]-rule[N]"
  std::string denied_details;  // "rbac_access_denied_matched_policy[<id>]"
};

enum class AuthzVerdict : uint8_t {
  allow,      // forward the request
  deny,       // answer 403 with kAuthzDeniedBody
  ext_authz,  // ask `provider`; if it allows, evaluate again from AuthzStage::rbac
};

inline constexpr uint16_t kAuthzDeniedStatus = 403;
inline constexpr std::string_view kAuthzDeniedBody = "RBAC: access denied";

struct AuthzDecision {
  AuthzVerdict verdict = AuthzVerdict::allow;
  // deny: the DENY rule that matched, or null when no ALLOW policy matched.
  // allow: the ALLOW rule that matched, or null when there is no ALLOW policy.
  // ext_authz: the CUSTOM rule that matched.
  const AuthzRuleRef* rule = nullptr;
  std::string_view provider;  // ext_authz: the extension provider to call
  // The first AUDIT rule that matched (requests are audited, never denied by
  // it). Null when none, or before CUSTOM has been resolved.
  const AuthzRuleRef* audit = nullptr;

  bool denied() const { return verdict == AuthzVerdict::deny; }
  // Envoy's response code details for a denial
  // ("rbac_access_denied_matched_policy[...]", "[none]" when no ALLOW policy
  // matched); empty otherwise.
  std::string_view details() const;
};

// One rule as explain sees it: whether it matched the request and, when it
// did not, the first field that does not hold.
struct AuthzRuleTrace {
  const AuthzRuleRef* rule = nullptr;
  bool matched = false;
  std::string why;  // e.g. `rules[0].to[0].operation.paths does not hold (path "/x")`
};

enum class AuthzStage : uint8_t {
  custom,  // start with CUSTOM policies
  rbac,    // CUSTOM already resolved (the provider allowed): AUDIT, DENY, ALLOW
};

// The compiled policies of one gateway. Immutable after compile(); evaluate()
// may run on any number of threads at once and allocates only to join a
// repeated request header a condition reads.
class AuthzEngine {
 public:
  // Validates every policy as Istio does (errors name the policy and the
  // field: `AuthorizationPolicy ns/name: rules[0].from[0].source.ipBlocks[1]:
  // invalid CIDR "10.0.0.0/33"`) and compiles them. At most one CUSTOM
  // provider per gateway (Istio's default).
  static Result<AuthzEngine> compile(std::span<const AuthorizationPolicy> policies,
                                     const AuthzOptions& options = {});

  AuthzEngine();
  AuthzEngine(AuthzEngine&&) noexcept;
  AuthzEngine& operator=(AuthzEngine&&) noexcept;
  ~AuthzEngine();

  AuthzDecision evaluate(const AuthzRequest& request, AuthzStage stage = AuthzStage::custom) const;
  // Every rule in evaluation order (CUSTOM unless `stage` is rbac, AUDIT,
  // root-namespace DENY, DENY, ALLOW), matched or not. For explain: slower
  // than evaluate() and allocating.
  std::vector<AuthzRuleTrace> trace(const AuthzRequest& request,
                                    AuthzStage stage = AuthzStage::custom) const;

  bool empty() const;                        // no policies at all: every request is allowed
  std::string_view custom_provider() const;  // the CUSTOM provider, empty if none

 private:
  struct Impl;
  std::unique_ptr<const Impl> impl_;
};

}  // namespace sluice::security
