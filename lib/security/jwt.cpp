// JWT decoding, claims, time and audience checks, token location and the
// per-request decision (lib/security/jwt.hpp). Key sets and signatures are in
// jwt_keys.cpp.
//
// JSON is parsed with nlohmann::json in its non-throwing mode
// (json::parse(text, nullptr, false)) and read with type checks before every
// access: no exception on the data path. Its parser and destructor are not
// recursive, and Claims is built breadth-first, so nesting depth costs no
// stack.

#include "security/jwt.hpp"

#include <openssl/base64.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "http/tokens.hpp"
#include "http/wire_check.hpp"

namespace sluice::security {

using json = nlohmann::json;

std::string_view jwt_status_text(JwtStatus status) {
  // Envoy's words (jwt_verify_lib's getStatusString), except kTooLarge.
  switch (status) {
    case JwtStatus::kOk:
      return "OK";
    case JwtStatus::kMissing:
      return "Jwt is missing";
    case JwtStatus::kTooLarge:
      return "Jwt is too large";
    case JwtStatus::kBadFormat:
      return "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
    case JwtStatus::kHeaderBadBase64:
      return "Jwt header is an invalid Base64url encoded";
    case JwtStatus::kHeaderBadJson:
      return "Jwt header is an invalid JSON";
    case JwtStatus::kHeaderBadAlg:
      return "Jwt header [alg] field is required and must be a string";
    case JwtStatus::kHeaderUnsupportedAlg:
      return "Jwt header [alg] is not supported";
    case JwtStatus::kHeaderBadKid:
      return "Jwt header [kid] field is not a string";
    case JwtStatus::kPayloadBadBase64:
      return "Jwt payload is an invalid Base64url encoded";
    case JwtStatus::kPayloadBadJson:
      return "Jwt payload is an invalid JSON";
    case JwtStatus::kIssNotString:
      return "Jwt payload [iss] field is not a string";
    case JwtStatus::kSubNotString:
      return "Jwt payload [sub] field is not a string";
    case JwtStatus::kIatNotInteger:
      return "Jwt payload [iat] field is not an integer";
    case JwtStatus::kIatOutOfRange:
      return "Jwt payload [iat] field is not a positive 64 bit integer";
    case JwtStatus::kNbfNotInteger:
      return "Jwt payload [nbf] field is not an integer";
    case JwtStatus::kNbfOutOfRange:
      return "Jwt payload [nbf] field is not a positive 64 bit integer";
    case JwtStatus::kExpNotInteger:
      return "Jwt payload [exp] field is not an integer";
    case JwtStatus::kExpOutOfRange:
      return "Jwt payload [exp] field is not a positive 64 bit integer";
    case JwtStatus::kJtiNotString:
      return "Jwt payload [jti] field is not a string";
    case JwtStatus::kAudNotString:
      return "Jwt payload [aud] field is not a string or string list";
    case JwtStatus::kSignatureBadBase64:
      return "Jwt signature is an invalid Base64url encoded";
    case JwtStatus::kEd25519SignatureWrongLength:
      return "Jwt ED25519 signature is wrong length";
    case JwtStatus::kUnknownIssuer:
      return "Jwt issuer is not configured";
    case JwtStatus::kAudienceNotAllowed:
      return "Audiences in Jwt are not allowed";
    case JwtStatus::kNotYetValid:
      return "Jwt not yet valid";
    case JwtStatus::kExpired:
      return "Jwt is expired";
    case JwtStatus::kVerificationFail:
      return "Jwt verification fails";
    case JwtStatus::kKidAlgMismatch:
      return "Jwks doesn't have key to match kid or alg from Jwt";
    case JwtStatus::kJwksFetchFail:
      return "Jwks remote fetch is failed";
  }
  return "Jwt verification fails";
}

// --- base64url ---------------------------------------------------------------

namespace {

constexpr std::string_view kBase64UrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<int8_t, 256> kBase64UrlValue = [] {
  std::array<int8_t, 256> t{};
  t.fill(-1);
  for (size_t i = 0; i < kBase64UrlAlphabet.size(); ++i)
    t[static_cast<unsigned char>(kBase64UrlAlphabet[i])] = static_cast<int8_t>(i);
  return t;
}();

}  // namespace

bool base64url_decode(std::string_view in, std::string& out) {
  out.clear();
  // One character alone carries 6 bits: no whole byte.
  if (in.size() % 4 == 1) return false;
  // BoringSSL decodes the standard alphabet with padding: translate.
  std::string std64;
  std64.reserve(in.size() + 3);
  for (char c : in) {
    if (kBase64UrlValue[static_cast<unsigned char>(c)] < 0) return false;
    std64.push_back(c == '-' ? '+' : c == '_' ? '/' : c);
  }
  // The bits left over in the last character must be zero: one byte string
  // has one encoding, so a signature cannot be re-encoded into a second
  // token that also verifies.
  if (size_t tail = in.size() % 4; tail != 0) {
    int last = kBase64UrlValue[static_cast<unsigned char>(in.back())];
    if ((last & (tail == 2 ? 0x0f : 0x03)) != 0) return false;
    std64.append(4 - tail, '=');
  }
  size_t cap = 0;
  if (!EVP_DecodedLength(&cap, std64.size())) return false;
  out.resize(cap);
  size_t n = 0;
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(out.data()), &n, cap,
                        reinterpret_cast<const uint8_t*>(std64.data()), std64.size())) {
    out.clear();
    return false;
  }
  out.resize(n);
  return true;
}

