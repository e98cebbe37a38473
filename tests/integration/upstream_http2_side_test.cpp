// Mirrors, active health checks and TCP relays to an upstream marked
// HTTP/2, over real sockets against the in-process h2c-only upstream: a
// mirror and a probe go as h2 streams (an HTTP/1.1 request there would be a
// protocol error), while a TCP route still connects raw.

#include <doctest/doctest.h>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/h2_upstream.hpp"
#include "support/manual_clock.hpp"
#include "support/raw_client.hpp"
#include "support/tunnel_upstream.hpp"
#include "support/wait.hpp"

namespace upstream_http2_side_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

UpstreamConfig h2_upstream(std::string name, uint16_t port) {
  UpstreamConfig up = loopback_upstream(std::move(name), {port});
  up.protocol = UpstreamProtocol::http2;
  return up;
}

bool endpoint_healthy(Gateway& gw) {
  auto view = gw.upstream("backend");
  return !view.endpoints.empty() && view.endpoints[0].healthy;
}

}  // namespace

TEST_CASE("h2 side: a mirror reaches an h2c-only upstream and the primary answer is unaffected") {
  FakeUpstream primary("primary");
  H2Upstream shadow;
  Route route = forward_all("a");
  route.mirrors.push_back(Mirror{.upstream = "b"});
  UpstreamConfig b = h2_upstream("b", shadow.port());
  // One stream at a time: a second mirror gets its place only once the
  // first one's exchange ended (on the answer, not on the mirror timeout).
  b.pool.max_requests = 1;
  // The mirror timeout runs on this clock, which stands still.
  ManualClock clock;
  TestGateway gw(make_config({route}, {loopback_upstream("a", {primary.port()}), b}), 1, nullptr,
                 &clock);

  RawClient client(gw.port());
  REQUIRE(client.send(make_request("POST", "/m?x=1", "example.com", {}, "hello")));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 200);
  CHECK(r->body == "primary");
  REQUIRE(primary.wait_for_requests(1));
  CHECK(primary.last_request()->body == "hello");

  REQUIRE(shadow.wait_for_requests(1));
  auto got = shadow.received();
  REQUIRE(got.size() == 1);
  CHECK(got[0].head.method == "POST");
  CHECK(got[0].head.target == "/m?x=1");
  CHECK(got[0].head.authority == "example.com-shadow");
  CHECK(got[0].body == "hello");
  CHECK_FALSE(got[0].head.headers.contains("connection"));

  // Later mirrors are admitted once the first stream is done, on the same
  // h2 connection (while it is open, they overflow max_requests).
  bool second = wait_until([&] {
    if (!client.send(make_request("GET", "/again"))) return false;
    auto again = client.read_response();
    if (!again || again->status != 200) return false;
    return shadow.wait_for_requests(2, 20ms);
  });
  CHECK(second);
  CHECK(shadow.connections() == 1);
  CHECK(primary.request_count() >= 2);
}

TEST_CASE("h2 side: an HTTP health check to an h2c-only upstream goes as an h2 stream") {
  H2Upstream up;
  std::atomic<uint16_t> health_status{503};
  up.set_handler([&](const H2Request& r) {
    H2Reply reply;
    if (r.head.target == "/healthz") reply.status = health_status.load();
    return reply;
  });
  UpstreamConfig backend = h2_upstream("backend", up.port());
  backend.health_check = HealthCheck{.path = "/healthz",
                                     .interval = 10s,
                                     .timeout = 1s,
                                     .healthy_threshold = 1,
                                     .unhealthy_threshold = 1};
  ManualClock clock;
  TestGateway gw(make_config({forward_all("backend")}, {backend}), 1, nullptr, &clock);

  // The first probe runs at install and gets the 503.
  REQUIRE(wait_until([&] { return !endpoint_healthy(gw.gateway()); }));
  auto got = up.received();
  REQUIRE_FALSE(got.empty());
  CHECK(got[0].head.method == "GET");
  CHECK(got[0].head.target == "/healthz");
  CHECK(got[0].head.headers.get("user-agent") == "sluice-health-check");

  health_status = 200;
  size_t before = up.requests();
  clock.advance(10s);
  REQUIRE(up.wait_for_requests(before + 1));
  CHECK(wait_until([&] { return endpoint_healthy(gw.gateway()); }));

  health_status = 503;
  before = up.requests();
  clock.advance(10s);
  REQUIRE(up.wait_for_requests(before + 1));
  CHECK(wait_until([&] { return !endpoint_healthy(gw.gateway()); }));

  // The probes shared one h2 connection, kept open between them.
  CHECK(up.connections() == 1);
}

TEST_CASE("h2 side: a TCP route to an upstream marked http2 still relays raw bytes") {
  TunnelUpstream echo(TunnelUpstream::Mode::echo);
  GatewayConfig config = make_config({}, {h2_upstream("echo", echo.port())});
  ListenerConfig l;
  l.name = "tcp";
  l.address = "127.0.0.1";
  l.tcp_routes.push_back(TcpRoute{.name = "echo", .destinations = {destination("echo")}});
  config.listeners.push_back(std::move(l));
  TestGateway gw(std::move(config));
  RawClient c(gw.port("tcp"));
  REQUIRE(c.send("not http at all"));
  c.shutdown_send();
  CHECK(c.read_all_until_close() == "not http at all");
}

TEST_CASE("h2 side: a health probe to an HTTP/2 upstream takes no max_requests place") {
  H2Upstream up;
  up.hold_until(2);  // the first probe waits for the traffic request
  UpstreamConfig backend = h2_upstream("backend", up.port());
  backend.health_check = HealthCheck{.path = "/healthz", .interval = 10s, .timeout = 5s};
  backend.pool.max_requests = 1;
  ManualClock clock;
  TestGateway gw(make_config({forward_all("backend")}, {backend}), 1, nullptr, &clock);
  REQUIRE(up.wait_for_requests(1));
  // Were the held probe counted, this request would overflow (503 UO).
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/traffic")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  CHECK(up.connections() == 2);  // the probes' own and traffic's
  CHECK(gw.gateway().upstream("backend").overflows == 0);
}

}  // namespace upstream_http2_side_test
