// A TLS connection is routed only by the Gateway servers its handshake
// selected (issue 10, item 4): the Host header cannot reach a virtual host
// of another server on the same port, in particular not a MUTUAL one
// without a client certificate.
#include <doctest/doctest.h>

#include <string>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "tls/tls_support.hpp"

namespace test_sni_host {

using namespace sluice;
using namespace sluice::test;

namespace {

struct SniHostSetup {
  KeyPair public_cert = make_leaf_cert(
      "public", "/O=public/CN=public.example.com",
      "subjectAltName=DNS:public.example.com\nbasicConstraints=CA:FALSE\n", "ca1", 401);
  KeyPair mtls_cert = make_leaf_cert(
      "mtls", "/O=mtls/CN=mtls.example.com",
      "subjectAltName=DNS:mtls.example.com\nbasicConstraints=CA:FALSE\n", "ca1", 402);
  FakeUpstream public_up{"public"};
  FakeUpstream mtls_up{"mtls"};

  GatewayConfig config() const {
    const Pki& p = pki();
    GatewayConfig cfg = make_config({}, {loopback_upstream("public", {public_up.port()}),
                                         loopback_upstream("mtls", {mtls_up.port()})});
    VirtualHost pub;
    pub.name = "public";
    pub.domains = {"public.example.com"};
    pub.routes = {forward_all("public")};
    VirtualHost mtls;
    mtls.name = "mtls";
    mtls.domains = {"mtls.example.com"};
    mtls.routes = {forward_all("mtls")};
    cfg.routers[0].virtual_hosts = {pub, mtls};

    TlsServer simple;
    simple.sni_hosts = {"public.example.com"};
    simple.certificate_chain = public_cert.cert.text;
    simple.private_key = public_cert.key.text;
    TlsServer mutual;
    mutual.sni_hosts = {"mtls.example.com"};
    mutual.mode = TlsServer::Mode::mutual;
    mutual.certificate_chain = mtls_cert.cert.text;
    mutual.private_key = mtls_cert.key.text;
    mutual.ca_certificates = p.ca1.text;
    cfg.listeners[0].tls_servers = {simple, mutual};
    return cfg;
  }
};

}  // namespace

TEST_CASE("SNI and Host: a request is routed only by the servers its handshake selected") {
  const Pki& p = pki();
  SniHostSetup setup;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(setup.config(), 1, hooks);
  uint16_t port = gw.port();

  auto get = [&](const std::string& sni, const std::string& host, const KeyPair* cert) {
    TlsClient c(port, {.sni = sni, .ca = &p.ca1, .cert = cert});
    REQUIRE_MESSAGE(c.handshake(), c.error());
    auto r = c.get("/", host);
    REQUIRE_MESSAGE(r, c.error());
    return *r;
  };

  SUBCASE("public SNI, Host of the MUTUAL server: 404 NR, nothing reaches its upstream") {
    auto r = get("public.example.com", "mtls.example.com", nullptr);
    CHECK(r.status == 404);
    REQUIRE(hooks->wait_for_logs(1));
    CHECK(hooks->logs()[0].flags == "NR");
    CHECK(setup.mtls_up.request_count() == 0);
    CHECK(setup.public_up.request_count() == 0);
  }
  SUBCASE("public SNI, public Host: 200") {
    auto r = get("public.example.com", "public.example.com", nullptr);
    CHECK(r.status == 200);
    CHECK(r.body == "public");
  }
  SUBCASE("public SNI, public Host with a port: 200") {
    auto r = get("public.example.com", "public.example.com:443", nullptr);
    CHECK(r.status == 200);
    CHECK(r.body == "public");
  }
  SUBCASE("MUTUAL SNI with a client certificate, its own Host: 200") {
    auto r = get("mtls.example.com", "mtls.example.com", &p.client);
    CHECK(r.status == 200);
    CHECK(r.body == "mtls");
  }
  SUBCASE("MUTUAL SNI, Host of the other server: 404 NR") {
    auto r = get("mtls.example.com", "public.example.com", &p.client);
    CHECK(r.status == 404);
    CHECK(setup.public_up.request_count() == 0);
  }
}

}  // namespace test_sni_host
