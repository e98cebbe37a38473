#pragma once
// A TLS ClientHello reader for PASSTHROUGH routing: finds the SNI in the
// first bytes of a connection without terminating TLS. Pure function over a
// byte span (no sockets), bounds-checked for arbitrary input.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace sluice::tls {

// ClientHellos larger than this are refused; real ones are far smaller
// (a few hundred bytes to ~2 KiB with post-quantum key shares).
inline constexpr size_t kMaxClientHelloBytes = 16 * 1024;

struct ClientHelloInfo {
  enum class Status {
    ok,         // a complete ClientHello; `sni` is set (empty: no server_name)
    need_more,  // a valid prefix; read more bytes
    invalid,    // not TLS, not a ClientHello, malformed or too large
  };
  Status status = Status::need_more;
  std::string sni;  // lowercased host_name
};

// Parses the TLS records at the start of a connection: handshake records,
// possibly several, carrying one ClientHello.
ClientHelloInfo parse_client_hello(std::span<const uint8_t> bytes);

// The host_name of a server_name extension body (RFC 6066 section 3),
// lowercased; nullopt when malformed or without a host_name entry.
std::optional<std::string> parse_server_name(std::span<const uint8_t> extension);

}  // namespace sluice::tls
