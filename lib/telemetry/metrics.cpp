#include "telemetry/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <utility>
#include <vector>

namespace sluice::telemetry {

namespace {

size_t mix(size_t seed, size_t value) {
  return seed ^ (value + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2));
}

// A single writer adds without a read-modify-write instruction.
void bump(std::atomic<uint64_t>& a, uint64_t by) {
  a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
}

}  // namespace

void Histogram::Counts::add(const Counts& other) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
  sum += other.sum;
  count += other.count;
}

void Histogram::record(uint64_t value) {
  // The first bound >= value: Prometheus buckets are "less or equal".
  auto it =
      std::lower_bound(kDefaultBuckets.begin(), kDefaultBuckets.end(), static_cast<double>(value));
  bump(buckets_[static_cast<size_t>(it - kDefaultBuckets.begin())], 1);
  bump(sum_, value);
}

void Histogram::add_to(Counts& out) const {
  for (size_t i = 0; i < buckets_.size(); ++i) {
    uint64_t n = buckets_[i].load(std::memory_order_relaxed);
    out.buckets[i] += n;
    out.count += n;
  }
  out.sum += sum_.load(std::memory_order_relaxed);
}

size_t LabelInterner::Hash::operator()(const std::unique_ptr<DestinationLabels>& l) const {
  std::hash<std::string> h;
  size_t seed = 0;
  for (const std::string* s : {&l->service, &l->service_name, &l->service_namespace, &l->workload,
                               &l->workload_namespace, &l->app, &l->version, &l->principal,
                               &l->canonical_service, &l->canonical_revision, &l->cluster})
    seed = mix(seed, h(*s));
  return seed;
}

LabelInterner::LabelInterner() : unknown_(intern(DestinationLabels{})) {}

const DestinationLabels* LabelInterner::intern(const DestinationLabels& labels) {
  auto probe = std::make_unique<DestinationLabels>(labels);
  std::lock_guard lock(mutex_);
  return labels_.insert(std::move(probe)).first->get();
}

size_t RequestKeyHash::operator()(const RequestKey& k) const {
  size_t seed = std::hash<const void*>()(k.destination);
  seed = mix(seed, k.response_code);
  for (size_t i = 0; i < k.response_flags.size(); ++i)
    seed = mix(seed, static_cast<size_t>(k.response_flags[i]));
  seed = mix(seed, static_cast<size_t>(k.protocol));
  return mix(seed, static_cast<size_t>(k.grpc_status + 1));
}

struct RequestMetrics::Series {
  std::atomic<uint64_t> requests{0};
  Histogram duration, request_bytes, response_bytes;
};

RequestMetrics::RequestMetrics(const DestinationLabels* unknown, size_t max_series)
    : unknown_(unknown), max_series_(max_series) {}

RequestMetrics::~RequestMetrics() = default;

RequestMetrics::Series& RequestMetrics::find_or_add(const RequestKey& key) {
  // Only this (the recording) thread inserts, so looking up without the
  // lock races with nothing but collect()'s reads.
  if (auto it = series_.find(key); it != series_.end()) return *it->second;
  RequestKey k = key;
  if (!k.destination) k.destination = unknown_;
  if (series_.size() >= max_series_) {
    k.destination = unknown_;
    if (auto it = series_.find(k); it != series_.end()) return *it->second;
  }
  std::lock_guard lock(mutex_);
  auto& slot = series_[k];
  if (!slot) slot = std::make_unique<Series>();
  return *slot;
}

void RequestMetrics::record(const RequestKey& key, const RequestSample& sample) {
  Series& s = find_or_add(key);
  bump(s.requests, 1);
  s.duration.record(sample.duration_ms);
  s.request_bytes.record(sample.request_bytes);
  s.response_bytes.record(sample.response_bytes);
}

void RequestMetrics::collect(std::unordered_map<RequestKey, Totals, RequestKeyHash>& out) const {
  std::lock_guard lock(mutex_);
  for (const auto& [key, series] : series_) {
    Totals& t = out[key];
    t.requests += series->requests.load(std::memory_order_relaxed);
    series->duration.add_to(t.duration);
    series->request_bytes.add_to(t.request_bytes);
    series->response_bytes.add_to(t.response_bytes);
  }
}

// ---------------------------------------------------------------------------
// Exposition.

