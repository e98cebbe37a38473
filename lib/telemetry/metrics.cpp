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

}  // namespace

void Histogram::record(uint64_t value) {
  // The first bound >= value: Prometheus buckets are "less or equal".
  auto it =
      std::lower_bound(kDefaultBuckets.begin(), kDefaultBuckets.end(), static_cast<double>(value));
  add_single_writer(buckets_[static_cast<size_t>(it - kDefaultBuckets.begin())], 1);
  add_single_writer(sum_, value);
}

void Histogram::add_to(Counts& out) const {
  for (size_t i = 0; i < buckets_.size(); ++i) {
    uint64_t n = buckets_[i].load(std::memory_order_relaxed);
    out.counts[i] += n;
    out.count += n;
  }
  out.sum += sum_.load(std::memory_order_relaxed);
}

size_t LabelInterner::Hash::operator()(const std::unique_ptr<DestinationLabels>& l) const {
  std::hash<std::string> h;
  size_t seed = 0;
  for (const std::string* s :
       {&l->service, &l->service_name, &l->service_namespace, &l->workload, &l->workload_namespace,
        &l->app, &l->version, &l->principal, &l->canonical_service, &l->canonical_revision,
        &l->cluster, &l->upstream})
    seed = mix(seed, h(*s));
  return seed;
}

LabelInterner::LabelInterner() : unknown_(intern(DestinationLabels{})) {}

const DestinationLabels* LabelInterner::intern(const DestinationLabels& labels) {
  auto probe = std::make_unique<DestinationLabels>(labels);
  std::lock_guard lock(mutex_);
  return labels_.insert(std::move(probe)).first->get();
}

LabelInterner& process_labels() {
  // Never destroyed: workers may record until the process ends.
  static LabelInterner* interner = new LabelInterner();
  return *interner;
}

const DestinationLabels* destination_labels(const ServiceIdentity& service,
                                            std::string_view upstream, std::string_view version) {
  DestinationLabels l;
  l.service = service.host.empty() ? std::string(upstream) : service.host;
  l.service_name = service.name.empty() ? l.service : service.name;
  if (!service.namespace_.empty()) l.service_namespace = service.namespace_;
  if (!version.empty()) l.version = std::string(version);
  // Istio derives canonical names from the app and version labels; a
  // service's own name is what those labels carry by convention.
  l.canonical_service = l.service_name;
  if (!version.empty()) l.canonical_revision = l.version;
  l.upstream = std::string(upstream);
  return process_labels().intern(l);
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
    : table_(unknown, max_series) {}

RequestMetrics::~RequestMetrics() = default;

void RequestMetrics::record(const RequestKey& key, const RequestSample& sample) {
  Series& s = table_.find_or_add(key);
  add_single_writer(s.requests, 1);
  s.duration.record(sample.duration_ms);
  s.request_bytes.record(sample.request_bytes);
  s.response_bytes.record(sample.response_bytes);
}

void RequestMetrics::collect(std::unordered_map<RequestKey, Totals, RequestKeyHash>& out) const {
  table_.for_each([&](const RequestKey& key, const Series& series) {
    Totals& t = out[key];
    t.requests += series.requests.load(std::memory_order_relaxed);
    series.duration.add_to(t.duration);
    series.request_bytes.add_to(t.request_bytes);
    series.response_bytes.add_to(t.response_bytes);
  });
}

size_t TcpKeyHash::operator()(const TcpKey& k) const {
  size_t seed = std::hash<const void*>()(k.destination);
  for (size_t i = 0; i < k.response_flags.size(); ++i)
    seed = mix(seed, static_cast<size_t>(k.response_flags[i]));
  return seed;
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

namespace {

void copy_destination(DestinationSeries& out, const DestinationLabels& d) {
  out.destination_service = d.service;
  out.destination_service_name = d.service_name;
  out.destination_service_namespace = d.service_namespace;
  out.destination_version = d.version;
  out.destination_workload = d.workload;
  out.destination_workload_namespace = d.workload_namespace;
  out.destination_app = d.app;
  out.destination_principal = d.principal;
  out.destination_canonical_service = d.canonical_service;
  out.destination_canonical_revision = d.canonical_revision;
  out.destination_cluster = d.cluster;
  out.destination_upstream = d.upstream;
}

}  // namespace

std::vector<RequestSeries> collect_series(std::span<const RequestMetrics* const> workers) {
  std::unordered_map<RequestKey, RequestMetrics::Totals, RequestKeyHash> merged;
  for (const RequestMetrics* w : workers) w->collect(merged);
  std::vector<RequestSeries> out;
  out.reserve(merged.size());
  for (const auto& [key, t] : merged) {
    RequestSeries s;
    copy_destination(s, *key.destination);
    s.response_code = key.response_code;
    s.response_flags = to_string(key.response_flags);
    s.request_protocol = key.protocol == RequestProtocol::grpc ? "grpc" : "http";
    if (key.grpc_status >= 0) s.grpc_response_status = std::to_string(key.grpc_status);
    s.requests = t.requests;
    s.duration_ms = t.duration;
    s.request_bytes = t.request_bytes;
    s.response_bytes = t.response_bytes;
    out.push_back(std::move(s));
  }
  auto tie = [](const RequestSeries& s) {
    return std::tie(s.destination_service, s.destination_version, s.response_code, s.response_flags,
                    s.request_protocol, s.grpc_response_status, s.destination_service_name,
                    s.destination_service_namespace, s.destination_workload);
  };
  std::sort(out.begin(), out.end(),
            [&](const RequestSeries& a, const RequestSeries& b) { return tie(a) < tie(b); });
  return out;
}

std::vector<TcpSeries> collect_tcp_series(std::span<const TcpMetrics* const> workers) {
  struct Totals {
    uint64_t opened = 0, closed = 0, received = 0, sent = 0;
  };
  std::unordered_map<TcpKey, Totals, TcpKeyHash> merged;
  for (const TcpMetrics* w : workers)
    w->for_each([&](const TcpKey& key, const TcpCounters& c) {
      Totals& t = merged[key];
      t.opened += c.opened.load(std::memory_order_relaxed);
      t.closed += c.closed.load(std::memory_order_relaxed);
      t.received += c.received_bytes.load(std::memory_order_relaxed);
      t.sent += c.sent_bytes.load(std::memory_order_relaxed);
    });
  std::vector<TcpSeries> out;
  out.reserve(merged.size());
  for (const auto& [key, t] : merged) {
    TcpSeries s;
    copy_destination(s, *key.destination);
    s.response_flags = to_string(key.response_flags);
    s.connections_opened = t.opened;
    s.connections_closed = t.closed;
    s.received_bytes = t.received;
    s.sent_bytes = t.sent;
    out.push_back(std::move(s));
  }
  auto tie = [](const TcpSeries& s) {
    return std::tie(s.destination_service, s.destination_version, s.response_flags,
                    s.destination_service_name, s.destination_service_namespace,
                    s.destination_upstream);
  };
  std::sort(out.begin(), out.end(),
            [&](const TcpSeries& a, const TcpSeries& b) { return tie(a) < tie(b); });
  return out;
}

}  // namespace sluice::telemetry
