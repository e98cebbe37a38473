// libFuzzer target: certificate names and the x-forwarded-client-cert value
// (lib/tls/cert.hpp). Builds a peer and a local certificate with BoringSSL
// from fuzzed subject and SAN strings, signs them, round-trips them through
// DER as a handshake would, and formats them. Checks:
//   - no control byte (CR, LF, NUL, any C0, DEL) in the header value or in
//     any name certificate_names() reports;
//   - the value parses back (Envoy's format: `;`-separated Key=Value pairs,
//     values double-quoted with `\` escapes when needed) into exactly one
//     element whose keys are By, Hash, Subject, URI and DNS, and whose URI,
//     DNS and By values are exactly the reported names: a SAN cannot add
//     keys or elements;
//   - peer_identity() is the first URI, else the first DNS, else the subject.

#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/bytestring.h>
#include <openssl/curve25519.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "tls/cert.hpp"

namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

EVP_PKEY* signing_key() {
  // A fixed Ed25519 key: signing is cheap and the input decides the rest.
  static EVP_PKEY* key = [] {
    uint8_t seed[32] = {1, 2, 3, 4};
    return EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, sizeof(seed));
  }();
  return key;
}

// Subject entries and SANs from the input; types: 0 URI, 1 DNS, 2 email, 3 IP.
X509Ptr make_certificate(FuzzedDataProvider& in) {
  X509Ptr x(X509_new());
  X509_set_version(x.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 3600);
  X509_NAME* name = X509_get_subject_name(x.get());
  static const int kNids[] = {NID_commonName, NID_organizationName, NID_organizationalUnitName,
                              NID_countryName};
  static const int kTypes[] = {V_ASN1_UTF8STRING, V_ASN1_PRINTABLESTRING, V_ASN1_IA5STRING,
                               V_ASN1_T61STRING};
  for (int n = in.ConsumeIntegralInRange(0, 3); n > 0; --n) {
    std::string v = in.ConsumeRandomLengthString(40);
    int nid = kNids[in.ConsumeIntegralInRange(0, 3)];
    int type = kTypes[in.ConsumeIntegralInRange(0, 3)];
    X509_NAME_add_entry_by_NID(name, nid, type, reinterpret_cast<const uint8_t*>(v.data()),
                               static_cast<int>(v.size()), -1, 0);
  }
  X509_set_issuer_name(x.get(), name);
  X509_set_pubkey(x.get(), signing_key());

  GENERAL_NAMES* sans = sk_GENERAL_NAME_new_null();
  for (int n = in.ConsumeIntegralInRange(0, 4); n > 0; --n) {
    int type = in.ConsumeIntegralInRange(0, 3);
    std::string v = in.ConsumeRandomLengthString(40);
    GENERAL_NAME* g = GENERAL_NAME_new();
    if (type == 3) {
      v.resize(in.ConsumeBool() ? 4 : 16, '\0');
      ASN1_OCTET_STRING* ip = ASN1_OCTET_STRING_new();
      ASN1_OCTET_STRING_set(ip, reinterpret_cast<const uint8_t*>(v.data()),
                            static_cast<int>(v.size()));
      GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
    } else {
      ASN1_IA5STRING* s = ASN1_IA5STRING_new();
      ASN1_STRING_set(s, v.data(), static_cast<int>(v.size()));
      GENERAL_NAME_set0_value(g, type == 0 ? GEN_URI : type == 1 ? GEN_DNS : GEN_EMAIL, s);
    }
    sk_GENERAL_NAME_push(sans, g);
  }
  if (sk_GENERAL_NAME_num(sans) > 0)
    X509_add1_ext_i2d(x.get(), NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT);
  GENERAL_NAMES_free(sans);
  if (!X509_sign(x.get(), signing_key(), nullptr)) return nullptr;

  // What a handshake hands over is a parsed DER certificate.
  uint8_t* der = nullptr;
  int len = i2d_X509(x.get(), &der);
  if (len <= 0) return nullptr;
  const uint8_t* p = der;
  X509Ptr parsed(d2i_X509(nullptr, &p, len));
  OPENSSL_free(der);
  return parsed;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

// Parses x-forwarded-client-cert: elements by ',' and pairs by ';' outside
// quotes; a quoted value ends at an unescaped '"'. nullopt if malformed.
std::optional<std::vector<Pairs>> parse_xfcc(std::string_view s) {
  std::vector<Pairs> elements(1);
  size_t i = 0;
  for (;;) {
    size_t eq = s.find('=', i);
    if (eq == std::string_view::npos) return std::nullopt;
    std::string key(s.substr(i, eq - i));
    if (key.empty() || key.find_first_of(",;\"") != std::string::npos) return std::nullopt;
    i = eq + 1;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      for (;;) {
        if (i >= s.size()) return std::nullopt;  // unterminated
        if (s[i] == '"') break;
        if (s[i] == '\\') {
          if (++i >= s.size()) return std::nullopt;
        }
        value += s[i++];
      }
      ++i;
      if (i < s.size() && s[i] != ';' && s[i] != ',') return std::nullopt;
    } else {
      size_t end = s.find_first_of(";,", i);
      if (end == std::string_view::npos) end = s.size();
      value = s.substr(i, end - i);
      if (value.find_first_of("=\"") != std::string::npos) return std::nullopt;
      i = end;
    }
    elements.back().emplace_back(std::move(key), std::move(value));
    if (i >= s.size()) return elements;
    if (s[i] == ',') elements.emplace_back();
    ++i;
  }
}

