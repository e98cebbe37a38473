// The Kubernetes service registry: Services, Endpoints, EndpointSlices and
// Pods next to Istio's YAML, parsed and resolved (lib/istio/kubernetes.cpp),
// and Bookinfo served end to end through it.

#include <doctest/doctest.h>

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>

#include <fmt/format.h>

#include "istio_test_util.hpp"
#include "sluice/sluice.hpp"
#include "support/fake_upstream.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"

namespace kubernetes_test {

using namespace sluice;
using namespace sluice::test;

namespace {

const UpstreamConfig* find_upstream(const istio::LoadedConfig& loaded, const std::string& name) {
  for (const auto& u : loaded.config.upstreams)
    if (u.name == name) return &u;
  return nullptr;
}

std::vector<uint16_t> ports_of(const UpstreamConfig& u) {
  std::vector<uint16_t> out;
  for (const auto& e : u.endpoints) out.push_back(e.port);
  std::sort(out.begin(), out.end());
  return out;
}

// Gateway and a VirtualService in namespace `ns` routing "/" to `host`.
std::string route_to(const std::string& host, const std::string& ns = "default",
                     const std::string& subset = "") {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: {1}}}
spec:
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: {1}}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - destination: {{host: {0}{2}}}
)",
                     host, ns, subset.empty() ? "" : ", subset: " + subset);
}

// A Service "web" in `ns` on port 80 -> 8080, with one ready endpoint.
std::string web_service(const std::string& ns = "default") {
  return fmt::format(R"(
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {0}}}
spec:
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: web, namespace: {0}}}
subsets:
- addresses: [{{ip: 10.0.0.5}}]
  ports: [{{port: 8080}}]
)",
                     ns);
}

const char* kBookinfo[] = {"bookinfo-gateway.yaml", "bookinfo-kubernetes.yaml",
                           "destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml"};

std::string bookinfo(const std::map<std::string, std::string>& ports = dummy_ports()) {
  return fixtures({kBookinfo[0], kBookinfo[1], kBookinfo[2], kBookinfo[3]}, ports);
}

}  // namespace

TEST_CASE("kubernetes: Bookinfo loads with Services, Endpoints, EndpointSlices and Pods") {
  auto loaded = load_ok(bookinfo());
  const auto* reviews = find_upstream(loaded, "outbound|9080||reviews.default.svc.cluster.local");
  REQUIRE(reviews != nullptr);
  // v3's address is in notReadyAddresses: not an endpoint.
  CHECK(ports_of(*reviews) == std::vector<uint16_t>{19081, 19082});
  for (const auto& e : reviews->endpoints) {
    CHECK(e.address == "127.0.0.1");
    CHECK(e.labels.at("app") == "reviews");
    CHECK(e.labels.at("version") == (e.port == 19081 ? "v1" : "v2"));
  }
  CHECK(reviews->service ==
        ServiceIdentity{"reviews.default.svc.cluster.local", "reviews", "default"});
  REQUIRE(reviews->subsets.size() == 3);
  // productpage: targetPort "http-web" through the EndpointSlice's port.
  const auto* pp = find_upstream(loaded, "outbound|9080||productpage.default.svc.cluster.local");
  REQUIRE(pp != nullptr);
  CHECK(ports_of(*pp) == std::vector<uint16_t>{19080});
  CHECK(pp->endpoints.at(0).labels.at("version") == "v1");
}

TEST_CASE("kubernetes: short, namespaced and FQDN hosts name the same Service") {
  for (std::string host :
       {"web", "web.default", "web.default.svc", "web.default.svc.cluster.local", "WEB.Default"}) {
    CAPTURE(host);
    auto loaded = load_ok(route_to(host) + web_service());
    REQUIRE(loaded.config.upstreams.size() == 1);
    const auto& up = loaded.config.upstreams[0];
    CHECK(up.name == "outbound|80||web.default.svc.cluster.local");
    CHECK(up.endpoints == std::vector<Endpoint>{{"10.0.0.5", 8080, {}, 1}});
    CHECK(up.service == ServiceIdentity{"web.default.svc.cluster.local", "web", "default"});
  }
}

TEST_CASE("kubernetes: a short name resolves in the VirtualService's namespace") {
  // VirtualService in "default", Service in "shop": "web" is web.default.
  std::string e = load_error(route_to("web") + web_service("shop"));
  CHECK(e ==
        "VirtualService vs: http[0].route[0].destination.host: host \"web\" is not "
        "declared by any ServiceEntry or Service (or start with --resolve-unknown-hosts dns)");
  auto loaded = load_ok(route_to("web.shop") + web_service("shop"));
  CHECK(loaded.config.upstreams.at(0).service ==
        ServiceIdentity{"web.shop.svc.cluster.local", "web", "shop"});
  auto same_ns = load_ok(route_to("web", "shop") + web_service("shop"));
  CHECK(same_ns.config.upstreams.at(0).name == "outbound|80||web.shop.svc.cluster.local");
}

