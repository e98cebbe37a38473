// Tracing through real sockets (issue 13, section 3): trace headers the
// upstream receives, spans a collector stub (an in-process HTTP server on
// port 0) receives as OTLP/HTTP JSON, sampling at 0, 100 and 50 percent on
// the gateway's seed, batching on an injected clock, and a collector that
// is down costing only counters.

#include <doctest/doctest.h>

#include <fmt/format.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"
#include "telemetry/trace.hpp"

namespace tracing_test {

using namespace sluice;
using namespace sluice::test;
using json = nlohmann::json;

namespace {

constexpr std::string_view kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kParent = "00f067aa0ba902b7";

GatewayConfig traced_config(uint16_t backend, uint16_t collector, double percent,
                            size_t batch = 1) {
  GatewayConfig config = single_upstream_config(backend);
  config.telemetry.tracing.otlp_endpoint = fmt::format("http://127.0.0.1:{}/v1/traces", collector);
  config.telemetry.tracing.sampling_percentage = percent;
  config.telemetry.tracing.max_batch_spans = batch;
  config.telemetry.tracing.flush_interval = std::chrono::seconds(10);
  return config;
}

HttpResponse get(uint16_t port, const HeaderList& headers = {}, std::string_view target = "/") {
  RawClient client(port);
  REQUIRE(client.send(make_request("GET", target, "example.com", headers)));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  return *response;
}

// Every span the collector received, in arrival order; checks each POST's
// shape on the way.
std::vector<json> collected_spans(const FakeUpstream& collector) {
  std::vector<json> spans;
  for (const Received& r : collector.requests()) {
    CHECK(r.method == "POST");
    CHECK(r.target == "/v1/traces");
    CHECK(r.header("content-type") == "application/json");
    json doc = json::parse(r.body, nullptr, false);
    REQUIRE_FALSE(doc.is_discarded());
    const json& rs = doc.at("resourceSpans");
    REQUIRE(rs.size() == 1);
    CHECK(rs[0].at("resource").at("attributes")[0].at("value").at("stringValue") ==
          "istio-ingressgateway");
    for (const json& s : rs[0].at("scopeSpans")[0].at("spans")) spans.push_back(s);
  }
  return spans;
}

std::string attribute(const json& span, std::string_view key) {
  for (const json& a : span.at("attributes"))
    if (a.at("key") == key) return a.at("value").at("stringValue");
  return "<none>";
}

// A sampled request whose span ends up last at the collector: what was
// logged before it on the (single) worker has been handed to the exporter.
void send_marker(uint16_t port, FakeUpstream& collector, size_t spans_before) {
  std::string tp = fmt::format("00-{}-{}-01", "0123456789abcdef0123456789abcdef", kParent);
  CHECK(get(port, {{"traceparent", tp}}).status == 200);
  REQUIRE(wait_until([&] {
    auto spans = collected_spans(collector);
    return spans.size() > spans_before &&
           spans.back().at("traceId") == "0123456789abcdef0123456789abcdef";
  }));
}

}  // namespace

TEST_CASE(
    "tracing: the collector gets the span of an incoming traceparent, the upstream its child") {
  FakeUpstream backend("backend");
  FakeUpstream collector("collector");
  // 0 percent: the incoming sampled flag decides.
  TestGateway gw(traced_config(backend.port(), collector.port(), 0));
  std::string incoming = fmt::format("00-{}-{}-01", kTrace, kParent);
  auto response = get(gw.port(),
                      {{"traceparent", incoming},
                       {"tracestate", "congo=t61rcWkgMzE"},
                       {"user-agent", "trace-test"},
                       {"x-request-id", "req-1"}},
                      "/reviews/1?x=y");
  CHECK(response.status == 200);
  REQUIRE(backend.wait_for_requests(1));
  Received up = *backend.last_request();
  auto forwarded = telemetry::parse_traceparent(up.header("traceparent").value_or(""));
  REQUIRE(forwarded);
  CHECK(telemetry::to_hex(forwarded->trace_id) == kTrace);
  CHECK(forwarded->sampled == true);
  CHECK(telemetry::to_hex(forwarded->span_id) != kParent);
  CHECK(up.header("tracestate") == "congo=t61rcWkgMzE");
  CHECK(up.header_count("traceparent") == 1);

  REQUIRE(wait_until([&] { return gw.gateway().trace_export_stats().spans_exported == 1; }));
  auto spans = collected_spans(collector);
  REQUIRE(spans.size() == 1);
  const json& span = spans[0];
  CHECK(span.at("traceId") == std::string(kTrace));
  CHECK(span.at("parentSpanId") == std::string(kParent));
  // The upstream's parent is the gateway's span.
  CHECK(span.at("spanId") == telemetry::to_hex(forwarded->span_id));
  CHECK(span.at("traceState") == "congo=t61rcWkgMzE");
  CHECK(span.at("name") == "backend/*");
  CHECK(span.at("kind") == 2);
  uint64_t start = std::stoull(span.at("startTimeUnixNano").get<std::string>());
  uint64_t end = std::stoull(span.at("endTimeUnixNano").get<std::string>());
  CHECK(start > 1'600'000'000'000'000'000ULL);
  CHECK(end >= start);
  CHECK(attribute(span, "http.status_code") == "200");
  CHECK(attribute(span, "http.method") == "GET");
  CHECK(attribute(span, "url.path") == "/reviews/1");
  CHECK(attribute(span, "http.url") == "http://example.com/reviews/1?x=y");
  CHECK(attribute(span, "upstream_cluster") == "backend");
  CHECK(attribute(span, "response_flags") == "-");
  CHECK(attribute(span, "guid:x-request-id") == "req-1");
  CHECK(attribute(span, "user_agent") == "trace-test");
  CHECK(attribute(span, "component") == "proxy");
  CHECK_FALSE(span.at("status").contains("code"));
  auto stats = gw.gateway().trace_export_stats();
  CHECK(stats.spans_sampled == 1);
  CHECK(stats.export_requests == 1);
  CHECK(stats.export_failures == 0);
  CHECK(stats.spans_dropped == 0);
}

TEST_CASE("tracing: a 5xx span has status ERROR and the generated request id") {
  FakeUpstream backend("backend");
  backend.set_handler([](const Received&) {
    Reply r;
    r.status = 503;
    return r;
  });
  FakeUpstream collector("collector");
  TestGateway gw(traced_config(backend.port(), collector.port(), 100));
  CHECK(get(gw.port()).status == 503);
  REQUIRE(backend.wait_for_requests(1));
  REQUIRE(wait_until([&] { return collected_spans(collector).size() == 1; }));
  json span = collected_spans(collector)[0];
  CHECK(span.at("status").at("code") == 2);
  CHECK(attribute(span, "http.status_code") == "503");
  CHECK(attribute(span, "error") == "true");
  // The gateway made the trace: no parent, and the id the upstream saw.
  CHECK_FALSE(span.contains("parentSpanId"));
  auto forwarded = telemetry::parse_traceparent(*backend.last_request()->header("traceparent"));
  REQUIRE(forwarded);
  CHECK(span.at("traceId") == telemetry::to_hex(forwarded->trace_id));
  CHECK(attribute(span, "guid:x-request-id") == backend.last_request()->header("x-request-id"));
}

TEST_CASE("tracing: B3 in, B3 out, consistent with the traceparent sent") {
  FakeUpstream backend("backend");
  FakeUpstream collector("collector");
  TestGateway gw(traced_config(backend.port(), collector.port(), 0));
  auto response = get(gw.port(), {{"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"},
                                  {"x-b3-spanid", "e457b5a2e4d86bd1"},
                                  {"x-b3-parentspanid", "05e3ac9a4f6e3b90"},
                                  {"x-b3-sampled", "1"}});
  CHECK(response.status == 200);
  REQUIRE(backend.wait_for_requests(1));
  Received up = *backend.last_request();
  CHECK(up.header("x-b3-traceid") == "80f198ee56343ba864fe8b2a57d3eff7");
  CHECK(up.header("x-b3-parentspanid") == "e457b5a2e4d86bd1");
  CHECK(up.header("x-b3-sampled") == "1");
  std::string span_id = up.header("x-b3-spanid").value_or("");
  CHECK(span_id.size() == 16);
  CHECK(span_id != "e457b5a2e4d86bd1");
  CHECK(up.header("traceparent") ==
        fmt::format("00-80f198ee56343ba864fe8b2a57d3eff7-{}-01", span_id));
  REQUIRE(wait_until([&] { return collected_spans(collector).size() == 1; }));
  json span = collected_spans(collector)[0];
  CHECK(span.at("spanId") == span_id);
  CHECK(span.at("parentSpanId") == "e457b5a2e4d86bd1");
}

TEST_CASE("tracing: sampling 0 percent exports nothing, and a traceparent is still created") {
  FakeUpstream backend("backend");
  FakeUpstream collector("collector");
  TestGateway gw(traced_config(backend.port(), collector.port(), 0));
  for (int i = 0; i < 10; ++i) CHECK(get(gw.port()).status == 200);
  REQUIRE(backend.wait_for_requests(10));
  for (const Received& r : backend.requests()) {
    auto tp = telemetry::parse_traceparent(r.header("traceparent").value_or(""));
    REQUIRE(tp);
    CHECK(tp->sampled == false);
  }
  send_marker(gw.port(), collector, 0);
  CHECK(collected_spans(collector).size() == 1);  // the marker alone
  CHECK(gw.gateway().trace_export_stats().spans_sampled == 1);
}

TEST_CASE("tracing: sampling 100 percent exports every request") {
  FakeUpstream backend("backend");
  FakeUpstream collector("collector");
  TestGateway gw(traced_config(backend.port(), collector.port(), 100));
  for (int i = 0; i < 10; ++i) CHECK(get(gw.port()).status == 200);
  REQUIRE(wait_until([&] { return gw.gateway().trace_export_stats().spans_exported == 10; }));
  auto spans = collected_spans(collector);
  CHECK(spans.size() == 10);
  std::set<std::string> traces;
  for (const json& s : spans) traces.insert(s.at("traceId").get<std::string>());
  CHECK(traces.size() == 10);  // a new trace each
}

TEST_CASE("tracing: 50 percent on a fixed seed exports an exact count") {
  FakeUpstream backend("backend");
  FakeUpstream collector("collector");
  TestGateway gw(traced_config(backend.port(), collector.port(), 50));  // seed 42, one worker
  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i) CHECK(get(gw.port()).status == 200);
  send_marker(gw.port(), collector, 0);
  // The same draws: worker 0's seed (Gateway: seed * golden ratio + index),
  // its trace generator's (SessionHost: that ^ "trace"), one start_span
  // per request.
  std::mt19937_64 rng((42 * 0x9E3779B97F4A7C15ULL) ^ 0x7472616365ULL);
  size_t expected = 0;
  for (int i = 0; i < kRequests; ++i)
    expected += telemetry::start_span(telemetry::Extracted{}, 500'000, rng).sampled;
  CHECK(expected > 5);
  CHECK(expected < 35);
  CHECK(collected_spans(collector).size() == expected + 1);
  size_t sampled = 0;
  for (const Received& r : backend.requests())
    if (r.header("traceparent").value_or("").ends_with("-01")) ++sampled;
  CHECK(sampled == expected + 1);
}

TEST_CASE("tracing: spans are batched, and a partial batch waits for the flush interval") {
  FakeUpstream backend("backend");
  FakeUpstream collector("collector");
  ManualClock clock;
  TestGateway gw(traced_config(backend.port(), collector.port(), 100, 3), 1, nullptr, &clock);
  for (int i = 0; i < 2; ++i) CHECK(get(gw.port()).status == 200);
  clock.settle();
  CHECK(collector.request_count() == 0);
  CHECK(get(gw.port()).status == 200);  // the third fills a batch
  REQUIRE(collector.wait_for_requests(1));
  CHECK(collected_spans(collector).size() == 3);
  // The POST's answer read before time moves (its timeout is on this clock).
  REQUIRE(wait_until([&] { return gw.gateway().trace_export_stats().spans_exported == 3; }));
  CHECK(get(gw.port()).status == 200);
  clock.settle();
  CHECK(collector.request_count() == 1);
  clock.advance(std::chrono::seconds(11));
  REQUIRE(collector.wait_for_requests(2));
  CHECK(collected_spans(collector).size() == 4);
  CHECK(gw.gateway().trace_export_stats().export_requests == 2);
}

TEST_CASE("tracing: a collector that is down leaves requests served and counts failures") {
  FakeUpstream backend("backend");
  LoopbackPort closed;  // bound, not listening: connects are refused
  TestGateway gw(traced_config(backend.port(), closed.port(), 100));
  for (int i = 0; i < 5; ++i) CHECK(get(gw.port()).status == 200);
  REQUIRE(wait_until([&] { return gw.gateway().trace_export_stats().export_failures == 5; }));
  auto stats = gw.gateway().trace_export_stats();
  CHECK(stats.spans_exported == 0);
  CHECK(stats.spans_dropped == 5);
  CHECK(stats.export_requests == 5);
  // The same counts in the gateway's metrics.
  std::string text = gw.gateway().stats().prometheus();
  CHECK(text.find("sluice_tracing_export_failures_total 5\n") != std::string::npos);
  CHECK(text.find("sluice_tracing_spans_total{result=\"dropped\"} 5\n") != std::string::npos);
}

TEST_CASE("tracing: a slow collector fills the bounded queue, requests are still served") {
  FakeUpstream backend("backend");
  FakeUpstream collector("collector");
  auto first = std::make_shared<std::atomic<bool>>(true);
  collector.set_handler([first](const Received&) {
    Reply r;
    r.hold = first->exchange(false);  // the first POST waits for release()
    return r;
  });
  GatewayConfig config = traced_config(backend.port(), collector.port(), 100);
  config.telemetry.tracing.max_queued_spans = 2;
  TestGateway gw(std::move(config));
  CHECK(get(gw.port()).status == 200);
  REQUIRE(wait_until([&] { return collector.held() == 1; }));
  for (int i = 0; i < 5; ++i) CHECK(get(gw.port()).status == 200);
  REQUIRE(wait_until([&] { return gw.gateway().trace_export_stats().spans_sampled == 6; }));
  CHECK(gw.gateway().trace_export_stats().spans_dropped == 3);  // 1 in flight, 2 queued
  CHECK(gw.gateway().trace_export_stats().spans_exported == 0);
  collector.release();
  REQUIRE(wait_until([&] { return gw.gateway().trace_export_stats().spans_exported == 3; }));
  CHECK(collected_spans(collector).size() == 3);
  CHECK(gw.gateway().trace_export_stats().export_failures == 0);
}

}  // namespace tracing_test
