// The admin server (include/sluice/admin.hpp) over real sockets: every
// path's status and content type, JSON that parses, /clusters against
// Gateway::upstream, readiness before apply and while draining, the
// server's own bounds, and the graph sampled on an injected clock.

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace admin_test {

using namespace sluice::test;
using namespace sluice;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

AdminOptions ephemeral() {
  AdminOptions o;
  o.port = 0;
  return o;
}

HttpResponse get(uint16_t port, std::string_view target, std::string_view method = "GET") {
  RawClient client(port, 5s);
  REQUIRE(client.send(make_request(method, target, "localhost")));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r.has_value(), client.error());
  return *r;
}

std::string content_type(const HttpResponse& r) {
  return r.header("content-type").value_or("");
}

// Two versions of "reviews" behind one upstream, split 50/50 by subset.
GatewayConfig two_versions(uint16_t v1, uint16_t v2) {
  UpstreamConfig up;
  up.name = "reviews";
  up.endpoints = {{"127.0.0.1", v1, {{"version", "v1"}}, 1},
                  {"127.0.0.1", v2, {{"version", "v2"}}, 1}};
  up.subsets = {{"v1", {{"version", "v1"}}}, {"v2", {{"version", "v2"}}}};
  Route r;
  r.name = "reviews-split";
  r.origin = "VirtualService default/reviews";
  r.destinations = {{"reviews", "v1", 50}, {"reviews", "v2", 50}};
  return make_config({r}, {up});
}

}  // namespace

TEST_CASE("admin: /ready and /healthz/ready answer 503 before the first config, 200 once serving") {
  Gateway gateway;
  AdminServer admin(gateway, ephemeral());
  REQUIRE(admin.start());
  REQUIRE(admin.port() != 0);
  auto before = get(admin.port(), "/ready");
  CHECK(before.status == 503);
  CHECK(before.body == "PRE_INITIALIZING\n");
  CHECK(get(admin.port(), "/healthz/ready").status == 503);
  CHECK(get(admin.port(), "/config_dump").status == 503);

  FakeUpstream up;
  REQUIRE(gateway.apply(single_upstream_config(up.port())));
  gateway.start();
  auto ready = get(admin.port(), "/ready");
  CHECK(ready.status == 200);
  CHECK(ready.body == "LIVE\n");
  CHECK(get(admin.port(), "/healthz/ready").status == 200);
  gateway.stop();
  CHECK(get(admin.port(), "/ready").status == 503);
}

TEST_CASE("admin: /ready answers 503 while the gateway drains a request in flight") {
  FakeUpstream up;
  up.set_handler([](const Received&) {
    Reply r;
    r.hold = true;
    return r;
  });
  TestGateway gw(single_upstream_config(up.port()));
  AdminServer admin(gw.gateway(), ephemeral());
  REQUIRE(admin.start());
  CHECK(get(admin.port(), "/ready").status == 200);

  RawClient client(gw.port(), 10s);
  REQUIRE(client.send(make_request("GET", "/")));
  REQUIRE(up.wait_for_requests(1));
  REQUIRE(wait_until([&] { return up.held() == 1; }));
  std::thread stopper([&] { gw.stop(); });
  bool draining = wait_until([&] { return get(admin.port(), "/ready").status == 503; });
  CHECK(draining);
  // Still draining: the held request has not finished.
  CHECK(up.held() == 1);
  up.release();
  auto r = client.read_response();
  stopper.join();
  REQUIRE(r.has_value());
  CHECK(r->status == 200);
  CHECK(get(admin.port(), "/ready").body == "DRAINING\n");
}

TEST_CASE("admin: every path answers with its content type") {
  FakeUpstream v1("v1"), v2("v2");
  TestGateway gw(two_versions(v1.port(), v2.port()));
  AdminServer admin(gw.gateway(), ephemeral());
  REQUIRE(admin.start());

  auto prom = get(admin.port(), "/stats/prometheus");
  CHECK(prom.status == 200);
  CHECK(content_type(prom).starts_with("text/plain; version=0.0.4"));
  CHECK(prom.body == gw.gateway().stats().prometheus());

  auto stats = get(admin.port(), "/stats");
  CHECK(stats.status == 200);
  CHECK(content_type(stats) == "text/plain");

  for (const char* path : {"/config_dump", "/clusters", "/graph.json", "/graph.json?window=5m",
                           "/graph.json?window=15m&endpoints=1"}) {
    auto r = get(admin.port(), path);
    CHECK_MESSAGE(r.status == 200, path);
    CHECK_MESSAGE(content_type(r) == "application/json", path);
    CHECK_MESSAGE(json::accept(r.body), path);
  }

  auto page = get(admin.port(), "/graph");
  CHECK(page.status == 200);
  CHECK(content_type(page) == "text/html; charset=utf-8");
  CHECK(page.body.find("<svg") != std::string::npos);
  CHECK(page.body.find("graph.json") != std::string::npos);
  // Self-contained: nothing is fetched from another origin.
  CHECK(page.body.find("src=\"http") == std::string::npos);
  CHECK(page.body.find("href=\"http") == std::string::npos);

  CHECK(get(admin.port(), "/graph.json?window=2h").status == 400);
}

