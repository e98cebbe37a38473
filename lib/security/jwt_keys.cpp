// JSON Web Key Sets and JWS signature verification on BoringSSL
// (lib/security/jwt.hpp: Jwks). Field rules and messages follow Envoy's
// jwt_verify_lib, except that a bad key is skipped rather than failing the
// whole set.

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/curve25519.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>

#include <array>
#include <nlohmann/json.hpp>
#include <optional>

#include "http/wire_check.hpp"
#include "security/jwt.hpp"

namespace sluice::security {

using json = nlohmann::json;

namespace {

enum class Family : uint8_t { kRsaPkcs1, kRsaPss, kEcdsa, kEd25519 };

// What a JWS `alg` needs (RFC 7518 §3, RFC 8037).
struct AlgSpec {
  std::string_view name;
  Family family;
  const EVP_MD* (*md)();  // nullptr for EdDSA
  int curve;              // ES*: the curve's NID
};

const AlgSpec* find_alg(std::string_view name) {
  static const std::array<AlgSpec, 10> kAlgs = {{
      {"RS256", Family::kRsaPkcs1, EVP_sha256, 0},
      {"RS384", Family::kRsaPkcs1, EVP_sha384, 0},
      {"RS512", Family::kRsaPkcs1, EVP_sha512, 0},
      {"PS256", Family::kRsaPss, EVP_sha256, 0},
      {"PS384", Family::kRsaPss, EVP_sha384, 0},
      {"PS512", Family::kRsaPss, EVP_sha512, 0},
      {"ES256", Family::kEcdsa, EVP_sha256, NID_X9_62_prime256v1},
      {"ES384", Family::kEcdsa, EVP_sha384, NID_secp384r1},
      {"ES512", Family::kEcdsa, EVP_sha512, NID_secp521r1},
      {"EdDSA", Family::kEd25519, nullptr, 0},
  }};
  for (const AlgSpec& a : kAlgs)
    if (a.name == name) return &a;
  return nullptr;
}

struct Curve {
  std::string_view crv;
  int nid;
  std::string_view alg;
};

constexpr std::array<Curve, 3> kCurves = {{
    {"P-256", NID_X9_62_prime256v1, "ES256"},
    {"P-384", NID_secp384r1, "ES384"},
    {"P-521", NID_secp521r1, "ES512"},
}};

// Key fields may carry '=' padding: some key servers add it, and a key set
// is configuration, not client input. The rest is strict base64url.
bool decode_key_field(std::string_view s, std::string& out) {
  for (int i = 0; i < 2 && !s.empty() && s.back() == '='; ++i) s.remove_suffix(1);
  return base64url_decode(s, out);
}

const uint8_t* bytes(std::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

bssl::UniquePtr<BIGNUM> to_bignum(std::string_view s) {
  return bssl::UniquePtr<BIGNUM>(BN_bin2bn(bytes(s), s.size(), nullptr));
}

// A required string member: empty when present and a string, else why not.
std::string required_string(const json& key, const char* name, std::string_view type,
                            std::string& out) {
  auto it = key.find(name);
  if (it == key.end()) return fmt::format("[{}] field is missing for {} key", name, type);
  if (!it->is_string()) return fmt::format("[{}] field is not string for {} key", name, type);
  out = it->get_ref<const std::string&>();
  return {};
}

}  // namespace

struct Jwks::Key {
  Family family = Family::kRsaPkcs1;  // kRsaPkcs1 stands for any RSA key
  bssl::UniquePtr<EVP_PKEY> rsa;
  bssl::UniquePtr<EC_KEY> ec;
  int curve = 0;
  size_t coordinate_bytes = 0;  // EC: r and s are each this long in a JWS signature
  std::array<uint8_t, 32> ed25519{};
};

Jwks::Jwks() = default;
Jwks::~Jwks() = default;

namespace {

std::string load_rsa(const json& k, Jwks::KeyInfo& info, bssl::UniquePtr<EVP_PKEY>& out) {
  if (!info.alg.empty()) {
    const AlgSpec* spec = find_alg(info.alg);
    if (spec == nullptr || (spec->family != Family::kRsaPkcs1 && spec->family != Family::kRsaPss))
      return fmt::format("[alg] {} is not started with [RS] or [PS] for an RSA key",
                         http::quote(info.alg));
  }
  std::string n_text, e_text;
  if (auto why = required_string(k, "n", "a RSA", n_text); !why.empty()) return why;
  if (auto why = required_string(k, "e", "a RSA", e_text); !why.empty()) return why;
  std::string n_bytes, e_bytes;
  if (!decode_key_field(n_text, n_bytes) || !decode_key_field(e_text, e_bytes) || n_bytes.empty() ||
      e_bytes.empty())
    return "Jwks RSA [n] or [e] field is missing or has a parse error";
  bssl::UniquePtr<BIGNUM> n = to_bignum(n_bytes);
  bssl::UniquePtr<BIGNUM> e = to_bignum(e_bytes);
  if (!n || !e) return "Jwks RSA [n] or [e] field is missing or has a parse error";
  unsigned bits = BN_num_bits(n.get());
  if (bits < kMinRsaBits)
    return fmt::format("RSA key of {} bits is too weak (at least {}, RFC 7518 section 3.3)", bits,
                       kMinRsaBits);
  if (bits > kMaxRsaBits)
    return fmt::format("RSA key of {} bits is too large (at most {})", bits, kMaxRsaBits);
  // An even, unit or oversized exponent is no real RSA public key.
  if (!BN_is_odd(e.get()) || BN_is_one(e.get()) || BN_num_bits(e.get()) > 33)
    return "Jwks RSA [n] or [e] field is missing or has a parse error";
  bssl::UniquePtr<RSA> rsa(RSA_new());
  if (!rsa || !RSA_set0_key(rsa.get(), n.get(), e.get(), nullptr))
    return "Jwks RSA [n] or [e] field is missing or has a parse error";
  n.release();  // owned by rsa now
  e.release();
  out.reset(EVP_PKEY_new());
  if (!out || !EVP_PKEY_set1_RSA(out.get(), rsa.get()))
    return "Jwks RSA [n] or [e] field is missing or has a parse error";
  return {};
}

std::string load_ec(const json& k, Jwks::KeyInfo& info, Jwks::Key& key) {
  if (!info.alg.empty()) {
    const AlgSpec* spec = find_alg(info.alg);
    if (spec == nullptr || spec->family != Family::kEcdsa)
      return fmt::format("[alg] {} is not started with [ES] for an EC key", http::quote(info.alg));
  }
  if (auto crv = k.find("crv"); crv != k.end()) {
    if (!crv->is_string()) return "[crv] field is not string for an EC key";
    info.crv = crv->get_ref<const std::string&>();
  }
  const Curve* curve = nullptr;
  for (const Curve& c : kCurves) {
    bool by_crv = !info.crv.empty() && c.crv == info.crv;
    bool by_alg = info.crv.empty() && !info.alg.empty() && c.alg == info.alg;
    if (by_crv || by_alg) curve = &c;
  }
  // jwt_verify_lib: a key naming neither alg nor crv is P-256.
  if (info.crv.empty() && info.alg.empty()) curve = &kCurves[0];
  if (curve == nullptr)
    return fmt::format("[crv] {} or [alg] field is not supported for an EC key",
                       http::quote(info.crv));
  if (!info.alg.empty() && curve->alg != info.alg)
    return "[crv] field specified is not compatible with [alg] for an EC key";
  info.crv = std::string(curve->crv);

  std::string x_text, y_text;
  if (auto why = required_string(k, "x", "an EC", x_text); !why.empty()) return why;
  if (auto why = required_string(k, "y", "an EC", y_text); !why.empty()) return why;
  std::string x_bytes, y_bytes;
  if (!decode_key_field(x_text, x_bytes) || !decode_key_field(y_text, y_bytes))
    return "Jwks EC [x] or [y] field is an invalid Base64.";
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(curve->nid));
  if (!ec) return "Jwks EC create key fail";
  size_t size = (EC_GROUP_get_degree(EC_KEY_get0_group(ec.get())) + 7) / 8;
  bssl::UniquePtr<BIGNUM> x = to_bignum(x_bytes);
  bssl::UniquePtr<BIGNUM> y = to_bignum(y_bytes);
  // BoringSSL checks that the point is on the curve.
  if (x_bytes.size() > size || y_bytes.size() > size || !x || !y ||
      !EC_KEY_set_public_key_affine_coordinates(ec.get(), x.get(), y.get()))
    return "Jwks EC [x] and [y] fields have a parse error.";
  key.family = Family::kEcdsa;
  key.ec = std::move(ec);
  key.curve = curve->nid;
  key.coordinate_bytes = size;
  return {};
}

std::string load_okp(const json& k, Jwks::KeyInfo& info, Jwks::Key& key) {
  if (!info.alg.empty() && info.alg != "EdDSA")
    return fmt::format("[alg] {} is not [EdDSA] for an OKP key", http::quote(info.alg));
  if (auto why = required_string(k, "crv", "an OKP", info.crv); !why.empty()) return why;
  if (info.crv != "Ed25519")
    return fmt::format("[crv] {} field is not supported for an OKP key", http::quote(info.crv));
  std::string x_text, x_bytes;
  if (auto why = required_string(k, "x", "an OKP", x_text); !why.empty()) return why;
  if (!decode_key_field(x_text, x_bytes)) return "Jwks OKP [x] field is an invalid Base64.";
  if (x_bytes.size() != key.ed25519.size()) return "Jwks OKP [x] field is wrong length.";
  std::copy(x_bytes.begin(), x_bytes.end(), key.ed25519.begin());
  key.family = Family::kEd25519;
  return {};
}

}  // namespace

Result<std::shared_ptr<const Jwks>> Jwks::parse(std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded()) return Error{"", "", "Jwks is an invalid JSON"};
  auto keys = doc.is_object() ? doc.find("keys") : doc.end();
  if (!doc.is_object() || keys == doc.end())
    return Error{"", "", "Jwks does not have [keys] field"};
  if (!keys->is_array()) return Error{"", "", "[keys] in Jwks is not an array"};

