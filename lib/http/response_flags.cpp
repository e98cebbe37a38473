// Envoy's response flag names (include/sluice/response_flags.hpp).

#include "sluice/response_flags.hpp"

namespace sluice {

std::string_view to_string(ResponseFlag flag) {
  // Indexed by the enum; the static_assert below keeps the two in step.
  static constexpr std::string_view kNames[] = {
      "UH",   "UT", "LR",  "UR", "UF",  "UC",    "UO", "NR",  "DI", "FI",   "RL",
      "UAEX", "DC", "URX", "SI", "DPE", "UMSDR", "DT", "UPE", "NC", "RLSE",
  };
  static_assert(std::size(kNames) == kResponseFlagCount);
  auto i = static_cast<size_t>(flag);
  return i < kResponseFlagCount ? kNames[i] : "-";
}

std::string to_string(const ResponseFlags& flags) {
  if (flags.empty()) return "-";
  std::string out;
  for (size_t i = 0; i < flags.size(); ++i) {
    if (i > 0) out += ',';
    out += to_string(flags[i]);
  }
  return out;
}

}  // namespace sluice
