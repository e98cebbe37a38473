#pragma once
// Small ASCII helpers shared by the routing files.

#include <string>
#include <string_view>

#include "sluice/matcher.hpp"

namespace sluice::detail {

inline char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
}

inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

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
  for (size_t i = 0; i < s.size(); ++i) out[i] = ascii_lower(s[i]);
  return {out, s.size()};
}

}  // namespace sluice::detail