  std::shared_ptr<Jwks> set(new Jwks);
  for (size_t i = 0; i < keys->size(); ++i) {
    const json& k = (*keys)[i];
    auto why = [&]() -> std::string {
      if (!k.is_object()) return "is not an object";
      KeyInfo info;
      auto kty = k.find("kty");
      if (kty == k.end()) return "[kty] is missing in [keys]";
      if (!kty->is_string()) return "[kty] is bad in [keys]";
      info.kty = kty->get_ref<const std::string&>();
      for (auto [name, field] : {std::pair{"kid", &info.kid}, std::pair{"alg", &info.alg}}) {
        auto it = k.find(name);
        if (it == k.end()) continue;
        if (!it->is_string()) return fmt::format("[{}] is not a string", name);
        *field = it->get_ref<const std::string&>();
      }
      // RFC 7517 §4.2: a key for encryption must not verify signatures.
      if (auto use = k.find("use"); use != k.end()) {
        if (!use->is_string()) return "[use] is not a string";
        if (use->get_ref<const std::string&>() != "sig")
          return fmt::format("[use] is {}, not \"sig\"",
                             http::quote(use->get_ref<const std::string&>()));
      }
      auto key = std::make_unique<Key>();
      std::string problem;
      if (info.kty == "RSA") {
        problem = load_rsa(k, info, key->rsa);
      } else if (info.kty == "EC") {
        problem = load_ec(k, info, *key);
      } else if (info.kty == "OKP") {
        problem = load_okp(k, info, *key);
      } else if (info.kty == "oct") {
        problem = "[kty] \"oct\" is not supported: HMAC keys (HS256/384/512) are never accepted";
      } else {
        problem = fmt::format("[kty] {} is not supported in [keys]", http::quote(info.kty));
      }
      if (!problem.empty()) return problem;
      set->info_.push_back(std::move(info));
      set->keys_.push_back(std::move(key));
      return {};
    }();
    if (!why.empty()) set->skipped_.push_back(fmt::format("keys[{}]: {}", i, why));
  }
  ERR_clear_error();  // BoringSSL queues errors for the keys it refused

