#include "embedded.hpp"

#include <charconv>

#include "http/tokens.hpp"
#include "sluice/config_dump.hpp"

namespace sluice::embed {

using nlohmann::json;

// What the last successful apply gave: the config as compiled, the ports
// its listeners declare, and for YAML where each route came from.
struct Embedded::Current {
  GatewayConfig config;
  std::vector<uint16_t> declared_ports;  // parallel to config.listeners
  std::optional<istio::LoadedConfig> loaded;
};

namespace {

std::optional<uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value > 65535)
    return std::nullopt;
  return static_cast<uint16_t>(value);
}

struct ParsedUrl {
  std::string scheme;
  std::string authority;
  std::optional<uint16_t> port;
  std::string target;
};

Result<ParsedUrl> parse_url(std::string_view url) {
  ParsedUrl out;
  size_t sep = url.find("://");
  if (sep == std::string_view::npos)
    return Error{"", "url",
                 "\"" + std::string(url) + "\" is not an absolute URL (scheme://host/path)"};
  out.scheme = http::to_lower(url.substr(0, sep));
  std::string_view rest = url.substr(sep + 3);
  size_t path_at = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_at);
  if (authority.empty()) return Error{"", "url", "\"" + std::string(url) + "\" has no host"};
  out.authority = std::string(authority);
  out.target = path_at == std::string_view::npos ? "/" : std::string(rest.substr(path_at));
  if (out.target.front() == '?') out.target.insert(0, "/");
  auto hp = http::split_host_port(authority);
  if (!hp.port.empty()) {
    out.port = parse_port(hp.port);
    if (!out.port) return Error{"", "url", "invalid port \"" + std::string(hp.port) + "\""};
  }
  return out;
}

json action_of(const Route& route) {
  json out = json::object();
  if (route.redirect) {
    out["redirect"] = {{"uri", route.redirect->uri},
                       {"authority", route.redirect->authority},
                       {"code", route.redirect->code}};
  } else if (route.direct_response) {
    out["direct_response"] = {{"status", route.direct_response->status},
                              {"body", route.direct_response->body}};
  }
  json dests = json::array();
  for (const auto& d : route.destinations)
    dests.push_back({{"upstream", d.upstream}, {"subset", d.subset}, {"weight", d.weight}});
  // With one destination it is the choice; a split is chosen per request.
  out["destination"] = route.destinations.size() == 1 ? dests[0] : json();
  out["destinations"] = std::move(dests);
  return out;
}

json security_of(const SecurityExplanation& s) {
  json rules = json::array();
  for (const auto& r : s.rules)
    rules.push_back({{"policy", r.policy},
                     {"rule", r.rule},
                     {"action", r.action},
                     {"matched", r.matched},
                     {"why", r.why}});
  return {{"authentication", s.authentication},
          {"principal", s.principal},
          {"decision", s.decision},
          {"status", s.status},
          {"details", s.details},
          {"rules", std::move(rules)}};
}

json histogram_of(const HistogramValue& h) {
  return {{"count", h.count}, {"sum", h.sum}, {"buckets", h.counts}};
}

// The destination labels both kinds of series carry.
json destination_of(const DestinationSeries& d) {
  return {{"destination_service", d.destination_service},
          {"destination_service_name", d.destination_service_name},
          {"destination_service_namespace", d.destination_service_namespace},
          {"destination_version", d.destination_version},
          {"destination_workload", d.destination_workload},
          {"destination_upstream", d.destination_upstream}};
}

}  // namespace

ManualClock::ManualClock()
    : steady_(std::chrono::steady_clock::now()), wall_(std::chrono::system_clock::now()) {}

std::chrono::steady_clock::time_point ManualClock::now() const {
  return steady_ + elapsed();
}

std::chrono::system_clock::time_point ManualClock::wall_now() const {
  return wall_ + std::chrono::duration_cast<std::chrono::system_clock::duration>(elapsed());
}

std::chrono::nanoseconds ManualClock::elapsed() const {
  return std::chrono::nanoseconds(offset_.load(std::memory_order_acquire));
}

bool ManualClock::advance(std::chrono::nanoseconds step) {
  if (step.count() < 0) return false;
  offset_.fetch_add(step.count(), std::memory_order_acq_rel);
  std::lock_guard lock(mutex_);
  for (auto* g : gateways_) g->clock_advanced();
  return true;
}

void ManualClock::attach(Embedded* g) {
  std::lock_guard lock(mutex_);
  gateways_.insert(g);
}

void ManualClock::detach(Embedded* g) {
  std::lock_guard lock(mutex_);
  gateways_.erase(g);
}

Embedded::Embedded(Options options) : options_(std::move(options)) {
  if (auto c = options_.manual_clock) {
    options_.clock = [c] { return c->now(); };
    options_.wall_clock = [c] { return c->wall_now(); };
  }
  GatewayOptions go;
  go.workers = options_.workers;
  go.seed = options_.seed;
  go.clock = options_.clock;
  go.wall_clock = options_.wall_clock;
  go.hooks = options_.hooks;
  gateway_ = std::make_unique<Gateway>(std::move(go));
  if (options_.manual_clock) options_.manual_clock->attach(this);
}

