// The Python mirror of GatewayConfig, read field by field. Durations are
// seconds (floats) in Python; chrono::seconds fields take whole seconds.

#include "config.hpp"

#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace sluice::python {
namespace {

std::chrono::milliseconds millis(py::handle o, const char* name) {
  return std::chrono::milliseconds(std::llround(attr<double>(o, name) * 1000.0));
}

std::chrono::seconds seconds(py::handle o, const char* name) {
  return std::chrono::seconds(std::llround(attr<double>(o, name)));
}

template <typename T, typename F>
std::optional<T> optional_of(py::handle o, const char* name, F convert) {
  py::object v = o.attr(name);
  if (v.is_none()) return std::nullopt;
  return convert(v);
}

template <typename T, typename F>
std::vector<T> list_of(py::handle o, const char* name, F convert) {
  std::vector<T> out;
  for (py::handle item : o.attr(name)) out.push_back(convert(item));
  return out;
}

using Strings = std::vector<std::string>;
using Pairs = std::vector<std::pair<std::string, std::string>>;

Strings strings(py::handle o, const char* name) {
  return attr<Strings>(o, name);
}

// `field` names the Python attribute in the error: "Upstream.load_balancer".
template <typename E>
E enum_of(py::handle o, const char* type, const char* name,
          std::initializer_list<std::pair<const char*, E>> names) {
  auto value = attr<std::string>(o, name);
  for (const auto& [n, e] : names)
    if (value == n) return e;
  std::string known;
  for (const auto& [n, e] : names) known += std::string(known.empty() ? "" : ", ") + n;
  throw py::value_error(std::string(type) + "." + name + ": unknown value \"" + value +
                        "\" (one of " + known + ")");
}

// ---- routes ----

StringMatch string_match(py::handle o) {
  using K = StringMatch::Kind;
  return {enum_of<K>(o, "StringMatch", "kind",
                     {{"exact", K::exact},
                      {"prefix", K::prefix},
                      {"suffix", K::suffix},
                      {"regex", K::regex},
                      {"present", K::present}}),
          attr<std::string>(o, "value")};
}

HeaderMatch header_match(py::handle h) {
  return HeaderMatch{attr<std::string>(h, "name"), string_match(h.attr("match")),
                     attr<bool>(h, "invert")};
}

Matcher matcher(py::handle o) {
  Matcher m;
  m.uri = optional_of<StringMatch>(o, "uri", string_match);
  m.ignore_uri_case = attr<bool>(o, "ignore_uri_case");
  m.method = optional_of<StringMatch>(o, "method", string_match);
  m.authority = optional_of<StringMatch>(o, "authority", string_match);
  m.scheme = optional_of<StringMatch>(o, "scheme", string_match);
  m.headers = list_of<HeaderMatch>(o, "headers", header_match);
  m.query_params = list_of<QueryParamMatch>(o, "query_params", [](py::handle q) {
    return QueryParamMatch{attr<std::string>(q, "name"), string_match(q.attr("match"))};
  });
  m.port = optional_of<uint16_t>(o, "port", [](py::handle p) { return p.cast<uint16_t>(); });
  return m;
}

HeaderOperations header_ops(py::handle o) {
  HeaderOperations h;
  for (auto [k, v] : o.attr("set").cast<py::dict>())
    h.set.emplace_back(k.cast<std::string>(), v.cast<std::string>());
  h.add = attr<Pairs>(o, "add");
  h.remove = strings(o, "remove");
  return h;
}

CorsPolicy cors(py::handle o) {
  CorsPolicy c;
  c.allow_origins = list_of<StringMatch>(o, "allow_origins", string_match);
  c.allow_methods = strings(o, "allow_methods");
  c.allow_headers = strings(o, "allow_headers");
  c.expose_headers = strings(o, "expose_headers");
  c.max_age = optional_of<std::chrono::seconds>(
      o, "max_age", [](py::handle v) { return std::chrono::seconds(v.cast<int64_t>()); });
  c.allow_credentials =
      optional_of<bool>(o, "allow_credentials", [](py::handle v) { return v.cast<bool>(); });
  c.forward_unmatched_preflights = attr<bool>(o, "forward_unmatched_preflights");
  return c;
}

Fault fault(py::handle f) {
  Fault out;
  out.delay = optional_of<FaultDelay>(f, "delay", [](py::handle d) {
    return FaultDelay{millis(d, "fixed_delay"), attr<double>(d, "percentage")};
  });
  out.abort = optional_of<FaultAbort>(f, "abort", [](py::handle a) {
    FaultAbort ab;
    ab.http_status = attr<uint16_t>(a, "http_status");
    ab.grpc_status = attr<std::optional<uint32_t>>(a, "grpc_status");
    ab.percentage = attr<double>(a, "percentage");
    return ab;
  });
  return out;
}

Route route(py::handle o) {
  Route r;
  r.name = attr<std::string>(o, "name");
  r.origin = attr<std::string>(o, "origin");
  r.matches = list_of<Matcher>(o, "matches", matcher);
  r.destinations = list_of<Destination>(o, "destinations", [](py::handle d) {
    return Destination{attr<std::string>(d, "upstream"), attr<std::string>(d, "subset"),
                       attr<uint32_t>(d, "weight"), header_ops(d.attr("request_headers")),
                       header_ops(d.attr("response_headers"))};
  });
  r.redirect = optional_of<Redirect>(o, "redirect", [](py::handle x) {
    using D = Redirect::DerivePort;
    Redirect rd;
    rd.uri = attr<std::string>(x, "uri");
    rd.authority = attr<std::string>(x, "authority");
    rd.scheme = attr<std::string>(x, "scheme");
    rd.port = attr<uint16_t>(x, "port");
    rd.derive_port = enum_of<D>(x, "Redirect", "derive_port",
                                {{"none", D::none},
                                 {"from_protocol_default", D::from_protocol_default},
                                 {"from_request_port", D::from_request_port}});
    rd.code = attr<uint16_t>(x, "code");
    return rd;
  });
  r.direct_response = optional_of<DirectResponse>(o, "direct_response", [](py::handle x) {
    return DirectResponse{attr<uint16_t>(x, "status"), attr<std::string>(x, "body")};
  });
  r.rewrite = optional_of<Rewrite>(o, "rewrite", [](py::handle x) {
    Rewrite rw;
    rw.uri = attr<std::optional<std::string>>(x, "uri");
    rw.uri_regex = attr<std::optional<std::pair<std::string, std::string>>>(x, "uri_regex");
    rw.authority = attr<std::string>(x, "authority");
    return rw;
  });
  r.request_headers = header_ops(o.attr("request_headers"));
  r.response_headers = header_ops(o.attr("response_headers"));
  r.timeout = millis(o, "timeout");
  py::object retries = o.attr("retries");
  r.retries.attempts = attr<uint32_t>(retries, "attempts");
  r.retries.per_try_timeout = millis(retries, "per_try_timeout");
  r.retries.retry_on = attr<std::string>(retries, "retry_on");
  r.retries.retry_ignore_previous_hosts = attr<bool>(retries, "retry_ignore_previous_hosts");
  r.retries.backoff_base = millis(retries, "backoff_base");
  r.retries.max_replay_bytes = attr<size_t>(retries, "max_replay_bytes");
  r.fault = optional_of<Fault>(o, "fault", fault);
  r.mirrors = list_of<Mirror>(o, "mirrors", [](py::handle m) {
    return Mirror{attr<std::string>(m, "upstream"), attr<std::string>(m, "subset"),
                  attr<double>(m, "percentage")};
  });
  r.cors = optional_of<CorsPolicy>(o, "cors", cors);
  return r;
}

RouterConfig router(py::handle r) {
  RouterConfig rc;
  rc.name = attr<std::string>(r, "name");
  rc.virtual_hosts = list_of<VirtualHost>(r, "virtual_hosts", [](py::handle v) {
    VirtualHost vh;
    vh.name = attr<std::string>(v, "name");
    vh.domains = strings(v, "domains");
    vh.routes = list_of<Route>(v, "routes", route);
    vh.https_redirect = attr<bool>(v, "https_redirect");
    return vh;
  });
  return rc;
}

// ---- upstreams ----

ConsistentHash consistent_hash(py::handle h) {
  using S = ConsistentHash::Source;
  using A = ConsistentHash::Algorithm;
  ConsistentHash ch;
  ch.source = enum_of<S>(h, "ConsistentHash", "source",
                         {{"header", S::header},
                          {"cookie", S::cookie},
                          {"source_ip", S::source_ip},
                          {"query_parameter", S::query_parameter}});
  ch.name = attr<std::string>(h, "name");
  ch.cookie_ttl = seconds(h, "cookie_ttl");
  ch.cookie_path = attr<std::string>(h, "cookie_path");
  ch.algorithm = enum_of<A>(h, "ConsistentHash", "algorithm",
                            {{"ring_hash", A::ring_hash}, {"maglev", A::maglev}});
  ch.minimum_ring_size = attr<uint64_t>(h, "minimum_ring_size");
  ch.maglev_table_size = attr<uint64_t>(h, "maglev_table_size");
  return ch;
}

ConnectionPoolSettings pool(py::handle p) {
  ConnectionPoolSettings s;
  s.connect_timeout = millis(p, "connect_timeout");
  s.idle_timeout = millis(p, "idle_timeout");
  s.max_requests_per_connection = attr<uint32_t>(p, "max_requests_per_connection");
  s.max_idle_per_endpoint = attr<uint32_t>(p, "max_idle_per_endpoint");
  s.max_connections = attr<uint32_t>(p, "max_connections");
  s.max_pending_requests = attr<uint32_t>(p, "max_pending_requests");
  s.max_retries = attr<uint32_t>(p, "max_retries");
  s.tcp_keepalive = optional_of<TcpKeepalive>(p, "tcp_keepalive", [](py::handle k) {
    return TcpKeepalive{attr<uint32_t>(k, "probes"), seconds(k, "time"), seconds(k, "interval")};
  });
  return s;
}

UpstreamTls upstream_tls(py::handle t) {
  using M = UpstreamTls::Mode;
  UpstreamTls u;
  u.mode = enum_of<M>(t, "UpstreamTls", "mode", {{"simple", M::simple}, {"mutual", M::mutual}});
  u.sni = attr<std::string>(t, "sni");
  u.ca_certificates = attr<std::string>(t, "ca_certificates");
  u.client_certificate = attr<std::string>(t, "client_certificate");
  u.private_key = attr<std::string>(t, "private_key");
  u.subject_alt_names = strings(t, "subject_alt_names");
  u.insecure_skip_verify = attr<bool>(t, "insecure_skip_verify");
  return u;
}

UpstreamConfig upstream(py::handle o) {
  UpstreamConfig u;
  u.name = attr<std::string>(o, "name");
  py::object service = o.attr("service");
  u.service =
      ServiceIdentity{attr<std::string>(service, "host"), attr<std::string>(service, "name"),
                      attr<std::string>(service, "namespace")};
  u.endpoints = list_of<Endpoint>(o, "endpoints", [](py::handle e) {
    return Endpoint{attr<std::string>(e, "address"), attr<uint16_t>(e, "port"),
                    attr<Labels>(e, "labels"), attr<uint32_t>(e, "weight")};
  });
  u.subsets = list_of<Subset>(o, "subsets", [](py::handle s) {
    return Subset{attr<std::string>(s, "name"), attr<Labels>(s, "labels")};
  });
  using LB = LoadBalancer;
  u.load_balancer = enum_of<LB>(o, "Upstream", "load_balancer",
                                {{"round_robin", LB::round_robin},
                                 {"least_request", LB::least_request},
                                 {"random", LB::random},
                                 {"passthrough", LB::passthrough},
                                 {"consistent_hash", LB::consistent_hash}});
  u.consistent_hash = optional_of<ConsistentHash>(o, "consistent_hash", consistent_hash);
  u.warmup = seconds(o, "warmup");
  u.pool = pool(o.attr("pool"));
  u.outlier_detection = optional_of<OutlierDetection>(o, "outlier_detection", [](py::handle d) {
    OutlierDetection od;
    od.consecutive_5xx = attr<uint32_t>(d, "consecutive_5xx");
    od.consecutive_gateway_errors = attr<uint32_t>(d, "consecutive_gateway_errors");
    od.interval = millis(d, "interval");
    od.base_ejection_time = millis(d, "base_ejection_time");
    od.max_ejection_percent = attr<uint32_t>(d, "max_ejection_percent");
    od.min_health_percent = attr<uint32_t>(d, "min_health_percent");
    return od;
  });
  u.health_check = optional_of<HealthCheck>(o, "health_check", [](py::handle h) {
    HealthCheck hc;
    hc.path = attr<std::string>(h, "path");
    hc.host = attr<std::string>(h, "host");
    hc.interval = millis(h, "interval");
    hc.timeout = millis(h, "timeout");
    hc.healthy_threshold = attr<uint32_t>(h, "healthy_threshold");
    hc.unhealthy_threshold = attr<uint32_t>(h, "unhealthy_threshold");
    return hc;
  });
  u.tls = optional_of<UpstreamTls>(o, "tls", upstream_tls);
  return u;
}

// ---- listeners ----

TlsServer tls_server(py::handle t) {
  using M = TlsServer::Mode;
  using V = TlsServer::Version;
  std::initializer_list<std::pair<const char*, V>> versions = {{"tls_auto", V::tls_auto},
                                                               {"tls1_0", V::tls1_0},
                                                               {"tls1_1", V::tls1_1},
                                                               {"tls1_2", V::tls1_2},
                                                               {"tls1_3", V::tls1_3}};
  TlsServer s;
  s.sni_hosts = strings(t, "sni_hosts");
  s.mode = enum_of<M>(
      t, "TlsServer", "mode",
      {{"simple", M::simple}, {"mutual", M::mutual}, {"optional_mutual", M::optional_mutual}});
  s.certificate_chain = attr<std::string>(t, "certificate_chain");
  s.private_key = attr<std::string>(t, "private_key");
  s.ca_certificates = attr<std::string>(t, "ca_certificates");
  s.subject_alt_names = strings(t, "subject_alt_names");
  s.verify_certificate_spki = strings(t, "verify_certificate_spki");
  s.verify_certificate_hash = strings(t, "verify_certificate_hash");
  s.min_version = enum_of<V>(t, "TlsServer", "min_version", versions);
  s.max_version = enum_of<V>(t, "TlsServer", "max_version", versions);
  s.cipher_suites = strings(t, "cipher_suites");
  return s;
}

ListenerConfig listener(py::handle l) {
  ListenerConfig lc;
  lc.name = attr<std::string>(l, "name");
  lc.router = attr<std::string>(l, "router");
  lc.port = attr<uint16_t>(l, "port");
  lc.address = attr<std::optional<std::string>>(l, "address").value_or("");
  lc.tls_servers = list_of<TlsServer>(l, "tls_servers", tls_server);
  lc.passthrough = list_of<TlsPassthroughRoute>(l, "passthrough", [](py::handle p) {
    return TlsPassthroughRoute{strings(p, "sni_hosts"), attr<std::string>(p, "upstream"),
                               attr<std::string>(p, "subset")};
  });
  lc.tls_handshake_timeout = millis(l, "tls_handshake_timeout");
  return lc;
}

Limits limits(py::handle o) {
  Limits l;
  l.max_request_header_bytes = attr<size_t>(o, "max_request_header_bytes");
  l.max_request_headers = attr<size_t>(o, "max_request_headers");
  l.max_response_header_bytes = attr<size_t>(o, "max_response_header_bytes");
  l.max_response_headers = attr<size_t>(o, "max_response_headers");
  l.max_connections = attr<size_t>(o, "max_connections");
  l.max_connections_per_client = attr<size_t>(o, "max_connections_per_client");
  l.request_header_timeout = millis(o, "request_header_timeout");
  l.idle_timeout = millis(o, "idle_timeout");
  l.stream_idle_timeout = millis(o, "stream_idle_timeout");
  l.request_timeout = millis(o, "request_timeout");
  l.max_stream_duration = millis(o, "max_stream_duration");
  l.upstream_response_timeout = millis(o, "upstream_response_timeout");
  l.drain_timeout = millis(o, "drain_timeout");
  return l;
}

// ---- security ----

JwtProvider jwt_provider(py::handle o) {
  JwtProvider p;
  p.issuer = attr<std::string>(o, "issuer");
  p.audiences = strings(o, "audiences");
  p.jwks = attr<std::string>(o, "jwks");
  p.jwks_uri = attr<std::string>(o, "jwks_uri");
  p.timeout = millis(o, "timeout");
  p.from_headers = list_of<JwtHeaderLocation>(o, "from_headers", [](py::handle h) {
    return JwtHeaderLocation{attr<std::string>(h, "name"), attr<std::string>(h, "prefix")};
  });
  p.from_params = strings(o, "from_params");
  p.from_cookies = strings(o, "from_cookies");
  p.forward_original_token = attr<bool>(o, "forward_original_token");
  p.output_payload_to_header = attr<std::string>(o, "output_payload_to_header");
  p.output_claim_to_headers =
      list_of<JwtClaimToHeader>(o, "output_claim_to_headers", [](py::handle c) {
        return JwtClaimToHeader{attr<std::string>(c, "header"), attr<std::string>(c, "claim")};
      });
  p.space_delimited_claims = strings(o, "space_delimited_claims");
  p.source = attr<std::string>(o, "source");
  return p;
}

AuthzRule authz_rule(py::handle o) {
  AuthzRule r;
  r.from = list_of<AuthzSource>(o, "from_", [](py::handle s) {
    AuthzSource a;
    a.principals = strings(s, "principals");
    a.not_principals = strings(s, "not_principals");
    a.request_principals = strings(s, "request_principals");
    a.not_request_principals = strings(s, "not_request_principals");
    a.namespaces = strings(s, "namespaces");
    a.not_namespaces = strings(s, "not_namespaces");
    a.ip_blocks = strings(s, "ip_blocks");
    a.not_ip_blocks = strings(s, "not_ip_blocks");
    a.remote_ip_blocks = strings(s, "remote_ip_blocks");
    a.not_remote_ip_blocks = strings(s, "not_remote_ip_blocks");
    return a;
  });
  r.to = list_of<AuthzOperation>(o, "to", [](py::handle t) {
    AuthzOperation op;
    op.hosts = strings(t, "hosts");
    op.not_hosts = strings(t, "not_hosts");
    op.ports = strings(t, "ports");
    op.not_ports = strings(t, "not_ports");
    op.methods = strings(t, "methods");
    op.not_methods = strings(t, "not_methods");
    op.paths = strings(t, "paths");
    op.not_paths = strings(t, "not_paths");
    return op;
  });
  r.when = list_of<AuthzCondition>(o, "when", [](py::handle c) {
    return AuthzCondition{attr<std::string>(c, "key"), strings(c, "values"),
                          strings(c, "not_values")};
  });
  return r;
}

ExtAuthzHttpProvider ext_authz(py::handle o) {
  ExtAuthzHttpProvider p;
  p.name = attr<std::string>(o, "name");
  p.service = attr<std::string>(o, "service");
  p.port = attr<uint16_t>(o, "port");
  p.path_prefix = attr<std::string>(o, "path_prefix");
  p.timeout = millis(o, "timeout");
  p.fail_open = attr<bool>(o, "fail_open");
  p.status_on_error = attr<uint16_t>(o, "status_on_error");
  p.include_request_headers_in_check = strings(o, "include_request_headers_in_check");
  p.include_additional_headers_in_check = attr<Pairs>(o, "include_additional_headers_in_check");
  p.headers_to_upstream_on_allow = strings(o, "headers_to_upstream_on_allow");
  p.headers_to_downstream_on_allow = strings(o, "headers_to_downstream_on_allow");
  p.headers_to_downstream_on_deny = strings(o, "headers_to_downstream_on_deny");
  p.include_request_body_in_check =
      optional_of<ExtAuthzRequestBody>(o, "include_request_body_in_check", [](py::handle b) {
        return ExtAuthzRequestBody{attr<uint32_t>(b, "max_request_bytes"),
                                   attr<bool>(b, "allow_partial_message"),
                                   attr<bool>(b, "pack_as_bytes")};
      });
  return p;
}

SecurityConfig security(py::handle o) {
  SecurityConfig s;
  s.jwt_providers = list_of<JwtProvider>(o, "jwt_providers", jwt_provider);
  s.authorization = list_of<AuthorizationPolicy>(o, "authorization", [](py::handle p) {
    using A = AuthzAction;
    AuthorizationPolicy ap;
    ap.name = attr<std::string>(p, "name");
    ap.ns = attr<std::string>(p, "namespace");
    ap.action = enum_of<A>(
        p, "AuthorizationPolicy", "action",
        {{"allow", A::allow}, {"deny", A::deny}, {"audit", A::audit}, {"custom", A::custom}});
    ap.provider = attr<std::string>(p, "provider");
    ap.rules = list_of<AuthzRule>(p, "rules", authz_rule);
    return ap;
  });
  s.ext_authz_providers = list_of<ExtAuthzHttpProvider>(o, "ext_authz_providers", ext_authz);
  s.root_namespace = attr<std::string>(o, "root_namespace");
  s.num_trusted_proxies = attr<uint32_t>(o, "num_trusted_proxies");
  return s;
}

// ---- rate limits ----

FractionalPercent fraction(py::handle o) {
  using D = FractionalPercent::Denominator;
  return {attr<uint32_t>(o, "numerator"), enum_of<D>(o, "FractionalPercent", "denominator",
                                                     {{"hundred", D::hundred},
                                                      {"ten_thousand", D::ten_thousand},
                                                      {"million", D::million}})};
}

TokenBucket token_bucket(py::handle o) {
  return {attr<uint32_t>(o, "max_tokens"), attr<uint32_t>(o, "tokens_per_fill"),
          millis(o, "fill_interval")};
}

HeaderValueOption header_value_option(py::handle o) {
  using A = HeaderValueOption::Action;
  HeaderValueOption h;
  h.name = attr<std::string>(o, "name");
  h.value = attr<std::string>(o, "value");
  h.action = enum_of<A>(o, "HeaderValueOption", "action",
                        {{"append_if_exists_or_add", A::append_if_exists_or_add},
                         {"add_if_absent", A::add_if_absent},
                         {"overwrite_if_exists_or_add", A::overwrite_if_exists_or_add},
                         {"overwrite_if_exists", A::overwrite_if_exists}});
  h.keep_empty_value = attr<bool>(o, "keep_empty_value");
  return h;
}

VhRateLimits vh_rate_limits(py::handle o, const char* type) {
  using V = VhRateLimits;
  return enum_of<V>(
      o, type, "vh_rate_limits",
      {{"override_route", V::override_route}, {"include", V::include}, {"ignore", V::ignore}});
}

// The Python action classes stand for the variant's alternatives; the
// class name picks one.
RateLimitAction rate_limit_action(py::handle o) {
  using A = RateLimitAction;
  auto kind = py::type::of(o).attr("__name__").cast<std::string>();
  if (kind == "RequestHeadersAction")
    return {A::RequestHeaders{attr<std::string>(o, "header_name"),
                              attr<std::string>(o, "descriptor_key"),
                              attr<bool>(o, "skip_if_absent")}};
  if (kind == "RemoteAddressAction") return {A::RemoteAddress{}};
  if (kind == "GenericKeyAction")
    return {A::GenericKey{attr<std::string>(o, "descriptor_value"),
                          attr<std::string>(o, "descriptor_key")}};
  if (kind == "HeaderValueMatchAction")
    return {A::HeaderValueMatch{
        attr<std::string>(o, "descriptor_value"), attr<std::string>(o, "descriptor_key"),
        attr<bool>(o, "expect_match"), list_of<HeaderMatch>(o, "headers", header_match)}};
  if (kind == "DestinationClusterAction") return {A::DestinationCluster{}};
  throw py::type_error("RateLimitRule.actions: " + kind +
                       " is not a rate-limit action (RequestHeadersAction, RemoteAddressAction, "
                       "GenericKeyAction, HeaderValueMatchAction, DestinationClusterAction)");
}

RateLimitRule rate_limit_rule(py::handle o) {
  return {list_of<RateLimitAction>(o, "actions", rate_limit_action), attr<uint32_t>(o, "stage")};
}

LocalRateLimit local_rate_limit(py::handle o) {
  LocalRateLimit l;
  l.stat_prefix = attr<std::string>(o, "stat_prefix");
  l.status = attr<uint16_t>(o, "status");
  l.token_bucket = optional_of<TokenBucket>(o, "token_bucket", token_bucket);
  l.filter_enabled = fraction(o.attr("filter_enabled"));
  l.filter_enforced = fraction(o.attr("filter_enforced"));
  l.response_headers_to_add =
      list_of<HeaderValueOption>(o, "response_headers_to_add", header_value_option);
  l.request_headers_to_add_when_not_enforced = list_of<HeaderValueOption>(
      o, "request_headers_to_add_when_not_enforced", header_value_option);
  l.descriptors = list_of<LocalRateLimitDescriptor>(o, "descriptors", [](py::handle d) {
    return LocalRateLimitDescriptor{
        list_of<DescriptorEntry>(
            d, "entries",
            [](py::handle e) {
              return DescriptorEntry{attr<std::string>(e, "key"), attr<std::string>(e, "value")};
            }),
        token_bucket(d.attr("token_bucket"))};
  });
  l.stage = attr<uint32_t>(o, "stage");
  l.always_consume_default_token_bucket = attr<bool>(o, "always_consume_default_token_bucket");
  l.vh_rate_limits = vh_rate_limits(o, "LocalRateLimit");
  return l;
}

GlobalRateLimit global_rate_limit(py::handle o) {
  GlobalRateLimit g;
  g.domain = attr<std::string>(o, "domain");
  g.stage = attr<uint32_t>(o, "stage");
  g.failure_mode_deny = attr<bool>(o, "failure_mode_deny");
  g.timeout = millis(o, "timeout");
  g.rate_limited_status = attr<uint16_t>(o, "rate_limited_status");
  g.status_on_error = attr<uint16_t>(o, "status_on_error");
  g.disable_x_envoy_ratelimited_header = attr<bool>(o, "disable_x_envoy_ratelimited_header");
  g.filter_enforced = fraction(o.attr("filter_enforced"));
  g.vh_rate_limits = vh_rate_limits(o, "GlobalRateLimit");
  return g;
}

RateLimitServiceConfig::DescriptorConfig service_descriptor(py::handle o) {
  using U = RateLimitServiceConfig::Unit;
  RateLimitServiceConfig::DescriptorConfig d;
  d.key = attr<std::string>(o, "key");
  d.value = attr<std::string>(o, "value");
  d.rate_limit = optional_of<RateLimitServiceConfig::RateLimit>(o, "rate_limit", [](py::handle r) {
    RateLimitServiceConfig::RateLimit rl;
    rl.unit = enum_of<U>(r, "RateLimitServiceLimit", "unit",
                         {{"unset", U::unset},
                          {"second", U::second},
                          {"minute", U::minute},
                          {"hour", U::hour},
                          {"day", U::day}});
    rl.requests_per_unit = attr<uint32_t>(r, "requests_per_unit");
    rl.unlimited = attr<bool>(r, "unlimited");
    rl.name = attr<std::string>(r, "name");
    rl.replaces = strings(r, "replaces");
    return rl;
  });
  d.shadow_mode = attr<bool>(o, "shadow_mode");
  d.detailed_metric = attr<bool>(o, "detailed_metric");
  d.descriptors =
      list_of<RateLimitServiceConfig::DescriptorConfig>(o, "descriptors", service_descriptor);
  return d;
}

RateLimitConfig rate_limits(py::handle o) {
  RateLimitConfig r;
  r.local = optional_of<LocalRateLimit>(o, "local", local_rate_limit);
  r.local_overrides = list_of<LocalRateLimitOverride>(o, "local_overrides", [](py::handle v) {
    return LocalRateLimitOverride{attr<std::string>(v, "virtual_host"),
                                  attr<std::string>(v, "route"), attr<std::string>(v, "router"),
                                  local_rate_limit(v.attr("config"))};
  });
  r.global = optional_of<GlobalRateLimit>(o, "global_", global_rate_limit);
  r.rate_limits = list_of<RateLimitAttachment>(o, "rate_limits", [](py::handle a) {
    return RateLimitAttachment{attr<std::string>(a, "virtual_host"), attr<std::string>(a, "route"),
                               list_of<RateLimitRule>(a, "rate_limits", rate_limit_rule),
                               attr<std::string>(a, "router")};
  });
  r.service = list_of<RateLimitServiceConfig>(o, "service", [](py::handle s) {
    return RateLimitServiceConfig{
        attr<std::string>(s, "domain"),
        list_of<RateLimitServiceConfig::DescriptorConfig>(s, "descriptors", service_descriptor)};
  });
  r.redis_address = attr<std::string>(o, "redis_address");
  r.redis_key_prefix = attr<std::string>(o, "redis_key_prefix");
  return r;
}

}  // namespace

GatewayConfig gateway_config(py::handle o) {
  using P = PathNormalization;
  GatewayConfig c;
  c.listeners = list_of<ListenerConfig>(o, "listeners", listener);
  c.routers = list_of<RouterConfig>(o, "routers", router);
  c.upstreams = list_of<UpstreamConfig>(o, "upstreams", upstream);
  c.limits = limits(o.attr("limits"));
  c.path_normalization = enum_of<P>(o, "GatewayConfig", "path_normalization",
                                    {{"none", P::none},
                                     {"base", P::base},
                                     {"merge_slashes", P::merge_slashes},
                                     {"decode_and_merge_slashes", P::decode_and_merge_slashes}});
  c.security = security(o.attr("security"));
  c.rate_limits = rate_limits(o.attr("rate_limits"));
  return c;
}

}  // namespace sluice::python
