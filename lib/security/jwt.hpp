#pragma once
// JWT authentication, Istio's RequestAuthentication as Envoy's jwt_authn
// filter runs it: JWKS parsing, token decoding, signature and claim checks,
// token location and the per-request decision. Pure: no I/O, the caller
// passes the time. BoringSSL and the JSON library stay in the .cpp files.
//
// Errors a client can cause are JwtStatus values whose text is Envoy's 401
// body; configuration errors are sluice::Error values naming the field.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/request.hpp"
#include "sluice/result.hpp"
#include "sluice/security.hpp"

namespace sluice::security {

// A token longer than this is refused before it is decoded (Envoy has no
// such bound; ours keeps decoding work per request small and fixed).
inline constexpr size_t kMaxJwtBytes = 8 * 1024;

// Envoy's default clock skew for `exp` and `nbf`; Istio does not change it.
inline constexpr std::chrono::seconds kJwtClockSkew{60};

// RFC 7518 §3.3: RSA keys for RS* and PS* must be at least 2048 bits. The
// upper bound keeps one verification cheap (BoringSSL's own limit).
inline constexpr unsigned kMinRsaBits = 2048;
inline constexpr unsigned kMaxRsaBits = 16384;

// Why a token was refused (or kOk). text() gives Envoy's words, which are the
// 401 body; the names follow Envoy's jwt_verify_lib statuses.
enum class JwtStatus : uint8_t {
  kOk,
  kMissing,
  kTooLarge,  // sluice's own: longer than kMaxJwtBytes
  kBadFormat,
  kHeaderBadBase64,
  kHeaderBadJson,
  kHeaderBadAlg,
  kHeaderUnsupportedAlg,  // also `none` and HS256/384/512: never accepted
  kHeaderBadKid,
  kPayloadBadBase64,
  kPayloadBadJson,
  kIssNotString,
  kSubNotString,
  kIatNotInteger,
  kIatOutOfRange,
  kNbfNotInteger,
  kNbfOutOfRange,
  kExpNotInteger,
  kExpOutOfRange,
  kJtiNotString,
  kAudNotString,
  kSignatureBadBase64,
  kEd25519SignatureWrongLength,
  kUnknownIssuer,
  kAudienceNotAllowed,
  kNotYetValid,
  kExpired,
  kVerificationFail,
  kKidAlgMismatch,
  kJwksFetchFail,  // the rule has no key set yet (jwksUri not fetched)
};

std::string_view jwt_status_text(JwtStatus status);

// Base64url (RFC 4648 §5) as JWS compact form uses it: no padding, only the
// URL-safe alphabet, no length that leaves a partial byte and no stray bits
// in the last character. Returns false (and leaves `out` unspecified) on any
// of those.
bool base64url_decode(std::string_view in, std::string& out);
std::string base64url_encode(std::string_view bytes);

// A JSON document (a token's payload) as a tree of nodes in one vector, with
// each node's children next to each other. Read by AuthorizationPolicy's
// `request.auth.claims[...]` and by outputClaimToHeaders.
class Claims {
 public:
  enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  struct Node {
    Type type = Type::kNull;
    std::string key;     // member name in the parent object; empty in an array
    std::string text;    // kString: the value; kNumber: Envoy's text form; kBool: true/false
    double number = 0;   // kNumber
    uint32_t first = 0;  // kArray, kObject: children are nodes [first, first + count)
    uint32_t count = 0;
  };

  // The payload object itself; a null node when the claims are empty.
  const Node& root() const;
  std::span<const Node> children(const Node& node) const;
  // The member `key` of an object node; nullptr when absent or not an object.
  const Node* member(const Node& object, std::string_view key) const;
  // The claim at `path` (member names from the top: {"sub"}, {"address",
  // "country"}); nullptr when absent. An empty path gives the root.
  const Node* find(std::span<const std::string> path) const;
  const Node* find(std::initializer_list<std::string_view> path) const;
  // A top-level claim.
  const Node* find(std::string_view name) const;
  // Istio's request.auth.claims[...] values: a string claim is one value, an
  // array gives its string elements, any other type none.
  std::vector<std::string_view> strings(std::span<const std::string> path) const;

  // Parses a JSON object; false (and empty claims) when `json` is not one.
  bool parse(std::string_view json);
  // Envoy's NormalizePayload: each named top-level string claim becomes an
  // array of its space-separated words (Istio: `scope`, `permission`).
  void split_space_delimited(std::span<const std::string> names);

