// Text for `sluice-ingress --check` and `--explain`, phrased in Istio's terms
// (Gateway servers, VirtualService rules) rather than sluice's.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string_view>
#include <utility>

#include "http/tokens.hpp"
#include "istio/istio.hpp"
#include "istio/model.hpp"
#include "sluice/config_dump.hpp"

namespace sluice::istio {
namespace {

std::string describe(const StringMatch& m);
std::string describe_match(const StringMatch& m) {
  return describe(m);
}

std::string describe(const StringMatch& m) {
  switch (m.kind) {
    case StringMatch::Kind::exact:
      return fmt::format("exact \"{}\"", m.value);
    case StringMatch::Kind::prefix:
      return fmt::format("prefix \"{}\"", m.value);
    case StringMatch::Kind::suffix:
      return fmt::format("suffix \"{}\"", m.value);
    case StringMatch::Kind::regex:
      return fmt::format("regex \"{}\"", m.value);
    case StringMatch::Kind::present:
      return "present";
  }
  return "?";
}

std::string describe(const Matcher& m) {
  std::vector<std::string> parts;
  if (m.uri)
    parts.push_back("uri " + describe(*m.uri) + (m.ignore_uri_case ? " (ignore case)" : ""));
  if (m.method) parts.push_back("method " + describe(*m.method));
  if (m.authority) parts.push_back("authority " + describe(*m.authority));
  if (m.scheme) parts.push_back("scheme " + describe(*m.scheme));
  for (const auto& h : m.headers)
    parts.push_back(fmt::format("{} \"{}\" {}", h.invert ? "without header" : "header", h.name,
                                describe(h.match)));
  for (const auto& q : m.query_params)
    parts.push_back(fmt::format("query \"{}\" {}", q.name, describe(q.match)));
  if (m.port) parts.push_back(fmt::format("port {}", *m.port));
  if (parts.empty()) return "any request";
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? " and " : "") + parts[i];
  return out;
}

std::string describe_ops(const HeaderOperations& ops) {
  std::vector<std::string> parts;
  for (const auto& [n, v] : ops.set) parts.push_back(fmt::format("set {}: {}", n, v));
  for (const auto& [n, v] : ops.add) parts.push_back(fmt::format("add {}: {}", n, v));
  for (const auto& n : ops.remove) parts.push_back(fmt::format("remove {}", n));
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? "; " : "") + parts[i];
  return out;
}

std::string describe_redirect(const Redirect& r) {
  std::string out = fmt::format("redirect {}", r.code);
  if (!r.scheme.empty()) out += " scheme " + r.scheme;
  if (!r.authority.empty()) out += " authority " + r.authority;
  if (r.port) out += fmt::format(" port {}", r.port);
  if (r.derive_port == Redirect::DerivePort::from_protocol_default)
    out += " port from protocol default";
  if (r.derive_port == Redirect::DerivePort::from_request_port) out += " port from request";
  if (!r.uri.empty()) out += " uri " + r.uri;
  return out;
}

std::string describe_action(const Route& r) {
  if (r.direct_response)
    return fmt::format("direct response {} ({} body bytes)", r.direct_response->status,
                       r.direct_response->body.size());
  if (r.redirect) return describe_redirect(*r.redirect);
  uint64_t total = 0;
  for (const auto& d : r.destinations) total += d.weight;
  std::string out;
  for (size_t i = 0; i < r.destinations.size(); ++i) {
    const auto& d = r.destinations[i];
    if (i) out += ", ";
    out += d.upstream;
    if (!d.subset.empty()) out += " subset " + d.subset;
    if (r.destinations.size() > 1)
      out += fmt::format(" weight {} ({:.0f}%)", d.weight,
                         total ? 100.0 * d.weight / static_cast<double>(total) : 0.0);
  }
  return out;
}

std::string ms_text(std::chrono::milliseconds ms) {
  if (ms.count() % 1000 == 0) return fmt::format("{}s", ms.count() / 1000);
  return fmt::format("{}ms", ms.count());
}

std::string describe_match(const StringMatch& m);

