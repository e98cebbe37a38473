#include "http/grpc.hpp"

#include <array>
#include <charconv>

#include "http/serializer.hpp"
#include "http/tokens.hpp"

namespace sluice::http {

namespace {

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// The media type's subtype after "application/grpc", or nullopt when it is
// not that; "" or "+suffix".
std::optional<std::string_view> after(std::string_view media, std::string_view base) {
  if (!istarts_with(media, base)) return std::nullopt;
  std::string_view rest = media.substr(base.size());
  if (!rest.empty() && rest.front() != '+') return std::nullopt;
  return rest;
}

std::string_view media_type(std::string_view content_type) {
  return trim(content_type.substr(0, content_type.find(';')));
}

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// One 4-character group; false when it is not valid base64.
bool decode_group(const char* g, std::string& out) {
  int v[4];
  for (int i = 0; i < 2; ++i)
    if ((v[i] = base64_value(g[i])) < 0) return false;
  bool pad2 = g[2] == '=', pad3 = g[3] == '=';
  if (pad2 && !pad3) return false;
  v[2] = pad2 ? 0 : base64_value(g[2]);
  v[3] = pad3 ? 0 : base64_value(g[3]);
  if (v[2] < 0 || v[3] < 0) return false;
  uint32_t n = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | v[3];
  out += static_cast<char>(n >> 16);
  if (!pad2) out += static_cast<char>((n >> 8) & 0xff);
  if (!pad3) out += static_cast<char>(n & 0xff);
  return true;
}

void encode_group(const unsigned char* b, size_t n, std::string& out) {
  uint32_t v = uint32_t(b[0]) << 16 | (n > 1 ? uint32_t(b[1]) << 8 : 0) | (n > 2 ? b[2] : 0);
  out += kAlphabet[(v >> 18) & 63];
  out += kAlphabet[(v >> 12) & 63];
  out += n > 1 ? kAlphabet[(v >> 6) & 63] : '=';
  out += n > 2 ? kAlphabet[v & 63] : '=';
}

}  // namespace

GrpcKind grpc_kind(std::string_view content_type) {
  std::string_view media = media_type(content_type);
  if (after(media, "application/grpc-web-text")) return GrpcKind::web_text;
  if (after(media, "application/grpc-web")) return GrpcKind::web;
  if (after(media, "application/grpc")) return GrpcKind::grpc;
  return GrpcKind::none;
}

std::string grpc_content_type_from_web(std::string_view content_type) {
  std::string_view media = media_type(content_type);
  auto suffix = after(media, "application/grpc-web-text");
  if (!suffix) suffix = after(media, "application/grpc-web");
  std::string out = "application/grpc";
  if (suffix) out += to_lower(*suffix);
  return out;
}

std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  std::string_view digits = value.substr(0, value.size() - 1);
  uint64_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');  // 8 digits: no overflow
  }
  auto ceil_div = [](uint64_t a, uint64_t b) { return (a + b - 1) / b; };
  uint64_t ms = 0;
  switch (value.back()) {
    case 'H':
      ms = n * 3'600'000;
      break;
    case 'M':
      ms = n * 60'000;
      break;
    case 'S':
      ms = n * 1000;
      break;
    case 'm':
      ms = n;
      break;
    case 'u':
      ms = ceil_div(n, 1000);
      break;
    case 'n':
      ms = ceil_div(n, 1'000'000);
      break;
    default:
      return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

std::string format_grpc_timeout(std::chrono::milliseconds timeout) {
  constexpr uint64_t kMax = 99'999'999;
  uint64_t ms = timeout.count() > 0 ? static_cast<uint64_t>(timeout.count()) : 0;
  // Each coarser unit rounds up: a deadline sent on is never shorter.
  struct Unit {
    uint64_t ms;
    char name;
  };
  constexpr std::array<Unit, 4> units{{{1, 'm'}, {1000, 'S'}, {60'000, 'M'}, {3'600'000, 'H'}}};
  for (const Unit& u : units) {
    uint64_t n = (ms + u.ms - 1) / u.ms;
    if (n <= kMax) return std::to_string(n) + u.name;
  }
  return std::to_string(kMax) + 'H';
}

uint32_t grpc_status_from_http(uint16_t status) {
  switch (status) {
    case 400:
      return 13;  // INTERNAL
    case 401:
      return 16;  // UNAUTHENTICATED
    case 403:
      return 7;  // PERMISSION_DENIED
    case 404:
      return 12;  // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;  // UNAVAILABLE
    default:
      return 2;  // UNKNOWN
  }
}

std::optional<uint32_t> parse_grpc_status(std::string_view value) {
  if (value.empty() || value.size() > 10) return std::nullopt;
  uint64_t n = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(n);
}

void append_grpc_message(std::string& out, std::string_view text) {
  constexpr std::string_view hex = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
}

bool Base64Decoder::feed(std::string_view in, std::string& out) {
  if (!ok_) return false;
  out.reserve(out.size() + (in.size() + carry_len_) / 4 * 3);
  for (char c : in) {
    carry_[carry_len_++] = c;
    if (carry_len_ < 4) continue;
    carry_len_ = 0;
    if (!decode_group(carry_, out)) return ok_ = false;
  }
  return true;
}

void Base64Encoder::feed(std::string_view in, std::string& out) {
  out.reserve(out.size() + (in.size() + carry_len_ + 2) / 3 * 4);
  auto bytes = reinterpret_cast<const unsigned char*>(in.data());
  size_t i = 0;
  if (carry_len_ > 0) {
    unsigned char g[3] = {carry_[0], carry_[1], 0};
    while (carry_len_ < 3 && i < in.size()) g[carry_len_++] = bytes[i++];
    if (carry_len_ < 3) {
      carry_[0] = g[0];
      carry_[1] = g[1];
      return;
    }
    encode_group(g, 3, out);
    carry_len_ = 0;
  }
  for (; i + 3 <= in.size(); i += 3) encode_group(bytes + i, 3, out);
  while (i < in.size()) carry_[carry_len_++] = bytes[i++];
}

void Base64Encoder::finish(std::string& out) {
  if (carry_len_ > 0) encode_group(carry_, carry_len_, out);
  carry_len_ = 0;
}

void append_grpc_web_trailers(std::string& out, const Headers& trailers) {
  size_t start = out.size();
  out.append(5, '\0');
  out[start] = static_cast<char>(0x80);
  for (const auto& [name, value] : trailers.entries()) {
    if (!is_forwardable_trailer(name)) continue;
    out += to_lower(name);
    out += ':';
    out += value;
    out += "\r\n";
  }
  // Trailers are bounded by the parser's limits, far below 2^32.
  auto len = static_cast<uint32_t>(out.size() - start - 5);
  for (int i = 0; i < 4; ++i) out[start + 1 + i] = static_cast<char>((len >> (8 * (3 - i))) & 0xff);
}

}  // namespace sluice::http
