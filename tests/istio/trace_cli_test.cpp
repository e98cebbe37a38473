// sluice-ingress --otlp-endpoint and --trace-sampling: the values reach
// compile(), whose errors name the tracing field.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "support/process.hpp"

namespace trace_cli_test {

using namespace sluice::test;

namespace {

ProcessResult check_with(std::vector<std::string> extra) {
  std::vector<std::string> args = {"--check", "--config",
                                   std::string(SLUICE_SOURCE_DIR) + "/examples/ingress/bookinfo"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_process(SLUICE_INGRESS_BIN, args);
}

}  // namespace

TEST_CASE("sluice-ingress --otlp-endpoint and --trace-sampling are checked at load") {
  auto ok =
      check_with({"--otlp-endpoint", "http://127.0.0.1:4318/v1/traces", "--trace-sampling", "25"});
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);
  auto sampling = check_with({"--trace-sampling", "150"});
  CHECK(sampling.exit_code == 1);
  CHECK(sampling.err.find("telemetry.tracing.sampling_percentage: must be between 0 and 100") !=
        std::string::npos);
  auto endpoint = check_with({"--otlp-endpoint", "https://collector:4318"});
  CHECK(endpoint.exit_code == 1);
  CHECK(endpoint.err.find("telemetry.tracing.otlp_endpoint: https is not supported") !=
        std::string::npos);
  auto not_a_number = check_with({"--trace-sampling", "lots"});
  CHECK(not_a_number.exit_code == 2);
}

}  // namespace trace_cli_test
