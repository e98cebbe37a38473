// TLS origination through a real Gateway: plain HTTP in, TLS out (Istio's
// egress TLS origination task), with pooled and reused upstream connections.
#include <doctest/doctest.h>

#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"
#include "tls/tls_support.hpp"

namespace test_origination {

using namespace sluice;
using namespace sluice::test;

namespace {

GatewayConfig originating_config(uint16_t origin_port, UpstreamTls tls) {
  GatewayConfig cfg = single_upstream_config(origin_port);
  cfg.upstreams.at(0).tls = std::move(tls);
  return cfg;
}

}  // namespace

TEST_CASE("origination SIMPLE through the gateway, connection reused") {
  const Pki& p = pki();
  TlsOrigin origin("nginx", p.nginx);
  UpstreamTls tls;
  tls.sni = "nginx.example.com";
  tls.ca_certificates = p.ca2.text;
  TestGateway gw(originating_config(origin.port(), tls));
  RawClient client(gw.port(), std::chrono::seconds(5));
  for (int i = 0; i < 3; ++i) {
    REQUIRE(client.send(make_request("GET", "/")));
    auto r = client.read_response();
    REQUIRE_MESSAGE(r, client.error());
    CHECK(r->status == 200);
    CHECK(r->body.starts_with("nginx"));
  }
  // Three requests, one handshake: the TLS connection went back to the pool.
  CHECK(origin.handshakes() == 1);
}

TEST_CASE("origination refuses an upstream the CA does not vouch for") {
  const Pki& p = pki();
  TlsOrigin origin("nginx", p.nginx);  // signed by CA2
  UpstreamTls tls;
  tls.sni = "nginx.example.com";
  tls.ca_certificates = p.ca1.text;
  TestGateway gw(originating_config(origin.port(), tls));
  RawClient client(gw.port(), std::chrono::seconds(5));
  REQUIRE(client.send(make_request("GET", "/")));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 503);
}

TEST_CASE("origination MUTUAL presents the client certificate") {
  const Pki& p = pki();
  TlsOrigin origin("secure", p.nginx, &p.ca1);
  UpstreamTls tls;
  tls.mode = UpstreamTls::Mode::mutual;
  tls.sni = "nginx.example.com";
  tls.ca_certificates = p.ca2.text;
  tls.client_certificate = p.client.cert.text;
  tls.private_key = p.client.key.text;
  TestGateway gw(originating_config(origin.port(), tls));
  RawClient client(gw.port(), std::chrono::seconds(5));
  REQUIRE(client.send(make_request("GET", "/")));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 200);
  CHECK(r->body.find("client=") != std::string::npos);
  CHECK(r->body.find("client=-") == std::string::npos);
}

}  // namespace test_origination
