// The Kubernetes service registry: Services, Endpoints, EndpointSlices and
// Pods as `kubectl get -o yaml` prints them. translate() sees each Service as
// a STATIC ServiceEntry for its FQDN (name.namespace.svc.cluster.local) whose
// endpoints are the ready addresses behind it, as Istio's Kubernetes
// registry does (pilot/pkg/serviceregistry/kube).

#include <asio/ip/address.hpp>

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "http/tokens.hpp"
#include "istio/model.hpp"
#include "istio/yaml_load.hpp"

namespace sluice::istio {
namespace {

constexpr std::string_view kClusterSuffix = ".svc.cluster.local";

bool is_ip(const std::string& s) {
  asio::error_code ec;
  asio::ip::make_address(s, ec);
  return !ec;
}

// Top-level fields: anything else is an error, like every other kind.
void check_top(const YAML::Node& doc, const Meta& m, std::initializer_list<const char*> known) {
  for (const auto& kv : doc) {
    std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    bool ok = false;
    for (const char* key : known) ok = ok || k == key;
    if (!ok) fail(m, k, fmt::format("unknown field \"{}\"", k));
  }
}

// Server-managed metadata is accepted as kubectl prints it; only labels are
// read (Pods, EndpointSlices).
Labels metadata_labels(const YAML::Node& doc, const Meta& m) {
  YAML::Node md = doc["metadata"];
  if (!md || !md.IsMap()) return {};
  YAML::Node labels = md["labels"];
  if (!labels || labels.IsNull()) return {};
  return label_map(labels, m, "metadata.labels");
}

// A targetRef naming a Pod: "ns/name" (the namespace defaults to the
// object's); any other kind: empty.
std::string pod_ref(const YAML::Node& n, const Meta& m, const std::string& path) {
  if (!n) return {};
  Fields f(n, m, path);
  std::string kind = f.get("kind") ? scalar(f.get("kind"), m, f.sub("kind")) : "";
  std::string name = f.get("name") ? scalar(f.get("name"), m, f.sub("name")) : "";
  std::string ns =
      f.get("namespace") ? scalar(f.get("namespace"), m, f.sub("namespace")) : m.namespace_;
  f.ignore({"apiVersion", "uid", "resourceVersion", "fieldPath"});
  f.finish();
  if (kind != "Pod" || name.empty()) return {};
  return ns + "/" + name;
}

std::string address_ip(const YAML::Node& n, const Meta& m, const std::string& path) {
  std::string ip = scalar(n, m, path);
  if (!is_ip(ip)) fail(m, path, fmt::format("\"{}\" is not an IP address", ip));
  return ip;
}

// An endpoint port list (Endpoints subsets[].ports, EndpointSlice ports):
// name -> number, TCP only.
std::map<std::string, uint16_t> endpoint_ports(const YAML::Node& n, const Meta& m,
                                               const std::string& path) {
  std::map<std::string, uint16_t> out;
  if (!n) return out;
  require_list(n, m, path);
  for (size_t i = 0; i < n.size(); ++i) {
    std::string p = index(path, i);
    Fields f(n[i], m, p);
    std::string name = f.get("name") ? scalar(f.get("name"), m, f.sub("name")) : "";
    std::string protocol =
        f.get("protocol") ? scalar(f.get("protocol"), m, f.sub("protocol")) : "TCP";
    // An EndpointSlice port without a number means "all ports": nothing to map.
    YAML::Node number = f.get("port");
    f.ignore({"appProtocol"});
    f.finish();
    if (!number || protocol != "TCP") continue;
    uint16_t port = port_number(number, m, f.sub("port"));
    if (!out.emplace(name, port).second)
      fail(m, f.sub("name"), fmt::format("port name \"{}\" is used twice", name));
  }
  return out;
}

// Istio's protocol for a Service port (ConvertProtocol): appProtocol
// first (kubernetes.io/h2c is HTTP/2), then the port name or its prefix
// before '-'. Only the protocols sluice treats apart are named.
std::string service_port_protocol(const std::string& app_protocol, const std::string& port_name) {
  auto known = [](std::string p) -> std::string {
    p = http::to_lower(p);
    if (p == "kubernetes.io/h2c" || p == "http2") return "HTTP2";
    if (p == "http" || p == "kubernetes.io/ws" || p == "kubernetes.io/wss") return "HTTP";
    if (p == "grpc") return "GRPC";
    if (p == "grpc-web") return "GRPC-WEB";
    return "";
  };
  if (std::string p = known(app_protocol); !p.empty()) return p;
  if (std::string p = known(port_name); !p.empty()) return p;
  return known(port_name.substr(0, port_name.find('-')));
}

K8sServiceRes parse_service(const YAML::Node& doc, const Meta& meta,
                            std::vector<std::string>& warnings, bool* skip) {
  K8sServiceRes out;
  out.meta = meta;
  const Meta& m = out.meta;
  check_top(doc, m, {"apiVersion", "kind", "metadata", "spec", "status"});
  YAML::Node spec = doc["spec"] ? doc["spec"] : YAML::Node();  // no spec: no ports
  Fields f(spec, m, "spec");
  std::string type = f.get("type") ? scalar(f.get("type"), m, f.sub("type")) : "ClusterIP";
  std::string cluster_ip =
      f.get("clusterIP") ? scalar(f.get("clusterIP"), m, f.sub("clusterIP")) : "";
  if (type != "ClusterIP" && type != "NodePort" && type != "LoadBalancer" && type != "ExternalName")
    fail(m, f.sub("type"), fmt::format("unknown type \"{}\"", type));
  // An ExternalName Service is its DNS name (re-resolved in the background);
  // a headless one (clusterIP None) needs nothing else: sluice always routes
  // to the endpoints, never to a cluster IP.
  if (type == "ExternalName") {
    if (!f.get("externalName")) fail(m, f.sub("externalName"), "required with type ExternalName");
    out.external_name = http::to_lower(scalar(f.get("externalName"), m, f.sub("externalName")));
  }
  if (YAML::Node md = doc["metadata"]; md && md.IsMap() && md["annotations"].IsMap())
    if (YAML::Node e = md["annotations"]["networking.istio.io/exportTo"]; e && !e.IsNull())
      http::for_each_list_item(scalar(e, m, "metadata.annotations"), [&](std::string_view item) {
        out.meta.export_to.emplace_back(item);
      });
  if (auto v = f.get("ports")) {
    require_list(v, m, f.sub("ports"));
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = index(f.sub("ports"), i);
      Fields pf(v[i], m, p);
      K8sServicePort sp;
      sp.port = port_number(pf.require("port"), m, pf.sub("port"));
      if (auto n = pf.get("name")) sp.name = scalar(n, m, pf.sub("name"));
      std::string protocol =
          pf.get("protocol") ? scalar(pf.get("protocol"), m, pf.sub("protocol")) : "TCP";
      if (protocol != "TCP" && protocol != "UDP" && protocol != "SCTP")
        fail(m, pf.sub("protocol"), fmt::format("unknown protocol \"{}\"", protocol));
      if (auto n = pf.get("appProtocol")) sp.app_protocol = scalar(n, m, pf.sub("appProtocol"));
      if (auto n = pf.get("targetPort")) {
        std::string text = scalar(n, m, pf.sub("targetPort"));
        bool numeric = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
        if (numeric)
          sp.target_number = port_number(n, m, pf.sub("targetPort"));
        else if (text.empty())
          fail(m, pf.sub("targetPort"), "must be a port number or name");
        else
          sp.target_name = text;
      }
      pf.ignore({"nodePort"});
      pf.finish();
      if (protocol != "TCP") continue;  // the gateway proxies TCP only
      for (const auto& other : out.ports) {
        if (other.port == sp.port)
          fail(m, pf.sub("port"), fmt::format("port {} is declared twice", sp.port));
        if (other.name == sp.name)
          fail(m, pf.sub("name"),
               sp.name.empty() ? std::string("required when a Service has several ports")
                               : fmt::format("port name \"{}\" is used twice", sp.name));
      }
      out.ports.push_back(std::move(sp));
    }
  }
  f.ignore({"selector", "clusterIP", "clusterIPs", "externalIPs", "externalName", "sessionAffinity",
            "sessionAffinityConfig", "externalTrafficPolicy", "internalTrafficPolicy",
            "healthCheckNodePort", "ipFamilies", "ipFamilyPolicy", "loadBalancerClass",
            "loadBalancerIP", "loadBalancerSourceRanges", "allocateLoadBalancerNodePorts",
            "publishNotReadyAddresses", "trafficDistribution"});
  f.finish();
  return out;
}

// core v1 Endpoints: subsets of addresses (ready), notReadyAddresses and the
// ports they all serve.
K8sEndpointsRes parse_endpoints(const YAML::Node& doc, const Meta& meta) {
  K8sEndpointsRes out;
  out.meta = meta;
  out.service = meta.name;
  const Meta& m = out.meta;
  check_top(doc, m, {"apiVersion", "kind", "metadata", "subsets"});
  YAML::Node subsets = doc["subsets"];
  if (!subsets || subsets.IsNull()) return out;
  require_list(subsets, m, "subsets");
  for (size_t i = 0; i < subsets.size(); ++i) {
    std::string sp = index("subsets", i);
    Fields sf(subsets[i], m, sp);
    auto ports = endpoint_ports(sf.get("ports"), m, sf.sub("ports"));
    for (const char* key : {"addresses", "notReadyAddresses"}) {
      YAML::Node list = sf.get(key);
      if (!list) continue;
      require_list(list, m, sf.sub(key));
      for (size_t j = 0; j < list.size(); ++j) {
        std::string ap = index(sf.sub(key), j);
        Fields af(list[j], m, ap);
        K8sEndpoint e;
        e.ip = address_ip(af.require("ip"), m, af.sub("ip"));
        e.ready = std::string_view(key) == "addresses";
        e.pod = pod_ref(af.get("targetRef"), m, af.sub("targetRef"));
        e.ports = ports;
        e.field = ap;
        af.ignore({"hostname", "nodeName"});
        af.finish();
        out.endpoints.push_back(std::move(e));
      }
    }
    sf.finish();
  }
  return out;
}

// discovery.k8s.io/v1 EndpointSlice: the Service is named by the
// kubernetes.io/service-name label; conditions.ready unset means ready.
K8sEndpointsRes parse_endpoint_slice(const YAML::Node& doc, const Meta& meta,
                                     std::vector<std::string>& warnings, bool* skip) {
  K8sEndpointsRes out;
  out.meta = meta;
  const Meta& m = out.meta;
  check_top(doc, m, {"apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"});
  out.labels = metadata_labels(doc, m);
  auto owner = out.labels.find("kubernetes.io/service-name");
  std::string type =
      scalar(doc["addressType"] ? doc["addressType"] : YAML::Node(""), m, "addressType");
  if (type != "IPv4" && type != "IPv6" && type != "FQDN")
    fail(m, "addressType", fmt::format("must be IPv4, IPv6 or FQDN, got \"{}\"", type));
  if (owner == out.labels.end() || type == "FQDN") {
    warnings.push_back(
        fmt::format("{}: {}; ignored", m.object(),
                    type == "FQDN" ? "addressType FQDN is not implemented yet"
                                   : "no kubernetes.io/service-name label, so no Service owns it"));
    *skip = true;
    return out;
  }
  out.service = owner->second;
  auto ports = endpoint_ports(doc["ports"], m, "ports");
  YAML::Node eps = doc["endpoints"];
  if (!eps || eps.IsNull()) return out;
  require_list(eps, m, "endpoints");
  for (size_t i = 0; i < eps.size(); ++i) {
    std::string ep = index("endpoints", i);
    Fields ef(eps[i], m, ep);
    YAML::Node addresses = ef.require("addresses");
    require_list(addresses, m, ef.sub("addresses"));
    bool ready = true;
    if (auto c = ef.get("conditions")) {
      Fields cf(c, m, ef.sub("conditions"));
      if (auto r = cf.get("ready")) ready = boolean(r, m, cf.sub("ready"));
      cf.ignore({"serving", "terminating"});
      cf.finish();
    }
    std::string pod = pod_ref(ef.get("targetRef"), m, ef.sub("targetRef"));
    ef.ignore({"hostname", "nodeName", "zone", "hints", "deprecatedTopology"});
    ef.finish();
    // Kubernetes uses only the first address of an endpoint.
    for (size_t j = 0; j < addresses.size() && j < 1; ++j) {
      K8sEndpoint e;
      e.ip = address_ip(addresses[j], m, index(ef.sub("addresses"), j));
      e.ready = ready;
      e.pod = pod;
      e.ports = ports;
      e.field = ep;
      out.endpoints.push_back(std::move(e));
    }
  }
  return out;
}

K8sPodRes parse_pod(const YAML::Node& doc, const Meta& meta) {
  K8sPodRes out;
  out.meta = meta;
  const Meta& m = out.meta;
  check_top(doc, m, {"apiVersion", "kind", "metadata", "spec", "status"});
  out.labels = metadata_labels(doc, m);
  // Only the service account is read from the spec (the Pod's mesh identity).
  if (YAML::Node spec = doc["spec"]; spec && spec.IsMap())
    for (const char* key : {"serviceAccountName", "serviceAccount"})
      if (YAML::Node sa = spec[key]; sa && !sa.IsNull()) {
        out.service_account = scalar(sa, m, std::string("spec.") + key);
        break;
      }
  YAML::Node status = doc["status"];
  if (!status || !status.IsMap()) return out;
  if (YAML::Node ip = status["podIP"]; ip && !ip.IsNull())
    out.ips.push_back(address_ip(ip, m, "status.podIP"));
  if (YAML::Node ips = status["podIPs"]; ips && !ips.IsNull()) {
    require_list(ips, m, "status.podIPs");
    for (size_t i = 0; i < ips.size(); ++i) {
      if (!ips[i].IsMap() || !ips[i]["ip"]) continue;
      std::string ip = address_ip(ips[i]["ip"], m, index("status.podIPs", i) + ".ip");
      if (std::find(out.ips.begin(), out.ips.end(), ip) == out.ips.end()) out.ips.push_back(ip);
    }
  }
  return out;
}

}  // namespace

