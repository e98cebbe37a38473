// Istio's traffic-management tasks, end to end: YAML loaded by lib/istio, a
// real Gateway on 127.0.0.1 port 0, upstreams in the test process.

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>

#include <fmt/format.h>

#include "istio_test_util.hpp"
#include "sluice/sluice.hpp"
#include "support/fake_upstream.hpp"
#include "support/manual_clock.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace tasks_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// Gateway + VirtualService "vs" for "*" on port 80 with `http` rules, and one
// STATIC ServiceEntry per named upstream port.
std::string task_yaml(const std::string& http,
                      const std::vector<std::pair<std::string, uint16_t>>& services,
                      const std::string& more = "") {
  std::string y = R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
)" + http;
  for (const auto& [host, port] : services)
    y += fmt::format(R"(
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {0}}}
spec:
  hosts: [{0}]
  ports: [{{number: 80, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {1}}}}}]
)",
                     host, port);
  return y + more;
}

class IstioGateway {
 public:
  // With `clock`, the gateway runs on it and clock->advance() drives it.
  explicit IstioGateway(const std::string& yaml, uint64_t seed = 7, ManualClock* clock = nullptr)
      : clock_(clock) {
    istio::TranslateOptions options;
    options.bind_address = "127.0.0.1";
    options.ephemeral_ports = true;
    auto loaded = istio::load_string(yaml, options);
    REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
    listener_ = loaded->config.listeners.at(0).name;
    GatewayOptions go;
    go.workers = 1;
    go.seed = seed;
    if (clock) go.clock = clock->fn();
    gateway_ = std::make_unique<Gateway>(go);
    if (clock) clock->drive(*gateway_);
    Status st = gateway_->apply(std::move(loaded->config));
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
    gateway_->start();
    REQUIRE(port() != 0);
  }
  ~IstioGateway() {
    gateway_->stop();
    if (clock_) clock_->forget(*gateway_);
  }
  uint16_t port() const { return gateway_->port(listener_); }
  Gateway& gateway() { return *gateway_; }

 private:
  ManualClock* clock_;
  std::string listener_;
  std::unique_ptr<Gateway> gateway_;
};

std::optional<HttpResponse> exchange(RawClient& c, std::string_view method, std::string_view target,
                                     const HeaderList& headers = {},
                                     std::string_view host = "bookinfo.example.com") {
  if (!c.send(make_request(method, target, host, headers))) return std::nullopt;
  return c.read_response();
}

HttpResponse get(uint16_t port, std::string_view target, const HeaderList& headers = {},
                 std::string_view method = "GET") {
  RawClient c(port);
  REQUIRE(c.connected());
  auto r = exchange(c, method, target, headers);
  REQUIRE_MESSAGE(r.has_value(), c.error());
  return *r;
}

}  // namespace

TEST_CASE("istio task: fault injection abort: jason gets 500 immediately, others 200") {
  FakeUpstream ratings("ratings");
  IstioGateway gw(task_yaml(R"(  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {abort: {percentage: {value: 100.0}, httpStatus: 500}}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
)",
                            {{"ratings", ratings.port()}}));
  for (int i = 0; i < 5; ++i) {
    auto jason = get(gw.port(), "/ratings/0", {{"end-user", "jason"}});
    CHECK(jason.status == 500);
    CHECK(jason.body == "fault filter abort");
  }
  CHECK(ratings.request_count() == 0);  // never reached the upstream
  auto other = get(gw.port(), "/ratings/0", {{"end-user", "alice"}});
  CHECK(other.status == 200);
  CHECK(other.body == "ratings");
  CHECK(ratings.request_count() == 1);
}

// On a ManualClock: the delay ends when the clock reaches it, not before,
// and a request without the fault needs no time at all.
TEST_CASE("istio task: fault injection delay for jason only") {
  FakeUpstream ratings("ratings");
  ManualClock clock;
  IstioGateway gw(task_yaml(R"(  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {delay: {percentage: {value: 100.0}, fixedDelay: 7s}}
    route: [{destination: {host: ratings}}]
  - route: [{destination: {host: ratings}}]
)",
                            {{"ratings", ratings.port()}}),
                  7, &clock);
  auto ratings_view = [&] { return gw.gateway().upstream("outbound|80||ratings"); };
  RawClient jason(gw.port());
  REQUIRE(jason.send(
      make_request("GET", "/ratings/0", "bookinfo.example.com", {{"end-user", "jason"}})));
  REQUIRE(gateway_read_everything(gw.port(), jason.local_port()));
  clock.settle();  // the delay has started

  // Others are not delayed: served while the clock stands still.
  auto other = get(gw.port(), "/ratings/0");
  CHECK(other.status == 200);
  CHECK(ratings.request_count() == 1);

  clock.advance(7s - 1ms);
  CHECK(ratings_view().active_requests == 0);  // jason's request is still delayed
  clock.advance(1ms);
  auto r = jason.read_response();
  REQUIRE_MESSAGE(r, jason.error());
  CHECK(r->status == 200);
  CHECK(ratings.request_count() == 2);
}

