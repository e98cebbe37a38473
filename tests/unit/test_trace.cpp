// Trace context (lib/telemetry/trace): W3C traceparent and B3 parsing and
// validation, the precedence between formats, the sampling decision on a
// seeded generator, the headers a forwarded request carries, and the OTLP
// JSON encoding of spans (checked against the ExportTraceServiceRequest
// shape with a JSON parser).

#include <doctest/doctest.h>

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "config/snapshot.hpp"
#include "telemetry/trace.hpp"

namespace test_trace {

using namespace sluice;
using namespace sluice::telemetry;
using json = nlohmann::json;

namespace {

constexpr std::string_view kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kSpan = "00f067aa0ba902b7";

Headers headers(std::initializer_list<std::pair<const char*, const char*>> list) {
  Headers h;
  for (auto [k, v] : list) h.add(k, v);
  return h;
}

}  // namespace

TEST_CASE("traceparent: a valid version 00 value is read with its sampled flag") {
  auto p = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(p);
  CHECK(to_hex(p->trace_id) == kTrace);
  CHECK(to_hex(p->span_id) == kSpan);
  CHECK(p->sampled == true);
  auto unsampled = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  REQUIRE(unsampled);
  CHECK(unsampled->sampled == false);
  // Other flag bits do not make it sampled; bit 0 alone decides.
  auto other = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02");
  REQUIRE(other);
  CHECK(other->sampled == false);
}

TEST_CASE("traceparent: malformed values are rejected") {
  const char* bad[] = {
      "",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero span id
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",     // short trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",     // short span id
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",    // not hex
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper case
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // 00 has 4 fields
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
  };
  for (const char* v : bad) {
    CAPTURE(v);
    CHECK_FALSE(parse_traceparent(v));
  }
  // A later version is read by its first four fields.
  CHECK(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"));
}

TEST_CASE("b3 single header: full, short, decision-only and invalid forms") {
  bool only = false;
  auto full =
      parse_b3_single("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", only);
  REQUIRE(full);
  CHECK_FALSE(only);
  CHECK(to_hex(full->trace_id) == "80f198ee56343ba864fe8b2a57d3eff7");
  CHECK(to_hex(full->span_id) == "e457b5a2e4d86bd1");
  CHECK(full->sampled == true);
  auto short_form = parse_b3_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1", only);
  REQUIRE(short_form);
  CHECK(short_form->trace_id_64);
  CHECK_FALSE(short_form->sampled.has_value());
  auto debug = parse_b3_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1-d", only);
  REQUIRE(debug);
  CHECK(debug->sampled == true);
  auto deny = parse_b3_single("0", only);
  REQUIRE(deny);
  CHECK(only);
  CHECK(deny->sampled == false);
  CHECK_FALSE(parse_b3_single("64fe8b2a57d3eff7", only));
  CHECK_FALSE(parse_b3_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1-x", only));
  CHECK_FALSE(parse_b3_single("64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-1", only));
  CHECK_FALSE(parse_b3_single("0000000000000000-e457b5a2e4d86bd1-1", only));
  CHECK_FALSE(parse_b3_single("64fe8b2a57d3eff-e457b5a2e4d86bd1", only));
}

TEST_CASE("b3 multi headers: 64 and 128 bit trace ids, sampled and debug flags") {
  auto e = extract(headers({{"X-B3-TraceId", "64fe8b2a57d3eff7"},
                            {"X-B3-SpanId", "e457b5a2e4d86bd1"},
                            {"X-B3-Sampled", "0"}}));
  CHECK(e.format == TraceFormat::b3_multi);
  REQUIRE(e.parent);
  CHECK(e.parent->trace_id_64);
  CHECK(e.parent->trace_id == TraceId{0, 0x64fe8b2a57d3eff7ULL});
  CHECK(e.sampled == false);
  auto debug = extract(headers({{"x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"},
                                {"x-b3-spanid", "e457b5a2e4d86bd1"},
                                {"x-b3-sampled", "0"},
                                {"x-b3-flags", "1"}}));
  CHECK(debug.format == TraceFormat::b3_multi);
  CHECK_FALSE(debug.parent->trace_id_64);
  CHECK(debug.sampled == true);  // debug implies sampled
  // A span id missing: no context, but the decision still counts.
  auto lone = extract(headers({{"x-b3-traceid", "64fe8b2a57d3eff7"}, {"x-b3-sampled", "1"}}));
  CHECK(lone.format == TraceFormat::none);
  CHECK_FALSE(lone.parent);
  CHECK(lone.sampled == true);
  CHECK(lone.had_b3_multi);
}

TEST_CASE("precedence: traceparent over b3, b3 single over the multi headers") {
  auto all =
      extract(headers({{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
                       {"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
                       {"x-b3-traceid", "1111111111111111"},
                       {"x-b3-spanid", "2222222222222222"}}));
  CHECK(all.format == TraceFormat::w3c);
  CHECK(to_hex(all.parent->trace_id) == kTrace);
  CHECK(all.sampled == false);
  CHECK(all.had_b3_single);
  CHECK(all.had_b3_multi);
  auto b3 = extract(headers({{"b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
                             {"x-b3-traceid", "1111111111111111"},
                             {"x-b3-spanid", "2222222222222222"}}));
  CHECK(b3.format == TraceFormat::b3_single);
  CHECK(to_hex(b3.parent->trace_id) == "80f198ee56343ba864fe8b2a57d3eff7");
  // An invalid traceparent falls through to B3.
  auto fallback = extract(headers({{"traceparent", "garbage"},
                                   {"x-b3-traceid", "1111111111111111"},
                                   {"x-b3-spanid", "2222222222222222"}}));
  CHECK(fallback.format == TraceFormat::b3_multi);
  CHECK(to_hex(fallback.parent->span_id) == "2222222222222222");
}

TEST_CASE("sampling: an incoming decision wins over the percentage") {
  std::mt19937_64 rng(1);
  Extracted in = extract(
      headers({{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}));
  CHECK(start_span(in, 0, rng).sampled);
  Extracted off = extract(headers({{"b3", "0"}}));
  CHECK_FALSE(start_span(off, 1'000'000, rng).sampled);
  Extracted none = extract(Headers{});
  CHECK(start_span(none, 1'000'000, rng).sampled);
  CHECK_FALSE(start_span(none, 0, rng).sampled);
}

TEST_CASE("sampling: a fixed seed at 50 percent gives one exact sequence") {
  auto run = [](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string pattern;
    for (int i = 0; i < 64; ++i)
      pattern += start_span(Extracted{}, 500'000, rng).sampled ? '1' : '0';
    return pattern;
  };
  std::string a = run(7);
  CHECK(a == run(7));
  CHECK(a != run(8));
  size_t ones = std::count(a.begin(), a.end(), '1');
  CHECK(ones > 16);
  CHECK(ones < 48);
}

TEST_CASE("start_span: a parent's trace continues with a new span id, else a new trace") {
  std::mt19937_64 rng(3);
  Extracted in = extract(
      headers({{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}));
  SpanContext s = start_span(in, 0, rng);
  CHECK(to_hex(s.trace_id) == kTrace);
  CHECK(to_hex(s.parent_span_id) == kSpan);
  CHECK(s.span_id != 0);
  CHECK(s.span_id != 0x00f067aa0ba902b7ULL);
  SpanContext root = start_span(Extracted{}, 0, rng);
  CHECK(root.trace_id.valid());
  CHECK(root.parent_span_id == 0);
  CHECK(root.span_id != 0);
  CHECK(start_span(Extracted{}, 0, rng).trace_id != root.trace_id);
}

TEST_CASE("inject: traceparent names the gateway's span, tracestate is kept") {
  std::mt19937_64 rng(5);
  Headers h = headers({{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                       {"tracestate", "congo=t61rcWkgMzE"}});
  Extracted in = extract(h);
  SpanContext s = start_span(in, 0, rng);
  inject(s, in, h);
  CHECK(h.count("traceparent") == 1);
  CHECK(*h.get("traceparent") == fmt::format("00-{}-{}-01", kTrace, to_hex(s.span_id)));
  CHECK(*h.get("tracestate") == "congo=t61rcWkgMzE");
  CHECK_FALSE(h.contains("b3"));
  CHECK_FALSE(h.contains("x-b3-traceid"));
  // None arrived: one is created, unsampled at 0 percent.
  Headers fresh;
  Extracted nothing = extract(fresh);
  SpanContext root = start_span(nothing, 0, rng);
  inject(root, nothing, fresh);
  auto created = parse_traceparent(*fresh.get("traceparent"));
  REQUIRE(created);
  CHECK(created->trace_id == root.trace_id);
  CHECK(created->span_id == root.span_id);
  CHECK(created->sampled == false);
}

TEST_CASE("inject: b3 in, b3 out with the gateway's span and the caller as parent") {
  std::mt19937_64 rng(9);
  Headers h = headers({{"x-b3-traceid", "64fe8b2a57d3eff7"},
                       {"x-b3-spanid", "e457b5a2e4d86bd1"},
                       {"x-b3-parentspanid", "05e3ac9a4f6e3b90"},
                       {"x-b3-sampled", "1"},
                       {"b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1"}});
  Extracted in = extract(h);
  REQUIRE(in.format == TraceFormat::b3_single);
  SpanContext s = start_span(in, 0, rng);
  inject(s, in, h);
  std::string span = to_hex(s.span_id);
  CHECK(*h.get("x-b3-traceid") == "64fe8b2a57d3eff7");  // 64-bit stays 64-bit
  CHECK(*h.get("x-b3-spanid") == span);
  CHECK(*h.get("x-b3-parentspanid") == "e457b5a2e4d86bd1");
  CHECK(*h.get("x-b3-sampled") == "1");
  CHECK(*h.get("b3") == fmt::format("64fe8b2a57d3eff7-{}-1-e457b5a2e4d86bd1", span));
  // traceparent carries the 64-bit id left-padded to 128 bits.
  CHECK(*h.get("traceparent") == fmt::format("00-000000000000000064fe8b2a57d3eff7-{}-01", span));
}

TEST_CASE("OTLP JSON: an ExportTraceServiceRequest with hex ids and nanosecond strings") {
  Span s;
  s.context.trace_id = *parse_trace_id(kTrace);
  s.context.span_id = 0x1122334455667788ULL;
  s.context.parent_span_id = 0x00f067aa0ba902b7ULL;
  s.name = "reviews.default.svc.cluster.local:9080/*";
  s.trace_state = "congo=t61rcWkgMzE";
  s.start_unix_nanos = 1'700'000'000'000'000'000ULL;
  s.end_unix_nanos = 1'700'000'000'250'000'000ULL;
  s.attributes = {{"http.status_code", "503"}, {"user_agent", "a \"quoted\"\n\x01 agent\xff"}};
  s.error = true;
  Span ok = s;
  ok.context.parent_span_id = 0;
  ok.error = false;
  std::vector<Span> spans{s, ok};
  std::string out;
  append_otlp_json(out, "istio-ingressgateway", spans);
  json doc = json::parse(out, nullptr, false);
  REQUIRE_FALSE(doc.is_discarded());
  const json& rs = doc.at("resourceSpans");
  REQUIRE(rs.size() == 1);
  const json& attr = rs[0].at("resource").at("attributes")[0];
  CHECK(attr.at("key") == "service.name");
  CHECK(attr.at("value").at("stringValue") == "istio-ingressgateway");
  const json& list = rs[0].at("scopeSpans")[0].at("spans");
  REQUIRE(list.size() == 2);
  const json& first = list[0];
  CHECK(first.at("traceId") == std::string(kTrace));
  CHECK(first.at("spanId") == "1122334455667788");
  CHECK(first.at("parentSpanId") == std::string(kSpan));
  CHECK(first.at("traceState") == "congo=t61rcWkgMzE");
  CHECK(first.at("name") == "reviews.default.svc.cluster.local:9080/*");
  CHECK(first.at("kind") == 2);
  CHECK(first.at("startTimeUnixNano") == "1700000000000000000");
  CHECK(first.at("endTimeUnixNano") == "1700000000250000000");
  CHECK(first.at("status").at("code") == 2);
  CHECK(first.at("attributes")[0].at("key") == "http.status_code");
  CHECK(first.at("attributes")[0].at("value").at("stringValue") == "503");
  // Escaped, and still one string (0xff read as Latin-1).
  CHECK(first.at("attributes")[1].at("value").at("stringValue") ==
        "a \"quoted\"\n\x01 agent\xc3\xbf");
  CHECK_FALSE(list[1].contains("parentSpanId"));
  CHECK_FALSE(list[1].at("status").contains("code"));
}

TEST_CASE("compile: tracing fields are checked and the endpoint split") {
  TracingConfig t;
  t.otlp_endpoint = "http://collector.example:4318/v1/traces";
  t.sampling_percentage = 12.5;
  auto c = compile_tracing(t);
  REQUIRE(c);
  CHECK((*c)->export_spans);
  CHECK((*c)->host == "collector.example");
  CHECK((*c)->port == 4318);
  CHECK((*c)->authority == "collector.example:4318");
  CHECK((*c)->target == "/v1/traces");
  CHECK((*c)->sampling_per_million == 125'000);
  t.otlp_endpoint = "127.0.0.1:9999";
  c = compile_tracing(t);
  REQUIRE(c);
  CHECK((*c)->port == 9999);
  CHECK((*c)->target == "/v1/traces");
  t.otlp_endpoint = "";
  c = compile_tracing(t);
  REQUIRE(c);
  CHECK_FALSE((*c)->export_spans);

  auto error = [](TracingConfig bad) {
    auto r = compile_tracing(bad);
    REQUIRE_FALSE(r);
    return r.error().to_string();
  };
  TracingConfig bad;
  bad.sampling_percentage = 101;
  CHECK(error(bad) ==
        "GatewayConfig: telemetry.tracing.sampling_percentage: must be between 0 and 100");
  bad = {};
  bad.otlp_endpoint = "https://collector:4318";
  CHECK(error(bad).starts_with("GatewayConfig: telemetry.tracing.otlp_endpoint: https"));
  bad = {};
  bad.otlp_endpoint = "collector:99999";
  CHECK(error(bad).starts_with("GatewayConfig: telemetry.tracing.otlp_endpoint: "));
  CHECK(error(bad).find("99999") != std::string::npos);
  bad = {};
  bad.otlp_endpoint = "collector:4318/v1/traces\r\nx: y";
  CHECK(error(bad).starts_with("GatewayConfig: telemetry.tracing.otlp_endpoint:"));
  bad = {};
  bad.max_batch_spans = 0;
  CHECK(error(bad) == "GatewayConfig: telemetry.tracing.max_batch_spans: must be >= 1");
  bad = {};
  bad.service_name = "";
  CHECK(error(bad) == "GatewayConfig: telemetry.tracing.service_name: must not be empty");
  // compile() reports it for the whole configuration.
  GatewayConfig config;
  config.telemetry.tracing.sampling_percentage = -1;
  auto snap = compile(config);
  REQUIRE_FALSE(snap);
  CHECK(snap.error().field == "telemetry.tracing.sampling_percentage");
}

}  // namespace test_trace
