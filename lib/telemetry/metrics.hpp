#pragma once
// Istio's standard request metrics (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes) and TCP metrics (istio_tcp_connections_opened_total,
// _closed_total, istio_tcp_sent_bytes_total, _received_bytes_total) with
// reporter="source": the gateway is the source proxy. Each worker records
// into its own RequestMetrics and TcpMetrics without a lock on the request
// path; a scrape merges the workers' series and renders the Prometheus text
// exposition format.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sluice/response_flags.hpp"
#include "sluice/stats.hpp"
#include "sluice/upstream.hpp"

namespace sluice::telemetry {

// Envoy's default histogram bounds, which Istio's standard histograms use
// (milliseconds for durations, bytes for sizes).
inline constexpr const auto& kDefaultBuckets = HistogramValue::kBounds;

// Adds to a counter only one thread writes: no read-modify-write
// instruction, and any thread may load it.
inline void add_single_writer(std::atomic<uint64_t>& a, uint64_t by) {
  a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

// A histogram one thread writes and any thread reads: relaxed loads and
// stores, no read-modify-write, so recording costs a few plain moves.
class Histogram {
 public:
  using Counts = HistogramValue;

  void record(uint64_t value);  // the owning thread only
  void add_to(Counts& out) const;

 private:
  std::array<std::atomic<uint64_t>, kDefaultBuckets.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_{0};
};

// The destination labels of a request, fixed per route destination.
// Interned (LabelInterner): equal label sets share one address, so a series
// key holds a pointer and hashing it costs nothing.
struct DestinationLabels {
  std::string service = "unknown";  // destination_service: the host
  std::string service_name = "unknown";
  std::string service_namespace = "unknown";
  std::string workload = "unknown";
  std::string workload_namespace = "unknown";
  std::string app = "unknown";
  std::string version = "unknown";  // the subset's `version` label
  std::string principal = "unknown";
  std::string canonical_service = "unknown";
  std::string canonical_revision = "latest";
  std::string cluster = "unknown";
  std::string upstream;  // UpstreamConfig::name (not exported as a label)

  bool operator==(const DestinationLabels&) const = default;
};

// Gateway-wide, for the life of the gateway: label sets are only added
// (their number is bounded by the destinations configurations name).
class LabelInterner {
 public:
  LabelInterner();
  const DestinationLabels* intern(const DestinationLabels& labels);
  // The set for requests without a destination (no route, unknown host).
  const DestinationLabels* unknown() const { return unknown_; }

 private:
  struct Hash {
    size_t operator()(const std::unique_ptr<DestinationLabels>& l) const;
  };
  struct Equal {
    bool operator()(const std::unique_ptr<DestinationLabels>& a,
                    const std::unique_ptr<DestinationLabels>& b) const {
      return *a == *b;
    }
  };
  std::mutex mutex_;
  std::unordered_set<std::unique_ptr<DestinationLabels>, Hash, Equal> labels_;
  const DestinationLabels* unknown_;
};

// The process's label sets: interned here, so a series key's pointer stays
// valid for the life of the process whichever snapshot or gateway made it.
LabelInterner& process_labels();

// The interned labels of a destination: the upstream's service (its name
// when it has none) and the subset's `version` label.
const DestinationLabels* destination_labels(const ServiceIdentity& service,
                                            std::string_view upstream, std::string_view version);

enum class RequestProtocol : uint8_t { http, grpc };

// What varies per request besides the destination.
struct RequestKey {
  const DestinationLabels* destination = nullptr;  // interned; null: unknown
  uint16_t response_code = 0;
  ResponseFlags response_flags;
  RequestProtocol protocol = RequestProtocol::http;
  int16_t grpc_status = -1;  // -1: none (grpc_response_status="")

  bool operator==(const RequestKey&) const = default;
};

struct RequestKeyHash {
  size_t operator()(const RequestKey& k) const;
};

struct RequestSample {
  uint64_t duration_ms = 0;
  uint64_t request_bytes = 0;
  uint64_t response_bytes = 0;
};

// One worker's series of one kind, each under a key whose `destination`
// is an interned label set. Only the recording (the worker's) thread
// inserts, so it looks up without a lock; insertions take a mutex that
// for_each(), on any thread, also takes. Series never move or go away.
template <typename Key, typename Series, typename Hash>
class SeriesTable {
 public:
  // At most `max_series` keys; beyond, a new key's destination is counted
  // as unknown, so a flood of distinct hosts cannot grow memory.
  SeriesTable(const DestinationLabels* unknown, size_t max_series)
      : unknown_(unknown), max_series_(max_series) {}
  SeriesTable(const SeriesTable&) = delete;
  SeriesTable& operator=(const SeriesTable&) = delete;

  Series& find_or_add(const Key& key) {
    if (auto it = series_.find(key); it != series_.end()) return *it->second;
    Key k = key;
    if (!k.destination) k.destination = unknown_;
    if (series_.size() >= max_series_) {
      k.destination = unknown_;
      if (auto it = series_.find(k); it != series_.end()) return *it->second;
    }
    std::lock_guard lock(mutex_);
    auto& slot = series_[k];
    if (!slot) slot = std::make_unique<Series>();
    return *slot;
  }

  template <typename F>
  void for_each(F&& f) const {
    std::lock_guard lock(mutex_);
    for (const auto& [key, series] : series_) f(key, *series);
  }

 private:
  const DestinationLabels* unknown_;
  size_t max_series_;
  mutable std::mutex mutex_;
  std::unordered_map<Key, std::unique_ptr<Series>, Hash> series_;
};

// One worker's request series. record() runs on the worker's thread only;
// collect() on any thread.
class RequestMetrics {
 public:
  explicit RequestMetrics(const DestinationLabels* unknown, size_t max_series = 10000);
  ~RequestMetrics();
  RequestMetrics(const RequestMetrics&) = delete;
  RequestMetrics& operator=(const RequestMetrics&) = delete;

  void record(const RequestKey& key, const RequestSample& sample);

  struct Totals {
    uint64_t requests = 0;
    Histogram::Counts duration, request_bytes, response_bytes;
  };
  // Adds this worker's series into `out`, merging equal keys.
  void collect(std::unordered_map<RequestKey, Totals, RequestKeyHash>& out) const;

 private:
  struct Series;
  SeriesTable<RequestKey, Series, RequestKeyHash> table_;
};

// The series of `workers`, equal keys merged, sorted by their labels.
std::vector<RequestSeries> collect_series(std::span<const RequestMetrics* const> workers);

// What varies per relayed TCP connection besides the destination.
struct TcpKey {
  const DestinationLabels* destination = nullptr;  // interned; null: unknown
  ResponseFlags response_flags;

  bool operator==(const TcpKey&) const = default;
};

struct TcpKeyHash {
  size_t operator()(const TcpKey& k) const;
};

// One TCP series' counters. The worker relaying the connection writes them
// (add_single_writer) as bytes move; a scrape reads them.
struct TcpCounters {
  std::atomic<uint64_t> opened{0}, closed{0};
  std::atomic<uint64_t> received_bytes{0};  // from the client
  std::atomic<uint64_t> sent_bytes{0};      // to the client
};

// One worker's TCP series: the relay holds its series' TcpCounters for the
// life of the connection (series never move), so counting a chunk costs
// one relaxed load and store.
using TcpMetrics = SeriesTable<TcpKey, TcpCounters, TcpKeyHash>;

// The TCP series of `workers`, equal keys merged, sorted by their labels.
std::vector<TcpSeries> collect_tcp_series(std::span<const TcpMetrics* const> workers);

// Exposition-format helpers (Stats::prometheus).
// `# HELP` and `# TYPE` lines.
void write_family_header(std::string& out, std::string_view name, std::string_view type,
                         std::string_view help);
// name{k="v",...} value, with label values escaped as the format wants
// (backslash, double quote, newline).
void write_sample(std::string& out, std::string_view name,
                  std::span<const std::pair<std::string_view, std::string_view>> labels,
                  double value);

}  // namespace sluice::telemetry
