#include "config/snapshot.hpp"
#include "tls/client.hpp"
#include "upstream/cluster.hpp"

#include <fmt/format.h>

#include <optional>
#include <unordered_set>

#include "http/tokens.hpp"
#include "http/wire_check.hpp"
#include "routing/compiled_router.hpp"
#include "tls/server.hpp"

namespace sluice {

const CompiledListener* Snapshot::listener(std::string_view name) const {
  for (const auto& l : listeners)
    if (l.config.name == name) return &l;
  return nullptr;
}

namespace {

Error config_error(std::string object, std::string field, std::string message) {
  return Error{std::move(object), std::move(field), std::move(message)};
}

bool has_labels(const Labels& have, const Labels& want) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

EndpointSet make_set(const std::vector<CompiledEndpoint>& eps, std::vector<uint32_t> members) {
  EndpointSet set;
  set.members = std::move(members);
  for (auto i : set.members)
    if (eps[i].weight != eps[set.members.front()].weight) set.equal_weights = false;
  return set;
}

// Upstream text that is sent on the wire: the hash cookie (Set-Cookie to
// clients), health check request line and Host, and the TLS server name.
std::optional<Error> check_upstream_wire(const UpstreamConfig& cfg, const std::string& object) {
  if (const auto& ch = cfg.consistent_hash) {
    std::string why;
    if (ch->source == ConsistentHash::Source::cookie) {
      why = http::check_cookie_name(ch->name);
      if (!why.empty()) return config_error(object, "consistent_hash.name", why);
      why = http::check_cookie_path(ch->cookie_path);
      if (!why.empty()) return config_error(object, "consistent_hash.cookie_path", why);
    } else if (ch->source == ConsistentHash::Source::header) {
      // Not sent, but a name that is not a token can never match a header.
      why = http::check_header_name(ch->name);
      if (!why.empty()) return config_error(object, "consistent_hash.name", why);
    }
  }
  if (const auto& hc = cfg.health_check) {
    if (auto why = http::check_path(hc->path); !why.empty())
      return config_error(object, "health_check.path", why);
    if (!hc->host.empty())
      if (auto why = http::check_authority(hc->host); !why.empty())
        return config_error(object, "health_check.host", why);
  }
  if (cfg.tls && !cfg.tls->sni.empty()) {
    // A server name, not an authority: no port.
    std::string why = http::check_authority(cfg.tls->sni);
    if (why.empty() && cfg.tls->sni.find(':') != std::string::npos)
      why = fmt::format("{} is a server name and takes no port", http::quote(cfg.tls->sni));
    if (!why.empty()) return config_error(object, "tls.sni", why);
  }
  return std::nullopt;
}

Result<CompiledUpstream> compile_upstream(const UpstreamConfig& cfg) {
  std::string object = "Upstream " + cfg.name;
  if (Status st = validate_upstream(cfg, object); !st.ok()) return st.error();
  if (auto e = check_upstream_wire(cfg, object)) return *e;
  CompiledUpstream up;
  up.config = cfg;
  std::vector<uint32_t> all;
  for (size_t i = 0; i < cfg.endpoints.size(); ++i) {
    const auto& ep = cfg.endpoints[i];
    std::string field = fmt::format("endpoints[{}]", i);
    asio::error_code ec;
    auto addr = asio::ip::make_address(ep.address, ec);
    if (ec)
      return config_error(object, field + ".address",
                          fmt::format("\"{}\" is not an IP address", ep.address));
    if (ep.port == 0) return config_error(object, field + ".port", "must be 1..65535");
    CompiledEndpoint ce;
    ce.address = asio::ip::tcp::endpoint(addr, ep.port);
    ce.key = http::join_host_port(addr.to_string(), ep.port);
    ce.weight = ep.weight;
    up.endpoints.push_back(std::move(ce));
    if (ep.weight > 0) all.push_back(static_cast<uint32_t>(i));
  }
  up.all = make_set(up.endpoints, std::move(all));
  for (size_t s = 0; s < cfg.subsets.size(); ++s) {
    const auto& subset = cfg.subsets[s];
    std::string field = fmt::format("subsets[{}].name", s);
    if (subset.name.empty()) return config_error(object, field, "must not be empty");
    if (up.subsets.contains(subset.name))
      return config_error(object, field, fmt::format("duplicate subset \"{}\"", subset.name));
    std::vector<uint32_t> members;
    for (uint32_t i : up.all.members)
      if (has_labels(cfg.endpoints[i].labels, subset.labels)) members.push_back(i);
    up.subsets.emplace(subset.name, make_set(up.endpoints, std::move(members)));
  }
  if (cfg.tls) {
    auto ctx = tls::ClientContext::compile(*cfg.tls, object, "tls");
    if (!ctx) return ctx.error();
    up.tls = std::move(ctx).value();
  }
  // Upstream, endpoint and TLS settings: upstreams sharing an address, or a
  // reload that changes TLS, never reuse each other's connections. The
  // endpoint key has no '|' and the digest a fixed form, so names cannot
  // run into each other.
  for (auto& ce : up.endpoints)
    ce.pool_key = fmt::format("{}|{}|{}", cfg.name, ce.key, up.tls ? up.tls->digest() : "plain");
  if (cfg.pool.connect_timeout.count() <= 0)
    return config_error(object, "pool.connect_timeout", "must be > 0");
  return up;
}

}  // namespace

Result<std::shared_ptr<Snapshot>> compile_snapshot(GatewayConfig config) {
  auto snap = std::make_shared<Snapshot>();
  snap->limits = config.limits;
  if (config.limits.max_request_header_bytes < 1024)
    return config_error("Limits", "max_request_header_bytes", "must be >= 1024");
  if (config.limits.max_request_headers < 1)
    return config_error("Limits", "max_request_headers", "must be >= 1");

  std::unordered_map<std::string, uint32_t> upstream_index;
  for (size_t i = 0; i < config.upstreams.size(); ++i) {
    const auto& u = config.upstreams[i];
    if (u.name.empty())
      return config_error("Upstream", fmt::format("upstreams[{}].name", i), "must not be empty");
    if (!upstream_index.emplace(u.name, static_cast<uint32_t>(i)).second)
      return config_error("Upstream " + u.name, "name", "duplicate upstream name");
    auto compiled = compile_upstream(u);
    if (!compiled) return compiled.error();
    snap->upstreams.push_back(std::move(compiled).value());
  }

  std::unordered_map<std::string, uint32_t> router_index;
  for (size_t r = 0; r < config.routers.size(); ++r) {
    const auto& rc = config.routers[r];
    if (rc.name.empty())
      return config_error("Router", fmt::format("routers[{}].name", r), "must not be empty");
    if (!router_index.emplace(rc.name, static_cast<uint32_t>(r)).second)
      return config_error("Router " + rc.name, "name", "duplicate router name");
    // The router validates every route's policy by compiling it; keep those
    // rather than compiling each again.
    detail::RoutePolicies policies;
    auto router = detail::compile_router(rc, policies);
    if (!router) return router.error();
    // Resolve every destination to an upstream and endpoint set now, so a
    // missing upstream or subset fails here rather than per request.
    std::vector<std::vector<ResolvedRoute>> vhosts;
    for (size_t v = 0; v < rc.virtual_hosts.size(); ++v) {
      std::vector<ResolvedRoute> routes;
      for (size_t i = 0; i < rc.virtual_hosts[v].routes.size(); ++i) {
        const Route& route = rc.virtual_hosts[v].routes[i];
        std::string route_field = fmt::format("virtual_hosts[{}].routes[{}]", v, i);
        ResolvedRoute rr;
        rr.policy = std::move(policies[v][i]);
        // Resolve destinations and mirrors to an upstream and endpoint set
        // now, so a missing upstream or subset fails here, not per request.
        auto resolve = [&](const std::string& upstream, const std::string& subset,
                           const std::string& field) -> Result<ResolvedDestination> {
          auto it = upstream_index.find(upstream);
          if (it == upstream_index.end())
            return config_error("Router " + rc.name, field + ".upstream",
                                fmt::format("no upstream named \"{}\"", upstream));
          const CompiledUpstream& up = snap->upstreams[it->second];
          ResolvedDestination rd;
          rd.upstream = it->second;
          rd.subset = subset;
          if (subset.empty()) {
            rd.set = &up.all;
          } else {
            auto s = up.subsets.find(subset);
            if (s == up.subsets.end())
              return config_error(
                  "Router " + rc.name, field + ".subset",
                  fmt::format("upstream \"{}\" has no subset \"{}\"", upstream, subset));
            rd.set = &s->second;
          }
          return rd;
        };
        for (size_t d = 0; d < route.destinations.size(); ++d) {
          const Destination& dest = route.destinations[d];
          auto rd = resolve(dest.upstream, dest.subset,
                            fmt::format("{}.destinations[{}]", route_field, d));
          if (!rd) return rd.error();
          rd->weight = dest.weight;
          rr.total_weight += dest.weight;
          rr.destinations.push_back(std::move(rd).value());
        }
        for (size_t k = 0; k < route.mirrors.size(); ++k) {
          const Mirror& m = route.mirrors[k];
          auto rd = resolve(m.upstream, m.subset, fmt::format("{}.mirrors[{}]", route_field, k));
          if (!rd) return rd.error();
          rr.mirrors.push_back(std::move(rd).value());
          rr.mirror_percentages.push_back(m.percentage);
        }
        routes.push_back(std::move(rr));
      }
      vhosts.push_back(std::move(routes));
    }
    snap->routes.push_back(std::move(vhosts));
    snap->routers.push_back(std::move(router).value());
  }

  std::unordered_set<std::string> names;
  std::unordered_set<std::string> bound;
  for (size_t l = 0; l < config.listeners.size(); ++l) {
    const auto& lc = config.listeners[l];
    std::string object = "Listener " + lc.name;
    if (lc.name.empty())
      return config_error("Listener", fmt::format("listeners[{}].name", l), "must not be empty");
    if (!names.insert(lc.name).second)
      return config_error(object, "name", "duplicate listener name");
    asio::error_code ec;
    asio::ip::make_address(lc.address, ec);
    if (ec)
      return config_error(object, "address",
                          fmt::format("\"{}\" is not an IP address", lc.address));
    std::string bind = http::join_host_port(lc.address, lc.port);
    if (lc.port != 0 && !bound.insert(bind).second)
      return config_error(object, "port", bind + " is used by another listener");
    auto it = router_index.find(lc.router);
    if (it == router_index.end())
      return config_error(object, "router", fmt::format("no router named \"{}\"", lc.router));
    CompiledListener compiled{lc, it->second, nullptr};
    if (!lc.tls_servers.empty() || !lc.passthrough.empty()) {
      std::vector<tls::PassthroughTarget> targets;
      for (size_t p = 0; p < lc.passthrough.size(); ++p) {
        const TlsPassthroughRoute& route = lc.passthrough[p];
        std::string field = fmt::format("passthrough[{}]", p);
        if (route.sni_hosts.empty())
          return config_error(object, field + ".sni_hosts", "must list at least one host");
        auto up = upstream_index.find(route.upstream);
        if (up == upstream_index.end())
          return config_error(object, field + ".upstream",
                              fmt::format("no upstream named \"{}\"", route.upstream));
        const CompiledUpstream& cu = snap->upstreams[up->second];
        const EndpointSet* set = &cu.all;
        if (!route.subset.empty()) {
          auto s = cu.subsets.find(route.subset);
          if (s == cu.subsets.end())
            return config_error(
                object, field + ".subset",
                fmt::format("upstream \"{}\" has no subset \"{}\"", route.upstream, route.subset));
          set = &s->second;
        }
        targets.push_back(tls::PassthroughTarget{route.sni_hosts, up->second, set});
      }
      auto listener_tls = tls::ListenerTls::compile(lc, std::move(targets));
      if (!listener_tls) return listener_tls.error();
      compiled.tls = std::move(listener_tls).value();
    }
    snap->listeners.push_back(std::move(compiled));
  }
  snap->source = std::move(config);
  return snap;
}

Result<std::shared_ptr<const Snapshot>> compile(GatewayConfig config) {
  auto snap = compile_snapshot(std::move(config));
  if (!snap) return snap.error();
  return std::shared_ptr<const Snapshot>(std::move(snap).value());
}

}  // namespace sluice
