#pragma once
// Parsed Istio resources: only what translate() needs, with the facts that
// error messages cite (kind, name, field path).

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "sluice/gateway.hpp"
#include "sluice/matcher.hpp"
#include "sluice/ratelimit.hpp"
#include "sluice/router.hpp"
#include "sluice/security.hpp"
#include "sluice/upstream.hpp"

namespace sluice::istio {

struct Meta {
  std::string kind;
  std::string name;
  std::string namespace_ = "default";
  std::string file;
  // exportTo (a Service's networking.istio.io/exportTo annotation): ".", "*"
  // or namespaces; empty: every namespace.
  std::vector<std::string> export_to;

  // Errors say "VirtualService reviews"; the namespace only when not default.
  std::string display() const { return namespace_ == "default" ? name : namespace_ + "/" + name; }
  std::string object() const { return kind + " " + display(); }
  std::string key() const { return namespace_ + "/" + name; }
};

// The loader reports the first error by unwinding to its entry point
// (load-time only; never on the request path).
struct LoadError {
  Error error;
};

[[noreturn]] inline void fail(const Meta& meta, std::string path, std::string message) {
  throw LoadError{Error{meta.object(), std::move(path), std::move(message)}};
}

// A certificate, key or CA bundle named by a file field: its path as written,
// the resolved path (relative to the YAML file) and the PEM read at load.
struct PemFile {
  std::string field;  // YAML path, for errors
  std::string path;   // resolved
  std::string text;
};

// Gateway server `tls` (ServerTLSSettings).
struct ServerTlsIn {
  std::string mode = "PASSTHROUGH";  // Istio's zero value
  bool https_redirect = false;
  std::optional<PemFile> server_certificate, private_key, ca_certificates;
  std::string credential_name;
  std::vector<std::string> subject_alt_names;
  std::vector<std::string> verify_certificate_spki;
  std::vector<std::string> verify_certificate_hash;
  TlsServer::Version min_version = TlsServer::Version::tls1_2;
  TlsServer::Version max_version = TlsServer::Version::tls_auto;
  std::vector<std::string> cipher_suites;
};

struct GatewayServer {
  uint16_t port = 0;
  std::string port_name;
  std::string protocol;  // upper case
  std::vector<std::string> hosts;
  std::string name;
  std::optional<ServerTlsIn> tls;  // absent: no `tls` block
};

struct GatewayRes {
  Meta meta;
  std::vector<GatewayServer> servers;
};

struct HttpMatchIn {
  Matcher matcher;
  std::vector<std::string> gateways;  // as written
  bool source_labels = false;         // mesh-only condition: never true at an ingress
};

struct DestinationIn {
  std::string host;
  std::string subset;
  std::optional<uint16_t> port;
  std::optional<int64_t> weight;
  HeaderOperations request_headers;  // route[].headers
  HeaderOperations response_headers;
};

struct MirrorIn {
  DestinationIn destination;  // host, subset, port only
  double percentage = 100;
  std::string path;  // YAML path of the destination, for errors
};

struct DelegateIn {
  std::string name;
  std::string namespace_;  // empty: the root VirtualService's
};

struct HttpRuleIn {
  std::string name;
  std::vector<HttpMatchIn> matches;
  std::vector<DestinationIn> route;
  std::optional<DirectResponse> direct_response;
  std::optional<Redirect> redirect;
  std::optional<Rewrite> rewrite;
  bool headers_set = false;  // `headers` present (delegate merging)
  HeaderOperations request_headers;
  HeaderOperations response_headers;
  std::optional<std::chrono::milliseconds> timeout;
  std::optional<RetryPolicy> retries;  // absent: Istio's default policy (RetryPolicy{})
  std::optional<Fault> fault;
  std::optional<std::vector<MirrorIn>> mirrors;  // mirror or mirrors
  std::optional<CorsPolicy> cors;
  std::optional<DelegateIn> delegate;
  // Set for a rule made from a Gateway API route: "HTTPRoute default/bookinfo"
  // and "rules[0].matches[1]", which --check and explain name instead.
  std::string source_object, source_field;
};

// VirtualService `tls:` routes (TLSRoute), served at PASSTHROUGH servers.
struct TlsMatchIn {
  std::vector<std::string> sni_hosts;
  std::optional<uint16_t> port;
  std::vector<std::string> gateways;
  bool source_labels = false;  // mesh-only condition: never true at an ingress
};

struct TlsRuleIn {
  std::vector<TlsMatchIn> matches;
  std::vector<DestinationIn> route;
};

// VirtualService `tcp:` routes (TCPRoute), served at TCP servers and at TLS
// servers that terminate. No match: every connection.
struct TcpMatchIn {
  std::optional<uint16_t> port;
  std::vector<std::string> gateways;
  std::string source_subnet;   // empty: any client
  bool source_labels = false;  // mesh-only condition: never true at an ingress
};

struct TcpRuleIn {
  std::vector<TcpMatchIn> matches;
  std::vector<DestinationIn> route;
};

struct VirtualServiceRes {
  Meta meta;
  std::vector<std::string> hosts;  // empty: a delegate (only reachable through a root's delegate)
  std::vector<std::string> gateways;
  std::vector<HttpRuleIn> http;
  std::vector<TlsRuleIn> tls;
  std::vector<TcpRuleIn> tcp;
};

// The parts of a TrafficPolicy sluice maps; each is "set" or "absent" so that
// subset and port-level policies can override field by field, as Istio does.
struct LoadBalancerIn {
  LoadBalancer load_balancer = LoadBalancer::least_request;
  std::optional<ConsistentHash> consistent_hash;
  std::chrono::seconds warmup{0};
};

// DestinationRule `tls` (ClientTLSSettings).
struct ClientTlsIn {
  std::string mode = "DISABLE";
  std::string path;  // YAML path of the block, for errors
  std::string sni;
  std::optional<PemFile> ca_certificates, client_certificate, private_key;
  std::string credential_name;
  std::vector<std::string> subject_alt_names;
  bool insecure_skip_verify = false;
};

struct PolicyParts {
  std::optional<LoadBalancerIn> load_balancer;
  std::optional<ConnectionPoolSettings> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  std::optional<ClientTlsIn> tls;
  std::string h2_upgrade_policy;  // connectionPool.http.h2UpgradePolicy; empty: DEFAULT
};

struct PortPolicyIn {
  uint16_t port = 0;
  PolicyParts parts;
};

struct TrafficPolicyIn {
  PolicyParts parts;
  std::vector<PortPolicyIn> port_level;  // portLevelSettings
};

struct SubsetIn {
  std::string name;
  Labels labels;
  std::optional<TrafficPolicyIn> traffic_policy;
};

struct DestinationRuleRes {
  Meta meta;
  std::string host;
  std::vector<SubsetIn> subsets;
  std::optional<TrafficPolicyIn> traffic_policy;
};

struct ServicePort {
  uint16_t number = 0;
  std::string name;
  std::string protocol;
  std::optional<uint16_t> target_port;
};

struct WorkloadEndpoint {
  std::string address;
  std::map<std::string, uint16_t> ports;  // port name -> number
  Labels labels;
  uint32_t weight = 1;
  // From the Kubernetes registry: `ports` lists every port the endpoint
  // serves (by Service port name, "" for an unnamed one); others skip it.
  bool only_listed_ports = false;
};

struct ServiceEntryRes {
  Meta meta;
  std::vector<std::string> hosts;
  std::vector<ServicePort> ports;
  std::string resolution;  // STATIC, DNS, DNS_ROUND_ROBIN
  std::vector<WorkloadEndpoint> endpoints;
  // ISTIO_MUTUAL peer identities: spec.subjectAltNames, or for a Kubernetes
  // Service the SPIFFE paths "ns/<ns>/sa/<sa>" of its Pods' service accounts.
  std::vector<std::string> subject_alt_names;
  std::vector<std::string> service_accounts;
};

// A core v1 Secret (credentialName); `data` decoded, `stringData` merged.
struct SecretRes {
  Meta meta;
  std::string type;
  std::map<std::string, std::string> data;
};

// Which workloads a security policy is for: spec.selector.matchLabels, or
// spec.targetRef / targetRefs (Istio allows one of the two).
struct PolicyTargetIn {
  std::string group;
  std::string kind;
  std::string name;
  std::string namespace_;  // empty: the policy's
};

struct WorkloadScopeIn {
  std::optional<Labels> selector;  // absent or empty: every workload of the namespace
  std::vector<PolicyTargetIn> target_refs;
};

struct RequestAuthenticationRes {
  Meta meta;
  WorkloadScopeIn scope;
  std::vector<JwtProvider> jwt_rules;  // source set to the resource
};

struct AuthorizationPolicyRes {
  Meta meta;
  WorkloadScopeIn scope;
  AuthorizationPolicy policy;  // name and ns from metadata
};

// One configPatches entry of an EnvoyFilter, in the rate-limit task's shapes.
struct EnvoyFilterPatchIn {
  enum class Kind { local_filter, global_filter, vhost, route, cluster };
  Kind kind = Kind::cluster;
  std::string field;                      // "configPatches[i]", for errors
  std::string context;                    // match.context; empty: ANY
  std::optional<uint32_t> port;           // match.routeConfiguration.portNumber
  std::string vhost;                      // empty: every virtual host
  std::string route;                      // empty: every route
  std::optional<LocalRateLimit> local;    // the filter's, or typed_per_filter_config
  std::optional<GlobalRateLimit> global;  // global_filter
  std::vector<RateLimitRule> rate_limits;
};

struct EnvoyFilterRes {
  Meta meta;
  WorkloadScopeIn scope;  // workloadSelector.labels
  std::vector<EnvoyFilterPatchIn> patches;
};

// telemetry.istio.io Telemetry: the sections sluice applies (telemetry.cpp).
struct TelemetryProvidersIn {
  std::string field;                   // "accessLogging[0]", for errors
  std::vector<std::string> providers;  // empty: the mesh's default providers
  std::vector<std::string> provider_fields;
  std::optional<bool> disabled;
  std::optional<double> sampling;  // tracing: randomSamplingPercentage
  bool disable_span_reporting = false;
  // match.mode SERVER: inbound traffic of sidecars only; Istio treats a
  // gateway's traffic as CLIENT, so such an entry does not apply to it.
  bool server_only = false;
};

struct TelemetryRes {
  Meta meta;
  WorkloadScopeIn scope;
  std::vector<TelemetryProvidersIn> access_logging;
  std::vector<TelemetryProvidersIn> tracing;
};

// The Kubernetes service registry (kubernetes.cpp), as `kubectl get -o
// yaml` prints it. Endpoints and EndpointSlices are both read into
// K8sEndpointsRes.
struct K8sServicePort {
  std::string name;  // may be empty for a Service's only port
  uint16_t port = 0;
  std::optional<uint16_t> target_number;  // targetPort as a number (absent: `port`)
  std::string target_name;                // targetPort as a name (a container port)
  std::string app_protocol;
};

struct K8sServiceRes {
  Meta meta;
  std::vector<K8sServicePort> ports;  // TCP ports only
  std::string external_name;          // type ExternalName: the DNS name it stands for
};

struct K8sEndpoint {
  std::string ip;
  bool ready = true;
  std::string pod;                        // targetRef of kind Pod: "ns/name"
  std::map<std::string, uint16_t> ports;  // Service port name -> endpoint port
  std::string field;                      // "subsets[0].addresses[1]", for messages
};

struct K8sEndpointsRes {
  Meta meta;            // kind Endpoints or EndpointSlice
  std::string service;  // the Service's name (its namespace is the object's)
  Labels labels;        // an EndpointSlice's metadata.labels
  std::vector<K8sEndpoint> endpoints;
};

struct K8sPodRes {
  Meta meta;
  Labels labels;
  std::vector<std::string> ips;             // status.podIP and status.podIPs
  std::string service_account = "default";  // spec.serviceAccountName
};

struct GatewayApiResources;  // gateway_api.hpp

struct Resources {
  std::vector<GatewayRes> gateways;
  std::vector<VirtualServiceRes> virtual_services;
  std::vector<DestinationRuleRes> destination_rules;
  std::vector<ServiceEntryRes> service_entries;
  std::vector<SecretRes> secrets;
  std::vector<RequestAuthenticationRes> request_authentications;
  std::vector<AuthorizationPolicyRes> authorization_policies;
  std::vector<EnvoyFilterRes> envoy_filters;
  std::vector<TelemetryRes> telemetries;
  std::vector<K8sServiceRes> services;
  std::vector<K8sEndpointsRes> endpoints;
  std::vector<K8sPodRes> pods;
  std::shared_ptr<GatewayApiResources> gateway_api;  // null: no Gateway API objects
};

class Fields;
struct TranslateOptions;
struct LoadedConfig;
// parse.cpp: spec.selector / targetRef(s) of a policy-like resource.
WorkloadScopeIn parse_scope(Fields& f, const Meta& m);
// telemetry.cpp: a Telemetry spec, or a LoadError naming the field.
TelemetryRes parse_telemetry(const YAML::Node& spec, const Meta& meta);
// The Telemetry resources and mesh settings that select the gateway, into
// out.config.telemetry (access logs and tracing).
void apply_telemetry(const Resources& resources, const TranslateOptions& options,
                     LoadedConfig& out);

// envoyfilter.cpp: an EnvoyFilter spec, or a LoadError naming the field.
EnvoyFilterRes parse_envoy_filter(const YAML::Node& spec, const Meta& meta);
struct TranslateOptions;
struct LoadedConfig;
// The EnvoyFilters that select the gateway, into out.config.rate_limits
// (after the routers are built: patches name virtual hosts and routes).
void apply_envoy_filters(const Resources& resources, const TranslateOptions& options,
                         LoadedConfig& out);

// kubernetes.cpp: a core v1 Service, Endpoints, Pod or Namespace, or a
// discovery.k8s.io/v1 EndpointSlice, into `res` (false: not one of those).
// `seen` holds "kind/ns/name" of the objects read so far (duplicates).
bool parse_kubernetes(const YAML::Node& doc, const Meta& meta, const std::string& api,
                      Resources& res, std::set<std::string>& seen,
                      std::vector<std::string>& warnings);
// The Services as ServiceEntries (resolution STATIC, one host: the FQDN) with
// their ready endpoints, target ports and Pod labels.
std::vector<ServiceEntryRes> registry_entries(const Resources& res,
                                              std::vector<std::string>& warnings);
// "reviews.default" and "reviews.default.svc" name the Service reviews of
// namespace default: its FQDN; any other host unchanged.
std::string registry_host(const Resources& res, const std::string& host);

// The narrower of two host patterns when one covers the other ("*",
// "*.example.com", "a.example.com"), nothing when they are disjoint.
std::optional<std::string> intersect_hosts(const std::string& vs_host,
                                           const std::string& server_host);

}  // namespace sluice::istio
