#include "http/path.hpp"

namespace sluice::http {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

constexpr char kHex[] = "0123456789ABCDEF";

// Pass 1: escapes. Decodes what the mode says, uppercases the hex of the
// rest, turns raw '\' into '/'. Fails on a bad or NUL escape.
std::string decode(std::string_view path, PathNormalization mode, std::string& out) {
  bool decode_slashes = mode == PathNormalization::decode_and_merge_slashes;
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c != '%') {
      out += c == '\\' ? '/' : c;
      continue;
    }
    if (i + 2 >= path.size()) return "invalid percent-encoding in path";
    int hi = hex_value(path[i + 1]);
    int lo = hex_value(path[i + 2]);
    if (hi < 0 || lo < 0) return "invalid percent-encoding in path";
    auto v = static_cast<unsigned char>(hi * 16 + lo);
    if (v == 0) return "percent-encoded NUL in path";
    i += 2;
    if (unreserved(v)) {
      out += static_cast<char>(v);
    } else if (decode_slashes && (v == '/' || v == '\\')) {
      out += '/';
    } else {
      out += '%';
      out += kHex[v >> 4];
      out += kHex[v & 15];
    }
  }
  return {};
}

// RFC 3986 5.2.4 on an absolute path, segment by segment.
void remove_dot_segments(std::string& path) {
  std::string out;
  out.reserve(path.size());
  size_t i = 0;
  const size_t n = path.size();
  while (i < n) {
    // path[i] == '/' here: read the segment after it.
    size_t end = path.find('/', i + 1);
    if (end == std::string::npos) end = n;
    std::string_view seg(path.data() + i + 1, end - i - 1);
    bool last = end == n;
    if (seg == ".") {
      if (last) out += '/';
    } else if (seg == "..") {
      size_t cut = out.rfind('/');
      out.resize(cut == std::string::npos ? 0 : cut);
      if (last) out += '/';
    } else {
      out += '/';
      out += seg;
    }
    i = end;
  }
  if (out.empty()) out = "/";
  path = std::move(out);
}

void merge_slashes(std::string& path) {
  size_t w = 0;
  for (size_t r = 0; r < path.size(); ++r) {
    if (path[r] == '/' && w > 0 && path[w - 1] == '/') continue;
    path[w++] = path[r];
  }
  path.resize(w);
}

}  // namespace

std::string normalize_target(std::string& target, PathNormalization mode) {
  size_t q = target.find('?');
  std::string_view path = std::string_view(target).substr(0, q);
  if (path.empty() || path.front() != '/') return "path must start with '/'";
  std::string out;
  if (std::string why = decode(path, mode, out); !why.empty()) return why;
  if (mode == PathNormalization::none) return {};
  remove_dot_segments(out);
  if (mode != PathNormalization::base) merge_slashes(out);
  if (q != std::string::npos) out.append(target, q, std::string::npos);
  target = std::move(out);
  return {};
}

}  // namespace sluice::http