  if (set->keys_.empty()) {
    std::string message = "Jwks doesn't have any valid public key";
    if (set->skipped_.empty()) {
      message += " ([keys] is empty)";
    } else {
      message += " (";
      for (size_t i = 0; i < set->skipped_.size(); ++i)
        message += (i ? "; " : "") + set->skipped_[i];
      message += ")";
    }
    return Error{"", "", std::move(message)};
  }
  return std::shared_ptr<const Jwks>(std::move(set));
}

namespace {

bool verify_rsa(const Jwks::Key& key, const AlgSpec& alg, const Jwt& jwt) {
  bssl::ScopedEVP_MD_CTX ctx;
  EVP_PKEY_CTX* pctx = nullptr;
  if (!EVP_DigestVerifyInit(ctx.get(), &pctx, alg.md(), nullptr, key.rsa.get())) return false;
  // RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
  if (alg.family == Family::kRsaPss &&
      (!EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) ||
       !EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1)))
    return false;
  return EVP_DigestVerify(ctx.get(), bytes(jwt.signature), jwt.signature.size(),
                          bytes(jwt.signed_input), jwt.signed_input.size()) == 1;
}

bool verify_ecdsa(const Jwks::Key& key, const AlgSpec& alg, const Jwt& jwt) {
  // RFC 7518 §3.4: the JWS signature is R || S, each the curve's size; not DER.
  size_t n = key.coordinate_bytes;
  if (jwt.signature.size() != 2 * n) return false;
  uint8_t digest[EVP_MAX_MD_SIZE];
  unsigned digest_len = 0;
  if (!EVP_Digest(jwt.signed_input.data(), jwt.signed_input.size(), digest, &digest_len, alg.md(),
                  nullptr))
    return false;
  std::string_view sig = jwt.signature;
  bssl::UniquePtr<BIGNUM> r = to_bignum(sig.substr(0, n));
  bssl::UniquePtr<BIGNUM> s = to_bignum(sig.substr(n));
  bssl::UniquePtr<ECDSA_SIG> es(ECDSA_SIG_new());
  if (!r || !s || !es || !ECDSA_SIG_set0(es.get(), r.get(), s.get())) return false;
  r.release();  // owned by es now
  s.release();
  return ECDSA_do_verify(digest, digest_len, es.get(), key.ec.get()) == 1;
}

