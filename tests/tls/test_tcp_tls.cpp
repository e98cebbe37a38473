// TLS terminated by the gateway, then a TCP route (Istio protocol TLS with
// mode SIMPLE and a VirtualService tcp route): the bytes inside TLS reach the
// upstream as they were sent, never parsed as HTTP.
#include <doctest/doctest.h>

#include "support/gateway_fixture.hpp"
#include "support/tunnel_upstream.hpp"
#include "tls/tls_support.hpp"

namespace test_tcp_tls {

using namespace sluice;
using namespace sluice::test;

TEST_CASE("TLS SIMPLE to a TCP route: terminated, then relayed as bytes") {
  const Pki& p = pki();
  TunnelUpstream up(TunnelUpstream::Mode::answer_200);
  GatewayConfig cfg = make_config({}, {loopback_upstream("raw", {up.port()})});
  TlsServer server;
  server.sni_hosts = {"httpbin.example.com"};
  server.certificate_chain = p.httpbin.cert.text;
  server.private_key = p.httpbin.key.text;
  cfg.listeners[0].tls_servers = {server};
  cfg.listeners[0].tcp_routes = {TcpRoute{.name = "raw", .destinations = {destination("raw")}}};
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(cfg, 1, hooks);
  TlsClient c(gw.port(), {.sni = "httpbin.example.com", .ca = &p.ca1});
  REQUIRE_MESSAGE(c.handshake(), c.error());
  auto r = c.get("/inside", "anything.example");
  REQUIRE(r);
  CHECK(r->body == "no");
  auto heads = up.heads();
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].find("/inside") != std::string::npos);
  // Not HTTP-proxied: no forwarding headers were added.
  CHECK(heads[0].find("x-forwarded-for") == std::string::npos);
  CHECK(heads[0].find("x-request-id") == std::string::npos);
  CHECK(hooks->logs().empty());  // TCP connections are not HTTP requests for on_log
}

}  // namespace test_tcp_tls
