// Resources -> GatewayConfig, the way Istio builds an ingress gateway's
// listeners and routes (istio/istio pilot/pkg/networking/core gateway.go):
// one listener and route table per Gateway server port; per port, the
// VirtualServices bound to a Gateway with a server there contribute their
// hosts intersected with the server hosts; VirtualServices for the same host
// are merged in order.

#include <algorithm>
#include <asio/ip/address.hpp>
#include <deque>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "http/regex.hpp"
#include "http/tokens.hpp"
#include "istio/gateway_api.hpp"
#include "istio/istio.hpp"
#include "istio/model.hpp"
#include "security/authz.hpp"
#include "security/ext_authz.hpp"

namespace sluice::istio {
namespace {

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         http::to_lower(s.substr(s.size() - suffix.size())) == http::to_lower(suffix);
}

}  // namespace

// Istio host intersection (pilot's host.Name matching): the narrower of the
// two names when one covers the other, nothing otherwise.
std::optional<std::string> intersect_hosts(const std::string& vs_host,
                                           const std::string& server_host) {
  if (http::to_lower(vs_host) == http::to_lower(server_host)) return vs_host;
  if (server_host == "*") return vs_host;
  if (vs_host == "*") return server_host;
  bool vs_wild = vs_host.starts_with("*.");
  bool srv_wild = server_host.starts_with("*.");
  // "*.example.com" covers "a.example.com" and "*.a.example.com".
  if (srv_wild && ends_with_ci(vs_host, server_host.substr(1))) return vs_host;
  if (vs_wild && ends_with_ci(server_host, vs_host.substr(1))) return server_host;
  return std::nullopt;
}

namespace {

// Short names are namespace-relative Kubernetes service names.
std::string fqdn(const std::string& host, const std::string& ns) {
  if (host.find('.') != std::string::npos || host.find('*') != std::string::npos)
    return http::to_lower(host);
  return http::to_lower(host) + "." + ns + ".svc.cluster.local";
}

// Telemetry's names for a host, as Istio reports them: a Kubernetes service
// by its name and namespace, any other host by itself in the namespace of
// the ServiceEntry declaring it.
ServiceIdentity service_identity(const std::string& host_fqdn, const std::string& se_namespace) {
  ServiceIdentity id{host_fqdn, host_fqdn, se_namespace};
  constexpr std::string_view kCluster = ".svc.cluster.local";
  if (std::string_view(host_fqdn).ends_with(kCluster)) {
    std::string_view local =
        std::string_view(host_fqdn).substr(0, host_fqdn.size() - kCluster.size());
    if (size_t dot = local.find('.'); dot != std::string_view::npos) {
      id.name = std::string(local.substr(0, dot));
      id.namespace_ = std::string(local.substr(dot + 1));
    }
  }
  return id;
}

bool is_ip(const std::string& s) {
  asio::error_code ec;
  asio::ip::make_address(s, ec);
  return !ec;
}

// ISTIO_MUTUAL anywhere in a DestinationRule is a load error without the
// mesh's certificates, whether or not a route uses the rule.
void require_mesh_certs(const Resources& res, const TranslateOptions& options) {
  if (options.mesh_certs) return;
  auto check = [](const Meta& m, const std::optional<TrafficPolicyIn>& tp) {
    if (!tp) return;
    std::vector<const PolicyParts*> all{&tp->parts};
    for (const auto& p : tp->port_level) all.push_back(&p.parts);
    for (const PolicyParts* parts : all)
      if (parts->tls && parts->tls->mode == "ISTIO_MUTUAL")
        fail(m, parts->tls->path + ".mode",
             "ISTIO_MUTUAL needs the mesh's certificates: start with --mesh-certs DIR (a "
             "directory holding cert-chain.pem, key.pem and root-cert.pem, as Istio mounts them)");
  };
  for (const auto& dr : res.destination_rules) {
    check(dr.meta, dr.traffic_policy);
    for (const auto& s : dr.subsets) check(dr.meta, s.traffic_policy);
  }
}

// exportTo as Istio applies it to a gateway in `gw_ns`.
bool exported_to(const Meta& m, const std::string& gw_ns) {
  if (m.export_to.empty()) return true;
  for (const auto& e : m.export_to)
    if (e == "*" || e == gw_ns || (e == "." && m.namespace_ == gw_ns)) return true;
  return false;
}

// Leaves out what exportTo hides from the gateway, with a note for each.
void drop_unexported(Resources& res, const std::string& gw_ns, std::vector<std::string>& notes) {
  auto drop = [&](auto& list) {
    std::erase_if(list, [&](const auto& r) {
      if (exported_to(r.meta, gw_ns)) return false;
      notes.push_back(
          fmt::format("{}: exportTo [{}] does not include the gateway's namespace "
                      "\"{}\"; ignored",
                      r.meta.object(), fmt::join(r.meta.export_to, ", "), gw_ns));
      return true;
    });
  };
  drop(res.virtual_services);
  drop(res.destination_rules);
  drop(res.service_entries);
  drop(res.services);
}

bool any_unexported(const Resources& res, const std::string& gw_ns) {
  auto any = [&](const auto& list) {
    for (const auto& r : list)
      if (!exported_to(r.meta, gw_ns)) return true;
    return false;
  };
  return any(res.virtual_services) || any(res.destination_rules) || any(res.service_entries) ||
         any(res.services);
}

struct ServerRef {
  const GatewayRes* gateway;
  size_t index;
};

// One http rule as served: written in `meta` at http[index]; a delegate's rule
// (merged with the root's) when `delegate` is set.
struct RuleRef {
  const Meta* meta;
  size_t index;
  HttpRuleIn rule;
  size_t root_index;     // http[root_index] of the root VirtualService
  std::string delegate;  // the delegate VirtualService's display name, or empty
  std::string delegate_rule_name;
  std::vector<Destination> destinations;  // resolved
  std::vector<Mirror> mirrors;            // resolved
};

class Translator {
 public:
  Translator(const Resources& res, const TranslateOptions& options, const DnsTable& dns)
      : res_(res), options_(options), dns_(dns) {}

  LoadedConfig run() {
    registry_ = registry_entries(res_, warnings_);
    for (const auto& g : res_.gateways) gateways_[g.meta.key()] = &g;
    validate_regexes();
    collect_ports();
    for (const auto& vs : res_.virtual_services) {
      vs_by_key_[vs.meta.key()] = &vs;
      if (vs.hosts.empty() && !vs.gateways.empty())
        warn(fmt::format("{}: has no hosts, so it is a delegate; its gateways are ignored",
                         vs.meta.object()));
    }
    for (const auto& vs : res_.virtual_services)
      if (!vs.hosts.empty()) bind(vs);
    for (auto& [port, servers] : ports_) build_listener(port, servers);
    add_security();  // may add the ext_authz providers' upstreams
    for (auto& up : upstream_order_) out_.config.upstreams.push_back(std::move(upstreams_[up]));
    out_.warnings = std::move(warnings_);
    return std::move(out_);
  }

 private:
  // ---- security policies ----

  static std::string labels_text(const Labels& labels) {
    std::string out;
    for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=" + v;
    return out;
  }

  // Why a policy with this scope applies to the gateway, or nullopt (and
  // `why_not`) when it selects other workloads.
  std::optional<std::string> applies(const Meta& m, const WorkloadScopeIn& scope,
                                     std::string& why_not) const {
    const std::string& root = options_.root_namespace;
    const std::string& gw_ns = options_.gateway_namespace;
    if (!scope.target_refs.empty()) {
      for (const auto& ref : scope.target_refs) {
        bool gateway_kind = ref.kind == "Gateway" && (ref.group == "networking.istio.io" ||
                                                      ref.group == "gateway.networking.k8s.io");
        if (gateway_kind && gateways_.count(m.namespace_ + "/" + ref.name))
          return fmt::format("targetRef {} {}/{}", ref.kind, m.namespace_, ref.name);
        // A Gateway API Gateway of the class served (its listeners are
        // loaded as one Istio Gateway each).
        if (gateway_kind && ref.group == "gateway.networking.k8s.io" && res_.gateway_api)
          for (const auto& g : res_.gateway_api->gateways)
            if (g.meta.namespace_ == m.namespace_ && g.meta.name == ref.name &&
                g.class_name == options_.gateway_class)
              return fmt::format("targetRef {} {}/{}", ref.kind, m.namespace_, ref.name);
      }
      why_not = "its targetRefs name no loaded Gateway";
      return std::nullopt;
    }
    bool in_scope_ns = m.namespace_ == root || m.namespace_ == gw_ns;
    if (!in_scope_ns) {
      why_not =
          fmt::format("namespace {} is neither the root namespace ({}) nor the gateway's ({})",
                      m.namespace_, root, gw_ns);
      return std::nullopt;
    }
    if (!scope.selector || scope.selector->empty())
      return m.namespace_ == root ? std::string("root namespace, no selector: every workload")
                                  : std::string("gateway namespace, no selector");
    for (const auto& [k, v] : *scope.selector) {
      auto it = options_.gateway_labels.find(k);
      if (it == options_.gateway_labels.end() || it->second != v) {
        why_not = fmt::format("selector {} does not match the gateway's labels {}",
                              labels_text(*scope.selector), labels_text(options_.gateway_labels));
        return std::nullopt;
      }
    }
    return "selector " + labels_text(*scope.selector);
  }

