// Circuit breaking (Istio's task: maxConnections 1, http1MaxPendingRequests
// 1, maxRequestsPerConnection 1), outlier ejection with an injected clock,
// an endpoint killed mid-test, state across reloads.

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace resilience_limits_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

std::optional<HttpResponse> get(uint16_t port, std::string_view target = "/") {
  RawClient c(port);
  if (!c.send(make_request("GET", target))) return std::nullopt;
  return c.read_response();
}

// A Gateway on a ManualClock (TestGateway runs one worker here; this runs two).
struct ClockedGateway {
  ManualClock clock;
  std::unique_ptr<Gateway> gw;
  explicit ClockedGateway(GatewayConfig config) {
    gw = std::make_unique<Gateway>(GatewayOptions{.workers = 2, .clock = clock.fn()});
    clock.drive(*gw);
    auto st = gw->apply(std::move(config));
    REQUIRE_MESSAGE(st.ok(), st.error().to_string());
    gw->start();
  }
  ~ClockedGateway() {
    gw->stop();
    clock.forget(*gw);
  }
  uint16_t port() { return gw->port("main"); }
};

const UpstreamView::EndpointView* endpoint(const UpstreamView& v, uint16_t port) {
  for (const auto& e : v.endpoints)
    if (e.address == "127.0.0.1:" + std::to_string(port)) return &e;
  return nullptr;
}

}  // namespace

TEST_CASE("resilience: circuit breaking as in Istio's task") {
  FakeUpstream up("httpbin");
  up.set_handler([](const Received&) {
    Reply r;
    r.body = "ok";
    r.delay = 20ms;                 // requests overlap under concurrency
    r.close_after_response = true;  // the upstream's count drops before the gateway moves on
    return r;
  });
  auto cfg = loopback_upstream("backend", {up.port()});
  cfg.pool.max_connections = 1;
  cfg.pool.max_pending_requests = 1;
  cfg.pool.max_requests_per_connection = 1;
  Route route = forward_all("backend");
  route.retries.attempts = 0;
  TestGateway gw(make_config({route}, {cfg}), 2);

  SUBCASE("one sequential client always succeeds") {
    RawClient c(gw.port());
    for (int i = 0; i < 10; ++i) {
      REQUIRE(c.send(make_request("GET", "/")));
      auto r = c.read_response();
      REQUIRE(r);
      CHECK(r->status == 200);
    }
  }
  SUBCASE("three concurrent clients see some 503 with x-envoy-overloaded") {
    std::atomic<int> ok{0}, overloaded{0}, other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < 15; ++i) {
          auto r = get(gw.port());
          if (r && r->status == 200)
            ++ok;
          else if (r && r->status == 503 && r->header("x-envoy-overloaded") == "true")
            ++overloaded;
          else
            ++other;
        }
      });
    for (auto& t : threads) t.join();
    CHECK(ok > 0);
    CHECK(overloaded > 0);
    CHECK(other == 0);
    CHECK(gw.gateway().upstream("backend").overflows == uint64_t(overloaded.load()));
  }
  CHECK(up.max_concurrent_connections() == 1);
  CHECK(wait_until([&] { return gw.gateway().upstream("backend").connections == 0; }));
  CHECK(gw.gateway().upstream("backend").pending_requests == 0);
}

