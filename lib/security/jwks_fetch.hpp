#pragma once
// The parts of fetching a remote JWKS that need no I/O: the URL a provider
// names, OpenID discovery (Istio: `<issuer>/.well-known/openid-configuration`
// gives `jwks_uri`), and the retry schedule. The fetching itself runs on a
// worker (runtime/jwks_fetcher) through the upstream-connection layer.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/result.hpp"
#include "sluice/security.hpp"

namespace sluice::security {

// An absolute http:// or https:// URL, as far as a GET needs it.
struct HttpUrl {
  bool https = false;
  std::string host;    // lower case; an IPv6 literal without brackets
  uint16_t port = 0;   // the scheme's default when the URL has none
  std::string target;  // path and query; "/" when the URL has no path

  // The Host header: the host, with the port unless it is the default.
  std::string authority() const;
  std::string to_string() const;  // scheme://authority/target
};

// Parses `text`: scheme http or https (any case), a non-empty host (name,
// IPv4 or [IPv6]), an optional port 1-65535, no user info, no fragment and
// no byte that could not go on the wire. The error says which rule failed.
Result<HttpUrl> parse_http_url(std::string_view text);

// Istio's OpenID discovery document URL for `issuer` (a trailing '/' dropped).
std::string openid_discovery_url(std::string_view issuer);

// The `jwks_uri` member of an OpenID provider configuration document; an
// error when the document is not a JSON object or the member is missing or
// not a string.
Result<std::string> openid_jwks_uri(std::string_view json);

// The shortest wait between two fetches of one URL, whatever the options.
inline constexpr std::chrono::milliseconds kMinJwksRetry{100};

// The wait before the next attempt after `failures` failed fetches in a row
// (>= 1): retry_initial doubled per earlier failure, capped at retry_max and
// at refresh_interval.
std::chrono::milliseconds jwks_retry_delay(const JwksFetchOptions& options, uint32_t failures);

}  // namespace sluice::security
