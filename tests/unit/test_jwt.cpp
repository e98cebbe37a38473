// JWT authentication core (lib/security/jwt): base64url, JWKS parsing, token
// decoding, every signature algorithm with keys made by BoringSSL at test
// time, time and audience checks, token locations, output headers, several
// rules and tokens, the 401 reply, key-set swaps and compile errors.

#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/curve25519.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "security/jwt.hpp"

// doctest prints a failing status by its text.
template <>
struct doctest::StringMaker<sluice::security::JwtStatus> {
  static doctest::String convert(sluice::security::JwtStatus s) {
    std::string text = "JwtStatus(" + std::string(sluice::security::jwt_status_text(s)) + ")";
    return doctest::String(text.c_str());
  }
};

namespace test_jwt {

using namespace sluice;
using namespace sluice::security;
using json = nlohmann::json;
using Clock = std::chrono::system_clock;

namespace {

constexpr int64_t kNowSeconds = 1'700'000'000;
const Clock::time_point kNow{std::chrono::seconds(kNowSeconds)};
const std::string kIssuer = "https://issuer.example";
const std::string kAudience = "api.example";

std::string bn_bytes(const BIGNUM* bn, size_t size = 0) {
  if (size == 0) size = BN_num_bytes(bn);
  std::string out(size, '\0');
  REQUIRE(BN_bn2bin_padded(reinterpret_cast<uint8_t*>(out.data()), size, bn));
  return out;
}

// Every key the tests sign with, made once per run.
struct Keys {
  bssl::UniquePtr<EVP_PKEY> rsa1, rsa2, rsa_weak;
  bssl::UniquePtr<EC_KEY> p256, p384, p521;
  uint8_t ed_public[32];
  uint8_t ed_private[64];
};

bssl::UniquePtr<EVP_PKEY> make_rsa(int bits) {
  bssl::UniquePtr<RSA> rsa(RSA_new());
  bssl::UniquePtr<BIGNUM> e(BN_new());
  REQUIRE(BN_set_word(e.get(), RSA_F4));
  REQUIRE(RSA_generate_key_ex(rsa.get(), bits, e.get(), nullptr));
  bssl::UniquePtr<EVP_PKEY> pkey(EVP_PKEY_new());
  REQUIRE(EVP_PKEY_set1_RSA(pkey.get(), rsa.get()));
  return pkey;
}

bssl::UniquePtr<EC_KEY> make_ec(int nid) {
  bssl::UniquePtr<EC_KEY> key(EC_KEY_new_by_curve_name(nid));
  REQUIRE(EC_KEY_generate_key(key.get()));
  return key;
}

const Keys& keys() {
  static const Keys* k = [] {
    auto* out = new Keys;
    out->rsa1 = make_rsa(2048);
    out->rsa2 = make_rsa(2048);
    out->rsa_weak = make_rsa(1024);
    out->p256 = make_ec(NID_X9_62_prime256v1);
    out->p384 = make_ec(NID_secp384r1);
    out->p521 = make_ec(NID_secp521r1);
    ED25519_keypair(out->ed_public, out->ed_private);
    return out;
  }();
  return *k;
}

json rsa_jwk(const EVP_PKEY* pkey, const std::string& kid, const std::string& alg = "") {
  const BIGNUM *n = nullptr, *e = nullptr;
  RSA_get0_key(EVP_PKEY_get0_RSA(pkey), &n, &e, nullptr);
  json k = {{"kty", "RSA"},
            {"kid", kid},
            {"use", "sig"},
            {"n", base64url_encode(bn_bytes(n))},
            {"e", base64url_encode(bn_bytes(e))}};
  if (!alg.empty()) k["alg"] = alg;
  return k;
}

size_t ec_size(const EC_KEY* key) {
  return (EC_GROUP_get_degree(EC_KEY_get0_group(key)) + 7) / 8;
}

json ec_jwk(const EC_KEY* key, const std::string& kid, const std::string& crv) {
  bssl::UniquePtr<BIGNUM> x(BN_new()), y(BN_new());
  REQUIRE(EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(key), EC_KEY_get0_public_key(key),
                                              x.get(), y.get(), nullptr));
  size_t size = ec_size(key);
  return {{"kty", "EC"},
          {"kid", kid},
          {"crv", crv},
          {"x", base64url_encode(bn_bytes(x.get(), size))},
          {"y", base64url_encode(bn_bytes(y.get(), size))}};
}

json ed_jwk(const std::string& kid) {
  std::string x(reinterpret_cast<const char*>(keys().ed_public), 32);
  return {{"kty", "OKP"}, {"kid", kid}, {"crv", "Ed25519"}, {"x", base64url_encode(x)}};
}

std::vector<json> all_jwks() {
  const Keys& k = keys();
  return {rsa_jwk(k.rsa1.get(), "rsa1"), ec_jwk(k.p256.get(), "ec256", "P-256"),
          ec_jwk(k.p384.get(), "ec384", "P-384"), ec_jwk(k.p521.get(), "ec521", "P-521"),
          ed_jwk("ed")};
}

std::string jwks_text(const std::vector<json>& list) {
  return json{{"keys", list}}.dump();
}

std::shared_ptr<const Jwks> parse_jwks(const std::vector<json>& list) {
  auto set = Jwks::parse(jwks_text(list));
  REQUIRE_MESSAGE(set.ok(), set.error().to_string());
  return set.value();
}

std::shared_ptr<const Jwks> full_set() {
  static const auto set = parse_jwks(all_jwks());
  return set;
}

const EVP_MD* md_for(std::string_view alg) {
  if (alg.ends_with("384")) return EVP_sha384();
  if (alg.ends_with("512")) return EVP_sha512();
  return EVP_sha256();
}

std::string sign_rsa(const EVP_PKEY* key, std::string_view alg, std::string_view input) {
  bssl::ScopedEVP_MD_CTX ctx;
  EVP_PKEY_CTX* pctx = nullptr;
  REQUIRE(EVP_DigestSignInit(ctx.get(), &pctx, md_for(alg), nullptr, const_cast<EVP_PKEY*>(key)));
  if (alg.starts_with("PS")) {
    REQUIRE(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING));
    REQUIRE(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1));
  }
  size_t len = 0;
  auto in = reinterpret_cast<const uint8_t*>(input.data());
  REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()));
  std::string sig(len, '\0');
  REQUIRE(
      EVP_DigestSign(ctx.get(), reinterpret_cast<uint8_t*>(sig.data()), &len, in, input.size()));
  sig.resize(len);
  return sig;
}

std::string sign_ec(const EC_KEY* key, std::string_view alg, std::string_view input) {
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned digest_len = 0;
  REQUIRE(EVP_Digest(input.data(), input.size(), digest, &digest_len, md_for(alg), nullptr));
  bssl::UniquePtr<ECDSA_SIG> sig(ECDSA_do_sign(digest, digest_len, key));
  REQUIRE(sig);
  const BIGNUM *r = nullptr, *s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  size_t size = ec_size(key);
  return bn_bytes(r, size) + bn_bytes(s, size);  // JOSE form: R || S
}

