// Gateway::stats() through real sockets: Istio's request and TCP series
// with their destination's labels, the listener and upstream counters and gauges,
// reload counts, and the exposition format of the whole scrape.

#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "support/exposition.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"
#include "support/tunnel_upstream.hpp"
#include "support/wait.hpp"

namespace telemetry_metrics_test {

using namespace sluice;
using namespace sluice::test;

namespace {

uint64_t total_requests(const Stats& s) {
  uint64_t n = 0;
  for (const auto& r : s.requests) n += r.requests;
  return n;
}

// Waits until the gateway has logged `n` requests (a response reaches the
// client just before its request is counted).
Stats stats_after(Gateway& gw, uint64_t n) {
  Stats s;
  CHECK(wait_until([&] {
    s = gw.stats();
    return total_requests(s) >= n;
  }));
  return s;
}

const RequestSeries* find_series(const Stats& s, std::string_view version, uint16_t code) {
  for (const auto& r : s.requests)
    if (r.destination_version == version && r.response_code == code) return &r;
  return nullptr;
}

double metric(const Stats& s, std::string_view name, std::string_view label_value = {}) {
  for (const auto& m : s.metrics)
    if (m.name == name &&
        (label_value.empty() || (!m.labels.empty() && m.labels.front().second == label_value)))
      return m.value;
  FAIL("no metric " << name << " " << label_value);
  return -1;
}

HttpResponse get(uint16_t port, std::string_view target, std::string_view host = "example.com") {
  RawClient c(port);
  REQUIRE(c.send(make_request("GET", target, host)));
  auto r = c.read_response();
  REQUIRE(r);
  return *r;
}

// "reviews" with a v1 endpoint (200) and a v2 endpoint (503), routed by
// path; v2 retries once.
struct TwoVersions {
  FakeUpstream v1{"v1"}, v2{"v2"};
  GatewayConfig config;

  TwoVersions() {
    v2.set_handler([](const Received&) {
      Reply r;
      r.status = 503;
      r.body = "down";
      return r;
    });
    UpstreamConfig up;
    up.name = "reviews";
    up.service = {"reviews.default.svc.cluster.local", "reviews", "default"};
    up.endpoints = {{"127.0.0.1", v1.port(), {{"version", "v1"}}},
                    {"127.0.0.1", v2.port(), {{"version", "v2"}}}};
    up.subsets = {{"v1", {{"version", "v1"}}}, {"v2", {{"version", "v2"}}}};
    Route r1;
    r1.name = "to-v1";
    r1.matches.push_back(Matcher{}.path_prefix("/v1"));
    r1.destinations.push_back({"reviews", "v1"});
    Route r2;
    r2.name = "to-v2";
    r2.matches.push_back(Matcher{}.path_prefix("/v2"));
    r2.destinations.push_back({"reviews", "v2"});
    r2.retries.attempts = 1;
    r2.retries.backoff_base = std::chrono::milliseconds(1);
    config = make_config({r1, r2}, {up});
  }
};

// "tcp-echo" (an echo upstream whose answers start with "v1 ", its
// endpoint in subset v1) behind a TCP listener's route.
struct TcpEcho {
  TunnelUpstream echo{TunnelUpstream::Mode::echo, "v1 "};
  GatewayConfig config;