std::string base64url_encode(std::string_view bytes) {
  size_t cap = 0;
  if (!EVP_EncodedLength(&cap, bytes.size())) return {};
  std::string out(cap, '\0');
  size_t n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()),
                             reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  out.resize(n);
  // To the URL alphabet, without padding.
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

// --- claims ------------------------------------------------------------------

namespace {

// Envoy's text for a number claim (its JSON numbers are doubles): a
// non-negative whole number below 2^64 as an integer, anything else as
// std::to_string gives it ("1.500000", "-5.000000").
std::string envoy_number_text(double value) {
  double whole = 0;
  if (!(value >= 0) || value >= 18446744073709551616.0 || std::modf(value, &whole) != 0)
    return std::to_string(value);
  return std::to_string(static_cast<uint64_t>(value));
}

}  // namespace

// Builds Claims from a parsed document, breadth-first so that every node's
// children are adjacent and depth costs no stack.
class ClaimsBuilder {
 public:
  static void build(const json& root, Claims& claims) {
    std::vector<Claims::Node>& nodes = claims.nodes_;
    nodes.clear();
    nodes.push_back(leaf(root));
    std::vector<std::pair<uint32_t, const json*>> queue{{0, &root}};
    for (size_t head = 0; head < queue.size(); ++head) {
      auto [index, value] = queue[head];
      if (!value->is_structured()) continue;
      nodes[index].first = static_cast<uint32_t>(nodes.size());
      nodes[index].count = static_cast<uint32_t>(value->size());
      for (auto it = value->begin(); it != value->end(); ++it) {
        Claims::Node child = leaf(it.value());
        if (value->is_object()) child.key = it.key();
        nodes.push_back(std::move(child));
        if (it.value().is_structured())
          queue.emplace_back(static_cast<uint32_t>(nodes.size() - 1), &it.value());
      }
    }
  }

 private:
  static Claims::Node leaf(const json& v) {
    Claims::Node n;
    switch (v.type()) {
      case json::value_t::boolean:
        n.type = Claims::Type::kBool;
        n.text = v.get<bool>() ? "true" : "false";
        break;
      case json::value_t::number_integer:
      case json::value_t::number_unsigned:
      case json::value_t::number_float:
        n.type = Claims::Type::kNumber;
        n.number = v.get<double>();
        n.text = envoy_number_text(n.number);
        break;
      case json::value_t::string:
        n.type = Claims::Type::kString;
        n.text = v.get_ref<const std::string&>();
        break;
      case json::value_t::array:
        n.type = Claims::Type::kArray;
        break;
      case json::value_t::object:
        n.type = Claims::Type::kObject;
        break;
      default:
        n.type = Claims::Type::kNull;
        break;
    }
    return n;
  }
};