TEST_CASE("kubernetes: a host in no registry and no ServiceEntry stays an error") {
  std::string e = load_error(route_to("ratings") + web_service());
  CHECK(e ==
        "VirtualService vs: http[0].route[0].destination.host: host \"ratings\" is not "
        "declared by any ServiceEntry or Service (or start with --resolve-unknown-hosts dns)");
}

TEST_CASE("kubernetes: a ServiceEntry for the same host takes precedence") {
  std::string se = R"(
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web-se}
spec:
  hosts: [web.default.svc.cluster.local]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.9.9.9}]
)";
  auto loaded = load_ok(route_to("web") + web_service() + se);
  CHECK(loaded.config.upstreams.at(0).endpoints.at(0).address == "10.9.9.9");
}

TEST_CASE("kubernetes: Pod labels by targetRef, else by status.podIP, else none") {
  std::string dr = R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}]
)";
  std::string pod = R"(
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {version: v1}}
spec: {containers: [{name: web}]}
status: {podIP: 10.0.0.5, podIPs: [{ip: 10.0.0.5}]}
)";
  SUBCASE("by IP") {
    auto loaded = load_ok(route_to("web", "default", "v1") + web_service() + dr + pod);
    CHECK(loaded.config.upstreams.at(0).endpoints.at(0).labels == Labels{{"version", "v1"}});
    CHECK_FALSE(has_warning(loaded, "selects no endpoints"));
  }
  SUBCASE("a targetRef to another Pod wins over the IP") {
    std::string svc = R"(
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: web}
subsets:
- addresses: [{ip: 10.0.0.5, targetRef: {kind: Pod, name: web-2}}]
  ports: [{port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, labels: {version: v2}}
)";
    auto loaded = load_ok(route_to("web") + svc + dr + pod);
    CHECK(loaded.config.upstreams.at(0).endpoints.at(0).labels == Labels{{"version", "v2"}});
  }
  SUBCASE("no label source: the subset selects nothing, with a warning naming it") {
    auto loaded = load_ok(route_to("web", "default", "v1") + web_service() + dr);
    CHECK(loaded.config.upstreams.at(0).endpoints.at(0).labels.empty());
    CHECK(has_warning(loaded,
                      "VirtualService vs: http[0].route[0].destination.subset: subset "
                      "\"v1\" of outbound|80||web.default.svc.cluster.local selects no "
                      "endpoints (its endpoints have no labels"));
  }
}

TEST_CASE("kubernetes: EndpointSlices: ready only, preferred over Endpoints, first address") {
  std::string y = route_to("web") + R"(
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: admin, port: 9000, targetPort: 9901}
---
apiVersion: v1
kind: Endpoints
metadata: {name: web}
subsets:
- addresses: [{ip: 10.0.0.99}]
  ports: [{name: http, port: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  labels: {kubernetes.io/service-name: web, track: stable}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1, 10.0.0.77]
- addresses: [10.0.0.2]
  conditions: {ready: false, serving: true}
ports: [{name: http, port: 8080}, {name: admin, port: 9901}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-def
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.0.0.3]
  conditions: {ready: true}
ports: [{name: http, port: 8081}]
)";
  std::string with_port = y;
  with_port.replace(with_port.find("{host: web}"), 11, "{host: web, port: {number: 80}}");
  auto loaded = load_ok(with_port);
  const auto& up = loaded.config.upstreams.at(0);
  REQUIRE(up.endpoints.size() == 2);
  CHECK(up.endpoints[0].address == "10.0.0.1");
  CHECK(up.endpoints[0].port == 8080);
  // No Pods: the EndpointSlice's labels.
  CHECK(up.endpoints[0].labels.at("track") == "stable");
  CHECK(up.endpoints[1].address == "10.0.0.3");
  CHECK(up.endpoints[1].port == 8081);
  // Two ports: a destination must say which.
  std::string e = load_error(y);
  CHECK(e ==
        "VirtualService vs: http[0].route[0].destination.port: required: Service web "
        "declares 2 ports for host \"web\"");
  std::string admin = with_port;
  admin.replace(admin.find("number: 80}"), 11, "number: 9000}");
  auto a = load_ok(admin);
  // web-def serves no admin port: only 10.0.0.1 is an endpoint of it.
  CHECK(a.config.upstreams.at(0).endpoints ==
        std::vector<Endpoint>{
            {"10.0.0.1", 9901, {{"kubernetes.io/service-name", "web"}, {"track", "stable"}}, 1}});
  std::string missing = with_port;
  missing.replace(missing.find("number: 80}"), 11, "number: 81}");
  CHECK(load_error(missing) ==
        "VirtualService vs: http[0].route[0].destination.port.number: "
        "Service web declares no port 81 for host \"web\"");
}