// "label: text" lines for every policy the route applies, in the order the
// gateway applies them.
std::vector<std::pair<std::string, std::string>> describe_policies(const Route& r) {
  std::vector<std::pair<std::string, std::string>> out;
  if (r.cors) {
    const CorsPolicy& c = *r.cors;
    std::string origins;
    for (const auto& o : c.allow_origins)
      origins += (origins.empty() ? "" : ", ") + describe_match(o);
    std::string text = "origins " + (origins.empty() ? std::string("none") : origins);
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
      return s;
    };
    if (!c.allow_methods.empty()) text += "; methods " + list(c.allow_methods);
    if (!c.allow_headers.empty()) text += "; headers " + list(c.allow_headers);
    if (!c.expose_headers.empty()) text += "; expose " + list(c.expose_headers);
    if (c.max_age) text += fmt::format("; max age {}s", c.max_age->count());
    if (c.allow_credentials) text += fmt::format("; credentials {}", *c.allow_credentials);
    text += c.forward_unmatched_preflights ? "; unmatched preflights forwarded"
                                           : "; unmatched preflights ignored";
    out.emplace_back("cors", text);
  }
  if (r.fault) {
    std::string text;
    if (r.fault->delay)
      text += fmt::format("delay {} for {}% of requests", ms_text(r.fault->delay->fixed_delay),
                          r.fault->delay->percentage);
    if (r.fault->abort) {
      const auto& a = *r.fault->abort;
      if (!text.empty()) text += "; ";
      text += a.grpc_status ? fmt::format("abort grpc-status {}", *a.grpc_status)
                            : fmt::format("abort {}", a.http_status);
      text += fmt::format(" for {}% of requests", a.percentage);
    }
    out.emplace_back("fault", text);
  }
  if (r.rewrite) {
    std::string text;
    if (r.rewrite->uri) text += "uri " + (r.rewrite->uri->empty() ? "\"\"" : *r.rewrite->uri);
    if (r.rewrite->uri_regex)
      text += fmt::format("uri regex \"{}\" -> \"{}\"", r.rewrite->uri_regex->first,
                          r.rewrite->uri_regex->second);
    if (!r.rewrite->authority.empty())
      text += (text.empty() ? "" : "; ") + std::string("authority ") + r.rewrite->authority;
    out.emplace_back("rewrite", text);
  }
  if (!r.request_headers.empty())
    out.emplace_back("request headers", describe_ops(r.request_headers));
  if (!r.response_headers.empty())
    out.emplace_back("response headers", describe_ops(r.response_headers));
  for (const auto& d : r.destinations) {
    std::string who = d.upstream + (d.subset.empty() ? "" : " subset " + d.subset);
    if (!d.request_headers.empty())
      out.emplace_back("request headers", who + ": " + describe_ops(d.request_headers));
    if (!d.response_headers.empty())
      out.emplace_back("response headers", who + ": " + describe_ops(d.response_headers));
  }
  if (r.redirect || r.direct_response) return out;
  if (r.fault) {
    out.emplace_back("timeout", "none (the route has a fault)");
    out.emplace_back("retries", "none (the route has a fault)");
  } else {
    out.emplace_back("timeout", r.timeout.count() ? ms_text(r.timeout) : "none");
    const RetryPolicy& rp = r.retries;
    if (rp.attempts == 0) {
      out.emplace_back("retries", "none");
    } else {
      std::string text = fmt::format("{} attempt(s) on {}", rp.attempts, rp.retry_on);
      if (rp.per_try_timeout.count()) text += ", per try timeout " + ms_text(rp.per_try_timeout);
      if (!rp.retry_ignore_previous_hosts) text += ", previous hosts allowed";
      out.emplace_back("retries", text);
    }
  }
  for (const auto& m : r.mirrors)
    out.emplace_back("mirror",
                     fmt::format("{}{} for {}% of requests (Host gets -shadow)", m.upstream,
                                 m.subset.empty() ? "" : " subset " + m.subset, m.percentage));
  return out;
}

std::string rule_label(const ListenerInfo& l, const std::string& route_name) {
  auto it = l.routes.find(route_name);
  if (it == l.routes.end()) return route_name;
  const RouteOrigin& o = it->second;
  if (!o.source.empty()) return o.source;
  std::string out = fmt::format("VirtualService {} http[{}]", o.virtual_service, o.rule_index);
  if (!o.rule_name.empty()) out += fmt::format(" \"{}\"", o.rule_name);
  if (!o.delegate.empty()) {
    out +=
        fmt::format(" -> delegate VirtualService {} http[{}]", o.delegate, o.delegate_rule_index);
    if (!o.delegate_rule_name.empty()) out += fmt::format(" \"{}\"", o.delegate_rule_name);
  }
  return out;
}

