// The Kubernetes Gateway API in the Istio loader (lib/istio/gateway_api.cpp):
// Gateways, HTTPRoute matches and filters, precedence between routes (one
// test per rule), attachment status, ReferenceGrants, TLS, and Istio's
// gateway-api Bookinfo sample served over real sockets.

#include <doctest/doctest.h>

#include <re2/re2.h>

#include <fmt/format.h>

#include "istio_test_util.hpp"
#include "sluice/sluice.hpp"
#include "support/fake_upstream.hpp"
#include "support/raw_client.hpp"
#include "tls_certs.hpp"

namespace gateway_api_test {

using namespace sluice;
using namespace sluice::test;

namespace {

// A Service `name` in `ns` on port 80 with one endpoint.
std::string service(const std::string& name, const std::string& ns = "default") {
  return fmt::format(R"(
---
apiVersion: v1
kind: Service
metadata: {{name: {0}, namespace: {1}}}
spec:
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: {0}, namespace: {1}}}
subsets:
- addresses: [{{ip: 10.0.0.5}}]
  ports: [{{port: 8080}}]
)",
                     name, ns);
}

// Gateway `gw` in default, class istio, one HTTP listener on 80.
std::string gateway(const std::string& listener_extra = "") {
  return R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - name: http
    port: 80
    protocol: HTTP
)" + listener_extra;
}

// An HTTPRoute `name` attached to gw with the given rules (YAML list text).
std::string route(const std::string& name, const std::string& rules,
                  const std::string& created = "", const std::string& ns = "default") {
  return fmt::format(R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {0}
  namespace: {3}
{2}
spec:
  parentRefs: [{{name: gw, namespace: default}}]
  rules:
{1}
)",
                     name, rules, created.empty() ? "" : "  creationTimestamp: \"" + created + "\"",
                     ns);
}

// A rule to backend `svc` with one match (flow-style YAML).
std::string rule(const std::string& svc, const std::string& match) {
  return fmt::format("  - matches: [{}]\n    backendRefs: [{{name: {}, port: 80}}]\n", match, svc);
}

const RouterConfig& router_of(const istio::LoadedConfig& loaded, size_t i = 0) {
  for (const auto& r : loaded.config.routers)
    if (r.name == loaded.config.listeners.at(i).router) return r;
  FAIL("no router");
  return loaded.config.routers.front();
}

// Which route match serves `req`: "HTTPRoute ns/name spec.rules[i].matches[k]".
std::string chosen(const istio::LoadedConfig& loaded, const RequestHead& req) {
  auto router = Router::compile(router_of(loaded));
  REQUIRE_MESSAGE(router.ok(), (router.ok() ? std::string() : router.error().to_string()));
  auto sel = router->match(req);
  if (!sel) return "none";
  const auto& routes = loaded.listeners.at(0).routes;
  auto it = routes.find(sel->route->name);
  REQUIRE(it != routes.end());
  return it->second.source;
}

const istio::RouteParentStatus& parent_status(const istio::LoadedConfig& loaded,
                                              const std::string& route, size_t i = 0) {
  for (const auto& s : loaded.route_status)
    if (s.route == route) return s.parents.at(i);
  FAIL("no status for ", route);
  return loaded.route_status.front().parents.front();
}

std::string all_services() {
  return service("a") + service("b") + service("c");
}

}  // namespace