// The upstream holds the request; the route timeout fires when the clock
// reaches it.
TEST_CASE("istio task: request timeout: 504 after the route timeout, not the upstream delay") {
  FakeUpstream reviews("reviews");
  reviews.set_handler([](const Received&) {
    Reply r;
    r.body = "late";
    r.hold = true;
    return r;
  });
  ManualClock clock;
  IstioGateway gw(task_yaml(R"(  - route: [{destination: {host: reviews}}]
    timeout: 0.2s
)",
                            {{"reviews", reviews.port()}}),
                  7, &clock);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/reviews/0", "bookinfo.example.com")));
  REQUIRE(wait_until([&] { return reviews.held() == 1; }));
  clock.settle();
  // The held upstream connection is closed the moment the timeout fires.
  auto reviews_view = [&] { return gw.gateway().upstream("outbound|80||reviews"); };
  clock.advance(199ms);
  CHECK(reviews_view().connections == 1);
  clock.advance(1ms);
  CHECK(reviews_view().connections == 0);
  auto r = c.read_response();
  reviews.release();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 504);
  CHECK(r->body == "upstream request timeout");
}

TEST_CASE("istio task: traffic shifting 50/50 and 90/10 over 1000 requests") {
  // Seed 7, one worker, one client connection: the same split every run.
  struct Case {
    int w1, w2;
    int to_v2;  // of 1000, near the weight's share
  };
  for (Case c : {Case{50, 50, 486}, Case{90, 10, 114}}) {
    CAPTURE(c.w1);
    FakeUpstream v1("v1"), v2("v2");
    // FakeUpstream writes head and body separately without TCP_NODELAY, so a
    // reused upstream connection costs a delayed-ACK wait (~40 ms) per
    // response; fresh upstream connections keep 1000 requests fast.
    for (FakeUpstream* u : {&v1, &v2})
      u->set_handler([name = u->name()](const Received&) {
        Reply r;
        r.body = name;
        r.close_after_response = true;
        return r;
      });
    IstioGateway gw(task_yaml(fmt::format(R"(  - route:
    - destination: {{host: reviews-v1}}
      weight: {}
    - destination: {{host: reviews-v2}}
      weight: {}
)",
                                          c.w1, c.w2),
                              {{"reviews-v1", v1.port()}, {"reviews-v2", v2.port()}}));
    RawClient client(gw.port());
    REQUIRE(client.connected());
    int to_v2 = 0;
    for (int i = 0; i < 1000; ++i) {
      auto r = exchange(client, "GET", "/reviews/0");
      REQUIRE_MESSAGE(r.has_value(), client.error());
      REQUIRE(r->status == 200);
      to_v2 += r->body == "v2";
    }
    CHECK(to_v2 == c.to_v2);
    CHECK(v1.request_count() + v2.request_count() == 1000);
  }
}

TEST_CASE("istio task: mirroring: the mirror sees every request with a -shadow Host") {
  FakeUpstream primary("httpbin-v1"), mirror("httpbin-v2");
  IstioGateway gw(task_yaml(R"(  - route: [{destination: {host: httpbin-v1}, weight: 100}]
    mirror: {host: httpbin-v2}
    mirrorPercentage: {value: 100.0}
)",
                            {{"httpbin-v1", primary.port()}, {"httpbin-v2", mirror.port()}}));
  const size_t n = 20;
  for (size_t i = 0; i < n; ++i) {
    auto r = get(gw.port(), "/headers");
    CHECK(r.status == 200);
    CHECK(r.body == "httpbin-v1");  // the client sees only the primary
  }
  CHECK(primary.request_count() == n);
  REQUIRE(mirror.wait_for_requests(n));
  for (const auto& req : mirror.requests()) {
    CHECK(req.header("host") == std::optional<std::string>("bookinfo.example.com-shadow"));
    CHECK(req.target == "/headers");
  }
  for (const auto& req : primary.requests())
    CHECK(req.header("host") == std::optional<std::string>("bookinfo.example.com"));
}