  // The mesh config's provider a CUSTOM policy names, once, with its
  // service as an upstream (pooled, its DestinationRule's TLS applies).
  void add_ext_authz(const Meta& policy, const std::string& name) {
    SecurityConfig& sec = out_.config.security;
    for (const auto& p : sec.ext_authz_providers)
      if (p.name == name) return;
    const ExtensionProvider* found = nullptr;
    for (const auto& e : options_.extension_providers)
      if (e.http.name == name) found = &e;
    if (!found)
      fail(policy, "provider.name",
           fmt::format("no extensionProviders entry named \"{}\" in the mesh config", name));
    if (found->kind == ExtensionProvider::Kind::ext_authz_grpc)
      fail(policy, "provider.name",
           fmt::format("provider \"{}\" is envoyExtAuthzGrpc: gRPC ext_authz needs HTTP/2 "
                       "upstreams, which sluice does not have yet (protocols issue); use "
                       "envoyExtAuthzHttp",
                       name));
    if (found->kind != ExtensionProvider::Kind::ext_authz_http)
      fail(policy, "provider.name",
           fmt::format("provider \"{}\" is not an ext_authz provider", name));
    ExtAuthzHttpProvider p = found->http;
    std::string object = "MeshConfig " + options_.mesh_origin;
    std::string field = found->field + ".envoyExtAuthzHttp";
    auto mesh_fail = [&](const std::string& f, std::string message) {
      throw LoadError{Error{object, field + f, std::move(message)}};
    };
    // "[<Namespace>/]<Hostname>": the namespace only disambiguates.
    std::string host = p.service;
    std::string ns = "default";
    if (auto slash = host.find('/'); slash != std::string::npos) {
      ns = host.substr(0, slash);
      host = host.substr(slash + 1);
    }
    std::string declared;
    const ServiceEntryRes* se = find_service(fqdn(host, ns), &declared);
    if (!se)
      mesh_fail(".service",
                fmt::format("host \"{}\" is not declared by any ServiceEntry", p.service));
    const ServicePort* sp = nullptr;
    for (const auto& candidate : se->ports)
      if (candidate.number == p.port) sp = &candidate;
    if (!sp)
      mesh_fail(".port", fmt::format("{} declares no port {} for host \"{}\"", se->meta.object(),
                                     p.port, p.service));
    p.service = upstream_for(*se, declared, *sp, policy, "provider");
    p.port = 0;
    // The library's checks, at load, so errors name the mesh config's field.
    if (auto compiled = security::compile_ext_authz(p, 0); !compiled) {
      // The library names its fields in snake_case; Istio in camelCase.
      std::string camel;
      for (size_t i = 0; i < compiled.error().field.size(); ++i) {
        char c = compiled.error().field[i];
        if (c == '_' && i + 1 < compiled.error().field.size())
          camel += static_cast<char>(std::toupper(compiled.error().field[++i]));
        else
          camel += c;
      }
      mesh_fail("." + camel, compiled.error().message);
    }
    sec.ext_authz_providers.push_back(std::move(p));
  }

  void add_security() {
    SecurityConfig& sec = out_.config.security;
    sec.root_namespace = options_.root_namespace;
    for (const auto& ra : res_.request_authentications) {
      std::string object =
          fmt::format("RequestAuthentication {}/{}", ra.meta.namespace_, ra.meta.name);
      std::string why_not;
      auto why = applies(ra.meta, ra.scope, why_not);
      if (!why) {
        out_.security_skipped.push_back({object, why_not});
        continue;
      }
      out_.security_applied.push_back(
          {object, fmt::format("{} jwtRule(s); {}", ra.jwt_rules.size(), *why)});
      sec.jwt_providers.insert(sec.jwt_providers.end(), ra.jwt_rules.begin(), ra.jwt_rules.end());
    }
    for (const auto& ap : res_.authorization_policies) {
      const AuthorizationPolicy& p = ap.policy;
      std::string object = fmt::format("AuthorizationPolicy {}/{}", p.ns, p.name);
      std::string why_not;
      auto why = applies(ap.meta, ap.scope, why_not);
      if (!why) {
        out_.security_skipped.push_back({object, why_not});
        continue;
      }
      if (p.action == AuthzAction::custom) add_ext_authz(ap.meta, p.provider);
      static constexpr const char* actions[] = {"ALLOW", "DENY", "AUDIT", "CUSTOM"};
      out_.security_applied.push_back(
          {object, fmt::format("{}, {} rule(s); {}", actions[static_cast<int>(p.action)],
                               p.rules.size(), *why)});
      sec.authorization.push_back(p);
    }
    // The library's checks, at load, so errors name the policy and field.
    auto compiled = security::AuthzEngine::compile(sec.authorization,
                                                   security::AuthzOptions{sec.root_namespace});
    if (!compiled) throw LoadError{compiled.error()};
  }

 private:
  void warn(std::string w) {
    if (std::find(warnings_.begin(), warnings_.end(), w) == warnings_.end())
      warnings_.push_back(std::move(w));
  }

  void check_regex(const Meta& m, const std::string& path, const StringMatch& sm) {
    if (sm.kind != StringMatch::Kind::regex) return;
    if (auto re = http::compile_regex(sm.value); !re) fail(m, path + ".regex", re.error().message);
  }

  void validate_regexes() {
    for (const auto& vs : res_.virtual_services) {
      for (size_t i = 0; i < vs.http.size(); ++i) {
        for (size_t k = 0; k < vs.http[i].matches.size(); ++k) {
          const Matcher& mt = vs.http[i].matches[k].matcher;
          std::string p = fmt::format("http[{}].match[{}]", i, k);
          if (mt.uri) check_regex(vs.meta, p + ".uri", *mt.uri);
          if (mt.method) check_regex(vs.meta, p + ".method", *mt.method);
          if (mt.authority) check_regex(vs.meta, p + ".authority", *mt.authority);
          if (mt.scheme) check_regex(vs.meta, p + ".scheme", *mt.scheme);
          for (const auto& h : mt.headers)
            check_regex(vs.meta,
                        fmt::format("{}.{}.{}", p, h.invert ? "withoutHeaders" : "headers", h.name),
                        h.match);
          for (const auto& q : mt.query_params)
            check_regex(vs.meta, fmt::format("{}.queryParams.{}", p, q.name), q.match);
        }
      }
    }
  }

  void collect_ports() {
    struct Claim {
      std::string protocol;
      const GatewayRes* gateway;
      size_t server;
    };
    std::map<std::pair<uint16_t, std::string>, Claim> claims;
    for (const auto& g : res_.gateways) {
      for (size_t i = 0; i < g.servers.size(); ++i) {
        const auto& s = g.servers[i];
        for (size_t h = 0; h < s.hosts.size(); ++h) {
          std::string host = s.hosts[h];
          if (auto slash = host.find('/'); slash != std::string::npos)
            host = host.substr(slash + 1);
          auto [it, fresh] =
              claims.emplace(std::pair{s.port, http::to_lower(host)}, Claim{s.protocol, &g, i});
          if (!fresh && it->second.protocol != s.protocol)
            fail(g.meta, fmt::format("servers[{}].hosts[{}]", i, h),
                 fmt::format("host \"{}\" on port {} is already claimed with protocol {} by "
                             "Gateway {} servers[{}]; this server says {}",
                             host, s.port, it->second.protocol, it->second.gateway->meta.display(),
                             it->second.server, s.protocol));
        }
      }
    }
    std::map<uint16_t, ServerRef> first_plain, first_tls, first_any;
    for (const auto& g : res_.gateways) {
      for (size_t i = 0; i < g.servers.size(); ++i) {
        const auto& s = g.servers[i];
        if (s.protocol != "HTTP" && s.protocol != "HTTPS" && s.protocol != "TLS" &&
            s.protocol != "TCP")
          fail(g.meta, fmt::format("servers[{}].port.protocol", i),
               fmt::format("protocol {} is not implemented yet (HTTP, HTTPS, TLS and TCP only)",
                           s.protocol));
        bool tls = is_tls(s);
        // A port carries TCP routes or HTTP (with TLS passthrough), never both.
        if (auto o = first_any.find(s.port);
            o != first_any.end() &&
            carries_tcp(o->second.gateway->servers[o->second.index]) != carries_tcp(s))
          fail(g.meta, fmt::format("servers[{}].port.protocol", i),
               fmt::format("port {} carries TCP routes in one server and not in another (Gateway "
                           "{} servers[{}] says {}; this server says {})",
                           s.port, o->second.gateway->meta.display(), o->second.index,
                           o->second.gateway->servers[o->second.index].protocol, s.protocol));
        first_any.emplace(s.port, ServerRef{&g, i});
        // A port speaks TLS or plain HTTP, never both (Envoy listens once per port).
        auto& mine = tls ? first_tls : first_plain;
        auto& other = tls ? first_plain : first_tls;
        mine.emplace(s.port, ServerRef{&g, i});
        if (auto o = other.find(s.port); o != other.end())
          fail(g.meta, fmt::format("servers[{}].port.protocol", i),
               fmt::format("port {} is plain HTTP in one server and TLS in another (Gateway {} "
                           "servers[{}] says {}; this server says {})",
                           s.port, o->second.gateway->meta.display(), o->second.index,
                           o->second.gateway->servers[o->second.index].protocol, s.protocol));
        ports_[s.port].push_back({&g, i});
      }
    }
  }

