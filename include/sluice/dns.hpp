#pragma once
// DNS endpoint discovery: upstreams whose endpoints are the addresses of
// hostnames (Istio ServiceEntry `resolution: DNS`), re-resolved on a thread
// of their own and fed to a Gateway as an EndpointSource.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sluice/endpoints.hpp"
#include "sluice/result.hpp"
#include "sluice/upstream.hpp"

namespace sluice {

// One host entry of an upstream: every address `hostname` resolves to
// becomes an endpoint with this port, labels and weight. An IP literal
// stands for itself and is never looked up.
struct DnsHost {
  std::string hostname;
  uint16_t port = 0;
  Labels labels;
  uint32_t weight = 1;
};

struct DnsUpstream {
  std::string upstream;  // UpstreamConfig::name
  std::vector<DnsHost> hosts;
};

// hostname -> IP literals. A name that is missing, or maps to an empty
// list, did not resolve.
using DnsAnswers = std::map<std::string, std::vector<std::string>>;

// Resolves `names` concurrently with the system resolver (IPv4, Istio's
// default lookup family V4_ONLY), bounded by `timeout` as a whole. Blocks
// the calling thread: never call it on a worker.
DnsAnswers resolve_hostnames(const std::vector<std::string>& names,
                             std::chrono::milliseconds timeout = std::chrono::seconds(5));

struct DnsSourceOptions {
  std::chrono::milliseconds refresh_interval{30'000};
  std::chrono::milliseconds timeout{5'000};  // for one round of lookups
  // Answers to start from, as if resolved before start() (a loader that
  // resolved once to build its configuration passes what it got).
  DnsAnswers known;
  // Replaces resolve_hostnames (tests, a host's own DNS client). Called on
  // the source's thread with every hostname to look up; must return within
  // a bounded time.
  std::function<DnsAnswers(const std::vector<std::string>& names)> resolve;
  // Told, on the source's thread, of names that did not resolve (their last
  // good addresses stay) and of updates the sink refused. Default: nothing
  // (the library writes nothing to stderr by itself).
  std::function<void(const Error&)> on_error;
};

// Resolves every hostname at start() and then every refresh_interval, on a
// thread of its own, and hands each upstream's endpoints to the sink. A
// name that fails to resolve keeps its last good addresses; an upstream
// none of whose names has ever resolved is left alone (it keeps the
// endpoints its configuration gave it). Every round delivers every other
// upstream, so a full Gateway::apply that reset endpoints is corrected at
// the next round; the Gateway ignores an unchanged list.
class DnsEndpointSource final : public EndpointSource {
 public:
  explicit DnsEndpointSource(std::vector<DnsUpstream> upstreams, DnsSourceOptions options = {});
  ~DnsEndpointSource() override;  // stops
  DnsEndpointSource(const DnsEndpointSource&) = delete;
  DnsEndpointSource& operator=(const DnsEndpointSource&) = delete;

  void start(EndpointSink sink) override;
  void stop() override;
  // Runs one round now instead of at the next interval and returns once it
  // has been delivered (at once when not running). Not from inside the sink.
  void refresh();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