const Claims::Node& Claims::root() const {
  static const Node kEmpty;
  return nodes_.empty() ? kEmpty : nodes_.front();
}

std::span<const Claims::Node> Claims::children(const Node& node) const {
  if (node.type != Type::kArray && node.type != Type::kObject) return {};
  return std::span<const Node>(nodes_).subspan(node.first, node.count);
}

const Claims::Node* Claims::member(const Node& object, std::string_view key) const {
  if (object.type != Type::kObject) return nullptr;
  for (const Node& child : children(object))
    if (child.key == key) return &child;
  return nullptr;
}

namespace {

template <typename Path>
const Claims::Node* find_path(const Claims& claims, const Path& path) {
  const Claims::Node* node = &claims.root();
  for (std::string_view key : path) {
    node = claims.member(*node, key);
    if (node == nullptr) return nullptr;
  }
  return node;
}

}  // namespace

const Claims::Node* Claims::find(std::span<const std::string> path) const {
  return find_path(*this, path);
}

const Claims::Node* Claims::find(std::initializer_list<std::string_view> path) const {
  return find_path(*this, path);
}

const Claims::Node* Claims::find(std::string_view name) const {
  return member(root(), name);
}

std::vector<std::string_view> Claims::strings(std::span<const std::string> path) const {
  std::vector<std::string_view> out;
  const Node* node = find(path);
  if (node == nullptr) return out;
  if (node->type == Type::kString) {
    out.push_back(node->text);
  } else if (node->type == Type::kArray) {
    for (const Node& element : children(*node))
      if (element.type == Type::kString) out.push_back(element.text);
  }
  return out;
}

bool Claims::parse(std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (!doc.is_object()) {
    nodes_.clear();
    return false;
  }
  ClaimsBuilder::build(doc, *this);
  return true;
}

void Claims::split_space_delimited(std::span<const std::string> names) {
  if (nodes_.empty() || nodes_.front().type != Type::kObject) return;
  // Indices, not references: appending the words may move the nodes.
  for (uint32_t i = nodes_.front().first; i < nodes_.front().first + nodes_.front().count; ++i) {
    if (nodes_[i].type != Type::kString) continue;
    if (std::find(names.begin(), names.end(), nodes_[i].key) == names.end()) continue;
    std::string text = std::move(nodes_[i].text);
    nodes_[i].text.clear();
    nodes_[i].type = Type::kArray;
    nodes_[i].first = static_cast<uint32_t>(nodes_.size());
    uint32_t count = 0;
    std::string_view rest = text;
    while (!rest.empty()) {
      size_t space = rest.find(' ');
      std::string_view word = rest.substr(0, space);
      if (!word.empty()) {
        Node element;
        element.type = Type::kString;
        element.text = std::string(word);
        nodes_.push_back(std::move(element));
        ++count;
      }
      if (space == std::string_view::npos) break;
      rest.remove_prefix(space + 1);
    }
    nodes_[i].count = count;
  }
}

// --- decoding ----------------------------------------------------------------

namespace {

bool supported_alg(std::string_view alg) {
  // HS256/384/512 and `none` are absent on purpose: a public key set must not
  // double as a shared secret, and an unsigned token proves nothing.
  static constexpr std::array<std::string_view, 10> kAlgs = {
      "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"};
  return std::find(kAlgs.begin(), kAlgs.end(), alg) != kAlgs.end();
}

// A NumericDate claim. Envoy reads JSON numbers as doubles: negative or from
// 2^64 up is out of range, and a fraction is dropped.
JwtStatus read_seconds(const json& payload, const char* name, uint64_t& out, JwtStatus not_integer,
                       JwtStatus out_of_range) {
  auto it = payload.find(name);
  if (it == payload.end()) return JwtStatus::kOk;
  if (it->is_number_unsigned()) {
    out = it->get<uint64_t>();
    return JwtStatus::kOk;
  }
  if (it->is_number_integer()) return out_of_range;  // nlohmann keeps only negatives here
  if (it->is_number_float()) {
    double v = it->get<double>();
    if (!(v >= 0) || v >= 18446744073709551616.0) return out_of_range;
    out = static_cast<uint64_t>(v);
    return JwtStatus::kOk;
  }
  return not_integer;
}

// An optional string member: kOk when absent or a string (copied to `out`).
bool read_string(const json& object, const char* name, std::string& out) {
  auto it = object.find(name);
  if (it == object.end()) return true;
  if (!it->is_string()) return false;
  out = it->get_ref<const std::string&>();
  return true;
}

}  // namespace

