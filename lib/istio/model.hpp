#pragma once
// Parsed Istio resources: only what translate() needs, with the facts that
// error messages cite (kind, name, field path).

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sluice/matcher.hpp"
#include "sluice/router.hpp"
#include "sluice/upstream.hpp"

namespace sluice::istio {

struct Meta {
  std::string kind;
  std::string name;
  std::string namespace_ = "default";
  std::string file;

  // Errors say "VirtualService reviews"; the namespace only when not default.
  std::string display() const { return namespace_ == "default" ? name : namespace_ + "/" + name; }
  std::string object() const { return kind + " " + display(); }
  std::string key() const { return namespace_ + "/" + name; }
};

struct GatewayServer {
  uint16_t port = 0;
  std::string port_name;
  std::string protocol;  // upper case
  std::vector<std::string> hosts;
  std::string name;
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
};

struct VirtualServiceRes {
  Meta meta;
  std::vector<std::string> hosts;  // empty: a delegate (only reachable through a root's delegate)
  std::vector<std::string> gateways;
  std::vector<HttpRuleIn> http;
};

// The parts of a TrafficPolicy sluice maps; each is "set" or "absent" so that
// subset and port-level policies can override field by field, as Istio does.
struct LoadBalancerIn {
  LoadBalancer load_balancer = LoadBalancer::least_request;
  std::optional<ConsistentHash> consistent_hash;
  std::chrono::seconds warmup{0};
};

struct PolicyParts {
  std::optional<LoadBalancerIn> load_balancer;
  std::optional<ConnectionPoolSettings> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
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
};

struct ServiceEntryRes {
  Meta meta;
  std::vector<std::string> hosts;
  std::vector<ServicePort> ports;
  std::string resolution;  // STATIC, DNS, DNS_ROUND_ROBIN
  std::vector<WorkloadEndpoint> endpoints;
};

struct Resources {
  std::vector<GatewayRes> gateways;
  std::vector<VirtualServiceRes> virtual_services;
  std::vector<DestinationRuleRes> destination_rules;
  std::vector<ServiceEntryRes> service_entries;
};

// The narrower of two host patterns when one covers the other ("*",
// "*.example.com", "a.example.com"), nothing when they are disjoint.
std::optional<std::string> intersect_hosts(const std::string& vs_host,
                                           const std::string& server_host);

}  // namespace sluice::istio
