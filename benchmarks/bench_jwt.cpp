// Makes a signing key with BoringSSL and prints its key set and one token,
// for benchmarks/security_cost.sh (issue 12: JWT verification cost).
//
//   sluice_bench_jwt RS256|ES256 ISSUER SUBJECT [--verify N]
//
// stdout, two lines: the JWKS (one key, kid "bench-<alg>", the form Istio's
// inline `jwks` takes) and a compact token signed with that key whose claims
// are {"iss", "sub", "iat", "exp"}; exp is ten years ahead so a recorded
// benchmark command keeps working. A fresh key each run: nothing secret is
// stored.
//
// --verify N: then checks the token's signature N times with BoringSSL alone
// (SHA-256 of the signing input, then RSA_verify or ECDSA_do_verify with the
// key already parsed) and prints a third line, "verify_cpu_us X": the CPU
// time of one check. That is the floor any verifier pays per token with this
// libcrypto; security_cost.sh also runs it under callgrind, collecting only
// inside bench_verify_tokens, for the floor in instructions.

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "security/jwt.hpp"  // base64url_encode: the one encoder of the project

namespace {

using sluice::security::base64url_encode;

// What a verifier holds once the key set is parsed, and the token's parts.
struct Signed {
  bssl::UniquePtr<RSA> rsa;
  bssl::UniquePtr<EC_KEY> ec;
  std::string input;      // header.payload
  std::string signature;  // raw: PKCS#1 block, or r || s
};

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
bool rs256(const std::string& kid, const std::string& claims, std::string& jwks, std::string& token,
           Signed& out) {
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
  out.rsa = std::move(rsa);
  out.input = std::move(input);
  out.signature = std::move(sig);
  return true;
}

// ES256: P-256, the JOSE signature is r || s, 32 bytes each.
bool es256(const std::string& kid, const std::string& claims, std::string& jwks, std::string& token,
           Signed& out) {
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
  out.signature = be_bytes(r, 32) + be_bytes(s, 32);
  token = input + "." + base64url_encode(out.signature);
  out.ec = std::move(ec);
  out.input = std::move(input);
  return true;
}

}  // namespace

// extern "C" and not inlined: callgrind's --toggle-collect names it.
extern "C" __attribute__((noinline)) int bench_verify_tokens(const Signed* t, long n) {
  int good = 0;
  const auto* sig = reinterpret_cast<const uint8_t*>(t->signature.data());
  for (long i = 0; i < n; ++i) {
    std::string digest = sha256(t->input);
    const auto* d = reinterpret_cast<const uint8_t*>(digest.data());
    if (t->rsa) {
      good += RSA_verify(NID_sha256, d, digest.size(), sig, t->signature.size(), t->rsa.get());
    } else {
      bssl::UniquePtr<ECDSA_SIG> es(ECDSA_SIG_new());
      bssl::UniquePtr<BIGNUM> r(BN_bin2bn(sig, 32, nullptr)), s(BN_bin2bn(sig + 32, 32, nullptr));
      if (!es || !r || !s || !ECDSA_SIG_set0(es.get(), r.get(), s.get())) continue;
      r.release();  // owned by es now
      s.release();
      good += ECDSA_do_verify(d, digest.size(), es.get(), t->ec.get());
    }
  }
  return good;
}

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  long verify = 0;
  if (argc == 6 && std::string_view(argv[4]) == "--verify") verify = std::atol(argv[5]);
  if ((argc != 4 && argc != 6) || (argc == 6 && verify <= 0)) {
    std::fprintf(stderr, "usage: sluice_bench_jwt RS256|ES256 ISSUER SUBJECT [--verify N]\n");
    return 2;
  }
  const std::string alg = argv[1];
  const long long now = time(nullptr);
  const long long exp = now + 10LL * 365 * 24 * 3600;
  // ISSUER and SUBJECT come from the script: plain names, no JSON escaping needed.
  const std::string claims = R"({"iss":")" + std::string(argv[2]) + R"(","sub":")" +
                             std::string(argv[3]) + R"(","iat":)" + std::to_string(now) +
                             R"(,"exp":)" + std::to_string(exp) + "}";
  const std::string kid = "bench-" + alg;
  std::string jwks, token;
  Signed parts;
  bool ok = false;
  if (alg == "RS256") {
    ok = rs256(kid, claims, jwks, token, parts);
  } else if (alg == "ES256") {
    ok = es256(kid, claims, jwks, token, parts);
  } else {
    std::fprintf(stderr, "sluice_bench_jwt: unknown algorithm %s (RS256 or ES256)\n", alg.c_str());
    return 2;
  }
  if (!ok) {
    std::fprintf(stderr, "sluice_bench_jwt: %s key generation or signing failed\n", alg.c_str());
    return 1;
  }
  std::printf("%s\n%s\n", jwks.c_str(), token.c_str());
  if (verify > 0) {
    double t0 = cpu_seconds();
    int good = bench_verify_tokens(&parts, verify);
    double t1 = cpu_seconds();
    if (good != verify) {
      std::fprintf(stderr, "sluice_bench_jwt: %d of %ld checks failed\n",
                   static_cast<int>(verify - good), verify);
      return 1;
    }
    std::printf("verify_cpu_us %.2f\n", (t1 - t0) * 1e6 / static_cast<double>(verify));
  }
  return 0;
}
