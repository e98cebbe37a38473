// Istio's httpbin, helloworld, websockets and tcp-echo gateway samples (issue
// 16), loaded unchanged next to Kubernetes Service and Endpoints (or
// EndpointSlice) YAML instead of ServiceEntries, and serving traffic over
// real sockets. The registry YAML is written here because its endpoint ports
// are the in-process upstreams' bound ports; the Services' ports and
// targetPorts are those the samples declare.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <set>
#include <string>

#include <fmt/format.h>

#include "istio/istio.hpp"
#include "istio_test_util.hpp"
#include "sluice/gateway.hpp"
#include "support/fake_upstream.hpp"
#include "support/raw_client.hpp"
#include "support/tunnel_upstream.hpp"

namespace samples_kubernetes_test {

using namespace sluice;
using namespace sluice::test;

namespace {

// A Pod of the samples' Deployments: the app and version labels subsets select.
std::string pod(const std::string& name, const std::string& app, const std::string& version) {
  return fmt::format(R"(
---
apiVersion: v1
kind: Pod
metadata:
  name: {0}
  namespace: default
  labels: {{app: {1}, version: {2}}}
spec:
  containers: [{{name: {1}}}]
status:
  podIP: 127.0.0.1
)",
                     name, app, version);
}

// One Endpoints subset: 127.0.0.1 as Pod `pod_name`, `ports` ("{name: x, port: n}, ...").
std::string endpoints_subset(const std::string& pod_name, const std::string& ports) {
  return fmt::format(R"(
- addresses:
  - ip: 127.0.0.1
    targetRef: {{kind: Pod, name: {0}, namespace: default}}
  ports: [{1}]
)",
                     pod_name, ports);
}

std::string endpoints(const std::string& service, const std::string& subsets) {
  return fmt::format(R"(
---
apiVersion: v1
kind: Endpoints
metadata:
  name: {0}
  namespace: default
subsets:{1})",
                     service, subsets);
}

}  // namespace

TEST_CASE("istio samples on kubernetes: httpbin-gateway.yaml with a Service and EndpointSlice") {
  FakeUpstream httpbin("httpbin");
  // samples/httpbin/httpbin.yaml: Service port 8000 -> targetPort 8080.
  std::string registry = fmt::format(R"(
---
apiVersion: v1
kind: Service
metadata:
  name: httpbin
  namespace: default
  labels: {{app: httpbin, service: httpbin}}
spec:
  ports:
  - name: http
    port: 8000
    targetPort: 8080
  selector: {{app: httpbin}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: httpbin-7xk2p
  namespace: default
  labels: {{kubernetes.io/service-name: httpbin}}
addressType: IPv4
ports: [{{name: http, port: {0}, protocol: TCP}}]
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, name: httpbin-5c4b7d8f9-abcde, namespace: default}}
)",
                                     httpbin.port()) +
                         pod("httpbin-5c4b7d8f9-abcde", "httpbin", "v1");
  Served s(read_text(fixture_path("httpbin-gateway.yaml")) + registry);
  RawClient c(s.port(80));
  REQUIRE(c.send(make_request("GET", "/status/418", "httpbin.example.com")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  CHECK(r->body == "httpbin");
  auto got = httpbin.last_request();
  REQUIRE(got);
  CHECK(got->target == "/status/418");
}

TEST_CASE("istio samples on kubernetes: helloworld-gateway.yaml reaches v1 and v2 of one Service") {
  FakeUpstream v1("Hello version: v1");
  FakeUpstream v2("Hello version: v2");
  // samples/helloworld/helloworld.yaml: port 5000 named http, no targetPort.
  std::string registry =
      R"(
---
apiVersion: v1
kind: Service
metadata:
  name: helloworld
  namespace: default
  labels: {app: helloworld, service: helloworld}
spec:
  ports:
  - port: 5000
    name: http
  selector: {app: helloworld}
)" +
      endpoints("helloworld",
                endpoints_subset("helloworld-v1-6b6f8d5c7-aaaaa",
                                 fmt::format("{{name: http, port: {}}}", v1.port())) +
                    endpoints_subset("helloworld-v2-7d9c4f6b8-bbbbb",
                                     fmt::format("{{name: http, port: {}}}", v2.port()))) +
      pod("helloworld-v1-6b6f8d5c7-aaaaa", "helloworld", "v1") +
      pod("helloworld-v2-7d9c4f6b8-bbbbb", "helloworld", "v2");
  Served s(read_text(fixture_path("helloworld-gateway.yaml")) + registry);
  std::set<std::string> seen;
  RawClient c(s.port(80));
  for (int i = 0; i < 40 && seen.size() < 2; ++i) {
    REQUIRE(c.send(make_request("GET", "/hello", "helloworld.example.com")));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 200);
    seen.insert(r->body);
  }
  CHECK(seen == std::set<std::string>{"Hello version: v1", "Hello version: v2"});
  // The VirtualService matches /hello exactly: anything else has no route.
  REQUIRE(c.send(make_request("GET", "/", "helloworld.example.com")));
  auto other = c.read_response();
  REQUIRE_MESSAGE(other, c.error());
  CHECK(other->status == 404);
}

