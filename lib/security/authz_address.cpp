// IP literals and CIDR ranges for authorization, and Envoy's trusted client
// address from X-Forwarded-For.

#include "security/authz_address.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "http/tokens.hpp"

namespace sluice::security {

IpAddress IpAddress::v4(std::array<uint8_t, 4> b) {
  IpAddress a;
  a.family = Family::v4;
  std::memcpy(a.bytes.data(), b.data(), 4);
  return a;
}

IpAddress IpAddress::v6(std::array<uint8_t, 16> b) {
  IpAddress a;
  a.family = Family::v6;
  a.bytes = b;
  return a;
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton wants a NUL-terminated string; the longest literal it accepts
  // is INET6_ADDRSTRLEN - 1 characters.
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof(buf) || text.find('\0') != std::string_view::npos)
    return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, a.bytes.data()) != 1) return std::nullopt;
    a.family = Family::v4;
  } else {
    if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
    a.family = Family::v6;
  }
  return a;
}

IpAddress IpAddress::unmapped() const {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family != Family::v6 || std::memcmp(bytes.data(), kMapped, 12) != 0) return *this;
  return v4({bytes[12], bytes[13], bytes[14], bytes[15]});
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == Family::none) return {};
  inet_ntop(family == Family::v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof(buf));
  return buf;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  size_t slash = text.find('/');
  auto address = IpAddress::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  unsigned max = address->family == IpAddress::Family::v4 ? 32 : 128;
  unsigned len = max;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    // Go's netip.ParsePrefix (what Istio validates with): decimal, no sign,
    // no leading zeros.
    if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0'))
      return std::nullopt;
    len = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      len = len * 10 + static_cast<unsigned>(c - '0');
    }
    if (len > max) return std::nullopt;
  }
  Cidr cidr;
  cidr.base = *address;
  cidr.prefix_len = static_cast<uint8_t>(len);
  // Mask the host bits so contains() compares whole bytes plus one partial.
  for (unsigned i = 0; i < 16; ++i) {
    unsigned bit = i * 8;
    if (bit >= len) {
      cidr.base.bytes[i] = 0;
    } else if (len - bit < 8) {
      cidr.base.bytes[i] &= static_cast<uint8_t>(0xff00u >> (len - bit));
    }
  }
  return cidr;
}

bool Cidr::contains(const IpAddress& address) const {
  if (address.family != base.family || base.family == IpAddress::Family::none) return false;
  unsigned full = prefix_len / 8;
  if (std::memcmp(address.bytes.data(), base.bytes.data(), full) != 0) return false;
  unsigned rest = prefix_len % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff00u >> rest);
  return (address.bytes[full] & mask) == base.bytes[full];
}

namespace {

// Walks the comma-separated entries of one X-Forwarded-For value from the
// right, counting down `remaining`; returns the entry where it reaches 1.
std::optional<std::string_view> nth_from_right(std::string_view value, uint32_t& remaining) {
  while (true) {
    size_t comma = value.rfind(',');
    std::string_view entry = comma == std::string_view::npos ? value : value.substr(comma + 1);
    if (remaining == 1) return entry;
    --remaining;
    if (comma == std::string_view::npos) return std::nullopt;
    value = value.substr(0, comma);
  }
}

IpAddress parse_or(std::string_view entry, const IpAddress& fallback) {
  auto parsed = IpAddress::parse(http::trim(entry));
  return parsed ? *parsed : fallback;
}

}  // namespace

IpAddress remote_address(const IpAddress& peer, std::string_view xff,
                         uint32_t num_trusted_proxies) {
  if (num_trusted_proxies == 0) return peer;
  uint32_t remaining = num_trusted_proxies;
  auto entry = nth_from_right(xff, remaining);
  return entry ? parse_or(*entry, peer) : peer;
}

IpAddress remote_address(const IpAddress& peer, const Headers& headers,
                         uint32_t num_trusted_proxies) {
  if (num_trusted_proxies == 0) return peer;
  uint32_t remaining = num_trusted_proxies;
  const auto& entries = headers.entries();
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (!http::iequals(it->first, "x-forwarded-for")) continue;
    if (auto entry = nth_from_right(it->second, remaining)) return parse_or(*entry, peer);
  }
  return peer;  // fewer entries than trusted proxies
}

}  // namespace sluice::security
