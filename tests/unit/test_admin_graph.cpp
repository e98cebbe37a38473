// The traffic graph behind /graph.json (lib/admin/graph): samples of Stats,
// windows computed from their differences, and the graph's JSON (nodes
// gateway -> service -> version, edges with rates, errors, codes, flags).

#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "admin/graph.hpp"

namespace test_admin_graph {

using namespace sluice;
using namespace sluice::admin;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

const TimePoint kStart = TimePoint(std::chrono::hours(1000));

RequestSeries series(std::string service, std::string version, uint16_t code, uint64_t n,
                     std::string flags = "-", std::string upstream = "outbound|9080||reviews") {
  RequestSeries s;
  s.destination_service = std::move(service);
  s.destination_service_name = "reviews";
  s.destination_service_namespace = "default";
  s.destination_version = std::move(version);
  s.destination_upstream = std::move(upstream);
  s.response_code = code;
  s.response_flags = std::move(flags);
  s.requests = n;
  // Every request took 3 ms: bucket (1, 5].
  s.duration_ms.counts[2] = n;
  s.duration_ms.count = n;
  s.duration_ms.sum = 3 * n;
  return s;
}

Stats stats_of(std::vector<RequestSeries> list) {
  Stats s;
  s.source_workload = "istio-ingressgateway";
  s.requests = std::move(list);
  return s;
}

const json* find_id(const json& list, const std::string& id) {
  for (const auto& e : list)
    if (e["id"] == id) return &e;
  return nullptr;
}

const std::string kHost = "reviews.default.svc.cluster.local";
const std::string kV1Edge = "service:" + kHost + "->version:" + kHost + ":v1";
const std::string kV2Edge = "service:" + kHost + "->version:" + kHost + ":v2";

}  // namespace

TEST_CASE("graph: a sample sums a version's series and counts 5xx and flagged ones as errors") {
  auto s =
      make_sample(kStart, stats_of({series(kHost, "v1", 200, 7), series(kHost, "v1", 503, 2, "UF"),
                                    series(kHost, "v1", 500, 1), series(kHost, "v2", 200, 4)}));
  REQUIRE(s.edges.size() == 2);
  const EdgeTotals& v1 = s.edges.at({kHost, "v1"});
  CHECK(v1.requests == 10);
  CHECK(v1.errors == 3);
  CHECK(v1.codes.at(200) == 7);
  CHECK(v1.codes.at(503) == 2);
  CHECK(v1.flags.size() == 1);
  CHECK(v1.flags.at("UF") == 2);
  CHECK(v1.duration_ms.count == 10);
  CHECK(v1.upstreams.count("outbound|9080||reviews") == 1);
  CHECK(s.edges.at({kHost, "v2"}).errors == 0);
}

TEST_CASE("graph: errors are 5xx, no response, or a response flag") {
  CHECK_FALSE(is_error(200, "-"));
  CHECK_FALSE(is_error(404, ""));
  CHECK(is_error(500, "-"));
  CHECK(is_error(0, "-"));
  CHECK(is_error(404, "NR"));
  CHECK(std::string(edge_health(100, 0)) == "healthy");
  CHECK(std::string(edge_health(1000, 1)) == "degraded");
  CHECK(std::string(edge_health(100, 9)) == "degraded");
  CHECK(std::string(edge_health(100, 10)) == "failure");
  CHECK(std::string(edge_health(0, 0)) == "healthy");
}

TEST_CASE("graph: no window until two samples exist") {
  TrafficSampler sampler(2000ms, 900s);
  CHECK_FALSE(sampler.window(60s).has_value());
  sampler.add(make_sample(kStart, stats_of({series(kHost, "v1", 200, 5)})));
  CHECK_FALSE(sampler.window(60s).has_value());
  auto j = json::parse(graph_json(sampler.window(60s), 60s, "gw", {}, false));
  CHECK(j["nodes"].size() == 1);
  CHECK(j["nodes"][0]["kind"] == "gateway");
  CHECK(j["edges"].empty());
}

