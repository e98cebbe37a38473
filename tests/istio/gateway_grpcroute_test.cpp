// Gateway API GRPCRoute in the Istio loader (lib/istio/gateway_api.cpp):
// method matches as gRPC paths, header matches, filters, precedence,
// HTTPRoute/GRPCRoute hostname conflicts, status, errors naming the field,
// backends spoken to as HTTP/2, and a python3-grpcio server behind the
// gateway with a python3-grpcio client in front (trailers h2 -> h2).

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "child.hpp"
#include "istio_test_util.hpp"
#include "sluice/sluice.hpp"
#include "support/fake_upstream.hpp"
#include "support/process.hpp"

namespace gateway_grpcroute_test {

using namespace sluice;
using namespace sluice::test;

namespace {

const char* kGateway = R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
)";

// A Service `name` on port 80 whose endpoint listens on `target`.
std::string service(const std::string& name, uint16_t target = 8080) {
  return fmt::format(R"(
---
apiVersion: v1
kind: Service
metadata: {{name: {0}, namespace: default}}
spec:
  ports: [{{port: 80, targetPort: {1}}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: {0}, namespace: default}}
subsets:
- addresses: [{{ip: 127.0.0.1}}]
  ports: [{{port: {1}}}]
)",
                     name, target);
}

std::string route(const std::string& kind, const std::string& name, const std::string& rules,
                  const std::string& created = "", const std::string& hostnames = "") {
  return fmt::format(R"(
---
apiVersion: gateway.networking.k8s.io/v1
kind: {0}
metadata:
  name: {1}
  namespace: default
{3}
spec:
  parentRefs: [{{name: gw}}]
{4}
  rules:
{2}
)",
                     kind, name, rules,
                     created.empty() ? "" : "  creationTimestamp: \"" + created + "\"",
                     hostnames.empty() ? "" : "  hostnames: " + hostnames);
}

std::string grpc_rule(const std::string& svc, const std::string& match) {
  return fmt::format("  - matches: [{}]\n    backendRefs: [{{name: {}, port: 80}}]\n", match, svc);
}

std::string services() {
  return service("a") + service("b") + service("c");
}

const RouterConfig& router_of(const istio::LoadedConfig& loaded) {
  for (const auto& r : loaded.config.routers)
    if (r.name == loaded.config.listeners.at(0).router) return r;
  FAIL("no router");
  return loaded.config.routers.front();
}

// Which route match serves a gRPC call to `path`: "GRPCRoute ns/name spec.rules[i].matches[k]".
std::string chosen(const istio::LoadedConfig& loaded, const std::string& path,
                   HeaderList headers = {}) {
  auto router = Router::compile(router_of(loaded));
  REQUIRE_MESSAGE(router.ok(), (router.ok() ? std::string() : router.error().to_string()));
  RequestHead req;
  req.method = "POST";
  req.target = path;
  req.authority = "example.com";
  req.headers.add("content-type", "application/grpc");
  for (auto& [name, value] : headers) req.headers.add(name, value);
  auto sel = router->match(req);
  if (!sel) return "none";
  const auto& routes = loaded.listeners.at(0).routes;
  auto it = routes.find(sel->route->name);
  REQUIRE(it != routes.end());
  return it->second.source;
}

const istio::RouteParentStatus& parent_status(const istio::LoadedConfig& loaded,
                                              const std::string& route) {
  for (const auto& s : loaded.route_status)
    if (s.route == route) return s.parents.at(0);
  FAIL("no status for ", route);
  return loaded.route_status.front().parents.front();
}

}  // namespace

TEST_CASE("grpcroute: service and method become the gRPC path, Exact and RegularExpression") {
  std::string rules =
      grpc_rule("a", "{method: {service: echo.Echo, method: Say}}") +
      grpc_rule("b", "{method: {service: echo.Echo}}") +
      grpc_rule("c", "{method: {method: Ping}}") +
      grpc_rule("a",
                "{method: {type: RegularExpression, service: \"re\\\\..*\", method: \"Get.*\"}}");
  auto loaded = load_ok(kGateway + services() + route("GRPCRoute", "r", rules));
  std::string r = "GRPCRoute default/r spec.rules";
  CHECK(chosen(loaded, "/echo.Echo/Say") == r + "[0].matches[0]");
  CHECK(chosen(loaded, "/echo.Echo/Other") == r + "[1].matches[0]");
  CHECK(chosen(loaded, "/echo.EchoX/Say") == "none");
  CHECK(chosen(loaded, "/any.Svc/Ping") == r + "[2].matches[0]");
  CHECK(chosen(loaded, "/any.Svc/PingX") == "none");
  CHECK(chosen(loaded, "/re.Svc/GetThing") == r + "[3].matches[0]");
  CHECK(chosen(loaded, "/rex/GetThing") == "none");
  CHECK(chosen(loaded, "/re.Svc/PutThing") == "none");
}