TEST_CASE("admin: unknown paths are 404, other methods 405") {
  Gateway gateway;
  AdminServer admin(gateway, ephemeral());
  REQUIRE(admin.start());
  CHECK(get(admin.port(), "/nope").status == 404);
  CHECK(get(admin.port(), "/").status == 404);
  auto post = get(admin.port(), "/ready", "DELETE");
  CHECK(post.status == 405);
  CHECK(post.header("allow") == "GET");
}

TEST_CASE("admin: /config_dump holds listeners, routes with their origin, and upstreams") {
  FakeUpstream v1("v1"), v2("v2");
  TestGateway gw(two_versions(v1.port(), v2.port()));
  AdminServer admin(gw.gateway(), ephemeral());
  REQUIRE(admin.start());
  auto j = json::parse(get(admin.port(), "/config_dump").body);
  REQUIRE(j["listeners"].size() == 1);
  CHECK(j["listeners"][0]["name"] == "main");
  CHECK(j["listeners"][0]["router"] == "main");
  const auto& route = j["routers"][0]["virtual_hosts"][0]["routes"][0];
  CHECK(route["name"] == "reviews-split");
  CHECK(route["origin"] == "VirtualService default/reviews");
  CHECK(route["action"] == "forward");
  CHECK(route["destinations"].size() == 2);
  REQUIRE(j["upstreams"].size() == 1);
  const auto& up = j["upstreams"][0];
  CHECK(up["name"] == "reviews");
  CHECK(up["endpoints"].size() == 2);
  CHECK(up["endpoints"][1]["port"] == v2.port());
  CHECK(up["endpoints"][1]["labels"]["version"] == "v2");
  CHECK(up["subsets"].size() == 2);
  CHECK(up["load_balancer"] == "LEAST_REQUEST");
  CHECK(up["pool"].contains("max_connections"));

  // The endpoints served now, after an update, not the compiled ones.
  REQUIRE(
      gw.gateway().update_endpoints("reviews", {{"127.0.0.1", v1.port(), {{"version", "v1"}}, 1}}));
  auto k = json::parse(get(admin.port(), "/config_dump").body);
  CHECK(k["upstreams"][0]["endpoints"].size() == 1);
}

TEST_CASE("admin: /clusters matches Gateway::upstream") {
  FakeUpstream v1("v1"), v2("v2");
  TestGateway gw(two_versions(v1.port(), v2.port()));
  AdminServer admin(gw.gateway(), ephemeral());
  REQUIRE(admin.start());
  for (int i = 0; i < 4; ++i) CHECK(get(gw.port(), "/").status == 200);
  auto j = json::parse(get(admin.port(), "/clusters").body);
  UpstreamView view = gw.gateway().upstream("reviews");
  REQUIRE(j["upstreams"].size() == 1);
  const auto& up = j["upstreams"][0];
  CHECK(up["name"] == "reviews");
  CHECK(up["overflows"] == view.overflows);
  REQUIRE(up["endpoints"].size() == view.endpoints.size());
  for (size_t i = 0; i < view.endpoints.size(); ++i) {
    const auto& e = up["endpoints"][i];
    CHECK(e["address"] == view.endpoints[i].address);
    CHECK(e["healthy"] == view.endpoints[i].healthy);
    CHECK(e["ejected"] == view.endpoints[i].ejected);
    CHECK(e["ejections"] == view.endpoints[i].ejections);
    CHECK(e["active_requests"] == view.endpoints[i].active_requests);
  }
  CHECK(up["endpoints"][0]["address"] == "127.0.0.1:" + std::to_string(v1.port()));
  // Keep-alive pooled connections to the endpoints show up.
  uint64_t connections = 0;
  for (const auto& e : up["endpoints"]) connections += e["connections"].get<uint64_t>();
  CHECK(connections >= 1);
}

TEST_CASE("admin: several requests on one keep-alive connection") {
  Gateway gateway;
  AdminServer admin(gateway, ephemeral());
  REQUIRE(admin.start());
  RawClient client(admin.port(), 5s);
  REQUIRE(client.send(make_request("GET", "/ready", "localhost") +
                      make_request("GET", "/nope", "localhost")));
  auto a = client.read_response();
  auto b = client.read_response();
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->status == 503);
  CHECK(b->status == 404);
  REQUIRE(client.send(make_request("GET", "/ready", "localhost", {{"connection", "close"}})));
  auto c = client.read_response();
  REQUIRE(c.has_value());
  CHECK(c->header("connection") == "close");
  CHECK(client.is_closed());
}

