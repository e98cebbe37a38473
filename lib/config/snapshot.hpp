#pragma once
// The compiled, immutable form of a GatewayConfig. Built once by compile(),
// shared read-only by every worker; a request keeps the one it started with.

#include <asio/ip/tcp.hpp>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/policy.hpp"
#include "security/authz.hpp"
#include "security/jwt.hpp"
#include "sluice/gateway.hpp"
#include "sluice/router.hpp"
#include "upstream/compiled.hpp"

namespace sluice::tls {
class ListenerTls;
}

namespace sluice {

struct ResolvedDestination {
  uint32_t upstream = 0;  // index into Snapshot::upstreams
  const EndpointSet* set = nullptr;
  std::string subset;
  uint32_t weight = 0;
};

struct ResolvedRoute {
  std::vector<ResolvedDestination> destinations;
  uint64_t total_weight = 0;
  std::vector<ResolvedDestination> mirrors;  // weight unused
  std::vector<double> mirror_percentages;
  policy::CompiledRoutePolicy policy;
};

// The gateway's RequestAuthentication and AuthorizationPolicy, compiled
// once per snapshot; null in the snapshot when there are none.
struct CompiledSecurity {
  std::optional<security::Authenticator> authn;  // JWT providers, if any
  security::AuthzEngine authz;
  uint32_t num_trusted_proxies = 0;
};

struct CompiledListener {
  ListenerConfig config;
  uint32_t router = 0;  // index into Snapshot::routers
  // TLS termination and passthrough (lib/tls); null on a plain listener.
  std::shared_ptr<const tls::ListenerTls> tls;
};

class Snapshot {
 public:
  GatewayConfig source;  // kept for explain and config dumps
  std::vector<Router> routers;
  std::vector<CompiledUpstream> upstreams;
  std::vector<CompiledListener> listeners;
  // routes[router][virtual_host][route]
  std::vector<std::vector<std::vector<ResolvedRoute>>> routes;
  Limits limits;
  std::shared_ptr<const CompiledSecurity> security;

  // The Gateway (its id; 0: none yet) whose runtime state the upstreams'
  // `state` slots hold. Claimed by Gateway::apply before it fills them, so
  // two gateways never write the slots of one snapshot.
  mutable std::atomic<uint64_t> owner{0};

  const CompiledListener* listener(std::string_view name) const;
};

// compile() without the const, for tests that attach state by hand.
Result<std::shared_ptr<Snapshot>> compile_snapshot(GatewayConfig config);

}  // namespace sluice
