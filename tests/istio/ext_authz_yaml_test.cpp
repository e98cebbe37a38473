// Istio's "External Authorization" task (authz-custom) with its mesh config
// and AuthorizationPolicy YAML, served by a real Gateway on 127.0.0.1 port
// 0; the ext-authz service is an in-process server behaving as Istio's
// sample (it allows requests carrying `x-ext-authz: allow`). Mesh config
// errors name the field.

#include <doctest/doctest.h>

#include <fmt/format.h>

#include <memory>

#include "istio/istio.hpp"
#include "sluice/sluice.hpp"
#include "support/fake_upstream.hpp"
#include "support/raw_client.hpp"

namespace ext_authz_yaml_test {

using namespace sluice;
using namespace sluice::test;

namespace {

// The task's mesh config, as `kubectl edit configmap istio` leaves it.
constexpr std::string_view kMeshConfig = R"(
apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |-
    extensionProviders:
    - name: "sample-ext-authz-grpc"
      envoyExtAuthzGrpc:
        service: "ext-authz.foo.svc.cluster.local"
        port: "9000"
    - name: "sample-ext-authz-http"
      envoyExtAuthzHttp:
        service: "ext-authz.foo.svc.cluster.local"
        port: "8000"
        includeRequestHeadersInCheck: ["x-ext-authz"]
)";

// The task's policy (applied with `kubectl apply -n foo`), naming the
// HTTP provider as its comment suggests.
std::string policy(std::string_view provider) {
  return fmt::format(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext-authz
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: CUSTOM
  provider:
    # The provider name must match the extension provider defined in the mesh config.
    name: {}
  rules:
  # The rules specify when to trigger the external authorizer.
  - to:
    - operation:
        paths: ["/headers"]
)",
                     provider);
}

// httpbin and the ext-authz service as ServiceEntries on loopback, behind a
// Gateway for "*".
std::string services(uint16_t httpbin, uint16_t ext_authz) {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: httpbin-gateway, namespace: foo}}
spec:
  selector: {{app: httpbin}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin, namespace: foo}}
spec:
  hosts: ["*"]
  gateways: [httpbin-gateway]
  http: [{{route: [{{destination: {{host: httpbin}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: foo}}
spec:
  hosts: [httpbin]
  ports: [{{number: 8000, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: foo}}
spec:
  hosts: [ext-authz.foo.svc.cluster.local]
  ports: [{{number: 8000, name: http}}, {{number: 9000, name: grpc}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}, grpc: {}}}}}]
---
)",
                     httpbin, ext_authz, ext_authz);
}

istio::TranslateOptions options(const istio::MeshSettings& mesh) {
  istio::TranslateOptions o;
  o.bind_address = "127.0.0.1";
  o.ephemeral_ports = true;
  // sluice stands where the task's httpbin sidecar does.
  o.gateway_namespace = "foo";
  o.gateway_labels = {{"app", "httpbin"}};
  istio::apply_mesh(mesh, o);
  return o;
}

istio::MeshSettings mesh(std::string_view yaml = kMeshConfig) {
  auto m = istio::parse_mesh_config(yaml, "mesh.yaml");
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? std::string() : m.error().to_string()));
  return *m;
}

// Istio's sample ext-authz HTTP server.
Reply sample_ext_authz(const Received& r) {
  Reply reply;
  if (r.header("x-ext-authz") == "allow") {
    reply.headers = {{"x-ext-authz-check-result", "allowed"}};
    return reply;
  }
  reply.status = 403;
  reply.headers = {{"x-ext-authz-check-result", "denied"}};
  reply.body = "denied by ext_authz for not found header `x-ext-authz: allow` in the request";
  return reply;
}

HttpResponse get(uint16_t port, std::string_view target, const HeaderList& headers) {
  RawClient c(port);
  REQUIRE(c.send(make_request("GET", target, "httpbin.example.com", headers)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r.has_value(), c.error());
  return *r;
}

}  // namespace

TEST_CASE("istio task authz-custom: the HTTP ext_authz provider decides /headers") {
  FakeUpstream httpbin("httpbin");
  FakeUpstream ext_authz("ext-authz");
  ext_authz.set_handler(sample_ext_authz);
  istio::MeshSettings m = mesh();
  auto loaded = istio::load_string(
      services(httpbin.port(), ext_authz.port()) + policy("sample-ext-authz-http"), options(m));
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  istio::apply_mesh(m, loaded->config);
  REQUIRE(loaded->config.security.ext_authz_providers.size() == 1);
  CHECK(loaded->config.security.ext_authz_providers[0].service ==
        "outbound|8000||ext-authz.foo.svc.cluster.local");

  std::string listener = loaded->config.listeners.at(0).name;
  GatewayOptions go;
  go.workers = 1;
  Gateway gateway(go);
  Status st = gateway.apply(std::move(loaded->config));
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  gateway.start();
  uint16_t port = gateway.port(listener);

  auto denied = get(port, "/headers", {{"x-ext-authz", "deny"}});
  CHECK(denied.status == 403);
  CHECK(denied.body ==
        "denied by ext_authz for not found header `x-ext-authz: allow` in the request");
  CHECK(httpbin.request_count() == 0);

  auto allowed = get(port, "/headers", {{"x-ext-authz", "allow"}});
  CHECK(allowed.status == 200);
  CHECK(httpbin.request_count() == 1);
  REQUIRE(ext_authz.request_count() == 2);
  CHECK(ext_authz.last_request()->target == "/headers");
  CHECK(ext_authz.last_request()->header("x-ext-authz") == "allow");

  // Not covered by the policy: the provider is not asked.
  auto ip = get(port, "/ip", {{"x-ext-authz", "deny"}});
  CHECK(ip.status == 200);
  CHECK(ext_authz.request_count() == 2);
  gateway.stop();
}