TEST_CASE("gateway api: Istio's Bookinfo sample loads: listener, matches in precedence order") {
  auto loaded =
      load_ok(fixtures({"gateway-api-bookinfo-gateway.yaml", "bookinfo-kubernetes.yaml"}));
  REQUIRE(loaded.config.listeners.size() == 1);
  CHECK(loaded.listeners[0].port == 80);
  CHECK(loaded.listeners[0].servers.at(0).gateway == "bookinfo-gateway/http");
  const RouterConfig& r = router_of(loaded);
  REQUIRE(r.virtual_hosts.size() == 1);
  CHECK(r.virtual_hosts[0].name == "*");
  const auto& routes = r.virtual_hosts[0].routes;
  REQUIRE(routes.size() == 5);
  // Exact before prefix, longer before shorter.
  std::vector<std::string> order;
  for (const auto& rt : routes) order.push_back(loaded.listeners[0].routes.at(rt.name).source);
  CHECK(order == std::vector<std::string>{"HTTPRoute default/bookinfo spec.rules[0].matches[0]",
                                          "HTTPRoute default/bookinfo spec.rules[0].matches[3]",
                                          "HTTPRoute default/bookinfo spec.rules[0].matches[2]",
                                          "HTTPRoute default/bookinfo spec.rules[0].matches[4]",
                                          "HTTPRoute default/bookinfo spec.rules[0].matches[1]"});
  CHECK(routes[0].destinations.at(0).upstream ==
        "outbound|9080||productpage.default.svc.cluster.local");
  CHECK(routes[0].origin == "HTTPRoute default/bookinfo");
  const auto& st = parent_status(loaded, "HTTPRoute default/bookinfo");
  CHECK(st.parent == "Gateway default/bookinfo-gateway");
  CHECK(st.accepted);
  CHECK(st.accepted_reason == "Accepted");
  CHECK(st.resolved_refs);
  std::string text = istio::summary(loaded);
  CHECK(text.find("route HTTPRoute default/bookinfo\n  parent Gateway default/bookinfo-gateway: "
                  "Accepted=True (Accepted), ResolvedRefs=True (ResolvedRefs)") !=
        std::string::npos);
  CHECK(text.find("HTTPRoute default/bookinfo spec.rules[0].matches[4]") != std::string::npos);
}

TEST_CASE("gateway api: PathPrefix matches whole path elements") {
  auto loaded = load_ok(gateway() + service("a") +
                        route("r", rule("a", "{path: {type: PathPrefix, value: /static/}}")));
  CHECK(chosen(loaded, request("x", "/static")) != "none");
  CHECK(chosen(loaded, request("x", "/static/app.css")) != "none");
  CHECK(chosen(loaded, request("x", "/staticx")) == "none");
}

TEST_CASE("gateway api precedence: an Exact path beats a longer PathPrefix") {
  auto loaded = load_ok(gateway() + all_services() +
                        route("r", rule("a", "{path: {type: PathPrefix, value: /foo/bar/baz}}") +
                                       rule("b", "{path: {type: Exact, value: /foo}}")));
  CHECK(chosen(loaded, request("x", "/foo")) == "HTTPRoute default/r spec.rules[1].matches[0]");
  CHECK(chosen(loaded, request("x", "/foo/bar/baz")) ==
        "HTTPRoute default/r spec.rules[0].matches[0]");
  CHECK(router_of(loaded).virtual_hosts[0].routes[0].matches[0].uri->kind ==
        StringMatch::Kind::exact);
}

TEST_CASE("gateway api precedence: the longest PathPrefix wins across routes") {
  auto loaded = load_ok(gateway() + all_services() +
                        route("aaa", rule("a", "{path: {type: PathPrefix, value: /a}}")) +
                        route("bbb", rule("b", "{path: {type: PathPrefix, value: /a/b}}")));
  CHECK(chosen(loaded, request("x", "/a/b/c")) == "HTTPRoute default/bbb spec.rules[0].matches[0]");
  CHECK(chosen(loaded, request("x", "/a/c")) == "HTTPRoute default/aaa spec.rules[0].matches[0]");
}

TEST_CASE("gateway api precedence: a method match beats none") {
  auto loaded =
      load_ok(gateway() + all_services() +
              route("aaa", rule("a", "{path: {type: PathPrefix, value: /x}}")) +
              route("bbb", rule("b", "{path: {type: PathPrefix, value: /x}, method: GET}")));
  CHECK(chosen(loaded, request("x", "/x")) == "HTTPRoute default/bbb spec.rules[0].matches[0]");
  CHECK(chosen(loaded, request("x", "/x", {}, "POST")) ==
        "HTTPRoute default/aaa spec.rules[0].matches[0]");
}