TEST_CASE("grpcroute: no matches match every call, headers Exact and RegularExpression") {
  std::string rules =
      grpc_rule("a",
                "{headers: [{name: x-v, value: \"1\"}, {name: x-w, type: RegularExpression, "
                "value: \"a+\"}]}") +
      "  - backendRefs: [{name: b, port: 80}]\n";
  auto loaded = load_ok(kGateway + services() + route("GRPCRoute", "r", rules));
  std::string r = "GRPCRoute default/r spec.rules";
  CHECK(chosen(loaded, "/s.S/M", {{"x-v", "1"}, {"x-w", "aaa"}}) == r + "[0].matches[0]");
  CHECK(chosen(loaded, "/s.S/M", {{"x-v", "1"}, {"x-w", "b"}}) == r + "[1].matches");
  CHECK(chosen(loaded, "/s.S/M") == r + "[1].matches");
}

TEST_CASE("grpcroute precedence: service characters, then method characters, then headers") {
  // Written least specific first: precedence, not order, decides.
  std::string rules = grpc_rule("a", "{headers: [{name: x-v, value: \"1\"}]}") +
                      grpc_rule("b", "{method: {method: Say}}") +
                      grpc_rule("c", "{method: {service: echo.Echo}}") +
                      grpc_rule("a", "{method: {service: echo.Echo, method: Say}}") +
                      grpc_rule("b",
                                "{method: {service: echo.Echo, method: Say}, headers: [{name: "
                                "x-v, value: \"1\"}]}");
  auto loaded = load_ok(kGateway + services() + route("GRPCRoute", "r", rules));
  std::string r = "GRPCRoute default/r spec.rules";
  CHECK(chosen(loaded, "/echo.Echo/Say", {{"x-v", "1"}}) == r + "[4].matches[0]");
  CHECK(chosen(loaded, "/echo.Echo/Say") == r + "[3].matches[0]");
  CHECK(chosen(loaded, "/echo.Echo/Other", {{"x-v", "1"}}) == r + "[2].matches[0]");
  CHECK(chosen(loaded, "/x.Y/Say", {{"x-v", "1"}}) == r + "[1].matches[0]");
  CHECK(chosen(loaded, "/x.Y/Other", {{"x-v", "1"}}) == r + "[0].matches[0]");
}

TEST_CASE("grpcroute: precedence across routes, the oldest first on a tie") {
  std::string older =
      route("GRPCRoute", "zz", grpc_rule("a", "{method: {service: s.S}}"), "2024-01-01T00:00:00Z");
  std::string newer =
      route("GRPCRoute", "aa", grpc_rule("b", "{method: {service: s.S}}"), "2024-06-01T00:00:00Z");
  auto loaded = load_ok(kGateway + services() + newer + older);
  CHECK(chosen(loaded, "/s.S/M") == "GRPCRoute default/zz spec.rules[0].matches[0]");
}

TEST_CASE("grpcroute: filters become header edits and mirrors, weights split backends") {
  std::string rules = R"(  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-added, value: yes}]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {remove: [x-internal]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: c, port: 80}}
    backendRefs: [{name: a, port: 80, weight: 3}, {name: b, port: 80, weight: 1}]
)";
  auto loaded = load_ok(kGateway + services() + route("GRPCRoute", "r", rules));
  const RouterConfig& router = router_of(loaded);
  REQUIRE(router.virtual_hosts.size() == 1);
  REQUIRE(router.virtual_hosts[0].routes.size() == 1);
  const Route& r = router.virtual_hosts[0].routes[0];
  REQUIRE(r.destinations.size() == 2);
  CHECK(r.destinations[0].weight == 3);
  CHECK(r.destinations[1].weight == 1);
  REQUIRE(r.request_headers.set.size() == 1);
  CHECK(r.request_headers.set[0].first == "x-added");
  REQUIRE(r.response_headers.remove.size() == 1);
  CHECK(r.response_headers.remove[0] == "x-internal");
  CHECK(r.mirrors.size() == 1);
}

