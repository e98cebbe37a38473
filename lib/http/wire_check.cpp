#include "http/wire_check.hpp"

#include <fmt/format.h>

#include <array>

namespace sluice::http {

namespace {

bool is_ctl(unsigned char c) {
  return c < 0x20 || c == 0x7f;
}

// CR, LF and NUL are named together: they are the bytes that split or end a
// message on the wire, the case an operator most needs to recognise.
bool has_crlf_nul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

std::string byte_name(unsigned char c) {
  return fmt::format("0x{:02x}", c);
}

// Bytes allowed in a path or query: visible US-ASCII. Stricter RFC 3986
// rules ('{', '|' raw) are left alone, as Envoy leaves them: they cannot
// change where a request line ends.
std::string check_path_bytes(std::string_view s, bool allow_fragment) {
  if (has_crlf_nul(s)) return "contains CR, LF or NUL";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == ' ') return "contains a space (percent-encode it as %20)";
    if (is_ctl(c)) return fmt::format("contains control character {}", byte_name(c));
    if (c >= 0x80)
      return fmt::format("contains non-ASCII byte {} (percent-encode it)", byte_name(c));
    if (c == '#' && !allow_fragment) return "contains '#' (a fragment is never sent upstream)";
  }
  return {};
}

}  // namespace

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\0':
        out += "\\0";
        break;
      default:
        if (c < 0x20 || c >= 0x7f)
          out += fmt::format("\\x{:02x}", c);
        else
          out += ch;
    }
  }
  out += '"';
  return out;
}

std::string check_header_name(std::string_view name) {
  if (name.empty()) return "header name must not be empty";
  if (has_crlf_nul(name)) return fmt::format("header name {} contains CR, LF or NUL", quote(name));
  if (!is_token(name))
    return fmt::format("header name {} is not a valid token (RFC 9110)", quote(name));
  return {};
}

std::string check_header_value(std::string_view value) {
  if (has_crlf_nul(value)) return "value contains CR, LF or NUL";
  for (char ch : value) {
    auto c = static_cast<unsigned char>(ch);
    if (is_ctl(c) && c != '\t')
      return fmt::format("value contains control character {}", byte_name(c));
  }
  return {};
}

std::string check_path(std::string_view path, bool allow_fragment) {
  if (auto why = check_path_bytes(path, allow_fragment); !why.empty()) return why;
  if (path.empty() || path.front() != '/')
    return fmt::format("{} must be a path starting with '/'", quote(path));
  return {};
}

std::string check_path_template(std::string_view rewrite) {
  // RE2 rewrite strings: "\\" is a backslash, "\N" a capture. Captures come
  // from the request path, which the parser has already checked.
  std::string literal;
  for (size_t i = 0; i < rewrite.size(); ++i) {
    if (rewrite[i] == '\\' && i + 1 < rewrite.size()) {
      ++i;
      if (rewrite[i] == '\\') literal += '\\';
      continue;
    }
    literal += rewrite[i];
  }
  if (has_crlf_nul(rewrite)) return "contains CR, LF or NUL";
  return check_path_bytes(literal, false);
}

std::string check_authority(std::string_view authority) {
  if (authority.empty()) return "must not be empty";
  if (has_crlf_nul(authority)) return "contains CR, LF or NUL";
  for (char ch : authority) {
    auto c = static_cast<unsigned char>(ch);
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("-._~%!$&'()*+,;=:[]").find(ch) != std::string_view::npos;
    if (ok) continue;
    if (c == ' ' || c == '\t') return fmt::format("{} contains whitespace", quote(authority));
    if (is_ctl(c) || c >= 0x80)
      return fmt::format("{} contains byte {}", quote(authority), byte_name(c));
    return fmt::format("{} contains '{}' (an authority is host[:port] only)", quote(authority), ch);
  }
  // host[:port]: a port, when present, is 1..5 digits.
  std::string_view port;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return fmt::format("{} has '[' without ']'", quote(authority));
    std::string_view tail = authority.substr(close + 1);
    if (!tail.empty() && tail.front() != ':')
      return fmt::format("{} has text after ']' that is not a port", quote(authority));
    if (!tail.empty()) port = tail.substr(1);
    if (!tail.empty() && port.empty()) return fmt::format("{} has an empty port", quote(authority));
  } else {
    if (authority.find_first_of("[]") != std::string_view::npos)
      return fmt::format("{} has '[' or ']' outside an IPv6 literal", quote(authority));
    size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      if (authority.find(':', colon + 1) != std::string_view::npos)
        return fmt::format("{}: an IPv6 address needs brackets", quote(authority));
      port = authority.substr(colon + 1);
      if (port.empty()) return fmt::format("{} has an empty port", quote(authority));
    }
  }
  if (!port.empty()) {
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || value > 65535)
        return fmt::format("{} has an invalid port", quote(authority));
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return fmt::format("{} has an invalid port", quote(authority));
  }
  return {};
}

std::string check_scheme(std::string_view scheme) {
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  bool ok = !scheme.empty() && alpha(scheme.front());
  for (char c : scheme)
    ok = ok && (alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
  if (!ok)
    return fmt::format("invalid scheme {} (ALPHA *( ALPHA / DIGIT / \"+\" / \"-\" / \".\" ))",
                       quote(scheme));
  return {};
}

std::string check_cookie_name(std::string_view name) {
  if (name.empty()) return "cookie name must not be empty";
  if (has_crlf_nul(name)) return fmt::format("cookie name {} contains CR, LF or NUL", quote(name));
  if (!is_token(name))
    return fmt::format("cookie name {} is not a valid token (RFC 6265)", quote(name));
  return {};
}

std::string check_cookie_path(std::string_view path) {
  if (has_crlf_nul(path)) return "contains CR, LF or NUL";
  for (char ch : path) {
    auto c = static_cast<unsigned char>(ch);
    if (ch == ';')
      return fmt::format("{} contains ';', which would end the attribute", quote(path));
    if (is_ctl(c) || c >= 0x80)
      return fmt::format("{} contains byte {}", quote(path), byte_name(c));
  }
  return {};
}

}  // namespace sluice::http
