#include "upstream/compiled.hpp"

#include <fmt/format.h>

#include <optional>

#include "http/tokens.hpp"
#include "http/wire_check.hpp"
#include "tls/client.hpp"

namespace sluice {

namespace {

// Envoy's limits for the hash tables.
constexpr uint64_t kMaxRingSize = 8 * 1024 * 1024;
constexpr uint64_t kMaxMaglevTableSize = 5'000'011;
bool is_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

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

}  // namespace

Status validate_upstream(const UpstreamConfig& cfg, std::string_view object_name) {
  std::string object(object_name);
  auto fail = [&](std::string field, std::string message) -> Status {
    return Error{object, std::move(field), std::move(message)};
  };
  if (cfg.load_balancer == LoadBalancer::consistent_hash && !cfg.consistent_hash)
    return fail("consistent_hash", "required when load_balancer is consistent_hash");
  if (cfg.load_balancer != LoadBalancer::consistent_hash && cfg.consistent_hash)
    return fail("consistent_hash", "set, but load_balancer is not consistent_hash");
  if (const auto& ch = cfg.consistent_hash) {
    if (ch->source != ConsistentHash::Source::source_ip && ch->name.empty())
      return fail("consistent_hash.name", "must name the header, cookie or query parameter");
    if (ch->cookie_ttl.count() < 0) return fail("consistent_hash.cookie_ttl", "must be >= 0");
    if (ch->algorithm == ConsistentHash::Algorithm::ring_hash &&
        (ch->minimum_ring_size == 0 || ch->minimum_ring_size > kMaxRingSize))
      return fail("consistent_hash.minimum_ring_size", fmt::format("must be 1..{}", kMaxRingSize));
    if (ch->algorithm == ConsistentHash::Algorithm::maglev) {
      if (ch->maglev_table_size > kMaxMaglevTableSize)
        return fail("consistent_hash.maglev_table_size",
                    fmt::format("must be <= {}", kMaxMaglevTableSize));
      if (!is_prime(ch->maglev_table_size))
        return fail("consistent_hash.maglev_table_size",
                    fmt::format("{} is not a prime number", ch->maglev_table_size));
    }
  }
  if (cfg.warmup.count() < 0) return fail("warmup", "must be >= 0");
  const auto& pool = cfg.pool;
  if (pool.idle_timeout.count() <= 0) return fail("pool.idle_timeout", "must be > 0");
  if (pool.max_connections == 0) return fail("pool.max_connections", "must be >= 1");
  if (const auto& od = cfg.outlier_detection) {
    if (od->interval.count() <= 0) return fail("outlier_detection.interval", "must be > 0");
    if (od->base_ejection_time.count() <= 0)
      return fail("outlier_detection.base_ejection_time", "must be > 0");
    if (od->max_ejection_percent > 100)
      return fail("outlier_detection.max_ejection_percent", "must be 0..100");
    if (od->min_health_percent > 100)
      return fail("outlier_detection.min_health_percent", "must be 0..100");
  }
  if (const auto& hc = cfg.health_check) {
    if (hc->path.empty() || hc->path.front() != '/')
      return fail("health_check.path", "must start with '/'");
    if (hc->path.find_first_of(" \r\n") != std::string::npos)
      return fail("health_check.path", "must not contain spaces or line breaks");
    if (hc->host.find_first_of(" \r\n") != std::string::npos)
      return fail("health_check.host", "must not contain spaces or line breaks");
    if (hc->interval.count() <= 0) return fail("health_check.interval", "must be > 0");
    if (hc->timeout.count() <= 0) return fail("health_check.timeout", "must be > 0");
    if (hc->healthy_threshold == 0) return fail("health_check.healthy_threshold", "must be >= 1");
    if (hc->unhealthy_threshold == 0)
      return fail("health_check.unhealthy_threshold", "must be >= 1");
  }
  return {};
}

std::optional<uint32_t> CompiledUpstream::find_set(std::string_view subset) const {
  if (subset.empty()) return 0;
  for (size_t s = 0; s < config.subsets.size(); ++s)
    if (config.subsets[s].name == subset) return static_cast<uint32_t>(1 + s);
  return std::nullopt;
}

namespace {

// Endpoints and endpoint sets of `up` from up.config (endpoints, subsets).
Status place_endpoints(CompiledUpstream& up, const std::string& object) {
  const UpstreamConfig& cfg = up.config;
  up.endpoints.clear();
  up.sets.clear();
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
  up.sets.push_back(make_set(up.endpoints, std::move(all)));
  for (size_t s = 0; s < cfg.subsets.size(); ++s) {
    const auto& subset = cfg.subsets[s];
    std::string field = fmt::format("subsets[{}].name", s);
    if (subset.name.empty()) return config_error(object, field, "must not be empty");
    for (size_t t = 0; t < s; ++t)
      if (cfg.subsets[t].name == subset.name)
        return config_error(object, field, fmt::format("duplicate subset \"{}\"", subset.name));
    std::vector<uint32_t> members;
    for (uint32_t i : up.sets.front().members)
      if (has_labels(cfg.endpoints[i].labels, subset.labels)) members.push_back(i);
    up.sets.push_back(make_set(up.endpoints, std::move(members)));
  }
  return {};
}

// Upstream, endpoint and TLS settings: upstreams sharing an address, or a
// reload that changes TLS, never reuse each other's connections. The
// endpoint key has no '|' and the digest a fixed form, so names cannot run
// into each other.
void key_pools(CompiledUpstream& up) {
  for (auto& ce : up.endpoints)
    ce.pool_key =
        fmt::format("{}|{}|{}", up.config.name, ce.key, up.tls ? up.tls->digest() : "plain");
}

}  // namespace

Result<CompiledUpstream> compile_upstream(const UpstreamConfig& cfg) {
  std::string object = "Upstream " + cfg.name;
  if (Status st = validate_upstream(cfg, object); !st.ok()) return st.error();
  if (auto e = check_upstream_wire(cfg, object)) return *e;
  CompiledUpstream up;
  up.config = cfg;
  if (Status st = place_endpoints(up, object); !st.ok()) return st.error();
  if (cfg.tls) {
    auto ctx = tls::ClientContext::compile(*cfg.tls, object, "tls");
    if (!ctx) return ctx.error();
    up.tls = std::move(ctx).value();
  }
  key_pools(up);
  if (cfg.pool.connect_timeout.count() <= 0)
    return config_error(object, "pool.connect_timeout", "must be > 0");
  return up;
}

Result<CompiledUpstream> with_endpoints(const CompiledUpstream& upstream,
                                        std::vector<Endpoint> endpoints) {
  // Everything but the endpoints as compiled before: the same TLS context
  // and runtime state slot, nothing else validated again.
  CompiledUpstream up;
  up.config = upstream.config;
  up.config.endpoints = std::move(endpoints);
  up.state = upstream.state;
  up.tls = upstream.tls;
  if (Status st = place_endpoints(up, "Upstream " + up.config.name); !st.ok()) return st.error();
  key_pools(up);
  return up;
}

}  // namespace sluice
