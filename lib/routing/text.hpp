#pragma once
// Small ASCII helpers shared by the routing files.

#include <string>
#include <string_view>

#include "http/tokens.hpp"
#include "sluice/matcher.hpp"

namespace sluice::detail {

inline std::string_view kind_name(StringMatch::Kind kind) {
  switch (kind) {
    case StringMatch::Kind::exact:
      return "exact";
    case StringMatch::Kind::prefix:
      return "prefix";
    case StringMatch::Kind::suffix:
      return "suffix";
    case StringMatch::Kind::regex:
      return "regex";
    case StringMatch::Kind::present:
      return "present";
  }
  return "unknown";
}

// Lowers `s` into `buf` when it fits (no allocation), else into `spill`.
inline std::string_view lower_into(std::string_view s, char* buf, size_t cap, std::string& spill) {
  char* out = buf;
  if (s.size() > cap) {
    spill.resize(s.size());
    out = spill.data();
  }
  for (size_t i = 0; i < s.size(); ++i) out[i] = http::to_lower(s[i]);
  return {out, s.size()};
}

}  // namespace sluice::detail