JwtStatus decode_jwt(std::string_view token, Jwt& out) {
  out = Jwt{};
  if (token.size() > kMaxJwtBytes) return JwtStatus::kTooLarge;
  if (std::count(token.begin(), token.end(), '.') != 2) return JwtStatus::kBadFormat;
  size_t dot1 = token.find('.');
  size_t dot2 = token.find('.', dot1 + 1);
  std::string_view header_b64 = token.substr(0, dot1);
  std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view signature_b64 = token.substr(dot2 + 1);
  if (header_b64.empty() || payload_b64.empty() || signature_b64.empty())
    return JwtStatus::kBadFormat;

  std::string text;
  if (!base64url_decode(header_b64, text)) return JwtStatus::kHeaderBadBase64;
  json header = json::parse(text, nullptr, false);
  if (!header.is_object()) return JwtStatus::kHeaderBadJson;
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string()) return JwtStatus::kHeaderBadAlg;
  out.alg = alg->get_ref<const std::string&>();
  if (!supported_alg(out.alg)) return JwtStatus::kHeaderUnsupportedAlg;
  if (!read_string(header, "kid", out.kid)) return JwtStatus::kHeaderBadKid;
  read_string(header, "typ", out.typ);  // informational; Envoy does not check it

  if (!base64url_decode(payload_b64, text)) return JwtStatus::kPayloadBadBase64;
  json payload = json::parse(text, nullptr, false);
  if (!payload.is_object()) return JwtStatus::kPayloadBadJson;
  if (!read_string(payload, "iss", out.iss)) return JwtStatus::kIssNotString;
  if (!read_string(payload, "sub", out.sub)) return JwtStatus::kSubNotString;
  if (auto s = read_seconds(payload, "iat", out.iat, JwtStatus::kIatNotInteger,
                            JwtStatus::kIatOutOfRange);
      s != JwtStatus::kOk)
    return s;
  if (auto s = read_seconds(payload, "nbf", out.nbf, JwtStatus::kNbfNotInteger,
                            JwtStatus::kNbfOutOfRange);
      s != JwtStatus::kOk)
    return s;
  if (auto s = read_seconds(payload, "exp", out.exp, JwtStatus::kExpNotInteger,
                            JwtStatus::kExpOutOfRange);
      s != JwtStatus::kOk)
    return s;
  if (!read_string(payload, "jti", out.jti)) return JwtStatus::kJtiNotString;
  if (auto aud = payload.find("aud"); aud != payload.end()) {
    if (aud->is_string()) {
      out.audiences.push_back(aud->get_ref<const std::string&>());
    } else if (aud->is_array()) {
      for (const json& a : *aud) {
        if (!a.is_string()) return JwtStatus::kAudNotString;
        out.audiences.push_back(a.get_ref<const std::string&>());
      }
    } else {
      return JwtStatus::kAudNotString;
    }
  }
  read_string(payload, "azp", out.azp);  // request.auth.presenter when a string

  if (!base64url_decode(signature_b64, out.signature)) return JwtStatus::kSignatureBadBase64;
  if (out.alg == "EdDSA" && out.signature.size() != 64)
    return JwtStatus::kEd25519SignatureWrongLength;

  out.signed_input = std::string(token.substr(0, dot2));
  out.payload_b64 = std::string(payload_b64);
  ClaimsBuilder::build(payload, out.claims);
  return JwtStatus::kOk;
}