 private:
  friend class ClaimsBuilder;
  std::vector<Node> nodes_;
};

// A decoded token. Strings are copies: the token may live in a request the
// caller changes afterwards.
struct Jwt {
  std::string alg;
  std::string kid;
  std::string typ;
  std::string signed_input;  // "<header>.<payload>" as in the token: what the signature covers
  std::string payload_b64;   // the payload segment as in the token
  std::string signature;     // decoded
  std::string iss;
  std::string sub;
  std::string azp;
  std::string jti;
  std::vector<std::string> audiences;  // `aud` as a string or an array of strings
  uint64_t exp = 0;  // seconds since the epoch; 0 when absent (floats are truncated)
  uint64_t nbf = 0;
  uint64_t iat = 0;
  Claims claims;  // the payload as sent
};

// Decodes a compact-form token: three base64url segments, a JSON object
// header with a supported `alg`, a JSON object payload whose registered
// claims have the right types, and a base64url signature. Checks no
// signature, time or audience. Envoy's order: the first problem is reported.
JwtStatus decode_jwt(std::string_view token, Jwt& out);

// `exp` and `nbf` against `now`, `skew` either way (Envoy: not yet valid when
// now + skew < nbf; expired when now > exp + skew; exp 0 never expires).
JwtStatus check_jwt_time(const Jwt& jwt, std::chrono::system_clock::time_point now,
                         std::chrono::seconds skew = kJwtClockSkew);

// Envoy's audience check: allowed when `allowed` is empty or shares a value
// with the token's audiences, both compared without an http:// or https://
// scheme and a trailing '/'.
bool jwt_audiences_allowed(std::span<const std::string> allowed,
                           std::span<const std::string> audiences);

// A JSON Web Key Set (RFC 7517) reduced to the keys sluice can verify with:
// RSA (RS256/384/512, PS256/384/512), EC P-256/P-384/P-521 (ES256/384/512)
// and OKP Ed25519 (EdDSA). Immutable once parsed; share it by shared_ptr.
class Jwks {
 public:
  struct KeyInfo {
    std::string kid;  // empty when the key has none: it matches any token kid
    std::string kty;  // RSA, EC, OKP
    std::string alg;  // empty when the key names none: any compatible alg
    std::string crv;  // EC and OKP: P-256, P-384, P-521, Ed25519
  };

  // Keys that are unusable (unknown kty or alg, HMAC `oct` keys, `use` other
  // than "sig", bad or missing fields, weak RSA) are skipped and listed in
  // skipped(); a set with no usable key is an error saying why each failed.
  static Result<std::shared_ptr<const Jwks>> parse(std::string_view json);

  size_t size() const { return info_.size(); }
  const KeyInfo& info(size_t i) const { return info_[i]; }
  // One line per skipped key: "keys[2]: [kty] is not supported in [keys]".
  const std::vector<std::string>& skipped() const { return skipped_; }

  // The token's signature against the keys that fit it: a key whose kid
  // differs from a token kid, whose alg differs from the token's, or whose
  // type cannot make that alg is passed over. kKidAlgMismatch when none fits,
  // kVerificationFail when some fit and none verifies.
  JwtStatus verify(const Jwt& jwt) const;

  ~Jwks();
  Jwks(const Jwks&) = delete;
  Jwks& operator=(const Jwks&) = delete;

  struct Key;  // BoringSSL key material, defined (and used) only in jwt_keys.cpp

