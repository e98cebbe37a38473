#include "support/jwt_signer.hpp"

#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>
#include <openssl/sha.h>

#include <chrono>
#include <stdexcept>

#include "security/jwt.hpp"

namespace sluice::test {

struct JwtSigner::Key {
  bssl::UniquePtr<EC_KEY> ec;
};

namespace {
std::string fixed_bytes(const BIGNUM* bn) {
  std::string out(32, '\0');
  if (!BN_bn2bin_padded(reinterpret_cast<uint8_t*>(out.data()), out.size(), bn))
    throw std::runtime_error("BN_bn2bin_padded");
  return out;
}
}  // namespace

JwtSigner::JwtSigner(std::string kid) : kid_(std::move(kid)), key_(std::make_unique<Key>()) {
  key_->ec.reset(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (!key_->ec || !EC_KEY_generate_key(key_->ec.get()))
    throw std::runtime_error("EC key generation failed");
}

JwtSigner::~JwtSigner() = default;

std::string JwtSigner::jwks() const {
  bssl::UniquePtr<BIGNUM> x(BN_new()), y(BN_new());
  EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(key_->ec.get()),
                                      EC_KEY_get0_public_key(key_->ec.get()), x.get(), y.get(),
                                      nullptr);
  return R"({"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":")" + kid_ +
         R"(","x":")" + security::base64url_encode(fixed_bytes(x.get())) + R"(","y":")" +
         security::base64url_encode(fixed_bytes(y.get())) + R"("}]})";
}

std::string JwtSigner::sign(const std::string& payload_json) const {
  std::string input =
      security::base64url_encode(R"({"alg":"ES256","typ":"JWT","kid":")" + kid_ + R"("})") + "." +
      security::base64url_encode(payload_json);
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(input.data()), input.size(), digest);
  bssl::UniquePtr<ECDSA_SIG> sig(ECDSA_do_sign(digest, sizeof(digest), key_->ec.get()));
  if (!sig) throw std::runtime_error("ECDSA_do_sign failed");
  // JOSE: r and s, each 32 bytes big-endian.
  std::string raw = fixed_bytes(sig->r) + fixed_bytes(sig->s);
  return input + "." + security::base64url_encode(raw);
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace sluice::test