TEST_CASE("istio task authz-custom: the gRPC provider is refused until HTTP/2 upstreams exist") {
  auto loaded =
      istio::load_string(services(18000, 18001) + policy("sample-ext-authz-grpc"), options(mesh()));
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.error().to_string() ==
        "AuthorizationPolicy foo/ext-authz: provider.name: provider \"sample-ext-authz-grpc\" is "
        "envoyExtAuthzGrpc: gRPC ext_authz needs HTTP/2 upstreams, which sluice does not have yet "
        "(protocols issue); use envoyExtAuthzHttp");
}

TEST_CASE("istio ext_authz: every envoyExtAuthzHttp field reaches the provider") {
  istio::MeshSettings m = mesh(R"(
extensionProviders:
- name: full
  envoyExtAuthzHttp:
    service: foo/ext-authz.foo.svc.cluster.local
    port: 8000
    timeout: 1.5s
    pathPrefix: /check
    failOpen: true
    statusOnError: "503"
    includeRequestHeadersInCheck: [x-ext-authz, "x-b3-*"]
    includeAdditionalHeadersInCheck: {x-from: sluice}
    headersToUpstreamOnAllow: [x-user]
    headersToDownstreamOnAllow: [x-note]
    headersToDownstreamOnDeny: [x-why]
    includeRequestBodyInCheck: {maxRequestBytes: 4096, allowPartialMessage: true, packAsBytes: true}
)");
  auto loaded = istio::load_string(services(18000, 18001) + policy("full"), options(m));
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  REQUIRE(loaded->config.security.ext_authz_providers.size() == 1);
  const ExtAuthzHttpProvider& p = loaded->config.security.ext_authz_providers[0];
  CHECK(p.name == "full");
  CHECK(p.timeout == std::chrono::milliseconds(1500));
  CHECK(p.path_prefix == "/check");
  CHECK(p.fail_open);
  CHECK(p.status_on_error == 503);
  CHECK(p.include_request_headers_in_check == std::vector<std::string>{"x-ext-authz", "x-b3-*"});
  REQUIRE(p.include_additional_headers_in_check.size() == 1);
  CHECK(p.include_additional_headers_in_check[0].first == "x-from");
  CHECK(p.include_additional_headers_in_check[0].second == "sluice");
  CHECK(p.headers_to_upstream_on_allow == std::vector<std::string>{"x-user"});
  CHECK(p.headers_to_downstream_on_allow == std::vector<std::string>{"x-note"});
  CHECK(p.headers_to_downstream_on_deny == std::vector<std::string>{"x-why"});
  REQUIRE(p.include_request_body_in_check);
  CHECK(p.include_request_body_in_check->max_request_bytes == 4096);
  CHECK(p.include_request_body_in_check->allow_partial_message);
  CHECK(compile(loaded->config));
}

TEST_CASE("istio ext_authz: mesh config and provider errors name the field") {
  auto bad_mesh = [](std::string_view yaml) {
    auto m = istio::parse_mesh_config(yaml, "mesh.yaml");
    REQUIRE_FALSE(m.ok());
    return m.error().to_string();
  };
  CHECK(bad_mesh("extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {port: 80}\n") ==
        "MeshConfig mesh.yaml: extensionProviders[0].envoyExtAuthzHttp.service: required field "
        "is missing");
  CHECK(bad_mesh("extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {service: s, port: x}\n") ==
        "MeshConfig mesh.yaml: extensionProviders[0].envoyExtAuthzHttp.port: must be an integer "
        "in 1..65535, got \"x\"");
  CHECK(bad_mesh("extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {service: s, port: 1, "
                 "timeout: 3x}\n") ==
        "MeshConfig mesh.yaml: extensionProviders[0].envoyExtAuthzHttp.timeout: invalid duration "
        "\"3x\": unknown unit");
  CHECK(bad_mesh("extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {service: s, port: 1, "
                 "failopen: true}\n") ==
        "MeshConfig mesh.yaml: extensionProviders[0].envoyExtAuthzHttp.failopen: unknown field "
        "\"failopen\"");

  // The service must be a declared host and port.
  istio::MeshSettings m = mesh(R"(
extensionProviders:
- name: nowhere
  envoyExtAuthzHttp: {service: authz.other.svc.cluster.local, port: 8000}
- name: wrong-port
  envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: 8001}
- name: bad-prefix
  envoyExtAuthzHttp: {service: ext-authz.foo.svc.cluster.local, port: 8000, pathPrefix: "check"}
)");
  auto fails = [&](std::string_view provider) {
    auto loaded = istio::load_string(services(18000, 18001) + policy(provider), options(m));
    REQUIRE_FALSE(loaded.ok());
    return loaded.error().to_string();
  };
  CHECK(fails("nowhere") ==
        "MeshConfig mesh.yaml: extensionProviders[0].envoyExtAuthzHttp.service: host "
        "\"authz.other.svc.cluster.local\" is not declared by any ServiceEntry");
  CHECK(fails("wrong-port") ==
        "MeshConfig mesh.yaml: extensionProviders[1].envoyExtAuthzHttp.port: ServiceEntry "
        "foo/ext-authz declares no port 8001 for host \"ext-authz.foo.svc.cluster.local\"");
  CHECK(fails("bad-prefix")
            .starts_with(
                "MeshConfig mesh.yaml: extensionProviders[2].envoyExtAuthzHttp.pathPrefix: "));
}

}  // namespace ext_authz_yaml_test