 private:
  Jwks();
  std::vector<KeyInfo> info_;
  std::vector<std::unique_ptr<Key>> keys_;
  std::vector<std::string> skipped_;
};

// The key set of one rule, replaceable while requests read it: a JWKS
// fetcher stores each new set, each verification loads the current one.
// Empty until the first set arrives (tokens then fail with kJwksFetchFail).
// A mutex held only to copy the pointer: GCC 12's atomic<shared_ptr> trips
// ThreadSanitizer, and one signature check costs a thousand times more.
class JwksSlot {
 public:
  JwksSlot() = default;
  explicit JwksSlot(std::shared_ptr<const Jwks> jwks) : jwks_(std::move(jwks)) {}
  std::shared_ptr<const Jwks> load() const {
    std::lock_guard lock(mutex_);
    return jwks_;
  }
  void store(std::shared_ptr<const Jwks> jwks) {
    std::lock_guard lock(mutex_);
    jwks_.swap(jwks);  // the old set is released outside the lock, with `jwks`
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Jwks> jwks_;
};

using sluice::JwtClaimToHeader;
using sluice::JwtHeaderLocation;

// Istio's JWTRule, with the key set resolved (inline `jwks` parsed, or a slot
// a fetcher fills for `jwksUri`).
struct JwtRule {
  std::string issuer;  // empty: any issuer (Envoy's meaning)
  std::vector<std::string> audiences;
  // Copies of a rule share this slot, so a fetcher holding it reaches the
  // compiled Authenticator.
  std::shared_ptr<JwksSlot> jwks = std::make_shared<JwksSlot>();
  // A remote key set: the URL the gateway's fetcher fills `jwks` from, or
  // (openid_discovery) the issuer's discovery document naming it. Empty:
  // the set is inline.
  std::string jwks_uri;
  bool openid_discovery = false;
  std::chrono::milliseconds fetch_timeout{5'000};
  // No location at all means Istio's defaults: `Authorization: Bearer <token>`
  // and the `access_token` query parameter.
  std::vector<JwtHeaderLocation> from_headers;
  std::vector<std::string> from_params;
  std::vector<std::string> from_cookies;
  bool forward_original_token = false;
  std::string output_payload_to_header;
  std::vector<JwtClaimToHeader> output_claim_to_headers;
  // Claims split on spaces for authorization, besides Istio's `scope` and
  // `permission` (Istio's spaceDelimitedClaims).
  std::vector<std::string> space_delimited_claims;
};

// A token that passed every check, as AuthorizationPolicy reads it.
struct VerifiedJwt {
  size_t rule = 0;  // index of the rule that verified it
  std::string issuer;
  std::string subject;
  std::string principal;  // "iss/sub" (request.auth.principal); empty without iss or sub
  std::vector<std::string> audiences;  // request.auth.audiences
  std::string presenter;               // `azp` (request.auth.presenter)
  Claims claims;                       // request.auth.claims, space-delimited claims split
};

struct AuthnResult {
  enum class Kind : uint8_t {
    kNoToken,   // no token at any location: no principal, not an error
    kVerified,  // every token found verified; tokens[0] gives the principal
    kRejected,  // send `response`
  };
  Kind kind = Kind::kNoToken;
  JwtStatus status = JwtStatus::kMissing;  // kRejected: why
  std::vector<VerifiedJwt> tokens;
  Response response;

  const VerifiedJwt* principal() const { return tokens.empty() ? nullptr : &tokens.front(); }
};

// The local reply Envoy's jwt_authn filter sends: 401 (403 for
// kAudienceNotAllowed) with the status text as body and
// `www-authenticate: Bearer realm="<scheme>://<authority><path>"` (path
// cut at 256 bytes), plus `, error="invalid_token"` unless kMissing.
Response jwt_rejection(JwtStatus status, const RequestHead& request);

// The rules of the RequestAuthentication policies that apply to a gateway,
// compiled. Immutable but for the key slots; share it between workers.
class Authenticator {
 public:
  // `object` names the policy in errors ("RequestAuthentication jwt-example");
  // fields read "jwt_rules[1].from_headers[0].name: ...".
  static Result<Authenticator> compile(std::vector<JwtRule> rules, std::string_view object = {});

  // Checks the tokens of `request`, in Envoy's way with Istio's requirement
  // (each rule's token optional): every token found must verify against a
  // rule that reads that location and names its issuer; a request without
  // tokens passes without a principal. Headers the rules output are removed
  // from every request first, so a client cannot forge them. On success the
  // tokens are removed (header locations: the header; query parameters: the
  // parameter) unless the rule forwards them, and the rules' output headers
  // are written. CORS preflights pass untouched, as Istio configures Envoy.
  AuthnResult authenticate(RequestHead& request, std::chrono::system_clock::time_point now) const;

  const std::vector<JwtRule>& rules() const { return rules_; }

 private:
  struct Location {
    enum class Kind : uint8_t { kHeader, kParam, kCookie };
    Kind kind;
    std::string name;
    std::string prefix;         // kHeader
    std::vector<size_t> rules;  // rules that read here, in order
  };
  struct Found {
    size_t location;
    std::string_view token;
  };

  std::vector<Found> extract(const RequestHead& request) const;
  JwtStatus check(const Jwt& jwt, const JwtRule& rule,
                  std::chrono::system_clock::time_point now) const;
  void write_outputs(const Jwt& jwt, const JwtRule& rule, RequestHead& request) const;

  std::vector<JwtRule> rules_;
  std::vector<Location> locations_;
  std::vector<std::string> output_headers_;  // every rule's, removed from each request
};

}  // namespace sluice::security