TEST_CASE("admin: bounded like the gateway: header limits, connection cap, header timeout") {
  Gateway gateway;
  AdminOptions o = ephemeral();
  o.max_connections = 2;
  o.max_request_header_bytes = 1024;
  o.request_header_timeout = 200ms;
  AdminServer admin(gateway, o);
  REQUIRE(admin.start());

  {
    RawClient client(admin.port(), 5s);
    REQUIRE(client.send(
        make_request("GET", "/ready", "localhost", {{"x-big", std::string(2000, 'a')}})));
    auto r = client.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status == 431);
    CHECK(client.is_closed());
  }
  {
    // A head that never ends is cut at the header timeout (the server's
    // own real-time bound: the wait is for the close, not a sleep).
    RawClient slow(admin.port(), 5s);
    REQUIRE(slow.send("GET /ready HTTP/1.1\r\nhost: x\r\n"));
    CHECK(slow.is_closed());
  }
  {
    RawClient a(admin.port(), 5s), b(admin.port(), 5s);
    REQUIRE(a.send(make_request("GET", "/ready", "localhost")));
    REQUIRE(b.send(make_request("GET", "/ready", "localhost")));
    REQUIRE(a.read_response().has_value());
    REQUIRE(b.read_response().has_value());
    // Two kept open: a third is accepted and closed.
    RawClient c(admin.port(), 5s);
    CHECK(c.is_closed());
  }
}

TEST_CASE("admin: a server limited to some paths answers 404 for the rest") {
  Gateway gateway;
  AdminOptions o = ephemeral();
  o.paths = {"/healthz/ready"};
  AdminServer admin(gateway, o);
  REQUIRE(admin.start());
  CHECK(get(admin.port(), "/healthz/ready").status == 503);
  CHECK(get(admin.port(), "/stats/prometheus").status == 404);
  CHECK(get(admin.port(), "/ready").status == 404);
}

TEST_CASE("admin: a taken port is an error naming it, and stop is idempotent") {
  Gateway gateway;
  AdminServer first(gateway, ephemeral());
  REQUIRE(first.start());
  AdminOptions o;
  o.port = first.port();
  AdminServer second(gateway, o);
  auto st = second.start();
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().to_string().find(std::to_string(first.port())) != std::string::npos);
  AdminOptions bad = ephemeral();
  bad.address = "localhost";
  CHECK_FALSE(AdminServer(gateway, bad).start().ok());
  first.stop();
  first.stop();
  RawClient client(o.port, 2s);
  CHECK_FALSE(client.connected());
}

TEST_CASE("admin: /graph.json from samples taken on an injected clock") {
  ManualClock clock;
  FakeUpstream v1("v1"), v2("v2");
  // Shared: the upstream calls a copy of the handler per request.
  auto n = std::make_shared<std::atomic<int>>(0);
  v2.set_handler([n](const Received&) {
    Reply r;
    r.status = ++*n % 5 == 0 ? 500 : 200;
    return r;
  });
  TestGateway gw(two_versions(v1.port(), v2.port()));
  AdminOptions o = ephemeral();
  o.clock = clock.fn();
  AdminServer admin(gw.gateway(), o);
  REQUIRE(admin.start());  // the first sample, before any traffic

  // One sample: no window yet, only the gateway.
  auto empty = json::parse(get(admin.port(), "/graph.json").body);
  CHECK(empty["nodes"].size() == 1);
  CHECK(empty["edges"].empty());

  for (int i = 0; i < 40; ++i) REQUIRE(get(gw.port(), "/").status >= 200);
  // A response reaches the client just before its request is counted.
  REQUIRE(wait_until([&] {
    uint64_t n = 0;
    for (const auto& s : gw.gateway().stats().requests) n += s.requests;
    return n == 40;
  }));
  clock.advance(10s);
  admin.sample();
  auto j = json::parse(get(admin.port(), "/graph.json?endpoints=1").body);
  CHECK(j["elapsed_seconds"].get<double>() == doctest::Approx(10));
  uint64_t total = 0;
  bool failing = false;
  for (const auto& e : j["edges"]) {
    if (e["source"] == "gateway") total += e["requests"].get<uint64_t>();
    if (e["target"].get<std::string>().ends_with(":v2")) failing = e["health"] != "healthy";
  }
  INFO(j.dump());
  CHECK(total == 40);
  CHECK(failing);
}

}  // namespace admin_test