TEST_CASE("gateway api precedence: more header matches beat fewer") {
  auto loaded = load_ok(
      gateway() + all_services() +
      route("r", rule("a", "{headers: [{name: h1, value: '1'}]}") +
                     rule("b", "{headers: [{name: h1, value: '1'}, {name: H2, value: '2'}]}")));
  CHECK(chosen(loaded, request("x", "/", {{"h1", "1"}, {"h2", "2"}})) ==
        "HTTPRoute default/r spec.rules[1].matches[0]");
  CHECK(chosen(loaded, request("x", "/", {{"h1", "1"}})) ==
        "HTTPRoute default/r spec.rules[0].matches[0]");
}

TEST_CASE("gateway api precedence: more query parameter matches beat fewer") {
  auto loaded = load_ok(gateway() + all_services() +
                        route("r", rule("a", "{queryParams: [{name: q, value: '1'}]}") +
                                       rule("b",
                                            "{queryParams: [{name: q, value: '1'}, {name: p, type: "
                                            "RegularExpression, value: 'v[0-9]'}]}")));
  CHECK(chosen(loaded, request("x", "/?q=1&p=v2")) ==
        "HTTPRoute default/r spec.rules[1].matches[0]");
  CHECK(chosen(loaded, request("x", "/?q=1&p=w")) ==
        "HTTPRoute default/r spec.rules[0].matches[0]");
}

TEST_CASE("gateway api precedence: on a tie, the oldest route by creationTimestamp") {
  std::string m = "{path: {type: Exact, value: /same}}";
  auto loaded =
      load_ok(gateway() + all_services() + route("aaa", rule("a", m), "2026-03-01T00:00:00Z") +
              route("zzz", rule("b", m), "2025-01-01T00:00:00Z"));
  CHECK(chosen(loaded, request("x", "/same")) == "HTTPRoute default/zzz spec.rules[0].matches[0]");
}

TEST_CASE("gateway api precedence: then namespace/name in alphabetical order") {
  std::string m = "{path: {type: Exact, value: /same}}";
  auto loaded = load_ok(gateway("    allowedRoutes: {namespaces: {from: All}}\n") + all_services() +
                        service("a", "zeta") + service("b", "alpha") +
                        route("b-route", rule("a", m), "", "zeta") +
                        route("z-route", rule("b", m), "", "alpha"));
  CHECK(chosen(loaded, request("x", "/same")) ==
        "HTTPRoute alpha/z-route spec.rules[0].matches[0]");
}

TEST_CASE("gateway api precedence: then the first rule and match of one route") {
  std::string m = "{path: {type: PathPrefix, value: /p}}";
  auto loaded = load_ok(gateway() + all_services() + route("r", rule("a", m) + rule("b", m)));
  CHECK(chosen(loaded, request("x", "/p")) == "HTTPRoute default/r spec.rules[0].matches[0]");
}

