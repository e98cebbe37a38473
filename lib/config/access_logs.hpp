#pragma once
// GatewayConfig::telemetry.access_logs compiled for a snapshot: each log's
// format compiled once (an unknown operator rejects the whole config), and
// a slot for its writer, which the owning Gateway fills at apply (files are
// I/O; compile() does none).

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "sluice/gateway.hpp"
#include "telemetry/access_log.hpp"
#include "telemetry/log_writer.hpp"

namespace sluice {

struct CompiledAccessLog {
  std::string path;
  telemetry::LogFormat format;
  // The Gateway's writer for `path`: written by Gateway::apply before the
  // snapshot reaches a worker, read-only after (as upstream state slots).
  mutable std::shared_ptr<telemetry::LogWriter> writer;
};

struct CompiledAccessLogs {
  std::vector<CompiledAccessLog> logs;
  std::chrono::milliseconds flush_interval{0};  // TelemetryConfig::access_log_flush_interval
};

// Null when no access log is configured (the session then does nothing).
// Errors name the log's source (AccessLogConfig::source) or
// "GatewayConfig: telemetry.access_logs[i].<field>".
Result<std::shared_ptr<const CompiledAccessLogs>> compile_access_logs(const GatewayConfig& config);

}  // namespace sluice
