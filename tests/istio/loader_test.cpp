// The Istio loader against the YAML of Istio's documented tasks: Bookinfo
// request routing and traffic shifting, and the httpbin ingress task.

#include <doctest/doctest.h>

#include "istio_test_util.hpp"

namespace loader_test {

using namespace sluice;
using namespace sluice::test;

namespace {
const std::string reviews = "outbound|9080||reviews";
const std::string productpage = "outbound|9080||productpage";

const UpstreamConfig* upstream(const istio::LoadedConfig& l, const std::string& name) {
  for (const auto& u : l.config.upstreams)
    if (u.name == name) return &u;
  return nullptr;
}
}  // namespace

TEST_CASE("istio: Gateway server port becomes a listener with its own router") {
  auto l = load_ok(
      fixtures({"bookinfo-gateway.yaml", "bookinfo-services.yaml", "destination-rule-all.yaml"}));
  REQUIRE(l.config.listeners.size() == 1);
  CHECK(l.config.listeners[0].port == 8080);
  CHECK(l.config.listeners[0].address == "0.0.0.0");
  CHECK(l.config.listeners[0].router == l.config.routers[0].name);
  REQUIRE(l.listeners.size() == 1);
  REQUIRE(l.listeners[0].servers.size() == 1);
  CHECK(l.listeners[0].servers[0].gateway == "bookinfo-gateway");
  const auto& router = router_for(l, 8080);
  REQUIRE(router.virtual_hosts.size() == 1);
  CHECK(router.virtual_hosts[0].domains == std::vector<std::string>{"bookinfo.example.com"});
  REQUIRE(router.virtual_hosts[0].routes.size() == 1);
  CHECK(router.virtual_hosts[0].routes[0].name == "default/bookinfo/http[0]");
  CHECK(router.virtual_hosts[0].routes[0].matches.size() == 5);
}

TEST_CASE("istio: bind address and ephemeral ports come from the options") {
  istio::TranslateOptions opts;
  opts.bind_address = "127.0.0.1";
  opts.ephemeral_ports = true;
  auto r = istio::load_string(fixtures({"httpbin.yaml"}), opts);
  REQUIRE(r.ok());
  CHECK(r->config.listeners[0].address == "127.0.0.1");
  CHECK(r->config.listeners[0].port == 0);
  CHECK(r->listeners[0].port == 80);
}

TEST_CASE("istio: ServiceEntry endpoints, ports by name and DestinationRule subsets") {
  auto l = load_ok(fixtures({"bookinfo-gateway.yaml", "bookinfo-services.yaml",
                             "destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml"}));
  const UpstreamConfig* up = upstream(l, reviews);
  REQUIRE(up != nullptr);
  REQUIRE(up->endpoints.size() == 3);
  CHECK(up->endpoints[0].address == "127.0.0.1");
  CHECK(up->endpoints[0].port == 19081);
  CHECK(up->endpoints[2].port == 19083);
  CHECK(up->endpoints[1].labels.at("version") == "v2");
  REQUIRE(up->subsets.size() == 3);
  CHECK(up->subsets[1].name == "v2");
  CHECK(up->subsets[1].labels.at("version") == "v2");
  // No loadBalancer in the DestinationRule: Istio's default, LEAST_REQUEST.
  CHECK(up->load_balancer == LoadBalancer::least_request);
}

TEST_CASE("istio: request routing task: end-user jason gets reviews v2, others v1") {
  auto l = load_ok(fixtures({"bookinfo-gateway.yaml", "bookinfo-services.yaml",
                             "destination-rule-all.yaml", "virtual-service-reviews-test-v2.yaml"}));
  // Two VirtualServices for one host merge in load order.
  const auto& vh = router_for(l, 8080).virtual_hosts;
  REQUIRE(vh.size() == 1);
  REQUIRE(vh[0].routes.size() == 3);
  CHECK(vh[0].routes[1].name == "default/reviews/http[0]");
  Router router = compiled_router(l, 8080);
  CHECK(route_of(router, request("bookinfo.example.com", "/reviews/1", {{"end-user", "jason"}})) ==
        reviews + "/v2");
  CHECK(route_of(router, request("bookinfo.example.com", "/reviews/1")) == reviews + "/v1");
  CHECK(route_of(router, request("bookinfo.example.com", "/reviews/1", {{"end-user", "Jason"}})) ==
        reviews + "/v1");
  CHECK(route_of(router, request("bookinfo.example.com:8080", "/productpage")) == productpage);
  CHECK(route_of(router, request("bookinfo.example.com", "/static/x.css")) == productpage);
  CHECK(route_of(router, request("bookinfo.example.com", "/productpage/x")) == "");
  CHECK(route_of(router, request("other.example.com", "/productpage")) == "");
}

TEST_CASE("istio: traffic shifting task: 50/50 and 80/20 weights") {
  auto l = load_ok(fixtures({"bookinfo-gateway.yaml", "bookinfo-services.yaml",
                             "destination-rule-all.yaml", "virtual-service-reviews-50-v3.yaml"}));
  Router router = compiled_router(l, 8080);
  auto sel = router.match(request("bookinfo.example.com", "/reviews/0"));
  REQUIRE(sel);
  REQUIRE(sel->route->destinations.size() == 2);
  CHECK(sel->route->destinations[0].subset == "v1");
  CHECK(sel->route->destinations[0].weight == 50);
  CHECK(sel->route->destinations[1].subset == "v3");
  CHECK(sel->route->destinations[1].weight == 50);

  auto l2 = load_ok(fixtures({"bookinfo-gateway.yaml", "bookinfo-services.yaml",
                              "destination-rule-all.yaml", "virtual-service-reviews-80-20.yaml"}));
  Router router2 = compiled_router(l2, 8080);
  auto sel2 = router2.match(request("bookinfo.example.com", "/reviews/0"));
  REQUIRE(sel2);
  REQUIRE(sel2->route->destinations.size() == 2);
  CHECK(sel2->route->destinations[0].weight == 80);
  CHECK(sel2->route->destinations[1].subset == "v2");
  CHECK(sel2->route->destinations[1].weight == 20);
}

TEST_CASE("istio: httpbin ingress task: /status and /delay routed, the rest 404") {
  auto l = load_ok(fixtures({"httpbin.yaml"}));
  const UpstreamConfig* up = upstream(l, "outbound|8000||httpbin.default.svc.cluster.local");
  REQUIRE(up != nullptr);
  REQUIRE(up->endpoints.size() == 1);
  CHECK(up->endpoints[0].port == 18000);  // endpoint port by name wins over targetPort
  Router router = compiled_router(l, 80);
  CHECK(route_of(router, request("httpbin.example.com", "/status/200", {}, "GET", 80)) == up->name);
  CHECK(route_of(router, request("httpbin.example.com", "/delay/1", {}, "GET", 80)) == up->name);
  CHECK(route_of(router, request("httpbin.example.com", "/headers", {}, "GET", 80)) == "");
  CHECK(route_of(router, request("example.com", "/status/200", {}, "GET", 80)) == "");
}

TEST_CASE("istio: endpoint port falls back to targetPort, then the service port") {
  auto l = load_ok(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: b.example.com, port: {number: 81}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.example.com]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8081}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: b}
