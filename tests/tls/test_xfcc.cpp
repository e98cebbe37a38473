// x-forwarded-client-cert and peer identity from client certificates whose
// names carry XFCC delimiters or control bytes (issue 10, item 10).
#include <doctest/doctest.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/obj.h>
#include <openssl/x509v3.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "tls/cert.hpp"
#include "tls/tls_support.hpp"

namespace test_xfcc {

using namespace sluice;
using namespace sluice::test;

namespace {

// A self-signed certificate built with BoringSSL, so names can hold bytes
// the openssl CLI will not write (CR, LF, NUL, DEL).
struct TestCert {
  X509* x509 = nullptr;
  ~TestCert() { X509_free(x509); }
};

void add_san(GENERAL_NAMES* names, int type, const std::string& value) {
  GENERAL_NAME* n = GENERAL_NAME_new();
  ASN1_IA5STRING* s = ASN1_IA5STRING_new();
  ASN1_STRING_set(s, value.data(), static_cast<int>(value.size()));
  GENERAL_NAME_set0_value(n, type, s);
  sk_GENERAL_NAME_push(names, n);
}

void make_cert(TestCert& out, const std::string& cn, const std::vector<std::string>& uris,
               const std::vector<std::string>& dns) {
  EC_KEY* ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  REQUIRE(EC_KEY_generate_key(ec));
  EVP_PKEY* key = EVP_PKEY_new();
  EVP_PKEY_assign_EC_KEY(key, ec);
  X509* x = X509_new();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const uint8_t*>(cn.data()),
                             static_cast<int>(cn.size()), -1, 0);
  X509_set_issuer_name(x, name);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  for (const auto& u : uris) add_san(names, GEN_URI, u);
  for (const auto& d : dns) add_san(names, GEN_DNS, d);
  X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, 0);
  GENERAL_NAMES_free(names);
  REQUIRE(X509_sign(x, key, EVP_sha256()));
  EVP_PKEY_free(key);
  out.x509 = x;
}

bool has_control_bytes(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// Splits one XFCC element into its key=value pairs the way a consumer
// does: `;` separates pairs except inside double quotes, where `\` escapes
// the next character. Returns false when the syntax is broken.
bool parse_xfcc(std::string_view v, std::vector<std::pair<std::string, std::string>>& out) {
  size_t i = 0;
  while (i < v.size()) {
    size_t eq = v.find('=', i);
    if (eq == std::string_view::npos) return false;
    std::string key(v.substr(i, eq - i));
    if (key.find_first_of(",;\"") != std::string::npos) return false;
    i = eq + 1;
    std::string value;
    if (i < v.size() && v[i] == '"') {
      ++i;
      bool closed = false;
      while (i < v.size()) {
        char c = v[i++];
        if (c == '\\' && i < v.size()) {
          value += v[i++];
        } else if (c == '"') {
          closed = true;
          break;
        } else {
          value += c;
        }
      }
      if (!closed) return false;
      if (i < v.size() && v[i] != ';') return false;
    } else {
      size_t end = v.find(';', i);
      if (end == std::string_view::npos) end = v.size();
      value = std::string(v.substr(i, end - i));
      if (value.find_first_of(",=\"") != std::string::npos) return false;
      i = end;
    }
    out.emplace_back(std::move(key), std::move(value));
    if (i < v.size()) ++i;  // the ';'
  }
  return true;
}

std::vector<std::string> values_of(const std::vector<std::pair<std::string, std::string>>& pairs,
                                   std::string_view key) {
  std::vector<std::string> out;
  for (const auto& [k, v] : pairs)
    if (k == key) out.push_back(v);
  return out;
}

}  // namespace

TEST_CASE("xfcc: values holding XFCC delimiters are quoted and escaped, plain ones are not") {
  TestCert cert;
  const std::string tricky = "spiffe://x/a,b;c=d\"e\\f";
  make_cert(cert, "client", {tricky}, {"plain.example.com", "x;By=spoof"});
  std::string v = tls::xfcc_value(cert.x509, nullptr);
  CHECK(v.find(";URI=\"spiffe://x/a,b;c=d\\\"e\\\\f\"") != std::string::npos);
  CHECK(v.find(";DNS=plain.example.com") != std::string::npos);
  CHECK(v.find(";DNS=\"x;By=spoof\"") != std::string::npos);
  CHECK(v.find(";Subject=\"CN=client\"") != std::string::npos);
  std::vector<std::pair<std::string, std::string>> pairs;
  REQUIRE_MESSAGE(parse_xfcc(v, pairs), v);
  CHECK(values_of(pairs, "URI") == std::vector<std::string>{tricky});
  CHECK(values_of(pairs, "DNS") == std::vector<std::string>{"plain.example.com", "x;By=spoof"});
  CHECK(values_of(pairs, "By").empty());
  CHECK(values_of(pairs, "Hash").size() == 1);
  // The identity is the name itself, unescaped.
  CHECK(tls::peer_identity(tls::certificate_names(cert.x509)) == tricky);
}