TEST_CASE("gateway api: hostnames intersect the listener's, wildcards cover subdomains") {
  std::string yaml = gateway("    hostname: \"*.example.com\"\n") + service("a") + R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  hostnames: [foo.example.com, other.org, "*.bar.example.com"]
  rules: [{backendRefs: [{name: a, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: nothing}
spec:
  parentRefs: [{name: gw}]
  hostnames: [other.org]
  rules: [{backendRefs: [{name: a, port: 80}]}]
)";
  auto loaded = load_ok(yaml);
  std::vector<std::string> hosts;
  for (const auto& vh : router_of(loaded).virtual_hosts) hosts.push_back(vh.name);
  std::sort(hosts.begin(), hosts.end());
  CHECK(hosts == std::vector<std::string>{"*.bar.example.com", "foo.example.com"});
  const auto& st = parent_status(loaded, "HTTPRoute default/nothing");
  CHECK_FALSE(st.accepted);
  CHECK(st.accepted_reason == "NoMatchingListenerHostname");
}

TEST_CASE("gateway api status: NotAllowedByListeners, NoMatchingParent, backend reasons") {
  std::string yaml = gateway() + service("a") + service("a", "other") + R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: foreign, namespace: other}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-section}
spec:
  parentRefs: [{name: gw, sectionName: https}, {name: missing}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {value: /lost}}]
    backendRefs: [{name: nope, port: 80}]
  - matches: [{path: {value: /port}}]
    backendRefs: [{name: a, port: 81}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cross}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {value: /cross}}], backendRefs: [{name: a, namespace: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: kind}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {value: /kind}}], backendRefs: [{name: a, kind: ConfigMap, port: 80}]}]
)";
  auto loaded = load_ok(yaml);
  const auto& foreign = parent_status(loaded, "HTTPRoute other/foreign");
  CHECK_FALSE(foreign.accepted);
  CHECK(foreign.accepted_reason == "NotAllowedByListeners");
  CHECK(foreign.resolved_refs);
  const auto& section = parent_status(loaded, "HTTPRoute default/wrong-section", 0);
  CHECK(section.parent == "Gateway default/gw sectionName https");
  CHECK(section.accepted_reason == "NoMatchingParent");
  CHECK(parent_status(loaded, "HTTPRoute default/wrong-section", 1).accepted_reason ==
        "NoMatchingParent");
  const auto& lost = parent_status(loaded, "HTTPRoute default/lost");
  CHECK(lost.accepted);
  CHECK_FALSE(lost.resolved_refs);
  CHECK(lost.resolved_reason == "BackendNotFound");
  CHECK(lost.resolved_message.find("Service default/nope") != std::string::npos);
  CHECK(parent_status(loaded, "HTTPRoute default/cross").resolved_reason == "RefNotPermitted");
  CHECK(parent_status(loaded, "HTTPRoute default/kind").resolved_reason == "InvalidKind");
  // An unresolved backend answers 500 (the spec), the rest of the route serves.
  auto router = Router::compile(router_of(loaded));
  REQUIRE(router.ok());
  auto sel = router->match(request("x", "/lost"));
  REQUIRE(sel);
  REQUIRE(sel->route->direct_response);
  CHECK(sel->route->direct_response->status == 500);
  CHECK(router->match(request("x", "/port"))->route->direct_response);
  std::string text = istio::summary(loaded);
  CHECK(text.find("parent Gateway default/gw: Accepted=False (NotAllowedByListeners: ") !=
        std::string::npos);
  CHECK(text.find("ResolvedRefs=False (RefNotPermitted: ") != std::string::npos);
}

TEST_CASE("gateway api: a ReferenceGrant permits a cross-namespace backend, Selector namespaces") {
  std::string yaml = gateway(R"(    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {shared-gateway-access: "true"}}
)") + service("a", "other") +
                     R"(
---
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {shared-gateway-access: "true"}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: apps}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules: [{backendRefs: [{name: a, namespace: other, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: other}
spec:
  parentRefs: [{name: gw, namespace: default}]
  rules: [{backendRefs: [{name: a, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow-apps, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}]
  to: [{group: "", kind: Service, name: a}]
)";
  auto loaded = load_ok(yaml);
  const auto& apps = parent_status(loaded, "HTTPRoute apps/r");
  CHECK(apps.accepted);
  CHECK(apps.resolved_refs);
  CHECK(parent_status(loaded, "HTTPRoute other/r").accepted_reason == "NotAllowedByListeners");
  CHECK(router_of(loaded).virtual_hosts.at(0).routes.at(0).destinations.at(0).upstream ==
        "outbound|80||a.other.svc.cluster.local");
}

TEST_CASE("gateway api: filters become header edits, redirects, rewrites and mirrors") {
  std::string yaml = gateway() + service("a") + service("b") + R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, hostname: new.example.com, statusCode: 301}
  - matches: [{path: {type: PathPrefix, value: /api/}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: X-Set, value: "1"}], add: [{name: x-add, value: "2"}], remove: [x-gone]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-resp, value: "3"}]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: b, port: 80}, percent: 25}
    backendRefs:
    - {name: a, port: 80, weight: 3}
    - {name: b, port: 80, weight: 1}
    timeouts: {request: 10s, backendRequest: 2s}
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
    backendRefs: [{name: a, port: 80}]
)";
  auto loaded = load_ok(yaml);
  const auto& routes = router_of(loaded).virtual_hosts.at(0).routes;
  REQUIRE(routes.size() == 3);
  // Longest prefix first: /api/ (5), /old, /v1.
  const Route& api = routes[0];
  CHECK(api.request_headers.set ==
        std::vector<std::pair<std::string, std::string>>{{"x-set", "1"}});
  CHECK(api.request_headers.add.size() == 1);
  CHECK(api.request_headers.remove == std::vector<std::string>{"x-gone"});
  CHECK(api.response_headers.set.size() == 1);
  REQUIRE(api.destinations.size() == 2);
  CHECK(api.destinations[0].weight == 3);
  CHECK(api.destinations[1].weight == 1);
  REQUIRE(api.mirrors.size() == 1);
  CHECK(api.mirrors[0].percentage == 25);
  CHECK(api.timeout == std::chrono::seconds(10));
  CHECK(api.retries.per_try_timeout == std::chrono::seconds(2));
  REQUIRE(api.rewrite);
  CHECK(api.rewrite->authority == "internal");
  REQUIRE(api.rewrite->uri_regex);
  auto rewritten = [](const Route& r, std::string path) {
    RE2 re(r.rewrite->uri_regex->first);
    RE2::GlobalReplace(&path, re, r.rewrite->uri_regex->second);
    return path;
  };
  CHECK(rewritten(api, "/api/users/1") == "/users/1");
  CHECK(rewritten(api, "/api") == "/");
  const Route& old = routes[1];
  REQUIRE(old.redirect);
  CHECK(old.redirect->code == 301);
  CHECK(old.redirect->scheme == "https");
  CHECK(old.redirect->authority == "new.example.com");
  CHECK(old.redirect->derive_port == Redirect::DerivePort::from_protocol_default);
  CHECK(rewritten(routes[2], "/v1/x") == "/v2/x");
  CHECK(rewritten(routes[2], "/v1") == "/v2");
  // The whole configuration compiles.
  CHECK(compile(loaded.config).ok());
}