spec:
  hosts: [b.example.com]
  ports: [{number: 80, name: http}, {number: 81, name: alt}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.2, weight: 3, ports: {http: 9000}}]
)");
  const UpstreamConfig* a = upstream(l, "outbound|80||a.example.com");
  REQUIRE(a != nullptr);
  CHECK(a->endpoints.at(0).port == 8081);
  const UpstreamConfig* b = upstream(l, "outbound|81||b.example.com");
  REQUIRE(b != nullptr);
  CHECK(b->endpoints.at(0).port == 81);
  CHECK(b->endpoints.at(0).weight == 3);
}

TEST_CASE("istio: DNS ServiceEntry endpoints hold the resolved addresses") {
  const std::string yaml = R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [ext.example.com]
  ports: [{number: 80, name: http}]
  resolution: DNS
  endpoints: [{address: backend.internal, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: self}
spec:
  hosts: [localhost]
  ports: [{number: 8000, name: http}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /self}}]
    route: [{destination: {host: localhost}}]
  - route: [{destination: {host: ext.example.com}}]
)";
  auto parsed = istio::parse_string(yaml);
  REQUIRE(parsed.ok());
  CHECK(istio::dns_names(*parsed) == std::vector<std::string>{"backend.internal", "localhost"});
  istio::DnsTable dns = {{"backend.internal", {"10.1.0.1", "10.1.0.2"}}};
  dns["localhost"] = resolve_hostnames({"localhost"})["localhost"];
  auto l = istio::translate(*parsed, {}, dns);
  REQUIRE(l.ok());
  const UpstreamConfig* ext = upstream(*l, "outbound|80||ext.example.com");
  REQUIRE(ext != nullptr);
  REQUIRE(ext->endpoints.size() == 2);
  CHECK(ext->endpoints[1].address == "10.1.0.2");
  CHECK(ext->endpoints[1].labels.at("version") == "v1");
  const UpstreamConfig* self = upstream(*l, "outbound|8000||localhost");
  REQUIRE(self != nullptr);
  REQUIRE(!self->endpoints.empty());
  CHECK(self->endpoints[0].address == "127.0.0.1");

  // The host entries a DnsEndpointSource keeps resolving, per upstream.
  REQUIRE(l->dns.size() == 2);
  std::map<std::string, DnsUpstream> by_name;
  for (const auto& d : l->dns) by_name[d.upstream] = d;
  const auto& ext_hosts = by_name.at("outbound|80||ext.example.com").hosts;
  REQUIRE(ext_hosts.size() == 1);
  CHECK(ext_hosts[0].hostname == "backend.internal");
  CHECK(ext_hosts[0].port == 80);
  CHECK(ext_hosts[0].labels.at("version") == "v1");
  const auto& self_hosts = by_name.at("outbound|8000||localhost").hosts;
  REQUIRE(self_hosts.size() == 1);
  CHECK(self_hosts[0].hostname == "localhost");
  CHECK(self_hosts[0].port == 8000);

  // A name that does not resolve leaves no endpoints and says so.
  auto l2 = istio::translate(*parsed, {}, {{"localhost", {"127.0.0.1"}}});
  REQUIRE(l2.ok());
  CHECK(upstream(*l2, "outbound|80||ext.example.com")->endpoints.empty());
  CHECK(has_warning(*l2, "backend.internal"));
}

