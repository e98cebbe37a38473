#pragma once
// Small pieces of HTTP text shared by the codec, routing and policies.

#include <string_view>

namespace sluice::http {

// Calls `f(item)` for each non-empty item of `v`, optional whitespace trimmed.
template <typename F>
void for_each_list_item(std::string_view v, F&& f) {
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = v.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) f(item);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
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

}  // namespace sluice::http