// The signature of `input` for `alg`, with the test key of that kind
// (`other_rsa`: the second RSA key, which the key sets do not hold).
std::string sign(std::string_view alg, std::string_view input, bool other_rsa = false) {
  const Keys& k = keys();
  if (alg.starts_with("RS") || alg.starts_with("PS"))
    return sign_rsa(other_rsa ? k.rsa2.get() : k.rsa1.get(), alg, input);
  if (alg == "ES256") return sign_ec(k.p256.get(), alg, input);
  if (alg == "ES384") return sign_ec(k.p384.get(), alg, input);
  if (alg == "ES512") return sign_ec(k.p521.get(), alg, input);
  uint8_t sig[64];
  REQUIRE(ED25519_sign(sig, reinterpret_cast<const uint8_t*>(input.data()), input.size(),
                       k.ed_private));
  return std::string(reinterpret_cast<const char*>(sig), 64);
}

std::string kid_for(std::string_view alg) {
  if (alg.starts_with("RS") || alg.starts_with("PS")) return "rsa1";
  if (alg == "ES256") return "ec256";
  if (alg == "ES384") return "ec384";
  if (alg == "ES512") return "ec521";
  return "ed";
}

json default_payload() {
  return {{"iss", kIssuer},
          {"sub", "user-1"},
          {"aud", kAudience},
          {"iat", kNowSeconds},
          {"exp", kNowSeconds + 3600}};
}

// A compact token over the given header and payload JSON texts.
std::string token_from_text(const std::string& header, const std::string& payload,
                            std::string_view alg, bool other_rsa = false) {
  std::string input = base64url_encode(header) + "." + base64url_encode(payload);
  return input + "." + base64url_encode(sign(alg, input, other_rsa));
}

std::string make_token(const json& payload = default_payload(), const std::string& alg = "RS256",
                       const std::string& kid = "") {
  json header = {{"alg", alg}, {"typ", "JWT"}, {"kid", kid.empty() ? kid_for(alg) : kid}};
  return token_from_text(header.dump(), payload.dump(), alg);
}

json payload_with(std::initializer_list<std::pair<const std::string, json>> changes) {
  json p = default_payload();
  for (const auto& [k, v] : changes) {
    if (v.is_null()) {
      p.erase(k);
    } else {
      p[k] = v;
    }
  }
  return p;
}

JwtStatus decode_status(std::string_view token) {
  Jwt jwt;
  return decode_jwt(token, jwt);
}

// Decodes and checks signature, time and audience the way a rule would.
JwtStatus verify(const std::string& token, const Jwks& set = *full_set()) {
  Jwt jwt;
  if (auto s = decode_jwt(token, jwt); s != JwtStatus::kOk) return s;
  if (auto s = check_jwt_time(jwt, kNow); s != JwtStatus::kOk) return s;
  return set.verify(jwt);
}

JwtRule make_rule(const std::string& issuer = kIssuer) {
  JwtRule r;
  r.issuer = issuer;
  r.jwks->store(full_set());
  return r;
}

Authenticator compile_ok(std::vector<JwtRule> rules) {
  auto a = Authenticator::compile(std::move(rules), "RequestAuthentication test");
  REQUIRE_MESSAGE(a.ok(), a.error().to_string());
  return std::move(a).value();
}

Error compile_error(std::vector<JwtRule> rules) {
  auto a = Authenticator::compile(std::move(rules), "RequestAuthentication test");
  REQUIRE_FALSE(a.ok());
  return a.error();
}

RequestHead request(std::string target = "/data") {
  RequestHead r;
  r.authority = "gw.example";
  r.target = std::move(target);
  r.headers.add("host", r.authority);
  return r;
}

RequestHead bearer(const std::string& token, std::string target = "/data") {
  RequestHead r = request(std::move(target));
  r.headers.add("Authorization", "Bearer " + token);
  return r;
}

std::string header_value(const Headers& headers, std::string_view name) {
  auto v = headers.get(name);
  return v ? std::string(*v) : std::string("<absent>");
}

std::string header(const RequestHead& r, std::string_view name) {
  return header_value(r.headers, name);
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

}  // namespace

// --- base64url ---------------------------------------------------------------

TEST_CASE("jwt base64url: RFC 4648 vectors and round trips") {
  std::string out;
  CHECK(base64url_encode("foobar") == "Zm9vYmFy");
  CHECK(base64url_encode("foob") == "Zm9vYg");
  CHECK(base64url_encode("fo") == "Zm8");
  CHECK(base64url_encode(std::string("\xfb\xff", 2)) == "-_8");
  REQUIRE(base64url_decode("Zm9vYg", out));
  CHECK(out == "foob");
  REQUIRE(base64url_decode("-_8", out));
  CHECK(out == std::string("\xfb\xff", 2));
  std::string bytes;
  for (int len = 0; len < 70; ++len) {
    bytes.push_back(static_cast<char>(len * 37 + 11));
    REQUIRE(base64url_decode(base64url_encode(bytes), out));
    CHECK(out == bytes);
  }
}

TEST_CASE("jwt base64url: padding, the standard alphabet, bad lengths and stray bits are refused") {
  std::string out;
  CHECK_FALSE(base64url_decode("Zm9vYg==", out));  // padding
  CHECK_FALSE(base64url_decode("+_8", out));       // '+' is standard base64
  CHECK_FALSE(base64url_decode("-/8", out));       // '/' too
  CHECK_FALSE(base64url_decode("Zm9vY", out));     // 5 chars: a partial byte
  CHECK_FALSE(base64url_decode("Zm 9v", out));
  CHECK_FALSE(base64url_decode("Zm9vYh", out));  // "Yh": stray low bits
  CHECK(base64url_decode("Zm9vYg", out));
  CHECK(base64url_decode("", out));
  CHECK(out.empty());
}

// --- JWKS --------------------------------------------------------------------

TEST_CASE("jwt jwks: RSA, EC P-256 P-384 P-521 and Ed25519 keys load with kid, alg and crv") {
  const Keys& k = keys();
  auto set = parse_jwks({rsa_jwk(k.rsa1.get(), "r", "PS256"), ec_jwk(k.p256.get(), "a", "P-256"),
                         ec_jwk(k.p384.get(), "b", "P-384"), ec_jwk(k.p521.get(), "c", "P-521"),
                         ed_jwk("d")});
  REQUIRE(set->size() == 5);
  CHECK(set->skipped().empty());
  CHECK(set->info(0).kty == "RSA");
  CHECK(set->info(0).kid == "r");
  CHECK(set->info(0).alg == "PS256");
  CHECK(set->info(1).crv == "P-256");
  CHECK(set->info(2).crv == "P-384");
  CHECK(set->info(3).crv == "P-521");
  CHECK(set->info(4).kty == "OKP");
  CHECK(set->info(4).crv == "Ed25519");
}