JwtStatus check_jwt_time(const Jwt& jwt, std::chrono::system_clock::time_point now,
                         std::chrono::seconds skew) {
  auto since_epoch = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch());
  uint64_t t = since_epoch.count() > 0 ? static_cast<uint64_t>(since_epoch.count()) : 0;
  auto s = static_cast<uint64_t>(std::max<int64_t>(skew.count(), 0));
  // Differences, not sums: a claim near 2^64 must not wrap.
  if (jwt.nbf > t && jwt.nbf - t > s) return JwtStatus::kNotYetValid;
  if (jwt.exp != 0 && t > jwt.exp && t - jwt.exp > s) return JwtStatus::kExpired;
  return JwtStatus::kOk;
}

namespace {

// jwt_verify_lib's CheckAudience: "https://api.example.com/" and
// "api.example.com" are the same audience.
std::string_view bare_audience(std::string_view a) {
  if (a.starts_with("http://")) {
    a.remove_prefix(7);
  } else if (a.starts_with("https://")) {
    a.remove_prefix(8);
  }
  if (a.ends_with('/')) a.remove_suffix(1);
  return a;
}

}  // namespace

bool jwt_audiences_allowed(std::span<const std::string> allowed,
                           std::span<const std::string> audiences) {
  if (allowed.empty()) return true;
  for (const std::string& a : audiences)
    for (const std::string& b : allowed)
      if (bare_audience(a) == bare_audience(b)) return true;
  return false;
}

// --- the 401 -------------------------------------------------------------------

Response jwt_rejection(JwtStatus status, const RequestHead& request) {
  // Envoy's buildOriginalUri with its 256-byte path cap.
  constexpr size_t kMaxRealmPath = 256;
  Response r;
  r.status = status == JwtStatus::kAudienceNotAllowed ? 403 : 401;
  std::string_view path = request.target;
  if (path.size() > kMaxRealmPath) path = path.substr(0, kMaxRealmPath);
  std::string realm = request.scheme + "://" + request.authority;
  realm.append(path);
  std::string value = "Bearer realm=\"";
  // A quoted-string: '"' and '\' escaped, so the realm cannot end early.
  for (char c : realm) {
    if (c == '"' || c == '\\') value += '\\';
    value += c;
  }
  value += '"';
  if (status != JwtStatus::kMissing) value += ", error=\"invalid_token\"";
  r.headers.add("www-authenticate", std::move(value));
  r.headers.add("content-type", "text/plain");
  r.body = std::string(jwt_status_text(status));
  return r;
}

// --- the authenticator -----------------------------------------------------------

