#include "tls/client_hello.hpp"

#include "http/tokens.hpp"

#include <vector>

namespace sluice::tls {

namespace {

// A cursor over bytes; every read checks the remaining length.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  size_t remaining() const { return b_.size() - pos_; }
  bool u8(uint8_t& v) {
    if (remaining() < 1) return false;
    v = b_[pos_++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (remaining() < 2) return false;
    v = static_cast<uint16_t>(b_[pos_] << 8 | b_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool u24(uint32_t& v) {
    if (remaining() < 3) return false;
    v = static_cast<uint32_t>(b_[pos_]) << 16 | static_cast<uint32_t>(b_[pos_ + 1]) << 8 |
        b_[pos_ + 2];
    pos_ += 3;
    return true;
  }
  bool bytes(size_t n, std::span<const uint8_t>& out) {
    if (remaining() < n) return false;
    out = b_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool skip(size_t n) {
    if (remaining() < n) return false;
    pos_ += n;
    return true;
  }
  // A vector with a length prefix of `width` bytes (1 or 2).
  bool prefixed(int width, std::span<const uint8_t>& out) {
    uint16_t n = 0;
    if (width == 1) {
      uint8_t n8 = 0;
      if (!u8(n8)) return false;
      n = n8;
    } else if (!u16(n)) {
      return false;
    }
    return bytes(n, out);
  }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

constexpr uint8_t kHandshakeRecord = 22;
constexpr uint8_t kClientHello = 1;
constexpr uint16_t kServerNameExtension = 0;
constexpr size_t kMaxRecord = 16384 + 2048;  // TLSCiphertext bound (RFC 8446 5.2)

bool valid_host_byte(uint8_t c) {
  return c > 0x20 && c < 0x7f;
}

}  // namespace

std::optional<std::string> parse_server_name(std::span<const uint8_t> extension) {
  Reader ext(extension);
  std::span<const uint8_t> list;
  if (!ext.prefixed(2, list) || ext.remaining() != 0) return std::nullopt;
  Reader names(list);
  while (names.remaining() > 0) {
    uint8_t type = 0;
    std::span<const uint8_t> name;
    if (!names.u8(type) || !names.prefixed(2, name)) return std::nullopt;
    if (type != 0) continue;  // only host_name (0) is defined
    if (name.empty() || name.size() > 255) return std::nullopt;
    std::string host;
    host.reserve(name.size());
    for (uint8_t c : name) {
      if (!valid_host_byte(c)) return std::nullopt;
      host.push_back(http::to_lower(static_cast<char>(c)));
    }
    return host;
  }
  return std::nullopt;
}

ClientHelloInfo parse_client_hello(std::span<const uint8_t> bytes) {
  using Status = ClientHelloInfo::Status;
  ClientHelloInfo info;
  if (bytes.size() > kMaxClientHelloBytes + 5 * 4) bytes = bytes.first(kMaxClientHelloBytes + 20);

  // Reassemble the handshake message from consecutive handshake records.
  std::vector<uint8_t> hs;
  Reader records(bytes);
  size_t needed = 0;  // handshake bytes wanted once the header is known
  for (;;) {
    if (needed != 0 && hs.size() >= needed) break;
    uint8_t type = 0, major = 0, minor = 0;
    uint16_t length = 0;
    if (records.remaining() < 5) {
      // A prefix of a record header: check what we can see.
      Reader head(bytes.last(records.remaining()));
      if (head.u8(type) && type != kHandshakeRecord) info.status = Status::invalid;
      if (head.u8(major) && major != 3) info.status = Status::invalid;
      return info;
    }
    records.u8(type);
    records.u8(major);
    records.u8(minor);
    records.u16(length);
    if (type != kHandshakeRecord || major != 3 || length == 0 || length > kMaxRecord) {
      info.status = Status::invalid;
      return info;
    }
    std::span<const uint8_t> fragment;
    bool complete = records.bytes(length, fragment);
    if (!complete) fragment = bytes.last(records.remaining());
    hs.insert(hs.end(), fragment.begin(), fragment.end());
    if (needed == 0 && hs.size() >= 4) {
      if (hs[0] != kClientHello) {
        info.status = Status::invalid;
        return info;
      }
      needed = 4 + (static_cast<size_t>(hs[1]) << 16 | static_cast<size_t>(hs[2]) << 8 | hs[3]);
      if (needed > kMaxClientHelloBytes) {
        info.status = Status::invalid;
        return info;
      }
    } else if (needed == 0 && !hs.empty() && hs[0] != kClientHello) {
      info.status = Status::invalid;
      return info;
    }
    if (!complete) {
      if (needed != 0 && hs.size() >= needed) break;
      return info;  // need_more
    }
  }

  Reader msg(std::span<const uint8_t>(hs).first(needed));
  uint8_t msg_type = 0;
  uint32_t msg_len = 0;
  uint16_t version = 0;
  std::span<const uint8_t> session_id, ciphers, compression;
  if (!msg.u8(msg_type) || !msg.u24(msg_len) || !msg.u16(version) || !msg.skip(32) ||
      !msg.prefixed(1, session_id) || session_id.size() > 32 || !msg.prefixed(2, ciphers) ||
      ciphers.size() < 2 || ciphers.size() % 2 != 0 || !msg.prefixed(1, compression) ||
      compression.empty()) {
    info.status = Status::invalid;
    return info;
  }
  info.status = Status::ok;
  if (msg.remaining() == 0) return info;  // no extensions at all
  std::span<const uint8_t> extensions;
  if (!msg.prefixed(2, extensions) || msg.remaining() != 0) {
    info.status = Status::invalid;
    return info;
  }
  Reader ext(extensions);
  bool seen_sni = false;
  while (ext.remaining() > 0) {
    uint16_t ext_type = 0;
    std::span<const uint8_t> body;
    if (!ext.u16(ext_type) || !ext.prefixed(2, body)) {
      info.status = Status::invalid;
      return info;
    }
    if (ext_type != kServerNameExtension) continue;
    auto host = parse_server_name(body);
    if (seen_sni || !host) {  // duplicate or malformed server_name
      info.status = Status::invalid;
      return info;
    }
    seen_sni = true;
    info.sni = std::move(*host);
  }
  return info;
}

}  // namespace sluice::tls
