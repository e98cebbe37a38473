#pragma once
// The compiled, immutable form of one UpstreamConfig: endpoints with their
// keys, the endpoint sets of its subsets and its TLS origination context.
// Part of a Snapshot, shared read-only by every worker.

#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sluice/result.hpp"
#include "sluice/upstream.hpp"

namespace sluice {

class ClusterState;
namespace tls {
class ClientContext;
}

struct CompiledEndpoint {
  asio::ip::tcp::endpoint address;
  std::string key;  // "ip:port": LB and endpoint state are keyed by it
  // Pooled connections are keyed by upstream, endpoint and TLS settings, so
  // two upstreams at one address (or a reload that changes TLS) never share.
  std::string pool_key;
  uint32_t weight = 1;
};

// Endpoints eligible for one destination (an upstream or one of its subsets).
struct EndpointSet {
  std::vector<uint32_t> members;  // indices into CompiledUpstream::endpoints
  bool equal_weights = true;
};

struct CompiledUpstream {
  UpstreamConfig config;
  // Runtime state shared by workers and kept across reloads. A slot, not
  // part of the compiled value: Gateway::apply fills it in its commit step,
  // once, before the snapshot first reaches a worker, so it may be set on a
  // const Snapshot. It is never rewritten afterwards (a snapshot belongs to
  // one Gateway, see Snapshot::owner), so readers need no synchronisation
  // beyond the publication itself.
  mutable std::shared_ptr<ClusterState> state;
  std::shared_ptr<const tls::ClientContext> tls;  // TLS origination, if configured
  std::vector<CompiledEndpoint> endpoints;
  // [0]: every endpoint of weight > 0; [1 + i]: those of config.subsets[i].
  // Destinations name a set by this index, never by address, so that a
  // snapshot update_endpoints() derives shares its routes and listeners with
  // the one it came from (the subsets, hence the indices, stay).
  std::vector<EndpointSet> sets;

  // Index into `sets` of `subset` ("" for all endpoints); none if there is
  // no such subset. Linear: compile time only.
  std::optional<uint32_t> find_set(std::string_view subset) const;
};

// Config checks for an upstream that Istio also makes: consistent-hash
// settings, maglev table size prime, outlier detection and health check
// ranges. `object` names the upstream in the error, e.g. "Upstream reviews".
Status validate_upstream(const UpstreamConfig& config, std::string_view object);

// A snapshot's upstreams, kept alive by whoever holds this (the snapshot
// through an aliasing pointer): the health checker walks them.
using UpstreamList = std::shared_ptr<const std::vector<CompiledUpstream>>;

// Validates and compiles one upstream. Errors name "Upstream <name>" and
// the field (Istio rejects the same things): endpoints, subsets,
// consistent-hash, outlier-detection and health-check ranges, wire text.
Result<CompiledUpstream> compile_upstream(const UpstreamConfig& config);

// `upstream` with `endpoints` instead of its own: validated as
// compile_upstream() validates them (errors name "Upstream <name>" and
// "endpoints[i].<field>"), keys, pool keys and subset sets recomputed from
// the endpoints' labels. The TLS context and the state slot are shared.
Result<CompiledUpstream> with_endpoints(const CompiledUpstream& upstream,
                                        std::vector<Endpoint> endpoints);

}  // namespace sluice
