// An ext_authz provider behind TLS (issue 12, section 3): the check goes
// through the upstream-connection layer with the provider upstream's TLS
// settings (a DestinationRule's tls in Istio terms), and its connection is
// pooled for the next check.
#include <doctest/doctest.h>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"
#include "tls/tls_support.hpp"

namespace test_ext_authz_tls {

using namespace sluice;
using namespace sluice::test;

namespace {

// Every request to "backend"; CUSTOM on all of them, asking the TLS origin
// (which answers 200 to everything: allow).
GatewayConfig config(uint16_t backend, uint16_t provider_port, UpstreamTls tls) {
  GatewayConfig cfg = single_upstream_config(backend);
  UpstreamConfig authz = loopback_upstream("ext-authz", {provider_port});
  authz.tls = std::move(tls);
  cfg.upstreams.push_back(std::move(authz));
  ExtAuthzHttpProvider p;
  p.name = "tls-authz";
  p.service = "ext-authz";
  cfg.security.ext_authz_providers.push_back(p);
  AuthorizationPolicy policy;
  policy.name = "ext";
  policy.ns = "istio-system";
  policy.action = AuthzAction::custom;
  policy.provider = "tls-authz";
  policy.rules.push_back(AuthzRule{});
  cfg.security.authorization.push_back(policy);
  return cfg;
}

}  // namespace

TEST_CASE("ext_authz over TLS: checks use the provider upstream's TLS and are pooled") {
  const Pki& p = pki();
  FakeUpstream backend("backend");
  TlsOrigin provider("authz", p.nginx);
  UpstreamTls tls;
  tls.sni = "nginx.example.com";

  SUBCASE("trusted: allowed, one handshake for two checks") {
    tls.ca_certificates = p.ca2.text;
    TestGateway gw(config(backend.port(), provider.port(), tls));
    RawClient client(gw.port());
    for (int i = 0; i < 2; ++i) {
      REQUIRE(client.send(make_request("GET", "/")));
      auto r = client.read_response();
      REQUIRE_MESSAGE(r, client.error());
      CHECK(r->status == 200);
      CHECK(r->body == "backend");
    }
    CHECK(backend.request_count() == 2);
    CHECK(provider.handshakes() == 1);
  }
  SUBCASE("a provider certificate from another CA: the check fails closed") {
    tls.ca_certificates = p.ca1.text;
    TestGateway gw(config(backend.port(), provider.port(), tls));
    RawClient client(gw.port());
    REQUIRE(client.send(make_request("GET", "/")));
    auto r = client.read_response();
    REQUIRE_MESSAGE(r, client.error());
    CHECK(r->status == 403);
    CHECK(backend.request_count() == 0);
  }
}

}  // namespace test_ext_authz_tls