bool fits(const Jwks::Key& key, const AlgSpec& alg) {
  switch (alg.family) {
    case Family::kRsaPkcs1:
    case Family::kRsaPss:
      return key.rsa != nullptr;
    case Family::kEcdsa:
      return key.family == Family::kEcdsa && key.curve == alg.curve;
    case Family::kEd25519:
      return key.family == Family::kEd25519;
  }
  return false;
}

}  // namespace

JwtStatus Jwks::verify(const Jwt& jwt) const {
  const AlgSpec* alg = find_alg(jwt.alg);
  if (alg == nullptr) return JwtStatus::kHeaderUnsupportedAlg;  // decode_jwt refuses these first
  bool matched = false;
  for (size_t i = 0; i < keys_.size(); ++i) {
    const KeyInfo& info = info_[i];
    const Key& key = *keys_[i];
    // jwt_verify_lib: a key without kid or alg stands for any.
    if (!jwt.kid.empty() && !info.kid.empty() && info.kid != jwt.kid) continue;
    if (!info.alg.empty() && info.alg != jwt.alg) continue;
    if (!fits(key, *alg)) continue;
    matched = true;
    bool ok = false;
    switch (alg->family) {
      case Family::kRsaPkcs1:
      case Family::kRsaPss:
        ok = verify_rsa(key, *alg, jwt);
        break;
      case Family::kEcdsa:
        ok = verify_ecdsa(key, *alg, jwt);
        break;
      case Family::kEd25519:
        ok = jwt.signature.size() == 64 &&
             ED25519_verify(bytes(jwt.signed_input), jwt.signed_input.size(), bytes(jwt.signature),
                            key.ed25519.data()) == 1;
        break;
    }
    if (ok) return JwtStatus::kOk;
    // A failed verification leaves errors queued on this thread; other users
    // of BoringSSL on the worker (TLS) must not see them.
    ERR_clear_error();
  }
  return matched ? JwtStatus::kVerificationFail : JwtStatus::kKidAlgMismatch;
}

}  // namespace sluice::security