  static bool is_tls(const GatewayServer& s) {
    return s.protocol == "HTTPS" || s.protocol == "TLS";
  }
  static bool terminates(const GatewayServer& s) {
    return is_tls(s) && s.tls && s.tls->mode != "PASSTHROUGH";
  }
  static bool passes_through(const GatewayServer& s) { return is_tls(s) && !terminates(s); }
  // Served by VirtualService tcp routes: protocol TCP, or TLS terminated here.
  static bool carries_tcp(const GatewayServer& s) {
    return s.protocol == "TCP" || (s.protocol == "TLS" && terminates(s));
  }

  // credentialName -> Secret: the Gateway's (or DestinationRule's) namespace,
  // then istio-system (where Istio's ingress reads them), then a Secret of that
  // name in any namespace if there is exactly one.
  const SecretRes* find_secret(const std::string& name, const std::string& ns) const {
    for (const char* where : {"own", "istio-system"})
      for (const auto& sec : res_.secrets)
        if (sec.meta.name == name &&
            sec.meta.namespace_ == (std::string_view(where) == "own" ? ns : where))
          return &sec;
    const SecretRes* only = nullptr;
    for (const auto& sec : res_.secrets)
      if (sec.meta.name == name) {
        if (only) return nullptr;
        only = &sec;
      }
    return only;
  }

  // A key of a Secret: the kubernetes.io/tls name or Istio's generic one.
  static const std::string* secret_item(const SecretRes& sec, const char* tls_key,
                                        const char* generic_key) {
    for (const char* k : {tls_key, generic_key}) {
      auto it = sec.data.find(k);
      if (it != sec.data.end() && !it->second.empty()) return &it->second;
    }
    return nullptr;
  }

  struct Credential {
    std::string cert, key, ca;
  };

  // The certificate, key and CA of credentialName, or an error naming `who`.
  Credential credential(const Meta& meta, const std::string& path, const std::string& name,
                        const std::string& who, bool need_ca) const {
    Credential out;
    const SecretRes* sec = find_secret(name, meta.namespace_);
    if (!sec)
      fail(meta, path,
           fmt::format("{}: Secret \"{}\" (credentialName) is not in the loaded configuration", who,
                       name));
    auto item = [&](const char* k, const char* generic) -> const std::string* {
      return secret_item(*sec, k, generic);
    };
    if (auto v = item("tls.crt", "cert")) out.cert = *v;
    if (auto v = item("tls.key", "key")) out.key = *v;
    if (auto v = item("ca.crt", "cacert")) out.ca = *v;
    if (out.ca.empty())
      if (const SecretRes* ca = find_secret(name + "-cacert", meta.namespace_))
        if (auto v = secret_item(*ca, "ca.crt", "cacert")) out.ca = *v;
    if (out.cert.empty() || out.key.empty())
      fail(meta, path,
           fmt::format("{}: Secret {} has no {} (a kubernetes.io/tls Secret holds tls.crt and "
                       "tls.key)",
                       who, sec->meta.display(), out.cert.empty() ? "tls.crt" : "tls.key"));
    if (need_ca && out.ca.empty())
      fail(meta, path,
           fmt::format("{}: neither Secret {} nor Secret {}-cacert holds ca.crt, which mutual TLS "
                       "needs",
                       who, sec->meta.display(), name));
    return out;
  }

  TlsServer tls_server(const GatewayRes& g, size_t index) const {
    const GatewayServer& srv = g.servers[index];
    const ServerTlsIn& in = *srv.tls;
    TlsServer out;
    for (const auto& h : srv.hosts) {
      auto slash = h.find('/');
      std::string host = slash == std::string::npos ? h : h.substr(slash + 1);
      if (std::find(out.sni_hosts.begin(), out.sni_hosts.end(), host) == out.sni_hosts.end())
        out.sni_hosts.push_back(host);
    }
    out.mode = in.mode == "MUTUAL"            ? TlsServer::Mode::mutual
               : in.mode == "OPTIONAL_MUTUAL" ? TlsServer::Mode::optional_mutual
                                              : TlsServer::Mode::simple;
    bool mutual = out.mode != TlsServer::Mode::simple;
    if (!in.credential_name.empty()) {
      std::string who = fmt::format("server {}{} on port {}", index,
                                    srv.name.empty() ? "" : " \"" + srv.name + "\"", srv.port);
      Credential c = credential(g.meta, fmt::format("servers[{}].tls.credentialName", index),
                                in.credential_name, who, mutual);
      out.certificate_chain = std::move(c.cert);
      out.private_key = std::move(c.key);
      if (mutual) out.ca_certificates = std::move(c.ca);
    } else {
      out.certificate_chain = in.server_certificate->text;
      out.private_key = in.private_key->text;
      if (in.ca_certificates) out.ca_certificates = in.ca_certificates->text;
    }
    out.subject_alt_names = in.subject_alt_names;
    out.verify_certificate_spki = in.verify_certificate_spki;
    out.verify_certificate_hash = in.verify_certificate_hash;
    out.min_version = in.min_version;
    out.max_version = in.max_version;
    out.cipher_suites = in.cipher_suites;
    return out;
  }

  // "name" is relative to the VirtualService's namespace; "ns/name" is not.
  std::string gateway_key(const std::string& ref, const std::string& ns) const {
    if (ref.find('/') != std::string::npos) return ref;
    return ns + "/" + ref;
  }

  void bind(const VirtualServiceRes& vs) {
    std::vector<std::string> bound;
    for (size_t i = 0; i < vs.gateways.size(); ++i) {
      if (vs.gateways[i] == "mesh") continue;
      std::string key = gateway_key(vs.gateways[i], vs.meta.namespace_);
      if (!gateways_.count(key))
        fail(vs.meta, fmt::format("gateways[{}]", i),
             fmt::format("Gateway \"{}\" does not exist", key));
      bound.push_back(key);
    }
    for (size_t i = 0; i < vs.http.size(); ++i)
      for (size_t k = 0; k < vs.http[i].matches.size(); ++k) {
        const auto& gws = vs.http[i].matches[k].gateways;
        for (size_t j = 0; j < gws.size(); ++j) {
          if (gws[j] == "mesh") continue;
          std::string key = gateway_key(gws[j], vs.meta.namespace_);
          if (!gateways_.count(key))
            fail(vs.meta, fmt::format("http[{}].match[{}].gateways[{}]", i, k, j),
                 fmt::format("Gateway \"{}\" does not exist", key));
        }
      }
    if (bound.empty()) {
      warn(
          fmt::format("{}: not bound to any Gateway (gateways: lists none but \"mesh\"); it "
                      "serves nothing here",
                      vs.meta.object()));
      return;
    }
    bound_[&vs] = bound;
    auto& rules = rules_[&vs];
    for (size_t i = 0; i < vs.http.size(); ++i) {
      if (vs.http[i].delegate)
        expand_delegate(vs, i, rules);
      else
        rules.push_back(RuleRef{&vs.meta, i, vs.http[i], i, {}, {}, {}, {}});
    }
    for (auto& r : rules) resolve_rule(r);
  }

  // --- delegation (one level, istio/istio pilot/pkg/model/virtualservice.go) ------

  // Istio's stringMatchConflict: can a request satisfy both conditions?
  static bool string_conflict(const std::optional<StringMatch>& root,
                              const std::optional<StringMatch>& leaf) {
    if (!root || !leaf) return false;
    using K = StringMatch::Kind;
    auto specific = [](const StringMatch& m) {
      return m.kind == K::exact || m.kind == K::prefix || m.kind == K::regex;
    };
    if (root->kind == K::regex && specific(*leaf)) return true;
    if (leaf->kind == K::regex && specific(*root)) return true;
    if (root->kind == K::exact && (leaf->kind == K::prefix || leaf->value != root->value))
      return true;
    if (root->kind == K::prefix && (leaf->kind == K::prefix || leaf->kind == K::exact) &&
        !leaf->value.starts_with(root->value))
      return true;
    return false;
  }

  static const HeaderMatch* find_header(const Matcher& m, const std::string& name, bool invert) {
    for (const auto& h : m.headers)
      if (h.invert == invert && h.name == name) return &h;
    return nullptr;
  }

