#pragma once
// Helpers for the Istio loader and sluice-ingress tests: fixtures with port
// placeholders, requests, and load shortcuts.

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "istio/istio.hpp"
#include "sluice/gateway.hpp"
#include "sluice/router.hpp"

namespace sluice::test {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read ", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string fixture_path(const std::string& name) {
  return std::string(SLUICE_SOURCE_DIR) + "/tests/istio/data/" + name;
}

// Fixtures carry __NAME__ tokens where the test's upstream ports go.
inline std::string render(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [token, value] : values) {
    std::string key = "__" + token + "__";
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at))
      text.replace(at, key.size(), value);
  }
  return text;
}

// Fixed placeholder ports for tests that only look at the config.
inline const std::map<std::string, std::string>& dummy_ports() {
  static const std::map<std::string, std::string> ports = {{"PRODUCTPAGE_V1", "19080"},
                                                           {"REVIEWS_V1", "19081"},
                                                           {"REVIEWS_V2", "19082"},
                                                           {"REVIEWS_V3", "19083"},
                                                           {"HTTPBIN", "18000"}};
  return ports;
}

inline std::string fixtures(std::initializer_list<const char*> names,
                            const std::map<std::string, std::string>& ports = dummy_ports()) {
  std::string out;
  for (const char* n : names) out += render(read_text(fixture_path(n)), ports) + "\n---\n";
  return out;
}

inline istio::LoadedConfig load_ok(const std::string& yaml) {
  auto r = istio::load_string(yaml);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().to_string()));
  return std::move(r).value();
}

inline std::string load_error(const std::string& yaml) {
  auto r = istio::load_string(yaml);
  REQUIRE_MESSAGE(!r.ok(), "expected the configuration to be rejected");
  return r.error().to_string();
}

inline RequestHead request(std::string authority, std::string target,
                           std::vector<std::pair<std::string, std::string>> headers = {},
                           std::string method = "GET", uint16_t port = 8080) {
  RequestHead r;
  r.method = std::move(method);
  r.authority = std::move(authority);
  r.target = std::move(target);
  r.listener_port = port;
  r.headers.add("host", r.authority);
  for (auto& [n, v] : headers) r.headers.add(n, v);
  return r;
}

inline const RouterConfig& router_for(const istio::LoadedConfig& loaded, uint16_t port) {
  const istio::ListenerInfo* info = loaded.listener_for_port(port);
  REQUIRE(info != nullptr);
  for (const auto& r : loaded.config.routers)
    if (r.name == info->name) return r;
  FAIL("no router for port ", port);
  throw 0;
}

inline Router compiled_router(const istio::LoadedConfig& loaded, uint16_t port) {
  auto r = Router::compile(router_for(loaded, port));
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().to_string()));
  return std::move(r).value();
}

// The destinations (upstream/subset) a request routes to, "" for no route.
inline std::string route_of(const Router& router, const RequestHead& req) {
  auto sel = router.match(req);
  if (!sel) return "";
  std::string out;
  for (const auto& d : sel->route->destinations)
    out += (out.empty() ? "" : ",") + d.upstream + (d.subset.empty() ? "" : "/" + d.subset);
  if (sel->route->direct_response)
    out = "direct:" + std::to_string(sel->route->direct_response->status);
  return out;
}

inline bool has_warning(const istio::LoadedConfig& loaded, const std::string& needle) {
  for (const auto& w : loaded.warnings)
    if (w.find(needle) != std::string::npos) return true;
  return false;
}

// A gateway serving `yaml`, loaded with ephemeral ports on 127.0.0.1 and serves it.
struct Served {
  explicit Served(const std::string& yaml) {
    istio::TranslateOptions options;
    options.bind_address = "127.0.0.1";
    options.ephemeral_ports = true;
    auto r = istio::load_string(yaml, options);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().to_string()));
    loaded = std::move(r).value();
    GatewayOptions go;
    go.workers = 1;
    go.seed = 7;
    gateway = std::make_unique<Gateway>(go);
    Status st = gateway->apply(loaded.config);
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
    gateway->start();
  }
  uint16_t port(uint16_t server_port) const {
    const istio::ListenerInfo* l = loaded.listener_for_port(server_port);
    REQUIRE(l);
    return gateway->port(l->name);
  }
  istio::LoadedConfig loaded;
  std::unique_ptr<Gateway> gateway;
};

}  // namespace sluice::test
