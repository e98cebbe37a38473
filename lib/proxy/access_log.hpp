#pragma once
// A finished request's access-log lines: the session fills a LogRecord
// from what it knows, and each configured log's format appends its line to
// the log's writer, in this worker's shard (lib/telemetry/log_writer).

#include "config/access_logs.hpp"
#include "proxy/host.hpp"
#include "telemetry/access_log.hpp"

namespace sluice {

// This machine's name, for %HOSTNAME% (looked up once).
std::string_view access_log_hostname();

// Formats `record` once per log and hands the lines to the writers.
void write_access_logs(SessionHost& worker, const CompiledAccessLogs& logs,
                       telemetry::LogRecord& record);

}  // namespace sluice