  static bool match_conflict(const HttpMatchIn& root, const HttpMatchIn& leaf) {
    const Matcher& r = root.matcher;
    const Matcher& l = leaf.matcher;
    if (string_conflict(r.uri, l.uri) || string_conflict(r.scheme, l.scheme) ||
        string_conflict(r.method, l.method) || string_conflict(r.authority, l.authority))
      return true;
    for (const auto& h : l.headers) {
      const HeaderMatch* rh = find_header(r, h.name, h.invert);
      if (rh && string_conflict(rh->match, h.match)) return true;
    }
    for (const auto& q : l.query_params)
      for (const auto& rq : r.query_params)
        if (rq.name == q.name && string_conflict(rq.match, q.match)) return true;
    if (r.ignore_uri_case != l.ignore_uri_case) return true;
    if (r.port && l.port && *r.port != *l.port) return true;
    if (!root.gateways.empty() && !leaf.gateways.empty())
      for (const auto& g : leaf.gateways)
        if (std::find(root.gateways.begin(), root.gateways.end(), g) == root.gateways.end())
          return true;
    return false;
  }

  // Istio's mergeHTTPMatchRequest: the delegate's conditions, the root's where
  // the delegate has none; maps merged with the delegate winning.
  static HttpMatchIn merge_match(const HttpMatchIn& root, const HttpMatchIn& leaf) {
    HttpMatchIn out = leaf;
    Matcher& m = out.matcher;
    const Matcher& r = root.matcher;
    if (!m.uri) m.uri = r.uri;
    if (!m.scheme) m.scheme = r.scheme;
    if (!m.method) m.method = r.method;
    if (!m.authority) m.authority = r.authority;
    if (!m.port) m.port = r.port;
    for (const auto& h : r.headers)
      if (!find_header(leaf.matcher, h.name, h.invert)) m.headers.push_back(h);
    for (const auto& q : r.query_params) {
      bool has = false;
      for (const auto& lq : leaf.matcher.query_params) has = has || lq.name == q.name;
      if (!has) m.query_params.push_back(q);
    }
    if (out.gateways.empty()) out.gateways = root.gateways;
    out.source_labels = root.source_labels || leaf.source_labels;
    return out;
  }

  void expand_delegate(const VirtualServiceRes& vs, size_t i, std::vector<RuleRef>& rules) {
    const HttpRuleIn& root = vs.http[i];
    const DelegateIn& d = *root.delegate;
    std::string key = (d.namespace_.empty() ? vs.meta.namespace_ : d.namespace_) + "/" + d.name;
    std::string at = fmt::format("http[{}].delegate", i);
    auto it = vs_by_key_.find(key);
    if (it == vs_by_key_.end())
      fail(vs.meta, at + ".name", fmt::format("VirtualService \"{}\" does not exist", key));
    const VirtualServiceRes& del = *it->second;
    if (!del.hosts.empty())
      fail(vs.meta, at + ".name",
           fmt::format("VirtualService \"{}\" has hosts, so it cannot be a delegate", key));
    for (size_t j = 0; j < del.http.size(); ++j) {
      const HttpRuleIn& leaf = del.http[j];
      if (leaf.delegate)
        fail(del.meta, fmt::format("http[{}].delegate", j),
             "only one level of delegation is supported (this VirtualService is a delegate of " +
                 vs.meta.object() + ")");
      HttpRuleIn merged = leaf;
      bool conflict = false;
      if (!root.matches.empty() && !leaf.matches.empty()) {
        merged.matches.clear();
        for (const auto& lm : leaf.matches) {
          bool found = false;
          for (const auto& rm : root.matches) {
            if (match_conflict(rm, lm)) continue;
            merged.matches.push_back(merge_match(rm, lm));
            found = true;
          }
          if (!found) conflict = true;
        }
        if (merged.matches.empty()) conflict = true;
      } else if (leaf.matches.empty()) {
        merged.matches = root.matches;
      }
      if (conflict) {
        warn(
            fmt::format("{}: http[{}]: dropped: its match conflicts with {} http[{}] that "
                        "delegates to it",
                        del.meta.object(), j, vs.meta.object(), i));
        continue;
      }
      // Route-level fields the delegate leaves unset come from the root.
      if (merged.name.empty())
        merged.name = root.name;
      else if (!root.name.empty())
        merged.name = root.name + "-" + merged.name;
      if (!merged.rewrite) merged.rewrite = root.rewrite;
      if (!merged.timeout) merged.timeout = root.timeout;
      if (!merged.retries) merged.retries = root.retries;
      if (!merged.fault) merged.fault = root.fault;
      if (!merged.mirrors) merged.mirrors = root.mirrors;
      if (!merged.cors) merged.cors = root.cors;
      if (!merged.headers_set) {
        merged.headers_set = root.headers_set;
        merged.request_headers = root.request_headers;
        merged.response_headers = root.response_headers;
      }
      rules.push_back(
          RuleRef{&del.meta, j, std::move(merged), i, del.meta.display(), leaf.name, {}, {}});
    }
  }

  // --- destinations and upstreams -------------------------------------------------

  const ServiceEntryRes* find_service(const std::string& host_fqdn, std::string* declared) const {
    std::string dest_fqdn = registry_host(res_, host_fqdn);
    // The upstream is named by the host as the ServiceEntry declares it.
    for (const auto& se : res_.service_entries)
      for (const auto& h : se.hosts)
        if (fqdn(h, se.meta.namespace_) == dest_fqdn) {
          *declared = http::to_lower(h);
          return &se;
        }
    // Then the Kubernetes Services (ServiceEntries take precedence, as they
    // do in Istio for a host both declare).
    for (const auto& se : registry_)
      if (se.hosts.front() == dest_fqdn) {
        *declared = dest_fqdn;
        return &se;
      }
    for (const auto& se : res_.service_entries)
      for (const auto& h : se.hosts)
        if (h.starts_with("*.") && ends_with_ci(dest_fqdn, h.substr(1))) {
          *declared = dest_fqdn;
          return &se;
        }
    return nullptr;
  }

  // --resolve-unknown-hosts dns: a DNS ServiceEntry for the host as written,
  // one per host, with a port for each one routes name (80 when none does).
  const ServiceEntryRes* unknown_host(const DestinationIn& d, std::string* declared) {
    std::string name = http::to_lower(d.host);
    if (name.find('*') != std::string::npos) return nullptr;
    ServiceEntryRes* se = nullptr;
    for (auto& u : unknown_)
      if (u.hosts.front() == name) se = &u;
    if (!se) {
      se = &unknown_.emplace_back();
      se->meta = Meta{"ServiceEntry", "unknown-host " + name, "default", "", {}};
      se->hosts = {name};
      se->resolution = "DNS";
    }
    uint16_t port = d.port.value_or(80);
    bool has = false;
    for (const auto& sp : se->ports) has = has || sp.number == port;
    if (!has) se->ports.push_back(ServicePort{port, "", "", std::nullopt});
    *declared = name;
    return se;
  }

  std::vector<const DestinationRuleRes*> rules_for(const std::string& host_fqdn) const {
    std::vector<const DestinationRuleRes*> out;
    for (const auto& dr : res_.destination_rules)
      if (registry_host(res_, fqdn(dr.host, dr.meta.namespace_)) == host_fqdn) out.push_back(&dr);
    if (!out.empty()) return out;
    for (const auto& dr : res_.destination_rules)
      if (dr.host.starts_with("*.") && ends_with_ci(host_fqdn, dr.host.substr(1)))
        out.push_back(&dr);
    return out;
  }

  // The endpoints of (se, sp) now, from the DNS answers given for DNS
  // resolution; then `hosts` lists the entries to re-resolve (DnsEndpointSource).
  std::vector<Endpoint> endpoints_for(const ServiceEntryRes& se, const ServicePort& sp,
                                      const Meta& vs_meta, const std::string& path,
                                      std::vector<DnsHost>& hosts) {
    std::vector<Endpoint> out;
    uint16_t default_port = sp.target_port.value_or(sp.number);
    auto port_of = [&](const WorkloadEndpoint& ep) {
      auto it = ep.ports.find(sp.name);
      return it != ep.ports.end() && (!sp.name.empty() || ep.only_listed_ports) ? it->second
                                                                                : default_port;
    };
    auto make = [&](const WorkloadEndpoint& ep, const std::string& ip) {
      out.push_back(Endpoint{ip, port_of(ep), ep.labels, ep.weight});
    };
    auto host = [&](const WorkloadEndpoint& ep, const std::string& name) {
      hosts.push_back(DnsHost{name, port_of(ep), ep.labels, ep.weight});
    };
    if (se.resolution == "STATIC") {
      for (size_t i = 0; i < se.endpoints.size(); ++i) {
        if (se.endpoints[i].only_listed_ports && !se.endpoints[i].ports.count(sp.name)) continue;
        if (!is_ip(se.endpoints[i].address))
          fail(se.meta, fmt::format("endpoints[{}].address", i),
               fmt::format("\"{}\" is not an IP address (resolution STATIC; use DNS for names)",
                           se.endpoints[i].address));
        make(se.endpoints[i], se.endpoints[i].address);
      }
    } else if (se.resolution == "DNS" || se.resolution == "DNS_ROUND_ROBIN") {
      auto lookup = [&](const std::string& name) -> std::vector<std::string> {
        if (is_ip(name)) return {name};
        auto it = dns_.find(name);
        if (it == dns_.end() || it->second.empty()) {
          warn(fmt::format("{}: \"{}\" did not resolve; no endpoints from it", se.meta.object(),
                           name));
          return {};
        }
        return it->second;
      };
      if (se.endpoints.empty()) {
        WorkloadEndpoint implicit;
        for (const auto& h : se.hosts) {
          if (h.find('*') != std::string::npos) continue;
          for (const auto& ip : lookup(h)) make(implicit, ip);
          host(implicit, h);
        }
      } else {
        for (const auto& ep : se.endpoints) {
          for (const auto& ip : lookup(ep.address)) make(ep, ip);
          host(ep, ep.address);
        }
      }
    } else {
      fail(
          vs_meta, path,
          fmt::format("ServiceEntry {} has resolution {}, which is not implemented yet (use STATIC "
                      "or DNS)",
                      se.meta.display(), se.resolution));
    }
    return out;
  }