  TcpEcho() {
    UpstreamConfig up = loopback_upstream("echo", {echo.port()});
    up.service = {"tcp-echo.default.svc.cluster.local", "tcp-echo", "default"};
    up.endpoints[0].labels = {{"version", "v1"}};
    up.subsets = {{"v1", {{"version", "v1"}}}};
    Destination d = destination("echo");
    d.subset = "v1";
    config = tcp_config({TcpRoute{.name = "echo", .destinations = {d}}}, {up});
  }
};

// Stats once the gateway has finished `n` connections on listener "tcp"
// (it counts a connection's close after the client saw it).
Stats stats_after_tcp(Gateway& gw, double n) {
  Stats s;
  CHECK(wait_until([&] {
    s = gw.stats();
    return metric(s, "envoy_listener_downstream_cx_total", "tcp") == n &&
           metric(s, "envoy_listener_downstream_cx_active", "tcp") == 0;
  }));
  return s;
}

const TcpSeries* find_tcp(const Stats& s, std::string_view flags) {
  for (const auto& t : s.tcp)
    if (t.response_flags == flags) return &t;
  return nullptr;
}

}  // namespace

TEST_CASE("metrics: requests become Istio series labelled with their destination") {
  TwoVersions t;
  TestGateway gw(t.config, 2);
  for (int i = 0; i < 3; ++i) CHECK(get(gw.port(), "/v1/a").status == 200);
  for (int i = 0; i < 2; ++i) CHECK(get(gw.port(), "/v2/b").status == 503);
  CHECK(get(gw.port(), "/elsewhere").status == 404);
  {
    RawClient bad(gw.port());
    REQUIRE(bad.send("GET /x HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n"));
    auto r = bad.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
  }
  Stats s = stats_after(gw.gateway(), 7);
  CHECK(total_requests(s) == 7);
  CHECK(s.source_workload == "istio-ingressgateway");

  const RequestSeries* ok = find_series(s, "v1", 200);
  REQUIRE(ok);
  CHECK(ok->requests == 3);
  CHECK(ok->destination_service == "reviews.default.svc.cluster.local");
  CHECK(ok->destination_service_name == "reviews");
  CHECK(ok->destination_service_namespace == "default");
  CHECK(ok->response_flags == "-");
  CHECK(ok->request_protocol == "http");
  CHECK(ok->grpc_response_status.empty());
  CHECK(ok->duration_ms.count == 3);
  CHECK(ok->response_bytes.sum == 3 * 2);  // "v1"

  const RequestSeries* failed = find_series(s, "v2", 503);
  REQUIRE(failed);
  CHECK(failed->requests == 2);
  CHECK(failed->response_flags == "URX");

  const RequestSeries* no_route = find_series(s, "unknown", 404);
  REQUIRE(no_route);
  CHECK(no_route->destination_service == "unknown");
  CHECK(no_route->response_flags == "NR");
  const RequestSeries* malformed = find_series(s, "unknown", 400);
  REQUIRE(malformed);
  CHECK(malformed->requests == 1);

  // Upstream counters: 3 to v1, 2 x (1 + 1 retry) to v2.
  CHECK(metric(s, "envoy_cluster_upstream_rq_total", "reviews") == 7);
  CHECK(metric(s, "envoy_cluster_upstream_rq_retry", "reviews") == 2);
  CHECK(metric(s, "envoy_cluster_membership_total", "reviews") == 2);
  CHECK(metric(s, "envoy_cluster_membership_healthy", "reviews") == 2);
  CHECK(metric(s, "envoy_cluster_upstream_cx_connect_fail", "reviews") == 0);
  CHECK(metric(s, "envoy_listener_downstream_cx_total", "main") == 7);
  CHECK(metric(s, "sluice_config_reloads_total", "ok") == 1);
  CHECK(metric(s, "sluice_config_reloads_total", "rejected") == 0);
  CHECK(metric(s, "sluice_config_snapshot_version") == 1);

  std::string text = s.prometheus();
  check_exposition(text);
  CHECK(sample(text, "istio_requests_total{",
               {"destination_version=\"v1\"", "response_code=\"200\"",
                "destination_service_name=\"reviews\"", "reporter=\"source\"",
                "source_workload=\"istio-ingressgateway\""}) == "3");
  CHECK(sample(text, "istio_request_duration_milliseconds_count{",
               {"destination_version=\"v2\"", "response_code=\"503\""}) == "2");
  CHECK(sample(text, "envoy_cluster_upstream_rq_total{", {"cluster_name=\"reviews\""}) == "7");
  CHECK(s.text().find("istio_requests_total{destination_service=\"reviews.default.svc.cluster."
                      "local\",destination_version=\"v1\",response_code=\"200\","
                      "response_flags=\"-\"}: 3\n") != std::string::npos);
}

TEST_CASE("metrics: a refused configuration counts as rejected and keeps the version") {
  TwoVersions t;
  TestGateway gw(t.config);
  GatewayConfig bad = t.config;
  bad.routers[0].virtual_hosts[0].routes[0].destinations[0].upstream = "missing";
  CHECK(!gw.apply(bad).ok());
  CHECK(gw.apply(t.config).ok());
  Stats s = gw.gateway().stats();
  CHECK(metric(s, "sluice_config_reloads_total", "ok") == 2);
  CHECK(metric(s, "sluice_config_reloads_total", "rejected") == 1);
  CHECK(metric(s, "sluice_config_snapshot_version") == 2);
  CHECK(gw.gateway().ready());
}

TEST_CASE("metrics: requests for unknown hosts collapse into one series") {
  TwoVersions t;
  TestGateway gw(t.config);
  for (int i = 0; i < 20; ++i)
    CHECK(get(gw.port(), "/nowhere", "host" + std::to_string(i) + ".example").status == 404);
  Stats s = stats_after(gw.gateway(), 20);
  REQUIRE(s.requests.size() == 1);
  CHECK(s.requests[0].requests == 20);
  CHECK(s.requests[0].destination_service == "unknown");
}

TEST_CASE("metrics: open connections per listener rise and fall") {
  TwoVersions t;
  TestGateway gw(t.config);
  RawClient a(gw.port()), b(gw.port());
  REQUIRE(a.send(make_request("GET", "/v1/x")));
  REQUIRE(b.send(make_request("GET", "/v1/x")));
  REQUIRE(a.read_response());
  REQUIRE(b.read_response());
  CHECK(metric(gw.gateway().stats(), "envoy_listener_downstream_cx_active", "main") == 2);
  a.close();
  b.close();
  CHECK(wait_until([&] {
    return metric(gw.gateway().stats(), "envoy_listener_downstream_cx_active", "main") == 0;
  }));
  CHECK(metric(gw.gateway().stats(), "envoy_listener_downstream_cx_total", "main") == 2);
}

TEST_CASE("metrics: connect failures count against their upstream") {
  uint16_t closed_port = 0;
  {
    FakeUpstream gone;
    closed_port = gone.port();
  }
  GatewayConfig config = single_upstream_config(closed_port);
  config.routers[0].virtual_hosts[0].routes[0].retries.attempts = 0;
  TestGateway gw(config);
  CHECK(get(gw.port(), "/").status == 503);
  Stats s = stats_after(gw.gateway(), 1);
  CHECK(metric(s, "envoy_cluster_upstream_cx_connect_fail", "backend") == 1);
  REQUIRE(s.requests.size() == 1);
  CHECK(s.requests[0].response_flags == "UF");
  CHECK(s.requests[0].destination_service == "backend");  // no service: the upstream's name
}

TEST_CASE("metrics: access-log lines written are counted per file") {
  TwoVersions t;
  char dir[] = "/tmp/sluice-metrics-log.XXXXXX";
  REQUIRE(mkdtemp(dir));
  std::string path = std::string(dir) + "/access.log";
  t.config.telemetry.access_logs.push_back({.path = path});
  t.config.telemetry.access_log_flush_interval = {};  // lines_written counts what reached the file
  {
    TestGateway gw(t.config);
    for (int i = 0; i < 3; ++i) CHECK(get(gw.port(), "/v1/a").status == 200);
    CHECK(wait_until([&] {
      Stats s = gw.gateway().stats();
      return metric(s, "sluice_access_log_lines_total", path) == 3;
    }));
    CHECK(metric(gw.gateway().stats(), "sluice_access_log_dropped_total", path) == 0);
  }
  std::remove(path.c_str());
  rmdir(dir);
}

// Prometheus' own parser and linter over a whole scrape. The one lint it may
// report is Envoy's counter names without `_total`, which Istio's gateways
// export the same way.
TEST_CASE("metrics: promtool check metrics accepts the scrape") {
  REQUIRE_MESSAGE(std::system("command -v promtool >/dev/null") == 0,
                  "promtool (Debian package prometheus) is a test dependency");
  TwoVersions t;
  TcpEcho tcp;  // its listener and upstream join the HTTP ones: TCP series too
  t.config.listeners.push_back(tcp.config.listeners.back());
  t.config.upstreams.push_back(tcp.config.upstreams.back());
  TestGateway gw(t.config);
  CHECK(get(gw.port(), "/v1/a").status == 200);
  CHECK(get(gw.port(), "/v2/a").status == 503);
  CHECK(exchange_until_close(gw.port("tcp"), "x") == "v1 x");
  stats_after_tcp(gw.gateway(), 1);
  Stats s = stats_after(gw.gateway(), 2);
  REQUIRE(s.tcp.size() == 1);
  char dir[] = "/tmp/sluice-promtool.XXXXXX";
  REQUIRE(mkdtemp(dir));
  std::string file = std::string(dir) + "/scrape.txt";
  {
    FILE* f = std::fopen(file.c_str(), "w");
    REQUIRE(f);
    std::string text = s.prometheus();
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  std::string command = "promtool check metrics < " + file + " 2>&1; echo \"rc=$?\"";
  FILE* p = popen(command.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  pclose(p);
  std::remove(file.c_str());
  rmdir(dir);
  INFO(out);
  CHECK(out.find("error while linting") == std::string::npos);  // a parse error
  CHECK((out.ends_with("rc=0\n") || out.ends_with("rc=3\n")));
  for (const auto& line : lines_of(out)) {
    if (line.starts_with("rc=")) continue;
    // Lints about names Envoy and Istio chose, which dashboards expect as
    // they are: Envoy's counters without `_total`, its membership_total
    // gauge, Istio's millisecond histogram.
    bool envoy_counter = line.starts_with("envoy_") &&
                         line.ends_with(" counter metrics should have \"_total\" suffix");
    bool envoy_gauge = line ==
                       "envoy_cluster_membership_total non-counter metrics should not "
                       "have \"_total\" suffix";
    bool istio_ms = line ==
                    "istio_request_duration_milliseconds use base unit \"seconds\" "
                    "instead of \"milliseconds\"";
    CHECK_MESSAGE((envoy_counter || envoy_gauge || istio_ms), line);
  }
}

TEST_CASE("tcp metrics: a TCP route's connections and bytes both ways in Istio's TCP series") {
  TcpEcho t;
  TestGateway gw(t.config, 2);
  for (int i = 0; i < 2; ++i) CHECK(exchange_until_close(gw.port("tcp"), "hello") == "v1 hello");
  Stats s = stats_after_tcp(gw.gateway(), 2);
  CHECK(s.requests.empty());  // relayed bytes are no HTTP requests
  REQUIRE(s.tcp.size() == 1);
  const TcpSeries& tcp = s.tcp[0];
  CHECK(tcp.response_flags == "-");
  CHECK(tcp.connections_opened == 2);
  CHECK(tcp.connections_closed == 2);
  CHECK(tcp.received_bytes == 10);  // "hello" twice, from the client
  CHECK(tcp.sent_bytes == 16);      // "v1 hello" twice, to the client
  CHECK(tcp.destination_service == "tcp-echo.default.svc.cluster.local");
  CHECK(tcp.destination_service_name == "tcp-echo");
  CHECK(tcp.destination_service_namespace == "default");
  CHECK(tcp.destination_version == "v1");
  CHECK(tcp.destination_upstream == "echo");

  std::string text = s.prometheus();
  check_exposition(text);
  const std::vector<std::string> labels = {
      "reporter=\"source\"",
      "source_workload=\"istio-ingressgateway\"",
      "destination_service=\"tcp-echo.default.svc.cluster.local\"",
      "destination_version=\"v1\"",
      "request_protocol=\"tcp\"",
      "response_flags=\"-\"",
      "connection_security_policy=\"unknown\""};
  CHECK(sample(text, "istio_tcp_connections_opened_total{", labels) == "2");
  CHECK(sample(text, "istio_tcp_connections_closed_total{", labels) == "2");
  CHECK(sample(text, "istio_tcp_received_bytes_total{", labels) == "10");
  CHECK(sample(text, "istio_tcp_sent_bytes_total{", labels) == "16");
  for (const auto& line : lines_of(text))
    if (line.starts_with("istio_tcp_")) CHECK(line.find("response_code") == std::string::npos);
  CHECK(s.text().find("istio_tcp_sent_bytes_total{destination_service=\"tcp-echo.default.svc."
                      "cluster.local\",destination_version=\"v1\",response_flags=\"-\"}: 16") !=
        std::string::npos);
}

TEST_CASE("tcp metrics: an open connection's bytes show at a scrape, its close when it ends") {
  TcpEcho t;
  TestGateway gw(t.config);
  RawClient c(gw.port("tcp"));
  REQUIRE(c.send("abcd"));
  REQUIRE(c.read_exactly(7) == "v1 abcd");
  // The client can read before the gateway's write returns and is counted.
  Stats s;
  CHECK(wait_until([&] {
    s = gw.gateway().stats();
    return s.tcp.size() == 1 && s.tcp[0].sent_bytes == 7;
  }));
  REQUIRE(s.tcp.size() == 1);
  CHECK(s.tcp[0].connections_opened == 1);
  CHECK(s.tcp[0].connections_closed == 0);
  CHECK(s.tcp[0].received_bytes == 4);
  c.close();
  s = stats_after_tcp(gw.gateway(), 1);
  REQUIRE(s.tcp.size() == 1);
  CHECK(s.tcp[0].connections_opened == 1);
  CHECK(s.tcp[0].connections_closed == 1);
  CHECK(s.tcp[0].received_bytes == 4);
  CHECK(s.tcp[0].sent_bytes == 7);
}

TEST_CASE("tcp metrics: a connection the idle timeout ends is closed under SI") {
  TcpEcho t;
  t.config.limits.idle_timeout = std::chrono::seconds(60);
  ManualClock clock;
  TestGateway gw(t.config, 1, nullptr, &clock);
  RawClient c(gw.port("tcp"));
  REQUIRE(c.send("abcd"));
  REQUIRE(c.read_exactly(7) == "v1 abcd");  // relaying: the idle deadline is armed
  clock.settle();
  clock.advance(std::chrono::seconds(60));
  CHECK(c.is_closed());
  Stats s = stats_after_tcp(gw.gateway(), 1);
  // Opened under "-" when the relay started, closed under the flags it
  // ended with.
  REQUIRE(s.tcp.size() == 2);
  const TcpSeries* relayed = find_tcp(s, "-");
  const TcpSeries* idle = find_tcp(s, "SI");
  REQUIRE(relayed);
  REQUIRE(idle);
  CHECK(relayed->connections_opened == 1);
  CHECK(relayed->connections_closed == 0);
  CHECK(relayed->received_bytes == 4);
  CHECK(relayed->sent_bytes == 7);
  CHECK(idle->connections_opened == 0);
  CHECK(idle->connections_closed == 1);
  CHECK(idle->destination_service == "tcp-echo.default.svc.cluster.local");
}

TEST_CASE("tcp metrics: a refused upstream (UF) and a client no route takes (NR) get their flags") {
  LoopbackPort refused;  // bound, nobody listening: connects are refused
  TcpRoute route{.name = "down", .destinations = {destination("down")}};
  TestGateway gw(tcp_config({route}, {loopback_upstream("down", {refused.port()})}));
  CHECK(exchange_until_close(gw.port("tcp"), "x").empty());
  stats_after_tcp(gw.gateway(), 1);
  route.source_subnets = {"10.0.0.0/8"};  // never 127.0.0.1
  REQUIRE(gw.apply(tcp_config({route}, {loopback_upstream("down", {refused.port()})})).ok());
  CHECK(exchange_until_close(gw.port("tcp"), "x").empty());
  Stats s = stats_after_tcp(gw.gateway(), 2);
  CHECK(s.tcp.size() == 2);  // no "-" series: neither relayed
  const TcpSeries* uf = find_tcp(s, "UF");
  REQUIRE(uf);
  CHECK(uf->destination_service == "down");
  CHECK(uf->connections_opened == 1);
  CHECK(uf->connections_closed == 1);
  CHECK(uf->received_bytes == 0);
  const TcpSeries* nr = find_tcp(s, "NR");
  REQUIRE(nr);
  CHECK(nr->destination_service == "unknown");
  CHECK(nr->connections_opened == 1);
  CHECK(nr->connections_closed == 1);
}

TEST_CASE("tcp metrics: with metrics off no TCP series is recorded") {
  TcpEcho t;
  GatewayOptions options;
  options.telemetry.metrics = false;
  TestGateway gw(t.config, options);
  CHECK(exchange_until_close(gw.port("tcp"), "hello") == "v1 hello");
  Stats s = stats_after_tcp(gw.gateway(), 1);
  CHECK(s.tcp.empty());
  CHECK(s.prometheus().find("istio_tcp_") == std::string::npos);
}

}  // namespace telemetry_metrics_test
