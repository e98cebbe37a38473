#pragma once
// Certificates for the Istio TLS tests, made once per process by the openssl
// CLI in a temporary directory (removed at exit). A thin wrapper: the TLS
// suite's helpers live in another test binary.

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "support/process.hpp"

namespace sluice::test {

struct IstioPki {
  std::string dir;
  std::string ca, ca_key;              // CA1 (paths)
  std::string ca2;                     // CA2: signs nothing the tests trust
  std::string httpbin, httpbin_key;    // CA1, DNS httpbin.example.com
  std::string httpbin2, httpbin2_key;  // CA2, DNS httpbin.example.com (rotation)
  std::string nginx, nginx_key;        // CA1, DNS nginx.example.com
  std::string client,
      client_key;  // CA1, CN client, URI spiffe://cluster.local/ns/default/sa/client
  std::string stranger, stranger_key;  // CA2, CN stranger

  static std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  ~IstioPki() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
};

inline const IstioPki& istio_pki() {
  static IstioPki pki = [] {
    IstioPki p;
    char tmpl[] = "/tmp/sluice-istio-tls-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    p.dir = tmpl;
    // EC P-256 keys: quick to make, and every TLS 1.2/1.3 stack takes them.
    std::string script = R"(set -e
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
leaf() {  # name ca cn ext
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$3"
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext" 2>/dev/null
}
ca ca "Istio Test CA"
ca ca2 "Other CA"
leaf httpbin ca httpbin.example.com "subjectAltName=DNS:httpbin.example.com
extendedKeyUsage=serverAuth"
leaf httpbin2 ca2 httpbin.example.com "subjectAltName=DNS:httpbin.example.com
extendedKeyUsage=serverAuth"
leaf nginx ca nginx.example.com "subjectAltName=DNS:nginx.example.com
extendedKeyUsage=serverAuth"
leaf client ca client "subjectAltName=URI:spiffe://cluster.local/ns/default/sa/client,DNS:client.example.com
extendedKeyUsage=clientAuth"
leaf stranger ca2 stranger "extendedKeyUsage=clientAuth"
)";
    auto r = run_process("bash", {"-c", script, "pki", p.dir});
    REQUIRE_MESSAGE(r.exit_code == 0, "openssl failed: ", r.err);
    auto at = [&](const char* f) { return p.dir + "/" + f; };
    p.ca = at("ca.pem");
    p.ca_key = at("ca.key");
    p.ca2 = at("ca2.pem");
    p.httpbin = at("httpbin.pem");
    p.httpbin_key = at("httpbin.key");
    p.httpbin2 = at("httpbin2.pem");
    p.httpbin2_key = at("httpbin2.key");
    p.nginx = at("nginx.pem");
    p.nginx_key = at("nginx.key");
    p.client = at("client.pem");
    p.client_key = at("client.key");
    p.stranger = at("stranger.pem");
    p.stranger_key = at("stranger.key");
    return p;
  }();
  return pki;
}

inline std::string base64(const std::string& in) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += table[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// A kubernetes.io/tls Secret as `kubectl get secret NAME -o yaml` prints it.
inline std::string kubectl_secret(const std::string& name, const std::string& ns,
                                  const std::string& cert_path, const std::string& key_path,
                                  const std::string& ca_path = "") {
  std::string y = "apiVersion: v1\ndata:\n";
  if (!ca_path.empty()) y += "  ca.crt: " + base64(IstioPki::read(ca_path)) + "\n";
  if (!cert_path.empty()) y += "  tls.crt: " + base64(IstioPki::read(cert_path)) + "\n";
  if (!key_path.empty()) y += "  tls.key: " + base64(IstioPki::read(key_path)) + "\n";
  y += "kind: Secret\nmetadata:\n  creationTimestamp: \"2026-01-05T10:00:00Z\"\n  name: " + name +
       "\n  namespace: " + ns +
       "\n  resourceVersion: \"1234\"\n  uid: 6f1c1f36-0d0e-4a5e-9b35-1c2d3e4f5a6b\n"
       "type: kubernetes.io/tls\n";
  return y;
}

}  // namespace sluice::test