  // Istio's MergeTrafficPolicy: the destination-level policy (replaced whole
  // by its portLevelSettings for this port), then each part the subset sets,
  // then the subset's own portLevelSettings for this port. Port-level settings
  // do not inherit: a part they leave out gets its default.
  static PolicyParts effective_policy(const DestinationRuleRes* dr, const SubsetIn* subset,
                                      uint16_t port) {
    auto at_port = [port](const TrafficPolicyIn& tp) -> std::optional<PolicyParts> {
      for (const auto& pl : tp.port_level)
        if (pl.port == port) return pl.parts;
      return std::nullopt;
    };
    PolicyParts out;
    if (dr && dr->traffic_policy)
      out = at_port(*dr->traffic_policy).value_or(dr->traffic_policy->parts);
    if (subset && subset->traffic_policy) {
      const PolicyParts& sp = subset->traffic_policy->parts;
      if (sp.load_balancer) out.load_balancer = sp.load_balancer;
      if (sp.connection_pool) {
        out.connection_pool = sp.connection_pool;
        out.h2_upgrade_policy = sp.h2_upgrade_policy;
      }
      if (sp.outlier_detection) out.outlier_detection = sp.outlier_detection;
      if (sp.tls) out.tls = sp.tls;
      if (auto p = at_port(*subset->traffic_policy)) out = *p;
    }
    return out;
  }

  static void apply_policy(const PolicyParts& parts, UpstreamConfig& up) {
    LoadBalancerIn lb = parts.load_balancer.value_or(LoadBalancerIn{});
    up.load_balancer = lb.load_balancer;
    up.consistent_hash = lb.consistent_hash;
    up.warmup = lb.warmup;
    up.pool = parts.connection_pool.value_or(ConnectionPoolSettings{});
    up.outlier_detection = parts.outlier_detection;
  }

  // DestinationRule tls -> UpstreamConfig::tls. `dr` is the rule that holds
  // the policy (credentialName lookups and errors name it).
  void apply_tls(const PolicyParts& parts, const DestinationRuleRes* dr, const std::string& host,
                 UpstreamConfig& up) const {
    if (!parts.tls || parts.tls->mode == "DISABLE") return;
    const ClientTlsIn& in = *parts.tls;
    if (in.mode == "ISTIO_MUTUAL") return;  // apply_mesh_tls
    UpstreamTls t;
    t.mode = in.mode == "MUTUAL" ? UpstreamTls::Mode::mutual : UpstreamTls::Mode::simple;
    // Istio's default SNI is the destination host.
    t.sni = in.sni.empty() ? host : in.sni;
    if (!in.credential_name.empty()) {
      Credential c;
      const SecretRes* sec = find_secret(in.credential_name, dr->meta.namespace_);
      if (!sec)
        fail(dr->meta, in.path + ".credentialName",
             fmt::format("Secret \"{}\" is not in the loaded configuration", in.credential_name));
      if (auto v = secret_item(*sec, "ca.crt", "cacert")) t.ca_certificates = *v;
      if (t.ca_certificates.empty())
        if (const SecretRes* ca = find_secret(in.credential_name + "-cacert", dr->meta.namespace_))
          if (auto v = secret_item(*ca, "ca.crt", "cacert")) t.ca_certificates = *v;
      if (t.mode == UpstreamTls::Mode::mutual) {
        c = credential(dr->meta, in.path + ".credentialName", in.credential_name,
                       fmt::format("tls for {}", host), false);
        t.client_certificate = std::move(c.cert);
        t.private_key = std::move(c.key);
      }
    } else {
      if (in.ca_certificates) t.ca_certificates = in.ca_certificates->text;
      if (in.client_certificate) t.client_certificate = in.client_certificate->text;
      if (in.private_key) t.private_key = in.private_key->text;
    }
    t.subject_alt_names = in.subject_alt_names;
    t.insecure_skip_verify = in.insecure_skip_verify;
    up.tls = std::move(t);
  }

  // ISTIO_MUTUAL: MUTUAL with the mesh's certificates. The peer's accepted
  // identities are Istio's: the rule's subjectAltNames, else the service's
  // (ServiceEntry subjectAltNames, Pods' service accounts), else any in the
  // trust domain (UpstreamTls::spiffe_trust_domain).
  void apply_mesh_tls(const PolicyParts& parts, const DestinationRuleRes* dr,
                      const ServiceEntryRes& se, const std::string& host_fqdn, uint32_t port,
                      const std::string& subset, UpstreamConfig& up) const {
    if (!parts.tls || parts.tls->mode != "ISTIO_MUTUAL") return;
    const ClientTlsIn& in = *parts.tls;
    const MeshCertificates& mesh = *options_.mesh_certs;  // require_mesh_certs checked
    UpstreamTls t;
    t.mode = UpstreamTls::Mode::mutual;
    // Istio's SNI for in-mesh traffic names the cluster (model.BuildDNSSrvSubsetKey).
    t.sni = in.sni.empty() ? fmt::format("outbound_.{}_.{}_.{}", port, subset, host_fqdn) : in.sni;
    t.ca_certificates = mesh.root_cert;
    t.client_certificate = mesh.cert_chain;
    t.private_key = mesh.key;
    t.spiffe_trust_domain = mesh.trust_domain;
    t.subject_alt_names = in.subject_alt_names;
    if (t.subject_alt_names.empty()) t.subject_alt_names = se.subject_alt_names;
    if (t.subject_alt_names.empty())
      for (const auto& sa : se.service_accounts)
        t.subject_alt_names.push_back(fmt::format("spiffe://{}/{}", mesh.trust_domain, sa));
    up.tls = std::move(t);
  }

  // The DestinationRule whose trafficPolicy applies to a host: the first one
  // that has a trafficPolicy.
  const DestinationRuleRes* policy_rule(const std::string& host_fqdn) const {
    for (const auto* dr : rules_for(host_fqdn))
      if (dr->traffic_policy) return dr;
    auto all = rules_for(host_fqdn);
    return all.empty() ? nullptr : all.front();
  }

  // Upstream for (service, port), created on first use. A subset with its own
  // trafficPolicy gets an upstream of its own holding only its endpoints, since
  // an UpstreamConfig has one policy.
  std::string upstream_for(const ServiceEntryRes& se, const std::string& host,
                           const ServicePort& sp, const Meta& vs_meta, const std::string& path,
                           const SubsetIn* subset = nullptr) {
    bool own = subset && subset->traffic_policy;
    std::string name =
        fmt::format("outbound|{}|{}|{}", sp.number, own ? subset->name : std::string(), host);
    if (upstreams_.count(name)) return name;
    UpstreamConfig up;
    up.name = name;
    std::vector<DnsHost> dns_hosts;
    up.endpoints = endpoints_for(se, sp, vs_meta, path, dns_hosts);
    std::string host_fqdn = fqdn(host, se.meta.namespace_);
    up.service = service_identity(host_fqdn, se.meta.namespace_);
    if (own) {
      auto outside = [&](const Labels& labels) {
        for (const auto& [k, v] : subset->labels) {
          auto it = labels.find(k);
          if (it == labels.end() || it->second != v) return true;
        }
        return false;
      };
      std::erase_if(up.endpoints, [&](const Endpoint& e) { return outside(e.labels); });
      std::erase_if(dns_hosts, [&](const DnsHost& h) { return outside(h.labels); });
      // Keeps Destination::subset meaningful: every endpoint here belongs to it.
      up.subsets.push_back({subset->name, subset->labels});
    } else {
      std::set<std::string> names;
      for (const auto* dr : rules_for(host_fqdn))
        for (const auto& s : dr->subsets)
          if (names.insert(s.name).second) up.subsets.push_back({s.name, s.labels});
    }
    const DestinationRuleRes* dr = policy_rule(host_fqdn);
    PolicyParts parts = effective_policy(dr, own ? subset : nullptr, sp.number);
    apply_policy(parts, up);
    // Istio speaks HTTP/2 to HTTP2, GRPC and GRPC-WEB ports, and to HTTP
    // ones (here also those of no declared protocol) that h2UpgradePolicy
    // UPGRADE; DO_NOT_UPGRADE does not downgrade an HTTP/2 port.
    bool h2_port = sp.protocol == "HTTP2" || sp.protocol == "GRPC" || sp.protocol == "GRPC-WEB";
    bool http_port = sp.protocol == "HTTP" || sp.protocol.empty();
    if (h2_port || (http_port && parts.h2_upgrade_policy == "UPGRADE"))
      up.protocol = UpstreamProtocol::http2;
    if (parts.tls && !dr) {
      for (const auto* r : rules_for(host_fqdn)) dr = r;  // the subset's rule
    }
    apply_tls(parts, dr, host, up);
    apply_mesh_tls(parts, dr, se, host_fqdn, sp.number, own ? subset->name : std::string(), up);
    if (!dns_hosts.empty()) out_.dns.push_back(DnsUpstream{name, std::move(dns_hosts)});
    upstreams_[name] = std::move(up);
    upstream_order_.push_back(name);
    return name;
  }

