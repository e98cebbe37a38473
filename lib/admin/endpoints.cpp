#include "admin/endpoints.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "http/tokens.hpp"
#include "sluice/config_dump.hpp"
#include "sluice/gateway.hpp"

namespace sluice::admin {

namespace {

using nlohmann::json;

Response text(uint16_t status, std::string body, std::string content_type = "text/plain") {
  Response r;
  r.status = status;
  r.headers.add("content-type", std::move(content_type));
  r.body = std::move(body);
  return r;
}

Response json_response(std::string body) {
  return text(200, std::move(body), "application/json");
}

Response ready(const Gateway& gateway) {
  // Envoy's /ready answers LIVE; anything else while not serving.
  if (gateway.ready()) return text(200, "LIVE\n");
  return text(503, gateway.snapshot() ? "DRAINING\n" : "PRE_INITIALIZING\n");
}

Response config_dump(const Gateway& gateway) {
  auto snapshot = gateway.snapshot();
  if (!snapshot) return text(503, "no configuration applied yet\n");
  return json_response(config_dump_json(*snapshot));
}

// ?window=1m|5m|15m (default 1m); none else.
std::optional<std::chrono::seconds> parse_window(std::string_view query) {
  auto w = http::find_query_param(query, "window");
  if (!w || *w == "1m") return std::chrono::seconds(60);
  if (*w == "5m") return std::chrono::seconds(300);
  if (*w == "15m") return std::chrono::seconds(900);
  return std::nullopt;
}

Response graph(const AdminContext& c, std::string_view query) {
  auto window = parse_window(query);
  if (!window) return text(400, "window: one of 1m, 5m, 15m\n");
  auto e = http::find_query_param(query, "endpoints");
  bool endpoints = e && (*e == "1" || *e == "true");
  std::map<std::string, UpstreamInfo> upstreams;
  if (auto snapshot = c.gateway.snapshot()) {
    for (auto& u : snapshot_upstreams(*snapshot)) {
      UpstreamInfo info{c.gateway.upstream(u.name), std::move(u.endpoints)};
      std::string name = info.view.name;
      if (!name.empty()) upstreams.emplace(std::move(name), std::move(info));
    }
  }
  return json_response(graph_json(c.sampler.window(*window), *window,
                                  c.gateway.stats().source_workload, upstreams, endpoints));
}

bool served(const AdminContext& c, std::string_view path) {
  return c.paths.empty() || std::find(c.paths.begin(), c.paths.end(), path) != c.paths.end();
}

}  // namespace

std::string clusters_json(const Gateway& gateway) {
  json list = json::array();
  if (auto snapshot = gateway.snapshot()) {
    for (const auto& u : snapshot_upstreams(*snapshot)) {
      UpstreamView v = gateway.upstream(u.name);
      json endpoints = json::array();
      for (const auto& e : v.endpoints)
        endpoints.push_back({{"address", e.address},
                             {"healthy", e.healthy},
                             {"ejected", e.ejected},
                             {"ejections", e.ejections},
                             {"active_requests", e.active_requests},
                             {"connections", e.connections}});
      list.push_back({{"name", u.name},
                      {"active_requests", v.active_requests},
                      {"pending_requests", v.pending_requests},
                      {"connections", v.connections},
                      {"overflows", v.overflows},
                      {"endpoints", std::move(endpoints)}});
    }
  }
  json out = {{"upstreams", std::move(list)}};
  return out.dump(2, ' ', false, json::error_handler_t::replace);
}

Response respond(const AdminContext& c, const RequestHead& request) {
  std::string_view path = request.path();
  static constexpr std::string_view kPaths[] = {"/ready", "/healthz/ready", "/stats/prometheus",
                                                "/stats", "/config_dump",   "/clusters",
                                                "/graph", "/graph.json"};
  bool known = std::find(std::begin(kPaths), std::end(kPaths), path) != std::end(kPaths);
  if (!known || !served(c, path)) return text(404, "not found\n");
  if (request.method != "GET") {
    Response r = text(405, "method not allowed\n");
    r.headers.add("allow", "GET");
    return r;
  }
  if (path == "/ready" || path == "/healthz/ready") return ready(c.gateway);
  if (path == "/stats/prometheus")
    return text(200, c.gateway.stats().prometheus(), "text/plain; version=0.0.4; charset=utf-8");
  if (path == "/stats") return text(200, c.gateway.stats().text());
  if (path == "/config_dump") return config_dump(c.gateway);
  if (path == "/clusters") return json_response(clusters_json(c.gateway));
  if (path == "/graph") return text(200, kGraphPage, "text/html; charset=utf-8");
  return graph(c, request.query());
}

}  // namespace sluice::admin
