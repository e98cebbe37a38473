#pragma once
// The traffic graph behind /graph.json: a ring of Stats samples, and the
// graph of one window computed from the difference between its newest and
// oldest sample (Kiali's picture from Istio's standard metrics). Pure: the
// caller takes the samples and supplies the time, so tests move time
// without sleeping.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sluice/stats.hpp"
#include "sluice/upstream.hpp"

namespace sluice::admin {

using TimePoint = std::chrono::steady_clock::time_point;

// One edge service -> version (destination_service, destination_version).
struct EdgeKey {
  std::string service;
  std::string version;
  auto operator<=>(const EdgeKey&) const = default;
};

// Cumulative counts of one edge at a sample, or their change over a window.
struct EdgeTotals {
  std::string service_name;  // destination_service_name, for the label
  std::string service_namespace;
  uint64_t requests = 0;
  uint64_t errors = 0;  // 5xx, or a response flag set
  std::map<uint16_t, uint64_t> codes;
  std::map<std::string, uint64_t> flags;  // "-" left out
  HistogramValue duration_ms;
  std::set<std::string> upstreams;  // destination_upstream values seen
};

struct GraphSample {
  TimePoint at;
  std::map<EdgeKey, EdgeTotals> edges;
  std::map<std::string, uint64_t> overflows;  // per upstream, cumulative (UpstreamView)
};

// The edges of `stats`; overflows are left for the caller (it reads them
// per upstream from the gateway).
GraphSample make_sample(TimePoint at, const Stats& stats);

// An error for the graph: 5xx, no response, or a response flag.
bool is_error(uint16_t code, const std::string& flags);

struct GraphWindow {
  double elapsed_seconds = 0;                 // between the two samples (at most the window)
  std::map<EdgeKey, EdgeTotals> edges;        // changes; edges without requests left out
  std::map<std::string, uint64_t> overflows;  // changes per upstream
};

// Samples kept for the longest window; thread-safe.
class TrafficSampler {
 public:
  // Enough samples for `longest` at `interval`, plus one.
  TrafficSampler(std::chrono::milliseconds interval, std::chrono::seconds longest);
  void add(GraphSample sample);
  // The change over the last `window`: newest sample against the oldest one
  // no older than `window` before it. None with fewer than two samples.
  std::optional<GraphWindow> window(std::chrono::seconds window) const;
  size_t size() const;

 private:
  mutable std::mutex mutex_;
  size_t capacity_;
  std::deque<GraphSample> samples_;
};

// An upstream as the graph shows it behind a version: its runtime view and
// its configured endpoints (their labels tell which version each serves).
struct UpstreamInfo {
  UpstreamView view;
  std::vector<Endpoint> endpoints;
};

// Edge health: "healthy", "degraded" (some errors) or "failure" (at least
// 10% errors).
const char* edge_health(uint64_t requests, uint64_t errors);

// /graph.json for `w`: nodes gateway -> service -> version, edges with
// rps, error percentage, p99 latency, codes and flags; version nodes carry
// their endpoints' ejections and health, and the window's circuit-breaker
// overflows; with `endpoints`, the endpoints themselves.
std::string graph_json(const std::optional<GraphWindow>& w, std::chrono::seconds window,
                       const std::string& gateway_name,
                       const std::map<std::string, UpstreamInfo>& upstreams, bool endpoints);

}  // namespace sluice::admin