Embedded::~Embedded() {
  if (options_.manual_clock) options_.manual_clock->detach(this);
  gateway_.reset();
}

Status Embedded::apply_loaded(istio::LoadedConfig loaded) {
  auto current = std::make_shared<Current>();
  current->config = loaded.config;
  for (const auto& info : loaded.listeners) current->declared_ports.push_back(info.port);
  if (Status s = gateway_->apply(loaded.config); !s)
    return istio::to_istio_error(loaded, s.error());
  current->loaded = std::move(loaded);
  std::lock_guard lock(mutex_);
  current_ = std::move(current);
  return {};
}

Status Embedded::apply_yaml(std::string_view yaml) {
  istio::TranslateOptions t;
  t.bind_address = options_.bind;
  t.ephemeral_ports = true;
  auto loaded = istio::load_string(yaml, t);
  if (!loaded) return loaded.error();
  return apply_loaded(std::move(loaded).value());
}

Status Embedded::apply_paths(const std::vector<std::string>& paths) {
  istio::TranslateOptions t;
  t.bind_address = options_.bind;
  t.ephemeral_ports = true;
  auto loaded = istio::load_files(paths, t);
  if (!loaded) return loaded.error();
  return apply_loaded(std::move(loaded).value());
}

Status Embedded::apply_config(GatewayConfig config) {
  auto current = std::make_shared<Current>();
  for (auto& l : config.listeners) {
    if (l.address.empty()) l.address = options_.bind;
    current->declared_ports.push_back(l.port);
  }
  current->config = config;
  if (Status s = gateway_->apply(std::move(config)); !s) return s;
  std::lock_guard lock(mutex_);
  current_ = std::move(current);
  return {};
}

void Embedded::start() {
  gateway_->start();
}
void Embedded::stop() {
  gateway_->stop();
}
void Embedded::clock_advanced() {
  gateway_->clock_advanced();
}

const ListenerConfig* Embedded::find_listener(const Current& c, std::string_view key) const {
  const auto& ls = c.config.listeners;
  for (const auto& l : ls)
    if (l.name == key) return &l;
  auto number = parse_port(key);
  if (!number) return nullptr;
  for (size_t i = 0; i < ls.size(); ++i)
    if (c.declared_ports[i] == *number) return &ls[i];
  // A port the OS chose, as a client would use it.
  for (const auto& l : ls)
    if (gateway_->port(l.name) == *number) return &l;
  return nullptr;
}

uint16_t Embedded::port(std::string_view key) const {
  std::shared_ptr<const Current> c;
  {
    std::lock_guard lock(mutex_);
    c = current_;
  }
  if (!c) return 0;
  const ListenerConfig* l = find_listener(*c, key);
  return l ? gateway_->port(l->name) : 0;
}

std::string Embedded::url(std::string_view key) const {
  uint16_t p = port(key);
  if (p == 0) return {};
  const bool tls = [&] {
    std::lock_guard lock(mutex_);
    const ListenerConfig* l = current_ ? find_listener(*current_, key) : nullptr;
    return l && (!l->tls_servers.empty() || !l->passthrough.empty());
  }();
  return (tls ? "https://" : "http://") + http::join_host_port(options_.bind, p);
}

std::vector<std::string> Embedded::listeners() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  if (current_)
    for (const auto& l : current_->config.listeners) out.push_back(l.name);
  return out;
}