std::string strip_ns(const std::string& host) {
  auto slash = host.find('/');
  return slash == std::string::npos ? host : host.substr(slash + 1);
}

std::string join_list(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
  return out;
}

// Never the PEM text: --check output ends up in logs and tickets.
std::string describe_tls_server(const TlsServer& t) {
  std::string out =
      fmt::format("{} certificate for {}", tls_mode_name(t.mode), join_list(t.sni_hosts));
  if (t.mode != TlsServer::Mode::simple) {
    out += ", client certificates checked against the CA";
    if (!t.subject_alt_names.empty()) out += "; SANs " + join_list(t.subject_alt_names);
  }
  return out;
}

// The TLS server an SNI picks, the way the listener does: exact name, then
// the longest wildcard suffix, then "*".
const TlsServer* pick_tls_server(const ListenerConfig& lc, std::string_view authority) {
  std::string host = http::to_lower(http::split_host_port(authority).host);
  const TlsServer* best = nullptr;
  size_t best_len = 0;
  for (const auto& t : lc.tls_servers)
    for (const auto& h : t.sni_hosts) {
      std::string name = http::to_lower(h);
      if (name == host) return &t;
      if (name.starts_with("*.") && host.size() > name.size() - 1 &&
          host.ends_with(name.substr(1)) && name.size() > best_len) {
        best = &t;
        best_len = name.size();
      }
      if (name == "*" && !best) best = &t;
    }
  return best;
}

}  // namespace

// --check's upstream lines: endpoints, subsets, TLS origination.
std::string describe_upstreams(const std::vector<UpstreamConfig>& upstreams) {
  std::string out;
  for (const auto& up : upstreams) {
    out += fmt::format("upstream {}: {} endpoint(s)", up.name, up.endpoints.size());
    if (!up.subsets.empty()) {
      out += ", subsets";
      for (const auto& s : up.subsets) out += " " + s.name;
    }
    if (up.tls) {
      out +=
          fmt::format(", tls origination {} sni \"{}\"",
                      up.tls->mode == UpstreamTls::Mode::mutual ? "MUTUAL" : "SIMPLE", up.tls->sni);
      if (!up.tls->spiffe_trust_domain.empty())
        out += fmt::format(" (ISTIO_MUTUAL: mesh certificates, SPIFFE identities {})",
                           up.tls->subject_alt_names.empty()
                               ? "in trust domain " + up.tls->spiffe_trust_domain
                               : join_list(up.tls->subject_alt_names));
      else if (up.tls->insecure_skip_verify)
        out += " (no verification)";
      else
        out += up.tls->ca_certificates.empty() ? " (system CAs)" : " (CA from configuration)";
    }
    out += "\n";
    for (const auto& e : up.endpoints) {
      std::string labels;
      for (const auto& [k, v] : e.labels) labels += (labels.empty() ? "" : ",") + k + "=" + v;
      out +=
          fmt::format("  {}:{}{}\n", e.address, e.port, labels.empty() ? "" : " {" + labels + "}");
    }
  }
  return out;
}

