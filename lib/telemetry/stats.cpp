// The public Stats values: quantiles, and the Prometheus and plain-text
// renderings.

#include "sluice/stats.hpp"

#include <fmt/format.h>

#include <string_view>
#include <vector>

#include "telemetry/metrics.hpp"

namespace sluice {

double HistogramValue::quantile(double q) const {
  if (count == 0) return 0;
  double rank = q * static_cast<double>(count);
  uint64_t below = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0 || static_cast<double>(below + counts[i]) < rank) {
      below += counts[i];
      continue;
    }
    // Past the last bound nothing is known but that bound (as Prometheus).
    if (i == kBounds.size()) return kBounds.back();
    double lower = i == 0 ? 0 : kBounds[i - 1];
    double upper = kBounds[i];
    double into = (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
    return lower + (upper - lower) * into;
  }
  return kBounds.back();
}

namespace {

using Label = std::pair<std::string_view, std::string_view>;

// Istio's labels of a series up to its destination's, reporter first,
// source before destination.
void destination_labels(std::vector<Label>& out, const Stats& stats, const DestinationSeries& d) {
  std::string_view source = stats.source_workload;
  out = {
      {"reporter", "source"},
      {"source_workload", source},
      {"source_canonical_service", source},
      {"source_canonical_revision", "latest"},
      {"source_workload_namespace", stats.source_workload_namespace},
      {"source_principal", "unknown"},
      {"source_app", source},
      {"source_version", "unknown"},
      {"source_cluster", "unknown"},
      {"destination_workload", d.destination_workload},
      {"destination_workload_namespace", d.destination_workload_namespace},
      {"destination_principal", d.destination_principal},
      {"destination_app", d.destination_app},
      {"destination_version", d.destination_version},
      {"destination_service", d.destination_service},
      {"destination_canonical_service", d.destination_canonical_service},
      {"destination_canonical_revision", d.destination_canonical_revision},
      {"destination_service_name", d.destination_service_name},
      {"destination_service_namespace", d.destination_service_namespace},
      {"destination_cluster", d.destination_cluster},
  };
}

// Reporting as the source, Istio cannot know the destination's policy, and
// says so.
constexpr Label kSecurityPolicy{"connection_security_policy", "unknown"};

// The labels of a request series.
struct SeriesLabels {
  std::string code;
  std::vector<Label> labels;

  SeriesLabels(const Stats& stats, const RequestSeries& s) : code(std::to_string(s.response_code)) {
    destination_labels(labels, stats, s);
    labels.insert(labels.end(), {{"request_protocol", s.request_protocol},
                                 {"response_code", code},
                                 {"grpc_response_status", s.grpc_response_status},
                                 {"response_flags", s.response_flags},
                                 kSecurityPolicy});
  }
};

// The labels of a TCP series: no response code or gRPC status; the
// protocol is "tcp", as Istio's TCP series carry.
std::vector<Label> tcp_labels(const Stats& stats, const TcpSeries& s) {
  std::vector<Label> labels;
  destination_labels(labels, stats, s);
  labels.insert(
      labels.end(),
      {{"request_protocol", "tcp"}, {"response_flags", s.response_flags}, kSecurityPolicy});
  return labels;
}

// Istio's four TCP counter families.
void write_tcp(std::string& out, const Stats& stats) {
  if (stats.tcp.empty()) return;
  std::vector<std::vector<Label>> labels;
  labels.reserve(stats.tcp.size());
  for (const auto& s : stats.tcp) labels.push_back(tcp_labels(stats, s));
  const struct {
    const char* name;
    const char* help;
    uint64_t TcpSeries::*value;
  } counters[] = {
      {"istio_tcp_connections_opened_total", "TCP connections the gateway relayed.",
       &TcpSeries::connections_opened},
      {"istio_tcp_connections_closed_total", "Relayed TCP connections that ended.",
       &TcpSeries::connections_closed},
      {"istio_tcp_received_bytes_total", "Bytes received from clients on relayed connections.",
       &TcpSeries::received_bytes},
      {"istio_tcp_sent_bytes_total", "Bytes sent to clients on relayed connections.",
       &TcpSeries::sent_bytes},
  };
  for (const auto& c : counters) {
    telemetry::write_family_header(out, c.name, "counter", c.help);
    for (size_t i = 0; i < stats.tcp.size(); ++i)
      telemetry::write_sample(out, c.name, labels[i], static_cast<double>(stats.tcp[i].*(c.value)));
  }
}

void write_histogram(std::string& out, const std::string& name, std::span<const Label> labels,
                     const HistogramValue& h) {
  std::vector<Label> with_le(labels.begin(), labels.end());
  with_le.emplace_back("le", "");
  std::string bucket = name + "_bucket";
  uint64_t cumulative = 0;
  std::string le;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    le =
        i < HistogramValue::kBounds.size() ? fmt::format("{}", HistogramValue::kBounds[i]) : "+Inf";
    with_le.back().second = le;
    telemetry::write_sample(out, bucket, with_le, static_cast<double>(cumulative));
  }
  telemetry::write_sample(out, name + "_sum", labels, static_cast<double>(h.sum));
  telemetry::write_sample(out, name + "_count", labels, static_cast<double>(h.count));
}

}  // namespace

