// RequestAuthentication and AuthorizationPolicy as Istio YAML (issue 12):
// Istio's security tasks at the ingress, loaded by lib/istio and served by a
// real Gateway on 127.0.0.1 port 0; which policies apply (selector,
// targetRef, namespaces); errors naming the resource and field.

#include <doctest/doctest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include <fmt/format.h>

#include "istio_test_util.hpp"
#include "sluice/sluice.hpp"
#include "support/fake_upstream.hpp"
#include "support/jwt_signer.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"

namespace security_yaml_test {

using namespace sluice;
using namespace sluice::test;

namespace {

// Gateway "httpbin-gateway" (namespace default) on port 80 for "*", routing
// everything to the ServiceEntry "httpbin" at `port`; `more` is appended.
std::string ingress_yaml(uint16_t port, const std::string& more) {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: httpbin-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: ["*"]
  gateways: [httpbin-gateway]
  http: [{{route: [{{destination: {{host: httpbin}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  ports: [{{number: 80, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
{})",
                     port, more);
}

istio::MeshSettings mesh(const std::string& yaml) {
  auto m = istio::parse_mesh_config(yaml, "mesh.yaml");
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? std::string() : m.error().to_string()));
  return *m;
}

istio::LoadedConfig load(const std::string& yaml, const istio::MeshSettings& mesh_settings = {},
                         istio::TranslateOptions options = {}) {
  options.bind_address = "127.0.0.1";
  options.ephemeral_ports = true;
  istio::apply_mesh(mesh_settings, options);
  auto loaded = istio::load_string(yaml, options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  istio::apply_mesh(mesh_settings, loaded->config);
  return std::move(loaded).value();
}

std::string load_fails(const std::string& yaml, istio::TranslateOptions options = {}) {
  auto loaded = istio::load_string(yaml, options);
  REQUIRE_MESSAGE(!loaded.ok(), "expected the configuration to be rejected");
  return loaded.error().to_string();
}

class Ingress {
 public:
  explicit Ingress(istio::LoadedConfig loaded) {
    listener_ = loaded.config.listeners.at(0).name;
    GatewayOptions go;
    go.workers = 1;
    gateway_ = std::make_unique<Gateway>(go);
    Status st = gateway_->apply(std::move(loaded.config));
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
    gateway_->start();
    REQUIRE(port() != 0);
  }
  ~Ingress() { gateway_->stop(); }
  uint16_t port() const { return gateway_->port(listener_); }

 private:
  std::string listener_;
  std::unique_ptr<Gateway> gateway_;
};

HttpResponse send(uint16_t port, std::string_view method, std::string_view target,
                  const HeaderList& headers = {}) {
  RawClient c(port);
  REQUIRE(c.connected());
  REQUIRE(c.send(make_request(method, target, "httpbin.example.com", headers)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r.has_value(), c.error());
  return *r;
}

bool applied(const istio::LoadedConfig& l, const std::string& object) {
  for (const auto& p : l.security_applied)
    if (p.object == object) return true;
  return false;
}
bool skipped(const istio::LoadedConfig& l, const std::string& object) {
  for (const auto& p : l.security_skipped)
    if (p.object == object) return true;
  return false;
}

}  // namespace

// Istio task "Authorization for HTTP traffic", at the ingress: ALLOW by
// method and path; anything else gets 403 and never reaches httpbin.
TEST_CASE("istio security task: ALLOW by method and path at the ingress") {
  FakeUpstream httpbin("httpbin");
  Ingress gw(load(ingress_yaml(httpbin.port(), R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "get-only"
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET"]
        paths: ["/get", "/headers*"]
)")));
  CHECK(send(gw.port(), "GET", "/get").status == 200);
  CHECK(send(gw.port(), "GET", "/headers/x").status == 200);
  CHECK(httpbin.request_count() == 2);
  auto post = send(gw.port(), "POST", "/get");
  CHECK(post.status == 403);
  CHECK(post.body == "RBAC: access denied");
  CHECK(send(gw.port(), "GET", "/ip").status == 403);
  CHECK(httpbin.request_count() == 2);
}

// Istio task "Authorization policies with a deny action", at the ingress:
// DENY GET unless x-token is admin.
TEST_CASE("istio security task: DENY by method and header notValues at the ingress") {
  FakeUpstream httpbin("httpbin");
  Ingress gw(load(ingress_yaml(httpbin.port(), R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-method-get
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-ingressgateway
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["GET"]
    when:
    - key: request.headers[x-token]
      notValues: ["admin"]
)")));
  CHECK(send(gw.port(), "GET", "/get").status == 403);
  CHECK(send(gw.port(), "GET", "/get", {{"x-token", "guest"}}).status == 403);
  CHECK(httpbin.request_count() == 0);
  CHECK(send(gw.port(), "GET", "/get", {{"x-token", "admin"}}).status == 200);
  CHECK(send(gw.port(), "POST", "/post").status == 200);
  CHECK(httpbin.request_count() == 2);
}

// Istio task "Ingress gateway": ipBlocks is the peer address.
TEST_CASE("istio security task: ipBlocks at the ingress match the peer address") {
  FakeUpstream httpbin("httpbin");
  auto policy = [](const char* block) {
    return fmt::format(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ingress-policy
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-ingressgateway
  action: ALLOW
  rules:
  - from:
    - source:
        ipBlocks: ["{}"]
)",
                       block);
  };
  {
    Ingress gw(load(ingress_yaml(httpbin.port(), policy("127.0.0.0/8"))));
    CHECK(send(gw.port(), "GET", "/ip").status == 200);
  }
  {
    Ingress gw(load(ingress_yaml(httpbin.port(), policy("1.2.3.4"))));
    // X-Forwarded-For does not change the peer.
    CHECK(send(gw.port(), "GET", "/ip", {{"X-Forwarded-For", "1.2.3.4"}}).status == 403);
  }
  CHECK(httpbin.request_count() == 1);
}

// remoteIpBlocks: the client from X-Forwarded-For, numTrustedProxies from
// the mesh config (as the task sets it on the gateway).
TEST_CASE("istio security task: remoteIpBlocks with numTrustedProxies from the mesh config") {
  FakeUpstream httpbin("httpbin");
  const std::string yaml = ingress_yaml(httpbin.port(), R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ingress-policy
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-ingressgateway
  action: ALLOW
  rules:
  - from:
    - source:
        remoteIpBlocks: ["1.2.3.4", "5.6.7.0/24"]
)");
  auto settings = mesh(R"(
defaultConfig:
  gatewayTopology:
    numTrustedProxies: 1
)");
  CHECK(settings.num_trusted_proxies == 1);
  auto loaded = load(yaml, settings);
  CHECK(loaded.config.security.num_trusted_proxies == 1);
  Ingress gw(std::move(loaded));
  CHECK(send(gw.port(), "GET", "/ip", {{"X-Forwarded-For", "5.6.7.8"}}).status == 200);
  CHECK(send(gw.port(), "GET", "/ip", {{"X-Forwarded-For", "1.2.3.4"}}).status == 200);
  CHECK(send(gw.port(), "GET", "/ip", {{"X-Forwarded-For", "9.9.9.9"}}).status == 403);
  CHECK(send(gw.port(), "GET", "/ip").status == 403);  // the peer, 127.0.0.1
  CHECK(httpbin.request_count() == 2);

  SUBCASE("without the mesh setting the header is ignored") {
    Ingress plain(load(yaml));
    CHECK(send(plain.port(), "GET", "/ip", {{"X-Forwarded-For", "5.6.7.8"}}).status == 403);
  }
}

// Istio task "Authentication policy", end-user JWT at the ingress: the
// task's RequestAuthentication with the key set inline, and an ALLOW policy
// requiring a request principal.
TEST_CASE("istio security task: end-user JWT at the ingress with requestPrincipals") {
  FakeUpstream httpbin("httpbin");
  JwtSigner signer;
  const std::string issuer = "testing@secure.istio.io";
  Ingress gw(load(ingress_yaml(httpbin.port(), fmt::format(R"(
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
  - issuer: "{}"
    jwks: '{}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "frontend-ingress"
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: ["*"]
)",
                                                           issuer, signer.jwks()))));
  std::string claims =
      fmt::format(R"({{"iss":"{}","sub":"alice","exp":{}}})", issuer, unix_now() + 3600);
  std::string token = signer.sign(claims);
  auto ok = send(gw.port(), "GET", "/headers", {{"Authorization", "Bearer " + token}});
  CHECK(ok.status == 200);
  REQUIRE(httpbin.request_count() == 1);
  CHECK_FALSE(httpbin.last_request()->header("authorization"));  // forwardOriginalToken: false

  auto none = send(gw.port(), "GET", "/headers");
  CHECK(none.status == 403);
  JwtSigner other;  // same kid, another key
  auto forged =
      send(gw.port(), "GET", "/headers", {{"Authorization", "Bearer " + other.sign(claims)}});
  CHECK(forged.status == 401);
  CHECK(forged.body == "Jwt verification fails");
  CHECK(httpbin.request_count() == 1);
}

TEST_CASE("istio security: jwtRules fields reach the provider") {
  JwtSigner signer;
  auto loaded = load(ingress_yaml(18000, fmt::format(R"(
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: istio-system}}
spec:
  jwtRules:
  - issuer: issuer-a
    audiences: [one, two]
    jwks: '{}'
    fromHeaders: [{{name: x-jwt, prefix: "Token "}}]
    fromParams: [tok]
    fromCookies: [session]
    outputPayloadToHeader: x-payload
    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]
    forwardOriginalToken: true
    timeout: 5s
)",
                                                     signer.jwks())));
  REQUIRE(loaded.config.security.jwt_providers.size() == 1);
  const JwtProvider& p = loaded.config.security.jwt_providers[0];
  CHECK(p.issuer == "issuer-a");
  CHECK(p.audiences == std::vector<std::string>{"one", "two"});
  REQUIRE(p.from_headers.size() == 1);
  CHECK(p.from_headers[0].name == "x-jwt");
  CHECK(p.from_headers[0].prefix == "Token ");
  CHECK(p.from_params == std::vector<std::string>{"tok"});
  CHECK(p.from_cookies == std::vector<std::string>{"session"});
  CHECK(p.output_payload_to_header == "x-payload");
  REQUIRE(p.output_claim_to_headers.size() == 1);
  CHECK(p.output_claim_to_headers[0].header == "x-sub");
  CHECK(p.output_claim_to_headers[0].claim == "sub");
  CHECK(p.forward_original_token);
  CHECK(p.source == "RequestAuthentication istio-system/jwt");
  CHECK(applied(loaded, "RequestAuthentication istio-system/jwt"));
  auto compiled = compile(loaded.config);
  CHECK_MESSAGE(compiled.ok(), (compiled.ok() ? std::string() : compiled.error().to_string()));
}

TEST_CASE("istio security: which policies apply to the gateway") {
  auto policy = [](const std::string& name, const std::string& ns, const std::string& scope) {
    return fmt::format(R"(
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {}, namespace: {}}}
spec:
{}
  rules: [{{to: [{{operation: {{methods: [GET]}}}}]}}]
)",
                       name, ns, scope);
  };
  std::string yaml = ingress_yaml(
      18000,
      policy("root-wide", "istio-system", "") +
          policy("root-selector", "istio-system",
                 "  selector: {matchLabels: {istio: ingressgateway}}") +
          policy("other-selector", "istio-system", "  selector: {matchLabels: {app: web}}") +
          policy("ns-wide", "foo", "") +
          policy("foo-selector", "foo", "  selector: {matchLabels: {istio: ingressgateway}}") +
          policy("target-gw", "default",
                 "  targetRef: {group: networking.istio.io, kind: Gateway, name: "
                 "httpbin-gateway}") +
          policy("target-k8s-gw", "default",
                 "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, "
                 "name: httpbin-gateway}]") +
          policy("target-missing", "default",
                 "  targetRef: {group: networking.istio.io, kind: Gateway, name: nope}") +
          policy("target-service", "default", "  targetRef: {kind: Service, name: web}"));

  SUBCASE("defaults: root and gateway namespace istio-system, label istio=ingressgateway") {
    auto loaded = load(yaml);
    CHECK(applied(loaded, "AuthorizationPolicy istio-system/root-wide"));
    CHECK(applied(loaded, "AuthorizationPolicy istio-system/root-selector"));
    CHECK(applied(loaded, "AuthorizationPolicy default/target-gw"));
    CHECK(applied(loaded, "AuthorizationPolicy default/target-k8s-gw"));
    CHECK(skipped(loaded, "AuthorizationPolicy istio-system/other-selector"));
    CHECK(skipped(loaded, "AuthorizationPolicy foo/ns-wide"));
    CHECK(skipped(loaded, "AuthorizationPolicy foo/foo-selector"));
    CHECK(skipped(loaded, "AuthorizationPolicy default/target-missing"));
    CHECK(skipped(loaded, "AuthorizationPolicy default/target-service"));
    CHECK(loaded.config.security.authorization.size() == 4);
    CHECK(loaded.security_skipped.size() == 5);
    std::string report = istio::summary(loaded);
    CHECK(report.find("applies: AuthorizationPolicy istio-system/root-selector (ALLOW, 1 rule(s); "
                      "selector istio=ingressgateway)") != std::string::npos);
    CHECK(report.find("skipped: AuthorizationPolicy foo/ns-wide: namespace foo is neither") !=
          std::string::npos);
  }
  SUBCASE("gateway in namespace foo with its own labels") {
    istio::TranslateOptions options;
    options.gateway_namespace = "foo";
    options.gateway_labels = {{"app", "web"}};
    auto loaded = load(yaml, {}, options);
    CHECK(applied(loaded, "AuthorizationPolicy istio-system/root-wide"));
    CHECK(applied(loaded, "AuthorizationPolicy istio-system/other-selector"));
    CHECK(applied(loaded, "AuthorizationPolicy foo/ns-wide"));
    CHECK(skipped(loaded, "AuthorizationPolicy istio-system/root-selector"));
    CHECK(skipped(loaded, "AuthorizationPolicy foo/foo-selector"));
  }
  SUBCASE("rootNamespace from the mesh config") {
    auto settings = mesh("rootNamespace: foo\n");
    CHECK(settings.root_namespace == "foo");
    auto loaded = load(yaml, settings);
    CHECK(loaded.config.security.root_namespace == "foo");
    CHECK(applied(loaded, "AuthorizationPolicy foo/ns-wide"));
    CHECK(applied(loaded, "AuthorizationPolicy istio-system/root-wide"));  // gateway namespace
    CHECK(applied(loaded, "AuthorizationPolicy foo/foo-selector"));  // root namespace selector
  }
}

TEST_CASE("istio security: errors name the resource and the field") {
  auto ap = [](const std::string& spec) {
    return ingress_yaml(18000,
                        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
                        "metadata: {name: bar, namespace: foo}\nspec:\n" +
                            spec);
  };
  istio::TranslateOptions foo_gateway;
  foo_gateway.gateway_namespace = "foo";
  CHECK(load_fails(ap("  rules: [{from: [{source: {ipBlocks: [1.2.3.4, 300.1.1.1]}}]}]\n"),
                   foo_gateway) ==
        "AuthorizationPolicy foo/bar: rules[0].from[0].source.ipBlocks[1]: invalid IP address "
        "\"300.1.1.1\"");
  CHECK(load_fails(ap("  rules: [{from: [{source: {ipBlock: [1.2.3.4]}}]}]\n")) ==
        "AuthorizationPolicy foo/bar: rules[0].from[0].source.ipBlock: unknown field \"ipBlock\"");
  CHECK(load_fails(ap("  action: ALLOWED\n")) ==
        "AuthorizationPolicy foo/bar: action: unknown value \"ALLOWED\" (one of ALLOW, DENY, "
        "AUDIT, CUSTOM)");
  CHECK(load_fails(ap("  rules: [{when: [{values: [a]}]}]\n")) ==
        "AuthorizationPolicy foo/bar: rules[0].when[0].key: required field is missing");
  CHECK(load_fails(ap("  selector: {matchLabels: {a: b}}\n  targetRef: {kind: Gateway, name: "
                      "x}\n")) ==
        "AuthorizationPolicy foo/bar: targetRef: only one of selector or targetRef(s) can be set");
  CHECK(load_fails(ap("  rules: [{to: [{operation: {methods: GET}}]}]\n")) ==
        "AuthorizationPolicy foo/bar: rules[0].to[0].operation.methods: must be a list");
  // Validation of a policy that does not apply still happens at parse time.
  CHECK(load_fails(ap("  spec2: {}\n")) ==
        "AuthorizationPolicy foo/bar: spec2: unknown field \"spec2\"");
}

TEST_CASE("istio security: a CUSTOM policy naming no mesh extension provider is rejected") {
  std::string yaml = ingress_yaml(18000, R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: CUSTOM
  provider: {name: my-ext-authz}
  rules: [{to: [{operation: {paths: ["/headers"]}}]}]
)");
  CHECK(load_fails(yaml) ==
        "AuthorizationPolicy istio-system/ext-authz: provider.name: no extensionProviders entry "
        "named \"my-ext-authz\" in the mesh config");
  // One for another workload is skipped, not an error.
  istio::TranslateOptions other;
  other.gateway_labels = {{"app", "other"}};
  auto loaded = load(yaml, {}, other);
  CHECK(skipped(loaded, "AuthorizationPolicy istio-system/ext-authz"));
}

TEST_CASE("istio security: RequestAuthentication errors, jwksUri and the OpenID issuer") {
  auto ra = [](const std::string& rule) {
    return ingress_yaml(18000,
                        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
                        "metadata: {name: jwt, namespace: istio-system}\nspec:\n  jwtRules:\n  - " +
                            rule);
  };
  CHECK(load_fails(ra("{issuer: a, jwksUri: ftp://example.com/jwks.json}\n")) ==
        "RequestAuthentication istio-system/jwt: jwtRules[0].jwksUri: scheme \"ftp\" is not "
        "supported (http or https)");
  CHECK(
      load_fails(ra("{issuer: a, jwksUri: 'https://example.com:99999/k'}\n")) ==
      "RequestAuthentication istio-system/jwt: jwtRules[0].jwksUri: has an invalid port \"99999\"");
  CHECK(load_fails(ra("{issuer: a, jwksUri: 'https:///k'}\n")) ==
        "RequestAuthentication istio-system/jwt: jwtRules[0].jwksUri: has no host");
  CHECK(load_fails(ra("{issuer: a, jwksUri: example.com/jwks.json}\n")) ==
        "RequestAuthentication istio-system/jwt: jwtRules[0].jwksUri: must be an absolute http:// "
        "or https:// URL");
  CHECK(load_fails(ra("{issuer: a, jwksUri: 'https://example.com/k', timeout: 0s}\n")) ==
        "RequestAuthentication istio-system/jwt: jwtRules[0].timeout: must be > 0");
  // No key set and an issuer that is no URL: nothing to discover it from.
  CHECK(load_fails(ra("{issuer: a}\n"))
            .starts_with("RequestAuthentication istio-system/jwt: jwtRules[0].jwks: required"));
  CHECK(load_fails(ra("{issuer: a, jwks: 'not json'}\n"))
            .starts_with("RequestAuthentication istio-system/jwt: jwtRules[0].jwks: "));
  // Accepted: jwksUri with its timeout, and an https issuer alone (OpenID).
  auto loaded =
      load(ra("{issuer: a, jwksUri: 'HTTPS://Keys.example.com/jwks.json', timeout: 2s}\n"));
  REQUIRE(loaded.config.security.jwt_providers.size() == 1);
  CHECK(loaded.config.security.jwt_providers[0].jwks_uri == "HTTPS://Keys.example.com/jwks.json");
  CHECK(loaded.config.security.jwt_providers[0].timeout == std::chrono::seconds(2));
  auto openid = load(ra("{issuer: 'https://accounts.example.com'}\n"));
  REQUIRE(openid.config.security.jwt_providers.size() == 1);
  CHECK(openid.config.security.jwt_providers[0].jwks_uri.empty());
  CHECK(openid.config.security.jwt_providers[0].timeout == std::chrono::seconds(5));
  CHECK(compile(openid.config).ok());
  JwtSigner signer;
  CHECK(load_fails(ra(fmt::format("{{issuer: a, jwks: '{}', fromHeaders: [{{prefix: x}}]}}\n",
                                  signer.jwks()))) ==
        "RequestAuthentication istio-system/jwt: jwtRules[0].fromHeaders[0].name: required field "
        "is missing");
  CHECK(load_fails(ra(fmt::format("{{issuer: a, jwks: '{}', timeout: soon}}\n", signer.jwks())))
            .starts_with("RequestAuthentication istio-system/jwt: jwtRules[0].timeout: invalid "
                         "duration"));
  CHECK(load_fails(ra(fmt::format("{{issuer: a, jwks: '{}', jwksUrl: x}}\n", signer.jwks()))) ==
        "RequestAuthentication istio-system/jwt: jwtRules[0].jwksUrl: unknown field \"jwksUrl\"");
}

TEST_CASE("istio security: mesh config errors for the security settings") {
  auto bad = istio::parse_mesh_config("defaultConfig: {gatewayTopology: {numTrustedProxies: -1}}\n",
                                      "mesh.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().to_string() ==
        "MeshConfig mesh.yaml: defaultConfig.gatewayTopology.numTrustedProxies: must be a "
        "non-negative integer, got \"-1\"");
  auto root = istio::parse_mesh_config("rootNamespace: [a]\n", "mesh.yaml");
  REQUIRE_FALSE(root.ok());
  CHECK(root.error().to_string() ==
        "MeshConfig mesh.yaml: rootNamespace: must be a non-empty string");
}

TEST_CASE("sluice-ingress --check lists the security policies and honours the settings") {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "sluice-isec-XXXXXX").string();
  fs::path dir = mkdtemp(tmpl.data());
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return (dir / name).string();
  };
  std::string config = write("site.yaml", ingress_yaml(18000, R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-get, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-only, namespace: web}
spec:
  rules: [{from: [{source: {remoteIpBlocks: [10.0.0.0/8]}}]}]
)"));
  std::string mesh_file = write("mesh.yaml", R"(
rootNamespace: mesh-root
defaultConfig: {gatewayTopology: {numTrustedProxies: 2}}
)");
  auto r =
      run_process(SLUICE_INGRESS_BIN, {"--check", "--config", config, "--mesh-config", mesh_file});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK_MESSAGE(
      r.out.find("security: root namespace mesh-root, 2 trusted proxy(ies)") != std::string::npos,
      r.out);
  CHECK(r.out.find("applies: AuthorizationPolicy istio-system/deny-get (DENY, 1 rule(s); "
                   "selector istio=ingressgateway)") != std::string::npos);
  CHECK(r.out.find("skipped: AuthorizationPolicy web/web-only: namespace web is neither the root "
                   "namespace (mesh-root) nor the gateway's (istio-system)") != std::string::npos);

  // The gateway runs in namespace web with other labels.
  auto web = run_process(SLUICE_INGRESS_BIN, {"--check", "--config", config, "--gateway-namespace",
                                              "web", "--gateway-label", "app=web"});
  CHECK_MESSAGE(web.exit_code == 0, web.err);
  CHECK_MESSAGE(web.out.find("applies: AuthorizationPolicy web/web-only") != std::string::npos,
                web.out);
  CHECK(web.out.find("skipped: AuthorizationPolicy istio-system/deny-get: selector "
                     "istio=ingressgateway does not match the gateway's labels app=web") !=
        std::string::npos);

  // --explain runs the policies before routing, with the client address given.
  std::string ips = write("ips.yaml", ingress_yaml(18000, R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: office, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{from: [{source: {ipBlocks: [192.0.2.0/24]}}]}]
)"));
  auto in = run_process(
      SLUICE_INGRESS_BIN,
      {"--config", ips, "--explain", "GET http://example.com/get", "--client-ip", "192.0.2.9"});
  CHECK_MESSAGE(in.exit_code == 0, in.out << in.err);
  CHECK_MESSAGE(in.out.find("authz:    allowed by ALLOW policy istio-system/office rules[0]") !=
                    std::string::npos,
                in.out);
  auto out = run_process(
      SLUICE_INGRESS_BIN,
      {"--config", ips, "--explain", "GET http://example.com/get", "--client-ip", "198.51.100.1"});
  CHECK(out.exit_code == 1);
  CHECK_MESSAGE(
      out.out.find("policy:   ALLOW AuthorizationPolicy istio-system/office rules[0]: not matched: "
                   "rules[0].from[0].source.ipBlocks does not hold") != std::string::npos,
      out.out);
  CHECK_MESSAGE(
      out.out.find("result:   403 (rbac_access_denied_matched_policy[none])") != std::string::npos,
      out.out);

  std::string custom = write("custom.yaml", ingress_yaml(18000, R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: istio-system}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
)"));
  auto c = run_process(SLUICE_INGRESS_BIN, {"--check", "--config", custom});
  CHECK(c.exit_code == 1);
  CHECK_MESSAGE(
      c.err.find("error: AuthorizationPolicy istio-system/ext: provider.name: no "
                 "extensionProviders entry named \"opa\" in the mesh config") != std::string::npos,
      c.err);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace security_yaml_test
