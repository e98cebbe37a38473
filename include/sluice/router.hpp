#pragma once
// Routing: virtual hosts chosen by authority, then ordered rules, first match
// wins. RouterConfig is a plain value; Router is its compiled, immutable form.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sluice/matcher.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"

namespace sluice {

// Header edits, applied in the order remove, set, add (Istio HeaderOperations).
struct HeaderOperations {
  std::vector<std::pair<std::string, std::string>> set;  // replace or create
  std::vector<std::pair<std::string, std::string>> add;  // append
  std::vector<std::string> remove;

  bool empty() const { return set.empty() && add.empty() && remove.empty(); }
};

struct Destination {
  std::string upstream;               // UpstreamConfig::name
  std::string subset;                 // empty: all endpoints
  uint32_t weight = 1;                // share = weight / sum of weights; 0 gets nothing
  HeaderOperations request_headers;   // after the route's
  HeaderOperations response_headers;  // before the route's
};

struct DirectResponse {
  uint16_t status = 200;
  std::string body;
};

// An HTTP redirect answered by the gateway (Istio HTTPRedirect).
struct Redirect {
  enum class DerivePort { none, from_protocol_default, from_request_port };
  std::string uri;        // replaces the path (and query); empty keeps it
  std::string authority;  // replaces the host; empty keeps it
  std::string scheme;     // empty keeps it
  uint16_t port = 0;      // 0 keeps the request's (or derive_port decides)
  DerivePort derive_port = DerivePort::none;
  uint16_t code = 301;
};

// Rewrites before forwarding (Istio HTTPRewrite).
struct Rewrite {
  // Replaces the matched prefix (the whole path for exact or regex matches).
  std::optional<std::string> uri;
  // RE2 regex replace on the path; `\1` refers to captures.
  std::optional<std::pair<std::string, std::string>> uri_regex;  // {match, rewrite}
  std::string authority;                                         // empty keeps Host
};

// Istio HTTPRetry. The default value is Istio's default policy for routes
// without a `retries` field.
struct RetryPolicy {
  uint32_t attempts = 2;  // retries, so at most 1 + attempts requests; 0 disables
  std::chrono::milliseconds per_try_timeout{0};  // 0: the route timeout
  // Envoy retry_on tokens: 5xx, gateway-error, reset, connect-failure,
  // refused-stream, retriable-4xx, retriable-status-codes, unavailable,
  // cancelled, ...; bare numbers are retriable status codes.
  std::string retry_on = "connect-failure,refused-stream,unavailable,cancelled,503";
  bool retry_ignore_previous_hosts = true;
  std::chrono::milliseconds backoff_base{25};
  size_t max_replay_bytes = 64 * 1024;  // bodies larger than this are not retried
};

// Istio HTTPFaultInjection; percentages in [0, 100].
struct FaultDelay {
  std::chrono::milliseconds fixed_delay{0};
  double percentage = 0;
};
struct FaultAbort {
  uint16_t http_status = 0;  // or a gRPC status below
  std::optional<uint32_t> grpc_status;
  double percentage = 0;
};
struct Fault {
  std::optional<FaultDelay> delay;
  std::optional<FaultAbort> abort;
};

struct Mirror {
  std::string upstream;
  std::string subset;
  double percentage = 100;  // of requests copied
};

struct CorsPolicy {
  std::vector<StringMatch> allow_origins;  // exact, prefix, regex
  std::vector<std::string> allow_methods;
  std::vector<std::string> allow_headers;
  std::vector<std::string> expose_headers;
  std::optional<std::chrono::seconds> max_age;
  std::optional<bool> allow_credentials;
  bool forward_unmatched_preflights = true;  // Istio's default (FORWARD)
};

struct Route {
  std::string name;
  // Where the route came from, for config dumps: `Kind ns/name`, e.g.
  // "VirtualService default/reviews" (set by the Istio loader); empty: code.
  std::string origin;
  // ORed; conditions inside one Matcher are ANDed. Empty: matches everything.
  std::vector<Matcher> matches;
  // Exactly one action: destinations (forward), redirect or direct_response.
  std::vector<Destination> destinations;
  std::optional<Redirect> redirect;
  std::optional<DirectResponse> direct_response;
  // Policies for forwarded requests.
  std::optional<Rewrite> rewrite;
  HeaderOperations request_headers;
  HeaderOperations response_headers;
  std::chrono::milliseconds timeout{0};  // 0: none (Istio's default)
  RetryPolicy retries;
  // With a fault, the route's timeout and retries are off (as in Istio).
  std::optional<Fault> fault;
  std::vector<Mirror> mirrors;
  std::optional<CorsPolicy> cors;
};

struct VirtualHost {
  std::string name;
  // "example.com", "*.example.com", "*"; compared case-insensitively, the
  // request's port stripped unless a domain names one.
  std::vector<std::string> domains;
  std::vector<Route> routes;
  // Plain-HTTP requests get a 301 to the https URL (Istio httpsRedirect).
  bool https_redirect = false;
};

struct RouterConfig {
  std::string name;
  std::vector<VirtualHost> virtual_hosts;
};

// What a gateway's security policies do with a request, in the order the
// gateway applies them: RequestAuthentication, then AuthorizationPolicy.
struct SecurityExplanation {
  struct Rule {
    std::string policy;  // "ns/name"
    uint32_t rule = 0;   // index in the policy's rules
    std::string action;  // "ALLOW", "DENY", "AUDIT", "CUSTOM"
    bool matched = false;
    std::string why;  // not matched: the first field that does not hold
  };
  std::string authentication;  // what RequestAuthentication did, in words
  std::string principal;       // request.auth.principal ("iss/sub"); empty without a valid token
  std::vector<Rule> rules;     // every AuthorizationPolicy rule, in evaluation order
  std::string decision;        // which policy decided, and how
  uint16_t status = 0;         // the gateway's own answer (401, 403); 0: the request goes on
  std::string details;         // Envoy's response code details for that answer

  std::string to_string() const;
};

// Why a request took (or did not take) a route.
struct Explanation {
  struct Skipped {
    size_t route_index = 0;
    std::string route_name;
    std::string reason;  // e.g. `match[0]: header "end-user" is absent`
  };
  bool host_matched = false;
  size_t virtual_host_index = 0;
  std::string virtual_host;  // name of the chosen virtual host
  std::string host_match;    // the domain entry that matched
  std::optional<size_t> route_index;
  std::string route_name;
  std::optional<size_t> match_index;  // which match block matched
  std::vector<Skipped> skipped;       // earlier rules, in order
  // Gateway::explain with security policies: what they decide, before routing.
  std::optional<SecurityExplanation> security;

  std::string to_string() const;
};

namespace detail {
struct CompiledRouter;
}

class Router {
 public:
  struct Selection {
    size_t virtual_host_index;
    size_t route_index;
    const VirtualHost* virtual_host;
    const Route* route;
    const Matcher* matched;  // the match block that selected the route; null if none
  };

  // Validates (regexes, actions, weights, domains) and compiles. Errors name
  // the field, e.g. `Router main: virtual_hosts[0].routes[1].matches[0].uri:
  // invalid regex "(": missing )`.
  static Result<Router> compile(RouterConfig config);

  // The hot path: no allocation for typical requests.
  std::optional<Selection> match(const RequestHead& request) const;
  Explanation explain(const RequestHead& request) const;

  const RouterConfig& config() const;

 private:
  explicit Router(std::shared_ptr<const detail::CompiledRouter> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const detail::CompiledRouter> impl_;
};

}  // namespace sluice
