#pragma once
// The Kubernetes Gateway API (gateway.networking.k8s.io/v1): GatewayClass,
// Gateway, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute and ReferenceGrant. Parsed here, then turned
// into the Istio model before translate() runs, the way Istio does it
// (pilot/pkg/config/kube/gateway): one Gateway server per listener, and per
// port and hostname one VirtualService holding every attached route's
// matches, one rule per match, in Gateway API precedence order.

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "istio/model.hpp"

namespace sluice::istio {

// A reference to another object (parentRefs, backendRefs, certificateRefs).
struct GwRef {
  std::string group;
  std::string kind;
  std::string name;
  std::string namespace_;  // empty: the referring object's
  std::string section_name;
  std::optional<uint16_t> port;
  int64_t weight = 1;
  HeaderOperations request_headers;  // backendRefs[].filters
  HeaderOperations response_headers;
  std::string field;  // "spec.rules[0].backendRefs[1]", for errors and status
};

struct GwListener {
  std::string name;
  std::string hostname;  // empty: any
  uint16_t port = 0;
  std::string protocol;  // HTTP, HTTPS, TLS
  std::string tls_mode;  // Terminate, Passthrough; empty without tls
  std::vector<GwRef> certificate_refs;
  std::string from = "Same";  // allowedRoutes.namespaces.from: Same, All, Selector
  Labels selector;            // Selector: matchLabels
  std::vector<std::pair<std::string, std::string>> kinds;  // allowedRoutes.kinds {group, kind}
  std::string field;                                       // "spec.listeners[0]"
};

struct GwGateway {
  Meta meta;
  std::string class_name;
  std::vector<GwListener> listeners;
};

// One match of an HTTPRoute rule, with what precedence compares.
struct GwMatch {
  Matcher matcher;
  int path_rank = 2;         // 3 Exact, 2 PathPrefix, 1 RegularExpression
  size_t path_length = 1;    // characters of the path value
  std::string prefix = "/";  // PathPrefix value (ReplacePrefixMatch rewrites it)
  std::string field;         // "spec.rules[0].matches[1]"
  // GRPCRoute precedence: characters of the service and method matched.
  size_t grpc_service_length = 0, grpc_method_length = 0;
};

struct GwPathModifier {
  std::optional<std::string> full_path;       // ReplaceFullPath
  std::optional<std::string> prefix_replace;  // ReplacePrefixMatch
};

struct GwMirror {
  GwRef backend;
  double percentage = 100;
};

struct GwHttpRule {
  std::vector<GwMatch> matches;  // never empty: the default is PathPrefix "/"
  std::vector<GwRef> backends;
  HeaderOperations request_headers, response_headers;
  std::optional<Redirect> redirect;
  bool redirect_port_set = false;
  std::optional<std::string> rewrite_host;
  std::optional<GwPathModifier> rewrite_path;
  std::string rewrite_field;  // the URLRewrite filter, for errors
  std::vector<GwMirror> mirrors;
  std::optional<std::chrono::milliseconds> timeout, backend_timeout;
  std::string field;  // "spec.rules[0]"
};

struct GwRoute {
  Meta meta;                   // kind HTTPRoute, GRPCRoute, TLSRoute or TCPRoute
  std::string created;         // metadata.creationTimestamp (RFC 3339), may be empty
  std::vector<GwRef> parents;  // parentRefs
  std::vector<std::string> hostnames;
  std::vector<GwHttpRule> rules;  // TLSRoute, TCPRoute: backends only
};

struct GwReferenceGrant {
  Meta meta;
  struct From {
    std::string group, kind, namespace_;
  };
  struct To {
    std::string group, kind, name;  // name empty: any
  };
  std::vector<From> from;
  std::vector<To> to;
};

struct GatewayApiResources {
  std::vector<std::string> classes;  // GatewayClass names
  std::vector<GwGateway> gateways;
  std::vector<GwRoute> routes;  // HTTPRoutes, TLSRoutes and TCPRoutes, as read
  std::vector<GwReferenceGrant> grants;
  std::map<std::string, Labels> namespace_labels;  // Namespace objects
};

// A gateway.networking.k8s.io object into res.gateway_api (false: not one).
// A v1 Namespace only has its labels noted (allowedRoutes selectors) and
// false is returned, so that the service registry reads it too.
// Kinds of the group it does not know are ignored with a warning.
bool parse_gateway_api(const YAML::Node& doc, const Meta& meta, const std::string& api,
                       Resources& res, std::set<std::string>& seen,
                       std::vector<std::string>& warnings);

// The Gateway API objects as Istio Gateways and VirtualServices, appended to
// `res`; what the conditions would say about each route into `status`, and
// Gateways of other classes into `warnings`.
struct RouteStatus;
void convert_gateway_api(Resources& res, const std::string& gateway_class,
                         std::vector<RouteStatus>& status, std::vector<std::string>& warnings);

}  // namespace sluice::istio
