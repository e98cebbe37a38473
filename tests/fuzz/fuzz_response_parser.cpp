// libFuzzer target: HTTP/1 response parser (lib/http/parser.hpp) with a
// fragmenting driver and HEAD responses; see parser_driver.hpp for the checks.

#include <cstddef>
#include <cstdint>

#include "parser_driver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::fuzz::run_parser_input(data, size, sluice::http::Parser::Kind::response);
  return 0;
}
