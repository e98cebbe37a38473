// libFuzzer target: request path normalisation (lib/http/path.hpp), checked
// against a deliberately plain reference written from the documented rules
// (decode character by character, split into segments, apply "." and ".."
// with a stack, join, merge slashes), for all four modes. Also checks that
// normalising twice changes nothing and that no dot segment survives.

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "http/path.hpp"

namespace {

using sluice::PathNormalization;

bool is_unreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// nullopt: the target must be refused (400).
std::optional<std::string> reference(std::string_view target, PathNormalization mode) {
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? "" : target.substr(q);
  if (path.empty() || path[0] != '/') return std::nullopt;

  // Escapes first: every '%' needs two hex digits and must not encode NUL.
  std::string decoded;
  for (size_t i = 0; i < path.size(); ++i) {
    unsigned char c = path[i];
    if (c == '\\') {
      decoded += '/';
    } else if (c != '%') {
      decoded += static_cast<char>(c);
    } else {
      if (path.size() - i < 3) return std::nullopt;
      if (!std::isxdigit(static_cast<unsigned char>(path[i + 1])) ||
          !std::isxdigit(static_cast<unsigned char>(path[i + 2])))
        return std::nullopt;
      char hex[3] = {path[i + 1], path[i + 2], 0};
      auto v = static_cast<unsigned char>(std::strtol(hex, nullptr, 16));
      if (v == 0) return std::nullopt;
      i += 2;
      bool slash = v == '/' || v == '\\';
      if (is_unreserved(v)) {
        decoded += static_cast<char>(v);
      } else if (slash && mode == PathNormalization::decode_and_merge_slashes) {
        decoded += '/';
      } else {
        decoded += '%';
        decoded += static_cast<char>(std::toupper(static_cast<unsigned char>(hex[0])));
        decoded += static_cast<char>(std::toupper(static_cast<unsigned char>(hex[1])));
      }
    }
  }
  if (mode == PathNormalization::none) return std::string(target);

  // Segments after the leading '/'.
  std::vector<std::string> segments;
  std::string current;
  for (size_t i = 1; i < decoded.size(); ++i) {
    if (decoded[i] == '/') {
      segments.push_back(current);
      current.clear();
    } else {
      current += decoded[i];
    }
  }
  segments.push_back(current);

  std::vector<std::string> kept;
  bool trailing_slash = false;
  for (size_t k = 0; k < segments.size(); ++k) {
    bool last = k + 1 == segments.size();
    if (segments[k] == ".") {
      trailing_slash = last;
    } else if (segments[k] == "..") {
      if (!kept.empty()) kept.pop_back();
      trailing_slash = last;
    } else {
      kept.push_back(segments[k]);
    }
  }
  std::string out = "/";
  for (size_t k = 0; k < kept.size(); ++k) {
    if (k) out += '/';
    out += kept[k];
  }
  if (trailing_slash && !kept.empty()) out += '/';

  if (mode != PathNormalization::base) {
    std::string merged;
    for (char c : out)
      if (!(c == '/' && !merged.empty() && merged.back() == '/')) merged += c;
    out = merged;
  }
  out += query;
  return out;
}

const char* mode_name(PathNormalization m) {
  switch (m) {
    case PathNormalization::none:
      return "NONE";
    case PathNormalization::base:
      return "BASE";
    case PathNormalization::merge_slashes:
      return "MERGE_SLASHES";
    case PathNormalization::decode_and_merge_slashes:
      return "DECODE_AND_MERGE_SLASHES";
  }
  return "?";
}

void fail(std::string_view input, PathNormalization mode, std::string_view got,
          const std::optional<std::string>& want, const char* what) {
  std::fprintf(stderr, "\npath normalisation %s, mode %s\n  input:     ", what, mode_name(mode));
  sluice::fuzz::print_escaped(input);
  std::fprintf(stderr, "\n  got:       ");
  sluice::fuzz::print_escaped(got);
  std::fprintf(stderr, "\n  reference: ");
  if (want)
    sluice::fuzz::print_escaped(*want);
  else
    std::fprintf(stderr, "(refused)");
  std::fprintf(stderr, "\n");
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // longer paths add nothing but time
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (auto mode :
       {PathNormalization::none, PathNormalization::base, PathNormalization::merge_slashes,
        PathNormalization::decode_and_merge_slashes}) {
    std::string target(input);
    std::string why = sluice::http::normalize_target(target, mode);
    std::optional<std::string> want = reference(input, mode);
    if (!why.empty()) {
      if (want) fail(input, mode, "(refused: " + why + ")", want, "refused a valid target");
      FUZZ_CHECK(target == input, "a refused target was modified");
      continue;
    }
    if (!want) fail(input, mode, target, want, "accepted an invalid target");
    if (target != *want) fail(input, mode, target, want, "differs from the reference");
    if (mode == PathNormalization::none) continue;

    // A second pass is a no-op: routing and the upstream see the same path.
    std::string again = target;
    std::string why2 = sluice::http::normalize_target(again, mode);
    if (!why2.empty() || again != target)
      fail(target, mode, why2.empty() ? again : "(refused: " + why2 + ")", target,
           "is not idempotent");
    // No "." or ".." segment and, with merging, no empty one survives.
    std::string_view path = std::string_view(target).substr(0, target.find('?'));
    FUZZ_CHECK(!path.empty() && path[0] == '/', "normalised path does not start with '/'");
    size_t start = 1;
    for (;;) {
      size_t end = path.find('/', start);
      std::string_view seg = path.substr(start, end == std::string_view::npos ? end : end - start);
      if (seg == "." || seg == "..") fail(input, mode, target, want, "kept a dot segment");
      if (mode != PathNormalization::base && seg.empty() && end != std::string_view::npos)
        fail(input, mode, target, want, "kept an empty segment");
      if (end == std::string_view::npos) break;
      start = end + 1;
    }
  }
  return 0;
}