TEST_CASE("gateway api: errors name the resource and field") {
  std::string base = gateway() + service("a");
  CHECK(load_error(base + route("bookinfo", "  - backendRefs: [{name: a}]\n")) ==
        "HTTPRoute default/bookinfo: spec.rules[0].backendRefs[0].port: required for a Service "
        "backend");
  CHECK(load_error(base + route("r", "  - matches: [{path: {type: Exact, value: nope}}]\n")) ==
        "HTTPRoute default/r: spec.rules[0].matches[0].path.value: must start with \"/\"");
  CHECK(load_error(base + route("r", "  - matches: [{path: {type: Regex, value: /}}]\n"))
            .starts_with("HTTPRoute default/r: spec.rules[0].matches[0].path.type: unknown value"));
  CHECK(load_error(base + route("r", "  - bogus: 1\n")) ==
        "HTTPRoute default/r: spec.rules[0].bogus: unknown field \"bogus\"");
  CHECK(load_error(base + R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{method: {type: Prefix, service: s.S}}]}]
)")
            .starts_with("GRPCRoute default/grpc: spec.rules[0].matches[0].method.type: unknown "
                         "value"));
}

TEST_CASE("gateway api: gatewayClassName selects the Gateways served, others are noted") {
  std::string yaml = R"(
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio}
spec: {controllerName: istio.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other}
spec:
  gatewayClassName: nginx
  listeners: [{name: http, port: 8080, protocol: HTTP}]
)" + gateway() + service("a") +
                     route("r", rule("a", "{path: {value: /}}"));
  auto loaded = load_ok(yaml);
  REQUIRE(loaded.config.listeners.size() == 1);
  CHECK(loaded.listeners[0].port == 80);
  bool noted = false;
  for (const auto& w : loaded.warnings)
    noted = noted || w == "Gateway default/other: spec.gatewayClassName: class \"nginx\" is not "
                          "\"istio\" (--gateway-class); ignored";
  CHECK(noted);
  istio::TranslateOptions options;
  options.gateway_class = "nginx";
  auto other = istio::load_string(yaml, options);
  REQUIRE(other.ok());
  REQUIRE(other->config.listeners.size() == 1);
  CHECK(other->listeners[0].port == 8080);
  CHECK(parent_status(*other, "HTTPRoute default/r").accepted_reason == "NoMatchingParent");
}

