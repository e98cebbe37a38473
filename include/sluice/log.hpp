#pragma once
// Where the library's own messages go (TLS handshake failures, passthrough
// connections it could not relay). The library writes nothing to stderr by
// itself: without a Logger (GatewayOptions::logger) the messages are dropped.

#include <mutex>
#include <string_view>

namespace sluice {

enum class LogLevel { debug, info, warning, error };

// "debug", "info", "warning", "error".
std::string_view to_string(LogLevel level);

class Logger {
 public:
  virtual ~Logger() = default;
  // One message, without a trailing newline. Called on worker threads (and
  // the control side), possibly from several at once: implementations must
  // be thread-safe, and quick, since a worker's event loop waits for them.
  virtual void log(LogLevel level, std::string_view message) = 0;
};

// Writes "sluice: <level>: <message>" lines to stderr, from `min_level` up.
// The example binary installs it; a library user chooses.
class StderrLogger : public Logger {
 public:
  explicit StderrLogger(LogLevel min_level = LogLevel::info) : min_level_(min_level) {}
  void log(LogLevel level, std::string_view message) override;

 private:
  LogLevel min_level_;
  std::mutex mutex_;  // one whole line at a time
};

}  // namespace sluice
