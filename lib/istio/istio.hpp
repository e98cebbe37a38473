#pragma once
// Istio networking resources (Gateway, VirtualService, DestinationRule,
// ServiceEntry) as YAML -> sluice::GatewayConfig. The only YAML-aware code of
// sluice besides the example binary.
//
// Loading is three steps so that DNS never runs under a lock or on a worker:
//   parse_*()   YAML -> Resources (schema checked, field paths in errors)
//   sluice::resolve_hostnames()   hostnames of DNS ServiceEntries -> IP
//               literals (the library's resolver, include/sluice/dns.hpp)
//   translate() Resources + DNS answers -> GatewayConfig + metadata, and the
//               host entries a DnsEndpointSource keeps resolving
// load_files() does all three.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/dns.hpp"
#include "sluice/gateway.hpp"
#include "sluice/result.hpp"
#include "sluice/router.hpp"
#include "sluice/security.hpp"
#include "sluice/upstream.hpp"

namespace sluice::istio {

struct Resources;  // parsed Istio objects (istio/model.hpp)

// Holds parsed resources; cheap to move, shared by value.
struct Parsed {
  std::shared_ptr<const Resources> resources;
  std::vector<std::string> warnings;
};

// Files or directories (every *.yaml / *.yml directly inside, sorted by name).
Result<Parsed> parse_files(const std::vector<std::string>& paths);
// One YAML stream; `origin` names it in errors.
Result<Parsed> parse_string(std::string_view yaml, std::string origin = "<string>");

// Certificate and key files the configuration reads (resolved paths, unique):
// a change to one of them is a reason to reload.
std::vector<std::string> referenced_files(const Parsed& parsed);

// Hostnames that DNS-resolution ServiceEntries and ExternalName Services
// need, sorted and unique; with options.resolve_unknown_hosts also the
// destination hosts no ServiceEntry or Service declares.
std::vector<std::string> dns_names(const Parsed& parsed);

// hostname -> IPv4 literals; a name that did not resolve maps to an empty
// list (sluice::resolve_hostnames answers in this form).
using DnsTable = DnsAnswers;

// MeshConfig extensionProviders[]: the ext_authz providers CUSTOM policies
// name. envoyExtAuthzGrpc and the other kinds are valid Istio and load; a
// CUSTOM policy naming one is refused by translate().
struct ExtensionProvider {
  enum class Kind { ext_authz_http, ext_authz_grpc, file_access_log, opentelemetry, other };
  Kind kind = Kind::other;
  std::string field;  // "extensionProviders[1]", for errors
  // ext_authz_http: `service` and `port` as written (translate() resolves
  // them to the ServiceEntry's upstream); name in http.name.
  ExtAuthzHttpProvider http;
  // file_access_log (envoyFileAccessLog): path, and logFormat text or labels.
  AccessLogConfig access_log;
  // opentelemetry: the collector, "service:port/path" (TracingConfig).
  std::string otlp_endpoint;
};

// The mesh config's telemetry: meshConfig accessLogFile (with
// accessLogEncoding and accessLogFormat) is Istio's default "envoy" access
// log; defaultProviders name the providers used where no Telemetry does.
struct MeshTelemetry {
  std::optional<AccessLogConfig> access_log;  // accessLogFile set
  std::vector<std::string> default_access_logging;
  std::vector<std::string> default_tracing;
};

// The workload identity Istio mounts for a proxy (--mesh-certs DIR:
// cert-chain.pem, key.pem, root-cert.pem). With it, DestinationRule tls mode
// ISTIO_MUTUAL originates mTLS with this chain and key, trusts only
// root-cert.pem, and checks the peer's SPIFFE identity: one of the
// destination's service accounts when the loader knows them (the
// ServiceEntry's subjectAltNames, or spiffe://<trust domain>/ns/<ns>/sa/<sa>
// for each Pod's spec.serviceAccountName behind a Kubernetes Service), else
// any identity in the trust domain. SNI is Istio's
// outbound_.<port>_.<subset>_.<host>.
struct MeshCertificates {
  std::string cert_chain, key, root_cert;  // PEM
  // From the leaf's spiffe:// URI SAN; "cluster.local" when it has none.
  std::string trust_domain;
  std::vector<std::string> files;  // the three paths (the file watch reloads on change)
};
// Errors name the directory and the file that is missing or unreadable.
Result<MeshCertificates> load_mesh_certs(const std::string& dir);

struct TranslateOptions {
  std::string bind_address = "0.0.0.0";
  bool ephemeral_ports = false;  // listen on port 0 for every Gateway server port
  // WebSocket over HTTP/2 (RFC 8441) on every HTTP listener
  // (ListenerConfig::http2_extended_connect; --http2-extended-connect).
  bool http2_extended_connect = false;
  // The gateway's namespace (--gateway-namespace) also decides what it sees
  // through exportTo, as for an Istio gateway deployed there: a
  // VirtualService, DestinationRule, ServiceEntry or Service is used when its
  // exportTo is empty or holds "*", this namespace, or "." and the resource
  // lives here; others are left out with a note.
  // Which RequestAuthentication / AuthorizationPolicy resources select this
  // gateway (Istio semantics): those without selector in the root namespace
  // or the gateway's, those whose selector.matchLabels are all among
  // gateway_labels (in either namespace), and those whose targetRefs name a
  // loaded Gateway. MeshSettings::root_namespace should be copied here.
  std::string root_namespace = "istio-system";
  std::string gateway_namespace = "istio-system";
  // The labels of Istio's default ingress gateway Deployment.
  Labels gateway_labels = {{"app", "istio-ingressgateway"}, {"istio", "ingressgateway"}};
  // The mesh config's extensionProviders (apply_mesh copies them): CUSTOM
  // policies name one; its service becomes an upstream like a route's.
  std::vector<ExtensionProvider> extension_providers;
  std::string mesh_origin = "<mesh>";
  MeshTelemetry mesh_telemetry;  // Telemetry resources override it
  // Gateway API: the Gateways of this gatewayClassName are served; others
  // are ignored with a note.
  std::string gateway_class = "istio";
  // ISTIO_MUTUAL is a load error without them.
  std::optional<MeshCertificates> mesh_certs;
  // --resolve-unknown-hosts dns (docker-compose style): a destination host no
  // ServiceEntry or Service declares is resolved by DNS (like a ServiceEntry
  // with resolution DNS, on the destination's port or 80) and re-resolved in
  // the background. Off: such a host is a load error.
  bool resolve_unknown_hosts = false;
};
std::vector<std::string> dns_names(const Parsed& parsed, const TranslateOptions& options);

// A security policy the gateway enforces, or one the loader skipped.
struct SecurityPolicyInfo {
  std::string object;  // "AuthorizationPolicy istio-system/deny-get"
  std::string detail;  // why it applies ("selector istio=ingressgateway"), or why not
};

// Where a compiled route came from.
struct RouteOrigin {
  std::string virtual_service;  // "reviews" or "ns/reviews" outside "default"
  std::string namespace_;
  size_t rule_index = 0;  // http[i]
  std::string rule_name;  // http[i].name, may be empty
  // Route::matches[k] came from http[i].match[match_origin[k]] (some blocks
  // are dropped by their `gateways` field); for a delegated rule, from the
  // delegate's http[delegate_rule_index].match (merged with the root's).
  std::vector<size_t> match_origin;
  // Set when http[i] delegates: the delegate VirtualService and its rule.
  std::string delegate;
  size_t delegate_rule_index = 0;
  std::string delegate_rule_name;
  // Set for a Gateway API route's match: "HTTPRoute default/bookinfo rules[0].matches[1]".
  std::string source;
};

struct ServerOrigin {
  std::string gateway;  // display name, like RouteOrigin::virtual_service
  size_t server_index = 0;
  std::string server_name;
  std::string protocol;
  std::vector<std::string> hosts;
  std::string tls_mode;  // HTTPS / TLS servers: SIMPLE, MUTUAL, OPTIONAL_MUTUAL, PASSTHROUGH
};

struct ListenerInfo {
  std::string name;   // ListenerConfig::name and RouterConfig::name
  uint16_t port = 0;  // the Gateway server port (even with ephemeral_ports)
  std::vector<ServerOrigin> servers;
  std::map<std::string, RouteOrigin> routes;  // by Route::name
};

// Gateway API: a route's attachment to one parentRef, as its status
// conditions would say (type Accepted and ResolvedRefs, with the reason).
struct RouteParentStatus {
  std::string parent;  // "Gateway default/bookinfo-gateway", with sectionName / port if given
  bool accepted = false;
  std::string accepted_reason;  // Accepted, NotAllowedByListeners, NoMatchingListenerHostname,
                                // NoMatchingParent
  std::string accepted_message;
  bool resolved_refs = false;
  std::string resolved_reason;  // ResolvedRefs, BackendNotFound, RefNotPermitted, InvalidKind
  std::string resolved_message;
};

struct RouteStatus {
  std::string route;  // "HTTPRoute default/bookinfo"
  std::vector<RouteParentStatus> parents;
};

struct LoadedConfig {
  GatewayConfig config;
  std::vector<ListenerInfo> listeners;  // parallel to config.listeners
  // Upstreams of DNS-resolution ServiceEntries: their endpoints in `config`
  // are the answers translate() was given; a DnsEndpointSource built from
  // these keeps them current.
  std::vector<DnsUpstream> dns;
  std::vector<std::string> warnings;
  std::vector<SecurityPolicyInfo> security_applied;  // in config.security
  std::vector<SecurityPolicyInfo> security_skipped;  // select other workloads
  // EnvoyFilters (rate limits) applied to the gateway, and those that
  // select other workloads or contexts.
  std::vector<SecurityPolicyInfo> envoy_filters_applied;
  std::vector<SecurityPolicyInfo> envoy_filters_skipped;
  std::vector<RouteStatus> route_status;  // Gateway API routes, in the order read