std::vector<std::string> values_of(const Pairs& pairs, std::string_view key) {
  std::vector<std::string> out;
  for (const auto& [k, v] : pairs)
    if (k == key) out.push_back(v);
  return out;
}

void check_names(const sluice::tls::CertificateNames& names) {
  for (const auto* list : {&names.uris, &names.dns, &names.others})
    for (const auto& n : *list)
      FUZZ_CHECK(!has_control(n), "certificate name with a control byte reported");
  FUZZ_CHECK(!has_control(names.subject), "subject with a control byte reported");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  X509Ptr peer = make_certificate(in);
  X509Ptr local = in.ConsumeBool() ? make_certificate(in) : nullptr;
  if (!peer) return 0;

  auto names = sluice::tls::certificate_names(peer.get());
  check_names(names);
  std::string identity = sluice::tls::peer_identity(names);
  std::string want = !names.uris.empty()  ? names.uris.front()
                     : !names.dns.empty() ? names.dns.front()
                                          : names.subject;
  FUZZ_CHECK(identity == want, "peer_identity is not the first URI, DNS or the subject");

  std::string xfcc = sluice::tls::xfcc_value(peer.get(), local.get());
  for (unsigned char c : xfcc)
    FUZZ_CHECK(c >= 0x20 && c != 0x7f, "x-forwarded-client-cert holds byte 0x%02x", c);

  auto parsed = parse_xfcc(xfcc);
  if (!parsed) {
    std::fprintf(stderr, "\nxfcc: ");
    sluice::fuzz::print_escaped(xfcc, 2000);
    FUZZ_CHECK(parsed, "x-forwarded-client-cert does not parse");
  }
  FUZZ_CHECK(parsed->size() == 1, "one certificate made %zu XFCC elements", parsed->size());
  const Pairs& pairs = parsed->front();
  for (const auto& [k, v] : pairs)
    FUZZ_CHECK(k == "By" || k == "Hash" || k == "Subject" || k == "URI" || k == "DNS",
               "unexpected XFCC key '%s'", k.c_str());
  auto hash = values_of(pairs, "Hash");
  FUZZ_CHECK(hash.size() == 1 && hash[0] == sluice::tls::sha256_hex(peer.get()),
             "Hash missing, repeated or wrong");
  auto subject = values_of(pairs, "Subject");
  FUZZ_CHECK(subject.size() == 1 && subject[0] == names.subject, "Subject does not round-trip");
  auto uris = values_of(pairs, "URI");
  if (names.uris.empty())
    FUZZ_CHECK(uris.size() == 1 && uris[0].empty(), "expected one empty URI");
  else
    FUZZ_CHECK(uris == names.uris, "URI values do not round-trip");
  FUZZ_CHECK(values_of(pairs, "DNS") == names.dns, "DNS values do not round-trip");
  if (local) {
    auto mine = sluice::tls::certificate_names(local.get());
    check_names(mine);
    auto by = values_of(pairs, "By");
    if (mine.uris.empty())
      FUZZ_CHECK(by.empty(), "By without a local URI SAN");
    else
      FUZZ_CHECK(by == mine.uris || (by.size() == 1 && by[0] == mine.uris.front()),
                 "By values are not the local URI SANs");
  } else {
    FUZZ_CHECK(values_of(pairs, "By").empty(), "By without a local certificate");
  }
  return 0;
}