  // A Destination {host, subset, port} -> upstream and subset names.
  Destination resolve_destination(const Meta& meta, const DestinationIn& d, const std::string& p) {
    std::string host;
    const ServiceEntryRes* se = find_service(fqdn(d.host, meta.namespace_), &host);
    if (!se && options_.resolve_unknown_hosts) se = unknown_host(d, &host);
    if (!se)
      fail(meta, p + ".host",
           fmt::format("host \"{}\" is not declared by any ServiceEntry or Service (or start "
                       "with --resolve-unknown-hosts dns)",
                       d.host));
    const ServicePort* sp = nullptr;
    if (d.port) {
      for (const auto& candidate : se->ports)
        if (candidate.number == *d.port) sp = &candidate;
      if (!sp)
        fail(meta, p + ".port.number",
             fmt::format("{} declares no port {} for host \"{}\"", se->meta.object(), *d.port,
                         d.host));
    } else if (se->ports.size() == 1) {
      sp = &se->ports[0];
    } else {
      fail(meta, p + ".port",
           fmt::format("required: {} declares {} ports for host \"{}\"", se->meta.object(),
                       se->ports.size(), d.host));
    }
    const SubsetIn* subset = nullptr;
    if (!d.subset.empty()) {
      for (const auto* dr : rules_for(fqdn(host, se->meta.namespace_)))
        for (const auto& s : dr->subsets)
          if (!subset && s.name == d.subset) subset = &s;
      if (!subset)
        fail(meta, p + ".subset",
             fmt::format("subset \"{}\" is not defined by any DestinationRule for host \"{}\"",
                         d.subset, d.host));
    }
    Destination dest;
    dest.upstream = upstream_for(*se, host, *sp, meta, p + ".host", subset);
    dest.subset = d.subset;
    if (!d.subset.empty()) warn_empty_subset(meta, p, dest);
    return dest;
  }

  void resolve_rule(RuleRef& ref) {
    const HttpRuleIn& rule = ref.rule;
    const Meta& meta = *ref.meta;
    size_t i = ref.index;
    if (!rule.route.empty()) {
      int64_t total = 0;
      for (size_t j = 0; j < rule.route.size(); ++j) {
        const auto& d = rule.route[j];
        std::string p = fmt::format("http[{}].route[{}].destination", i, j);
        Destination dest = resolve_destination(meta, d, p);
        // One destination takes all traffic whatever its weight (Istio).
        int64_t w = rule.route.size() == 1 ? 100 : d.weight.value_or(0);
        if (w > UINT32_MAX) fail(meta, fmt::format("http[{}].route[{}].weight", i, j), "too large");
        dest.weight = static_cast<uint32_t>(w);
        dest.request_headers = d.request_headers;
        dest.response_headers = d.response_headers;
        total += w;
        ref.destinations.push_back(std::move(dest));
      }
      if (total == 0) fail(meta, fmt::format("http[{}].route", i), "total destination weight is 0");
    }
    if (rule.mirrors)
      for (const auto& m : *rule.mirrors) {
        // A delegate inheriting the root's mirror: the path is the root's.
        Destination d = resolve_destination(meta, m.destination, m.path);
        ref.mirrors.push_back(Mirror{d.upstream, d.subset, m.percentage});
      }
  }

  void warn_empty_subset(const Meta& meta, const std::string& path, const Destination& d) {
    const UpstreamConfig& up = upstreams_[d.upstream];
    const Subset* subset = nullptr;
    for (const auto& s : up.subsets)
      if (s.name == d.subset) subset = &s;
    if (!subset) return;
    for (const auto& e : up.endpoints) {
      bool all = true;
      for (const auto& [k, v] : subset->labels) {
        auto it = e.labels.find(k);
        all = all && it != e.labels.end() && it->second == v;
      }
      if (all) return;
    }
    bool unlabelled = std::all_of(up.endpoints.begin(), up.endpoints.end(),
                                  [](const Endpoint& e) { return e.labels.empty(); });
    warn(fmt::format("{}: {}.subset: subset \"{}\" of {} selects no endpoints{}", meta.object(),
                     path, d.subset, d.upstream,
                     unlabelled && !up.endpoints.empty()
                         ? " (its endpoints have no labels: load the Pods behind them)"
                         : ""));
  }

  // --- listeners --------------------------------------------------------------------

  static bool host_visible(const std::string& server_host, const GatewayRes& g,
                           const VirtualServiceRes& vs, std::string* host) {
    auto slash = server_host.find('/');
    if (slash == std::string::npos) {
      *host = server_host;
      return true;
    }
    std::string ns = server_host.substr(0, slash);
    *host = server_host.substr(slash + 1);
    if (ns == "*") return true;
    if (ns == ".") return g.meta.namespace_ == vs.meta.namespace_;
    return ns == vs.meta.namespace_;
  }

  static bool catches_all(const Route& r) {
    if (r.direct_response || r.redirect || !r.destinations.empty()) {
      if (r.matches.empty()) return true;
      for (const auto& m : r.matches) {
        bool bare = !m.method && !m.authority && !m.scheme && m.headers.empty() &&
                    m.query_params.empty() && !m.port;
        bool any_uri = !m.uri ||
                       (m.uri->kind == StringMatch::Kind::prefix &&
                        (m.uri->value == "/" || m.uri->value.empty())) ||
                       (m.uri->kind == StringMatch::Kind::regex && m.uri->value == ".*");
        if (bare && any_uri) return true;
      }
    }
    return false;
  }

  // VirtualService tls routes served at the PASSTHROUGH servers of `port`, in
  // VirtualService and rule order; each match becomes one route.
  std::vector<TlsPassthroughRoute> passthrough_routes(uint16_t port,
                                                      const std::vector<ServerRef>& servers) {
    std::vector<TlsPassthroughRoute> out;
    bool any = false;
    for (const auto& s : servers) any = any || passes_through(s.gateway->servers[s.index]);
    if (!any) return out;
    for (const auto& vs : res_.virtual_services) {
      auto b = bound_.find(&vs);
      if (b == bound_.end()) continue;
      for (size_t i = 0; i < vs.tls.size(); ++i) {
        const TlsRuleIn& rule = vs.tls[i];
        for (size_t k = 0; k < rule.matches.size(); ++k) {
          const TlsMatchIn& m = rule.matches[k];
          std::string mp = fmt::format("tls[{}].match[{}]", i, k);
          if (m.source_labels || (m.port && *m.port != port)) continue;
          for (size_t j = 0; j < m.sni_hosts.size(); ++j) {
            bool in_vs = false;
            for (const auto& h : vs.hosts) in_vs = in_vs || intersect_hosts(m.sni_hosts[j], h);
            if (!in_vs)
              fail(vs.meta, fmt::format("{}.sniHosts[{}]", mp, j),
                   fmt::format("\"{}\" is not one of the VirtualService's hosts", m.sni_hosts[j]));
          }
          TlsPassthroughRoute route;
          for (const auto& key : b->second) {
            if (!m.gateways.empty() &&
                std::none_of(m.gateways.begin(), m.gateways.end(), [&](const std::string& gw) {
                  return gw != "mesh" && gateway_key(gw, vs.meta.namespace_) == key;
                }))
              continue;
            const GatewayRes& g = *gateways_.at(key);
            for (const auto& srv : g.servers) {
              if (srv.port != port || !passes_through(srv)) continue;
              for (const auto& sni : m.sni_hosts)
                for (const auto& sh : srv.hosts) {
                  std::string host;
                  if (!host_visible(sh, g, vs, &host)) continue;
                  auto d = intersect_hosts(sni, host);
                  if (d && std::find(route.sni_hosts.begin(), route.sni_hosts.end(), *d) ==
                               route.sni_hosts.end())
                    route.sni_hosts.push_back(*d);
                }
            }
          }
          if (route.sni_hosts.empty()) continue;
          const DestinationIn* chosen = &rule.route.front();
          for (const auto& d : rule.route)
            if (!d.weight || *d.weight > 0) chosen = &d;
          size_t at = static_cast<size_t>(chosen - rule.route.data());
          Destination dest = resolve_destination(
              vs.meta, *chosen, fmt::format("tls[{}].route[{}].destination", i, at));
          route.upstream = dest.upstream;
          route.subset = dest.subset;
          out.push_back(std::move(route));
        }
      }
    }
    if (out.empty())
      warn(
          fmt::format("port {}: PASSTHROUGH server(s) but no VirtualService tls route here; TLS "
                      "connections are closed",
                      port));
    return out;
  }

