// Makes a signing key with BoringSSL and prints its key set and one token,
// for benchmarks/security_cost.sh (issue 12: JWT verification cost).
//
//   sluice_bench_jwt RS256|ES256 ISSUER SUBJECT
//
// stdout, two lines: the JWKS (one key, kid "bench-<alg>", the form Istio's
// inline `jwks` takes) and a compact token signed with that key whose claims
// are {"iss", "sub", "iat", "exp"}; exp is ten years ahead so a recorded
// benchmark command keeps working. A fresh key each run: nothing secret is
// stored.

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

#include "security/jwt.hpp"  // base64url_encode: the one encoder of the project

namespace {

using sluice::security::base64url_encode;

// Big-endian bytes of `bn`, left-padded to `width` (0: minimal length).
std::string be_bytes(const BIGNUM* bn, size_t width = 0) {
  std::string out(width == 0 ? BN_num_bytes(bn) : width, '\0');
  if (!BN_bn2bin_padded(reinterpret_cast<uint8_t*>(out.data()), out.size(), bn)) return {};
  return out;
}

std::string sha256(std::string_view in) {
  std::string d(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const uint8_t*>(in.data()), in.size(),
         reinterpret_cast<uint8_t*>(d.data()));
  return d;
}

std::string signing_input(const std::string& alg, const std::string& kid,
                          const std::string& claims) {
  return base64url_encode(R"({"alg":")" + alg + R"(","typ":"JWT","kid":")" + kid + R"("})") + "." +
         base64url_encode(claims);
}

// RS256: RSA 2048, e = 65537, PKCS#1 v1.5 over SHA-256.
bool rs256(const std::string& kid, const std::string& claims, std::string& jwks,
           std::string& token) {
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  if (!rsa || !e || !BN_set_word(e.get(), RSA_F4) ||
      !RSA_generate_key_ex(rsa.get(), 2048, e.get(), nullptr))
    return false;
  jwks = R"({"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":")" + kid + R"(","n":")" +
         base64url_encode(be_bytes(RSA_get0_n(rsa.get()))) + R"(","e":")" +
         base64url_encode(be_bytes(RSA_get0_e(rsa.get()))) + R"("}]})";
  std::string input = signing_input("RS256", kid, claims);
  std::string digest = sha256(input);
  std::string sig(RSA_size(rsa.get()), '\0');
  unsigned sig_len = 0;
  if (!RSA_sign(NID_sha256, reinterpret_cast<const uint8_t*>(digest.data()), digest.size(),
                reinterpret_cast<uint8_t*>(sig.data()), &sig_len, rsa.get()))
    return false;
  sig.resize(sig_len);
  token = input + "." + base64url_encode(sig);
  return true;
}

// ES256: P-256, the JOSE signature is r || s, 32 bytes each.
bool es256(const std::string& kid, const std::string& claims, std::string& jwks,
           std::string& token) {
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (!ec || !EC_KEY_generate_key(ec.get())) return false;
  bssl::UniquePtr<BIGNUM> x(BN_new()), y(BN_new());
  if (!x || !y ||
      !EC_POINT_get_affine_coordinates_GFp(
          EC_KEY_get0_group(ec.get()), EC_KEY_get0_public_key(ec.get()), x.get(), y.get(), nullptr))
    return false;
  jwks = R"({"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":")" + kid +
         R"(","x":")" + base64url_encode(be_bytes(x.get(), 32)) + R"(","y":")" +
         base64url_encode(be_bytes(y.get(), 32)) + R"("}]})";
  std::string input = signing_input("ES256", kid, claims);
  std::string digest = sha256(input);
  bssl::UniquePtr<ECDSA_SIG> sig(
      ECDSA_do_sign(reinterpret_cast<const uint8_t*>(digest.data()), digest.size(), ec.get()));
  if (!sig) return false;
  const BIGNUM *r = nullptr, *s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  token = input + "." + base64url_encode(be_bytes(r, 32) + be_bytes(s, 32));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: sluice_bench_jwt RS256|ES256 ISSUER SUBJECT\n");
    return 2;
  }
  const std::string alg = argv[1];
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const long long exp = now + 10LL * 365 * 24 * 3600;
  // ISSUER and SUBJECT come from the script: plain names, no JSON escaping needed.
  const std::string claims = R"({"iss":")" + std::string(argv[2]) + R"(","sub":")" +
                             std::string(argv[3]) + R"(","iat":)" + std::to_string(now) +
                             R"(,"exp":)" + std::to_string(exp) + "}";
  const std::string kid = "bench-" + alg;
  std::string jwks, token;
  bool ok = false;
  if (alg == "RS256") {
    ok = rs256(kid, claims, jwks, token);
  } else if (alg == "ES256") {
    ok = es256(kid, claims, jwks, token);
  } else {
    std::fprintf(stderr, "sluice_bench_jwt: unknown algorithm %s (RS256 or ES256)\n", alg.c_str());
    return 2;
  }
  if (!ok) {
    std::fprintf(stderr, "sluice_bench_jwt: %s key generation or signing failed\n", alg.c_str());
    return 1;
  }
  std::printf("%s\n%s\n", jwks.c_str(), token.c_str());
  return 0;
}
