// Istio's tasks "Authentication Policy: end-user authentication" and
// "Authorization with JWT" at the ingress, with their YAML unchanged: the
// jwksUri names raw.githubusercontent.com, which JwksFetchOptions::resolve
// points at an HTTPS server in this process (a certificate for that name
// from the test CA), as curl --resolve would.

#include <doctest/doctest.h>

#include <asio/read_until.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <thread>

#include "istio/istio.hpp"
#include "support/fake_upstream.hpp"
#include "support/jwt_signer.hpp"
#include "support/raw_client.hpp"
#include "tls/cert.hpp"
#include "tls/tls_support.hpp"

namespace test_jwks_istio_task {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kJwksUri =
    "https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/"
    "jwks.json";

// The tasks' YAML, as the task pages show it, in front of httpbin.
std::string task_yaml(uint16_t httpbin_port, const std::string& policy) {
  return R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: ["*"]
  gateways: [httpbin-gateway]
  http: [{route: [{destination: {host: httpbin, port: {number: 8000}}}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  ports: [{number: 8000, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: )" +
         std::to_string(httpbin_port) + R"(}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: "jwt-example"
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwksUri: ")" +
         kJwksUri + R"("
---
)" + policy;
}

struct Served {
  std::unique_ptr<Gateway> gateway;
  std::string listener;
  uint16_t port() const { return gateway->port(listener); }
  ~Served() {
    if (gateway) gateway->stop();
  }
};

void serve(Served& s, const std::string& yaml, uint16_t jwks_port) {
  istio::TranslateOptions t;
  t.bind_address = "127.0.0.1";
  t.ephemeral_ports = true;
  auto loaded = istio::load_string(yaml, t);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  s.listener = loaded->config.listeners.at(0).name;
  GatewayOptions o;
  o.workers = 1;
  o.jwks.ca_certificates = pki().ca1.text;
  o.jwks.resolve["raw.githubusercontent.com:443"] = "127.0.0.1:" + std::to_string(jwks_port);
  s.gateway = std::make_unique<Gateway>(std::move(o));
  Status st = s.gateway->apply(std::move(loaded->config));
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  s.gateway->start();
  REQUIRE(s.gateway->wait_jwks_fetched(10s));
  auto status = s.gateway->jwks_status();
  REQUIRE(status.size() == 1);
  CHECK_MESSAGE(status[0].state == JwksFetchStatus::State::ok, status[0].error);
}

int get(uint16_t port, const std::string& token, const std::string& path = "/headers") {
  RawClient c(port);
  HeaderList headers;
  if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
  REQUIRE(c.send(make_request("GET", path, "httpbin.example.com", headers)));
  auto r = c.read_response();
  REQUIRE(r);
  return r->status;
}

const KeyPair& github_cert() {
  static const KeyPair cert =
      make_leaf_cert("raw-github", "/CN=raw.githubusercontent.com",
                     "subjectAltName=DNS:raw.githubusercontent.com\n", "ca1", 4201);
  return cert;
}

std::string token(const JwtSigner& signer, const std::string& extra = "") {
  return signer.sign(R"({"iss":"testing@secure.istio.io","sub":"testing@secure.istio.io","exp":)" +
                     std::to_string(unix_now() + 3600) + extra + "}");
}

}  // namespace

TEST_CASE("istio task end-user authentication at the ingress, jwksUri unchanged") {
  FakeUpstream httpbin("httpbin");
  JwtSigner signer;
  HttpsDocument jwks(github_cert(), signer.jwks());
  Served gw;
  serve(gw, task_yaml(httpbin.port(), R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "frontend-ingress"
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  action: DENY
  rules:
  - from:
    - source:
        notRequestPrincipals: ["*"]
)"),
        jwks.port());
  // The fetch asked the URL's host and path.
  CHECK(jwks.last_head().starts_with(
      "GET /istio/istio/release-1.24/security/tools/jwt/samples/jwks.json HTTP/1.1\r\n"));
  CHECK(jwks.last_head().find("raw.githubusercontent.com") != std::string::npos);
  CHECK(get(gw.port(), token(signer)) == 200);
  CHECK(get(gw.port(), "") == 403);          // no token: no principal, denied
  CHECK(get(gw.port(), "deadbeef") == 401);  // an invalid token
  JwtSigner other;
  CHECK(get(gw.port(), token(other)) == 401);  // another key
  CHECK(httpbin.request_count() == 1);
}

TEST_CASE("istio task authorization with JWT claims at the ingress, jwksUri unchanged") {
  FakeUpstream httpbin("httpbin");
  JwtSigner signer;
  HttpsDocument jwks(github_cert(), signer.jwks());
  Served gw;
  serve(gw, task_yaml(httpbin.port(), R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  action: ALLOW
  rules:
  - from:
    - source:
       requestPrincipals: ["testing@secure.istio.io/testing@secure.istio.io"]
    when:
    - key: request.auth.claims[groups]
      values: ["group1"]
)"),
        jwks.port());
  CHECK(get(gw.port(), token(signer, R"(,"groups":["group1","group2"])")) == 200);
  CHECK(get(gw.port(), token(signer)) == 403);  // no groups claim
  CHECK(get(gw.port(), token(signer, R"(,"groups":["group2"])")) == 403);
  CHECK(get(gw.port(), "") == 403);
  CHECK(httpbin.request_count() == 1);
}

}  // namespace test_jwks_istio_task