TEST_CASE("istio task: retries counted at the upstream") {
  FakeUpstream flaky("flaky");
  std::atomic<int> calls{0};
  flaky.set_handler([&](const Received&) {
    Reply r;
    r.status = ++calls <= 2 ? 503 : 200;
    r.body = r.status == 200 ? "ok" : "unavailable";
    return r;
  });
  SUBCASE("Istio's default policy retries 503 twice") {
    IstioGateway gw(
        task_yaml("  - route: [{destination: {host: flaky}}]\n", {{"flaky", flaky.port()}}));
    auto r = get(gw.port(), "/x");
    CHECK(r.status == 200);
    CHECK(r.body == "ok");
    CHECK(flaky.request_count() == 3);
  }
  SUBCASE("attempts 2 on 5xx") {
    IstioGateway gw(task_yaml(R"(  - route: [{destination: {host: flaky}}]
    retries: {attempts: 2, retryOn: 5xx}
)",
                              {{"flaky", flaky.port()}}));
    auto r = get(gw.port(), "/x");
    CHECK(r.status == 200);
    CHECK(flaky.request_count() == 3);
  }
  SUBCASE("attempts 1 is not enough") {
    IstioGateway gw(task_yaml(R"(  - route: [{destination: {host: flaky}}]
    retries: {attempts: 1, retryOn: 5xx}
)",
                              {{"flaky", flaky.port()}}));
    auto r = get(gw.port(), "/x");
    CHECK(r.status == 503);
    CHECK(flaky.request_count() == 2);
  }
  SUBCASE("attempts 0 disables retries") {
    IstioGateway gw(task_yaml(R"(  - route: [{destination: {host: flaky}}]
    retries: {attempts: 0}
)",
                              {{"flaky", flaky.port()}}));
    auto r = get(gw.port(), "/x");
    CHECK(r.status == 503);
    CHECK(flaky.request_count() == 1);
  }
}

TEST_CASE("istio task: redirect, rewrite and header operations") {
  FakeUpstream backend("backend");
  IstioGateway gw(task_yaml(R"(  - match: [{uri: {exact: /v1/getProductRatings}}]
    redirect: {uri: /v1/bookRatings, authority: newratings.default.svc.cluster.local}
  - match: [{uri: {prefix: /ratings}}]
    rewrite: {uri: /v1/bookRatings}
    route: [{destination: {host: backend}}]
  - match: [{uri: {prefix: /service}}]
    rewrite: {uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: "\\2/instance/\\1"}}
    route: [{destination: {host: backend}}]
  - headers:
      request: {set: {x-route: set-by-route}, remove: [x-secret]}
      response: {set: {x-served-by: sluice}, remove: [x-internal]}
    route:
    - destination: {host: backend}
      headers: {request: {add: {x-dest: backend}}}
)",
                            {{"backend", backend.port()}}));
  auto redirect = get(gw.port(), "/v1/getProductRatings");
  CHECK(redirect.status == 301);
  CHECK(redirect.header("location") ==
        std::optional<std::string>("http://newratings.default.svc.cluster.local/v1/bookRatings"));
  CHECK(backend.request_count() == 0);

  CHECK(get(gw.port(), "/ratings/0").status == 200);
  REQUIRE(backend.last_request());
  CHECK(backend.last_request()->target == "/v1/bookRatings/0");

  CHECK(get(gw.port(), "/service/a1/path?q=1").status == 200);
  CHECK(backend.last_request()->target == "/path/instance/a1?q=1");

  backend.set_handler([](const Received&) {
    Reply r;
    r.body = "h";
    r.headers = {{"x-internal", "1"}};
    return r;
  });
  auto h = get(gw.port(), "/other", {{"x-secret", "s"}, {"x-route", "client"}});
  CHECK(h.status == 200);
  CHECK(h.header("x-served-by") == std::optional<std::string>("sluice"));
  CHECK(!h.header("x-internal"));
  auto seen = backend.last_request();
  REQUIRE(seen);
  CHECK(seen->header("x-route") == std::optional<std::string>("set-by-route"));
  CHECK(seen->header_count("x-route") == 1);
  CHECK(!seen->header("x-secret"));
  CHECK(seen->header("x-dest") == std::optional<std::string>("backend"));
}

TEST_CASE("istio task: CORS preflight answered at the gateway, actual requests get headers") {
  FakeUpstream backend("backend");
  IstioGateway gw(task_yaml(R"(  - corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowMethods: [POST, GET]
      allowHeaders: [X-Foo-Bar]
      maxAge: 24h
    route: [{destination: {host: backend}}]
)",
                            {{"backend", backend.port()}}));
  auto pre = get(gw.port(), "/api",
                 {{"Origin", "https://example.com"}, {"Access-Control-Request-Method", "POST"}},
                 "OPTIONS");
  CHECK(pre.status == 200);
  CHECK(pre.header("access-control-allow-origin") ==
        std::optional<std::string>("https://example.com"));
  CHECK(pre.header("access-control-allow-methods") == std::optional<std::string>("POST,GET"));
  CHECK(pre.header("access-control-max-age") == std::optional<std::string>("86400"));
  CHECK(backend.request_count() == 0);
  auto actual = get(gw.port(), "/api", {{"Origin", "https://example.com"}});
  CHECK(actual.status == 200);
  CHECK(actual.header("access-control-allow-origin") ==
        std::optional<std::string>("https://example.com"));
  auto foreign = get(gw.port(), "/api", {{"Origin", "https://evil.example"}});
  CHECK(foreign.status == 200);
  CHECK(!foreign.header("access-control-allow-origin"));
}

}  // namespace tasks_test
