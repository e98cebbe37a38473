#pragma once
// Security policies as plain values: Istio's RequestAuthentication (JWT
// providers) and AuthorizationPolicy, applied to every listener of a
// gateway (the policies that select the ingress gateway). lib/istio turns
// Istio YAML into these; compile() validates them with the rest of the
// configuration. Semantics are Istio's and Envoy's (jwt_authn, rbac).

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

// ---- RequestAuthentication ----

// Istio's JWTHeader: the token is in header `name`, after `prefix`.
struct JwtHeaderLocation {
  std::string name;
  std::string prefix;  // e.g. "Bearer "; empty: the whole value
};

// Istio's ClaimToHeader.
struct JwtClaimToHeader {
  std::string header;
  std::string claim;  // top-level name, or nested with '.': "address.country"
};

// One jwtRules entry of a RequestAuthentication.
struct JwtProvider {
  std::string issuer;  // empty: any issuer
  std::vector<std::string> audiences;
  std::string jwks;  // the key set, inline JSON (Istio's `jwks`)
  // Istio's defaults when all three are empty: `Authorization: Bearer <token>`
  // and the `access_token` query parameter.
  std::vector<JwtHeaderLocation> from_headers;
  std::vector<std::string> from_params;
  std::vector<std::string> from_cookies;
  bool forward_original_token = false;  // default: the token is removed
  std::string output_payload_to_header;
  std::vector<JwtClaimToHeader> output_claim_to_headers;
  std::vector<std::string> space_delimited_claims;
  std::string source;  // the resource it came from, for errors ("RequestAuthentication ns/name")
};

// ---- AuthorizationPolicy ----

enum class AuthzAction : uint8_t { allow, deny, audit, custom };

// Rule.from[].source: who sends the request.
struct AuthzSource {
  std::vector<std::string> principals;  // peer identity, "<trust-domain>/ns/<ns>/sa/<sa>"
  std::vector<std::string> not_principals;
  std::vector<std::string> request_principals;  // JWT "<iss>/<sub>"
  std::vector<std::string> not_request_principals;
  std::vector<std::string> namespaces;  // from the peer identity
  std::vector<std::string> not_namespaces;
  std::vector<std::string> ip_blocks;  // peer (socket) address, IP or CIDR
  std::vector<std::string> not_ip_blocks;
  std::vector<std::string> remote_ip_blocks;  // client address from X-Forwarded-For
  std::vector<std::string> not_remote_ip_blocks;
};

// Rule.to[].operation: what the request does.
struct AuthzOperation {
  std::vector<std::string> hosts;  // :authority, case-insensitive
  std::vector<std::string> not_hosts;
  std::vector<std::string> ports;  // destination (listener) port, decimal
  std::vector<std::string> not_ports;
  std::vector<std::string> methods;
  std::vector<std::string> not_methods;
  std::vector<std::string> paths;  // normalised path, no query
  std::vector<std::string> not_paths;
};

// Rule.when[]: one attribute and the values it must (not) take. Keys:
// request.headers[NAME], source.ip, remote.ip, source.namespace,
// source.principal, request.auth.principal, request.auth.audiences,
// request.auth.presenter, request.auth.claims[NAME] (nested:
// request.auth.claims[a][b]), destination.ip, destination.port,
// connection.sni.
struct AuthzCondition {
  std::string key;
  std::vector<std::string> values;
  std::vector<std::string> not_values;
};

struct AuthzRule {
  std::vector<AuthzSource> from;
  std::vector<AuthzOperation> to;
  std::vector<AuthzCondition> when;
};

struct AuthorizationPolicy {
  std::string name;
  std::string ns;  // metadata.namespace
  AuthzAction action = AuthzAction::allow;
  std::string provider;  // provider.name; CUSTOM only
  std::vector<AuthzRule> rules;
};

struct SecurityConfig {
  std::vector<JwtProvider> jwt_providers;
  std::vector<AuthorizationPolicy> authorization;
  // Istio's root namespace: its DENY policies come first.
  std::string root_namespace = "istio-system";
  // meshConfig defaultConfig.gatewayTopology.numTrustedProxies: the client
  // address (remoteIpBlocks, remote.ip) is that many X-Forwarded-For
  // entries from the right; 0 is the peer.
  uint32_t num_trusted_proxies = 0;
};

}  // namespace sluice