bool parse_kubernetes(const YAML::Node& doc, const Meta& meta, const std::string& api,
                      Resources& res, std::set<std::string>& seen,
                      std::vector<std::string>& warnings) {
  const std::string& kind = meta.kind;
  bool core = api == "v1" &&
              (kind == "Service" || kind == "Endpoints" || kind == "Pod" || kind == "Namespace");
  bool discovery = api == "discovery.k8s.io/v1" && kind == "EndpointSlice";
  if (!core && !discovery) return false;
  if (meta.name.empty()) fail(meta, "metadata.name", "required field is missing");
  // A Namespace is cluster-scoped: its metadata has no namespace.
  if (!seen.insert(kind + "/" + (kind == "Namespace" ? meta.name : meta.key())).second)
    fail(meta, "metadata.name", "defined more than once");
  bool skip = false;
  if (kind == "Service") {
    auto s = parse_service(doc, meta, warnings, &skip);
    if (!skip) res.services.push_back(std::move(s));
  } else if (kind == "Endpoints") {
    res.endpoints.push_back(parse_endpoints(doc, meta));
  } else if (kind == "EndpointSlice") {
    auto s = parse_endpoint_slice(doc, meta, warnings, &skip);
    if (!skip) res.endpoints.push_back(std::move(s));
  } else if (kind == "Pod") {
    res.pods.push_back(parse_pod(doc, meta));
  }
  return true;
}