std::string summary(const LoadedConfig& loaded) {
  std::string out;
  size_t hosts = 0, rules = 0;
  for (size_t i = 0; i < loaded.listeners.size(); ++i) {
    const ListenerInfo& l = loaded.listeners[i];
    const ListenerConfig& lc = loaded.config.listeners[i];
    out += fmt::format("listener {} on {}:{}\n", l.name, lc.address, l.port);
    for (const auto& s : l.servers) {
      std::string h;
      for (const auto& x : s.hosts) h += (h.empty() ? "" : ", ") + x;
      out += fmt::format("  server Gateway {} servers[{}]{} {}{} hosts {}\n", s.gateway,
                         s.server_index, s.server_name.empty() ? "" : " \"" + s.server_name + "\"",
                         s.protocol, s.tls_mode.empty() ? "" : " tls " + s.tls_mode, h);
    }
    for (const auto& t : lc.tls_servers) out += "  tls terminate: " + describe_tls_server(t) + "\n";
    for (const auto& p : lc.passthrough)
      out += fmt::format("  tls passthrough: sni {} -> {}{}\n", join_list(p.sni_hosts), p.upstream,
                         p.subset.empty() ? "" : " subset " + p.subset);
    for (const auto& t : lc.tcp_routes) {
      ++rules;
      out += fmt::format("  tcp route {}{}\n", t.name,
                         t.source_subnets.empty() ? "" : " from " + join_list(t.source_subnets));
      for (const auto& d : t.destinations)
        out += fmt::format("    -> {}{} weight {}\n", d.upstream,
                           d.subset.empty() ? "" : " subset " + d.subset, d.weight);
    }
    const RouterConfig* router = nullptr;
    for (const auto& r : loaded.config.routers)
      if (r.name == lc.router) router = &r;
    if (!router) continue;
    for (const auto& vh : router->virtual_hosts) {
      ++hosts;
      out += fmt::format("  host {}{}\n", vh.name,
                         vh.https_redirect ? " (httpsRedirect: 301 to https)" : "");
      for (const auto& r : vh.routes) {
        ++rules;
        out += fmt::format("    {}\n", rule_label(l, r.name));
        if (r.matches.empty()) out += "      match any request\n";
        auto origin = l.routes.find(r.name);
        for (size_t k = 0; k < r.matches.size(); ++k) {
          size_t src = origin != l.routes.end() && k < origin->second.match_origin.size()
                           ? origin->second.match_origin[k]
                           : k;
          out += fmt::format("      match[{}] {}\n", src, describe(r.matches[k]));
        }
        out += fmt::format("      -> {}\n", describe_action(r));
      }
    }
  }
  out += describe_upstreams(loaded.config.upstreams);
  const SecurityConfig& sec = loaded.config.security;
  if (!loaded.security_applied.empty() || !loaded.security_skipped.empty())
    out += fmt::format("security: root namespace {}, {} trusted proxy(ies)\n", sec.root_namespace,
                       sec.num_trusted_proxies);
  for (const auto& p : loaded.security_applied)
    out += fmt::format("  applies: {} ({})\n", p.object, p.detail);
  for (const auto& p : loaded.security_skipped)
    out += fmt::format("  skipped: {}: {}\n", p.object, p.detail);
  const RateLimitConfig& rl = loaded.config.rate_limits;
  if (!loaded.envoy_filters_applied.empty() || !loaded.envoy_filters_skipped.empty()) {
    out += fmt::format(
        "rate limits: local filter {}, {} per-route config(s), global {}\n",
        rl.local ? "yes" : "no", rl.local_overrides.size(),
        rl.global
            ? fmt::format("domain {} on Redis {} ({} service config(s))", rl.global->domain,
                          rl.redis_address.empty() ? "(none)" : rl.redis_address, rl.service.size())
            : std::string("no"));
    for (const auto& p : loaded.envoy_filters_applied)
      out += fmt::format("  applies: {} ({})\n", p.object, p.detail);
    for (const auto& p : loaded.envoy_filters_skipped)
      out += fmt::format("  skipped: {}: {}\n", p.object, p.detail);
  }
  // Gateway API routes: what their status conditions would say, per parent.
  for (const auto& rs : loaded.route_status) {
    out += fmt::format("route {}\n", rs.route);
    for (const auto& p : rs.parents) {
      out += fmt::format("  parent {}: Accepted={} ({}{}), ResolvedRefs={} ({}{})\n", p.parent,
                         p.accepted ? "True" : "False", p.accepted_reason,
                         p.accepted ? "" : ": " + p.accepted_message,
                         p.resolved_refs ? "True" : "False", p.resolved_reason,
                         p.resolved_refs ? "" : ": " + p.resolved_message);
    }
  }
  const TelemetryConfig& tel = loaded.config.telemetry;
  for (const auto& log : tel.access_logs) {
    bool json = log.encoding == AccessLogConfig::Encoding::json;
    bool custom = json ? !log.json_fields.empty() : !log.format.empty();
    out += fmt::format("access log: {} ({} {})\n", log.path, custom ? "custom" : "Istio's default",
                       json ? "JSON" : "TEXT");
  }
  if (!tel.tracing.otlp_endpoint.empty())
    out += fmt::format("tracing: OTLP/HTTP to {}, sampling {}%\n", tel.tracing.otlp_endpoint,
                       tel.tracing.sampling_percentage);
  out += fmt::format(
      "{} listener(s), {} host(s), {} rule(s), {} upstream(s), {} security policy(ies), {} "
      "warning(s)\n",
      loaded.listeners.size(), hosts, rules, loaded.config.upstreams.size(),
      loaded.security_applied.size(), loaded.warnings.size());
  return out;
}