  const ListenerInfo* listener_for_port(uint16_t port) const;
};

Result<LoadedConfig> translate(const Parsed& parsed, const TranslateOptions& options,
                               const DnsTable& dns = {});

// parse_files + resolve + translate.
Result<LoadedConfig> load_files(const std::vector<std::string>& paths,
                                const TranslateOptions& options = {});
Result<LoadedConfig> load_string(std::string_view yaml, const TranslateOptions& options = {},
                                 const DnsTable& dns = {});

// Istio MeshConfig: the mesh-wide settings sluice applies (more fields come
// as sluice implements them).
struct MeshSettings {
  PathNormalization path_normalization = PathNormalization::base;  // Istio's default
  std::string root_namespace = "istio-system";                     // rootNamespace
  uint32_t num_trusted_proxies = 0;  // defaultConfig.gatewayTopology.numTrustedProxies
  std::vector<ExtensionProvider> extension_providers;
  MeshTelemetry telemetry;
  std::string origin;  // the file, for errors ("MeshConfig <origin>")
};

// A MeshConfig YAML document, or the `istio` ConfigMap as kubectl prints it
// (MeshConfig YAML text in data.mesh). MeshConfig fields sluice does not use
// are ignored (they are valid Istio); a wrong type or value in a field it
// uses is an error `MeshConfig <origin>: <field>: ...`.
Result<MeshSettings> parse_mesh_config(std::string_view yaml, std::string origin = "<string>");
Result<MeshSettings> load_mesh_config(const std::string& path);
// Copies the settings into a translated configuration.
void apply_mesh(const MeshSettings& mesh, GatewayConfig& config);
// The settings translate() needs (rootNamespace decides which policies apply).
void apply_mesh(const MeshSettings& mesh, TranslateOptions& options);

// The reference rate-limit service's configuration (envoyproxy/ratelimit's
// config.yaml: a domain and its descriptors), bare or as the ConfigMap of
// Istio's rate-limit task (each data entry one file), for
// RateLimitConfig::service. Errors name `RateLimitConfig <origin>` and the
// field.
Result<std::vector<RateLimitServiceConfig>> parse_rate_limit_config(std::string_view yaml,
                                                                    std::string origin);
Result<std::vector<RateLimitServiceConfig>> load_rate_limit_config(const std::string& path);

// An error from compile() or Gateway::apply() about a Router this loader
// built, restated in Istio's terms: `Router http.8080:
// virtual_hosts[0].routes[2].redirect.uri: ...` becomes `VirtualService
// reviews: http[1].redirect.uri: ...`. Other errors come back unchanged.
Error to_istio_error(const LoadedConfig& loaded, const Error& error);

// Human-readable summary for `--check`: listeners, hosts, rules.
std::string summary(const LoadedConfig& loaded);

// Text for `--explain`: server, VirtualService, rule, destination, and why
// each earlier rule did not match.
std::string explain_text(const LoadedConfig& loaded, const ListenerInfo& listener,
                         const RouterConfig& router, const Explanation& explanation);

}  // namespace sluice::istio
