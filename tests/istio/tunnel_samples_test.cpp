// Istio's websockets and tcp-echo samples (issue 14 §3, §4): they load,
// --check's summary lists the tcp routes, and they carry traffic over real
// sockets to in-process upstreams (support/tunnel_upstream).
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "child.hpp"
#include "istio/istio.hpp"
#include "istio_test_util.hpp"
#include "sluice/gateway.hpp"
#include "support/h2_client.hpp"
#include "support/raw_client.hpp"
#include "support/temp_dir.hpp"
#include "support/tunnel_upstream.hpp"

namespace tunnel_samples_test {

using namespace sluice;
using namespace sluice::test;

TEST_CASE("istio samples: websockets route.yaml loads and tunnels a WebSocket to tornado") {
  TunnelUpstream tornado(TunnelUpstream::Mode::websocket);
  std::map<std::string, std::string> ports = {{"TORNADO", std::to_string(tornado.port())}};
  Served s(fixtures({"websockets-route.yaml", "websockets-services.yaml"}, ports));
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
}

TEST_CASE("istio samples: websockets over HTTP/2 with sluice-ingress --http2-extended-connect") {
  TunnelUpstream tornado(TunnelUpstream::Mode::websocket);
  TempDir dir;
  dir.write("ws.yaml", fixtures({"websockets-route.yaml", "websockets-services.yaml"},
                                {{"TORNADO", std::to_string(tornado.port())}}));
  Child child({SLUICE_INGRESS_BIN, "--ephemeral-ports", "--bind", "127.0.0.1", "--workers", "1",
               "--admin", "off", "--http2-extended-connect", "--config", dir.file("ws.yaml")});
  auto line = child.wait_line("listening 80 ");
  REQUIRE_MESSAGE(line, child.err());
  REQUIRE(child.wait_line("ready"));
  h2::Peer peer(static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1))));
  REQUIRE(peer.ready());
  CHECK(peer.client.server_setting(h2::kEnableConnectProtocol) == 1);
  int32_t id = peer.client.open("CONNECT", "/ws", "tornado.example.com", h2::kH2WebSocket);
  REQUIRE(peer.head_of(id).status == 200);
  peer.client.send(id, masked_frame("tornado"));
  CHECK(peer.body_of(id, 9).body == std::string("\x81\x07") + "tornado");
}

TEST_CASE("istio samples: tcp-echo-all-v1.yaml loads, --check lists the tcp route, v1 echoes") {
  TunnelUpstream v1(TunnelUpstream::Mode::echo, "v1 ");
  TunnelUpstream v2(TunnelUpstream::Mode::echo, "v2 ");
  std::map<std::string, std::string> ports = {{"TCP_ECHO_V1", std::to_string(v1.port())},
                                              {"TCP_ECHO_V2", std::to_string(v2.port())}};
  std::string yaml = fixtures({"tcp-echo-all-v1.yaml", "tcp-echo-services.yaml"}, ports);
  std::string summary = istio::summary(load_ok(yaml));
  CHECK(summary.find("tcp route tcp-echo.tcp[0].match[0]") != std::string::npos);
  CHECK(summary.find("subset v1 weight 100") != std::string::npos);
  Served s(yaml);
  for (int i = 0; i < 5; ++i) CHECK(exchange_until_close(s.port(31400), "hello") == "v1 hello");
  CHECK(v2.connections() == 0);
}

TEST_CASE("istio samples: tcp-echo-20-v2.yaml splits connections 80/20 between the subsets") {
  TunnelUpstream v1(TunnelUpstream::Mode::echo, "v1 ");
  TunnelUpstream v2(TunnelUpstream::Mode::echo, "v2 ");
  std::map<std::string, std::string> ports = {{"TCP_ECHO_V1", std::to_string(v1.port())},
                                              {"TCP_ECHO_V2", std::to_string(v2.port())}};
  // The 20-v2 VirtualService replaces the all-v1 one (same name).
  std::string all = fixtures({"tcp-echo-all-v1.yaml"}, ports);
  std::string gateway_and_rule = all.substr(0, all.find("kind: VirtualService"));
  gateway_and_rule = gateway_and_rule.substr(0, gateway_and_rule.rfind("---"));
  Served s(gateway_and_rule + "\n---\n" +
           fixtures({"tcp-echo-20-v2.yaml", "tcp-echo-services.yaml"}, ports));
  std::map<std::string, int> seen;
  constexpr int kConnections = 100;
  for (int i = 0; i < kConnections; ++i) ++seen[exchange_until_close(s.port(31400), "x")];
  CHECK(seen["v1 x"] + seen["v2 x"] == kConnections);
  CHECK(seen["v1 x"] > 65);  // expected 80
  CHECK(seen["v2 x"] > 8);   // expected 20
}

TEST_CASE("istio samples: a TCP server without tcp routes warns and serves nothing") {
  std::string yaml = fixtures({"tcp-echo-all-v1.yaml", "tcp-echo-services.yaml"},
                              {{"TCP_ECHO_V1", "1"}, {"TCP_ECHO_V2", "2"}});
  yaml = yaml.substr(0, yaml.find("kind: VirtualService"));
  yaml = yaml.substr(0, yaml.rfind("---")) + "\n---\n" +
         fixtures({"tcp-echo-services.yaml"}, {{"TCP_ECHO_V1", "1"}, {"TCP_ECHO_V2", "2"}});
  auto loaded = load_ok(yaml);
  CHECK(loaded.config.listeners.empty());
  bool warned = false;
  for (const auto& w : loaded.warnings)
    warned = warned || w.find("no VirtualService tcp route") != std::string::npos;
  CHECK(warned);
}

TEST_CASE("istio loader: a port cannot carry TCP routes and HTTP at once") {
  std::string yaml = R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mixed}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8000, name: tcp, protocol: TCP}
    hosts: ["a.example.com"]
  - port: {number: 8000, name: http, protocol: HTTP}
    hosts: ["b.example.com"]
)";
  CHECK(load_error(yaml).find("carries TCP routes in one server and not in another") !=
        std::string::npos);
}

TEST_CASE("istio loader: tcp match sourceSubnet and gateways, weights per destination") {
  std::string yaml = fixtures({"tcp-echo-all-v1.yaml", "tcp-echo-services.yaml"},
                              {{"TCP_ECHO_V1", "1"}, {"TCP_ECHO_V2", "2"}}) +
                     R"(apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: from-ten}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - match:
    - {port: 31400, sourceSubnet: 10.0.0.0/8, gateways: [tcp-echo-gateway]}
    - {port: 9999}
    - {sourceLabels: {app: x}}
    route:
    - {destination: {host: tcp-echo, subset: v2}, weight: 30}
    - {destination: {host: tcp-echo, subset: v1}, weight: 70}
)";
  auto loaded = load_ok(yaml);
  REQUIRE(loaded.config.listeners.size() == 1);
  const auto& routes = loaded.config.listeners[0].tcp_routes;
  REQUIRE(routes.size() == 2);  // tcp-echo's, then from-ten's first match only
  CHECK(routes[0].source_subnets.empty());
  CHECK(routes[1].source_subnets == std::vector<std::string>{"10.0.0.0/8"});
  REQUIRE(routes[1].destinations.size() == 2);
  CHECK(routes[1].destinations[0].subset == "v2");
  CHECK(routes[1].destinations[0].weight == 30);
  CHECK(routes[1].destinations[1].weight == 70);
}

}  // namespace tunnel_samples_test
