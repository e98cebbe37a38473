// Router: validation and compilation of a RouterConfig, virtual host
// selection, first-match routing and explain().

#include "sluice/router.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "http/string_match.hpp"
#include "http/tokens.hpp"
#include "policy/policy.hpp"
#include "routing/compiled_router.hpp"
#include "routing/text.hpp"

namespace sluice {

namespace detail {

namespace {

// An authority as a domain key: the host, and whether a port follows it.
// Only a port of digits counts; anything else after a ':' stays part of the
// host, so such an authority matches no domain that names a port.
struct DomainKey {
  std::string_view host;
  bool has_port = false;
};

DomainKey domain_key(std::string_view authority) {
  http::HostPort hp = http::split_host_port(authority);
  bool digits = !hp.port.empty() && std::all_of(hp.port.begin(), hp.port.end(),
                                                [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) return {authority, false};
  return {hp.host, true};
}

class Compiler {
 public:
  explicit Compiler(const RouterConfig& config) : config_(config) {}

  std::optional<Error> compile_string(const StringMatch& in, bool ignore_case,
                                      const std::string& field, http::CompiledStringMatch& out) {
    auto compiled = http::compile_string_match(in, ignore_case);
    if (!compiled) return error(field, compiled.error().message);
    out = std::move(compiled).value();
    return std::nullopt;
  }

  std::optional<Error> compile_matcher(const Matcher& in, const std::string& field,
                                       CompiledMatcher& out) {
    if (in.uri) {
      auto kind = in.uri->kind;
      if (kind != StringMatch::Kind::exact && kind != StringMatch::Kind::prefix &&
          kind != StringMatch::Kind::regex)
        return error(field + ".uri",
                     fmt::format("{} is not supported for uri; use exact, prefix or regex",
                                 kind_name(kind)));
      if (auto e = compile_string(*in.uri, in.ignore_uri_case, field + ".uri", out.uri.emplace()))
        return e;
    }
    struct Optional {
      const std::optional<StringMatch>& in;
      std::optional<http::CompiledStringMatch>& out;
      const char* name;
    };
    for (auto [src, dst, name] : {Optional{in.method, out.method, "method"},
                                  Optional{in.authority, out.authority, "authority"},
                                  Optional{in.scheme, out.scheme, "scheme"}}) {
      if (!src) continue;
      if (auto e = compile_string(*src, false, field + "." + name, dst.emplace())) return e;
    }
    for (size_t n = 0; n < in.headers.size(); ++n) {
      const auto& h = in.headers[n];
      std::string hfield = fmt::format("{}.headers[{}]", field, n);
      if (h.name.empty()) return error(hfield + ".name", "must not be empty");
      auto& ch = out.headers.emplace_back();
      ch.name = http::to_lower(h.name);
      ch.invert = h.invert;
      if (auto e = compile_string(h.match, false, hfield, ch.match)) return e;
    }
    for (size_t n = 0; n < in.query_params.size(); ++n) {
      const auto& q = in.query_params[n];
      std::string qfield = fmt::format("{}.query_params[{}]", field, n);
      if (q.name.empty()) return error(qfield + ".name", "must not be empty");
      if (q.match.kind == StringMatch::Kind::suffix)
        return error(qfield,
                     "suffix is not supported for query parameters; use exact, prefix, "
                     "regex or present");
      auto& cq = out.query_params.emplace_back();
      cq.name = q.name;
      if (auto e = compile_string(q.match, false, qfield, cq.match)) return e;
    }
    out.port = in.port;
    return std::nullopt;
  }

  std::optional<Error> check_action(const Route& route, const std::string& field) {
    bool forward = !route.destinations.empty();
    bool redirect = route.redirect.has_value();
    bool direct = route.direct_response.has_value();
    if (!forward && !redirect && !direct)
      return error(field, "has no action; set destinations, redirect or direct_response");
    // Name the first two actions set, in field order.
    std::vector<std::string_view> set;
    if (forward) set.push_back("destinations");
    if (redirect) set.push_back("redirect");
    if (direct) set.push_back("direct_response");
    if (set.size() > 1)
      return error(field, fmt::format("has both {} and {}; set exactly one", set[0], set[1]));
    if (redirect) return std::nullopt;  // its fields are checked with the route's policy
    if (direct) {
      uint16_t status = route.direct_response->status;
      if (status < 200 || status > 599)
        return error(field + ".direct_response.status",
                     fmt::format("must be in 200..599, got {}", status));
      return std::nullopt;
    }
    uint64_t total = 0;
    for (size_t k = 0; k < route.destinations.size(); ++k) {
      const auto& d = route.destinations[k];
      if (d.upstream.empty())
        return error(fmt::format("{}.destinations[{}].upstream", field, k), "must not be empty");
      total += d.weight;
    }
    if (total == 0) return error(field + ".destinations", "all weights are 0; no traffic can flow");
    return std::nullopt;
  }

  std::optional<Error> add_domain(CompiledRouter& out, uint32_t vh, uint32_t d) {
    const std::string& raw = config_.virtual_hosts[vh].domains[d];
    std::string field = fmt::format("virtual_hosts[{}].domains[{}]", vh, d);
    if (raw.empty()) return error(field, "must not be empty");
    std::string domain = http::to_lower(raw);
    size_t star = domain.find('*');
    if (star != std::string::npos && (star != 0 || domain.find('*', 1) != std::string::npos))
      return error(field, fmt::format("malformed wildcard \"{}\": '*' is allowed only as the "
                                      "first character",
                                      raw));
    DomainTarget target{vh, d, domain_key(domain).has_port};
    DomainTarget* existing = nullptr;
    if (domain == "*") {
      if (out.catch_all)
        existing = &*out.catch_all;
      else
        out.catch_all = target;
    } else if (star == 0) {
      std::string suffix = domain.substr(1);
      auto it = std::find_if(out.wildcard_domains.begin(), out.wildcard_domains.end(),
                             [&](const auto& g) { return g.length == suffix.size(); });
      if (it == out.wildcard_domains.end()) {
        out.wildcard_domains.emplace_back().length = suffix.size();
        it = std::prev(out.wildcard_domains.end());
      }
      auto [pos, inserted] = it->by_suffix.emplace(std::move(suffix), target);
      if (!inserted) existing = &pos->second;
    } else {
      auto [pos, inserted] = out.exact_domains.emplace(std::move(domain), target);
      if (!inserted) existing = &pos->second;
    }
    // A repeat inside one virtual host is harmless; across hosts it is
    // ambiguous, as in Envoy.
    if (existing && existing->virtual_host != vh)
      return error(field, fmt::format("duplicate domain \"{}\" (also in virtual_hosts[{}])", raw,
                                      existing->virtual_host));
    return std::nullopt;
  }

 private:
  Error error(std::string field, std::string message) const {
    return Error{"Router " + config_.name, std::move(field), std::move(message)};
  }

  const RouterConfig& config_;
};

// Where CompiledRouter::build leaves the route policies it compiles, when
// compile_router asked for them; null otherwise (a Router on its own only
// validates them). A thread-local rather than a parameter because Router's
// constructor is private to the public header: the only way to a Router is
// Router::compile.
thread_local RoutePolicies* policy_sink = nullptr;

}  // namespace

Result<std::shared_ptr<const CompiledRouter>> CompiledRouter::build(RouterConfig config) {
  // First, so that nothing this call runs sees the sink.
  RoutePolicies* sink = std::exchange(policy_sink, nullptr);
  if (sink) {
    sink->clear();
    sink->reserve(config.virtual_hosts.size());
  }
  auto out = std::make_shared<CompiledRouter>();
  out->config = std::move(config);
  const RouterConfig& cfg = out->config;
  Compiler compiler(cfg);

  for (uint32_t i = 0; i < cfg.virtual_hosts.size(); ++i) {
    const auto& vh = cfg.virtual_hosts[i];
    if (vh.domains.empty())
      return Error{"Router " + cfg.name, fmt::format("virtual_hosts[{}].domains", i),
                   "must list at least one domain"};
    for (uint32_t d = 0; d < vh.domains.size(); ++d)
      if (auto e = compiler.add_domain(*out, i, d)) return *e;

    auto& cvh = out->virtual_hosts.emplace_back();
    cvh.routes.reserve(vh.routes.size());
    if (sink) sink->emplace_back().reserve(vh.routes.size());
    for (size_t j = 0; j < vh.routes.size(); ++j) {
      const auto& route = vh.routes[j];
      std::string rfield = fmt::format("virtual_hosts[{}].routes[{}]", i, j);
      auto& cr = cvh.routes.emplace_back();
      for (size_t k = 0; k < route.matches.size(); ++k) {
        std::string mfield = fmt::format("{}.matches[{}]", rfield, k);
        if (auto e = compiler.compile_matcher(route.matches[k], mfield, cr.matches.emplace_back()))
          return *e;
      }
      if (auto e = compiler.check_action(route, rfield)) return *e;
      // Policy fields too, so a Router that compiles is accepted by every
      // snapshot; the snapshot keeps what was compiled here (compile_router).
      auto p = policy::compile_route_policy(route, "Router " + cfg.name, rfield);
      if (!p) return p.error();
      if (sink) sink->back().push_back(std::move(p).value());
    }
    cvh.index.build(cvh.routes);
  }
  std::sort(out->wildcard_domains.begin(), out->wildcard_domains.end(),
            [](const auto& a, const auto& b) { return a.length > b.length; });
  return std::shared_ptr<const CompiledRouter>(std::move(out));
}

std::optional<DomainTarget> CompiledRouter::find_virtual_host(std::string_view authority) const {
  char buf[256];
  std::string spill;
  std::string_view full = lower_into(authority, buf, sizeof buf, spill);
  DomainKey hp = domain_key(full);

  // A domain that names a port must match host and port exactly; otherwise
  // the port is ignored.
  if (hp.has_port)
    if (auto it = exact_domains.find(full); it != exact_domains.end()) return it->second;
  if (auto it = exact_domains.find(hp.host); it != exact_domains.end()) return it->second;

  // "*" must stand for at least one character, as in Envoy: "*.a.com" does
  // not match "a.com" or ".a.com".
  for (const auto& g : wildcard_domains) {
    if (hp.has_port && full.size() > g.length) {
      auto it = g.by_suffix.find(full.substr(full.size() - g.length));
      if (it != g.by_suffix.end() && it->second.has_port) return it->second;
    }
    if (hp.host.size() > g.length) {
      auto it = g.by_suffix.find(hp.host.substr(hp.host.size() - g.length));
      if (it != g.by_suffix.end() && !it->second.has_port) return it->second;
    }
  }
  return catch_all;
}

}  // namespace detail

Result<Router> Router::compile(RouterConfig config) {
  auto built = detail::CompiledRouter::build(std::move(config));
  if (!built) return built.error();
  return Router(std::move(built.value()));
}

namespace detail {

Result<Router> compile_router(RouterConfig config, RoutePolicies& policies) {
  // build() takes the sink on entry, before anything that could throw.
  struct Reset {
    ~Reset() { policy_sink = nullptr; }
  } reset;
  policy_sink = &policies;
  auto router = Router::compile(std::move(config));
  if (!router) policies.clear();
  return router;
}

}  // namespace detail

std::optional<Router::Selection> Router::match(const RequestHead& request) const {
  auto target = impl_->find_virtual_host(request.authority);
  if (!target) return std::nullopt;
  const auto& cvh = impl_->virtual_hosts[target->virtual_host];
  auto hit = cvh.index.first_match(cvh.routes, request);
  if (!hit) return std::nullopt;
  const auto& vh = impl_->config.virtual_hosts[target->virtual_host];
  const Route& route = vh.routes[hit->route];
  const Matcher* matched =
      hit->block == detail::CompiledRoute::kEveryRequest ? nullptr : &route.matches[hit->block];
  return Selection{target->virtual_host, hit->route, &vh, &route, matched};
}

const RouterConfig& Router::config() const {
  return impl_->config;
}

Explanation Router::explain(const RequestHead& request) const {
  Explanation out;
  const RouterConfig& cfg = impl_->config;
  auto target = impl_->find_virtual_host(request.authority);
  if (!target) {
    // Explanation has no field for the domains tried; host_match carries the
    // summary so to_string() can show it.
    constexpr size_t kShown = 8;
    std::string tried;
    size_t total = 0;
    for (const auto& vh : cfg.virtual_hosts)
      for (const auto& d : vh.domains) {
        if (total++ < kShown) tried += (tried.empty() ? "" : ", ") + d;
      }
    if (total > kShown) tried += fmt::format(" and {} more", total - kShown);
    out.host_match = fmt::format("authority \"{}\" matched none of the domains: {}",
                                 request.authority, total ? tried : std::string("(none)"));
    return out;
  }
  out.host_matched = true;
  out.virtual_host_index = target->virtual_host;
  const auto& vh = cfg.virtual_hosts[target->virtual_host];
  out.virtual_host = vh.name;
  out.host_match = vh.domains[target->domain];

  const auto& cvh = impl_->virtual_hosts[target->virtual_host];
  for (size_t j = 0; j < cvh.routes.size(); ++j) {
    const auto& blocks = cvh.routes[j].matches;
    if (blocks.empty()) {
      out.route_index = j;
      out.route_name = vh.routes[j].name;
      return out;
    }
    std::string reasons;
    for (size_t k = 0; k < blocks.size(); ++k) {
      std::string why = blocks[k].failure(request);
      if (why.empty()) {
        out.route_index = j;
        out.route_name = vh.routes[j].name;
        out.match_index = k;
        return out;
      }
      if (!reasons.empty()) reasons += "; ";
      reasons += fmt::format("match[{}]: {}", k, why);
    }
    out.skipped.push_back({j, vh.routes[j].name, std::move(reasons)});
  }
  return out;
}

std::string SecurityExplanation::to_string() const {
  std::string out = fmt::format("authentication: {}\n", authentication);
  for (const auto& r : rules)
    out += fmt::format("  {} {} rules[{}]: {}\n", r.action, r.policy, r.rule,
                       r.matched ? std::string("matched") : "not matched: " + r.why);
  out += fmt::format("authorization: {}\n", decision);
  if (status) out += fmt::format("  the gateway answers {} ({})\n", status, details);
  return out;
}

std::string Explanation::to_string() const {
  std::string out = security ? security->to_string() : std::string();
  if (!host_matched) return out + fmt::format("no virtual host matched: {}\n", host_match);
  auto label = [](size_t index, const std::string& name) {
    return name.empty() ? fmt::format("route[{}]", index)
                        : fmt::format("route[{}] \"{}\"", index, name);
  };
  out += fmt::format("virtual host \"{}\" (virtual_hosts[{}]) via domain \"{}\"\n", virtual_host,
                     virtual_host_index, host_match);
  for (const auto& s : skipped)
    out += fmt::format("  {}: skipped: {}\n", label(s.route_index, s.route_name), s.reason);
  if (!route_index) {
    out += fmt::format("  no route matched ({} tried): the gateway answers 404 (NR)\n",
                       skipped.size());
    return out;
  }
  out += fmt::format("  {}: selected, ", label(*route_index, route_name));
  out += match_index ? fmt::format("match[{}] matched\n", *match_index)
                     : std::string("it has no match conditions (matches every request)\n");
  return out;
}

}  // namespace sluice
