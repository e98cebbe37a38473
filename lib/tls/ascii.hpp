#pragma once
// ASCII lower-casing for server names and digests (SNI is case-insensitive
// in ASCII only; std::tolower would depend on the C locale).
//
// The same as http::to_lower (lib/http/tokens.hpp), which tls may not
// include: scripts/check-layers.sh lets tls include no other layer, and the
// only layer both may include is the public API, which is no place for it.
// This is tls's one copy; when tls may include http (a row in that table),
// callers switch to http::to_lower and this file goes.

#include <string>
#include <string_view>

namespace sluice::tls {

inline char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
}

inline std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = to_lower(c);
  return out;
}

}  // namespace sluice::tls