TEST_CASE("graph: a window is the newest sample against the oldest inside it") {
  TrafficSampler sampler(2000ms, 900s);
  sampler.add(make_sample(kStart, stats_of({series(kHost, "v1", 200, 100)})));
  sampler.add(make_sample(kStart + 30s, stats_of({series(kHost, "v1", 200, 160)})));
  sampler.add(make_sample(kStart + 90s, stats_of({series(kHost, "v1", 200, 400)})));
  auto one = sampler.window(60s);
  REQUIRE(one.has_value());
  // The sample at +30 s is 60 s old: it is the base, not the one at 0.
  CHECK(one->elapsed_seconds == doctest::Approx(60));
  CHECK(one->edges.at({kHost, "v1"}).requests == 240);
  auto five = sampler.window(300s);
  REQUIRE(five.has_value());
  CHECK(five->elapsed_seconds == doctest::Approx(90));
  CHECK(five->edges.at({kHost, "v1"}).requests == 300);
  auto j = json::parse(graph_json(one, 60s, "gw", {}, false));
  const json* edge = find_id(j["edges"], kV1Edge);
  REQUIRE(edge != nullptr);
  CHECK((*edge)["rps"].get<double>() == doctest::Approx(4.0));
  CHECK(j["window_seconds"] == 60);
}

TEST_CASE(
    "graph: edges without requests in the window are left out, a reset counter counts from zero") {
  TrafficSampler sampler(2000ms, 900s);
  sampler.add(
      make_sample(kStart, stats_of({series(kHost, "v1", 200, 50), series(kHost, "v2", 200, 9)})));
  sampler.add(make_sample(kStart + 2s,
                          stats_of({series(kHost, "v1", 200, 50), series(kHost, "v2", 200, 4)})));
  auto w = sampler.window(60s);
  REQUIRE(w.has_value());
  CHECK(w->edges.count({kHost, "v1"}) == 0);
  CHECK(w->edges.at({kHost, "v2"}).requests == 4);
}

TEST_CASE("graph: the ring keeps the longest window's samples and no more") {
  TrafficSampler sampler(2000ms, 60s);
  for (int i = 0; i < 100; ++i)
    sampler.add(make_sample(kStart + i * 2s, stats_of({series(kHost, "v1", 200, uint64_t(i))})));
  CHECK(sampler.size() == 32);
  auto w = sampler.window(60s);
  REQUIRE(w.has_value());
  CHECK(w->elapsed_seconds == doctest::Approx(60));
}