namespace {

// Serves `yaml` (ephemeral ports on 127.0.0.1) and answers GET / on its one listener.
HttpResponse serve_and_get(const std::string& yaml, const istio::TranslateOptions& base = {}) {
  istio::TranslateOptions options = base;
  options.bind_address = "127.0.0.1";
  options.ephemeral_ports = true;
  auto loaded = istio::load_string(yaml, options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  GatewayOptions go;
  go.workers = 1;
  Gateway gateway(go);
  std::string listener = loaded->config.listeners.at(0).name;
  Status st = gateway.apply(std::move(loaded->config));
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  gateway.start();
  RawClient c(gateway.port(listener));
  REQUIRE(c.connected());
  REQUIRE(c.send(make_request("GET", "/", "any.example.com")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r.has_value(), c.error());
  gateway.stop();
  return *r;
}

std::string external_name(uint16_t port) {
  return fmt::format(R"(
---
apiVersion: v1
kind: Service
metadata: {{name: ext}}
spec: {{type: ExternalName, externalName: localhost, ports: [{{name: http, port: {}}}]}}
)",
                     port);
}

}  // namespace

TEST_CASE("kubernetes: an ExternalName Service resolves its name by DNS and serves") {
  FakeUpstream backend("external");
  std::string y = route_to("ext") + external_name(backend.port());
  auto parsed = istio::parse_string(y);
  REQUIRE(parsed.ok());
  CHECK(istio::dns_names(*parsed) == std::vector<std::string>{"localhost"});
  auto loaded = load_ok(y);
  const UpstreamConfig* u = find_upstream(
      loaded, fmt::format("outbound|{}||ext.default.svc.cluster.local", backend.port()));
  REQUIRE(u);
  REQUIRE(!u->endpoints.empty());
  CHECK(u->endpoints.at(0).address == "127.0.0.1");
  CHECK(u->endpoints.at(0).port == backend.port());
  // Kept current in the background, like a DNS ServiceEntry.
  REQUIRE(loaded.dns.size() == 1);
  CHECK(loaded.dns.at(0).upstream == u->name);
  CHECK(loaded.dns.at(0).hosts.at(0).hostname == "localhost");
  auto r = serve_and_get(y);
  CHECK(r.status == 200);
  CHECK(r.body == "external");
  CHECK(load_error(route_to("ext") + R"(
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName}
)") == "Service ext: spec.externalName: required with type ExternalName");
}

TEST_CASE("kubernetes: a headless Service routes to its endpoints") {
  auto loaded = load_ok(route_to("db.data") + R"(
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec: {clusterIP: None, ports: [{port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: db, namespace: data}
subsets:
- addresses: [{ip: 10.0.0.7}, {ip: 10.0.0.8}]
  ports: [{port: 5432}]
)");
  CHECK(loaded.warnings.empty());
  const UpstreamConfig* u = find_upstream(loaded, "outbound|5432||db.data.svc.cluster.local");
  REQUIRE(u);
  REQUIRE(u->endpoints.size() == 2);
  CHECK(u->endpoints.at(0).address == "10.0.0.7");
  CHECK(u->endpoints.at(1).address == "10.0.0.8");
}

TEST_CASE("exportTo: what is not exported to the gateway's namespace is left out") {
  istio::TranslateOptions in_default;
  in_default.gateway_namespace = "default";
  auto with = [](const std::string& yaml, const istio::TranslateOptions& o) {
    return istio::load_string(yaml, o);
  };
  SUBCASE("VirtualService") {
    std::string y = route_to("web") + web_service();
    y.replace(y.find("  hosts: [\"*\"]\n  gateways"), 0, "  exportTo: [\".\"]\n");
    // The gateway in istio-system does not see it: no route, no listener.
    auto hidden = with(y, {});
    REQUIRE(hidden.ok());
    CHECK((hidden->listeners.empty() || hidden->listeners.at(0).routes.empty()));
    CHECK(std::any_of(hidden->warnings.begin(), hidden->warnings.end(), [](const std::string& w) {
      return w ==
             "VirtualService vs: exportTo [.] does not include the gateway's namespace "
             "\"istio-system\"; ignored";
    }));
    auto seen = with(y, in_default);
    REQUIRE(seen.ok());
    REQUIRE(seen->listeners.size() == 1);
    CHECK(seen->listeners.at(0).routes.size() == 1);
  }
  SUBCASE("ServiceEntry") {
    std::string y = route_to("api.example.com") + R"(
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  exportTo: [other]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.9}]
)";
    auto hidden = with(y, {});
    REQUIRE(!hidden.ok());
    CHECK(hidden.error().to_string().find("host \"api.example.com\" is not declared") !=
          std::string::npos);
    std::string everywhere = y;
    everywhere.replace(everywhere.find("[other]"), 7, "[\"*\"]");
    CHECK(with(everywhere, {}).ok());
  }
  SUBCASE("Service annotation") {
    std::string y = route_to("web") + web_service();
    y.replace(y.find("metadata: {name: web, namespace: default}"), 41,
              "metadata:\n  name: web\n  annotations: {networking.istio.io/exportTo: \"a, b\"}");
    auto hidden = with(y, {});
    REQUIRE(!hidden.ok());
    CHECK(hidden.error().to_string().find("host \"web\" is not declared") != std::string::npos);
    std::string listed = y;
    listed.replace(listed.find("\"a, b\""), 6, "\"a, istio-system\"");
    CHECK(with(listed, {}).ok());
  }
  SUBCASE("DestinationRule") {
    std::string y = route_to("web", "default", "v1") + web_service() + R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  exportTo: ["."]
  subsets: [{name: v1, labels: {version: v1}}]
)";
    auto hidden = with(y, {});
    REQUIRE(!hidden.ok());
    CHECK(hidden.error().to_string().find("subset \"v1\" is not defined") != std::string::npos);
    CHECK(with(y, in_default).ok());
  }
}