std::string explain_text(const LoadedConfig& loaded, const ListenerInfo& listener,
                         const RouterConfig& router, const Explanation& e) {
  std::string out;
  out += fmt::format("listener: {} (port {})\n", listener.name, listener.port);
  // Security policies run before routing: a refusal ends the request.
  if (const auto& sec = e.security) {
    out += fmt::format("authn:    {}\n", sec->authentication);
    for (const auto& r : sec->rules)
      out += fmt::format("policy:   {} AuthorizationPolicy {} rules[{}]: {}\n", r.action, r.policy,
                         r.rule, r.matched ? std::string("matched") : "not matched: " + r.why);
    out += fmt::format("authz:    {}\n", sec->decision);
    if (sec->status) {
      out += fmt::format("result:   {} ({})\n", sec->status, sec->details);
      return out;
    }
  }
  for (const auto& lc : loaded.config.listeners) {
    if (lc.name != listener.name || lc.tls_servers.empty()) continue;
    std::string host = e.host_matched && e.virtual_host_index < router.virtual_hosts.size()
                           ? router.virtual_hosts[e.virtual_host_index].name
                           : std::string();
    if (host.empty()) break;
    // The request's host stands in for the SNI a client would send.
    if (const TlsServer* t = pick_tls_server(lc, host))
      out += "tls:      " + describe_tls_server(*t) + "\n";
    else
      out += "tls:      no certificate for this SNI: the handshake fails\n";
  }
  if (e.host_matched && e.virtual_host_index < router.virtual_hosts.size() &&
      router.virtual_hosts[e.virtual_host_index].https_redirect)
    out += "redirect: 301 to https (server httpsRedirect) for plain HTTP requests\n";
  if (!e.host_matched || e.virtual_host_index >= router.virtual_hosts.size()) {
    out += "host:     no host of any VirtualService at this port matches the authority\n";
    out += "result:   404 (NR: no route)\n";
    return out;
  }
  const VirtualHost& vh = router.virtual_hosts[e.virtual_host_index];
  for (const auto& s : listener.servers)
    for (const auto& h : s.hosts)
      if (intersect_hosts(vh.name, strip_ns(h))) {
        out += fmt::format("server:   Gateway {} servers[{}] ({} port {}, host {})\n", s.gateway,
                           s.server_index, s.protocol, listener.port, h);
        goto found;
      }
found:
  out += fmt::format("host:     {} (domain \"{}\" matched)\n", vh.name, e.host_match);
  for (const auto& sk : e.skipped) {
    out += fmt::format("skipped:  {}: {}\n", rule_label(listener, sk.route_name), sk.reason);
  }
  if (!e.route_index || *e.route_index >= vh.routes.size()) {
    out += "rule:     no rule matches\n";
    out += "result:   404 (NR: no route)\n";
    return out;
  }
  const Route& r = vh.routes[*e.route_index];
  out += fmt::format("rule:     {}", rule_label(listener, r.name));
  auto origin = listener.routes.find(r.name);
  if (e.match_index) {
    size_t src = *e.match_index;
    if (origin != listener.routes.end() && src < origin->second.match_origin.size())
      src = origin->second.match_origin[src];
    out += fmt::format(" match[{}] ({})", src, describe(r.matches[*e.match_index]));
  } else {
    out += " (no match conditions)";
  }
  out += fmt::format("\nroute:    {}\n", r.name);
  out += fmt::format("{}: {}\n",
                     r.direct_response ? "response"
                     : r.redirect      ? "redirect"
                                       : "destination",
                     r.redirect ? describe_action(r).substr(9) : describe_action(r));
  for (const auto& [label, text] : describe_policies(r)) {
    std::string l = label + ":";
    l.resize(std::max<size_t>(10, l.size() + 1), ' ');
    out += l + text + "\n";
  }
  return out;
}

// --- compile errors in Istio terms ---------------------------------------------------

