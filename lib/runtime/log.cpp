// The stderr Logger (include/sluice/log.hpp): what sluice-ingress installs.

#include <cstdio>
#include <string>

#include "sluice/log.hpp"

namespace sluice {

std::string_view to_string(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warning:
      return "warning";
    case LogLevel::error:
      return "error";
  }
  return "?";
}

void StderrLogger::log(LogLevel level, std::string_view message) {
  if (level < min_level_) return;
  std::string line = "sluice: ";
  line += to_string(level);
  line += ": ";
  line += message;
  line += '\n';
  std::lock_guard lock(mutex_);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace sluice