  // VirtualService tcp routes served at the TCP servers of `port` (TCP, or
  // TLS terminated here), in VirtualService and rule order; each match
  // becomes one route, a rule without matches one route for any client.
  std::vector<TcpRoute> tcp_routes(uint16_t port) {
    std::vector<TcpRoute> out;
    for (const auto& vs : res_.virtual_services) {
      auto b = bound_.find(&vs);
      if (b == bound_.end()) continue;
      for (size_t i = 0; i < vs.tcp.size(); ++i) {
        const TcpRuleIn& rule = vs.tcp[i];
        std::vector<TcpMatchIn> matches = rule.matches;
        if (matches.empty()) matches.emplace_back();
        for (size_t k = 0; k < matches.size(); ++k) {
          const TcpMatchIn& m = matches[k];
          if (m.source_labels || (m.port && *m.port != port)) continue;
          // Served when a Gateway it binds (and the match names) has a TCP
          // server on this port whose hosts it can see.
          bool served = false;
          for (const auto& key : b->second) {
            if (!m.gateways.empty() &&
                std::none_of(m.gateways.begin(), m.gateways.end(), [&](const std::string& gw) {
                  return gw != "mesh" && gateway_key(gw, vs.meta.namespace_) == key;
                }))
              continue;
            const GatewayRes& g = *gateways_.at(key);
            for (const auto& srv : g.servers) {
              if (srv.port != port || !carries_tcp(srv)) continue;
              for (const auto& sh : srv.hosts) {
                std::string host;
                if (!host_visible(sh, g, vs, &host)) continue;
                for (const auto& h : vs.hosts) served = served || intersect_hosts(h, host);
              }
            }
          }
          if (!served) continue;
          TcpRoute route;
          route.name = rule.matches.empty()
                           ? fmt::format("{}.tcp[{}]", vs.meta.display(), i)
                           : fmt::format("{}.tcp[{}].match[{}]", vs.meta.display(), i, k);
          if (!m.source_subnet.empty()) route.source_subnets.push_back(m.source_subnet);
          for (size_t j = 0; j < rule.route.size(); ++j) {
            const DestinationIn& d = rule.route[j];
            std::string dp = fmt::format("tcp[{}].route[{}]", i, j);
            Destination dest = resolve_destination(vs.meta, d, dp + ".destination");
            // One destination takes all connections whatever its weight (Istio).
            int64_t w = rule.route.size() == 1 ? 100 : d.weight.value_or(0);
            if (w > UINT32_MAX) fail(vs.meta, dp + ".weight", "too large");
            dest.weight = static_cast<uint32_t>(w);
            route.destinations.push_back(std::move(dest));
          }
          out.push_back(std::move(route));
        }
      }
    }
    if (out.empty())
      warn(
          fmt::format("port {}: TCP server(s) but no VirtualService tcp route here; "
                      "connections are closed",
                      port));
    return out;
  }

  // The router of one port while it is built: virtual hosts by lower-case
  // domain, and where each route came from (for warnings).
  struct RouteSource {
    const VirtualServiceRes* vs;
    size_t rule;
  };
  struct RouterBuild {
    RouterConfig router;
    std::map<std::string, size_t> vhost_index;  // lower-case domain -> index
    std::vector<std::vector<RouteSource>> sources;

    VirtualHost& host(const std::string& domain, size_t& index) {
      auto [it, fresh] = vhost_index.emplace(http::to_lower(domain), router.virtual_hosts.size());
      if (fresh) {
        router.virtual_hosts.push_back({domain, {domain}, {}});
        sources.emplace_back();
      }
      index = it->second;
      return router.virtual_hosts[index];
    }
  };

  static ListenerInfo listener_info(uint16_t port, const std::vector<ServerRef>& servers,
                                    bool tls_port) {
    ListenerInfo info;
    info.name = fmt::format("{}.{}", tls_port ? "https" : "http", port);
    info.port = port;
    for (const auto& s : servers) {
      const auto& srv = s.gateway->servers[s.index];
      ServerOrigin so{s.gateway->meta.display(), s.index, srv.name, srv.protocol, srv.hosts};
      if (is_tls(srv)) so.tls_mode = srv.tls->mode;
      info.servers.push_back(std::move(so));
    }
    return info;
  }

  // The domains `vs` serves on `port`, each with the keys of the gateways
  // through which it serves it there.
  std::vector<std::pair<std::string, std::set<std::string>>> served_domains(
      const VirtualServiceRes& vs, const std::vector<std::string>& gateway_keys, uint16_t port) {
    std::vector<std::pair<std::string, std::set<std::string>>> domains;
    for (const auto& key : gateway_keys) {
      const GatewayRes& g = *gateways_.at(key);
      for (const auto& srv : g.servers) {
        if (srv.port != port || passes_through(srv)) continue;
        for (const auto& vs_host : vs.hosts)
          for (const auto& sh : srv.hosts) {
            std::string host;
            if (!host_visible(sh, g, vs, &host)) continue;
            auto d = intersect_hosts(vs_host, host);
            if (!d) continue;
            auto it = std::find_if(domains.begin(), domains.end(), [&](const auto& e) {
              return http::to_lower(e.first) == http::to_lower(*d);
            });
            if (it == domains.end()) it = domains.insert(domains.end(), {*d, {}});
            it->second.insert(key);
          }
      }
    }
    return domains;
  }

  // The route a rule becomes at the gateways `active`: the match blocks that
  // apply there, or nothing when every block is dropped.
  std::optional<Route> gateway_route(const VirtualServiceRes& vs, const RuleRef& ref,
                                     const std::set<std::string>& active, RouteOrigin& origin) {
    const HttpRuleIn& rule = ref.rule;
    size_t i = ref.root_index;
    Route r;
    r.name = fmt::format("{}/{}/http[{}]", vs.meta.namespace_, vs.meta.name, i);
    if (!ref.delegate.empty()) r.name += fmt::format("/{}/http[{}]", ref.meta->key(), ref.index);
    r.origin = fmt::format("VirtualService {}", vs.meta.key());
    origin = RouteOrigin{vs.meta.display(), vs.meta.namespace_, i, vs.http[i].name, {}};
    if (!rule.source_object.empty()) {  // a Gateway API route's match
      r.origin = rule.source_object;
      origin.source = rule.source_object + " " + rule.source_field;
    }
    origin.delegate = ref.delegate;
    origin.delegate_rule_index = ref.index;
    origin.delegate_rule_name = ref.delegate_rule_name;
    for (size_t k = 0; k < rule.matches.size(); ++k) {
      const HttpMatchIn& mb = rule.matches[k];
      if (mb.source_labels) continue;  // mesh-only condition: never true here
      if (!mb.gateways.empty()) {
        bool applies = false;
        for (const auto& gw : mb.gateways)
          applies = applies || (gw != "mesh" && active.count(gateway_key(gw, vs.meta.namespace_)));
        if (!applies) continue;
      }
      r.matches.push_back(mb.matcher);
      origin.match_origin.push_back(k);
    }
    // Every match block dropped: the rule does not exist at this gateway.
    if (!rule.matches.empty() && r.matches.empty()) return std::nullopt;
    r.destinations = ref.destinations;
    r.direct_response = rule.direct_response;
    r.redirect = rule.redirect;
    r.rewrite = rule.rewrite;
    r.request_headers = rule.request_headers;
    r.response_headers = rule.response_headers;
    r.timeout = rule.timeout.value_or(std::chrono::milliseconds(0));
    r.retries = rule.retries.value_or(RetryPolicy{});
    r.fault = rule.fault;
    r.mirrors = ref.mirrors;
    r.cors = rule.cors;
    return r;
  }

  // The routes of `vs` on `port`, into every virtual host it serves there.
  void add_virtual_service(const VirtualServiceRes& vs, const std::vector<std::string>& keys,
                           uint16_t port, RouterBuild& build, ListenerInfo& info) {
    for (const auto& [domain, active] : served_domains(vs, keys, port)) {
      size_t v = 0;
      VirtualHost& vh = build.host(domain, v);
      for (const RuleRef& ref : rules_.at(&vs)) {
        RouteOrigin origin;
        auto r = gateway_route(vs, ref, active, origin);
        if (!r) continue;
        info.routes[r->name] = std::move(origin);
        vh.routes.push_back(std::move(*r));
        build.sources[v].push_back({&vs, ref.root_index});
      }
    }
  }

