#pragma once
// Access logging and tracing, as configuration (GatewayConfig::telemetry):
// they change with a reload, like routes. Istio's meshConfig
// (accessLogFile, accessLogEncoding, accessLogFormat, extensionProviders)
// and Telemetry resources translate into these values.

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
};

struct TelemetryConfig {
  std::vector<AccessLogConfig> access_logs;  // each request is written to every one
  TracingConfig tracing;
};

}  // namespace sluice
