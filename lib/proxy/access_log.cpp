#include "proxy/access_log.hpp"

#include <unistd.h>

#include <string>

namespace sluice {

std::string_view access_log_hostname() {
  static const std::string name = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof(buf) - 1) != 0) return std::string();
    return std::string(buf);
  }();
  return name;
}

void write_access_logs(SessionHost& worker, const CompiledAccessLogs& logs,
                       telemetry::LogRecord& record) {
  record.hostname = access_log_hostname();
  std::string& line = worker.access_log_line;  // reused: no allocation once warm
  for (const auto& log : logs.logs) {
    if (!log.writer) continue;  // compiled but never applied (compile() alone)
    line.clear();
    log.format.append(record, line);
    log.writer->append(worker.log_shard(), line);
  }
}

}  // namespace sluice