TEST_CASE("--resolve-unknown-hosts dns: an undeclared host resolves by DNS, else an error") {
  FakeUpstream backend("compose");
  std::string y = route_to("localhost");
  y.replace(y.find("{host: localhost}"), 17,
            fmt::format("{{host: localhost, port: {{number: {}}}}}", backend.port()));
  auto err = istio::load_string(y);
  REQUIRE(!err.ok());
  CHECK(err.error().to_string() ==
        "VirtualService vs: http[0].route[0].destination.host: host \"localhost\" is not "
        "declared by any ServiceEntry or Service (or start with --resolve-unknown-hosts dns)");
  istio::TranslateOptions options;
  options.resolve_unknown_hosts = true;
  auto parsed = istio::parse_string(y);
  REQUIRE(parsed.ok());
  CHECK(istio::dns_names(*parsed).empty());
  CHECK(istio::dns_names(*parsed, options) == std::vector<std::string>{"localhost"});
  auto loaded = istio::load_string(y, options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  const UpstreamConfig* u =
      find_upstream(*loaded, fmt::format("outbound|{}||localhost", backend.port()));
  REQUIRE(u);
  REQUIRE(u->endpoints.size() == 1);
  CHECK(u->endpoints.at(0).address == "127.0.0.1");
  REQUIRE(loaded->dns.size() == 1);
  CHECK(loaded->dns.at(0).hosts.at(0).hostname == "localhost");
  auto r = serve_and_get(y, options);
  CHECK(r.status == 200);
  CHECK(r.body == "compose");
}

TEST_CASE("kubernetes: invalid registry objects are rejected naming the object and field") {
  struct Case {
    const char* yaml;
    const char* error;
  };
  const Case cases[] = {
      {"apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {ports: [{port: 70000}]}",
       "Service reviews: spec.ports[0].port: port 70000 is out of range 1-65535"},
      {"apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: bookinfo}\n"
       "spec: {ports: [{port: 80, targetPort: 0}]}",
       "Service bookinfo/reviews: spec.ports[0].targetPort: port 0 is out of range 1-65535"},
      {"apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {ports: [{port: 80}, {port: "
       "81}]}",
       "Service r: spec.ports[1].name: required when a Service has several ports"},
      {"apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {type: Magic}",
       "Service r: spec.type: unknown type \"Magic\""},
      {"apiVersion: v1\nkind: Service\nmetadata: {name: r}\nspec: {prots: []}",
       "Service r: spec.prots: unknown field \"prots\""},
      {"apiVersion: v1\nkind: Endpoints\nmetadata: {name: r}\n"
       "subsets: [{addresses: [{ip: not-an-ip}]}]",
       "Endpoints r: subsets[0].addresses[0].ip: \"not-an-ip\" is not an IP address"},
      {"apiVersion: v1\nkind: Endpoints\nmetadata: {name: r}\nsubsets: [{ports: [{port: x}]}]",
       "Endpoints r: subsets[0].ports[0].port: must be an integer, got \"x\""},
      {"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: r-1, labels: "
       "{kubernetes.io/service-name: r}}\naddressType: IPv4\n"
       "endpoints: [{addresses: [10.0.0.1], conditions: {ready: maybe}}]",
       "EndpointSlice r-1: endpoints[0].conditions.ready: must be true or false, got \"maybe\""},
      {"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: r-1}\n"
       "addressType: IPv5",
       "EndpointSlice r-1: addressType: must be IPv4, IPv6 or FQDN, got \"IPv5\""},
      {"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 300.1.1.1}",
       "Pod p: status.podIP: \"300.1.1.1\" is not an IP address"},
      {"apiVersion: v1\nkind: Service\nmetadata: {name: r}\n---\n"
       "apiVersion: v1\nkind: Service\nmetadata: {name: r}",
       "Service r: metadata.name: defined more than once"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.yaml);
    auto r = istio::parse_string(c.yaml);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().to_string() == c.error);
  }
}

