#include "admin/graph.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "http/tokens.hpp"

namespace sluice::admin {

namespace {

using nlohmann::json;

void add_histogram(HistogramValue& into, const HistogramValue& h) {
  for (size_t i = 0; i < into.counts.size(); ++i) into.counts[i] += h.counts[i];
  into.sum += h.sum;
  into.count += h.count;
}

// Counters only grow; one that shrank was reset (a new gateway): count from 0.
uint64_t delta(uint64_t now, uint64_t before) {
  return now >= before ? now - before : now;
}

HistogramValue histogram_delta(const HistogramValue& now, const HistogramValue& before) {
  HistogramValue d;
  for (size_t i = 0; i < d.counts.size(); ++i) d.counts[i] = delta(now.counts[i], before.counts[i]);
  d.sum = delta(now.sum, before.sum);
  d.count = delta(now.count, before.count);
  return d;
}

EdgeTotals totals_delta(const EdgeTotals& now, const EdgeTotals* before) {
  if (!before) return now;
  EdgeTotals d;
  d.service_name = now.service_name;
  d.service_namespace = now.service_namespace;
  d.upstreams = now.upstreams;
  d.requests = delta(now.requests, before->requests);
  d.errors = delta(now.errors, before->errors);
  for (const auto& [code, n] : now.codes) {
    auto it = before->codes.find(code);
    if (uint64_t c = delta(n, it == before->codes.end() ? 0 : it->second)) d.codes[code] = c;
  }
  for (const auto& [flag, n] : now.flags) {
    auto it = before->flags.find(flag);
    if (uint64_t c = delta(n, it == before->flags.end() ? 0 : it->second)) d.flags[flag] = c;
  }
  d.duration_ms = histogram_delta(now.duration_ms, before->duration_ms);
  return d;
}

void merge_into(EdgeTotals& into, const EdgeTotals& e) {
  into.requests += e.requests;
  into.errors += e.errors;
  for (const auto& [code, n] : e.codes) into.codes[code] += n;
  for (const auto& [flag, n] : e.flags) into.flags[flag] += n;
  add_histogram(into.duration_ms, e.duration_ms);
  into.upstreams.insert(e.upstreams.begin(), e.upstreams.end());
}

json edge_json(const std::string& source, const std::string& target, const EdgeTotals& e,
               double elapsed) {
  json codes = json::object();
  for (const auto& [code, n] : e.codes) codes[std::to_string(code)] = n;
  json flags = json::object();
  for (const auto& [flag, n] : e.flags) flags[flag] = n;
  double error_percent = e.requests ? 100.0 * double(e.errors) / double(e.requests) : 0;
  return {{"id", source + "->" + target},
          {"source", source},
          {"target", target},
          {"requests", e.requests},
          {"rps", elapsed > 0 ? double(e.requests) / elapsed : 0.0},
          {"error_percent", error_percent},
          {"p99_ms", e.duration_ms.quantile(0.99)},
          {"health", edge_health(e.requests, e.errors)},
          {"codes", std::move(codes)},
          {"flags", std::move(flags)}};
}

// The endpoints of `info` that serve `version`: those labelled with it, or
// all when none carries a version label (an upstream of one subset).
std::vector<const UpstreamView::EndpointView*> version_endpoints(const UpstreamInfo& info,
                                                                 const std::string& version) {
  std::set<std::string> keys;
  bool labelled = false;
  for (const auto& e : info.endpoints) {
    auto it = e.labels.find("version");
    if (it == e.labels.end()) continue;
    labelled = true;
    if (it->second == version) keys.insert(http::join_host_port(e.address, e.port));
  }
  std::vector<const UpstreamView::EndpointView*> out;
  for (const auto& e : info.view.endpoints)
    if (!labelled || version == "unknown" || keys.count(e.address)) out.push_back(&e);
  return out;
}

json version_node(const std::string& id, const EdgeKey& key, const EdgeTotals& e,
                  const GraphWindow& w, const std::map<std::string, UpstreamInfo>& upstreams,
                  bool with_endpoints) {
  uint64_t ejected = 0, unhealthy = 0, count = 0, overflows = 0;
  json list = json::array();
  for (const auto& name : e.upstreams) {
    if (auto it = w.overflows.find(name); it != w.overflows.end()) overflows += it->second;
    auto info = upstreams.find(name);
    if (info == upstreams.end()) continue;
    for (const auto* ep : version_endpoints(info->second, key.version)) {
      ++count;
      ejected += ep->ejected;
      unhealthy += !ep->healthy;
      if (with_endpoints)
        list.push_back({{"address", ep->address},
                        {"upstream", name},
                        {"healthy", ep->healthy},
                        {"ejected", ep->ejected},
                        {"ejections", ep->ejections},
                        {"active_requests", ep->active_requests},
                        {"connections", ep->connections}});
    }
  }
  json node = {{"id", id},
               {"kind", "version"},
               {"label", key.version},
               {"service", key.service},
               {"upstreams", e.upstreams},
               {"endpoint_count", count},
               {"ejected", ejected},
               {"unhealthy", unhealthy},
               {"overflows", overflows}};
  if (with_endpoints) node["endpoints"] = std::move(list);
  return node;
}

}  // namespace

bool is_error(uint16_t code, const std::string& flags) {
  return code == 0 || code >= 500 || (!flags.empty() && flags != "-");
}

const char* edge_health(uint64_t requests, uint64_t errors) {
  if (errors == 0 || requests == 0) return "healthy";
  // Kiali's thresholds are 0.1% (degraded) and 20% (failure); a gateway's
  // edges carry more traffic, so failure starts at 10%.
  if (errors * 10 >= requests) return "failure";
  return "degraded";
}

GraphSample make_sample(TimePoint at, const Stats& stats) {
  GraphSample s;
  s.at = at;
  for (const auto& r : stats.requests) {
    EdgeTotals& e = s.edges[EdgeKey{r.destination_service, r.destination_version}];
    e.service_name = r.destination_service_name;
    e.service_namespace = r.destination_service_namespace;
    e.requests += r.requests;
    if (is_error(r.response_code, r.response_flags)) e.errors += r.requests;
    e.codes[r.response_code] += r.requests;
    if (!r.response_flags.empty() && r.response_flags != "-")
      e.flags[r.response_flags] += r.requests;
    add_histogram(e.duration_ms, r.duration_ms);
    if (!r.destination_upstream.empty()) e.upstreams.insert(r.destination_upstream);
  }
  return s;
}

TrafficSampler::TrafficSampler(std::chrono::milliseconds interval, std::chrono::seconds longest)
    : capacity_(size_t(std::chrono::milliseconds(longest) /
                       std::max(interval, std::chrono::milliseconds(1))) +
                2) {}

void TrafficSampler::add(GraphSample sample) {
  std::lock_guard lock(mutex_);
  samples_.push_back(std::move(sample));
  while (samples_.size() > capacity_) samples_.pop_front();
}

size_t TrafficSampler::size() const {
  std::lock_guard lock(mutex_);
  return samples_.size();
}

std::optional<GraphWindow> TrafficSampler::window(std::chrono::seconds window) const {
  std::lock_guard lock(mutex_);
  if (samples_.size() < 2) return std::nullopt;
  const GraphSample& last = samples_.back();
  const GraphSample* base = &samples_[samples_.size() - 2];
  for (const auto& s : samples_) {
    if (&s == &last) break;
    if (last.at - s.at <= window) {
      base = &s;
      break;
    }
  }
  GraphWindow w;
  w.elapsed_seconds = std::chrono::duration<double>(last.at - base->at).count();
  for (const auto& [key, now] : last.edges) {
    auto it = base->edges.find(key);
    EdgeTotals d = totals_delta(now, it == base->edges.end() ? nullptr : &it->second);
    if (d.requests > 0) w.edges.emplace(key, std::move(d));
  }
  for (const auto& [name, n] : last.overflows) {
    auto it = base->overflows.find(name);
    w.overflows[name] = delta(n, it == base->overflows.end() ? 0 : it->second);
  }
  return w;
}

std::string graph_json(const std::optional<GraphWindow>& w, std::chrono::seconds window,
                       const std::string& gateway_name,
                       const std::map<std::string, UpstreamInfo>& upstreams, bool endpoints) {
  json nodes = json::array();
  json edges = json::array();
  nodes.push_back({{"id", "gateway"}, {"kind", "gateway"}, {"label", gateway_name}});
  double elapsed = w ? w->elapsed_seconds : 0;
  if (w) {
    // Gateway -> service edges sum their versions' (the map is sorted by
    // service, so each service's versions are adjacent).
    std::map<std::string, EdgeTotals> services;
    for (const auto& [key, e] : w->edges) {
      EdgeTotals& s = services[key.service];
      s.service_name = e.service_name;
      s.service_namespace = e.service_namespace;
      merge_into(s, e);
    }
    for (const auto& [service, s] : services) {
      std::string id = "service:" + service;
      nodes.push_back({{"id", id},
                       {"kind", "service"},
                       {"label", s.service_name.empty() ? service : s.service_name},
                       {"service", service},
                       {"namespace", s.service_namespace}});
      edges.push_back(edge_json("gateway", id, s, elapsed));
    }
    for (const auto& [key, e] : w->edges) {
      std::string id = "version:" + key.service + ":" + key.version;
      nodes.push_back(version_node(id, key, e, *w, upstreams, endpoints));
      edges.push_back(edge_json("service:" + key.service, id, e, elapsed));
    }
  }
  json out = {{"window_seconds", window.count()},
              {"elapsed_seconds", elapsed},
              {"nodes", std::move(nodes)},
              {"edges", std::move(edges)}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace sluice::admin
