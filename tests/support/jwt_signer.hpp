#pragma once
// An ES256 key made with BoringSSL at test time: its JWKS and tokens it
// signs, for tests of RequestAuthentication through a gateway.

#include <cstdint>
#include <memory>
#include <string>

namespace sluice::test {

class JwtSigner {
 public:
  explicit JwtSigner(std::string kid = "test-key");
  ~JwtSigner();
  JwtSigner(const JwtSigner&) = delete;
  JwtSigner& operator=(const JwtSigner&) = delete;

  // {"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":...,"x":...,"y":...}]}
  std::string jwks() const;
  // A compact ES256 token over `payload_json` (the claims, as JSON text).
  std::string sign(const std::string& payload_json) const;

 private:
  struct Key;
  std::string kid_;
  std::unique_ptr<Key> key_;
};

// Seconds since the epoch, now (token lifetimes are wall-clock).
int64_t unix_now();

}  // namespace sluice::test
