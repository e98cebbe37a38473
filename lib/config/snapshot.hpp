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

#include "config/access_logs.hpp"
#include "config/ratelimit.hpp"
#include "policy/policy.hpp"
#include "security/authz.hpp"
#include "security/authz_address.hpp"
#include "security/ext_authz.hpp"
#include "security/jwt.hpp"
#include "sluice/gateway.hpp"
#include "sluice/router.hpp"
#include "upstream/compiled.hpp"

namespace sluice::telemetry {
struct DestinationLabels;
}

namespace sluice::tls {
class ListenerTls;
}

namespace sluice {

// Indices, not pointers: update_endpoints() publishes a snapshot with new
// endpoint sets that shares these tables with the one it came from. A pick
// costs one more index (upstreams[upstream].sets[set]), nothing else.
struct ResolvedDestination {
  uint32_t upstream = 0;  // index into Snapshot::upstreams
  uint32_t set = 0;       // index into that upstream's CompiledUpstream::sets
  std::string subset;
  uint32_t weight = 0;
  // destination_* labels of its requests (interned for the process).
  const telemetry::DestinationLabels* labels = nullptr;
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
  std::vector<security::CompiledExtAuthz> ext_authz;  // CUSTOM providers

  const security::CompiledExtAuthz* find_ext_authz(std::string_view name) const {
    for (const auto& p : ext_authz)
      if (p.config.name == name) return &p;
    return nullptr;
  }
};

// GatewayConfig::telemetry.tracing, checked (compile_tracing).
struct CompiledTracing {
  uint32_t sampling_per_million = 10'000;  // sampling_percentage * 10^4
  bool export_spans = false;               // an otlp_endpoint is set
  // The collector, from otlp_endpoint: plain HTTP.
  std::string host;       // name or IP literal
  uint16_t port = 4318;   // OTLP/HTTP's default
  std::string authority;  // Host header
  std::string target = "/v1/traces";
  TracingConfig config;
};

// Errors name "GatewayConfig" and "telemetry.tracing.<field>".
Result<std::shared_ptr<const CompiledTracing>> compile_tracing(const TracingConfig& config);

// A TcpRoute, resolved: client ranges parsed, destinations by index.
struct CompiledTcpRoute {
  std::string name;
  std::vector<security::Cidr> sources;  // empty: any client
  std::vector<ResolvedDestination> destinations;
  uint64_t total_weight = 0;
};

struct CompiledListener {
  ListenerConfig config;
  uint32_t router = 0;  // index into Snapshot::routers
  // TLS termination and passthrough (lib/tls); null on a plain listener.
  std::shared_ptr<const tls::ListenerTls> tls;
  // TCP routes, in order; non-empty: the listener relays bytes, no HTTP.
  std::vector<CompiledTcpRoute> tcp;
  // The destination labels of each passthrough route
  // (tls::PassthroughTarget::route indexes it).
  std::vector<const telemetry::DestinationLabels*> passthrough_labels;
};

// routes[router][virtual_host][route]
using RouteTable = std::vector<std::vector<std::vector<ResolvedRoute>>>;

class Snapshot {
 public:
  // What compile() built is shared, not copied, by every snapshot that
  // with_endpoints() derives from this one: the configuration, the compiled
  // routers, the routes with their compiled policies and regexes, and the
  // listeners' TLS contexts. Only `upstreams` is the snapshot's own.
  //
  // The configuration as compiled, kept for explain and config dumps. Its
  // upstreams' endpoints are those compile() saw; the current ones are in
  // upstreams[i].config.
  std::shared_ptr<const GatewayConfig> source;
  std::vector<Router> routers;  // handles: copies share the compiled router
  std::shared_ptr<const RouteTable> routes;
  std::vector<CompiledListener> listeners;  // copies share the TLS contexts
  std::vector<CompiledUpstream> upstreams;
  Limits limits;
  std::shared_ptr<const CompiledSecurity> security;
  // Rate limits; null when none are configured. The local buckets in it
  // are the owning gateway's (filled by Gateway::apply).
  std::shared_ptr<const CompiledRateLimits> rate_limits;
  // Access logs; null when none are configured. The writers in it are the
  // owning gateway's (filled by Gateway::apply).
  std::shared_ptr<const CompiledAccessLogs> access_logs;
  // Trace propagation and span export; never null in a compiled snapshot.
  std::shared_ptr<const CompiledTracing> tracing;

  // The Gateway (its id; 0: none yet) whose runtime state the upstreams'
  // `state` slots hold. Claimed by Gateway::apply before it fills them, so
  // two gateways never write the slots of one snapshot.
  mutable std::atomic<uint64_t> owner{0};

  const CompiledListener* listener(std::string_view name) const;
  const ResolvedRoute& route(uint32_t router, size_t virtual_host, size_t route) const {
    return (*routes)[router][virtual_host][route];
  }
  // Index into `upstreams` of the one named `name`; none if there is none.
  std::optional<uint32_t> find_upstream(std::string_view name) const;
};

// compile() without the const, for tests that attach state by hand.
Result<std::shared_ptr<Snapshot>> compile_snapshot(GatewayConfig config);

// A snapshot equal to `base` but for the endpoints of the upstream named
// `upstream` (and its subsets' endpoint sets, recomputed from the labels):
// everything else is shared with `base`, nothing is compiled again. Errors
// name "Upstream <name>" and the field; `base` is never changed. The state
// slots are `base`'s: for the gateway that owns `base` only.
Result<std::shared_ptr<Snapshot>> with_endpoints(const Snapshot& base, std::string_view upstream,
                                                 std::vector<Endpoint> endpoints);

}  // namespace sluice
