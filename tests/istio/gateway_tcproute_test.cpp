// Gateway API TCPRoute (issue 16 §2): mapped onto the TCP routes Istio's
// VirtualService tcp rules use; on TCP listeners and TLS Terminate ones;
// status and errors as for the other route kinds; echo over real sockets.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <map>
#include <string>

#include "istio/istio.hpp"
#include "istio_test_util.hpp"
#include "sluice/gateway.hpp"
#include "support/raw_client.hpp"
#include "support/tunnel_upstream.hpp"
#include "tls_certs.hpp"

namespace gateway_tcproute_test {

using namespace sluice;
using namespace sluice::test;

namespace {

// Gateway `gw` with a TCP listener on 9000, a TCPRoute `echo` to the Services
// echo-v1 and echo-v2 (Endpoints on the given ports) weighted 80/20.
std::string tcp_config(uint16_t v1, uint16_t v2, const std::string& listener_extra = "") {
  std::string y = R"(
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - name: tcp
    port: 9000
    protocol: TCP
)" + listener_extra +
                  R"(
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: echo, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules:
  - backendRefs:
    - {name: echo-v1, port: 9000, weight: 80}
    - {name: echo-v2, port: 9000, weight: 20}
)";
  for (auto [name, port] : {std::pair{"echo-v1", v1}, std::pair{"echo-v2", v2}})
    y += fmt::format(R"(
---
apiVersion: v1
kind: Service
metadata: {{name: {0}}}
spec: {{ports: [{{name: tcp, port: 9000}}]}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: {0}}}
subsets: [{{addresses: [{{ip: 127.0.0.1}}], ports: [{{name: tcp, port: {1}}}]}}]
)",
                     name, port);
  return y;
}

}  // namespace

TEST_CASE("gateway api: a TCPRoute becomes the TCP listener's weighted tcp route") {
  auto loaded = load_ok(tcp_config(1, 2));
  REQUIRE(loaded.config.listeners.size() == 1);
  const ListenerConfig& l = loaded.config.listeners.at(0);
  REQUIRE(l.tcp_routes.size() == 1);
  const TcpRoute& r = l.tcp_routes.at(0);
  REQUIRE(r.destinations.size() == 2);
  CHECK(r.destinations.at(0).upstream == "outbound|9000||echo-v1.default.svc.cluster.local");
  CHECK(r.destinations.at(0).weight == 80);
  CHECK(r.destinations.at(1).upstream == "outbound|9000||echo-v2.default.svc.cluster.local");
  CHECK(r.destinations.at(1).weight == 20);
  REQUIRE(loaded.route_status.size() == 1);
  CHECK(loaded.route_status.at(0).route == "TCPRoute default/echo");
  const auto& ps = loaded.route_status.at(0).parents.at(0);
  CHECK(ps.accepted);
  CHECK(ps.accepted_reason == "Accepted");
  CHECK(ps.resolved_refs);
}

TEST_CASE("gateway api: a TCPRoute echoes over real sockets, connections split by weight") {
  TunnelUpstream v1(TunnelUpstream::Mode::echo, "v1 ");
  TunnelUpstream v2(TunnelUpstream::Mode::echo, "v2 ");
  istio::TranslateOptions options;
  options.bind_address = "127.0.0.1";
  options.ephemeral_ports = true;
  auto loaded = istio::load_string(tcp_config(v1.port(), v2.port()), options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  GatewayOptions go;
  go.workers = 1;
  go.seed = 7;
  Gateway gateway(go);
  std::string listener = loaded->config.listeners.at(0).name;
  Status st = gateway.apply(loaded->config);
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  gateway.start();
  int from_v1 = 0, from_v2 = 0;
  for (int i = 0; i < 50; ++i) {
    std::string got = exchange_until_close(gateway.port(listener), "hello");
    from_v1 += got == "v1 hello";
    from_v2 += got == "v2 hello";
  }
  gateway.stop();
  CHECK(from_v1 + from_v2 == 50);
  CHECK(from_v1 > from_v2);
  CHECK(from_v2 > 0);
}

TEST_CASE("gateway api: TCPRoute attachment and listener errors") {
  SUBCASE("an HTTP listener does not admit a TCPRoute") {
    std::string y = tcp_config(1, 2);
    y.replace(y.find("protocol: TCP"), 13, "protocol: HTTP");
    auto loaded = load_ok(y);
    const auto& ps = loaded.route_status.at(0).parents.at(0);
    CHECK(!ps.accepted);
    CHECK(ps.accepted_reason == "NotAllowedByListeners");
  }
  SUBCASE("a TCP listener takes no tls") {
    std::string err = load_error(tcp_config(1, 2, "    tls: {mode: Terminate}\n"));
    CHECK(err == "Gateway default/gw: spec.listeners[0].tls: must not be set with protocol TCP");
  }
  SUBCASE("a TCPRoute has no hostnames") {
    std::string y = tcp_config(1, 2);
    y.replace(y.find("  rules:\n  - backendRefs"), 0, "  hostnames: [a.example.com]\n");
    CHECK(load_error(y).starts_with("TCPRoute default/echo: spec.hostnames: unknown field"));
  }
}

TEST_CASE("gateway api: a TCPRoute on a TLS Terminate listener relays the decrypted stream") {
  const auto& pki = istio_pki();
  std::string y = tcp_config(1, 2, "    tls: {mode: Terminate, certificateRefs: [{name: cert}]}\n");
  y.replace(y.find("protocol: TCP"), 13, "protocol: TLS");
  y += "\n---\n" + kubectl_secret("cert", "default", pki.httpbin, pki.httpbin_key);
  auto loaded = load_ok(y);
  REQUIRE(loaded.config.listeners.size() == 1);
  const ListenerConfig& l = loaded.config.listeners.at(0);
  CHECK(l.tls_servers.size() == 1);
  REQUIRE(l.tcp_routes.size() == 1);
  CHECK(l.tcp_routes.at(0).destinations.size() == 2);
  // Without a certificate there is nothing to terminate with.
  std::string no_cert = tcp_config(1, 2, "    tls: {mode: Terminate}\n");
  no_cert.replace(no_cert.find("protocol: TCP"), 13, "protocol: TLS");
  CHECK(load_error(no_cert) ==
        "Gateway default/gw: spec.listeners[0].tls.certificateRefs: mode "
        "Terminate needs a certificate");
}

}  // namespace gateway_tcproute_test