  // Rules after a catch-all can never match.
  void warn_unreachable_rules(const RouterBuild& build, uint16_t port) {
    for (size_t v = 0; v < build.router.virtual_hosts.size(); ++v) {
      const auto& vh = build.router.virtual_hosts[v];
      for (size_t i = 0; i < vh.routes.size(); ++i) {
        if (!catches_all(vh.routes[i])) continue;
        for (size_t j = i + 1; j < vh.routes.size(); ++j) {
          const auto& later = build.sources[v][j];
          const auto& first = build.sources[v][i];
          const HttpRuleIn& lr = later.vs->http[later.rule];
          if (!lr.source_object.empty()) {
            const HttpRuleIn& fr = first.vs->http[first.rule];
            warn(
                fmt::format("{}: {}: can never match on host \"{}\" port {}: {} {} catches every "
                            "request first",
                            lr.source_object, lr.source_field, vh.name, port, fr.source_object,
                            fr.source_field));
            continue;
          }
          warn(
              fmt::format("{}: http[{}]: rule can never match on host \"{}\" port {}: {} http[{}] "
                          "catches every request first",
                          later.vs->meta.object(), later.rule, vh.name, port,
                          first.vs->meta.object(), first.rule));
        }
        break;
      }
    }
  }

  // httpsRedirect: every host of such a server answers 301 to https, also
  // hosts no VirtualService serves (Istio adds a redirect-only virtual host).
  static void add_https_redirects(const std::vector<ServerRef>& servers, RouterBuild& build) {
    for (const auto& s : servers) {
      const auto& srv = s.gateway->servers[s.index];
      if (is_tls(srv) || !srv.tls || !srv.tls->https_redirect) continue;
      for (const auto& h : srv.hosts) {
        auto slash = h.find('/');
        std::string host = slash == std::string::npos ? h : h.substr(slash + 1);
        bool covered = false;
        for (auto& vh : build.router.virtual_hosts)
          if (intersect_hosts(vh.name, host)) {
            vh.https_redirect = true;
            covered = covered || http::to_lower(vh.name) == http::to_lower(host) || host == "*";
          }
        if (!covered && !build.vhost_index.count(http::to_lower(host))) {
          build.vhost_index.emplace(http::to_lower(host), build.router.virtual_hosts.size());
          VirtualHost vh{host, {host}, {}};
          vh.https_redirect = true;
          build.router.virtual_hosts.push_back(std::move(vh));
          build.sources.emplace_back();
        }
      }
    }
  }

  void build_listener(uint16_t port, const std::vector<ServerRef>& servers) {
    bool tls_port = is_tls(servers.front().gateway->servers[servers.front().index]);
    ListenerInfo info = listener_info(port, servers, tls_port);
    RouterBuild build;
    build.router.name = info.name;
    bool tcp_port = carries_tcp(servers.front().gateway->servers[servers.front().index]);
    for (const auto& vs : res_.virtual_services) {
      auto b = bound_.find(&vs);
      if (b != bound_.end() && !tcp_port) add_virtual_service(vs, b->second, port, build, info);
    }
    warn_unreachable_rules(build, port);
    add_https_redirects(servers, build);

    ListenerConfig listener;
    bool http_served = false;
    for (const auto& s : servers) {
      const auto& srv = s.gateway->servers[s.index];
      if (terminates(srv)) listener.tls_servers.push_back(tls_server(*s.gateway, s.index));
      http_served = http_served || !passes_through(srv);
    }
    if (tls_port && !tcp_port) listener.passthrough = passthrough_routes(port, servers);
    if (tcp_port) {
      listener.tcp_routes = tcp_routes(port);
      if (listener.tcp_routes.empty()) return;  // nothing to serve: no listener (warned)
      http_served = false;
    }
    if (build.router.virtual_hosts.empty() && http_served)
      warn(fmt::format("port {}: no VirtualService serves any host here; every request gets 404",
                       port));
    listener.name = info.name;
    listener.address = options_.bind_address;
    listener.port = options_.ephemeral_ports ? 0 : port;
    listener.http2_extended_connect = options_.http2_extended_connect;
    listener.router = build.router.name;
    out_.config.listeners.push_back(std::move(listener));
    out_.config.routers.push_back(std::move(build.router));
    out_.listeners.push_back(std::move(info));
  }

  const Resources& res_;
  const TranslateOptions& options_;
  const DnsTable& dns_;
  LoadedConfig out_;
  std::vector<std::string> warnings_;
  std::vector<ServiceEntryRes> registry_;  // the Kubernetes Services (kubernetes.cpp)
  std::deque<ServiceEntryRes> unknown_;    // --resolve-unknown-hosts (stable addresses)
  std::map<std::string, const GatewayRes*> gateways_;
  std::map<uint16_t, std::vector<ServerRef>> ports_;
  std::map<const VirtualServiceRes*, std::vector<std::string>> bound_;
  std::map<std::string, const VirtualServiceRes*> vs_by_key_;
  std::map<const VirtualServiceRes*, std::vector<RuleRef>> rules_;
  std::map<std::string, UpstreamConfig> upstreams_;
  std::vector<std::string> upstream_order_;
};

}  // namespace

const ListenerInfo* LoadedConfig::listener_for_port(uint16_t port) const {
  for (const auto& l : listeners)
    if (l.port == port) return &l;
  return nullptr;
}

std::vector<std::string> dns_names(const Parsed& parsed, const TranslateOptions& options) {
  std::vector<std::string> out = dns_names(parsed);
  if (!options.resolve_unknown_hosts) return out;
  // Destination hosts nothing declares (by name as written; a few extra
  // lookups of declared short names cost nothing at load).
  const Resources& res = *parsed.resources;
  std::set<std::string> names(out.begin(), out.end()), declared;
  for (const auto& se : res.service_entries)
    for (const auto& h : se.hosts) declared.insert(http::to_lower(h));
  for (const auto& s : res.services) {
    declared.insert(s.meta.name);
    declared.insert(s.meta.name + "." + s.meta.namespace_);
    declared.insert(s.meta.name + "." + s.meta.namespace_ + ".svc.cluster.local");
  }
  auto add = [&](const DestinationIn& d) {
    std::string h = http::to_lower(d.host);
    if (h.find('*') == std::string::npos && !is_ip(h) && !declared.count(h)) names.insert(h);
  };
  for (const auto& vs : res.virtual_services) {
    for (const auto& r : vs.http) {
      for (const auto& d : r.route) add(d);
      if (r.mirrors)
        for (const auto& m : *r.mirrors) add(m.destination);
    }
    for (const auto& r : vs.tcp)
      for (const auto& d : r.route) add(d);
    for (const auto& r : vs.tls)
      for (const auto& d : r.route) add(d);
  }
  return {names.begin(), names.end()};
}

std::vector<std::string> dns_names(const Parsed& parsed) {
  std::set<std::string> names;
  for (const auto& s : parsed.resources->services)
    if (!s.external_name.empty() && !is_ip(s.external_name)) names.insert(s.external_name);
  for (const auto& se : parsed.resources->service_entries) {
    if (se.resolution != "DNS" && se.resolution != "DNS_ROUND_ROBIN") continue;
    if (se.endpoints.empty()) {
      for (const auto& h : se.hosts)
        if (h.find('*') == std::string::npos && !is_ip(h)) names.insert(h);
    }
    for (const auto& ep : se.endpoints)
      if (!is_ip(ep.address)) names.insert(ep.address);
  }
  return {names.begin(), names.end()};
}

Result<LoadedConfig> translate(const Parsed& parsed, const TranslateOptions& options,
                               const DnsTable& dns) {
  try {
    // Gateway API objects become Istio Gateways and VirtualServices first.
    std::optional<Resources> converted;
    std::vector<RouteStatus> route_status;
    std::vector<std::string> gateway_api_notes;
    if (parsed.resources->gateway_api) {
      converted = *parsed.resources;
      convert_gateway_api(*converted, options.gateway_class, route_status, gateway_api_notes);
    }
    if (any_unexported(converted ? *converted : *parsed.resources, options.gateway_namespace)) {
      if (!converted) converted = *parsed.resources;
      drop_unexported(*converted, options.gateway_namespace, gateway_api_notes);
    }
    require_mesh_certs(converted ? *converted : *parsed.resources, options);
    Translator t(converted ? *converted : *parsed.resources, options, dns);
    LoadedConfig out = t.run();
    out.route_status = std::move(route_status);
    out.warnings.insert(out.warnings.end(), gateway_api_notes.begin(), gateway_api_notes.end());
    apply_envoy_filters(*parsed.resources, options, out);
    apply_telemetry(*parsed.resources, options, out);
    out.warnings.insert(out.warnings.begin(), parsed.warnings.begin(), parsed.warnings.end());
    return out;
  } catch (const LoadError& e) {
    return e.error;
  }
}

Result<LoadedConfig> load_files(const std::vector<std::string>& paths,
                                const TranslateOptions& options) {
  auto parsed = parse_files(paths);
  if (!parsed) return parsed.error();
  auto table = resolve_hostnames(dns_names(*parsed, options));
  return translate(*parsed, options, table);
}

Result<LoadedConfig> load_string(std::string_view yaml, const TranslateOptions& options,
                                 const DnsTable& dns) {
  auto parsed = parse_string(yaml);
  if (!parsed) return parsed.error();
  DnsTable table = dns;
  for (const auto& name : dns_names(*parsed, options))
    if (!table.count(name)) {
      auto more = resolve_hostnames({name});
      table[name] = more[name];
    }
  return translate(*parsed, options, table);
}

}  // namespace sluice::istio
