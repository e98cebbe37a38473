#include "config/ratelimit.hpp"

#include <fmt/format.h>

#include <charconv>

#include "http/tokens.hpp"
#include "sluice/gateway.hpp"

namespace sluice {

namespace {

constexpr std::string_view kObject = "RateLimitConfig";

// The validators name fields from the nested value; say where it sits.
Error nested(Error e, std::string_view field) {
  e.object = std::string(kObject);
  e.field = e.field.empty() ? std::string(field) : fmt::format("{}.{}", field, e.field);
  return e;
}

std::string override_key(std::string_view router, std::string_view vh, std::string_view route) {
  return fmt::format("{}\n{}\n{}", router, vh, route);
}

Status parse_redis_address(const std::string& address, CompiledRateLimits& out) {
  auto hp = http::split_host_port(address);
  std::string_view host = hp.host;
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  uint32_t port = 0;
  auto [end, ec] = std::from_chars(hp.port.data(), hp.port.data() + hp.port.size(), port);
  if (host.empty() || hp.port.empty() || ec != std::errc() ||
      end != hp.port.data() + hp.port.size() || port == 0 || port > 65535)
    return Error{std::string(kObject), "redis_address",
                 fmt::format("\"{}\" is not HOST:PORT", address)};
  out.redis_host = std::string(host);
  out.redis_port = static_cast<uint16_t>(port);
  return {};
}

Status compile_locals(const RateLimitConfig& c, CompiledRateLimits& out) {
  if (!c.local && !c.local_overrides.empty())
    return Error{std::string(kObject), "local_overrides",
                 "need `local`: per-route configs apply only where the local filter runs"};
  auto add = [&](const LocalRateLimit& config, std::string_view field, bool per_route,
                 const LocalRateLimitOverride* scope) -> Status {
    if (Status s = security::validate(config, kObject, per_route); !s)
      return nested(s.error(), field);
    CompiledRateLimits::Local l;
    if (scope) {
      l.router = scope->router;
      l.virtual_host = scope->virtual_host;
      l.route = scope->route;
    }
    l.config = config;
    if (l.config.status < 400) l.config.status = 429;
    l.key = scope ? "override\n" + override_key(l.router, l.virtual_host, l.route) : "filter";
    out.locals.push_back(std::move(l));
    return {};
  };
  if (c.local) {
    if (Status s = add(*c.local, "local", false, nullptr); !s) return s;
    out.has_local_filter = true;
  }
  for (size_t i = 0; i < c.local_overrides.size(); ++i) {
    const LocalRateLimitOverride& o = c.local_overrides[i];
    std::string field = fmt::format("local_overrides[{}]", i);
    if (o.virtual_host.empty())
      return Error{std::string(kObject), field + ".virtual_host", "must name a virtual host"};
    if (!out.overrides.emplace(override_key(o.router, o.virtual_host, o.route), out.locals.size())
             .second)
      return Error{std::string(kObject), field,
                   "a second override for the same router, virtual host and route"};
    if (Status s = add(o.config, field + ".config", true, &o); !s) return s;
  }
  return {};
}

}  // namespace

const CompiledRateLimits::Local* CompiledRateLimits::local_for(std::string_view router,
                                                               std::string_view virtual_host,
                                                               std::string_view route,
                                                               size_t* index) const {
  if (!has_local_filter) return nullptr;
  size_t found = 0;  // the filter's
  if (!overrides.empty()) {
    // Most specific first, as Envoy picks a route's config over its
    // virtual host's.
    const std::string keys[] = {
        override_key(router, virtual_host, route), override_key({}, virtual_host, route),
        override_key(router, virtual_host, {}), override_key({}, virtual_host, {})};
    for (const auto& k : keys)
      if (auto it = overrides.find(k); it != overrides.end()) {
        found = it->second;
        break;
      }
  }
  if (index) *index = found;
  return &locals[found];
}

Result<std::shared_ptr<const CompiledRateLimits>> compile_rate_limits(const GatewayConfig& config) {
  const RateLimitConfig& c = config.rate_limits;
  if (!c.local && c.local_overrides.empty() && !c.global && c.rate_limits.empty() &&
      c.service.empty())
    return std::shared_ptr<const CompiledRateLimits>();
  auto out = std::make_shared<CompiledRateLimits>();
  out->num_trusted_proxies = config.security.num_trusted_proxies;
  auto rules = security::RateLimitRules::compile(c.rate_limits, kObject);
  if (!rules) return rules.error();
  out->rules = std::move(rules).value();
  if (Status s = compile_locals(c, *out); !s) return s.error();
  for (size_t i = 0; i < c.service.size(); ++i)
    if (Status s = security::validate(c.service[i], kObject); !s)
      return nested(s.error(), fmt::format("service[{}]", i));
  if (c.global) {
    if (Status s = security::validate(*c.global, kObject); !s) return nested(s.error(), "global");
    if (c.redis_address.empty())
      return Error{std::string(kObject), "redis_address",
                   "required with a global rate limit (HOST:PORT of the Redis server)"};
    if (Status s = parse_redis_address(c.redis_address, *out); !s) return s.error();
    auto global =
        security::GlobalRateLimiter::create(*c.global, c.service, kObject, c.redis_key_prefix);
    if (!global) return global.error();
    out->global = std::move(global).value();
  }
  out->limiters.resize(out->locals.size());
  return std::shared_ptr<const CompiledRateLimits>(std::move(out));
}

void bind_local_limiters(const CompiledRateLimits& rl, LocalLimiterRegistry& registry,
                         security::SteadyTime now) {
  LocalLimiterRegistry next;
  for (size_t i = 0; i < rl.locals.size(); ++i) {
    const auto& local = rl.locals[i];
    auto& slot = rl.limiters[i];
    if (!slot) {
      auto kept = registry.find(local.key);
      if (kept != registry.end() && kept->second->config() == local.config) {
        slot = kept->second;
      } else {
        // Validated by compile_rate_limits: creation cannot fail here.
        auto made = security::LocalRateLimiter::create(local.config, kObject, now,
                                                       !local.virtual_host.empty());
        if (made) slot = std::move(made).value();
      }
    }
    if (slot) next[local.key] = slot;
  }
  registry = std::move(next);
}

}  // namespace sluice