TEST_CASE("xfcc: names with control bytes never reach the header or the identity") {
  for (std::string bad :
       {std::string("spiffe://x/a\r\nx-injected: 1"), std::string("a\nb"),
        std::string("nul\0byte", 8), std::string("tab\tx"), std::string("del\x7f")}) {
    CAPTURE(bad);
    TestCert cert;
    make_cert(cert, "client\r\nx-evil: 1", {bad, "spiffe://x/good"}, {bad, "ok.example.com"});
    auto names = tls::certificate_names(cert.x509);
    CHECK(names.uris == std::vector<std::string>{"spiffe://x/good"});
    CHECK(names.dns == std::vector<std::string>{"ok.example.com"});
    CHECK_FALSE(has_control_bytes(names.subject));
    CHECK(tls::peer_identity(names) == "spiffe://x/good");
    std::string v = tls::xfcc_value(cert.x509, nullptr);
    CHECK_FALSE(has_control_bytes(v));
    std::vector<std::pair<std::string, std::string>> pairs;
    REQUIRE_MESSAGE(parse_xfcc(v, pairs), v);
    CHECK(values_of(pairs, "URI") == std::vector<std::string>{"spiffe://x/good"});
    CHECK(values_of(pairs, "DNS") == std::vector<std::string>{"ok.example.com"});
  }
  // Only a bad name: no URI SAN left, so the identity falls back to DNS,
  // then to the subject, never to the bad bytes.
  TestCert only_bad;
  make_cert(only_bad, "fallback", {"bad\r\n"}, {});
  CHECK(tls::peer_identity(tls::certificate_names(only_bad.x509)) == "CN=fallback");
  CHECK(tls::xfcc_value(only_bad.x509, nullptr).find(";URI=;") == std::string::npos);
  CHECK(tls::xfcc_value(only_bad.x509, nullptr).ends_with(";URI="));
}

namespace {

class IdentityHooks : public RecordingHooks {
 public:
  std::optional<Response> on_request(RequestContext& ctx) override {
    std::lock_guard lock(mutex_);
    identities_.emplace_back(ctx.peer_identity);
    return std::nullopt;
  }
  std::vector<std::string> identities() const {
    std::lock_guard lock(mutex_);
    return identities_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> identities_;
};

}  // namespace

TEST_CASE("xfcc through the gateway: a client SAN holding XFCC delimiters stays one quoted value") {
  const Pki& p = pki();
  // openssl's config syntax: `\"` is a quote, `\\` a backslash.
  KeyPair client = make_leaf_cert("tricky", "/O=a\"b,c;d/CN=we=ird",
                                  "subjectAltName=@alt\nbasicConstraints=CA:FALSE\n[alt]\n"
                                  "URI.1=spiffe://x/a,b;c=d\\\"e\\\\f\n"
                                  "DNS.1=x;By=spoof,DNS=evil.example.com\n"
                                  "DNS.2=ok.example.com\n",
                                  "ca1", 301);
  FakeUpstream up("backend");
  auto hooks = std::make_shared<IdentityHooks>();
  auto cfg = single_upstream_config(up.port());
  TlsServer s;
  s.sni_hosts = {"httpbin.example.com"};
  s.mode = TlsServer::Mode::mutual;
  s.certificate_chain = p.httpbin.cert.text;
  s.private_key = p.httpbin.key.text;
  s.ca_certificates = p.ca1.text;
  cfg.listeners[0].tls_servers = {s};
  TestGateway gw(cfg, 1, hooks);

  TlsClient c(gw.port(), {.sni = "httpbin.example.com", .ca = &p.ca1, .cert = &client});
  REQUIRE_MESSAGE(c.handshake(), c.error());
  auto r = c.get("/", "httpbin.example.com");
  REQUIRE(r);
  CHECK(r->status == 200);
  REQUIRE(up.wait_for_requests(1));
  auto req = *up.last_request();
  REQUIRE(req.header_count("x-forwarded-client-cert") == 1);
  std::string xfcc = *req.header("x-forwarded-client-cert");
  CAPTURE(xfcc);
  std::vector<std::pair<std::string, std::string>> pairs;
  REQUIRE(parse_xfcc(xfcc, pairs));
  CHECK(values_of(pairs, "URI") == std::vector<std::string>{"spiffe://x/a,b;c=d\"e\\f"});
  CHECK(values_of(pairs, "DNS") ==
        std::vector<std::string>{"x;By=spoof,DNS=evil.example.com", "ok.example.com"});
  CHECK(values_of(pairs, "By").empty());
  CHECK(values_of(pairs, "Hash").size() == 1);
  auto subject = values_of(pairs, "Subject");
  REQUIRE(subject.size() == 1);
  // RFC 2253 text, its own escapes kept: the subject survives as one value.
  CHECK(subject[0].find("CN=we") == 0);
  CHECK(subject[0].find("a\\\"b\\,c\\;d") != std::string::npos);
  // One element: no unquoted comma starts a second one.
  CHECK(pairs.size() == 5);
  auto ids = hooks->identities();
  REQUIRE(ids.size() == 1);
  CHECK(ids[0] == "spiffe://x/a,b;c=d\"e\\f");
}

}  // namespace test_xfcc