TEST_CASE("kubernetes: Bookinfo over real sockets reaches the version the rules pick") {
  FakeUpstream productpage("productpage-v1"), reviews_v1("reviews-v1"), reviews_v2("reviews-v2"),
      reviews_v3("reviews-v3");
  std::map<std::string, std::string> ports = {
      {"PRODUCTPAGE_V1", std::to_string(productpage.port())},
      {"REVIEWS_V1", std::to_string(reviews_v1.port())},
      {"REVIEWS_V2", std::to_string(reviews_v2.port())},
      {"REVIEWS_V3", std::to_string(reviews_v3.port())}};
  istio::TranslateOptions options;
  options.bind_address = "127.0.0.1";
  options.ephemeral_ports = true;
  auto loaded = istio::load_string(bookinfo(ports), options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  GatewayOptions go;
  go.workers = 1;
  Gateway gateway(go);
  std::string listener = loaded->config.listeners.at(0).name;
  Status st = gateway.apply(std::move(loaded->config));
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  gateway.start();
  auto get = [&](const std::string& target, const HeaderList& headers = {}) {
    RawClient c(gateway.port(listener));
    REQUIRE(c.connected());
    REQUIRE(c.send(make_request("GET", target, "bookinfo.example.com", headers)));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r.has_value(), c.error());
    return *r;
  };
  auto page = get("/productpage");
  CHECK(page.status == 200);
  CHECK(page.body == "productpage-v1");
  for (int i = 0; i < 4; ++i) {
    auto r = get("/reviews/1");
    CHECK(r.status == 200);
    CHECK(r.body == "reviews-v1");
    auto jason = get("/reviews/1", {{"end-user", "jason"}});
    CHECK(jason.status == 200);
    CHECK(jason.body == "reviews-v2");
  }
  gateway.stop();
  CHECK(reviews_v1.request_count() == 4);
  CHECK(reviews_v2.request_count() == 4);
  CHECK(reviews_v3.request_count() == 0);
  CHECK(productpage.request_count() == 1);
}

TEST_CASE("sluice-ingress --resolve-unknown-hosts dns: --check passes, without it names the host") {
  char tmpl[] = "/tmp/sluice-unknown-hosts-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  std::string file = std::string(tmpl) + "/compose.yaml";
  {
    std::ofstream out(file);
    out << route_to("localhost");
  }
  auto without = run_process(SLUICE_INGRESS_BIN, {"--check", "--config", file});
  CHECK(without.exit_code != 0);
  CHECK(without.err.find("VirtualService vs: http[0].route[0].destination.host: host "
                         "\"localhost\" is not declared") != std::string::npos);
  auto with = run_process(SLUICE_INGRESS_BIN,
                          {"--check", "--config", file, "--resolve-unknown-hosts", "dns"});
  CHECK_MESSAGE(with.exit_code == 0, with.err);
  CHECK(with.out.find("outbound|80||localhost") != std::string::npos);
  CHECK(with.out.find("127.0.0.1:80") != std::string::npos);
  auto bad = run_process(SLUICE_INGRESS_BIN,
                         {"--check", "--config", file, "--resolve-unknown-hosts", "maybe"});
  CHECK(bad.exit_code == 2);
  std::filesystem::remove_all(tmpl);
}

}  // namespace kubernetes_test