Result<json> Embedded::explain(
    std::string_view method, std::string_view url,
    const std::vector<std::pair<std::string, std::string>>& headers) const {
  std::shared_ptr<const Current> c;
  {
    std::lock_guard lock(mutex_);
    c = current_;
  }
  if (!c) return Error{"", "", "no configuration applied"};
  auto parsed = parse_url(url);
  if (!parsed) return parsed.error();
  const ListenerConfig* listener = nullptr;
  size_t index = 0;
  if (parsed->port) {
    listener = find_listener(*c, std::to_string(*parsed->port));
    if (!listener)
      return Error{"", "url",
                   "no listener declares or is bound to port " + std::to_string(*parsed->port)};
  } else if (c->config.listeners.size() == 1) {
    listener = &c->config.listeners[0];
  } else {
    return Error{"", "url", "the URL has no port and the gateway has several listeners"};
  }
  index = static_cast<size_t>(listener - c->config.listeners.data());

  RequestHead head;
  head.method = std::string(method);
  head.target = parsed->target;
  head.authority = parsed->authority;
  head.scheme = parsed->scheme;
  // The bound port, as the worker sets it on a request it serves.
  head.listener_port = gateway_->port(listener->name);
  head.headers.add("host", head.authority);
  for (const auto& [n, v] : headers) head.headers.add(n, v);
  Explanation e = gateway_->explain(listener->name, head);

  json out;
  out["listener"] = listener->name;
  out["matched"] = e.host_matched && e.route_index.has_value();
  out["virtual_host"] = e.host_matched ? json(e.virtual_host) : json();
  out["host_match"] = e.host_match;
  out["route"] = e.route_index ? json(e.route_name) : json();
  out["route_index"] = e.route_index ? json(*e.route_index) : json();
  out["match_index"] = e.match_index ? json(*e.match_index) : json();
  json reasons = json::array();
  for (const auto& s : e.skipped)
    reasons.push_back({{"route", s.route_name}, {"index", s.route_index}, {"reason", s.reason}});
  out["reasons"] = std::move(reasons);
  out["destination"] = json();
  out["destinations"] = json::array();
  const RouterConfig* router = nullptr;
  for (const auto& r : c->config.routers)
    if (r.name == listener->router) router = &r;
  if (router && e.host_matched && e.route_index &&
      e.virtual_host_index < router->virtual_hosts.size()) {
    const auto& routes = router->virtual_hosts[e.virtual_host_index].routes;
    if (*e.route_index < routes.size()) out.update(action_of(routes[*e.route_index]));
  }
  if (c->loaded && index < c->loaded->listeners.size()) {
    const auto& origins = c->loaded->listeners[index].routes;
    if (auto it = origins.find(e.route_name); e.route_index && it != origins.end()) {
      out["virtual_service"] = it->second.virtual_service;
      out["rule"] = it->second.rule_index;
      out["rule_name"] = it->second.rule_name;
    }
  }
  out["security"] = e.security ? security_of(*e.security) : json();
  out["text"] = e.to_string();
  return out;
}

Result<json> Embedded::upstream(std::string_view name) const {
  UpstreamView v = gateway_->upstream(name);
  if (v.name.empty()) {
    // Istio's names are "outbound|9080||reviews": the host alone will do
    // when one port of it is configured.
    std::lock_guard lock(mutex_);
    std::string found;
    int count = 0;
    std::string suffix = "||" + std::string(name);
    for (const auto& u : current_ ? current_->config.upstreams : std::vector<UpstreamConfig>{})
      if (u.name.size() > suffix.size() && u.name.ends_with(suffix) &&
          u.name.starts_with("outbound|")) {
        found = u.name;
        ++count;
      }
    if (count == 1) v = gateway_->upstream(found);
  }
  if (v.name.empty()) return Error{"Upstream " + std::string(name), "", "no such upstream"};
  json endpoints = json::array();
  for (const auto& ep : v.endpoints)
    endpoints.push_back({{"address", ep.address},
                         {"healthy", ep.healthy},
                         {"ejected", ep.ejected},
                         {"ejections", ep.ejections},
                         {"active_requests", ep.active_requests},
                         {"connections", ep.connections}});
  return json{{"name", v.name},
              {"endpoints", std::move(endpoints)},
              {"active_requests", v.active_requests},
              {"pending_requests", v.pending_requests},
              {"connections", v.connections},
              {"overflows", v.overflows}};
}

json Embedded::stats() const {
  Stats s = gateway_->stats();
  json requests = json::array();
  for (const auto& r : s.requests) {
    json series = destination_of(r);
    series.update({{"response_code", r.response_code},
                   {"response_flags", r.response_flags},
                   {"request_protocol", r.request_protocol},
                   {"grpc_response_status", r.grpc_response_status},
                   {"requests", r.requests},
                   {"duration_ms", histogram_of(r.duration_ms)},
                   {"request_bytes", histogram_of(r.request_bytes)},
                   {"response_bytes", histogram_of(r.response_bytes)}});
    requests.push_back(std::move(series));
  }
  // Connections relayed as bytes (TCP routes, TLS passthrough).
  json tcp = json::array();
  for (const auto& t : s.tcp) {
    json series = destination_of(t);
    series.update({{"response_flags", t.response_flags},
                   {"connections_opened", t.connections_opened},
                   {"connections_closed", t.connections_closed},
                   {"received_bytes", t.received_bytes},
                   {"sent_bytes", t.sent_bytes}});
    tcp.push_back(std::move(series));
  }
  json metrics = json::array();
  for (const auto& m : s.metrics) {
    json labels = json::object();
    for (const auto& [k, v] : m.labels) labels[k] = v;
    metrics.push_back(
        {{"name", m.name}, {"labels", std::move(labels)}, {"value", m.value}, {"gauge", m.gauge}});
  }
  return {{"source_workload", s.source_workload},
          {"source_workload_namespace", s.source_workload_namespace},
          {"requests", std::move(requests)},
          {"tcp", std::move(tcp)},
          {"metrics", std::move(metrics)}};
}

std::string Embedded::prometheus() const {
  return gateway_->stats().prometheus();
}

std::string Embedded::config_dump() const {
  auto snapshot = gateway_->snapshot();
  if (!snapshot) return "{}";
  return config_dump_json(
      *snapshot, options_.wall_clock ? options_.wall_clock() : std::chrono::system_clock::now());
}

const char* version() {
  return SLUICE_PROJECT_VERSION;
}

}  // namespace sluice::embed
