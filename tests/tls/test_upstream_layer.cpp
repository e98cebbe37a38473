// One upstream-connection layer: mirrors and health checks originate TLS
// like proxied requests, and pooled connections are keyed by upstream,
// endpoint and TLS settings, never by address alone (issue 11, part 1).

#include <doctest/doctest.h>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"
#include "tls/tls_support.hpp"

namespace test_upstream_layer {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

UpstreamTls tls_to_nginx(std::string sni = "nginx.example.com") {
  UpstreamTls tls;
  tls.sni = std::move(sni);
  tls.ca_certificates = pki().ca2.text;
  tls.subject_alt_names = {"nginx.example.com"};  // whatever SNI is sent
  return tls;
}

UpstreamConfig tls_upstream(std::string name, uint16_t port, UpstreamTls tls) {
  UpstreamConfig up = loopback_upstream(std::move(name), {port});
  up.tls = std::move(tls);
  return up;
}

Route route_to(std::string prefix, std::string upstream) {
  Route r = forward_all(upstream, upstream);
  r.matches.push_back(Matcher{}.path_prefix(std::move(prefix)));
  return r;
}

uint16_t get(RawClient& client, std::string_view target) {
  if (!client.send(make_request("GET", target))) return 0;
  auto r = client.read_response();
  return r ? r->status : 0;
}

}  // namespace

TEST_CASE("a mirror to a TLS upstream originates TLS") {
  FakeUpstream primary("primary");
  TlsOrigin shadow("shadow", pki().nginx);
  Route route = forward_all("primary");
  route.mirrors.push_back(Mirror{.upstream = "shadow"});
  GatewayConfig cfg = make_config({route}, {loopback_upstream("primary", {primary.port()}),
                                            tls_upstream("shadow", shadow.port(), tls_to_nginx())});
  // The origin keeps connections open despite `connection: close`, so the
  // mirror lingers: a short drain keeps the test quick.
  cfg.limits.drain_timeout = 200ms;
  TestGateway gw(std::move(cfg));
  RawClient client(gw.port());
  CHECK(get(client, "/mirrored") == 200);
  // A plaintext mirror never completes a handshake with a TLS origin.
  CHECK(wait_until([&] { return shadow.handshakes() >= 1; }));
}

TEST_CASE("a health check against a TLS upstream originates TLS and passes") {
  TlsOrigin origin("nginx", pki().nginx);
  UpstreamConfig up = tls_upstream("backend", origin.port(), tls_to_nginx());
  up.health_check = HealthCheck{.path = "/healthz",
                                .interval = 10ms,
                                .timeout = 2000ms,
                                .healthy_threshold = 1,
                                .unhealthy_threshold = 1};
  TestGateway gw(make_config({forward_all("backend")}, {up}));
  // Probes that handshake and get their 200; a plaintext probe would fail
  // the first time and mark the endpoint unhealthy.
  REQUIRE(wait_until([&] { return origin.handshakes() >= 3; }));
  auto view = gw.gateway().upstream("backend");
  REQUIRE(view.endpoints.size() == 1);
  CHECK(view.endpoints[0].healthy);
  RawClient client(gw.port());
  CHECK(get(client, "/") == 200);
}

TEST_CASE("two upstreams at one address with different SNI never share a connection") {
  TlsOrigin origin("nginx", pki().nginx);
  GatewayConfig cfg =
      make_config({route_to("/a", "a"), route_to("/b", "b")},
                  {tls_upstream("a", origin.port(), tls_to_nginx("nginx.example.com")),
                   tls_upstream("b", origin.port(), tls_to_nginx("b.example.com"))});
  TestGateway gw(std::move(cfg), 1);
  RawClient client(gw.port());
  CHECK(get(client, "/a") == 200);
  CHECK(get(client, "/a") == 200);
  CHECK(origin.handshakes() == 1);  // a's connection is pooled and reused
  CHECK(get(client, "/b") == 200);
  CHECK(origin.handshakes() == 2);  // b gets its own, with its own SNI
  CHECK(get(client, "/a") == 200);
  CHECK(origin.handshakes() == 2);
}

TEST_CASE("a reload that changes an upstream's TLS settings stops reusing its connections") {
  TlsOrigin origin("nginx", pki().nginx);
  auto config = [&](std::string sni) {
    return make_config({forward_all("backend")},
                       {tls_upstream("backend", origin.port(), tls_to_nginx(std::move(sni)))});
  };
  TestGateway gw(config("nginx.example.com"), 1);
  RawClient client(gw.port());
  CHECK(get(client, "/") == 200);
  CHECK(get(client, "/") == 200);
  CHECK(origin.handshakes() == 1);
  // Same settings again: the pooled connection is still good.
  REQUIRE(gw.apply(config("nginx.example.com")).ok());
  CHECK(get(client, "/") == 200);
  CHECK(origin.handshakes() == 1);
  REQUIRE(gw.apply(config("other.example.com")).ok());
  CHECK(get(client, "/") == 200);
  CHECK(origin.handshakes() == 2);
}

}  // namespace test_upstream_layer
