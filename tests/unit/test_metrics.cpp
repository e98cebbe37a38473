// Istio's standard request metrics (lib/telemetry/metrics): series per
// label set merged across workers, Envoy's default buckets, the label
// order and escaping of the exposition format, and the cardinality bound.

#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/exposition.hpp"
#include "telemetry/metrics.hpp"

namespace test_metrics {

using namespace sluice;
using namespace sluice::telemetry;
using namespace sluice::test;

namespace {

// Istio's four families for `workers`, as Stats renders them.
std::string render(std::string workload, std::span<const RequestMetrics* const> workers) {
  Stats stats;
  stats.source_workload = std::move(workload);
  stats.source_workload_namespace = "istio-system";
  stats.requests = collect_series(workers);
  return stats.prometheus();
}

}  // namespace

TEST_CASE("metrics: histograms count into Envoy's default buckets, le inclusive") {
  Histogram h;
  for (uint64_t v : {0, 1, 2, 5, 6, 3600000, 3600001}) h.record(v);
  Histogram::Counts c;
  h.add_to(c);
  CHECK(c.count == 7);
  CHECK(c.sum == 0 + 1 + 2 + 5 + 6 + 3600000 + 3600001);
  CHECK(c.counts[0] == 1);                           // 0 <= 0.5
  CHECK(c.counts[1] == 1);                           // 1 <= 1
  CHECK(c.counts[2] == 2);                           // 2 and 5 <= 5
  CHECK(c.counts[3] == 1);                           // 6 <= 10
  CHECK(c.counts[kDefaultBuckets.size() - 1] == 1);  // 3600000
  CHECK(c.counts[kDefaultBuckets.size()] == 1);      // above every bound
}

TEST_CASE("metrics: series merge across workers and render Istio's names and labels") {
  LabelInterner interner;
  DestinationLabels reviews;
  reviews.service = "reviews.default.svc.cluster.local";
  reviews.service_name = "reviews";
  reviews.service_namespace = "default";
  reviews.version = "v2";
  const DestinationLabels* v2 = interner.intern(reviews);
  CHECK(interner.intern(reviews) == v2);  // interned: one address per label set
  RequestMetrics w0(interner.unknown()), w1(interner.unknown());
  RequestKey ok{v2, 200};
  w0.record(ok, {3, 0, 120});
  w1.record(ok, {40, 10, 300});
  RequestKey failed{
      v2,
      503,
      {ResponseFlag::upstream_retry_limit_exceeded, ResponseFlag::upstream_connection_failure}};
  w1.record(failed, {1, 0, 91});
  RequestKey no_route{nullptr, 404, {ResponseFlag::no_route_found}};
  w0.record(no_route, {0, 0, 0});

  const RequestMetrics* workers[] = {&w0, &w1};
  std::string text = render("my-gateway", workers);
  check_exposition(text);

  CHECK(sample(text, "istio_requests_total{",
               {"response_code=\"200\"", "destination_version=\"v2\""}) == "2");
  CHECK(sample(text, "istio_requests_total{", {"response_code=\"503\""}) == "1");
  CHECK(sample(text, "istio_requests_total{", {"response_flags=\"URX,UF\""}) == "1");
  CHECK(sample(text, "istio_requests_total{",
               {"response_code=\"404\"", "destination_service=\"unknown\"",
                "response_flags=\"NR\""}) == "1");
  CHECK(sample(text, "istio_request_duration_milliseconds_sum{", {"response_code=\"200\""}) ==
        "43");
  CHECK(sample(text, "istio_request_duration_milliseconds_count{", {"response_code=\"200\""}) ==
        "2");
  CHECK(sample(text, "istio_request_duration_milliseconds_bucket{",
               {"response_code=\"200\"", "le=\"5\""}) == "1");
  CHECK(sample(text, "istio_request_duration_milliseconds_bucket{",
               {"response_code=\"200\"", "le=\"50\""}) == "2");
  CHECK(sample(text, "istio_request_duration_milliseconds_bucket{",
               {"response_code=\"200\"", "le=\"+Inf\""}) == "2");
  CHECK(sample(text, "istio_response_bytes_sum{", {"response_code=\"200\""}) == "420");
  CHECK(sample(text, "istio_request_bytes_bucket{", {"response_code=\"200\"", "le=\"10\""}) == "2");

  // Istio's label order, reporter first, source before destination.
  std::string first = sample(text, "istio_requests_total{", {"response_code=\"200\""});
  std::string line;
  for (const auto& l : lines_of(text))
    if (l.starts_with("istio_requests_total{") && l.find("\"200\"") != std::string::npos) line = l;
  CHECK(line.starts_with(
      "istio_requests_total{reporter=\"source\",source_workload=\"my-gateway\",source_canonical_"
      "service=\"my-gateway\""));
  CHECK(line.find("request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\","
                  "response_flags=\"-\",connection_security_policy=\"unknown\"}") !=
        std::string::npos);
  CHECK(first == "2");
}

TEST_CASE("metrics: label values are escaped") {
  LabelInterner interner;
  DestinationLabels odd;
  odd.service = "a\"b\\c\nd";
  RequestMetrics w(interner.unknown());
  w.record({interner.intern(odd), 200}, {});
  const RequestMetrics* workers[] = {&w};
  std::string text = render("istio-ingressgateway", workers);
  check_exposition(text);
  CHECK(text.find("destination_service=\"a\\\"b\\\\c\\nd\"") != std::string::npos);
}

TEST_CASE("metrics: past the series bound, destinations collapse to unknown") {
  LabelInterner interner;
  RequestMetrics w(interner.unknown(), 3);
  for (int i = 0; i < 50; ++i) {
    DestinationLabels d;
    d.service = "host" + std::to_string(i);
    w.record({interner.intern(d), 200}, {});
  }
  const RequestMetrics* workers[] = {&w};
  std::string text = render("istio-ingressgateway", workers);
  size_t series = 0;
  for (const auto& l : lines_of(text)) series += l.starts_with("istio_requests_total{");
  CHECK(series == 4);  // three hosts, then one unknown series
  CHECK(sample(text, "istio_requests_total{", {"destination_service=\"unknown\""}) == "47");
}

TEST_CASE("metrics: a scrape while a worker records sees whole counts") {
  LabelInterner interner;
  RequestMetrics w(interner.unknown());
  constexpr int kRequests = 20000;
  std::thread worker([&] {
    for (int i = 0; i < kRequests; ++i) {
      DestinationLabels d;
      if (i % 1000 == 0) d.service = "h" + std::to_string(i);  // new series while scraped
      w.record({interner.intern(d), static_cast<uint16_t>(200 + i % 3)}, {1, 1, 1});
    }
  });
  const RequestMetrics* workers[] = {&w};
  for (int i = 0; i < 20; ++i) check_exposition(render("istio-ingressgateway", workers));
  worker.join();
  std::string text = render("istio-ingressgateway", workers);
  uint64_t total = 0;
  for (const auto& l : lines_of(text))
    if (l.starts_with("istio_requests_total{")) total += std::stoull(l.substr(l.rfind(' ') + 1));
  CHECK(total == kRequests);
}

TEST_CASE("metrics: write_sample for the other families") {
  std::string out;
  write_family_header(out, "sluice_connections_active", "gauge", "Open downstream connections.");
  const std::pair<std::string_view, std::string_view> labels[] = {{"listener", "http-80"}};
  write_sample(out, "sluice_connections_active", labels, 3);
  write_sample(out, "sluice_uptime_seconds", {}, 1.5);
  CHECK(out ==
        "# HELP sluice_connections_active Open downstream connections.\n"
        "# TYPE sluice_connections_active gauge\n"
        "sluice_connections_active{listener=\"http-80\"} 3\n"
        "sluice_uptime_seconds 1.5\n");
}

TEST_CASE("metrics: HistogramValue quantiles interpolate inside a bucket") {
  HistogramValue h;
  CHECK(h.quantile(0.99) == 0);
  h.counts[3] = 10;  // (5, 10]
  h.count = 10;
  CHECK(h.quantile(0.5) == doctest::Approx(7.5));
  CHECK(h.quantile(1.0) == doctest::Approx(10));
  h.counts[HistogramValue::kBounds.size()] = 10;  // above every bound
  h.count = 20;
  CHECK(h.quantile(0.99) == HistogramValue::kBounds.back());
}

}  // namespace test_metrics