TEST_CASE("grpcroute: backends are spoken to as HTTP/2, an HTTPRoute's stay HTTP/1.1") {
  auto loaded = load_ok(
      kGateway + service("a") + service("b") +
      route("GRPCRoute", "g", grpc_rule("a", "{method: {service: s.S}}"), "", "[grpc.example]") +
      route("HTTPRoute", "h", "  - backendRefs: [{name: b, port: 80}]\n", "", "[web.example]"));
  auto protocol = [&](const std::string& svc) {
    std::string name = fmt::format("outbound|80||{}.default.svc.cluster.local", svc);
    for (const auto& u : loaded.config.upstreams)
      if (u.name == name) return u.protocol;
    FAIL("no upstream " << name);
    return UpstreamProtocol::http1;
  };
  CHECK(protocol("a") == UpstreamProtocol::http2);
  CHECK(protocol("b") == UpstreamProtocol::http1);
  CHECK(parent_status(loaded, "GRPCRoute default/g").accepted);
  CHECK(parent_status(loaded, "HTTPRoute default/h").accepted);
}

TEST_CASE("grpcroute: an HTTPRoute on the same hostname and listener, the older one is accepted") {
  std::string grpc = route("GRPCRoute", "g", grpc_rule("a", "{method: {service: s.S}}"),
                           "2024-01-01T00:00:00Z", "[api.example]");
  std::string http = route("HTTPRoute", "h", "  - backendRefs: [{name: b, port: 80}]\n",
                           "2024-06-01T00:00:00Z", "[api.example]");
  auto loaded = load_ok(kGateway + service("a") + service("b") + grpc + http);
  CHECK(parent_status(loaded, "GRPCRoute default/g").accepted);
  const auto& lost = parent_status(loaded, "HTTPRoute default/h");
  CHECK_FALSE(lost.accepted);
  CHECK(lost.accepted_reason == "Conflicted");
  CHECK(lost.accepted_message.find("GRPCRoute default/g") != std::string::npos);
  // The HTTPRoute serves nothing there: a plain GET finds no route.
  auto router = Router::compile(router_of(loaded));
  REQUIRE(router.ok());
  RequestHead get;
  get.method = "GET";
  get.target = "/index.html";
  get.authority = "api.example";
  CHECK_FALSE(router->match(get));
  // Made older, the HTTPRoute wins instead.
  std::string old_http = route("HTTPRoute", "h", "  - backendRefs: [{name: b, port: 80}]\n",
                               "2023-01-01T00:00:00Z", "[api.example]");
  auto flipped = load_ok(kGateway + service("a") + service("b") + grpc + old_http);
  CHECK(parent_status(flipped, "HTTPRoute default/h").accepted);
  CHECK(parent_status(flipped, "GRPCRoute default/g").accepted_reason == "Conflicted");
}

TEST_CASE("grpcroute: allowedRoutes kinds admit or refuse it") {
  std::string only_http = R"(
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
    allowedRoutes: {kinds: [{kind: HTTPRoute}]}
)";
  std::string r = route("GRPCRoute", "g", grpc_rule("a", "{method: {service: s.S}}"));
  auto refused = load_ok(only_http + service("a") + r);
  CHECK(parent_status(refused, "GRPCRoute default/g").accepted_reason == "NotAllowedByListeners");
  auto admitted = load_ok(kGateway + service("a") + r);
  CHECK(parent_status(admitted, "GRPCRoute default/g").accepted_reason == "Accepted");
}

TEST_CASE("grpcroute: a malformed GRPCRoute is rejected naming the field") {
  auto err = [&](const std::string& match) {
    return load_error(kGateway + service("a") + route("GRPCRoute", "bad", grpc_rule("a", match)));
  };
  std::string e = err("{method: {type: Exact}}");
  CHECK(e.find("GRPCRoute default/bad") != std::string::npos);
  CHECK(e.find("spec.rules[0].matches[0].method") != std::string::npos);
  CHECK(e.find("one or both of service and method") != std::string::npos);
  e = err("{method: {service: \"bad/service\"}}");
  CHECK(e.find("spec.rules[0].matches[0].method.service") != std::string::npos);
  e = err("{method: {method: \"Say.It\"}}");
  CHECK(e.find("spec.rules[0].matches[0].method.method") != std::string::npos);
  e = err("{method: {type: Prefix, service: s.S}}");
  CHECK(e.find("spec.rules[0].matches[0].method.type") != std::string::npos);
  e = err("{method: {type: RegularExpression, service: \"(\"}}");
  CHECK(e.find("spec.rules[0].matches[0].method.service") != std::string::npos);
  e = err("{path: {value: /x}}");
  CHECK(e.find("spec.rules[0].matches[0].path") != std::string::npos);
  // HTTPRoute-only filters are refused.
  e = load_error(kGateway + service("a") +
                 route("GRPCRoute", "bad",
                       "  - filters: [{type: URLRewrite, urlRewrite: {hostname: x.example}}]\n"
                       "    backendRefs: [{name: a, port: 80}]\n"));
  CHECK(e.find("spec.rules[0].filters[0].type") != std::string::npos);
}

