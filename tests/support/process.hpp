#pragma once
// Child processes (curl) and this process's memory, for end-to-end tests.

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::test {

struct ProcessResult {
  int exit_code = -1;  // -1: could not start or killed by a signal
  std::string out;
  std::string err;
};

// Runs `program` (looked up in PATH) with `args`; collects stdout and stderr.
ProcessResult run_process(const std::string& program, const std::vector<std::string>& args);
// curl with --silent --show-error --max-time 10 prepended to `args`.
ProcessResult run_curl(const std::vector<std::string>& args);

// VmRSS of this process in bytes (0 if unknown).
uint64_t current_rss_bytes();

}  // namespace sluice::test