std::string registry_host(const Resources& res, const std::string& host) {
  if (res.services.empty()) return host;
  std::string h = http::to_lower(host);
  if (h.ends_with(".svc")) h.resize(h.size() - 4);
  size_t dot = h.find('.');
  if (dot == std::string::npos || h.find('.', dot + 1) != std::string::npos) return host;
  std::string name = h.substr(0, dot), ns = h.substr(dot + 1);
  for (const auto& s : res.services)
    if (s.meta.name == name && s.meta.namespace_ == ns)
      return name + "." + ns + std::string(kClusterSuffix);
  return host;
}

std::vector<ServiceEntryRes> registry_entries(const Resources& res,
                                              std::vector<std::string>& warnings) {
  std::vector<ServiceEntryRes> out;
  // Pods by "ns/name", and by IP (an IP may be shared: host-network Pods).
  std::map<std::string, const K8sPodRes*> pods;
  std::multimap<std::string, const K8sPodRes*> pods_by_ip;
  for (const auto& p : res.pods) {
    pods[p.meta.key()] = &p;
    for (const auto& ip : p.ips) pods_by_ip.emplace(ip, &p);
  }
  for (const auto& svc : res.services) {
    ServiceEntryRes se;
    se.meta = svc.meta;
    se.hosts = {svc.meta.name + "." + svc.meta.namespace_ + std::string(kClusterSuffix)};
    se.resolution = "STATIC";
    if (!svc.external_name.empty()) {
      // Like a DNS ServiceEntry with one endpoint: the name, on each port.
      se.resolution = "DNS";
      WorkloadEndpoint we;
      we.address = svc.external_name;
      we.only_listed_ports = true;
      for (const auto& p : svc.ports) {
        se.ports.push_back(ServicePort{p.port, p.name, "", std::nullopt});
        we.ports[p.name] = p.port;
      }
      se.endpoints.push_back(std::move(we));
      out.push_back(std::move(se));
      continue;
    }
    for (const auto& p : svc.ports) {
      ServicePort sp;
      sp.number = p.port;
      sp.name = p.name;
      sp.protocol = service_port_protocol(p.app_protocol, p.name);
      // Used only for an endpoint that lists no ports at all.
      if (p.target_name.empty()) sp.target_port = p.target_number.value_or(p.port);
      se.ports.push_back(std::move(sp));
    }
    // Istio reads EndpointSlices when there are any, else Endpoints.
    std::vector<const K8sEndpointsRes*> sources;
    for (const auto& e : res.endpoints)
      if (e.meta.kind == "EndpointSlice" && e.service == svc.meta.name &&
          e.meta.namespace_ == svc.meta.namespace_)
        sources.push_back(&e);
    if (sources.empty())
      for (const auto& e : res.endpoints)
        if (e.meta.kind == "Endpoints" && e.service == svc.meta.name &&
            e.meta.namespace_ == svc.meta.namespace_)
          sources.push_back(&e);
    std::set<std::pair<std::string, std::map<std::string, uint16_t>>> added;
    std::vector<bool> port_served(svc.ports.size(), false);
    for (const auto* src : sources)
      for (const auto& e : src->endpoints) {
        if (!e.ready) continue;
        WorkloadEndpoint we;
        we.address = e.ip;
        we.only_listed_ports = true;
        for (size_t i = 0; i < svc.ports.size(); ++i) {
          const K8sServicePort& p = svc.ports[i];
          // The endpoints controller names endpoint ports after the Service's
          // ports, with the target port already resolved to a number.
          auto it = e.ports.find(p.name);
          if (it == e.ports.end() && !p.target_name.empty()) it = e.ports.find(p.target_name);
          if (it != e.ports.end())
            we.ports[p.name] = it->second;
          else if (e.ports.empty() && p.target_name.empty())
            we.ports[p.name] = p.target_number.value_or(p.port);
          else
            continue;
          port_served[i] = true;
        }
        if (we.ports.empty() || !added.emplace(we.address, we.ports).second) continue;
        const K8sPodRes* pod = nullptr;
        if (!e.pod.empty()) {
          if (auto it = pods.find(e.pod); it != pods.end()) pod = it->second;
        } else {
          auto [lo, hi] = pods_by_ip.equal_range(e.ip);
          for (auto it = lo; it != hi; ++it)
            if (!pod || it->second->meta.namespace_ == svc.meta.namespace_) pod = it->second;
        }
        if (pod) {
          std::string sa = fmt::format("ns/{}/sa/{}", pod->meta.namespace_, pod->service_account);
          if (std::find(se.service_accounts.begin(), se.service_accounts.end(), sa) ==
              se.service_accounts.end())
            se.service_accounts.push_back(std::move(sa));
        }
        if (pod)
          we.labels = pod->labels;
        else if (src->meta.kind == "EndpointSlice")
          we.labels = src->labels;
        se.endpoints.push_back(std::move(we));
      }
    for (size_t i = 0; i < svc.ports.size(); ++i)
      if (!port_served[i] && !svc.ports[i].target_name.empty() && !sources.empty())
        warnings.push_back(fmt::format(
            "{}: spec.ports[{}].targetPort: no ready endpoint has a port \"{}\" or \"{}\"",
            svc.meta.object(), i, svc.ports[i].name, svc.ports[i].target_name));
    out.push_back(std::move(se));
  }
  return out;
}

}  // namespace sluice::istio
