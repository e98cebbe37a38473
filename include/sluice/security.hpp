#pragma once
// Security policies as plain values: Istio's RequestAuthentication (JWT
// providers) and AuthorizationPolicy, applied to every listener of a
// gateway (the policies that select the ingress gateway), and the ext_authz
// providers CUSTOM policies call. lib/istio turns Istio YAML into these;
// compile() validates them with the rest of the configuration. Semantics
// are Istio's and Envoy's (jwt_authn, rbac, ext_authz).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
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
  // Istio's `jwksUri`: an http:// or https:// URL the gateway fetches the key
  // set from (and refreshes, see JwksFetchOptions). Ignored when `jwks` is
  // set, as Istio ignores it. With neither, the key set is found by OpenID
  // discovery: `<issuer>/.well-known/openid-configuration`, then its
  // `jwks_uri` (the issuer must then be an http(s) URL).
  std::string jwks_uri;
  std::chrono::milliseconds timeout{5'000};  // Istio's `timeout`: one fetch, connect to body
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

// How the gateway fetches remote key sets (JwtProvider::jwks_uri and OpenID
// discovery). One fetch per distinct URL, however many providers name it,
// on the gateway's first worker; its keys are kept across reloads that keep
// the URL. Timers follow GatewayOptions::clock.
struct JwksFetchOptions {
  // A good key set is fetched again after this (Envoy's default JWKS
  // cache_duration). Until a new one arrives the old one stays.
  std::chrono::milliseconds refresh_interval{600'000};
  // After a failed fetch: retry after retry_initial, doubling per failure
  // in a row, at most retry_max (and never later than refresh_interval).
  std::chrono::milliseconds retry_initial{1'000};
  std::chrono::milliseconds retry_max{60'000};
  // A response body (or chunked total) larger than this fails the fetch.
  size_t max_response_bytes = 256 * 1024;
  // PEM CAs that https:// URLs are verified against; empty: the system
  // trust store (/etc/ssl/certs/ca-certificates.crt). The server name is
  // the URL's host (sent as SNI, checked against the certificate).
  std::string ca_certificates;
  // "host:port" -> "ip:port": connect there instead of looking the host up
  // (curl's --resolve). The URL still gives the Host header, the SNI and the
  // name the certificate must carry. For air-gapped gateways and tests.
  std::map<std::string, std::string> resolve;
};

// What the gateway knows about one fetched URL (Gateway::jwks_status).
struct JwksFetchStatus {
  enum class State : uint8_t {
    pending,  // the first fetch has not finished: tokens fail "Jwks remote fetch is failed"
    ok,       // the latest fetch succeeded
    failed,   // the latest fetch failed; `keys` > 0 when an older good set is in use
  };
  std::string uri;  // jwks_uri, or the issuer's discovery document URL
  State state = State::pending;
  std::string error;       // the latest failure, empty after a success
  size_t keys = 0;         // usable keys in the set in use; 0: none
  uint64_t successes = 0;  // fetches that stored a set
  uint64_t failures = 0;   // fetches that failed
  std::string jwks_uri;    // discovery: the jwks_uri the document named
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

// ---- External authorization (CUSTOM policies) ----

// Istio's includeRequestBodyInCheck (Envoy's with_request_body).
struct ExtAuthzRequestBody {
  // The client's body is buffered up to this many bytes (> 0) before the check.
  uint32_t max_request_bytes = 0;
  // A longer body: false answers 413; true sends the first max_request_bytes
  // (with `x-envoy-auth-partial-body: true`).
  bool allow_partial_message = false;
  bool pack_as_bytes = false;  // gRPC only; accepted and ignored over HTTP
};

// Istio's MeshConfig extensionProviders[].envoyExtAuthzHttp: Envoy's
// ext_authz HTTP service. Header lists take Istio's patterns, matched
// without regard to case: "abc" exact, "abc*" prefix, "*abc" suffix.
struct ExtAuthzHttpProvider {
  std::string name;  // what AuthorizationPolicy.provider.name refers to
  // The configured Upstream serving the checks (so they are pooled and use its
  // TLS settings): the one named `service`, else, with a port, the Istio
  // loader's name for the service port ("outbound|<port>||<service>").
  std::string service;
  uint16_t port = 0;
  std::string path_prefix;                     // prepended to the client's path; starts with '/'
  std::chrono::milliseconds timeout{600'000};  // Istio's default, 600 s
  // Allow the request when the provider fails (unreachable, timeout, 5xx).
  bool fail_open = false;
  uint16_t status_on_error = 403;  // the answer when it fails and fail_open is false
  // Client headers sent in the check besides Host, the method, the path,
  // Content-Length and Authorization (always sent).
  std::vector<std::string> include_request_headers_in_check;
  // Set on the check request (replacing a client header of the same name).
  std::vector<std::pair<std::string, std::string>> include_additional_headers_in_check;
  // Headers of a 200 check response copied into the upstream request
  // (replacing any of the same name) and into the client's response.
  std::vector<std::string> headers_to_upstream_on_allow;
  std::vector<std::string> headers_to_downstream_on_allow;
  // Headers of a denying check response the client gets; empty: all but Host.
  std::vector<std::string> headers_to_downstream_on_deny;
  std::optional<ExtAuthzRequestBody> include_request_body_in_check;
};

struct SecurityConfig {
  std::vector<JwtProvider> jwt_providers;
  std::vector<AuthorizationPolicy> authorization;
  // The providers CUSTOM policies name.
  std::vector<ExtAuthzHttpProvider> ext_authz_providers;
  // Istio's root namespace: its DENY policies come first.
  std::string root_namespace = "istio-system";
  // meshConfig defaultConfig.gatewayTopology.numTrustedProxies: the client
  // address (remoteIpBlocks, remote.ip) is that many X-Forwarded-For
  // entries from the right; 0 is the peer.
  uint32_t num_trusted_proxies = 0;
};

}  // namespace sluice
