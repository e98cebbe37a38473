#include "config/snapshot.hpp"

#include <fmt/format.h>

#include <optional>
#include <unordered_set>

#include "http/tokens.hpp"
#include "http/wire_check.hpp"
#include "routing/compiled_router.hpp"
#include "security/jwks_fetch.hpp"
#include "telemetry/metrics.hpp"
#include "tls/server.hpp"

namespace sluice {

const CompiledListener* Snapshot::listener(std::string_view name) const {
  for (const auto& l : listeners)
    if (l.config.name == name) return &l;
  return nullptr;
}

std::optional<uint32_t> Snapshot::find_upstream(std::string_view name) const {
  for (size_t i = 0; i < upstreams.size(); ++i)
    if (upstreams[i].config.name == name) return static_cast<uint32_t>(i);
  return std::nullopt;
}

namespace {

Error config_error(std::string object, std::string field, std::string message) {
  return Error{std::move(object), std::move(field), std::move(message)};
}

using Index = std::unordered_map<std::string, uint32_t>;

// An upstream by name and one of its endpoint sets by subset, resolved at
// compile time so that a missing one fails here rather than per request.
// `object` and `field` name the referring config in the error.
struct SetRef {
  uint32_t upstream = 0;
  uint32_t set = 0;  // index into CompiledUpstream::sets
};
Result<SetRef> resolve_set(const Snapshot& snap, const Index& upstreams,
                           const std::string& upstream, const std::string& subset,
                           const std::string& object, const std::string& field) {
  auto it = upstreams.find(upstream);
  if (it == upstreams.end())
    return config_error(object, field + ".upstream",
                        fmt::format("no upstream named \"{}\"", upstream));
  auto set = snap.upstreams[it->second].find_set(subset);
  if (!set)
    return config_error(object, field + ".subset",
                        fmt::format("upstream \"{}\" has no subset \"{}\"", upstream, subset));
  return SetRef{it->second, *set};
}

Result<Index> compile_upstreams(const GatewayConfig& config, Snapshot& snap) {
  Index index;
  for (size_t i = 0; i < config.upstreams.size(); ++i) {
    const auto& u = config.upstreams[i];
    if (u.name.empty())
      return config_error("Upstream", fmt::format("upstreams[{}].name", i), "must not be empty");
    if (!index.emplace(u.name, static_cast<uint32_t>(i)).second)
      return config_error("Upstream " + u.name, "name", "duplicate upstream name");
    auto compiled = compile_upstream(u);
    if (!compiled) return compiled.error();
    snap.upstreams.push_back(std::move(compiled).value());
  }
  return index;
}

// A destination (upstream, subset) with its set and its telemetry labels.
Result<ResolvedDestination> resolve_destination(const Snapshot& snap, const Index& upstreams,
                                                const std::string& upstream,
                                                const std::string& subset,
                                                const std::string& object,
                                                const std::string& field) {
  auto ref = resolve_set(snap, upstreams, upstream, subset, object, field);
  if (!ref) return ref.error();
  ResolvedDestination rd;
  rd.upstream = ref->upstream;
  rd.set = ref->set;
  rd.subset = subset;
  const UpstreamConfig& up = snap.upstreams[ref->upstream].config;
  std::string_view version;
  for (const auto& s : up.subsets)
    if (s.name == subset)
      if (auto v = s.labels.find("version"); v != s.labels.end()) version = v->second;
  rd.labels = telemetry::destination_labels(up.service, up.name, version);
  return rd;
}

// One route's destinations and mirrors, with the policy the router compiled.
Result<ResolvedRoute> resolve_route(const Snapshot& snap, const Index& upstreams,
                                    const std::string& object, const Route& route,
                                    const std::string& route_field,
                                    policy::CompiledRoutePolicy policy) {
  ResolvedRoute rr;
  rr.policy = std::move(policy);
  auto resolve = [&](const std::string& upstream, const std::string& subset,
                     const std::string& field) {
    return resolve_destination(snap, upstreams, upstream, subset, object, field);
  };
  for (size_t d = 0; d < route.destinations.size(); ++d) {
    const Destination& dest = route.destinations[d];
    auto rd =
        resolve(dest.upstream, dest.subset, fmt::format("{}.destinations[{}]", route_field, d));
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
  return rr;
}

Result<Index> compile_routers(const GatewayConfig& config, const Index& upstreams, Snapshot& snap) {
  Index index;
  auto table = std::make_shared<RouteTable>();
  for (size_t r = 0; r < config.routers.size(); ++r) {
    const auto& rc = config.routers[r];
    if (rc.name.empty())
      return config_error("Router", fmt::format("routers[{}].name", r), "must not be empty");
    if (!index.emplace(rc.name, static_cast<uint32_t>(r)).second)
      return config_error("Router " + rc.name, "name", "duplicate router name");
    // The router validates every route's policy by compiling it; keep those
    // rather than compiling each again.
    detail::RoutePolicies policies;
    auto router = detail::compile_router(rc, policies);
    if (!router) return router.error();
    std::vector<std::vector<ResolvedRoute>> vhosts;
    for (size_t v = 0; v < rc.virtual_hosts.size(); ++v) {
      std::vector<ResolvedRoute> routes;
      for (size_t i = 0; i < rc.virtual_hosts[v].routes.size(); ++i) {
        auto rr = resolve_route(snap, upstreams, "Router " + rc.name, rc.virtual_hosts[v].routes[i],
                                fmt::format("virtual_hosts[{}].routes[{}]", v, i),
                                std::move(policies[v][i]));
        if (!rr) return rr.error();
        routes.push_back(std::move(rr).value());
      }
      vhosts.push_back(std::move(routes));
    }
    table->push_back(std::move(vhosts));
    snap.routers.push_back(std::move(router).value());
  }
  snap.routes = std::move(table);
  return index;
}

// TLS termination and passthrough of a listener that has either; the
// passthrough routes' telemetry labels go to `compiled`.
Status compile_listener_tls(const ListenerConfig& lc, const std::string& object,
                            const Snapshot& snap, const Index& upstreams,
                            CompiledListener& compiled) {
  std::vector<tls::PassthroughTarget> targets;
  for (size_t p = 0; p < lc.passthrough.size(); ++p) {
    const TlsPassthroughRoute& route = lc.passthrough[p];
    std::string field = fmt::format("passthrough[{}]", p);
    if (route.sni_hosts.empty())
      return config_error(object, field + ".sni_hosts", "must list at least one host");
    auto rd = resolve_destination(snap, upstreams, route.upstream, route.subset, object, field);
    if (!rd) return rd.error();
    targets.push_back(
        tls::PassthroughTarget{route.sni_hosts, rd->upstream, rd->set, static_cast<uint32_t>(p)});
    compiled.passthrough_labels.push_back(rd->labels);
  }
  auto listener_tls = tls::ListenerTls::compile(lc, std::move(targets));
  if (!listener_tls) return listener_tls.error();
  compiled.tls = std::move(listener_tls).value();
  return {};
}

// A listener's TCP routes: ranges parsed, destinations resolved.
Result<std::vector<CompiledTcpRoute>> compile_tcp_routes(const ListenerConfig& lc,
                                                         const std::string& object,
                                                         const Snapshot& snap,
                                                         const Index& upstreams) {
  std::vector<CompiledTcpRoute> out;
  if (!lc.tcp_routes.empty() && !lc.passthrough.empty())
    return config_error(object, "tcp_routes", "a listener has TCP routes or passthrough, not both");
  for (size_t r = 0; r < lc.tcp_routes.size(); ++r) {
    const TcpRoute& route = lc.tcp_routes[r];
    std::string field = fmt::format("tcp_routes[{}]", r);
    CompiledTcpRoute c{.name = route.name};
    for (size_t i = 0; i < route.source_subnets.size(); ++i) {
      auto cidr = security::Cidr::parse(route.source_subnets[i]);
      if (!cidr)
        return config_error(
            object, fmt::format("{}.source_subnets[{}]", field, i),
            fmt::format("\"{}\" is not an address or CIDR range", route.source_subnets[i]));
      c.sources.push_back(*cidr);
    }
    if (route.destinations.empty())
      return config_error(object, field + ".destinations", "must list at least one");
    for (size_t d = 0; d < route.destinations.size(); ++d) {
      const Destination& dest = route.destinations[d];
      std::string dfield = fmt::format("{}.destinations[{}]", field, d);
      auto rd = resolve_destination(snap, upstreams, dest.upstream, dest.subset, object, dfield);
      if (!rd) return rd.error();
      rd->weight = dest.weight;
      c.destinations.push_back(std::move(rd).value());
      c.total_weight += dest.weight;
    }
    out.push_back(std::move(c));
  }
  return out;
}

Status compile_listeners(const GatewayConfig& config, const Index& upstreams, const Index& routers,
                         Snapshot& snap) {
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
    // A TCP listener needs no router.
    auto it = routers.find(lc.router);
    bool tcp_only = !lc.tcp_routes.empty() && lc.router.empty();
    if (it == routers.end() && !tcp_only)
      return config_error(object, "router", fmt::format("no router named \"{}\"", lc.router));
    CompiledListener compiled{lc, tcp_only ? 0 : it->second, nullptr};
    auto tcp = compile_tcp_routes(lc, object, snap, upstreams);
    if (!tcp) return tcp.error();
    compiled.tcp = std::move(tcp).value();
    if (!lc.tls_servers.empty() || !lc.passthrough.empty()) {
      if (auto st = compile_listener_tls(lc, object, snap, upstreams, compiled); !st) return st;
    }
    snap.listeners.push_back(std::move(compiled));
  }
  return {};
}

// A provider's key set: inline `jwks` (parsed now; a remote URL is then
// ignored, as Istio ignores it), else `jwks_uri`, else OpenID discovery from
// an http(s) issuer. Remote sets start empty; the gateway's fetcher fills them.
Status resolve_jwks(const JwtProvider& p, security::JwtRule& rule, const std::string& object,
                    size_t i) {
  if (!p.jwks.empty()) {
    auto jwks = security::Jwks::parse(p.jwks);
    if (!jwks)
      return config_error(object, fmt::format("jwt_providers[{}].jwks", i), jwks.error().message);
    rule.jwks->store(std::move(jwks).value());
    return {};
  }
  if (p.timeout.count() <= 0)
    return config_error(object, fmt::format("jwt_providers[{}].timeout", i), "must be > 0");
  rule.fetch_timeout = p.timeout;
  if (!p.jwks_uri.empty()) {
    auto url = security::parse_http_url(p.jwks_uri);
    if (!url)
      return config_error(object, fmt::format("jwt_providers[{}].jwks_uri", i),
                          url.error().message);
    rule.jwks_uri = p.jwks_uri;
    return {};
  }
  std::string discovery = security::openid_discovery_url(p.issuer);
  if (p.issuer.empty() || !security::parse_http_url(discovery))
    return config_error(object, fmt::format("jwt_providers[{}].jwks", i),
                        "required: no jwks, no jwks_uri, and the issuer is not an http(s) URL "
                        "to discover the key set from");
  rule.jwks_uri = std::move(discovery);
  rule.openid_discovery = true;
  return {};
}

// The ext_authz providers, each on a configured upstream (pooled, with
// its TLS settings), and every CUSTOM policy naming one of them.
Status compile_ext_authz(const SecurityConfig& config, const Index& upstreams,
                         CompiledSecurity& out) {
  for (size_t i = 0; i < config.ext_authz_providers.size(); ++i) {
    const ExtAuthzHttpProvider& p = config.ext_authz_providers[i];
    std::string object = "ExtAuthzHttpProvider " + p.name;
    if (p.name.empty())
      return config_error("ExtAuthzHttpProvider",
                          fmt::format("security.ext_authz_providers[{}].name", i),
                          "must not be empty");
    if (out.find_ext_authz(p.name)) return config_error(object, "name", "duplicate provider name");
    auto it = upstreams.find(p.service);
    if (it == upstreams.end() && p.port != 0)
      it = upstreams.find(fmt::format("outbound|{}||{}", p.port, p.service));
    if (it == upstreams.end())
      return config_error(
          object, "service",
          p.port != 0 ? fmt::format("no upstream for service \"{}\" port {}", p.service, p.port)
                      : fmt::format("no upstream named \"{}\"", p.service));
    auto compiled = security::compile_ext_authz(p, it->second);
    if (!compiled) return compiled.error();
    out.ext_authz.push_back(std::move(compiled).value());
  }
  for (const AuthorizationPolicy& policy : config.authorization)
    if (policy.action == AuthzAction::custom && !out.find_ext_authz(policy.provider))
      return config_error(fmt::format("AuthorizationPolicy {}/{}", policy.ns, policy.name),
                          "provider.name",
                          fmt::format("no ext_authz provider named \"{}\"", policy.provider));
  return {};
}

Result<std::shared_ptr<const CompiledSecurity>> compile_security(const SecurityConfig& config,
                                                                 const Index& upstreams) {
  if (config.jwt_providers.empty() && config.authorization.empty() &&
      config.ext_authz_providers.empty())
    return std::shared_ptr<const CompiledSecurity>();
  auto out = std::make_shared<CompiledSecurity>();
  if (Status st = compile_ext_authz(config, upstreams, *out); !st) return st.error();
  out->num_trusted_proxies = config.num_trusted_proxies;
  if (!config.jwt_providers.empty()) {
    std::vector<security::JwtRule> rules;
    for (size_t i = 0; i < config.jwt_providers.size(); ++i) {
      const JwtProvider& p = config.jwt_providers[i];
      std::string object = p.source.empty() ? "RequestAuthentication" : p.source;
      security::JwtRule rule;
      rule.issuer = p.issuer;
      rule.audiences = p.audiences;
      if (Status st = resolve_jwks(p, rule, object, i); !st.ok()) return st.error();
      rule.from_headers = p.from_headers;
      rule.from_params = p.from_params;
      rule.from_cookies = p.from_cookies;
      rule.forward_original_token = p.forward_original_token;
      rule.output_payload_to_header = p.output_payload_to_header;
      rule.output_claim_to_headers = p.output_claim_to_headers;
      rule.space_delimited_claims = p.space_delimited_claims;
      rules.push_back(std::move(rule));
    }
    auto authn = security::Authenticator::compile(std::move(rules), "RequestAuthentication");
    if (!authn) return authn.error();
    out->authn = std::move(authn).value();
  }
  auto authz = security::AuthzEngine::compile(config.authorization,
                                              security::AuthzOptions{config.root_namespace});
  if (!authz) return authz.error();
  out->authz = std::move(authz).value();
  return std::shared_ptr<const CompiledSecurity>(std::move(out));
}

}  // namespace

Result<std::shared_ptr<Snapshot>> compile_snapshot(GatewayConfig config) {
  auto snap = std::make_shared<Snapshot>();
  snap->limits = config.limits;
  if (config.limits.max_request_header_bytes < 1024)
    return config_error("Limits", "max_request_header_bytes", "must be >= 1024");
  if (config.limits.max_request_headers < 1)
    return config_error("Limits", "max_request_headers", "must be >= 1");
  auto upstreams = compile_upstreams(config, *snap);
  if (!upstreams) return upstreams.error();
  auto routers = compile_routers(config, *upstreams, *snap);
  if (!routers) return routers.error();
  if (Status st = compile_listeners(config, *upstreams, *routers, *snap); !st.ok())
    return st.error();
  auto security = compile_security(config.security, *upstreams);
  if (!security) return security.error();
  snap->security = std::move(security).value();
  auto rate_limits = compile_rate_limits(config);
  if (!rate_limits) return rate_limits.error();
  snap->rate_limits = std::move(rate_limits).value();
  auto access_logs = compile_access_logs(config);
  if (!access_logs) return access_logs.error();
  snap->access_logs = std::move(access_logs).value();
  auto tracing = compile_tracing(config.telemetry.tracing);
  if (!tracing) return tracing.error();
  snap->tracing = std::move(tracing).value();
  snap->source = std::make_shared<const GatewayConfig>(std::move(config));
  return snap;
}

Result<std::shared_ptr<Snapshot>> with_endpoints(const Snapshot& base, std::string_view upstream,
                                                 std::vector<Endpoint> endpoints) {
  auto index = base.find_upstream(upstream);
  if (!index)
    return config_error(fmt::format("Upstream {}", upstream), "name",
                        "no such upstream in the current configuration");
  auto updated = with_endpoints(base.upstreams[*index], std::move(endpoints));
  if (!updated) return updated.error();
  auto snap = std::make_shared<Snapshot>();
  snap->source = base.source;
  snap->routers = base.routers;
  snap->routes = base.routes;
  snap->listeners = base.listeners;
  snap->upstreams = base.upstreams;
  snap->upstreams[*index] = std::move(updated).value();
  snap->limits = base.limits;
  snap->security = base.security;
  snap->rate_limits = base.rate_limits;
  snap->access_logs = base.access_logs;
  snap->tracing = base.tracing;
  return snap;
}

Result<std::shared_ptr<const Snapshot>> compile(GatewayConfig config) {
  auto snap = compile_snapshot(std::move(config));
  if (!snap) return snap.error();
  return std::shared_ptr<const Snapshot>(std::move(snap).value());
}

}  // namespace sluice