namespace {

// A python3-grpcio server with generic handlers (raw bytes, no protoc):
// echo.Echo/Say answers "pong:<request>:<x-added>" with x-trailer trailing
// metadata, echo.Echo/Missing aborts with NOT_FOUND.
constexpr std::string_view kGrpcServer = R"(
import grpc
from concurrent import futures
def say(req, ctx):
    md = dict(ctx.invocation_metadata())
    ctx.set_trailing_metadata((('x-trailer', 'from-server'),))
    return b'pong:' + req + b':' + md.get('x-added', '-').encode()
def missing(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, 'no such echo')
handlers = {'Say': grpc.unary_unary_rpc_method_handler(say),
            'Missing': grpc.unary_unary_rpc_method_handler(missing)}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler('echo.Echo', handlers),))
port = server.add_insecure_port('127.0.0.1:0')
server.start()
print('port', port, flush=True)
server.wait_for_termination()
)";

// A unary call: the response, x-trailer and the code, or the error code and details.
constexpr std::string_view kGrpcClient = R"(
import sys, grpc
port, path = sys.argv[1], sys.argv[2]
with grpc.insecure_channel('127.0.0.1:' + port) as ch:
    rpc = ch.unary_unary(path)
    try:
        resp, c = rpc.with_call(b'hello', timeout=10)
        md = dict(c.trailing_metadata())
        print(resp.decode(), md.get('x-trailer'), c.code().name)
    except grpc.RpcError as e:
        print('error', e.code().name, e.details())
)";

}  // namespace

TEST_CASE("grpcroute: python3-grpcio through the gateway to a grpcio server over h2c") {
  Child server({"/usr/bin/python3", "-c", std::string(kGrpcServer)});
  REQUIRE(server.started());
  auto line = server.wait_line("port ");
  REQUIRE_MESSAGE(line.has_value(), server.err());
  auto upstream_port = static_cast<uint16_t>(std::stoi(line->substr(5)));
  REQUIRE(upstream_port > 0);

  std::string rules = R"(  - matches: [{method: {service: echo.Echo}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-added, value: by-gateway}]}
    backendRefs: [{name: echo, port: 80}]
)";
  istio::TranslateOptions options;
  options.bind_address = "127.0.0.1";
  options.ephemeral_ports = true;
  auto loaded = istio::load_string(
      kGateway + service("echo", upstream_port) + route("GRPCRoute", "echo", rules), options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  bool h2 = false;
  for (const auto& u : loaded->config.upstreams)
    h2 = h2 || (u.name == "outbound|80||echo.default.svc.cluster.local" &&
                u.protocol == UpstreamProtocol::http2);
  CHECK(h2);
  GatewayOptions go;
  go.workers = 1;
  Gateway gateway(go);
  std::string listener = loaded->config.listeners.at(0).name;
  Status st = gateway.apply(std::move(loaded->config));
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  gateway.start();
  std::string port = std::to_string(gateway.port(listener));

  auto ok =
      run_process("/usr/bin/python3", {"-c", std::string(kGrpcClient), port, "/echo.Echo/Say"});
  REQUIRE_MESSAGE(ok.exit_code == 0, ok.err);
  CHECK(ok.out == "pong:hello:by-gateway from-server OK\n");
  // A non-OK status and its message are trailers from the h2 upstream.
  auto missing =
      run_process("/usr/bin/python3", {"-c", std::string(kGrpcClient), port, "/echo.Echo/Missing"});
  REQUIRE_MESSAGE(missing.exit_code == 0, missing.err);
  CHECK(missing.out == "error NOT_FOUND no such echo\n");
  // No GRPCRoute match: the gateway's own UNIMPLEMENTED.
  auto other =
      run_process("/usr/bin/python3", {"-c", std::string(kGrpcClient), port, "/other.Svc/M"});
  REQUIRE_MESSAGE(other.exit_code == 0, other.err);
  CHECK(other.out.starts_with("error UNIMPLEMENTED"));
  gateway.stop();
}

}  // namespace gateway_grpcroute_test
