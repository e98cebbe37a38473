#pragma once
// What a compiled Snapshot serves, for admin pages and tools: a JSON dump of
// the running configuration and the upstreams with their current endpoints.
// Read-only; a snapshot never changes once compiled.

#include <chrono>
#include <string>
#include <vector>

#include "sluice/gateway.hpp"
#include "sluice/upstream.hpp"

namespace sluice {

class Snapshot;

// JSON of the running snapshot (Envoy's /config_dump, in sluice's terms):
//   {"listeners": [{name, address, port, router, tls_servers: [{sni_hosts,
//     mode, certificate_expiry (RFC 3339 UTC), expires_in_seconds}],
//     passthrough}],
//    "routers": [{name, virtual_hosts: [{name, domains, routes: [{name,
//     origin, action, destinations}]}]}],
//    "upstreams": [{name, endpoints, subsets, load_balancer, pool,
//     outlier_detection, health_check, tls}]}
// Secrets (private keys) never appear. `now` dates expires_in_seconds.
std::string config_dump_json(const Snapshot& snapshot, std::chrono::system_clock::time_point now =
                                                           std::chrono::system_clock::now());

// Istio's name of a TLS server mode: SIMPLE, MUTUAL, OPTIONAL_MUTUAL.
const char* tls_mode_name(TlsServer::Mode mode);

// The snapshot's upstreams with the endpoints it serves now (after any
// Gateway::update_endpoints), in configuration order.
std::vector<UpstreamConfig> snapshot_upstreams(const Snapshot& snapshot);

}  // namespace sluice