namespace {

void append_escaped(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

void append_value(std::string& out, double value) {
  // Integers print without a fraction; the format reads either.
  if (value == static_cast<double>(static_cast<int64_t>(value)))
    fmt::format_to(std::back_inserter(out), "{}", static_cast<int64_t>(value));
  else
    fmt::format_to(std::back_inserter(out), "{}", value);
}

// The labels of a series, in Istio's order, without braces:
// reporter="source",source_workload="...",...
std::string series_labels(const SourceLabels& src, const RequestKey& key) {
  const DestinationLabels& d = *key.destination;
  std::string code = std::to_string(key.response_code);
  std::string flags = to_string(key.response_flags);
  std::string grpc = key.grpc_status < 0 ? std::string() : std::to_string(key.grpc_status);
  const std::pair<std::string_view, std::string_view> labels[] = {
      {"reporter", "source"},
      {"source_workload", src.workload},
      {"source_canonical_service", src.canonical_service},
      {"source_canonical_revision", src.canonical_revision},
      {"source_workload_namespace", src.workload_namespace},
      {"source_principal", src.principal},
      {"source_app", src.app},
      {"source_version", src.version},
      {"source_cluster", src.cluster},
      {"destination_workload", d.workload},
      {"destination_workload_namespace", d.workload_namespace},
      {"destination_principal", d.principal},
      {"destination_app", d.app},
      {"destination_version", d.version},
      {"destination_service", d.service},
      {"destination_canonical_service", d.canonical_service},
      {"destination_canonical_revision", d.canonical_revision},
      {"destination_service_name", d.service_name},
      {"destination_service_namespace", d.service_namespace},
      {"destination_cluster", d.cluster},
      {"request_protocol", key.protocol == RequestProtocol::grpc ? "grpc" : "http"},
      {"response_code", code},
      {"grpc_response_status", grpc},
      {"response_flags", flags},
      // Istio cannot know the destination's policy when it reports as the
      // source, and says so.
      {"connection_security_policy", "unknown"},
  };
  std::string out;
  for (const auto& [name, value] : labels) {
    if (!out.empty()) out += ',';
    out += name;
    out += "=\"";
    append_escaped(out, value);
    out += '"';
  }
  return out;
}

void write_histogram(std::string& out, std::string_view name, const std::string& labels,
                     const Histogram::Counts& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i];
    out += name;
    out += "_bucket{";
    out += labels;
    out += ",le=\"";
    if (i < kDefaultBuckets.size())
      append_value(out, kDefaultBuckets[i]);
    else
      out += "+Inf";
    fmt::format_to(std::back_inserter(out), "\"}} {}\n", cumulative);
  }
  fmt::format_to(std::back_inserter(out), "{}_sum{{{}}} {}\n", name, labels, h.sum);
  fmt::format_to(std::back_inserter(out), "{}_count{{{}}} {}\n", name, labels, h.count);
}

}  // namespace

void write_family_header(std::string& out, std::string_view name, std::string_view type,
                         std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void write_sample(std::string& out, std::string_view name,
                  std::span<const std::pair<std::string_view, std::string_view>> labels,
                  double value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out += ',';
      first = false;
      out += k;
      out += "=\"";
      append_escaped(out, v);
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  append_value(out, value);
  out += '\n';
}

std::string render_request_metrics(const SourceLabels& source,
                                   std::span<const RequestMetrics* const> workers) {
  std::unordered_map<RequestKey, RequestMetrics::Totals, RequestKeyHash> merged;
  for (const RequestMetrics* w : workers) w->collect(merged);
  std::vector<std::pair<std::string, const RequestMetrics::Totals*>> rows;
  rows.reserve(merged.size());
  for (const auto& [key, totals] : merged) rows.emplace_back(series_labels(source, key), &totals);
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  std::string out;
  if (rows.empty()) return out;
  write_family_header(out, "istio_requests_total", "counter", "Requests the gateway handled.");
  for (const auto& [labels, t] : rows)
    fmt::format_to(std::back_inserter(out), "istio_requests_total{{{}}} {}\n", labels, t->requests);
  const std::pair<const char*, Histogram::Counts RequestMetrics::Totals::*> histograms[] = {
      {"istio_request_duration_milliseconds", &RequestMetrics::Totals::duration},
      {"istio_request_bytes", &RequestMetrics::Totals::request_bytes},
      {"istio_response_bytes", &RequestMetrics::Totals::response_bytes},
  };
  const char* help[] = {"Request duration in milliseconds.", "Request sizes in bytes.",
                        "Response sizes in bytes."};
  for (size_t i = 0; i < std::size(histograms); ++i) {
    write_family_header(out, histograms[i].first, "histogram", help[i]);
    for (const auto& [labels, t] : rows)
      write_histogram(out, histograms[i].first, labels, (*t).*(histograms[i].second));
  }
  return out;
}

}  // namespace sluice::telemetry
