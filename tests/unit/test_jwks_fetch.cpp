// The pure parts of remote key sets (issue 12, section 1): jwksUri URLs,
// OpenID discovery documents and the retry schedule.

#include <doctest/doctest.h>

#include "security/jwks_fetch.hpp"

namespace test_jwks_fetch {

TEST_CASE("jwks fetch: http(s) URLs as jwksUri takes them") {
  using sluice::security::parse_http_url;
  auto a = parse_http_url("HTTPS://Keys.Example.com/.well-known/jwks.json?v=1");
  REQUIRE(a.ok());
  CHECK(a->https);
  CHECK(a->host == "keys.example.com");
  CHECK(a->port == 443);
  CHECK(a->target == "/.well-known/jwks.json?v=1");
  CHECK(a->authority() == "keys.example.com");
  auto b = parse_http_url("http://[::1]:8080");
  REQUIRE(b.ok());
  CHECK(b->host == "::1");
  CHECK(b->port == 8080);
  CHECK(b->target == "/");
  CHECK(b->authority() == "[::1]:8080");
  CHECK(b->to_string() == "http://[::1]:8080/");
  auto c = parse_http_url("http://127.0.0.1:80/k");
  REQUIRE(c.ok());
  CHECK(c->authority() == "127.0.0.1");
  CHECK(parse_http_url("ftp://a/b").error().message ==
        "scheme \"ftp\" is not supported (http or https)");
  CHECK(parse_http_url("a/b").error().message == "must be an absolute http:// or https:// URL");
  CHECK(parse_http_url("https://u:p@a/b").error().message == "must not have user info");
  CHECK(parse_http_url("https://a:0/").error().message == "has an invalid port \"0\"");
  CHECK(parse_http_url("https://a:/").error().message == "has an invalid port \"\"");
  CHECK(parse_http_url("https://a/b#c").error().message == "must not have a fragment");
  CHECK(parse_http_url("https://a/b c").error().message ==
        "holds a character a URL cannot carry unencoded");
  CHECK(parse_http_url("https:///x").error().message == "has no host");
}

TEST_CASE("jwks fetch: OpenID discovery document and retry delays") {
  using namespace sluice::security;
  CHECK(openid_discovery_url("https://accounts.example.com/") ==
        "https://accounts.example.com/.well-known/openid-configuration");
  auto named = openid_jwks_uri(R"({"jwks_uri":"https://a/k"})");
  REQUIRE(named.ok());
  CHECK(*named == "https://a/k");
  CHECK(openid_jwks_uri(R"({"jwks_uri":1})").error().message ==
        "the OpenID configuration's jwks_uri is not a string");
  CHECK(openid_jwks_uri("[]").error().message == "the OpenID configuration is not a JSON object");
  CHECK(openid_jwks_uri("{}").error().message == "the OpenID configuration has no jwks_uri");
  sluice::JwksFetchOptions o;
  o.retry_initial = std::chrono::seconds(1);
  o.retry_max = std::chrono::seconds(5);
  CHECK(jwks_retry_delay(o, 1) == std::chrono::seconds(1));
  CHECK(jwks_retry_delay(o, 2) == std::chrono::seconds(2));
  CHECK(jwks_retry_delay(o, 3) == std::chrono::seconds(4));
  CHECK(jwks_retry_delay(o, 4) == std::chrono::seconds(5));
  CHECK(jwks_retry_delay(o, 1000) == std::chrono::seconds(5));
  o.refresh_interval = std::chrono::seconds(3);
  CHECK(jwks_retry_delay(o, 4) == std::chrono::seconds(3));
  o.retry_max = std::chrono::milliseconds(0);  // never a spin
  CHECK(jwks_retry_delay(o, 1) == kMinJwksRetry);
}

}  // namespace test_jwks_fetch