namespace {

// "virtual_hosts[3]" -> {"virtual_hosts", 3}; no index: npos.
std::pair<std::string_view, size_t> split_index(std::string_view seg) {
  size_t open = seg.find('[');
  if (open == std::string_view::npos || seg.back() != ']') return {seg, std::string_view::npos};
  size_t n = 0;
  for (char c : seg.substr(open + 1, seg.size() - open - 2)) {
    if (c < '0' || c > '9') return {seg, std::string_view::npos};
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  return {seg.substr(0, open), n};
}

std::string camel(std::string_view snake) {
  std::string out;
  bool up = false;
  for (char c : snake) {
    if (c == '_') {
      up = true;
      continue;
    }
    out += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    up = false;
  }
  return out;
}

// The route-relative C++ field path (".request_headers.set[0]") in the names
// of the VirtualService's HTTPRoute (".headers.request.set[x-a]").
std::string istio_route_field(const Route& route, const RouteOrigin& origin,
                              std::string_view rest) {
  std::vector<std::string_view> segs;
  while (!rest.empty()) {
    if (rest.front() == '.') rest.remove_prefix(1);
    size_t dot = rest.find('.');
    segs.push_back(rest.substr(0, dot));
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot);
  }
  static const std::map<std::string_view, std::string_view> kNames = {
      {"destinations", "route"}, {"direct_response", "directResponse"},
      {"cors", "corsPolicy"},    {"uri_regex", "uriRegexRewrite"},
      {"code", "redirectCode"},  {"matches", "match"},
  };
  std::string out;
  const HeaderOperations* ops = nullptr;
  const Destination* dest = nullptr;
  for (std::string_view seg : segs) {
    auto [name, idx] = split_index(seg);
    std::string piece;
    if (name == "request_headers" || name == "response_headers") {
      bool req = name == "request_headers";
      ops = dest ? (req ? &dest->request_headers : &dest->response_headers)
                 : (req ? &route.request_headers : &route.response_headers);
      piece = req ? "headers.request" : "headers.response";
    } else if (ops && (name == "set" || name == "add") && idx != std::string_view::npos) {
      // Istio's set/add are maps: name the header, not its position.
      const auto& list = name == "set" ? ops->set : ops->add;
      piece = idx < list.size() ? fmt::format("{}[{}]", name, list[idx].first) : std::string(seg);
    } else {
      auto it = kNames.find(name);
      piece = it != kNames.end() ? std::string(it->second) : camel(name);
      if (name == "destinations" && idx < route.destinations.size())
        dest = &route.destinations[idx];
      if (name == "matches" && idx < origin.match_origin.size()) idx = origin.match_origin[idx];
      if (idx != std::string_view::npos) piece += fmt::format("[{}]", idx);
    }
    out += "." + piece;
  }
  return out;
}

}  // namespace

Error to_istio_error(const LoadedConfig& loaded, const Error& error) {
  constexpr std::string_view kRouter = "Router ";
  if (!error.object.starts_with(kRouter)) return error;
  std::string_view name = std::string_view(error.object).substr(kRouter.size());
  const RouterConfig* router = nullptr;
  for (const auto& r : loaded.config.routers)
    if (r.name == name) router = &r;
  const ListenerInfo* info = nullptr;
  for (const auto& l : loaded.listeners)
    if (l.name == name) info = &l;
  if (!router || !info) return error;
  // "virtual_hosts[v].routes[r]<rest>"
  std::string_view field = error.field;
  size_t first = field.find('.');
  if (first == std::string_view::npos) return error;
  auto [vh_name, v] = split_index(field.substr(0, first));
  std::string_view after = field.substr(first + 1);
  size_t second = after.find('.');
  auto [routes_name, r] = split_index(after.substr(0, second));
  if (vh_name != "virtual_hosts" || routes_name != "routes" || v >= router->virtual_hosts.size() ||
      r >= router->virtual_hosts[v].routes.size())
    return error;
  const Route& route = router->virtual_hosts[v].routes[r];
  auto origin = info->routes.find(route.name);
  if (origin == info->routes.end()) return error;
  const RouteOrigin& o = origin->second;
  std::string_view rest = second == std::string_view::npos ? "" : after.substr(second);
  if (!o.source.empty()) {  // a Gateway API route: "HTTPRoute ns/name rules[i].matches[k]"
    size_t space = o.source.rfind(' ');
    return Error{o.source.substr(0, space), o.source.substr(space + 1) + std::string(rest),
                 error.message};
  }
  bool delegated = !o.delegate.empty();
  Error out;
  out.object = "VirtualService " + (delegated ? o.delegate : o.virtual_service);
  out.field = fmt::format("http[{}]{}", delegated ? o.delegate_rule_index : o.rule_index,
                          istio_route_field(route, o, rest));
  out.message = error.message;
  return out;
}

}  // namespace sluice::istio