TEST_CASE(
    "graph: nodes and edges of two versions, the failing one marked with its codes and flags") {
  TrafficSampler sampler(2000ms, 900s);
  sampler.add(make_sample(kStart, stats_of({})));
  auto later = make_sample(
      kStart + 10s, stats_of({series(kHost, "v1", 200, 50),
                              series(kHost, "v2", 200, 40, "-", "outbound|9080|v2|reviews"),
                              series(kHost, "v2", 500, 8, "-", "outbound|9080|v2|reviews"),
                              series(kHost, "v2", 503, 2, "UO", "outbound|9080|v2|reviews")}));
  later.overflows["outbound|9080|v2|reviews"] = 2;
  sampler.add(later);

  UpstreamInfo v1;
  v1.view.name = "outbound|9080||reviews";
  v1.view.endpoints = {{.address = "10.0.0.1:9080"}, {.address = "10.0.0.2:9080", .ejected = true}};
  v1.endpoints = {{"10.0.0.1", 9080, {{"version", "v1"}}, 1},
                  {"10.0.0.2", 9080, {{"version", "v2"}}, 1}};
  UpstreamInfo v2;
  v2.view.name = "outbound|9080|v2|reviews";
  v2.view.endpoints = {{.address = "10.0.0.3:9080"}};
  v2.endpoints = {{"10.0.0.3", 9080, {}, 1}};
  std::map<std::string, UpstreamInfo> upstreams{{v1.view.name, v1}, {v2.view.name, v2}};

  auto j =
      json::parse(graph_json(sampler.window(60s), 60s, "istio-ingressgateway", upstreams, true));
  CHECK(j["nodes"].size() == 4);  // gateway, service, two versions
  const json* gw_edge = find_id(j["edges"], "gateway->service:" + kHost);
  REQUIRE(gw_edge != nullptr);
  CHECK((*gw_edge)["requests"] == 100);
  CHECK((*gw_edge)["rps"].get<double>() == doctest::Approx(10.0));
  CHECK((*gw_edge)["error_percent"].get<double>() == doctest::Approx(10.0));

  const json* ok = find_id(j["edges"], kV1Edge);
  const json* bad = find_id(j["edges"], kV2Edge);
  REQUIRE(ok != nullptr);
  REQUIRE(bad != nullptr);
  CHECK((*ok)["health"] == "healthy");
  CHECK((*bad)["health"] == "failure");
  CHECK((*bad)["error_percent"].get<double>() == doctest::Approx(20.0));
  CHECK((*bad)["codes"]["500"] == 8);
  CHECK((*bad)["codes"]["503"] == 2);
  CHECK((*bad)["codes"]["200"] == 40);
  CHECK((*bad)["flags"]["UO"] == 2);
  CHECK((*ok)["flags"].empty());

  // v1's endpoints are the ones labelled v1 (the ejected one serves v2);
  // v2's upstream has no version labels, so all of its endpoints.
  const json* n1 = find_id(j["nodes"], "version:" + kHost + ":v1");
  const json* n2 = find_id(j["nodes"], "version:" + kHost + ":v2");
  REQUIRE(n1 != nullptr);
  REQUIRE(n2 != nullptr);
  CHECK((*n1)["endpoint_count"] == 1);
  CHECK((*n1)["ejected"] == 0);
  CHECK((*n1)["endpoints"][0]["address"] == "10.0.0.1:9080");
  CHECK((*n2)["endpoint_count"] == 1);
  CHECK((*n2)["overflows"] == 2);

  // Without endpoints=1 the nodes carry counts only.
  auto k = json::parse(graph_json(sampler.window(60s), 60s, "gw", upstreams, false));
  CHECK_FALSE(find_id(k["nodes"], "version:" + kHost + ":v1")->contains("endpoints"));
}

TEST_CASE("graph: a version node flags its ejected endpoints") {
  TrafficSampler sampler(2000ms, 900s);
  sampler.add(make_sample(kStart, stats_of({})));
  sampler.add(make_sample(kStart + 2s, stats_of({series(kHost, "v1", 200, 4)})));
  UpstreamInfo info;
  info.view.name = "outbound|9080||reviews";
  info.view.endpoints = {{.address = "10.0.0.1:9080", .ejected = true},
                         {.address = "10.0.0.2:9080", .healthy = false}};
  info.endpoints = {{"10.0.0.1", 9080, {{"version", "v1"}}, 1},
                    {"10.0.0.2", 9080, {{"version", "v1"}}, 1}};
  auto j = json::parse(graph_json(sampler.window(60s), 60s, "gw", {{info.view.name, info}}, false));
  const json* n = find_id(j["nodes"], "version:" + kHost + ":v1");
  REQUIRE(n != nullptr);
  CHECK((*n)["ejected"] == 1);
  CHECK((*n)["unhealthy"] == 1);
  CHECK((*n)["endpoint_count"] == 2);
}

TEST_CASE("graph: p99 latency comes from the window's histogram difference") {
  TrafficSampler sampler(2000ms, 900s);
  auto slow = series(kHost, "v1", 200, 100);
  sampler.add(make_sample(kStart, stats_of({slow})));
  // 100 more requests, all between 250 and 500 ms: the old fast ones must
  // not pull the window's p99 down.
  slow.requests = 200;
  slow.duration_ms.counts[8] = 100;
  slow.duration_ms.count = 200;
  sampler.add(make_sample(kStart + 2s, stats_of({slow})));
  auto j = json::parse(graph_json(sampler.window(60s), 60s, "gw", {}, false));
  const json* edge = find_id(j["edges"], kV1Edge);
  REQUIRE(edge != nullptr);
  double p99 = (*edge)["p99_ms"].get<double>();
  CHECK(p99 > 250);
  CHECK(p99 <= 500);
}

}  // namespace test_admin_graph