TEST_CASE("istio samples on kubernetes: websockets route.yaml tunnels to the tornado Service") {
  TunnelUpstream tornado(TunnelUpstream::Mode::websocket);
  // samples/websockets/app.yaml: port 8888 named http, no targetPort.
  std::string registry =
      R"(
---
apiVersion: v1
kind: Service
metadata:
  name: tornado
  namespace: default
  labels: {app: tornado, service: tornado}
spec:
  ports:
  - port: 8888
    name: http
  selector: {app: tornado}
)" +
      endpoints("tornado",
                endpoints_subset("tornado-5d8b9f7c6-ccccc",
                                 fmt::format("{{name: http, port: {}}}", tornado.port()))) +
      pod("tornado-5d8b9f7c6-ccccc", "tornado", "v1");
  Served s(read_text(fixture_path("websockets-route.yaml")) + registry);
  RawClient c(s.port(80));
  REQUIRE(c.send(make_request("GET", "/ws", "tornado.example.com",
                              {{"Connection", "Upgrade"},
                               {"Upgrade", "websocket"},
                               {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                               {"Sec-WebSocket-Version", "13"}})));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 101);
  REQUIRE(c.send(masked_frame("tornado")));
  CHECK(unmasked_payload(c.read_exactly(9)) == "tornado");
  CHECK(tornado.connections() == 1);
}

TEST_CASE("istio samples on kubernetes: tcp-echo-all-v1.yaml echoes through v1 of the Service") {
  // The samples' tcp-echo Deployments prefix "one" (v1) and "two" (v2).
  TunnelUpstream v1(TunnelUpstream::Mode::echo, "one ");
  TunnelUpstream v2(TunnelUpstream::Mode::echo, "two ");
  // samples/tcp-echo/tcp-echo-services.yaml: ports tcp 9000 and tcp-other
  // 9001, no targetPort.
  auto ports_of = [](const TunnelUpstream& u) {
    return fmt::format("{{name: tcp, port: {0}}}, {{name: tcp-other, port: {0}}}", u.port());
  };
  std::string registry =
      R"(
---
apiVersion: v1
kind: Service
metadata:
  name: tcp-echo
  namespace: default
  labels: {app: tcp-echo, service: tcp-echo}
spec:
  ports:
  - name: tcp
    port: 9000
  - name: tcp-other
    port: 9001
  selector: {app: tcp-echo}
)" +
      endpoints("tcp-echo", endpoints_subset("tcp-echo-v1-7dd5c5dcfb-ddddd", ports_of(v1)) +
                                endpoints_subset("tcp-echo-v2-56cd9b5c4f-eeeee", ports_of(v2))) +
      pod("tcp-echo-v1-7dd5c5dcfb-ddddd", "tcp-echo", "v1") +
      pod("tcp-echo-v2-56cd9b5c4f-eeeee", "tcp-echo", "v2");
  Served s(read_text(fixture_path("tcp-echo-all-v1.yaml")) + registry);
  for (int i = 0; i < 5; ++i) CHECK(exchange_until_close(s.port(31400), "hello") == "one hello");
  CHECK(v1.connections() == 5);
  CHECK(v2.connections() == 0);
}

}  // namespace samples_kubernetes_test
