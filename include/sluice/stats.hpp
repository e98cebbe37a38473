#pragma once
// What the gateway saw, for the host to read (Gateway::stats()): Istio's
// standard request metrics per series, and the gateway's and upstreams'
// counters and gauges. Workers count without locks; stats() merges them.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sluice {

// A histogram over Envoy's default bounds (Istio's standard histograms use
// them: milliseconds for durations, bytes for sizes).
struct HistogramValue {
  static constexpr std::array<double, 19> kBounds = {
      0.5,  1,    5,     10,    25,    50,     100,    250,     500,    1000,
      2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};
  // Per bucket, not cumulative: counts[i] values were <= kBounds[i] and
  // above the bound before; the last one counts values above every bound.
  std::array<uint64_t, kBounds.size() + 1> counts{};
  uint64_t sum = 0;
  uint64_t count = 0;
  // The value below which `q` (0..1) of the samples fall, interpolated
  // linearly inside its bucket as Prometheus' histogram_quantile does; 0
  // when empty.
  double quantile(double q) const;
};

// The destination labels of a series, request or TCP.
struct DestinationSeries {
  std::string destination_service;  // the route's host (FQDN), "unknown" when none
  std::string destination_service_name;
  std::string destination_service_namespace;
  std::string destination_version;  // the subset's `version` label, else "unknown"
  std::string destination_workload;
  std::string destination_workload_namespace;
  std::string destination_app;
  std::string destination_principal;
  std::string destination_canonical_service;
  std::string destination_canonical_revision;
  std::string destination_cluster;
  std::string destination_upstream;  // UpstreamConfig::name, empty when none (not a label)
};

// One series of istio_requests_total and its three histograms.
struct RequestSeries : DestinationSeries {
  uint16_t response_code = 0;
  std::string response_flags;    // Envoy's: "-", "UF", "URX,UF"
  std::string request_protocol;  // "http" or "grpc"
  std::string grpc_response_status;
  uint64_t requests = 0;
  HistogramValue duration_ms, request_bytes, response_bytes;
};

// One series of Istio's TCP metrics, for connections relayed as bytes (TCP
// routes, TLS passthrough). Bytes count as they are relayed, so a long
// connection's show at every scrape; they land in the series of the
// connection while it relays (response_flags "-"). A connection is opened
// when its relay starts, or at its close when it never relayed (then with
// its flags: NR, UH, UF, UO), and closed under the flags it ended with.
struct TcpSeries : DestinationSeries {
  std::string response_flags;       // Envoy's: "-", "UF", "SI"
  uint64_t connections_opened = 0;  // istio_tcp_connections_opened_total
  uint64_t connections_closed = 0;  // istio_tcp_connections_closed_total
  uint64_t received_bytes = 0;      // from clients (istio_tcp_received_bytes_total)
  uint64_t sent_bytes = 0;          // to clients (istio_tcp_sent_bytes_total)
};

// A counter or gauge of the gateway, its listeners or its upstreams, with
// Envoy's statistic names where Envoy has one.
struct MetricValue {
  std::string name;  // Prometheus name, e.g. envoy_cluster_upstream_rq_total
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;
  bool gauge = false;  // else a counter
  std::string help;
};

// How the gateway names itself in telemetry (GatewayOptions::telemetry).
struct TelemetryOptions {
  // source_workload and source_workload_namespace of every series; Istio's
  // ingress gateway's own names by default.
  std::string workload = "istio-ingressgateway";
  std::string workload_namespace = "istio-system";
  // false: no istio_* series (request or TCP) are recorded (the bare proxy, for measuring
  // what metrics cost); counters and gauges remain.
  bool metrics = true;
  // Label sets each worker keeps, for requests and for TCP connections
  // each; beyond, they count under the destination "unknown", so a flood
  // of distinct hosts cannot grow memory.
  size_t max_series_per_worker = 10000;
};

struct Stats {
  std::string source_workload;  // GatewayOptions::telemetry
  std::string source_workload_namespace;
  std::vector<RequestSeries> requests;  // sorted by their labels
  std::vector<TcpSeries> tcp;           // sorted by their labels
  std::vector<MetricValue> metrics;     // sorted by name, then labels

  // The Prometheus text exposition format (0.0.4): the istio_* request and
  // TCP families with reporter="source", then `metrics`.
  std::string prometheus() const;
  // One `name{labels}: value` per line, as Envoy's /stats prints.
  std::string text() const;
};

}  // namespace sluice
