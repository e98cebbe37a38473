#pragma once
// Endpoint discovery: a host's service registry, DNS or anything else feeds
// the endpoints of named upstreams to a Gateway while it runs, without
// compiling the configuration again (Gateway::update_endpoints).

#include <functional>
#include <string_view>
#include <vector>

#include "sluice/result.hpp"
#include "sluice/upstream.hpp"

namespace sluice {

// Replaces the endpoints of one upstream; Gateway::update_endpoints behind a
// Gateway's source. Thread-safe. An error names the upstream and the field
// and changes nothing.
using EndpointSink =
    std::function<Status(std::string_view upstream, std::vector<Endpoint> endpoints)>;

// Implemented by the host (or DnsEndpointSource, include/sluice/dns.hpp).
// Gateway::add_endpoint_source starts one and Gateway::stop stops it.
class EndpointSource {
 public:
  virtual ~EndpointSource() = default;
  // Begins feeding: from now on the source calls `sink`, from a thread of
  // its own (never a worker's), with the endpoints it learns. Called once.
  virtual void start(EndpointSink sink) = 0;
  // Ends feeding: once it returns, `sink` is neither running nor called
  // again. Idempotent. Not to be called from inside `sink`.
  virtual void stop() = 0;
};

}  // namespace sluice