TEST_CASE("istio: match fields map onto Matcher") {
  auto l = load_ok(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - name: everything
    match:
    - uri: {regex: "/api/v[0-9]+/.*"}
      ignoreUriCase: true
      scheme: {exact: http}
      method: {exact: POST}
      authority: {prefix: api.}
      headers: {X-Flag: {}, x-version: {regex: "v[12]"}}
      withoutHeaders: {x-debug: {}}
      queryParams: {q: {exact: "1"}, p: {}}
      port: 80
      name: m
    route: [{destination: {host: a.example.com}}]
  - directResponse: {status: 418, body: {string: teapot}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a}
spec:
  hosts: [a.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
)");
  const auto& routes = router_for(l, 80).virtual_hosts.at(0).routes;
  REQUIRE(routes.size() == 2);
  const Matcher& m = routes[0].matches.at(0);
  REQUIRE(m.uri);
  CHECK(m.uri->kind == StringMatch::Kind::regex);
  CHECK(m.ignore_uri_case);
  CHECK(m.scheme->value == "http");
  CHECK(m.method->value == "POST");
  CHECK(m.authority->kind == StringMatch::Kind::prefix);
  REQUIRE(m.headers.size() == 3);
  CHECK(m.headers[0].name == "x-flag");
  CHECK(m.headers[0].match.kind == StringMatch::Kind::present);
  CHECK(m.headers[1].match.kind == StringMatch::Kind::regex);
  CHECK(m.headers[2].invert);
  REQUIRE(m.query_params.size() == 2);
  CHECK(m.port == 80);
  CHECK(l.listeners[0].routes.at(routes[0].name).rule_name == "everything");
  REQUIRE(routes[1].direct_response);
  CHECK(routes[1].direct_response->status == 418);
  CHECK(routes[1].direct_response->body == "teapot");
  Router router = compiled_router(l, 80);
  CHECK(route_of(router, request("x", "/", {}, "GET", 80)) == "direct:418");
}

TEST_CASE("istio: host intersection, namespaces and match-level gateways") {
  auto l = load_ok(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["shop/*.example.com", "*/api.example.org"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: internal, namespace: edge}
spec:
  servers:
  - port: {number: 8081, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: store, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [edge/public, edge/internal]
  http:
  - match: [{uri: {prefix: /admin}, gateways: [edge/internal]}]
    route: [{destination: {host: a.example.com}}]
  - route: [{destination: {host: a.example.com}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other, namespace: blog}
spec:
  hosts: [www.example.com, api.example.org]
  gateways: [edge/public]
  http:
  - route: [{destination: {host: a.example.com}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: shop}
spec:
  hosts: [a.example.com]
  ports: [{number: 80, name: http}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
)");
  REQUIRE(l.config.listeners.size() == 2);
  const auto& public_hosts = router_for(l, 80).virtual_hosts;
  // "shop/*.example.com" admits only namespace shop: blog's www.example.com is out.
  REQUIRE(public_hosts.size() == 2);
  CHECK(public_hosts[0].name == "*.example.com");
  CHECK(public_hosts[0].routes.size() == 1);  // /admin rule is internal-only
  // "*/api.example.org" admits both; store's catch-all comes first (load order).
  CHECK(public_hosts[1].name == "api.example.org");
  REQUIRE(public_hosts[1].routes.size() == 2);
  CHECK(public_hosts[1].routes[1].name == "blog/other/http[0]");
  CHECK(has_warning(l, "VirtualService blog/other: http[0]: rule can never match"));
  const auto& internal_hosts = router_for(l, 8081).virtual_hosts;
  REQUIRE(internal_hosts.size() == 1);
  CHECK(internal_hosts[0].name == "*");
  CHECK(internal_hosts[0].routes.size() == 2);
  CHECK(l.listeners[1].routes.at("shop/store/http[0]").virtual_service == "shop/store");
}

TEST_CASE("istio: kubectl get -o yaml output with a List wrapper, metadata and status") {
  auto l = load_ok(R"(
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: networking.istio.io/v1
  kind: Gateway
  metadata:
    annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}"}
    creationTimestamp: "2024-01-01T00:00:00Z"
    generation: 1
    labels: {app: x}
    name: gw
    namespace: default
    resourceVersion: "123"
    uid: 0b7c6f2e-0000-0000-0000-000000000000
  spec:
    selector: {istio: ingressgateway}
    servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
  status: {}
- apiVersion: v1
  kind: Service
  metadata: {name: kubernetes}
  spec: {ports: [{port: 443}]}
)");
  CHECK(l.config.listeners.size() == 1);
  // A Service is part of the Kubernetes registry now, not an ignored kind.
  CHECK_FALSE(has_warning(l, "Service kubernetes"));
  CHECK(has_warning(l, "no VirtualService"));
}

TEST_CASE("istio: a rule after a catch-all is reported as unreachable") {
  auto l = load_ok(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: first}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /}}]
    directResponse: {status: 200}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: second}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /x}}]
    directResponse: {status: 201}
)");
  CHECK(has_warning(l, "VirtualService second: http[0]: rule can never match"));
  CHECK(has_warning(l, "VirtualService first http[0]"));
}

TEST_CASE("istio: files and directories load in order") {
  auto r = istio::parse_files({fixture_path("bookinfo-gateway.yaml")});
  REQUIRE(r.ok());
  auto dir = istio::parse_files({std::string(SLUICE_SOURCE_DIR) + "/examples/ingress/bookinfo"});
  if (!dir.ok()) FAIL(dir.error().to_string());
  auto missing = istio::parse_files({fixture_path("nope.yaml")});
  REQUIRE(!missing.ok());
  CHECK(missing.error().to_string().find("nope.yaml") != std::string::npos);
}

}  // namespace loader_test
