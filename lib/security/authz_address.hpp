#pragma once
// IP addresses, CIDR ranges and the client address behind X-Forwarded-For, as
// AuthorizationPolicy's ipBlocks / remoteIpBlocks and the source.ip /
// remote.ip / destination.ip conditions use them. Parsed once at config
// load; matching is byte arithmetic with no allocation.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/request.hpp"

namespace sluice::security {

struct IpAddress {
  enum class Family : uint8_t { none, v4, v6 };

  Family family = Family::none;     // none: no address (an unknown peer never matches a block)
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 uses the first 4

  static IpAddress v4(std::array<uint8_t, 4> b);
  static IpAddress v6(std::array<uint8_t, 16> b);
  // A bare IPv4 or IPv6 literal as inet_pton reads it: no brackets, port or
  // zone, no leading zeros in IPv4 octets.
  static std::optional<IpAddress> parse(std::string_view text);

  bool valid() const { return family != Family::none; }
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as IPv4. Envoy does this for
  // peers accepted on a dual-stack socket; use it on socket addresses only
  // (an X-Forwarded-For entry keeps its family, as in Envoy).
  IpAddress unmapped() const;
  std::string to_string() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// An address range. A bare address is a /32 or /128. The base is masked to
// the prefix ("10.1.2.3/16" is 10.1.0.0/16), as Envoy's CidrRange does. An
// IPv4 range never contains an IPv6 address, mapped or not.
struct Cidr {
  IpAddress base;
  uint8_t prefix_len = 0;

  // "10.0.0.0/8", "2001:db8::/32" or a bare address. The prefix length is
  // decimal without leading zeros, at most 32 or 128.
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const IpAddress& address) const;
};

// The trusted client address Envoy computes at an edge listener
// (use_remote_address: true) with xff_num_trusted_hops = `num_trusted_proxies`
// (Istio's meshConfig defaultConfig.gatewayTopology.numTrustedProxies):
// 0 -> the peer address; N > 0 -> the Nth address from the right of
// X-Forwarded-For, whitespace trimmed. Fewer than N entries, or an Nth entry
// that is not a bare IP address, falls back to the peer address. `xff` is the
// header's value with repeated X-Forwarded-For lines joined by ','.
IpAddress remote_address(const IpAddress& peer, std::string_view xff, uint32_t num_trusted_proxies);
// The same over a request's headers: every X-Forwarded-For line counts, in
// order, as if joined with ',' (Envoy's HTTP/1 codec joins them so).
IpAddress remote_address(const IpAddress& peer, const Headers& headers,
                         uint32_t num_trusted_proxies);

}  // namespace sluice::security
