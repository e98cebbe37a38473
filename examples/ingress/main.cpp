// sluice-ingress: Istio networking YAML (or a built-in demo) served by a
// sluice::Gateway. A thin program: argument parsing, the lib/istio loader, and
// a control loop for signals and file changes. DNS ServiceEntries are kept
// current by the library's DnsEndpointSource.

#include <sys/inotify.h>
#include <unistd.h>

#include <asio.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "demo_upstream.hpp"
#include "http/path.hpp"
#include "http/tokens.hpp"
#include "istio/istio.hpp"
#include "sluice/sluice.hpp"

namespace {

const char* usage = R"(usage: sluice-ingress [options]
  --demo                 gateway on 127.0.0.1:8080 in front of two built-in upstreams;
                         `end-user: jason` goes to reviews-v2, everyone else to reviews-v1
  --config PATH          Istio YAML file or directory of *.yaml/*.yml (repeatable)
  --mesh-config PATH     Istio MeshConfig YAML, or the `istio` ConfigMap (its data.mesh);
                         applies pathNormalization (default BASE), rootNamespace,
                         defaultConfig.gatewayTopology.numTrustedProxies, accessLogFile,
                         accessLogEncoding, accessLogFormat, defaultProviders and
                         extensionProviders
  --gateway-namespace NS the gateway workload's namespace, for the security policies
                         that select it (default istio-system)
  --resolve-unknown-hosts dns|error  a destination host no ServiceEntry or Service
                         declares: resolved by DNS and re-resolved every --dns-refresh
                         (docker-compose style), or a load error (the default)
  --mesh-certs DIR       the mesh identity as Istio mounts it (cert-chain.pem, key.pem,
                         root-cert.pem): DestinationRule tls mode ISTIO_MUTUAL originates
                         mTLS with it and checks the peer's SPIFFE identity; reloaded
                         when the files change
  --gateway-label K=V    a label of the gateway workload (repeatable; replaces the
                         default app=istio-ingressgateway, istio=ingressgateway)
  --gateway-class NAME   Gateway API: serve the Gateways of this gatewayClassName
                         (default istio); others are ignored with a note
  --rate-limit-config PATH  the reference rate-limit service's config.yaml (domain and
                         descriptors), or its ConfigMap: the limits of the global rate
                         limit an EnvoyFilter inserts (envoy.filters.http.ratelimit)
  --redis HOST:PORT      Redis that holds the global limits' counters, shared by every
                         process pointed at it (default 127.0.0.1:6379)
  --jwks-ca PATH         PEM CAs for https jwksUri fetches (default: the system store)
  --jwks-resolve HOST:PORT=IP:PORT  fetch jwksUri / discovery URLs of HOST:PORT from
                         IP:PORT instead (repeatable; the name is still checked)
  --bind ADDR            address for every listener (default 0.0.0.0; 127.0.0.1 with --demo)
  --workers N            worker threads (default: one per hardware thread)
  --check                validate the configuration, print a summary, exit 0 or 1
  --explain 'METHOD URL' explain how a request would be routed, serve nothing
                         (exit 0 when a rule matches, 1 otherwise)
  -H 'name: value'       request header for --explain (repeatable)
  --client-ip IP         client address for --explain (security policies' ipBlocks)
  --ephemeral-ports      listen on port 0 for every Gateway server port and print
                         `listening <server port> <address>:<bound port>` per listener
  --admin ADDR:PORT      admin endpoints (/ready, /stats/prometheus, /stats, /config_dump,
                         /clusters, /graph, /graph.json); default 127.0.0.1:15000, `off`
                         disables; with --ephemeral-ports port 0, printed as `admin ADDR:PORT`
  --status-port          also serve Istio's status ports: 15021 /healthz/ready and 15090
                         /stats/prometheus on the --bind address (with --ephemeral-ports
                         port 0, printed as `status <port> ADDR:PORT`)
  --no-watch             do not reload on file changes (SIGHUP still does)
  --http2-extended-connect  accept WebSocket over HTTP/2 (RFC 8441 extended CONNECT;
                         Envoy's allow_connect), tunnelled upstream as HTTP/1.1 upgrades
  --access-log PATH      write an access log to PATH (`-`: standard output); replaces
                         the mesh config's accessLogFile and Telemetry's providers
  --access-log-format text|json|'FORMAT'  Istio's default TEXT line, its JSON keys, or an
                         Envoy format string (%REQ(:METHOD)% ...); applies to --access-log,
                         else to the access logs the mesh config and Telemetry configure
  --file-flush-interval-msec N  access-log lines are written at least this often, or
                         when 64 KiB are pending (Envoy's flag; default 1000, Istio's; 0:
                         at once)
  --dns-refresh SECONDS  re-resolve DNS ServiceEntries this often (default 30; 0: never)
  --otlp-endpoint URL    export sampled spans as OTLP/HTTP JSON to this collector
                         (http://host:port/v1/traces, or host:port); overrides the mesh
                         config's opentelemetry provider
  --trace-sampling PERCENT  share of requests traced when no decision arrives with
                         them (0..100; default: the mesh config's, else Istio's 1)
Signals: SIGHUP reloads the configuration and the mesh config (so does a change
under a --config directory or to the --mesh-config or --rate-limit-config file); SIGTERM / SIGINT drain
and exit 0; SIGUSR1 reopens the access-log files (rotation: rename, then SIGUSR1).
)";

struct Options {
  bool demo = false;
  bool check = false;
  bool ephemeral = false;
  bool watch = true;
  bool http2_extended_connect = false;
  unsigned workers = 0;
  std::vector<std::string> configs;
  std::optional<std::string> bind;
  std::optional<std::string> mesh_config;
  std::optional<std::string> rate_limit_config;
  std::string redis = "127.0.0.1:6379";
  std::optional<std::string> explain;
  std::vector<std::string> headers;
  std::string client_ip;
  std::optional<std::string> jwks_ca;
  std::map<std::string, std::string> jwks_resolve;
  int dns_refresh_seconds = 30;
  std::optional<std::string> gateway_namespace;
  std::optional<std::string> mesh_certs;
  bool resolve_unknown_hosts = false;
  std::optional<std::string> gateway_class;
  std::optional<sluice::Labels> gateway_labels;
  std::optional<std::string> access_log;
  std::optional<std::string> access_log_format;
  std::optional<std::string> otlp_endpoint;
  std::optional<double> trace_sampling;
  std::optional<unsigned long> file_flush_ms;
  std::optional<std::string> admin = "127.0.0.1:15000";  // nullopt: --admin off
  bool status_ports = false;
};

int fail_usage(const std::string& msg) {
  fmt::print(stderr, "sluice-ingress: {}\n{}", msg, usage);
  return 2;
}

std::optional<int> parse_args(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    std::optional<std::string> v;
    if (a == "--help" || a == "-h") {
      fmt::print("{}", usage);
      return 0;
    } else if (a == "--demo") {
      o.demo = true;
    } else if (a == "--check") {
      o.check = true;
    } else if (a == "--no-watch") {
      o.watch = false;
    } else if (a == "--ephemeral-ports") {
      o.ephemeral = true;
    } else if (a == "--http2-extended-connect") {
      o.http2_extended_connect = true;
    } else if (a == "--status-port") {
      o.status_ports = true;
    } else if (a == "--admin") {
      if (!(v = value())) return fail_usage("--admin needs ADDR:PORT or off");
      o.admin = *v == "off" ? std::nullopt : std::optional<std::string>(*v);
    } else if (a == "--config" || a == "--bind" || a == "--workers" || a == "--explain" ||
               a == "-H" || a == "--dns-refresh" || a == "--mesh-config" ||
               a == "--gateway-namespace" || a == "--gateway-label" || a == "--rate-limit-config" ||
               a == "--redis" || a == "--client-ip" || a == "--jwks-ca" || a == "--jwks-resolve" ||
               a == "--otlp-endpoint" || a == "--trace-sampling" || a == "--gateway-class" ||
               a == "--file-flush-interval-msec" || a == "--mesh-certs" ||
               a == "--resolve-unknown-hosts") {
      if (!(v = value())) return fail_usage(a + " needs a value");
      if (a == "--config") o.configs.push_back(*v);
      if (a == "--mesh-config") o.mesh_config = *v;
      if (a == "--rate-limit-config") o.rate_limit_config = *v;
      if (a == "--redis") o.redis = *v;
      if (a == "--gateway-namespace") o.gateway_namespace = *v;
      if (a == "--gateway-class") o.gateway_class = *v;
      if (a == "--mesh-certs") o.mesh_certs = *v;
      if (a == "--resolve-unknown-hosts") {
        if (*v != "dns" && *v != "error")
          return fail_usage("--resolve-unknown-hosts needs dns or error");
        o.resolve_unknown_hosts = *v == "dns";
      }
      if (a == "--gateway-label") {
        auto eq = v->find('=');
        if (eq == std::string::npos || eq == 0) return fail_usage("--gateway-label needs K=V");
        if (!o.gateway_labels) o.gateway_labels.emplace();
        (*o.gateway_labels)[v->substr(0, eq)] = v->substr(eq + 1);
      }
      if (a == "--bind") o.bind = *v;
      if (a == "--explain") o.explain = *v;
      if (a == "-H") o.headers.push_back(*v);
      if (a == "--client-ip") o.client_ip = *v;
      if (a == "--jwks-ca") o.jwks_ca = *v;
      if (a == "--otlp-endpoint") o.otlp_endpoint = *v;
      if (a == "--jwks-resolve") {
        auto eq = v->find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == v->size())
          return fail_usage("--jwks-resolve needs HOST:PORT=IP:PORT");
        o.jwks_resolve[v->substr(0, eq)] = v->substr(eq + 1);
      }
      try {
        if (a == "--workers") o.workers = static_cast<unsigned>(std::stoul(*v));
        if (a == "--dns-refresh") o.dns_refresh_seconds = std::stoi(*v);
        if (a == "--trace-sampling") o.trace_sampling = std::stod(*v);
        // stoul would take "-1" as a huge interval.
        if (a == "--file-flush-interval-msec") {
          if (v->empty() || v->find_first_not_of("0123456789") != std::string::npos)
            return fail_usage(a + " needs a number");
          o.file_flush_ms = std::stoul(*v);
        }
      } catch (const std::exception&) {
        return fail_usage(a + " needs a number");
      }
    } else if (a == "--access-log" || a == "--access-log-format") {
      if (!(v = value())) return fail_usage(a + " needs a value");
      (a == "--access-log" ? o.access_log : o.access_log_format) = *v;
    } else {
      return fail_usage("unknown argument " + a);
    }
  }
  if (!o.demo && o.configs.empty()) return fail_usage("--config PATH or --demo is required");
  if ((o.check || o.explain) && o.configs.empty())
    return fail_usage("--check and --explain need --config");
  return std::nullopt;
}

// The options every translate() call shares.
sluice::istio::TranslateOptions translate_options(const Options& o,
                                                  const sluice::istio::MeshSettings& mesh) {
  sluice::istio::TranslateOptions t;
  t.bind_address = o.bind.value_or("0.0.0.0");
  t.ephemeral_ports = o.ephemeral;
  t.http2_extended_connect = o.http2_extended_connect;
  if (o.gateway_namespace) t.gateway_namespace = *o.gateway_namespace;
  if (o.gateway_class) t.gateway_class = *o.gateway_class;
  t.resolve_unknown_hosts = o.resolve_unknown_hosts;
  if (o.gateway_labels) t.gateway_labels = *o.gateway_labels;
  sluice::istio::apply_mesh(mesh, t);
  return t;
}

// --mesh-certs into `t` (read again on every load: a reload picks up rotated
// files); logs and returns false on error.
bool apply_mesh_certs(const Options& o, sluice::istio::TranslateOptions& t) {
  if (!o.mesh_certs) return true;
  auto certs = sluice::istio::load_mesh_certs(*o.mesh_certs);
  if (!certs) {
    fmt::print(stderr, "error: {}\n", certs.error().to_string());
    return false;
  }
  t.mesh_certs = std::move(certs).value();
  return true;
}

// --rate-limit-config and --redis into a translated configuration (read
// again on every load, so a reload picks up a changed file); logs errors.
// --otlp-endpoint and --trace-sampling, over what the mesh config said
// (compile() checks the values).
void apply_trace_options(const Options& o, sluice::GatewayConfig& config) {
  if (o.otlp_endpoint) config.telemetry.tracing.otlp_endpoint = *o.otlp_endpoint;
  if (o.trace_sampling) config.telemetry.tracing.sampling_percentage = *o.trace_sampling;
}

bool apply_rate_limit_options(const Options& o, sluice::istio::LoadedConfig& loaded) {
  sluice::RateLimitConfig& rl = loaded.config.rate_limits;
  if (o.rate_limit_config) {
    auto service = sluice::istio::load_rate_limit_config(*o.rate_limit_config);
    if (!service) {
      fmt::print(stderr, "error: {}\n", service.error().to_string());
      return false;
    }
    rl.service = std::move(service).value();
  }
  if (rl.global) rl.redis_address = o.redis;
  return true;
}

void print_warnings(const std::vector<std::string>& warnings) {
  for (const auto& w : warnings) fmt::print(stderr, "warning: {}\n", w);
}

// --access-log and --access-log-format over what the mesh config and
// Telemetry resources configured.
void apply_access_log_options(const Options& o, sluice::GatewayConfig& config) {
  auto& logs = config.telemetry.access_logs;
  if (o.access_log) {
    logs.clear();
    logs.emplace_back().path = *o.access_log;
  }
  if (o.file_flush_ms)
    config.telemetry.access_log_flush_interval = std::chrono::milliseconds(*o.file_flush_ms);
  if (!o.access_log_format) return;
  for (auto& log : logs) {
    log.format.clear();
    log.json_fields.clear();
    log.encoding = *o.access_log_format == "json" ? sluice::AccessLogConfig::Encoding::json
                                                  : sluice::AccessLogConfig::Encoding::text;
    if (*o.access_log_format != "json" && *o.access_log_format != "text")
      log.format = *o.access_log_format;
    log.source = "--access-log-format";
  }
}

// The --mesh-config settings (Istio's defaults without one); logs errors.
std::optional<sluice::istio::MeshSettings> load_mesh(const Options& o) {
  if (!o.mesh_config) return sluice::istio::MeshSettings{};
  auto mesh = sluice::istio::load_mesh_config(*o.mesh_config);
  if (!mesh) {
    fmt::print(stderr, "error: {}\n", mesh.error().to_string());
    return std::nullopt;
  }
  return *mesh;
}

// --- --explain ----------------------------------------------------------------------

int run_explain(const Options& o, const sluice::istio::LoadedConfig& loaded) {
  std::string spec = *o.explain;
  auto space = spec.find(' ');
  if (space == std::string::npos) {
    fmt::print(stderr, "sluice-ingress: --explain wants 'METHOD URL', got '{}'\n", spec);
    return 2;
  }
  sluice::RequestHead req;
  req.method = spec.substr(0, space);
  std::string url = spec.substr(space + 1);
  auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    fmt::print(stderr, "sluice-ingress: --explain wants an absolute URL, got '{}'\n", url);
    return 2;
  }
  req.scheme = url.substr(0, scheme_end);
  std::string rest = url.substr(scheme_end + 3);
  auto slash = rest.find('/');
  req.authority = rest.substr(0, slash);
  req.target = slash == std::string::npos ? "/" : rest.substr(slash);
  uint16_t port = req.scheme == "https" ? 443 : 80;
  if (auto colon = req.authority.rfind(':');
      colon != std::string::npos && req.authority.find(']', colon) == std::string::npos) {
    try {
      port = static_cast<uint16_t>(std::stoi(req.authority.substr(colon + 1)));
    } catch (const std::exception&) {
      fmt::print(stderr, "sluice-ingress: bad port in '{}'\n", url);
      return 2;
    }
  }
  req.listener_port = port;
  req.headers.add("host", req.authority);
  for (const auto& h : o.headers) {
    auto colon = h.find(':');
    if (colon == std::string::npos) {
      fmt::print(stderr, "sluice-ingress: -H wants 'name: value', got '{}'\n", h);
      return 2;
    }
    std::string value = h.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    req.headers.add(h.substr(0, colon), value);
  }
  // The gateway routes the normalised path (mesh pathNormalization); so does
  // the explanation.
  std::string received = req.target;
  if (auto why = sluice::http::normalize_target(req.target, loaded.config.path_normalization);
      !why.empty()) {
    fmt::print("request:  {} {}://{}{}\n", req.method, req.scheme, req.authority, received);
    fmt::print("path:     rejected: {}: the gateway answers 400\n", why);
    return 1;
  }
  fmt::print("request:  {} {}://{}{}\n", req.method, req.scheme, req.authority, req.target);
  if (received != req.target) fmt::print("path:     normalised from {}\n", received);
  const auto* listener = loaded.listener_for_port(port);
  if (!listener) {
    fmt::print("listener: no Gateway server listens on port {}: connection refused\n", port);
    return 1;
  }
  const sluice::RouterConfig* router_config = nullptr;
  for (const auto& r : loaded.config.routers)
    if (r.name == listener->name) router_config = &r;
  auto snapshot = sluice::compile(loaded.config);
  if (!snapshot) {
    fmt::print(stderr, "error: {}\n",
               sluice::istio::to_istio_error(loaded, snapshot.error()).to_string());
    return 1;
  }
  sluice::ExplainInput input;
  input.client_ip = o.client_ip;
  auto e = sluice::explain(**snapshot, listener->name, req, input);
  fmt::print("{}", sluice::istio::explain_text(loaded, *listener, *router_config, e));
  bool refused = e.security && e.security->status != 0;
  return e.route_index && !refused ? 0 : 1;
}

// --- demo ---------------------------------------------------------------------------

sluice::GatewayConfig demo_config(const Options& o, uint16_t v1_port, uint16_t v2_port) {
  sluice::GatewayConfig c;
  c.listeners.push_back(
      {"demo", o.bind.value_or("127.0.0.1"), uint16_t(o.ephemeral ? 0 : 8080), "demo"});
  sluice::RouterConfig r;
  r.name = "demo";
  sluice::VirtualHost vh;
  vh.name = "demo";
  vh.domains = {"*"};
  sluice::Route jason;
  jason.name = "jason";
  jason.matches.push_back(
      sluice::Matcher{}.header("end-user", sluice::StringMatch::exact("jason")));
  jason.destinations.push_back({"reviews", "v2", 100});
  sluice::Route everyone;
  everyone.name = "everyone";
  everyone.destinations.push_back({"reviews", "v1", 100});
  vh.routes = {jason, everyone};
  r.virtual_hosts.push_back(vh);
  c.routers.push_back(r);
  sluice::UpstreamConfig up;
  up.name = "reviews";
  up.endpoints.push_back({"127.0.0.1", v1_port, {{"version", "v1"}}, 1});
  up.endpoints.push_back({"127.0.0.1", v2_port, {{"version", "v2"}}, 1});
  up.subsets = {{"v1", {{"version", "v1"}}}, {"v2", {{"version", "v2"}}}};
  c.upstreams.push_back(up);
  return c;
}

// --- admin --------------------------------------------------------------------------

// The admin server and Istio's status ports, started beside the gateway.
// Prints `admin ADDR:PORT` / `status <port> ADDR:PORT` with --ephemeral-ports;
// false (after printing why) when one cannot start.
bool start_admin(const Options& o, const sluice::Gateway& gateway,
                 std::vector<std::unique_ptr<sluice::AdminServer>>& servers) {
  auto start = [&](sluice::AdminOptions options, const std::string& label) {
    auto server = std::make_unique<sluice::AdminServer>(gateway, options);
    if (auto st = server->start(); !st) {
      fmt::print(stderr, "error: {}\n", st.error().to_string());
      return false;
    }
    if (o.ephemeral) fmt::print("{} {}:{}\n", label, options.address, server->port());
    servers.push_back(std::move(server));
    return true;
  };
  if (o.admin) {
    auto hp = sluice::http::split_host_port(*o.admin);
    sluice::AdminOptions options;
    options.address = std::string(hp.host);
    if (options.address.size() > 1 && options.address.front() == '[')
      options.address = options.address.substr(1, options.address.size() - 2);
    unsigned long port = 0;
    try {
      port = std::stoul(std::string(hp.port));
    } catch (const std::exception&) {
      port = 65536;
    }
    if (port > 65535) {
      fmt::print(stderr, "sluice-ingress: --admin wants ADDR:PORT, got '{}'\n", *o.admin);
      return false;
    }
    options.port = o.ephemeral ? 0 : static_cast<uint16_t>(port);
    if (!start(options, "admin")) return false;
  }
  if (o.status_ports) {
    // Istio's pilot-agent ports: readiness for the kubelet, merged metrics
    // for Prometheus.
    for (auto [port, path] : {std::pair<uint16_t, const char*>{15021, "/healthz/ready"},
                              std::pair<uint16_t, const char*>{15090, "/stats/prometheus"}}) {
      sluice::AdminOptions options;
      options.address = o.bind.value_or(o.demo ? "127.0.0.1" : "0.0.0.0");
      options.port = o.ephemeral ? 0 : port;
      options.paths = {path};
      if (!start(options, fmt::format("status {}", port))) return false;
    }
  }
  std::fflush(stdout);
  return true;
}

// --- serving ------------------------------------------------------------------------

class Control {
 public:
  Control(const Options& o, sluice::Gateway& gateway) : o_(o), gateway_(gateway) {}

  // Loads, resolves and translates the --config paths. Logs and returns
  // nullopt on error.
  std::optional<sluice::istio::LoadedConfig> load() {
    auto mesh = load_mesh(o_);
    if (!mesh) return std::nullopt;
    auto parsed = sluice::istio::parse_files(o_.configs);
    if (!parsed) {
      fmt::print(stderr, "error: {}\n", parsed.error().to_string());
      return std::nullopt;
    }
    dns_names_ = sluice::istio::dns_names(*parsed, translate_options(o_, *mesh));
    files_ = sluice::istio::referenced_files(*parsed);
    for (const char* f : {"cert-chain.pem", "key.pem", "root-cert.pem"})
      if (o_.mesh_certs) files_.push_back(*o_.mesh_certs + "/" + f);
    dns_ = sluice::resolve_hostnames(dns_names_);
    parsed_ = *parsed;
    mesh_ = *mesh;
    return translate();
  }

  std::optional<sluice::istio::LoadedConfig> translate() {
    sluice::istio::TranslateOptions t = translate_options(o_, mesh_);
    if (!apply_mesh_certs(o_, t)) return std::nullopt;
    auto loaded = sluice::istio::translate(*parsed_, t, dns_);
    if (!loaded) {
      fmt::print(stderr, "error: {}\n", loaded.error().to_string());
      return std::nullopt;
    }
    print_warnings(loaded->warnings);
    sluice::istio::apply_mesh(mesh_, loaded->config);
    apply_access_log_options(o_, loaded->config);
    if (!apply_rate_limit_options(o_, *loaded)) return std::nullopt;
    apply_trace_options(o_, loaded->config);
    return std::move(loaded).value();
  }

  bool apply(const sluice::istio::LoadedConfig& loaded) {
    auto listeners = loaded.listeners;
    auto configs = loaded.config.listeners;
    // A copy: on error, `loaded` restates the error in Istio's names.
    auto status = gateway_.apply(loaded.config);
    if (!status) {
      fmt::print(stderr, "error: {}\n",
                 sluice::istio::to_istio_error(loaded, status.error()).to_string());
      return false;
    }
    announce(listeners, configs);
    replace_dns_source(loaded.dns);
    return true;
  }

  // The applied configuration's DNS upstreams re-resolved every
  // --dns-refresh seconds, starting from the answers the load used.
  void replace_dns_source(const std::vector<sluice::DnsUpstream>& upstreams) {
    if (dns_source_) gateway_.remove_endpoint_source(dns_source_);
    dns_source_.reset();
    if (upstreams.empty() || o_.dns_refresh_seconds <= 0) return;
    sluice::DnsSourceOptions options;
    options.refresh_interval = std::chrono::seconds(o_.dns_refresh_seconds);
    options.known = dns_;
    options.on_error = [](const sluice::Error& e) {
      fmt::print(stderr, "warning: DNS: {}\n", e.to_string());
    };
    dns_source_ = std::make_shared<sluice::DnsEndpointSource>(upstreams, std::move(options));
    if (auto st = gateway_.add_endpoint_source(dns_source_); !st)
      fmt::print(stderr, "warning: DNS refresh not started: {}\n", st.error().to_string());
  }

  void announce(const std::vector<sluice::istio::ListenerInfo>& info,
                const std::vector<sluice::ListenerConfig>& configs) {
    for (size_t i = 0; i < configs.size(); ++i)
      fmt::print("listening {} {}:{}\n", i < info.size() ? info[i].port : configs[i].port,
                 configs[i].address, gateway_.port(configs[i].name));
    std::fflush(stdout);
  }

  void reload(const char* why) {
    fmt::print(stderr, "reloading ({})\n", why);
    auto loaded = load();
    // YAML the loader refused never reaches apply(); the gateway counts it.
    if (!loaded) gateway_.count_rejected_config();
    bool ok = loaded && apply(std::move(*loaded));
    if (ok)
      fmt::print("reloaded\n");
    else
      fmt::print("reload rejected; the previous configuration keeps serving\n");
    std::fflush(stdout);
  }

  // Certificate and key files the configuration read (to watch for changes).
  const std::vector<std::string>& files() const { return files_; }

 private:
  const Options& o_;
  sluice::Gateway& gateway_;
  std::optional<sluice::istio::Parsed> parsed_;
  std::vector<std::string> dns_names_;
  std::vector<std::string> files_;
  sluice::istio::DnsTable dns_;
  sluice::istio::MeshSettings mesh_;
  std::shared_ptr<sluice::DnsEndpointSource> dns_source_;
};

// Watches --config directories (and the directories of --config files) with
// inotify, Kubernetes' ConfigMap and Secret volumes included; `on_change`
// runs ~200 ms after the last relevant event.
class Watcher {
 public:
  Watcher(asio::io_context& io, const std::vector<std::string>& paths,
          std::function<void()> on_change)
      : descriptor_(io), debounce_(io), on_change_(std::move(on_change)) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) return;
    descriptor_.assign(fd);
    for (const auto& p : paths) add(p);
    read();
  }

  // Also watch these files (certificates the configuration reads); a file
  // already covered is skipped. Watches are never removed: a stale one only
  // costs a spurious, harmless reload.
  void add_files(const std::vector<std::string>& files) {
    for (const auto& f : files) add(f);
  }

 private:
  void add(const std::string& p) {
    namespace fs = std::filesystem;
    if (!descriptor_.is_open()) return;
    std::error_code ec;
    bool dir = fs::is_directory(p, ec);
    std::string watched = dir ? p : fs::path(p).parent_path().string();
    if (watched.empty()) watched = ".";
    // The same directory gives the same watch descriptor: the files share it.
    int wd =
        inotify_add_watch(descriptor_.native_handle(), watched.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE);
    if (wd < 0) return;
    std::string only = dir ? std::string() : fs::path(p).filename().string();
    for (const auto& w : watches_)
      if (w.wd == wd && w.only == only) return;
    watches_.push_back({wd, only});
  }

  struct Watch {
    int wd;
    std::string only;  // a file: only events for this name count
  };

  // Several watches can share a descriptor (a --config file and a certificate
  // in one directory): any of them counts.
  bool relevant(const inotify_event* ev) const {
    std::string name = ev->len ? ev->name : "";
    for (const auto& w : watches_) {
      if (w.wd != ev->wd) continue;
      // A mounted ConfigMap or Secret changed: Kubernetes swaps every file
      // at once by renaming a new `..data` link into place.
      if (name == "..data") return true;
      if (!w.only.empty() ? name == w.only : name.ends_with(".yaml") || name.ends_with(".yml"))
        return true;
    }
    return false;
  }

  void read() {
    descriptor_.async_read_some(asio::buffer(buffer_), [this](asio::error_code ec, size_t n) {
      if (ec) return;
      bool hit = false;
      for (size_t off = 0; off + sizeof(inotify_event) <= n;) {
        auto* ev = reinterpret_cast<const inotify_event*>(buffer_ + off);
        hit = hit || relevant(ev);
        off += sizeof(inotify_event) + ev->len;
      }
      if (hit) {
        // Editors and `cp` produce bursts of events: act once they stop.
        debounce_.expires_after(std::chrono::milliseconds(200));
        debounce_.async_wait([this](asio::error_code e) {
          if (!e) on_change_();
        });
      }
      read();
    });
  }

  asio::posix::stream_descriptor descriptor_;
  asio::steady_timer debounce_;
  std::function<void()> on_change_;
  std::vector<Watch> watches_;
  alignas(inotify_event) char buffer_[8192];
};

int serve(const Options& o) {
  // Signal handling is in place before anything can announce readiness.
  asio::io_context io;
  asio::signal_set signals(io, SIGHUP, SIGTERM, SIGINT);
  signals.add(SIGUSR1);
  sluice::GatewayOptions gopts;
  gopts.workers = o.workers;
  // The library writes nothing itself; this program wants its messages.
  gopts.logger = std::make_shared<sluice::StderrLogger>();
  gopts.jwks.resolve = o.jwks_resolve;
  if (o.jwks_ca) {
    std::ifstream in(*o.jwks_ca, std::ios::binary);
    std::stringstream pem;
    pem << in.rdbuf();
    if (!in || pem.str().empty()) {
      fmt::print(stderr, "sluice-ingress: --jwks-ca: cannot read {}\n", *o.jwks_ca);
      return 2;
    }
    gopts.jwks.ca_certificates = pem.str();
  }
  sluice::Gateway gateway(gopts);
  Control control(o, gateway);

  std::optional<sluice::demo::DemoUpstreams> demo;
  if (o.demo) {
    auto mesh = load_mesh(o);
    if (!mesh) return 1;
    demo.emplace();
    auto config = demo_config(o, demo->port(0), demo->port(1));
    sluice::istio::apply_mesh(*mesh, config);
    if (mesh->telemetry.access_log) config.telemetry.access_logs = {*mesh->telemetry.access_log};
    apply_access_log_options(o, config);
    apply_trace_options(o, config);
    auto listeners = config.listeners;
    auto status = gateway.apply(std::move(config));
    if (!status) {
      fmt::print(stderr, "error: {}\n", status.error().to_string());
      return 1;
    }
    gateway.start();
    sluice::istio::ListenerInfo info;
    info.port = 8080;  // the demo's nominal port, even with --ephemeral-ports
    control.announce({info}, listeners);
    fmt::print(stderr, "demo: reviews-v1 on 127.0.0.1:{}, reviews-v2 on 127.0.0.1:{}\n",
               demo->port(0), demo->port(1));
    fmt::print(stderr, "try: curl -H 'end-user: jason' http://{}:{}/\n",
               o.bind.value_or("127.0.0.1"), gateway.port("demo"));
  } else {
    auto loaded = control.load();
    if (!loaded) return 1;
    if (!control.apply(std::move(*loaded))) return 1;
    gateway.start();
  }

  std::vector<std::unique_ptr<sluice::AdminServer>> admin;
  if (!start_admin(o, gateway, admin)) {
    gateway.stop();
    return 1;
  }

  std::optional<Watcher> watcher;
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](asio::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGUSR1) {
        gateway.reopen_access_logs();
        wait_signal();
        return;
      }
      if (sig == SIGHUP) {
        if (!o.demo) control.reload("SIGHUP");
        if (watcher) watcher->add_files(control.files());
        wait_signal();
        return;
      }
      fmt::print(stderr, "draining ({})\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
      io.stop();
    });
  };
  wait_signal();
  if (!o.demo && o.watch) {
    watcher.emplace(io, o.configs, [&] {
      control.reload("file change");
      watcher->add_files(control.files());
    });
    watcher->add_files(control.files());
    if (o.mesh_config) watcher->add_files({*o.mesh_config});
    if (o.rate_limit_config) watcher->add_files({*o.rate_limit_config});
  }
  // Only now: a file changed after "ready" must be seen by the watcher.
  fmt::print("ready\n");
  std::fflush(stdout);
  io.run();
  gateway.stop();
  for (auto& server : admin) server->stop();
  fmt::print("stopped\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Writes to a client that went away must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  Options o;
  if (auto rc = parse_args(argc, argv, o)) return *rc;

  if (o.check || o.explain) {
    auto mesh = load_mesh(o);
    if (!mesh) return 1;
    sluice::istio::TranslateOptions t = translate_options(o, *mesh);
    t.ephemeral_ports = false;  // nothing is bound
    if (!apply_mesh_certs(o, t)) return 1;
    auto loaded = sluice::istio::load_files(o.configs, t);
    if (!loaded) {
      fmt::print(stderr, "error: {}\n", loaded.error().to_string());
      return 1;
    }
    print_warnings(loaded->warnings);
    sluice::istio::apply_mesh(*mesh, loaded->config);
    apply_access_log_options(o, loaded->config);
    if (!apply_rate_limit_options(o, *loaded)) return 1;
    apply_trace_options(o, loaded->config);
    // The library's own validation too: what apply() would say.
    auto compiled = sluice::compile(loaded->config);
    if (!compiled) {
      fmt::print(stderr, "error: {}\n",
                 sluice::istio::to_istio_error(*loaded, compiled.error()).to_string());
      return 1;
    }
    if (o.explain) return run_explain(o, *loaded);
    fmt::print("{}configuration OK\n", sluice::istio::summary(*loaded));
    return 0;
  }
  return serve(o);
}