std::string Stats::prometheus() const {
  std::string out;
  std::vector<SeriesLabels> labels;
  labels.reserve(requests.size());
  for (const auto& s : requests) labels.emplace_back(*this, s);
  if (!requests.empty()) {
    telemetry::write_family_header(out, "istio_requests_total", "counter",
                                   "Requests the gateway handled.");
    for (size_t i = 0; i < requests.size(); ++i)
      telemetry::write_sample(out, "istio_requests_total", labels[i].labels,
                              static_cast<double>(requests[i].requests));
    const struct {
      const char* name;
      const char* help;
      HistogramValue RequestSeries::*value;
    } histograms[] = {
        {"istio_request_duration_milliseconds", "Request duration in milliseconds.",
         &RequestSeries::duration_ms},
        {"istio_request_bytes", "Request body sizes in bytes.", &RequestSeries::request_bytes},
        {"istio_response_bytes", "Response body sizes in bytes.", &RequestSeries::response_bytes},
    };
    for (const auto& h : histograms) {
      telemetry::write_family_header(out, h.name, "histogram", h.help);
      for (size_t i = 0; i < requests.size(); ++i)
        write_histogram(out, h.name, labels[i].labels, requests[i].*(h.value));
    }
  }
  write_tcp(out, *this);
  std::string_view family;
  for (const auto& m : metrics) {
    if (m.name != family) {
      family = m.name;
      telemetry::write_family_header(out, m.name, m.gauge ? "gauge" : "counter", m.help);
    }
    std::vector<Label> l(m.labels.begin(), m.labels.end());
    telemetry::write_sample(out, m.name, l, m.value);
  }
  return out;
}

std::string Stats::text() const {
  std::string out;
  auto line = [&](std::string_view name, std::span<const Label> labels, std::string_view value) {
    out += name;
    if (!labels.empty()) {
      out += '{';
      for (size_t i = 0; i < labels.size(); ++i)
        fmt::format_to(std::back_inserter(out), "{}{}=\"{}\"", i ? "," : "", labels[i].first,
                       labels[i].second);
      out += '}';
    }
    fmt::format_to(std::back_inserter(out), ": {}\n", value);
  };
  for (const auto& s : requests) {
    std::string code = std::to_string(s.response_code);
    const Label l[] = {{"destination_service", s.destination_service},
                       {"destination_version", s.destination_version},
                       {"response_code", code},
                       {"response_flags", s.response_flags}};
    line("istio_requests_total", l, std::to_string(s.requests));
    line("istio_request_duration_milliseconds", l,
         fmt::format("P50({:g}) P90({:g}) P99({:g}) count({})", s.duration_ms.quantile(0.5),
                     s.duration_ms.quantile(0.9), s.duration_ms.quantile(0.99),
                     s.duration_ms.count));
  }
  for (const auto& s : tcp) {
    const Label l[] = {{"destination_service", s.destination_service},
                       {"destination_version", s.destination_version},
                       {"response_flags", s.response_flags}};
    line("istio_tcp_connections_opened_total", l, std::to_string(s.connections_opened));
    line("istio_tcp_connections_closed_total", l, std::to_string(s.connections_closed));
    line("istio_tcp_received_bytes_total", l, std::to_string(s.received_bytes));
    line("istio_tcp_sent_bytes_total", l, std::to_string(s.sent_bytes));
  }
  for (const auto& m : metrics) {
    std::vector<Label> l(m.labels.begin(), m.labels.end());
    line(m.name, l, fmt::format("{:g}", m.value));
  }
  return out;
}

}  // namespace sluice
