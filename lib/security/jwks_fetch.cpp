#include "security/jwks_fetch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "http/tokens.hpp"

namespace sluice::security {

namespace {

Error url_error(std::string message) {
  return Error{"", "", std::move(message)};
}

// RFC 3986 characters a URL may carry as they are (with '%' escapes); the
// rest (controls, space, quotes, '\\'...) would need encoding.
bool url_char(char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  if (c >= '0' && c <= '9') return true;
  return std::string_view("-._~:/?#[]@!$&'()*+,;=%").find(c) != std::string_view::npos;
}

}  // namespace

std::string HttpUrl::authority() const {
  uint16_t default_port = https ? 443 : 80;
  if (port == default_port) return host.find(':') == std::string::npos ? host : "[" + host + "]";
  return http::join_host_port(host, port);
}

std::string HttpUrl::to_string() const {
  return fmt::format("{}://{}{}", https ? "https" : "http", authority(), target);
}

Result<HttpUrl> parse_http_url(std::string_view text) {
  if (text.empty()) return url_error("must not be empty");
  for (char c : text)
    if (!url_char(c)) return url_error("holds a character a URL cannot carry unencoded");
  size_t colon = text.find("://");
  if (colon == std::string_view::npos)
    return url_error("must be an absolute http:// or https:// URL");
  std::string scheme = http::to_lower(text.substr(0, colon));
  HttpUrl url;
  if (scheme == "https")
    url.https = true;
  else if (scheme != "http")
    return url_error(fmt::format("scheme \"{}\" is not supported (http or https)", scheme));
  std::string_view rest = text.substr(colon + 3);
  if (rest.find('#') != std::string_view::npos) return url_error("must not have a fragment");
  size_t end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, end);
  url.target = end == std::string_view::npos ? "/" : std::string(rest.substr(end));
  if (url.target.front() == '?') url.target.insert(0, "/");
  if (authority.find('@') != std::string_view::npos) return url_error("must not have user info");
  http::HostPort hp = http::split_host_port(authority);
  std::string_view host = hp.host;
  if (host.size() >= 2 && host.front() == '[') {
    if (host.back() != ']') return url_error("has an unterminated IPv6 literal");
    host = host.substr(1, host.size() - 2);
  } else if (host.find_first_of("[]:") != std::string_view::npos) {
    return url_error("has an invalid host");
  }
  if (host.empty()) return url_error("has no host");
  url.host = http::to_lower(host);
  url.port = url.https ? 443 : 80;
  if (!hp.port.empty() || (!authority.empty() && authority.back() == ':')) {
    unsigned port = 0;
    auto [p, ec] = std::from_chars(hp.port.data(), hp.port.data() + hp.port.size(), port);
    if (hp.port.empty() || ec != std::errc() || p != hp.port.data() + hp.port.size() || port == 0 ||
        port > 65535)
      return url_error(fmt::format("has an invalid port \"{}\"", hp.port));
    url.port = static_cast<uint16_t>(port);
  }
  return url;
}

std::string openid_discovery_url(std::string_view issuer) {
  while (!issuer.empty() && issuer.back() == '/') issuer.remove_suffix(1);
  return std::string(issuer) + "/.well-known/openid-configuration";
}

Result<std::string> openid_jwks_uri(std::string_view json) {
  auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return url_error("the OpenID configuration is not a JSON object");
  auto it = doc.find("jwks_uri");
  if (it == doc.end()) return url_error("the OpenID configuration has no jwks_uri");
  if (!it->is_string()) return url_error("the OpenID configuration's jwks_uri is not a string");
  return it->get<std::string>();
}

std::chrono::milliseconds jwks_retry_delay(const JwksFetchOptions& options, uint32_t failures) {
  auto delay = std::max(options.retry_initial, std::chrono::milliseconds(1));
  for (uint32_t i = 1; i < failures && delay < options.retry_max; ++i) delay *= 2;
  // A zero setting must not make the fetcher spin.
  return std::max(std::min({delay, options.retry_max, options.refresh_interval}), kMinJwksRetry);
}

}  // namespace sluice::security
