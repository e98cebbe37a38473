#include "proxy/tunnel.hpp"

#include "http/tokens.hpp"

namespace sluice {

UpgradeDecision decide_upgrade(const Headers& headers, bool parser_upgrade, bool body_expected,
                               std::span<const std::string> allowed) {
  UpgradeDecision d;
  if (!parser_upgrade) return d;
  d.verdict = UpgradeDecision::Verdict::refused;
  // Bytes after the head belong to the tunnel: a body as well would leave
  // two readings of them (request smuggling).
  if (body_expected) {
    d.verdict = UpgradeDecision::Verdict::has_body;
    return d;
  }
  if (headers.count("upgrade") != 1) return d;
  size_t items = 0;
  std::string_view protocol;
  http::for_each_list_item(*headers.get("upgrade"), [&](std::string_view p) {
    ++items;
    protocol = p;
  });
  if (items != 1) return d;
  // "name/version": the name decides (RFC 9110 7.8).
  std::string_view name = protocol.substr(0, protocol.find('/'));
  for (const auto& a : allowed)
    if (!name.empty() && http::iequals(name, a)) {
      d.verdict = UpgradeDecision::Verdict::allowed;
      d.token = http::to_lower(protocol);
      return d;
    }
  return d;
}

namespace tunnel_detail {
void close_socket(asio::ip::tcp::socket::lowest_layer_type& s) {
  asio::error_code ignored;
  s.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}
}  // namespace tunnel_detail

}  // namespace sluice