TEST_CASE(
    "resilience: an endpoint answering 503 is ejected, then returns after the ejection time") {
  FakeUpstream bad("bad"), good("good");
  bad.set_handler([](const Received&) {
    Reply r;
    r.status = 503;
    r.body = "bad";
    return r;
  });
  auto cfg = loopback_upstream("backend", {bad.port(), good.port()});
  cfg.load_balancer = LoadBalancer::round_robin;
  cfg.outlier_detection = OutlierDetection{.consecutive_5xx = 3, .base_ejection_time = 30s};
  Route route = forward_all("backend");
  route.retries.attempts = 0;  // count every 503 the client would see
  ClockedGateway gw(make_config({route}, {cfg}));

  for (int i = 0; i < 20 && bad.request_count() < 3; ++i) REQUIRE(get(gw.port()));
  CHECK(bad.request_count() == 3);
  auto view = gw.gw->upstream("backend");
  REQUIRE(endpoint(view, bad.port()));
  CHECK(endpoint(view, bad.port())->ejected);
  CHECK(endpoint(view, bad.port())->ejections == 1);
  CHECK_FALSE(endpoint(view, good.port())->ejected);

  for (int i = 0; i < 10; ++i) {
    auto r = get(gw.port());
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(bad.request_count() == 3);

  gw.clock.advance(29s);
  for (int i = 0; i < 4; ++i) CHECK(get(gw.port())->status == 200);
  CHECK(bad.request_count() == 3);
  gw.clock.advance(1s);  // 30 s: back in rotation
  CHECK_FALSE(endpoint(gw.gw->upstream("backend"), bad.port())->ejected);
  for (int i = 0; i < 6; ++i) REQUIRE(get(gw.port()));
  CHECK(bad.request_count() > 3);
}

TEST_CASE("resilience: ejection and counters survive Gateway::apply of a changed config") {
  FakeUpstream bad("bad"), good("good"), extra("extra");
  bad.set_handler([](const Received&) { return Reply{.status = 500}; });
  auto cfg = loopback_upstream("backend", {bad.port(), good.port()});
  cfg.load_balancer = LoadBalancer::round_robin;
  cfg.outlier_detection = OutlierDetection{.consecutive_5xx = 2, .max_ejection_percent = 50};
  Route route = forward_all("backend");
  route.retries.attempts = 0;
  ClockedGateway gw(make_config({route}, {cfg}));
  for (int i = 0; i < 10 && bad.request_count() < 2; ++i) REQUIRE(get(gw.port()));
  REQUIRE(endpoint(gw.gw->upstream("backend"), bad.port())->ejected);

  auto changed = loopback_upstream("backend", {bad.port(), good.port(), extra.port()});
  changed.load_balancer = LoadBalancer::round_robin;
  changed.outlier_detection = cfg.outlier_detection;
  Route other = forward_all("backend", "renamed");
  other.retries.attempts = 0;
  auto st = gw.gw->apply(make_config({other}, {changed}));
  REQUIRE(st.ok());
  auto view = gw.gw->upstream("backend");
  CHECK(view.endpoints.size() == 3);
  CHECK(endpoint(view, bad.port())->ejected);
  CHECK(endpoint(view, bad.port())->ejections == 1);
  size_t bad_before = bad.request_count();
  for (int i = 0; i < 12; ++i) CHECK(get(gw.port())->status == 200);
  CHECK(bad.request_count() == bad_before);
  CHECK(extra.request_count() > 0);
}

TEST_CASE("resilience: a killed endpoint costs at most the requests in flight on it") {
  FakeUpstream a("a"), b("b");
  b.set_handler([](const Received&) {
    Reply r;
    r.body = "b";
    r.hold = true;
    return r;
  });
  auto cfg = loopback_upstream("backend", {a.port(), b.port()});
  cfg.load_balancer = LoadBalancer::round_robin;
  // Default route retries (Istio's): connect failures retried, 2 attempts.
  TestGateway gw(make_config({forward_all("backend")}, {cfg}));
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(std::make_unique<RawClient>(gw.port()));
    REQUIRE(clients.back()->send(make_request("GET", "/")));
  }
  REQUIRE(wait_until([&] { return a.request_count() + b.held() == 6; }));
  size_t in_flight_on_b = b.held();
  CHECK(in_flight_on_b == 3);
  b.stop();
  int failed = 0;
  for (auto& c : clients) {
    auto r = c->read_response();
    if (!r || r->status != 200) ++failed;
  }
  CHECK(failed <= int(in_flight_on_b));
  // Afterwards nothing is lost: connect failures go to the other endpoint.
  for (int i = 0; i < 20; ++i) {
    auto r = get(gw.port());
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "a");
  }
}

}  // namespace resilience_limits_test