TEST_CASE("jwt jwks: unusable keys are skipped with a reason each") {
  const Keys& k = keys();
  json enc = rsa_jwk(k.rsa1.get(), "enc");
  enc["use"] = "enc";
  json weak = rsa_jwk(k.rsa_weak.get(), "weak");
  json oct = {{"kty", "oct"}, {"kid", "h"}, {"k", "c2VjcmV0"}};
  json off_curve = ec_jwk(k.p256.get(), "off", "P-256");
  off_curve["y"] = off_curve["x"];
  json mismatch = ec_jwk(k.p256.get(), "mm", "P-256");
  mismatch["alg"] = "ES384";
  json x25519 = ed_jwk("x");
  x25519["crv"] = "X25519";
  json short_ed = {{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", base64url_encode("short")}};
  json no_n = rsa_jwk(k.rsa1.get(), "no-n");
  no_n.erase("n");
  json rsa_as_es = rsa_jwk(k.rsa1.get(), "bad-alg", "ES256");
  auto set = Jwks::parse(jwks_text({json{{"kid", "no-kty"}}, json("not an object"), enc, weak, oct,
                                    off_curve, mismatch, x25519, short_ed, no_n, rsa_as_es,
                                    json{{"kty", "XYZ"}}, ed_jwk("good")}));
  REQUIRE_MESSAGE(set.ok(), set.error().to_string());
  REQUIRE(set.value()->size() == 1);
  CHECK(set.value()->info(0).kid == "good");
  const auto& skipped = set.value()->skipped();
  REQUIRE(skipped.size() == 12);
  CHECK(skipped[0] == "keys[0]: [kty] is missing in [keys]");
  CHECK(skipped[1] == "keys[1]: is not an object");
  CHECK(contains(skipped[2], "[use] is \"enc\""));
  CHECK(contains(skipped[3], "1024 bits is too weak"));
  CHECK(contains(skipped[4], "HMAC keys"));
  CHECK(skipped[5] == "keys[5]: Jwks EC [x] and [y] fields have a parse error.");
  CHECK(contains(skipped[6], "not compatible with [alg]"));
  CHECK(contains(skipped[7], "\"X25519\" field is not supported for an OKP key"));
  CHECK(skipped[8] == "keys[8]: Jwks OKP [x] field is wrong length.");
  CHECK(skipped[9] == "keys[9]: [n] field is missing for a RSA key");
  CHECK(contains(skipped[10], "is not started with [RS] or [PS]"));
  CHECK(contains(skipped[11], "[kty] \"XYZ\" is not supported"));
}

TEST_CASE("jwt jwks: a set without a usable key is an error that says why") {
  auto none = Jwks::parse(jwks_text({json{{"kty", "oct"}, {"k", "c2VjcmV0"}}}));
  REQUIRE_FALSE(none.ok());
  CHECK(contains(none.error().message, "Jwks doesn't have any valid public key"));
  CHECK(contains(none.error().message, "keys[0]: [kty] \"oct\" is not supported"));
  auto empty = Jwks::parse(R"({"keys": []})");
  REQUIRE_FALSE(empty.ok());
  CHECK(contains(empty.error().message, "[keys] is empty"));
  auto bad = Jwks::parse("{\"keys\": [");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "Jwks is an invalid JSON");
  auto no_keys = Jwks::parse(R"({"key": []})");
  REQUIRE_FALSE(no_keys.ok());
  CHECK(no_keys.error().message == "Jwks does not have [keys] field");
  auto not_array = Jwks::parse(R"({"keys": {}})");
  REQUIRE_FALSE(not_array.ok());
  CHECK(not_array.error().message == "[keys] in Jwks is not an array");
  // A PEM key is not a JWKS: Istio's `jwks` field takes a key set only.
  auto pem = Jwks::parse("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n");
  REQUIRE_FALSE(pem.ok());
  CHECK(pem.error().message == "Jwks is an invalid JSON");
}

TEST_CASE("jwt jwks: key fields may carry base64 padding") {
  json k = ed_jwk("padded");
  k["x"] = k["x"].get<std::string>() + "=";
  auto set = Jwks::parse(jwks_text({k}));
  REQUIRE_MESSAGE(set.ok(), set.error().to_string());
  CHECK(verify(make_token(default_payload(), "EdDSA", "padded"), *set.value()) == JwtStatus::kOk);
}

// --- algorithms and signatures ---------------------------------------------------

TEST_CASE("jwt verify: every algorithm verifies with its key") {
  for (std::string alg :
       {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}) {
    CAPTURE(alg);
    CHECK(verify(make_token(default_payload(), alg)) == JwtStatus::kOk);
  }
}

TEST_CASE("jwt verify: a tampered signature or payload fails for every algorithm") {
  for (std::string alg : {"RS256", "PS384", "ES256", "ES384", "ES512", "EdDSA"}) {
    CAPTURE(alg);
    std::string token = make_token(default_payload(), alg);
    size_t dot = token.rfind('.');
    std::string sig;
    REQUIRE(base64url_decode(token.substr(dot + 1), sig));
    sig[sig.size() / 2] ^= 0x01;
    CHECK(verify(token.substr(0, dot + 1) + base64url_encode(sig)) == JwtStatus::kVerificationFail);
    // The same signature over another payload.
    std::string other = make_token(payload_with({{"sub", "admin"}}), alg);
    std::string forged = other.substr(0, other.rfind('.')) + token.substr(dot);
    CHECK(verify(forged) == JwtStatus::kVerificationFail);
  }
}

TEST_CASE("jwt verify: a token signed by a key outside the set fails") {
  json header = {{"alg", "RS256"}, {"kid", "rsa1"}};
  std::string token = token_from_text(header.dump(), default_payload().dump(), "RS256", true);
  CHECK(verify(token) == JwtStatus::kVerificationFail);
}

TEST_CASE("jwt verify: key selection by kid, alg and key type") {
  // Unknown kid: no key to try.
  CHECK(verify(make_token(default_payload(), "RS256", "nope")) == JwtStatus::kKidAlgMismatch);
  // An EC kid for an RSA token: the key cannot make that alg.
  CHECK(verify(make_token(default_payload(), "RS256", "ec256")) == JwtStatus::kKidAlgMismatch);
  // ES256 with the P-384 key's kid: wrong curve.
  CHECK(verify(make_token(default_payload(), "ES256", "ec384")) == JwtStatus::kKidAlgMismatch);
  // Without kid every fitting key is tried, the wrong one first.
  const Keys& k = keys();
  auto two = parse_jwks({rsa_jwk(k.rsa2.get(), "rsa2"), rsa_jwk(k.rsa1.get(), "rsa1")});
  json no_kid = {{"alg", "RS256"}};
  std::string token = token_from_text(no_kid.dump(), default_payload().dump(), "RS256");
  CHECK(verify(token, *two) == JwtStatus::kOk);
  // A key without kid matches a token's kid.
  json anonymous = rsa_jwk(k.rsa1.get(), "");
  anonymous.erase("kid");
  CHECK(verify(make_token(default_payload(), "RS256", "whatever"), *parse_jwks({anonymous})) ==
        JwtStatus::kOk);
  // A key that names its alg serves only that alg.
  auto rs_only = parse_jwks({rsa_jwk(k.rsa1.get(), "rsa1", "RS256")});
  CHECK(verify(make_token(default_payload(), "RS256"), *rs_only) == JwtStatus::kOk);
  CHECK(verify(make_token(default_payload(), "PS256"), *rs_only) == JwtStatus::kKidAlgMismatch);
  // An EC token against an RSA-only set.
  CHECK(verify(make_token(default_payload(), "ES256"), *rs_only) == JwtStatus::kKidAlgMismatch);
}

TEST_CASE("jwt decode: none, HS256 and unknown algs are refused") {
  json payload = default_payload();
  std::string unsigned_token = base64url_encode(R"({"alg":"none"})") + "." +
                               base64url_encode(payload.dump()) + "." + base64url_encode("x");
  CHECK(decode_status(unsigned_token) == JwtStatus::kHeaderUnsupportedAlg);
  std::string hs = base64url_encode(R"({"alg":"HS256"})") + "." + base64url_encode(payload.dump()) +
                   "." + base64url_encode("mac");
  CHECK(decode_status(hs) == JwtStatus::kHeaderUnsupportedAlg);
  CHECK(jwt_status_text(JwtStatus::kHeaderUnsupportedAlg) == "Jwt header [alg] is not supported");
  std::string no_alg = base64url_encode(R"({"typ":"JWT"})") + "." +
                       base64url_encode(payload.dump()) + "." + base64url_encode("x");
  CHECK(decode_status(no_alg) == JwtStatus::kHeaderBadAlg);
  std::string num_alg = base64url_encode(R"({"alg":256})") + "." +
                        base64url_encode(payload.dump()) + "." + base64url_encode("x");
  CHECK(decode_status(num_alg) == JwtStatus::kHeaderBadAlg);
  std::string num_kid = base64url_encode(R"({"alg":"RS256","kid":7})") + "." +
                        base64url_encode(payload.dump()) + "." + base64url_encode("x");
  CHECK(decode_status(num_kid) == JwtStatus::kHeaderBadKid);
}

TEST_CASE("jwt decode: signature lengths for ES and EdDSA") {
  std::string token = make_token(default_payload(), "ES256");
  std::string input = token.substr(0, token.rfind('.'));
  // A DER signature (what a generic ECDSA signer gives) is not the JOSE form.
  CHECK(verify(input + "." + base64url_encode(std::string(70, 'x'))) ==
        JwtStatus::kVerificationFail);
  std::string ed = make_token(default_payload(), "EdDSA");
  std::string ed_input = ed.substr(0, ed.rfind('.'));
  CHECK(decode_status(ed_input + "." + base64url_encode(std::string(63, 'x'))) ==
        JwtStatus::kEd25519SignatureWrongLength);
}

TEST_CASE("jwt decode: malformed tokens") {
  std::string good = make_token();
  size_t dot1 = good.find('.');
  size_t dot2 = good.rfind('.');
  std::string header = good.substr(0, dot1);
  std::string payload = good.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string sig = good.substr(dot2 + 1);
  CHECK(decode_status(good) == JwtStatus::kOk);
  CHECK(decode_status(header + "." + payload) == JwtStatus::kBadFormat);
  CHECK(decode_status(header + "." + payload + "." + sig + ".x") == JwtStatus::kBadFormat);
  CHECK(decode_status(header + ".." + sig) == JwtStatus::kBadFormat);
  CHECK(decode_status(header + "." + payload + ".") == JwtStatus::kBadFormat);
  CHECK(decode_status("+" + header.substr(1) + "." + payload + "." + sig) ==
        JwtStatus::kHeaderBadBase64);
  CHECK(decode_status(header + "=." + payload + "." + sig) == JwtStatus::kHeaderBadBase64);
  CHECK(decode_status(base64url_encode("{not json") + "." + payload + "." + sig) ==
        JwtStatus::kHeaderBadJson);
  CHECK(decode_status(base64url_encode("[\"RS256\"]") + "." + payload + "." + sig) ==
        JwtStatus::kHeaderBadJson);
  CHECK(decode_status(header + ".*" + payload + "." + sig) == JwtStatus::kPayloadBadBase64);
  CHECK(decode_status(header + "." + base64url_encode("{\"iss\":") + "." + sig) ==
        JwtStatus::kPayloadBadJson);
  CHECK(decode_status(header + "." + base64url_encode("\"a string\"") + "." + sig) ==
        JwtStatus::kPayloadBadJson);
  // Invalid UTF-8 inside a JSON string.
  CHECK(decode_status(header + "." + base64url_encode("{\"sub\":\"\xff\"}") + "." + sig) ==
        JwtStatus::kPayloadBadJson);
  CHECK(decode_status(header + "." + payload + ".a+b") == JwtStatus::kSignatureBadBase64);
  CHECK(decode_status(make_token(payload_with({{"iss", 5}}))) == JwtStatus::kIssNotString);
  CHECK(decode_status(make_token(payload_with({{"sub", json::array()}}))) ==
        JwtStatus::kSubNotString);
  CHECK(decode_status(make_token(payload_with({{"aud", 5}}))) == JwtStatus::kAudNotString);
  CHECK(decode_status(make_token(payload_with({{"aud", {"a", 5}}}))) == JwtStatus::kAudNotString);
  CHECK(decode_status(make_token(payload_with({{"jti", 5}}))) == JwtStatus::kJtiNotString);
  CHECK(decode_status(make_token(payload_with({{"exp", "soon"}}))) == JwtStatus::kExpNotInteger);
  CHECK(decode_status(make_token(payload_with({{"exp", -1}}))) == JwtStatus::kExpOutOfRange);
  CHECK(decode_status(make_token(payload_with({{"nbf", true}}))) == JwtStatus::kNbfNotInteger);
  CHECK(decode_status(make_token(payload_with({{"nbf", -1.5}}))) == JwtStatus::kNbfOutOfRange);
  CHECK(decode_status(make_token(payload_with({{"iat", "x"}}))) == JwtStatus::kIatNotInteger);
  CHECK(decode_status(make_token(payload_with({{"iat", 1e30}}))) == JwtStatus::kIatOutOfRange);
}

TEST_CASE("jwt decode: fields, audiences and claims of a good token") {
  json payload = payload_with({{"aud", {"a1", "a2"}}, {"azp", "web"}, {"jti", "id-7"}});
  Jwt jwt;
  REQUIRE(decode_jwt(make_token(payload, "ES384"), jwt) == JwtStatus::kOk);
  CHECK(jwt.alg == "ES384");
  CHECK(jwt.kid == "ec384");
  CHECK(jwt.typ == "JWT");
  CHECK(jwt.iss == kIssuer);
  CHECK(jwt.sub == "user-1");
  CHECK(jwt.azp == "web");
  CHECK(jwt.jti == "id-7");
  CHECK(jwt.audiences == std::vector<std::string>{"a1", "a2"});
  CHECK(jwt.exp == static_cast<uint64_t>(kNowSeconds + 3600));
  CHECK(jwt.iat == static_cast<uint64_t>(kNowSeconds));
  REQUIRE(jwt.claims.find("sub") != nullptr);
  CHECK(jwt.claims.find("sub")->text == "user-1");
  std::string payload_json;
  REQUIRE(base64url_decode(jwt.payload_b64, payload_json));
  CHECK(json::parse(payload_json) == payload);
}

TEST_CASE("jwt decode: a token over the size limit is refused before decoding") {
  // Pad the payload so that the token is exactly kMaxJwtBytes, then one more.
  auto sized = [](size_t filler) {
    return make_token(payload_with({{"pad", std::string(filler, 'p')}}), "EdDSA");
  };
  size_t base = sized(0).size();
  // Base64 grows in steps of 4 per 3 bytes: search the filler that lands exactly.
  size_t filler = (kMaxJwtBytes - base) * 3 / 4;
  while (sized(filler).size() < kMaxJwtBytes) ++filler;
  while (sized(filler).size() > kMaxJwtBytes) --filler;
  std::string at_limit = sized(filler);
  REQUIRE(at_limit.size() <= kMaxJwtBytes);
  REQUIRE(at_limit.size() > kMaxJwtBytes - 4);
  CHECK(verify(at_limit) == JwtStatus::kOk);
  std::string over = sized(filler + 3);
  REQUIRE(over.size() > kMaxJwtBytes);
  CHECK(decode_status(over) == JwtStatus::kTooLarge);
  CHECK(jwt_status_text(JwtStatus::kTooLarge) == "Jwt is too large");
}

TEST_CASE("jwt decode: deep nesting within the size limit decodes without recursion") {
  std::string nested = std::string(2500, '[') + std::string(2500, ']');
  std::string text = R"({"iss":"https://issuer.example","deep":)" + nested + "}";
  std::string token = token_from_text(R"({"alg":"EdDSA","kid":"ed"})", text, "EdDSA");
  Jwt jwt;
  REQUIRE(decode_jwt(token, jwt) == JwtStatus::kOk);
  const Claims::Node* deep = jwt.claims.find("deep");
  REQUIRE(deep != nullptr);
  CHECK(deep->type == Claims::Type::kArray);
  CHECK(jwt.claims.children(*deep).size() == 1);
}

// --- time and audiences -------------------------------------------------------------

TEST_CASE("jwt time: exp and nbf with 60 s of skew, exactly at the edge") {
  CHECK(verify(make_token(payload_with({{"exp", kNowSeconds - 60}}))) == JwtStatus::kOk);
  CHECK(verify(make_token(payload_with({{"exp", kNowSeconds - 61}}))) == JwtStatus::kExpired);
  CHECK(verify(make_token(payload_with({{"nbf", kNowSeconds + 60}}))) == JwtStatus::kOk);
  CHECK(verify(make_token(payload_with({{"nbf", kNowSeconds + 61}}))) == JwtStatus::kNotYetValid);
  // Floats are read, their fraction dropped: -59.5 is -60, -60.5 is -61.
  CHECK(verify(make_token(payload_with({{"exp", kNowSeconds - 59.5}}))) == JwtStatus::kOk);
  CHECK(verify(make_token(payload_with({{"exp", kNowSeconds - 60.5}}))) == JwtStatus::kExpired);
  CHECK(verify(make_token(payload_with({{"nbf", kNowSeconds + 61.9}}))) == JwtStatus::kNotYetValid);
  // No exp (or 0): never expires, as in Envoy without require_expiration.
  CHECK(verify(make_token(payload_with({{"exp", nullptr}}))) == JwtStatus::kOk);
  CHECK(verify(make_token(payload_with({{"exp", 0}}))) == JwtStatus::kOk);
  // Claims near 2^64 do not wrap.
  CHECK(verify(make_token(payload_with({{"nbf", 18446744073709551615ull}}))) ==
        JwtStatus::kNotYetValid);
  CHECK(verify(make_token(payload_with({{"exp", 18446744073709551615ull}}))) == JwtStatus::kOk);
}

TEST_CASE("jwt time: the skew is a parameter and the clock is the caller's") {
  Jwt jwt;
  REQUIRE(decode_jwt(make_token(payload_with({{"exp", kNowSeconds}})), jwt) == JwtStatus::kOk);
  CHECK(check_jwt_time(jwt, kNow + std::chrono::seconds(60)) == JwtStatus::kOk);
  CHECK(check_jwt_time(jwt, kNow + std::chrono::seconds(61)) == JwtStatus::kExpired);
  CHECK(check_jwt_time(jwt, kNow + std::chrono::seconds(1), std::chrono::seconds(0)) ==
        JwtStatus::kExpired);
  CHECK(check_jwt_time(jwt, kNow, std::chrono::seconds(0)) == JwtStatus::kOk);
}

TEST_CASE("jwt audiences: any shared value, scheme and trailing slash ignored") {
  std::vector<std::string> allowed = {"api.example", "other"};
  CHECK(jwt_audiences_allowed(allowed, std::vector<std::string>{"x", "other"}));
  CHECK(jwt_audiences_allowed(allowed, std::vector<std::string>{"https://api.example/"}));
  CHECK(jwt_audiences_allowed(std::vector<std::string>{"http://other"},
                              std::vector<std::string>{"other/"}));
  CHECK_FALSE(jwt_audiences_allowed(allowed, std::vector<std::string>{"api.example.com"}));
  CHECK_FALSE(jwt_audiences_allowed(allowed, std::vector<std::string>{}));
  CHECK(jwt_audiences_allowed({}, std::vector<std::string>{}));
}

// --- claims --------------------------------------------------------------------------

TEST_CASE("jwt claims: nested lookups, string arrays and space-delimited claims") {
  Claims c;
  REQUIRE(c.parse(R"({"groups":["dev","ops",3],"address":{"country":"NZ","geo":{"lat":1.5}},
                      "scope":"read  write","perm":"a b","n":7})"));
  std::vector<std::string> groups = {"groups"};
  CHECK(c.strings(groups) == std::vector<std::string_view>{"dev", "ops"});
  std::vector<std::string> country = {"address", "country"};
  CHECK(c.strings(country) == std::vector<std::string_view>{"NZ"});
  std::vector<std::string> lat = {"address", "geo", "lat"};
  REQUIRE(c.find(lat) != nullptr);
  CHECK(c.find(lat)->number == 1.5);
  CHECK(c.find(lat)->text == "1.500000");
  std::vector<std::string> missing = {"address", "city"};
  CHECK(c.find(missing) == nullptr);
  CHECK(c.strings(missing).empty());
  std::vector<std::string> through_string = {"address", "country", "x"};
  CHECK(c.find(through_string) == nullptr);
  REQUIRE(c.find({"address", "geo"}) != nullptr);
  CHECK(c.find({"address", "geo"})->type == Claims::Type::kObject);
  CHECK(c.find({"address", "geo", "lon"}) == nullptr);
  CHECK(c.find({}) == &c.root());
  std::vector<std::string> number = {"n"};
  CHECK(c.strings(number).empty());
  CHECK(c.find("n")->text == "7");
  std::vector<std::string> split = {"scope"};
  c.split_space_delimited(split);
  std::vector<std::string> scope = {"scope"};
  CHECK(c.strings(scope) == std::vector<std::string_view>{"read", "write"});
  std::vector<std::string> perm = {"perm"};
  CHECK(c.strings(perm) == std::vector<std::string_view>{"a b"});  // not named: kept whole
  CHECK_FALSE(c.parse("[1,2]"));
  CHECK(c.find("n") == nullptr);
}

// --- the authenticator ------------------------------------------------------------------

TEST_CASE("jwt authn: a good bearer token gives the principal, claims and no token upstream") {
  Authenticator a = compile_ok({make_rule()});
  json payload = payload_with({{"groups", {"dev", "ops"}},
                               {"scope", "read write"},
                               {"azp", "web-app"},
                               {"address", {{"country", "NZ"}}}});
  RequestHead r = bearer(make_token(payload, "ES256"));
  AuthnResult res = a.authenticate(r, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kVerified);
  REQUIRE(res.principal() != nullptr);
  const VerifiedJwt& v = *res.principal();
  CHECK(v.principal == kIssuer + "/user-1");
  CHECK(v.issuer == kIssuer);
  CHECK(v.subject == "user-1");
  CHECK(v.presenter == "web-app");
  CHECK(v.audiences == std::vector<std::string>{kAudience});
  CHECK(v.rule == 0);
  std::vector<std::string> groups = {"groups"}, scope = {"scope"}, country = {"address", "country"};
  CHECK(v.claims.strings(groups) == std::vector<std::string_view>{"dev", "ops"});
  CHECK(v.claims.strings(scope) == std::vector<std::string_view>{"read", "write"});
  CHECK(v.claims.strings(country) == std::vector<std::string_view>{"NZ"});
  CHECK_FALSE(r.headers.contains("authorization"));
  CHECK(r.headers.contains("host"));
}

TEST_CASE("jwt authn: every algorithm through the authenticator") {
  Authenticator a = compile_ok({make_rule()});
  for (std::string alg :
       {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}) {
    CAPTURE(alg);
    RequestHead r = bearer(make_token(default_payload(), alg));
    CHECK(a.authenticate(r, kNow).kind == AuthnResult::Kind::kVerified);
  }
}

TEST_CASE("jwt authn: no token is no principal, not an error") {
  Authenticator a = compile_ok({make_rule()});
  RequestHead r = request();
  AuthnResult res = a.authenticate(r, kNow);
  CHECK(res.kind == AuthnResult::Kind::kNoToken);
  CHECK(res.principal() == nullptr);
  // Another scheme in Authorization is not a bearer token; "bearer" is not "Bearer ".
  RequestHead basic = request();
  basic.headers.add("authorization", "Basic dXNlcjpwYXNz");
  CHECK(a.authenticate(basic, kNow).kind == AuthnResult::Kind::kNoToken);
  CHECK(header(basic, "authorization") == "Basic dXNlcjpwYXNz");
  RequestHead lower = request();
  lower.headers.add("authorization", "bearer " + make_token());
  CHECK(a.authenticate(lower, kNow).kind == AuthnResult::Kind::kNoToken);
}

TEST_CASE("jwt authn: rejections carry Envoy's body, status and www-authenticate") {
  Authenticator a = compile_ok({make_rule()});
  struct Case {
    json payload;
    uint16_t status;
    std::string body;
  };
  std::vector<Case> cases = {
      {payload_with({{"exp", kNowSeconds - 61}}), 401, "Jwt is expired"},
      {payload_with({{"nbf", kNowSeconds + 61}}), 401, "Jwt not yet valid"},
      {payload_with({{"iss", "https://evil.example"}}), 401, "Jwt issuer is not configured"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.body);
    RequestHead r = bearer(make_token(c.payload), "/data?x=1");
    std::string token_header = header(r, "authorization");
    AuthnResult res = a.authenticate(r, kNow);
    REQUIRE(res.kind == AuthnResult::Kind::kRejected);
    CHECK(res.response.status == c.status);
    CHECK(res.response.body == c.body);
    CHECK(header_value(res.response.headers, "www-authenticate") ==
          "Bearer realm=\"http://gw.example/data?x=1\", error=\"invalid_token\"");
    CHECK(header(r, "authorization") == token_header);  // a refused request is left as it was
  }
  RequestHead garbage = bearer("not-a-jwt");
  AuthnResult res = a.authenticate(garbage, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kRejected);
  CHECK(res.response.body ==
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections");
  std::string tampered = make_token();
  tampered.back() = tampered.back() == 'A' ? 'Q' : 'A';
  RequestHead bad_sig = bearer(tampered);
  res = a.authenticate(bad_sig, kNow);
  CHECK(res.response.body == "Jwt verification fails");
  RequestHead wrong_kid = bearer(make_token(default_payload(), "RS256", "rotated-away"));
  res = a.authenticate(wrong_kid, kNow);
  CHECK(res.response.body == "Jwks doesn't have key to match kid or alg from Jwt");
}

TEST_CASE("jwt authn: audiences of the rule, 403 when none is shared") {
  JwtRule rule = make_rule();
  rule.audiences = {"https://api.example/"};
  Authenticator a = compile_ok({rule});
  RequestHead ok = bearer(make_token());
  CHECK(a.authenticate(ok, kNow).kind == AuthnResult::Kind::kVerified);
  RequestHead other = bearer(make_token(payload_with({{"aud", "billing.example"}})));
  AuthnResult res = a.authenticate(other, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kRejected);
  CHECK(res.status == JwtStatus::kAudienceNotAllowed);
  CHECK(res.response.status == 403);
  CHECK(res.response.body == "Audiences in Jwt are not allowed");
  RequestHead none = bearer(make_token(payload_with({{"aud", nullptr}})));
  CHECK(a.authenticate(none, kNow).status == JwtStatus::kAudienceNotAllowed);
}

TEST_CASE("jwt rejection: realm path cut at 256 bytes, quotes escaped, no error when missing") {
  RequestHead r = request("/" + std::string(400, 'a'));
  r.scheme = "https";
  Response resp = jwt_rejection(JwtStatus::kExpired, r);
  std::string expected =
      "Bearer realm=\"https://gw.example/" + std::string(255, 'a') + "\", error=\"invalid_token\"";
  CHECK(header_value(resp.headers, "www-authenticate") == expected);
  CHECK(header_value(resp.headers, "content-type") == "text/plain");
  RequestHead q = request("/a\"b");
  CHECK(header_value(jwt_rejection(JwtStatus::kMissing, q).headers, "www-authenticate") ==
        "Bearer realm=\"http://gw.example/a\\\"b\"");
  CHECK(jwt_rejection(JwtStatus::kMissing, q).body == "Jwt is missing");
}

TEST_CASE("jwt authn: the access_token query parameter, removed unless forwarded") {
  Authenticator a = compile_ok({make_rule()});
  std::string token = make_token();
  RequestHead r = request("/data?a=1&access_token=" + token + "&b=2");
  AuthnResult res = a.authenticate(r, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kVerified);
  CHECK(r.target == "/data?a=1&b=2");
  RequestHead only = request("/data?access_token=" + token);
  REQUIRE(a.authenticate(only, kNow).kind == AuthnResult::Kind::kVerified);
  CHECK(only.target == "/data");
  JwtRule keep = make_rule();
  keep.forward_original_token = true;
  Authenticator forwarding = compile_ok({keep});
  RequestHead kept = request("/data?access_token=" + token);
  REQUIRE(forwarding.authenticate(kept, kNow).kind == AuthnResult::Kind::kVerified);
  CHECK(kept.target == "/data?access_token=" + token);
  RequestHead bad = request("/data?access_token=abc.def.ghi");
  CHECK(a.authenticate(bad, kNow).kind == AuthnResult::Kind::kRejected);
}

TEST_CASE("jwt authn: forwardOriginalToken keeps the Authorization header") {
  JwtRule rule = make_rule();
  rule.forward_original_token = true;
  Authenticator a = compile_ok({rule});
  std::string token = make_token();
  RequestHead r = bearer(token);
  REQUIRE(a.authenticate(r, kNow).kind == AuthnResult::Kind::kVerified);
  CHECK(header(r, "authorization") == "Bearer " + token);
}

TEST_CASE("jwt authn: fromHeaders with and without prefix, and no default locations then") {
  JwtRule rule = make_rule();
  rule.from_headers = {{"x-jwt-assertion", ""}, {"x-prefixed", "Token "}};
  Authenticator a = compile_ok({rule});
  std::string token = make_token();

  RequestHead plain = request();
  plain.headers.add("X-JWT-Assertion", token);
  REQUIRE(a.authenticate(plain, kNow).kind == AuthnResult::Kind::kVerified);
  CHECK_FALSE(plain.headers.contains("x-jwt-assertion"));

  RequestHead prefixed = request();
  prefixed.headers.add("x-prefixed", "Token " + token);
  CHECK(a.authenticate(prefixed, kNow).kind == AuthnResult::Kind::kVerified);

  // Envoy: after the prefix, characters that cannot be in a JWT are skipped
  // and the JWT-legal run is the token.
  RequestHead wrapped = request();
  wrapped.headers.add("x-prefixed", "{\"Token \": \"" + token + "\"}");
  CHECK(a.authenticate(wrapped, kNow).kind == AuthnResult::Kind::kVerified);

  // Without the prefix the header is not a token location.
  RequestHead no_prefix = request();
  no_prefix.headers.add("x-prefixed", token);
  CHECK(a.authenticate(no_prefix, kNow).kind == AuthnResult::Kind::kNoToken);

  // Custom locations replace the defaults.
  RequestHead authz = bearer("garbage");
  CHECK(a.authenticate(authz, kNow).kind == AuthnResult::Kind::kNoToken);
  RequestHead param = request("/?access_token=garbage");
  CHECK(a.authenticate(param, kNow).kind == AuthnResult::Kind::kNoToken);
}

TEST_CASE("jwt authn: fromParams and fromCookies") {
  JwtRule rule = make_rule();
  rule.from_params = {"my_token"};
  rule.from_cookies = {"session"};
  Authenticator a = compile_ok({rule});
  std::string token = make_token();

  RequestHead param = request("/x?my_token=" + token);
  REQUIRE(a.authenticate(param, kNow).kind == AuthnResult::Kind::kVerified);
  CHECK(param.target == "/x");

  RequestHead cookie = request();
  cookie.headers.add("cookie", "theme=dark; session=" + token + "; lang=en");
  REQUIRE(a.authenticate(cookie, kNow).kind == AuthnResult::Kind::kVerified);
  // Envoy leaves a cookie token in place.
  CHECK(contains(header(cookie, "cookie"), token));

  RequestHead quoted = request();
  quoted.headers.add("Cookie", "a=b");
  quoted.headers.add("Cookie", "session=\"" + token + "\"");
  CHECK(a.authenticate(quoted, kNow).kind == AuthnResult::Kind::kVerified);

  RequestHead other_cookie = request();
  other_cookie.headers.add("cookie", "sessionx=" + token);
  CHECK(a.authenticate(other_cookie, kNow).kind == AuthnResult::Kind::kNoToken);

  RequestHead bad_cookie = request();
  bad_cookie.headers.add("cookie", "session=abc");
  CHECK(a.authenticate(bad_cookie, kNow).kind == AuthnResult::Kind::kRejected);
}

TEST_CASE("jwt authn: outputPayloadToHeader and outputClaimToHeaders") {
  JwtRule rule = make_rule();
  rule.output_payload_to_header = "x-jwt-payload";
  rule.output_claim_to_headers = {{"x-sub", "sub"},
                                  {"x-country", "address.country"},
                                  {"x-level", "level"},
                                  {"x-ratio", "ratio"},
                                  {"x-admin", "admin"},
                                  {"x-groups", "groups"},
                                  {"x-missing", "missing"},
                                  {"x-evil", "evil"},
                                  {"x-dotted", "https://example.com/role"}};
  Authenticator a = compile_ok({rule});
  json payload = payload_with({{"address", {{"country", "NZ"}}},
                               {"level", 42},
                               {"ratio", 1.5},
                               {"admin", true},
                               {"groups", {"a", "b"}},
                               {"evil", "x\r\nx-injected: 1"},
                               {"https://example.com/role", "owner"}});
  RequestHead r = bearer(make_token(payload, "EdDSA"));
  // Forged copies from the client are removed.
  r.headers.add("x-jwt-payload", "forged");
  r.headers.add("X-Sub", "admin");
  r.headers.add("x-missing", "forged");
  REQUIRE(a.authenticate(r, kNow).kind == AuthnResult::Kind::kVerified);
  std::string payload_json;
  REQUIRE(base64url_decode(header(r, "x-jwt-payload"), payload_json));
  CHECK(json::parse(payload_json) == payload);
  CHECK(r.headers.count("x-sub") == 1);
  CHECK(header(r, "x-sub") == "user-1");
  CHECK(header(r, "x-country") == "NZ");
  CHECK(header(r, "x-level") == "42");
  CHECK(header(r, "x-ratio") == "1.500000");
  CHECK(header(r, "x-admin") == "true");
  CHECK(header(r, "x-groups") == "<absent>");
  CHECK(header(r, "x-missing") == "<absent>");
  CHECK(header(r, "x-evil") == "<absent>");
  CHECK(header(r, "x-dotted") == "owner");

  // Forged output headers go even when there is no token or it is refused.
  RequestHead none = request();
  none.headers.add("x-jwt-payload", "forged");
  CHECK(a.authenticate(none, kNow).kind == AuthnResult::Kind::kNoToken);
  CHECK_FALSE(none.headers.contains("x-jwt-payload"));
  RequestHead refused = bearer("x.y.z");
  refused.headers.add("x-sub", "admin");
  CHECK(a.authenticate(refused, kNow).kind == AuthnResult::Kind::kRejected);
  CHECK_FALSE(refused.headers.contains("x-sub"));
}

TEST_CASE("jwt authn: several rules share the default location, each token its issuer") {
  JwtRule first = make_rule("https://first.example");
  JwtRule second = make_rule();
  second.space_delimited_claims = {"roles"};
  Authenticator a = compile_ok({first, second});
  RequestHead r = bearer(make_token(payload_with({{"roles", "a b"}})));
  AuthnResult res = a.authenticate(r, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kVerified);
  CHECK(res.principal()->rule == 1);
  std::vector<std::string> roles = {"roles"};
  CHECK(res.principal()->claims.strings(roles) == std::vector<std::string_view>{"a", "b"});

  RequestHead unknown = bearer(make_token(payload_with({{"iss", "https://third.example"}})));
  res = a.authenticate(unknown, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kRejected);
  CHECK(res.response.body == "Jwt issuer is not configured");

  // The rule that names the issuer says what is wrong, not the other one.
  RequestHead expired = bearer(make_token(payload_with({{"exp", kNowSeconds - 100}})));
  res = a.authenticate(expired, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kRejected);
  CHECK(res.response.body == "Jwt is expired");
}

TEST_CASE("jwt authn: a location read by one rule only checks against that rule") {
  JwtRule header_rule = make_rule("https://first.example");
  header_rule.from_headers = {{"x-first", ""}};
  JwtRule default_rule = make_rule();
  Authenticator a = compile_ok({header_rule, default_rule});
  // A token of the second issuer in the first rule's header: unknown there.
  RequestHead r = request();
  r.headers.add("x-first", make_token());
  AuthnResult res = a.authenticate(r, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kRejected);
  CHECK(res.status == JwtStatus::kUnknownIssuer);
}

TEST_CASE("jwt authn: with several tokens every one must verify") {
  Authenticator a = compile_ok({make_rule()});
  std::string good = make_token();
  RequestHead both = bearer(good, "/?access_token=" + make_token(default_payload(), "ES256"));
  AuthnResult res = a.authenticate(both, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kVerified);
  CHECK(res.tokens.size() == 2);
  CHECK_FALSE(both.headers.contains("authorization"));
  CHECK(both.target == "/");

  RequestHead one_bad =
      bearer(good, "/?access_token=" + make_token(payload_with({{"exp", kNowSeconds - 600}})));
  res = a.authenticate(one_bad, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kRejected);
  CHECK(res.status == JwtStatus::kExpired);
  CHECK(header(one_bad, "authorization") == "Bearer " + good);

  RequestHead two_headers = bearer(good);
  two_headers.headers.add("authorization", "Bearer garbage.token.here");
  CHECK(a.authenticate(two_headers, kNow).kind == AuthnResult::Kind::kRejected);
}

TEST_CASE("jwt authn: a CORS preflight passes untouched") {
  Authenticator a = compile_ok({make_rule()});
  RequestHead r = bearer("garbage");
  r.method = "OPTIONS";
  r.headers.add("origin", "https://app.example");
  r.headers.add("access-control-request-method", "POST");
  CHECK(a.authenticate(r, kNow).kind == AuthnResult::Kind::kNoToken);
  CHECK(header(r, "authorization") == "Bearer garbage");
  RequestHead plain_options = bearer("garbage");
  plain_options.method = "OPTIONS";
  CHECK(a.authenticate(plain_options, kNow).kind == AuthnResult::Kind::kRejected);
}

TEST_CASE("jwt authn: the key set is swapped while the authenticator stays") {
  JwtRule rule;
  rule.issuer = kIssuer;
  std::shared_ptr<JwksSlot> slot = rule.jwks;
  Authenticator a = compile_ok({rule});
  std::string token = make_token(default_payload(), "ES256");
  RequestHead before = bearer(token);
  AuthnResult res = a.authenticate(before, kNow);
  REQUIRE(res.kind == AuthnResult::Kind::kRejected);
  CHECK(res.response.body == "Jwks remote fetch is failed");

  slot->store(parse_jwks({ec_jwk(keys().p256.get(), "ec256", "P-256")}));
  RequestHead after = bearer(token);
  CHECK(a.authenticate(after, kNow).kind == AuthnResult::Kind::kVerified);

  // The issuer rotated its key away.
  slot->store(parse_jwks({ed_jwk("ed")}));
  RequestHead rotated = bearer(token);
  CHECK(a.authenticate(rotated, kNow).status == JwtStatus::kKidAlgMismatch);
}

TEST_CASE("jwt authn: swapping keys while another thread verifies") {
  JwtRule rule;
  rule.issuer = kIssuer;
  auto ec_set = parse_jwks({ec_jwk(keys().p256.get(), "ec256", "P-256")});
  auto ed_set = parse_jwks({ed_jwk("ed")});
  rule.jwks->store(ec_set);
  std::shared_ptr<JwksSlot> slot = rule.jwks;
  Authenticator a = compile_ok({rule});
  std::string token = make_token(default_payload(), "ES256");
  std::atomic<bool> done{false};
  std::thread swapper([&] {
    for (int i = 0; !done.load(); ++i) slot->store(i % 2 ? ec_set : ed_set);
  });
  int verified = 0, mismatched = 0, other = 0;
  for (int i = 0; i < 300; ++i) {
    RequestHead r = bearer(token);
    AuthnResult res = a.authenticate(r, kNow);
    if (res.kind == AuthnResult::Kind::kVerified) {
      ++verified;
    } else if (res.status == JwtStatus::kKidAlgMismatch) {
      ++mismatched;
    } else {
      ++other;
    }
  }
  done = true;
  swapper.join();
  CHECK(other == 0);
  CHECK(verified + mismatched == 300);
  slot->store(ec_set);
  RequestHead last = bearer(token);
  CHECK(a.authenticate(last, kNow).kind == AuthnResult::Kind::kVerified);
}

TEST_CASE("jwt compile: errors name the policy and the field") {
  JwtRule bad_header = make_rule();
  bad_header.from_headers = {{"x jwt", ""}};
  Error e = compile_error({make_rule(), bad_header});
  CHECK(e.object == "RequestAuthentication test");
  CHECK(e.field == "jwt_rules[1].from_headers[0].name");

  JwtRule bad_prefix = make_rule();
  bad_prefix.from_headers = {{"x-jwt", "Bearer\r\n"}};
  CHECK(compile_error({bad_prefix}).field == "jwt_rules[0].from_headers[0].prefix");

  JwtRule bad_param = make_rule();
  bad_param.from_params = {"a=b"};
  CHECK(compile_error({bad_param}).field == "jwt_rules[0].from_params[0]");

  JwtRule bad_cookie = make_rule();
  bad_cookie.from_cookies = {"a;b"};
  CHECK(compile_error({bad_cookie}).field == "jwt_rules[0].from_cookies[0]");

  JwtRule host_out = make_rule();
  host_out.output_payload_to_header = "Host";
  e = compile_error({host_out});
  CHECK(e.field == "jwt_rules[0].output_payload_to_header");
  CHECK(contains(e.message, "cannot be host"));

  JwtRule dup = make_rule();
  dup.output_payload_to_header = "x-out";
  dup.output_claim_to_headers = {{"X-Out", "sub"}};
  e = compile_error({dup});
  CHECK(e.field == "jwt_rules[0].output_claim_to_headers[0].header");
  CHECK(contains(e.message, "already an output"));

  JwtRule empty_claim = make_rule();
  empty_claim.output_claim_to_headers = {{"x-c", ""}};
  CHECK(compile_error({empty_claim}).field == "jwt_rules[0].output_claim_to_headers[0].claim");

  JwtRule null_keys = make_rule();
  null_keys.jwks = nullptr;
  CHECK(compile_error({null_keys}).field == "jwt_rules[0].jwks");

  // No rules at all: every request passes without a principal.
  Authenticator none = compile_ok({});
  RequestHead r = bearer("garbage");
  CHECK(none.authenticate(r, kNow).kind == AuthnResult::Kind::kNoToken);
}

}  // namespace test_jwt