namespace {

// RFC 4648 §5 plus '.', the characters of a compact JWT.
constexpr std::string_view kJwtChars =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

// Envoy's value_prefix extraction: after the prefix, skip what cannot be part
// of a JWT and take the run that can (`x-jwt: {"jwt": "eyJ..."}` works). With
// no such run, the whole value, for the decoder to refuse.
std::string_view token_after(std::string_view value, size_t after) {
  size_t start = value.find_first_of(kJwtChars, after);
  if (start == std::string_view::npos) return value;
  size_t end = value.find_first_not_of(kJwtChars, start);
  return value.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
}

// The first cookie named `name` in any Cookie header; surrounding double
// quotes are removed from the value, as Envoy does.
std::optional<std::string_view> find_cookie(const Headers& headers, std::string_view name) {
  for (const auto& [header, value] : headers.entries()) {
    if (!http::iequals(header, "cookie")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = http::trim(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos || http::trim(pair.substr(0, eq)) != name) continue;
      std::string_view v = pair.substr(eq + 1);
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
  return std::nullopt;
}

// Removes every `name=...` pair from the query of `target`, leaving the
// other pairs as they were; a query left empty loses its '?'.
void remove_query_param(std::string& target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string::npos) return;
  std::string_view query = std::string_view(target).substr(q + 1);
  std::string kept;
  bool removed = false;
  while (true) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    if (pair.substr(0, pair.find('=')) == name) {
      removed = true;
    } else {
      if (!kept.empty()) kept += '&';
      kept.append(pair);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  if (!removed) return;
  target.resize(q);
  if (!kept.empty()) target += '?' + kept;
}

// Istio sets Envoy's bypass_cors_preflight: a preflight carries no
// credentials, so it is never refused for a missing or bad one.
bool is_cors_preflight(const RequestHead& request) {
  if (request.method != "OPTIONS") return false;
  auto origin = request.headers.get("origin");
  auto method = request.headers.get("access-control-request-method");
  return origin && !origin->empty() && method && !method->empty();
}

// outputClaimToHeaders names nested claims with '.'. A top-level claim whose
// name holds dots ("https://example.com/role") is found first.
const Claims::Node* find_claim(const Claims& claims, std::string_view name) {
  if (const Claims::Node* top = claims.find(name)) return top;
  const Claims::Node* node = &claims.root();
  while (node != nullptr) {
    size_t dot = name.find('.');
    node = claims.member(*node, name.substr(0, dot));
    if (dot == std::string_view::npos) break;
    name.remove_prefix(dot + 1);
  }
  return node;
}

constexpr std::array<std::string_view, 2> kIstioSpaceDelimitedClaims = {"scope", "permission"};

}  // namespace

Result<Authenticator> Authenticator::compile(std::vector<JwtRule> rules, std::string_view object) {
  Authenticator a;
  auto fail = [&](std::string field, std::string message) {
    return Error{std::string(object), std::move(field), std::move(message)};
  };
  auto add_location = [&](Location::Kind kind, std::string_view name, std::string_view prefix,
                          size_t rule) {
    for (Location& l : a.locations_) {
      bool same_name =
          kind == Location::Kind::kHeader ? http::iequals(l.name, name) : l.name == name;
      if (l.kind == kind && same_name && l.prefix == prefix) {
        if (l.rules.empty() || l.rules.back() != rule) l.rules.push_back(rule);
        return;
      }
    }
    a.locations_.push_back({kind, std::string(name), std::string(prefix), {rule}});
  };
  auto add_output = [&](const std::string& header) {
    std::string lower = http::to_lower(header);
    if (std::find(a.output_headers_.begin(), a.output_headers_.end(), lower) ==
        a.output_headers_.end())
      a.output_headers_.push_back(std::move(lower));
  };
  auto check_output_name = [](std::string_view name) -> std::string {
    if (auto why = http::check_header_name(name); !why.empty()) return why;
    if (http::iequals(name, "host")) return "cannot be host (it chooses where the request goes)";
    return {};
  };

  for (size_t i = 0; i < rules.size(); ++i) {
    const JwtRule& r = rules[i];
    std::string at = fmt::format("jwt_rules[{}]", i);
    if (!r.jwks)
      return fail(at + ".jwks", "must not be null (an empty JwksSlot waits for a fetch)");
    for (size_t j = 0; j < r.from_headers.size(); ++j) {
      const JwtHeaderLocation& h = r.from_headers[j];
      std::string field = fmt::format("{}.from_headers[{}]", at, j);
      if (auto why = http::check_header_name(h.name); !why.empty())
        return fail(field + ".name", why);
      if (auto why = http::check_header_value(h.prefix); !why.empty())
        return fail(field + ".prefix", why);
      add_location(Location::Kind::kHeader, h.name, h.prefix, i);
    }
    for (size_t j = 0; j < r.from_params.size(); ++j) {
      const std::string& p = r.from_params[j];
      if (p.empty() || p.find_first_of("&=#") != std::string::npos)
        return fail(fmt::format("{}.from_params[{}]", at, j),
                    fmt::format("{} is not a query parameter name", http::quote(p)));
      add_location(Location::Kind::kParam, p, {}, i);
    }
    for (size_t j = 0; j < r.from_cookies.size(); ++j) {
      if (auto why = http::check_cookie_name(r.from_cookies[j]); !why.empty())
        return fail(fmt::format("{}.from_cookies[{}]", at, j), why);
      add_location(Location::Kind::kCookie, r.from_cookies[j], {}, i);
    }
    if (r.from_headers.empty() && r.from_params.empty() && r.from_cookies.empty()) {
      add_location(Location::Kind::kHeader, "authorization", "Bearer ", i);
      add_location(Location::Kind::kParam, "access_token", {}, i);
    }

    std::vector<std::string> outputs;  // this rule's: Istio wants each header once
    auto unique_output = [&](const std::string& header) {
      for (const std::string& o : outputs)
        if (http::iequals(o, header)) return false;
      outputs.push_back(header);
      add_output(header);
      return true;
    };
    if (!r.output_payload_to_header.empty()) {
      if (auto why = check_output_name(r.output_payload_to_header); !why.empty())
        return fail(at + ".output_payload_to_header", why);
      unique_output(r.output_payload_to_header);
    }
    for (size_t j = 0; j < r.output_claim_to_headers.size(); ++j) {
      const JwtClaimToHeader& c = r.output_claim_to_headers[j];
      std::string field = fmt::format("{}.output_claim_to_headers[{}]", at, j);
      if (auto why = check_output_name(c.header); !why.empty()) return fail(field + ".header", why);
      if (c.claim.empty()) return fail(field + ".claim", "must not be empty");
      if (!unique_output(c.header))
        return fail(field + ".header", fmt::format("header {} is already an output of this rule",
                                                   http::quote(c.header)));
    }
  }
  // Envoy's extractor order: header locations, then query parameters, then cookies.
  std::stable_sort(a.locations_.begin(), a.locations_.end(),
                   [](const Location& x, const Location& y) { return x.kind < y.kind; });
  a.rules_ = std::move(rules);
  return a;
}

std::vector<Authenticator::Found> Authenticator::extract(const RequestHead& request) const {
  std::vector<Found> found;
  for (size_t i = 0; i < locations_.size(); ++i) {
    const Location& l = locations_[i];
    switch (l.kind) {
      case Location::Kind::kHeader:
        // Every value of the header: a second token cannot hide behind the first.
        for (const auto& [name, value] : request.headers.entries()) {
          if (!http::iequals(name, l.name)) continue;
          std::string_view token = value;
          if (!l.prefix.empty()) {
            // Envoy looks for the prefix anywhere in the value, case-sensitively.
            size_t at = token.find(l.prefix);
            if (at == std::string_view::npos) continue;
            token = token_after(token, at + l.prefix.size());
          }
          found.push_back({i, token});
        }
        break;
      case Location::Kind::kParam:
        if (auto v = http::find_query_param(request.query(), l.name)) found.push_back({i, *v});
        break;
      case Location::Kind::kCookie:
        if (auto v = find_cookie(request.headers, l.name)) found.push_back({i, *v});
        break;
    }
  }
  return found;
}

JwtStatus Authenticator::check(const Jwt& jwt, const JwtRule& rule,
                               std::chrono::system_clock::time_point now) const {
  // Envoy's order: issuer, time, audiences, then the signature.
  if (!rule.issuer.empty() && jwt.iss != rule.issuer) return JwtStatus::kUnknownIssuer;
  if (auto s = check_jwt_time(jwt, now); s != JwtStatus::kOk) return s;
  if (!jwt_audiences_allowed(rule.audiences, jwt.audiences)) return JwtStatus::kAudienceNotAllowed;
  std::shared_ptr<const Jwks> keys = rule.jwks->load();
  if (!keys) return JwtStatus::kJwksFetchFail;
  return keys->verify(jwt);
}

void Authenticator::write_outputs(const Jwt& jwt, const JwtRule& rule, RequestHead& request) const {
  if (!rule.output_payload_to_header.empty())
    request.headers.set(rule.output_payload_to_header, jwt.payload_b64);
  for (const JwtClaimToHeader& c : rule.output_claim_to_headers) {
    const Claims::Node* node = find_claim(jwt.claims, c.claim);
    if (node == nullptr) continue;
    if (node->type != Claims::Type::kString && node->type != Claims::Type::kNumber &&
        node->type != Claims::Type::kBool)
      continue;  // Istio: only string, number and bool claims are copied
    // A claim is client-chosen text: one with CR, LF or another control
    // character would split the header, so it is not copied.
    if (node->text.empty() || !http::check_header_value(node->text).empty()) continue;
    request.headers.set(c.header, node->text);
  }
}

AuthnResult Authenticator::authenticate(RequestHead& request,
                                        std::chrono::system_clock::time_point now) const {
  AuthnResult result;
  for (const std::string& h : output_headers_) request.headers.remove(h);
  if (is_cors_preflight(request)) return result;
  std::vector<Found> found = extract(request);
  if (found.empty()) return result;

  // Each distinct token text is decoded once, even where several locations
  // or rules see it.
  struct Decoded {
    std::string_view text;
    JwtStatus status;
    Jwt jwt;
  };
  std::vector<Decoded> decoded;
  decoded.reserve(found.size());
  struct Accepted {
    size_t found;
    size_t decoded;
    size_t rule;
  };
  std::vector<Accepted> accepted;

  for (size_t f = 0; f < found.size(); ++f) {
    size_t d = 0;
    while (d < decoded.size() && decoded[d].text != found[f].token) ++d;
    if (d == decoded.size()) {
      Decoded entry{found[f].token, JwtStatus::kOk, {}};
      entry.status = decode_jwt(entry.text, entry.jwt);
      decoded.push_back(std::move(entry));
    }
    // A token must verify against one of the rules that read its location.
    // Of the failures, one other than "issuer not configured" says more: the
    // token was meant for that rule.
    JwtStatus why = decoded[d].status;
    bool ok = false;
    if (why == JwtStatus::kOk) {
      why = JwtStatus::kUnknownIssuer;
      for (size_t r : locations_[found[f].location].rules) {
        JwtStatus s = check(decoded[d].jwt, rules_[r], now);
        if (s == JwtStatus::kOk) {
          accepted.push_back({f, d, r});
          ok = true;
          break;
        }
        if (why == JwtStatus::kUnknownIssuer) why = s;
      }
    }
    if (!ok) {
      result.kind = AuthnResult::Kind::kRejected;
      result.status = why;
      result.response = jwt_rejection(why, request);
      return result;
    }
  }

  result.kind = AuthnResult::Kind::kVerified;
  std::vector<std::pair<size_t, size_t>> reported;  // (decoded, rule) pairs already in tokens
  for (const Accepted& a : accepted) {
    if (std::find(reported.begin(), reported.end(), std::pair{a.decoded, a.rule}) != reported.end())
      continue;
    reported.emplace_back(a.decoded, a.rule);
    const Jwt& jwt = decoded[a.decoded].jwt;
    const JwtRule& rule = rules_[a.rule];
    VerifiedJwt v;
    v.rule = a.rule;
    v.issuer = jwt.iss;
    v.subject = jwt.sub;
    if (!jwt.iss.empty() && !jwt.sub.empty()) v.principal = jwt.iss + "/" + jwt.sub;
    v.audiences = jwt.audiences;
    v.presenter = jwt.azp;
    v.claims = jwt.claims;
    std::vector<std::string> split(kIstioSpaceDelimitedClaims.begin(),
                                   kIstioSpaceDelimitedClaims.end());
    split.insert(split.end(), rule.space_delimited_claims.begin(),
                 rule.space_delimited_claims.end());
    v.claims.split_space_delimited(split);
    result.tokens.push_back(std::move(v));
  }

  // The request changes only from here: `found` and `decoded` hold views
  // into it and are not read as text again.
  for (const Accepted& a : accepted) write_outputs(decoded[a.decoded].jwt, rules_[a.rule], request);
  for (const Accepted& a : accepted) {
    if (rules_[a.rule].forward_original_token) continue;
    const Location& l = locations_[found[a.found].location];
    if (l.kind == Location::Kind::kHeader) {
      request.headers.remove(l.name);
    } else if (l.kind == Location::Kind::kParam) {
      remove_query_param(request.target, l.name);
    }
    // Cookies stay: Envoy does not remove a token from a cookie either.
  }
  return result;
}

}  // namespace sluice::security