TEST_CASE("gateway api: HTTPS certificateRefs need a ReferenceGrant across namespaces") {
  const IstioPki& pki = istio_pki();
  std::string secret = kubectl_secret("cert", "certs", pki.httpbin, pki.httpbin_key);
  std::string gw = R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tls-gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: httpbin.example.com
    tls: {certificateRefs: [{name: cert, namespace: certs}]}
  - name: passthrough
    port: 8443
    protocol: TLS
    hostname: "*.example.com"
    tls: {mode: Passthrough}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: pass}
spec:
  parentRefs: [{name: tls-gw, sectionName: passthrough}]
  hostnames: [nginx.example.com]
  rules: [{backendRefs: [{name: a, port: 80}]}]
)" + service("a");
  std::string err = load_error(secret + gw);
  CHECK(
      err.starts_with("Gateway default/tls-gw: spec.listeners[0].tls.certificateRefs[0]."
                      "namespace: RefNotPermitted: Secret certs/cert"));
  std::string grant = R"(
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gw-certs, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: default}]
  to: [{group: "", kind: Secret}]
)";
  auto loaded = load_ok(secret + gw + grant);
  REQUIRE(loaded.config.listeners.size() == 2);
  const ListenerConfig* https = nullptr;
  const ListenerConfig* pass = nullptr;
  for (const auto& l : loaded.config.listeners) (l.tls_servers.empty() ? pass : https) = &l;
  REQUIRE(https);
  REQUIRE(pass);
  REQUIRE(https->tls_servers.size() == 1);
  CHECK(https->tls_servers[0].sni_hosts == std::vector<std::string>{"httpbin.example.com"});
  CHECK(https->tls_servers[0].certificate_chain == IstioPki::read(pki.httpbin));
  REQUIRE(pass->passthrough.size() == 1);
  CHECK(pass->passthrough[0].sni_hosts == std::vector<std::string>{"nginx.example.com"});
  CHECK(pass->passthrough[0].upstream == "outbound|80||a.default.svc.cluster.local");
  CHECK(parent_status(loaded, "TLSRoute default/pass").accepted);
}

TEST_CASE("gateway api: Istio's Bookinfo sample serves over real sockets") {
  FakeUpstream productpage("productpage-v1");
  std::map<std::string, std::string> ports = dummy_ports();
  ports["PRODUCTPAGE_V1"] = std::to_string(productpage.port());
  istio::TranslateOptions options;
  options.bind_address = "127.0.0.1";
  options.ephemeral_ports = true;
  auto loaded = istio::load_string(
      fixtures({"gateway-api-bookinfo-gateway.yaml", "bookinfo-kubernetes.yaml"}, ports), options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  GatewayOptions go;
  go.workers = 1;
  Gateway gateway(go);
  std::string listener = loaded->config.listeners.at(0).name;
  Status st = gateway.apply(std::move(loaded->config));
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  gateway.start();
  auto get = [&](const std::string& target) {
    RawClient c(gateway.port(listener));
    REQUIRE(c.connected());
    REQUIRE(c.send(make_request("GET", target, "bookinfo.example.com")));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r.has_value(), c.error());
    return *r;
  };
  for (const char* path :
       {"/productpage", "/static/style.css", "/login", "/logout", "/api/v1/products/1"}) {
    auto r = get(path);
    CHECK_MESSAGE(r.status == 200, path);
    CHECK(r.body == "productpage-v1");
  }
  CHECK(get("/productpage/x").status == 404);
  CHECK(get("/staticx").status == 404);
  CHECK(get("/reviews/1").status == 404);
  gateway.stop();
  CHECK(productpage.request_count() == 5);
}

TEST_CASE("gateway api: a policy whose targetRef names a Gateway API Gateway applies") {
  std::string policy = R"(
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
)";
  auto loaded =
      load_ok(gateway() + service("a") + route("r", rule("a", "{path: {value: /}}")) + policy);
  REQUIRE(loaded.security_applied.size() == 1);
  CHECK(loaded.security_applied[0].detail.find("targetRef Gateway default/gw") !=
        std::string::npos);
  CHECK(loaded.security_skipped.empty());
}

}  // namespace gateway_api_test
