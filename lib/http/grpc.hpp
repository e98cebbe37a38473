#pragma once
// gRPC and gRPC-Web pieces the proxy needs, apart from I/O: what a
// content-type says, grpc-timeout, the HTTP-to-gRPC status mapping Envoy
// uses for replies the gateway makes itself, grpc-message encoding, and
// gRPC-Web's base64 text mode and trailer frame.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/request.hpp"

namespace sluice::http {

enum class GrpcKind : uint8_t {
  none,      // not gRPC
  grpc,      // application/grpc, application/grpc+...
  web,       // application/grpc-web, application/grpc-web+...
  web_text,  // application/grpc-web-text, application/grpc-web-text+...
};
// From a content-type value (media type compared without case, parameters
// ignored).
GrpcKind grpc_kind(std::string_view content_type);

// The content-type a gRPC-Web request goes upstream with: "+suffix" kept
// ("application/grpc-web-text+proto" -> "application/grpc+proto").
std::string grpc_content_type_from_web(std::string_view content_type);

// grpc-timeout: 1 to 8 digits and a unit (H M S m u n). Sub-millisecond
// values round up (a deadline is never shortened to "none"). nullopt for
// anything else, which is then ignored as Envoy ignores it.
std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view value);
// The shortest exact form that fits in 8 digits ("250m", "100000S").
std::string format_grpc_timeout(std::chrono::milliseconds timeout);

// Envoy's (and gRPC's http-grpc-status-mapping) status for an HTTP status:
// 400 -> 13, 401 -> 16, 403 -> 7, 404 -> 12, 429/502/503/504 -> 14, else 2.
uint32_t grpc_status_from_http(uint16_t status);
inline constexpr uint32_t kGrpcDeadlineExceeded = 4;

// A grpc-status value: 1 to 10 digits; nullopt otherwise.
std::optional<uint32_t> parse_grpc_status(std::string_view value);

// grpc-message's percent-encoding: bytes outside 0x20..0x7e and '%' as %XX.
void append_grpc_message(std::string& out, std::string_view text);

// Standard base64 (with padding) in 4-character groups, as gRPC-Web text
// clients send it: each group stands alone, so padded groups may appear
// mid-stream (one per message a client encoded). At most 3 characters are
// carried between feeds.
class Base64Decoder {
 public:
  // Appends the decoded bytes of `in` to `out`; false on a character or
  // padding base64 does not allow (the stream is then broken for good).
  bool feed(std::string_view in, std::string& out);
  // True when the input ended on a group boundary.
  bool finish() const { return ok_ && carry_len_ == 0; }

 private:
  char carry_[4]{};
  size_t carry_len_ = 0;
  bool ok_ = true;
};

// Base64 over a stream: up to 2 bytes carried to the next feed; finish()
// pads what is left.
class Base64Encoder {
 public:
  void feed(std::string_view in, std::string& out);
  void finish(std::string& out);

 private:
  unsigned char carry_[2]{};
  size_t carry_len_ = 0;
};

// gRPC-Web's trailer frame: flag 0x80, a 4-byte big-endian length, then
// "name:value\r\n" per field (names lower-cased; fields that may not be
// forwarded as trailers are left out).
void append_grpc_web_trailers(std::string& out, const Headers& trailers);

}  // namespace sluice::http
