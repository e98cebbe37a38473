#pragma once
// Small pieces of HTTP text shared by the codec, routing and policies.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::http {

// ASCII lower-casing: HTTP names, hosts and SNI are case-insensitive in ASCII
// only, and std::tolower would depend on the C locale.
inline char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c | 0x20) : c;
}

inline void to_lower_in_place(std::string& s) {
  for (char& c : s) c = to_lower(c);
}

inline std::string to_lower(std::string_view s) {
  std::string out(s);
  to_lower_in_place(out);
  return out;
}

// ASCII case-insensitive equality (header names, tokens, schemes).
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i] && to_lower(a[i]) != to_lower(b[i])) return false;
  return true;
}

// `s` without trailing optional whitespace (RFC 9110 OWS: space and
// horizontal tab only).
inline std::string_view trim_end(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// `s` without leading and trailing optional whitespace.
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  return trim_end(s);
}

// Calls `f(item)` for each non-empty item of `v`, optional whitespace trimmed.
template <typename F>
void for_each_list_item(std::string_view v, F&& f) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = trim(v.substr(0, comma));
    if (!item.empty()) f(item);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

// The first value of query parameter `name` in a raw query string (Envoy uses
// the first occurrence; no percent-decoding). A parameter without '=' has an
// empty value.
inline std::optional<std::string_view> find_query_param(std::string_view query,
                                                        std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
  }
  return std::nullopt;
}

// "host:port" -> {"host", "port"}; "[v6]:port" -> {"[v6]", "port"}. A bare
// IPv6 address (several colons, no brackets) has no port.
struct HostPort {
  std::string_view host;
  std::string_view port;  // empty when none
};

inline HostPort split_host_port(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return {authority, {}};
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      return {authority.substr(0, close + 1), authority.substr(close + 2)};
    return {authority.substr(0, close + 1), {}};
  }
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos || authority.find(':') != colon) return {authority, {}};
  return {authority.substr(0, colon), authority.substr(colon + 1)};
}

// The inverse: "ip:port", with an IPv6 literal in brackets ("[::1]:80") so the
// port stays unambiguous. A host already in brackets is kept as it is.
inline std::string join_host_port(std::string_view host, uint16_t port) {
  bool bracket = host.find(':') != std::string_view::npos && host.front() != '[';
  std::string out;
  out.reserve(host.size() + 8);
  if (bracket) out += '[';
  out += host;
  if (bracket) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

}  // namespace sluice::http
