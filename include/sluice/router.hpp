#pragma once
// Routing: virtual hosts chosen by authority, then ordered rules, first match
// wins. RouterConfig is a plain value; Router is its compiled, immutable form.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sluice/matcher.hpp"
#include "sluice/request.hpp"
#include "sluice/result.hpp"

namespace sluice {

struct Destination {
  std::string upstream;  // UpstreamConfig::name
  std::string subset;    // empty: all endpoints
  uint32_t weight = 1;   // share = weight / sum of weights; 0 gets nothing
};

struct DirectResponse {
  uint16_t status = 200;
  std::string body;
};

struct Route {
  std::string name;
  // ORed; conditions inside one Matcher are ANDed. Empty: matches everything.
  std::vector<Matcher> matches;
  // Exactly one action: destinations (forward) or direct_response.
  std::vector<Destination> destinations;
  std::optional<DirectResponse> direct_response;
};

struct VirtualHost {
  std::string name;
  // "example.com", "*.example.com", "*"; compared case-insensitively, the
  // request's port stripped unless a domain names one.
  std::vector<std::string> domains;
  std::vector<Route> routes;
};

struct RouterConfig {
  std::string name;
  std::vector<VirtualHost> virtual_hosts;
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
