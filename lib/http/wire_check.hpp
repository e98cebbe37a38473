#pragma once
// Load-time checks for configuration text that the gateway will put on the
// wire (header names and values, paths, authorities, schemes, cookies). One
// implementation shared by compile() and the Istio loader, so both reject the
// same strings; each layer names the field in its own terms.
//
// Every check returns an empty string when the text may be sent, else the
// reason, phrased to follow "field: " in an error message. Offending bytes
// are shown escaped (quote()), so an error message never carries a raw CR, LF
// or NUL into a log.

#include <array>
#include <string>
#include <string_view>

namespace sluice::http {

// RFC 9110 tchar, as a table.
inline constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// RFC 9110 tchar and token (a header name, a cookie name, a method). Inline:
// the parser checks every header name's bytes.
inline bool is_tchar(char c) {
  return kTchar[static_cast<unsigned char>(c)];
}
inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

// `s` in double quotes, with '"', '\\' and every byte outside 0x20..0x7e
// escaped (\r, \n, \t, \0, \xNN): safe to print whatever the input.
std::string quote(std::string_view s);

// A header name: a non-empty token.
std::string check_header_name(std::string_view name);

// A header value: no control character other than HTAB (RFC 9110
// field-value; obs-text bytes 0x80..0xff are allowed). The reason starts with
// "value ", e.g. "value contains CR, LF or NUL".
std::string check_header_value(std::string_view value);

// A path (and optional "?query") sent as a request target or a redirect
// Location path: starts with '/', then only visible US-ASCII (no control
// characters, space or non-ASCII byte; percent-encode those). A fragment
// ('#') is allowed only where `allow_fragment` (a redirect's Location).
std::string check_path(std::string_view path, bool allow_fragment = false);

// Text that becomes part of a path after substitution (an RE2 rewrite
// template with \0..\9 captures): the same bytes as check_path, without the
// leading-'/' rule, since a capture may supply it.
std::string check_path_template(std::string_view rewrite);

// An authority (Host header value / redirect host): host[:port], where host
// is a reg-name, an IPv4 address or a bracketed IPv6 literal (RFC 3986
// characters unreserved, pct-encoded, sub-delims, ':', '[' and ']'). No '/',
// '?', '#', '@', whitespace or control characters.
std::string check_authority(std::string_view authority);

// A URI scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
std::string check_scheme(std::string_view scheme);

// A Set-Cookie name: a token.
std::string check_cookie_name(std::string_view name);

// A Set-Cookie Path attribute value (RFC 6265 path-value): US-ASCII without
// control characters or ';'.
std::string check_cookie_path(std::string_view path);

}  // namespace sluice::http
