// Which Istio inputs make an upstream speak HTTP/2: DestinationRule
// h2UpgradePolicy UPGRADE on an HTTP port, ServiceEntry ports HTTP2, GRPC
// and GRPC-Web, Kubernetes appProtocol and port names; http2MaxRequests and
// maxConcurrentStreams; and a loaded config running against an h2 upstream.

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <thread>

#include "istio_test_util.hpp"
#include "support/h2_upstream.hpp"
#include "support/raw_client.hpp"

namespace upstream_h2_yaml_test {

using namespace sluice;
using namespace sluice::test;

namespace {

std::string mesh(uint16_t endpoint_port, const std::string& policy) {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc}}
spec:
  hosts: [svc.example]
  ports:
  - {{number: 8080, name: web, protocol: HTTP}}
  - {{number: 8081, name: grpc, protocol: GRPC}}
  - {{number: 8082, name: h2, protocol: HTTP2}}
  - {{number: 8083, name: gw, protocol: GRPC-Web}}
  - {{number: 8084, name: plain, protocol: HTTP}}
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{web: {0}, grpc: {0}, h2: {0}, gw: {0}, plain: {0}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: dr}}
spec:
  host: svc.example
  trafficPolicy:
{1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /grpc}}}}]
    route: [{{destination: {{host: svc.example, port: {{number: 8081}}}}}}]
  - match: [{{uri: {{prefix: /h2}}}}]
    route: [{{destination: {{host: svc.example, port: {{number: 8082}}}}}}]
  - match: [{{uri: {{prefix: /gw}}}}]
    route: [{{destination: {{host: svc.example, port: {{number: 8083}}}}}}]
  - match: [{{uri: {{prefix: /plain}}}}]
    route: [{{destination: {{host: svc.example, port: {{number: 8084}}}}}}]
  - route: [{{destination: {{host: svc.example, port: {{number: 8080}}}}}}]
)",
                     endpoint_port, policy);
}

const UpstreamConfig& upstream_of(const istio::LoadedConfig& l, uint16_t port) {
  std::string name = fmt::format("outbound|{}||svc.example", port);
  for (const auto& u : l.config.upstreams)
    if (u.name == name) return u;
  FAIL("no upstream " << name);
  throw;
}

const char* kUpgrade = R"(    connectionPool:
      http: {h2UpgradePolicy: UPGRADE, http2MaxRequests: 7, maxConcurrentStreams: 3}
    portLevelSettings:
    - port: {number: 8084}
      connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}})";

}  // namespace

TEST_CASE("istio h2 upstream: UPGRADE, HTTP2, GRPC and GRPC-Web ports speak HTTP/2") {
  auto l = load_ok(mesh(9000, kUpgrade));
  CHECK(upstream_of(l, 8080).protocol == UpstreamProtocol::http2);  // HTTP + UPGRADE
  CHECK(upstream_of(l, 8081).protocol == UpstreamProtocol::http2);  // GRPC
  CHECK(upstream_of(l, 8082).protocol == UpstreamProtocol::http2);  // HTTP2
  CHECK(upstream_of(l, 8083).protocol == UpstreamProtocol::http2);  // GRPC-Web
  CHECK(upstream_of(l, 8084).protocol == UpstreamProtocol::http1);  // DO_NOT_UPGRADE
  CHECK(upstream_of(l, 8080).pool.max_requests == 7);
  CHECK(upstream_of(l, 8080).pool.max_concurrent_streams == 3);
  CHECK_FALSE(has_warning(l, "http2MaxRequests"));
  auto snap = sluice::compile(l.config);
  CHECK_MESSAGE(snap.ok(), (snap.ok() ? std::string() : snap.error().to_string()));
}

TEST_CASE(
    "istio h2 upstream: without UPGRADE only the HTTP/2 protocols do, DO_NOT_UPGRADE keeps them") {
  auto l = load_ok(mesh(9000, "    connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}}"));
  CHECK(upstream_of(l, 8080).protocol == UpstreamProtocol::http1);
  CHECK(upstream_of(l, 8081).protocol == UpstreamProtocol::http2);
  CHECK(upstream_of(l, 8082).protocol == UpstreamProtocol::http2);
  CHECK(upstream_of(l, 8084).protocol == UpstreamProtocol::http1);
}

TEST_CASE("istio h2 upstream: Kubernetes appProtocol and port names choose HTTP/2") {
  std::string yaml = R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports:
  - {port: 80, name: a, appProtocol: kubernetes.io/h2c, targetPort: 8080}
  - {port: 81, name: b, appProtocol: grpc, targetPort: 8080}
  - {port: 82, name: grpc-api, targetPort: 8080}
  - {port: 83, name: http-web, targetPort: 8080}
  - {port: 84, name: c, appProtocol: http2, targetPort: 8080}
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: default}
subsets:
- addresses: [{ip: 10.0.0.5}]
  ports: [{port: 8080, name: a}, {port: 8080, name: b}, {port: 8080, name: grpc-api},
          {port: 8080, name: http-web}, {port: 8080, name: c}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: web, port: {number: 80}}}]
  - match: [{uri: {prefix: /b}}]
    route: [{destination: {host: web, port: {number: 81}}}]
  - match: [{uri: {prefix: /c}}]
    route: [{destination: {host: web, port: {number: 82}}}]
  - match: [{uri: {prefix: /d}}]
    route: [{destination: {host: web, port: {number: 83}}}]
  - route: [{destination: {host: web, port: {number: 84}}}]
)";
  auto l = load_ok(yaml);
  auto protocol = [&](uint16_t port) {
    std::string name = fmt::format("outbound|{}||web.default.svc.cluster.local", port);
    for (const auto& u : l.config.upstreams)
      if (u.name == name) return u.protocol;
    FAIL("no upstream " << name);
    return UpstreamProtocol::http1;
  };
  CHECK(protocol(80) == UpstreamProtocol::http2);
  CHECK(protocol(81) == UpstreamProtocol::http2);
  CHECK(protocol(82) == UpstreamProtocol::http2);
  CHECK(protocol(83) == UpstreamProtocol::http1);
  CHECK(protocol(84) == UpstreamProtocol::http2);
}

TEST_CASE("istio h2 upstream: a loaded UPGRADE config multiplexes over one h2c connection") {
  H2Upstream up;
  up.hold_until(4);
  istio::TranslateOptions options;
  options.ephemeral_ports = true;
  auto loaded = istio::load_string(mesh(up.port(), kUpgrade), options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  std::string listener = loaded->config.listeners.at(0).name;
  GatewayOptions go;
  go.workers = 1;
  Gateway gateway(go);
  Status st = gateway.apply(std::move(loaded->config));
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  gateway.start();
  uint16_t port = gateway.port(listener);
  std::vector<int> statuses(4, 0);
  std::vector<std::thread> threads;
  const char* paths[] = {"/", "/grpc", "/h2", "/gw"};
  for (size_t i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      RawClient c(port, std::chrono::seconds(10));
      if (!c.send(make_request("GET", paths[i], "svc.example"))) return;
      if (auto r = c.read_response()) statuses[i] = r->status;
    });
  for (auto& t : threads) t.join();
  for (int s : statuses) CHECK(s == 200);
  // Four upstreams (one per port) share the endpoint, each its own connection.
  CHECK(up.connections() == 4);
  CHECK(up.requests() == 4);
  // The DO_NOT_UPGRADE port stays HTTP/1.1: the h2 upstream cannot parse it.
  RawClient c(port);
  REQUIRE(c.send(make_request("GET", "/plain", "svc.example")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status != 200);
}

}  // namespace upstream_h2_yaml_test
