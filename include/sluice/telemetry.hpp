#pragma once
// Access logging and tracing, as configuration (GatewayConfig::telemetry):
// they change with a reload, like routes. Istio's meshConfig
// (accessLogFile, accessLogEncoding, accessLogFormat, extensionProviders)
// and Telemetry resources translate into these values.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sluice {

struct AccessLogConfig {
  // Where lines go: a file path, or "-" / "/dev/stdout" for standard output.
  std::string path;
  enum class Encoding { text, json };
  Encoding encoding = Encoding::text;
  // Text: an Envoy format string of command operators (unknown ones are
  // rejected at compile); empty: Istio's default TEXT format.
  std::string format;
  // JSON: key -> format string, one object per line; empty: Istio's
  // default JSON keys.
  std::vector<std::pair<std::string, std::string>> json_fields;
  // Who configured it, named in errors instead of "GatewayConfig:
  // telemetry.access_logs[i]" (the Istio loader: "meshConfig",
  // "Telemetry istio-system/mesh-default: accessLogging[0]").
  std::string source;
};

struct TracingConfig {
  // OTLP/HTTP (JSON) collector: "http://host:port/v1/traces" or
  // "host:port" (that path). Empty: spans are not exported (trace headers
  // are still propagated and created).
  std::string otlp_endpoint;
  // Share of requests whose spans are exported when no sampling decision
  // arrives with them (Istio's default 1%).
  double sampling_percentage = 1.0;
  std::string service_name = "istio-ingressgateway";  // the spans' resource
  // Export batching, per worker: a batch is sent when max_batch_spans wait,
  // or flush_interval (on the gateway's clock) after the first of them.
  // At most max_queued_spans wait; beyond, new spans are dropped and counted
  // (TraceExportStats), so a slow collector never holds a request.
  size_t max_batch_spans = 512;
  std::chrono::milliseconds flush_interval{5'000};
  size_t max_queued_spans = 2'048;
  std::chrono::milliseconds export_timeout{5'000};  // one POST to the collector
};

// Span export counters, every worker's summed (Gateway::trace_export_stats).
struct TraceExportStats {
  uint64_t spans_sampled = 0;    // finished spans handed to the exporter
  uint64_t spans_exported = 0;   // in batches the collector accepted (2xx)
  uint64_t spans_dropped = 0;    // queue full, or their batch failed
  uint64_t export_requests = 0;  // POSTs sent
  uint64_t export_failures = 0;  // POSTs without a 2xx answer
};

struct TelemetryConfig {
  std::vector<AccessLogConfig> access_logs;  // each request is written to every one
  // Lines wait in memory until this interval ends or 64 KiB are pending,
  // then go to the file in one write (Envoy's file flush; Istio runs it at
  // 1 s). 0: each batch is written at once. Read when a file is first
  // opened; Gateway::flush_access_logs() writes what is pending now.
  std::chrono::milliseconds access_log_flush_interval{1'000};
  TracingConfig tracing;
};

}  // namespace sluice
