// VirtualService HTTPRoute actions and DestinationRule trafficPolicy fields:
// YAML -> Route / UpstreamConfig values, and their YAML-path errors.

#include <doctest/doctest.h>

#include "istio_test_util.hpp"

namespace traffic_loader_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

const char* base = R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  ports: [{number: 9080, name: http}, {number: 9090, name: admin}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, labels: {version: v1}}
  - {address: 127.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shadow}
spec:
  hosts: [shadow]
  ports: [{number: 8000, name: http}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.3}]
)";

// A VirtualService "vs" for "*" bound to gw, with the given http rules.
std::string with_vs(const std::string& http, const std::string& more = "") {
  return std::string(base) + R"(
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
)" + http +
         more;
}

const Route& first_route(const istio::LoadedConfig& l, size_t i = 0) {
  const auto& r = router_for(l, 80);
  REQUIRE(!r.virtual_hosts.empty());
  REQUIRE(r.virtual_hosts[0].routes.size() > i);
  return r.virtual_hosts[0].routes[i];
}

const UpstreamConfig* upstream(const istio::LoadedConfig& l, const std::string& name) {
  for (const auto& u : l.config.upstreams)
    if (u.name == name) return &u;
  return nullptr;
}

std::string error_of(const std::string& yaml) {
  auto r = istio::load_string(yaml);
  REQUIRE_MESSAGE(!r.ok(), "expected the configuration to be rejected");
  return r.error().to_string();
}

// The whole config must also compile in the core (Router + policies + upstreams).
void compiles(const istio::LoadedConfig& l) {
  auto snap = sluice::compile(l.config);
  CHECK_MESSAGE(snap.ok(), (snap.ok() ? std::string() : snap.error().to_string()));
}

}  // namespace

TEST_CASE("istio traffic: redirect fields") {
  auto l = load_ok(with_vs(
      R"(  - redirect: {uri: /v1/bookinfo, authority: newhost.example.com, scheme: https, port: 8443, redirectCode: 308}
  - match: [{uri: {prefix: /d}}]
    redirect: {derivePort: FROM_REQUEST_PORT}
)"));
  const Route& r = first_route(l);
  REQUIRE(r.redirect);
  CHECK(r.destinations.empty());
  CHECK(r.redirect->uri == "/v1/bookinfo");
  CHECK(r.redirect->authority == "newhost.example.com");
  CHECK(r.redirect->scheme == "https");
  CHECK(r.redirect->port == 8443);
  CHECK(r.redirect->code == 308);
  CHECK(r.redirect->derive_port == Redirect::DerivePort::none);
  const Route& r2 = first_route(l, 1);
  REQUIRE(r2.redirect);
  CHECK(r2.redirect->code == 301);
  CHECK(r2.redirect->derive_port == Redirect::DerivePort::from_request_port);
  compiles(l);
}

TEST_CASE("istio traffic: rewrite, headers, timeout") {
  auto l = load_ok(with_vs(R"(  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: internal.example.com}
    timeout: 0.5s
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {set: {x-d: "3"}, remove: [server]}
    route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      weight: 90
      headers: {request: {set: {x-dest: v1}}, response: {add: {x-from: v1}}}
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 10
  - rewrite: {uriRegexRewrite: {match: "^/service/([^/]+)(/.*)$", rewrite: "\\2/instance/\\1"}}
    timeout: 1m30s
    route: [{destination: {host: reviews, port: {number: 9080}}}]
)",
                           R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
)"));
  const Route& r = first_route(l);
  REQUIRE(r.rewrite);
  CHECK(r.rewrite->uri == std::optional<std::string>("/new"));
  CHECK(r.rewrite->authority == "internal.example.com");
  CHECK(r.timeout == 500ms);
  CHECK(r.request_headers.set == std::vector<std::pair<std::string, std::string>>{{"x-a", "1"}});
  CHECK(r.request_headers.add == std::vector<std::pair<std::string, std::string>>{{"x-b", "2"}});
  CHECK(r.request_headers.remove == std::vector<std::string>{"x-c"});
  CHECK(r.response_headers.set == std::vector<std::pair<std::string, std::string>>{{"x-d", "3"}});
  CHECK(r.response_headers.remove == std::vector<std::string>{"server"});
  REQUIRE(r.destinations.size() == 2);
  CHECK(r.destinations[0].weight == 90);
  CHECK(r.destinations[0].request_headers.set ==
        std::vector<std::pair<std::string, std::string>>{{"x-dest", "v1"}});
  CHECK(r.destinations[0].response_headers.add ==
        std::vector<std::pair<std::string, std::string>>{{"x-from", "v1"}});
  CHECK(r.destinations[1].request_headers.empty());
  const Route& r2 = first_route(l, 1);
  REQUIRE(r2.rewrite);
  CHECK(!r2.rewrite->uri);
  REQUIRE(r2.rewrite->uri_regex);
  CHECK(r2.rewrite->uri_regex->first == "^/service/([^/]+)(/.*)$");
  CHECK(r2.rewrite->uri_regex->second == "\\2/instance/\\1");
  CHECK(r2.timeout == 90s);
  // No timeout field: none (Istio's default).
  auto l2 = load_ok(with_vs("  - route: [{destination: {host: shadow}}]\n"));
  CHECK(first_route(l2).timeout == 0ms);
  compiles(l);
}

TEST_CASE("istio traffic: retries, the default policy and attempts 0") {
  auto l = load_ok(with_vs(R"(  - match: [{uri: {prefix: /a}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure,refused-stream,503", retryIgnorePreviousHosts: false, retryRemoteLocalities: true}
    route: [{destination: {host: shadow}}]
  - match: [{uri: {prefix: /b}}]
    retries: {attempts: 0}
    route: [{destination: {host: shadow}}]
  - route: [{destination: {host: shadow}}]
)"));
  const Route& r = first_route(l);
  CHECK(r.retries.attempts == 3);
  CHECK(r.retries.per_try_timeout == 2s);
  CHECK(r.retries.retry_on == "gateway-error,connect-failure,refused-stream,503");
  CHECK(!r.retries.retry_ignore_previous_hosts);
  CHECK(has_warning(l, "retryRemoteLocalities"));
  CHECK(first_route(l, 1).retries.attempts == 0);
  // No retries field: Istio's default policy.
  const RetryPolicy& d = first_route(l, 2).retries;
  CHECK(d.attempts == 2);
  CHECK(d.retry_on == RetryPolicy{}.retry_on);
  CHECK(d.retry_ignore_previous_hosts);
  compiles(l);
}

TEST_CASE("istio traffic: fault delay and abort, percentages") {
  auto l = load_ok(with_vs(R"(  - match: [{headers: {end-user: {exact: jason}}}]
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 12.5}}
      abort: {httpStatus: 500, percentage: {value: 100.0}}
    route: [{destination: {host: shadow}}]
  - match: [{uri: {prefix: /legacy}}]
    fault: {delay: {fixedDelay: 100ms, percent: 30}}
    route: [{destination: {host: shadow}}]
  - match: [{uri: {prefix: /grpc}}]
    fault: {abort: {grpcStatus: UNAVAILABLE}}
    route: [{destination: {host: shadow}}]
  - route: [{destination: {host: shadow}}]
)"));
  const Route& r = first_route(l);
  REQUIRE(r.fault);
  REQUIRE(r.fault->delay);
  CHECK(r.fault->delay->fixed_delay == 7s);
  CHECK(r.fault->delay->percentage == 12.5);
  REQUIRE(r.fault->abort);
  CHECK(r.fault->abort->http_status == 500);
  CHECK(r.fault->abort->percentage == 100.0);
  const Route& legacy = first_route(l, 1);
  CHECK(legacy.fault->delay->fixed_delay == 100ms);
  CHECK(legacy.fault->delay->percentage == 30.0);
  CHECK(!legacy.fault->abort);
  const Route& grpc = first_route(l, 2);
  REQUIRE(grpc.fault->abort);
  CHECK(grpc.fault->abort->grpc_status == std::optional<uint32_t>(14));
  CHECK(grpc.fault->abort->http_status == 0);
  // Percentage absent: no request is faulted (Istio's current behaviour).
  CHECK(grpc.fault->abort->percentage == 0.0);
  CHECK(!first_route(l, 3).fault);
  compiles(l);
}

TEST_CASE("istio traffic: mirror, mirrorPercentage and mirrors[]") {
  auto l = load_ok(with_vs(R"(  - match: [{uri: {prefix: /one}}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
    mirror: {host: shadow}
  - match: [{uri: {prefix: /pct}}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 25.5}
  - route: [{destination: {host: reviews, port: {number: 9080}}}]
    mirrors:
    - destination: {host: shadow}
      percentage: {value: 10}
    - destination: {host: reviews, port: {number: 9090}}
)"));
  const Route& one = first_route(l);
  REQUIRE(one.mirrors.size() == 1);
  CHECK(one.mirrors[0].upstream == "outbound|8000||shadow");
  CHECK(one.mirrors[0].percentage == 100.0);  // absent: every request
  CHECK(first_route(l, 1).mirrors.at(0).percentage == 25.5);
  const Route& many = first_route(l, 2);
  REQUIRE(many.mirrors.size() == 2);
  CHECK(many.mirrors[0].percentage == 10.0);
  CHECK(many.mirrors[1].upstream == "outbound|9090||reviews");
  CHECK(many.mirrors[1].percentage == 100.0);
  // The mirror upstream is created like a route destination's.
  REQUIRE(upstream(l, "outbound|8000||shadow") != nullptr);
  CHECK(upstream(l, "outbound|8000||shadow")->endpoints.at(0).address == "127.0.0.3");
  REQUIRE(upstream(l, "outbound|9090||reviews") != nullptr);
  compiles(l);
}

TEST_CASE("istio traffic: corsPolicy") {
  auto l = load_ok(with_vs(R"(  - corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {prefix: "https://dev."}, {regex: "https://.*\\.test"}]
      allowOrigin: ["http://legacy.example.com"]
      allowMethods: [POST, GET]
      allowHeaders: [X-Foo-Bar]
      exposeHeaders: [X-Expose]
      maxAge: 24h
      allowCredentials: false
      unmatchedPreflights: IGNORE
    route: [{destination: {host: shadow}}]
  - match: [{uri: {prefix: /x}}]
    corsPolicy: {allowOrigins: [{exact: "*"}]}
    route: [{destination: {host: shadow}}]
)"));
  REQUIRE(first_route(l).cors);
  const CorsPolicy& c = *first_route(l).cors;
  REQUIRE(c.allow_origins.size() == 4);
  CHECK(c.allow_origins[0].kind == StringMatch::Kind::exact);
  CHECK(c.allow_origins[1].kind == StringMatch::Kind::prefix);
  CHECK(c.allow_origins[2].kind == StringMatch::Kind::regex);
  CHECK(c.allow_origins[3].value == "http://legacy.example.com");
  CHECK(c.allow_methods == std::vector<std::string>{"POST", "GET"});
  CHECK(c.allow_headers == std::vector<std::string>{"X-Foo-Bar"});
  CHECK(c.expose_headers == std::vector<std::string>{"X-Expose"});
  CHECK(c.max_age == std::optional<std::chrono::seconds>(86400s));
  CHECK(c.allow_credentials == std::optional<bool>(false));
  CHECK(!c.forward_unmatched_preflights);
  CHECK(first_route(l, 1).cors->forward_unmatched_preflights);  // FORWARD by default
  compiles(l);
}

TEST_CASE("istio traffic: delegate merges matches and inherits route fields") {
  auto l = load_ok(with_vs(R"(  - match: [{uri: {prefix: /productpage}}]
    timeout: 3s
    delegate: {name: productpage-delegate}
  - route: [{destination: {host: shadow}}]
)",
                           R"(
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage-delegate}
spec:
  http:
  - match: [{uri: {prefix: /productpage/v2}, headers: {end-user: {exact: jason}}}]
    timeout: 1s
    route: [{destination: {host: reviews, subset: v2, port: {number: 9080}}}]
  - match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
  - route: [{destination: {host: reviews, subset: v1, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
)"));
  const auto& routes = router_for(l, 80).virtual_hosts.at(0).routes;
  // The conflicting /other rule is dropped with a warning.
  REQUIRE(routes.size() == 3);
  CHECK(has_warning(l, "VirtualService productpage-delegate: http[1]: dropped"));
  const Route& a = routes[0];
  REQUIRE(a.matches.size() == 1);
  CHECK(a.matches[0].uri->value == "/productpage/v2");
  CHECK(a.matches[0].headers.size() == 1);
  CHECK(a.timeout == 1s);  // the delegate's own
  const Route& b = routes[1];
  REQUIRE(b.matches.size() == 1);
  CHECK(b.matches[0].uri->value == "/productpage");  // the root's match
  CHECK(b.timeout == 3s);                            // inherited from the root
  CHECK(b.destinations.at(0).subset == "v1");
  Router router = compiled_router(l, 80);
  CHECK(route_of(router, request("x", "/productpage/v2/a", {{"end-user", "jason"}}, "GET", 80)) ==
        "outbound|9080||reviews/v2");
  CHECK(route_of(router, request("x", "/productpage/v2/a", {}, "GET", 80)) ==
        "outbound|9080||reviews/v1");
  CHECK(route_of(router, request("x", "/other", {}, "GET", 80)) == "outbound|8000||shadow");
  // The delegate alone serves nothing (no hosts) and is named in explain labels.
  CHECK(l.listeners.at(0).routes.at(a.name).delegate == "productpage-delegate");
  compiles(l);
}

TEST_CASE("istio traffic: delegate errors") {
  CHECK(error_of(with_vs("  - delegate: {name: nope}\n")) ==
        "VirtualService vs: http[0].delegate.name: VirtualService \"default/nope\" does not exist");
  CHECK(error_of(with_vs("  - delegate: {name: vs}\n"))
            .find("has hosts, so it cannot be a delegate") != std::string::npos);
  CHECK(error_of(with_vs("  - delegate: {name: d}\n", R"(
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: d}
spec:
  http: [{delegate: {name: d2}}]
)"))
            .starts_with("VirtualService d: http[0].delegate: only one level of delegation"));
  CHECK(
      error_of(with_vs("  - delegate: {name: d}\n    route: [{destination: {host: shadow}}]\n")) ==
      "VirtualService vs: http[0].delegate: route and delegate are mutually exclusive");
}

TEST_CASE("istio traffic: DestinationRule load balancers") {
  auto dr = [](const std::string& policy) {
    return with_vs("  - route: [{destination: {host: shadow}}]\n", R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shadow}
spec:
  host: shadow
  trafficPolicy:
)" + policy);
  };
  const std::string up = "outbound|8000||shadow";
  CHECK(upstream(load_ok(dr("    loadBalancer: {simple: ROUND_ROBIN}\n")), up)->load_balancer ==
        LoadBalancer::round_robin);
  CHECK(upstream(load_ok(dr("    loadBalancer: {simple: RANDOM}\n")), up)->load_balancer ==
        LoadBalancer::random);
  CHECK(upstream(load_ok(dr("    loadBalancer: {simple: PASSTHROUGH}\n")), up)->load_balancer ==
        LoadBalancer::passthrough);
  CHECK(upstream(load_ok(dr("    loadBalancer: {simple: LEAST_REQUEST}\n")), up)->load_balancer ==
        LoadBalancer::least_request);
  CHECK(upstream(load_ok(dr("    loadBalancer: {simple: UNSPECIFIED}\n")), up)->load_balancer ==
        LoadBalancer::least_request);
  CHECK(upstream(load_ok(dr("    loadBalancer: {simple: LEAST_CONN}\n")), up)->load_balancer ==
        LoadBalancer::least_request);
  {
    auto l = load_ok(dr("    loadBalancer: {consistentHash: {httpHeaderName: X-User}}\n"));
    const auto* u = upstream(l, up);
    CHECK(u->load_balancer == LoadBalancer::consistent_hash);
    REQUIRE(u->consistent_hash);
    CHECK(u->consistent_hash->source == ConsistentHash::Source::header);
    CHECK(u->consistent_hash->name == "x-user");
    CHECK(u->consistent_hash->algorithm == ConsistentHash::Algorithm::ring_hash);
    CHECK(u->consistent_hash->minimum_ring_size == 1024);
  }
  {
    auto l = load_ok(
        dr("    loadBalancer: {consistentHash: {httpCookie: {name: user, path: /, ttl: 60s}, "
           "ringHash: {minimumRingSize: 2048}}}\n"));
    const auto& ch = *upstream(l, up)->consistent_hash;
    CHECK(ch.source == ConsistentHash::Source::cookie);
    CHECK(ch.name == "user");
    CHECK(ch.cookie_path == "/");
    CHECK(ch.cookie_ttl == 60s);
    CHECK(ch.minimum_ring_size == 2048);
  }
  {
    auto l = load_ok(
        dr("    loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 251}}}\n"));
    const auto& ch = *upstream(l, up)->consistent_hash;
    CHECK(ch.source == ConsistentHash::Source::source_ip);
    CHECK(ch.algorithm == ConsistentHash::Algorithm::maglev);
    CHECK(ch.maglev_table_size == 251);
  }
  {
    auto l = load_ok(dr(
        "    loadBalancer: {consistentHash: {httpQueryParameterName: u, minimumRingSize: 64}}\n"));
    const auto& ch = *upstream(l, up)->consistent_hash;
    CHECK(ch.source == ConsistentHash::Source::query_parameter);
    CHECK(ch.name == "u");
    CHECK(ch.minimum_ring_size == 64);
  }
  CHECK(upstream(load_ok(dr("    loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 60s}\n")),
                 up)
            ->warmup == 60s);
  CHECK(error_of(dr("    loadBalancer: {simple: FASTEST}\n")) ==
        "DestinationRule shadow: trafficPolicy.loadBalancer.simple: unknown value \"FASTEST\" (one "
        "of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST)");
  CHECK(
      error_of(dr(
          "    loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 100}}}\n")) ==
      "DestinationRule shadow: trafficPolicy.loadBalancer.consistentHash.maglev.tableSize: must be "
      "a prime number up to 5000011, got 100");
  CHECK(error_of(dr("    loadBalancer: {simple: RANDOM, warmupDurationSecs: 10s}\n")) ==
        "DestinationRule shadow: trafficPolicy.loadBalancer.warmupDurationSecs: applies only to "
        "ROUND_ROBIN and LEAST_REQUEST load balancers");
}

TEST_CASE("istio traffic: connectionPool and outlierDetection") {
  auto l = load_ok(with_vs("  - route: [{destination: {host: shadow}}]\n", R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shadow}
spec:
  host: shadow
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
        connectTimeout: 30ms
        tcpKeepalive: {probes: 3, time: 7200s, interval: 75s}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 10, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 30s}
    outlierDetection:
      consecutive5xxErrors: 7
      consecutiveGatewayErrors: 2
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 100
      minHealthPercent: 50
)"));
  const auto* u = upstream(l, "outbound|8000||shadow");
  REQUIRE(u);
  CHECK(u->pool.max_connections == 1);
  CHECK(u->pool.connect_timeout == 30ms);
  REQUIRE(u->pool.tcp_keepalive);
  CHECK(u->pool.tcp_keepalive->probes == 3);
  CHECK(u->pool.tcp_keepalive->time == 7200s);
  CHECK(u->pool.tcp_keepalive->interval == 75s);
  CHECK(u->pool.max_pending_requests == 1);
  CHECK(u->pool.max_requests_per_connection == 1);
  CHECK(u->pool.max_retries == 3);
  CHECK(u->pool.idle_timeout == 30s);
  REQUIRE(u->outlier_detection);
  CHECK(u->outlier_detection->consecutive_5xx == 7);
  CHECK(u->outlier_detection->consecutive_gateway_errors == 2);
  CHECK(u->outlier_detection->interval == 5min);
  CHECK(u->outlier_detection->base_ejection_time == 15min);
  CHECK(u->outlier_detection->max_ejection_percent == 100);
  CHECK(u->outlier_detection->min_health_percent == 50);
  CHECK(u->pool.max_requests == 10);  // enforced for HTTP/2 upstreams
  CHECK_FALSE(has_warning(l, "http2MaxRequests"));
  compiles(l);

  // Defaults: Istio's, and no outlier detection unless asked for.
  auto d = load_ok(with_vs("  - route: [{destination: {host: shadow}}]\n"));
  const auto* du = upstream(d, "outbound|8000||shadow");
  CHECK(du->pool.connect_timeout == 10s);
  CHECK(du->pool.max_connections == 0xffffffffu);
  CHECK(!du->outlier_detection);
  // The deprecated consecutiveErrors counts gateway errors.
  auto legacy = load_ok(with_vs("  - route: [{destination: {host: shadow}}]\n", R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shadow}
spec:
  host: shadow
  trafficPolicy: {outlierDetection: {consecutiveErrors: 4}}
)"));
  const auto& od = *upstream(legacy, "outbound|8000||shadow")->outlier_detection;
  CHECK(od.consecutive_gateway_errors == 4);
  CHECK(od.consecutive_5xx == 0);
  CHECK(od.interval == 10s);
  CHECK(od.base_ejection_time == 30s);
  CHECK(od.max_ejection_percent == 10);
}

TEST_CASE("istio traffic: portLevelSettings and subset policies") {
  auto l = load_ok(with_vs(R"(  - match: [{uri: {prefix: /admin}}]
    route: [{destination: {host: reviews, port: {number: 9090}}}]
  - match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: reviews, subset: v2, port: {number: 9080}}}]
  - route: [{destination: {host: reviews, subset: v1, port: {number: 9080}}}]
)",
                           R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {tcp: {maxConnections: 100}}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {simple: ROUND_ROBIN}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
)"));
  // Port 9090: port-level settings replace the destination level entirely.
  const auto* admin = upstream(l, "outbound|9090||reviews");
  REQUIRE(admin);
  CHECK(admin->load_balancer == LoadBalancer::round_robin);
  CHECK(admin->pool.max_connections == 0xffffffffu);  // not inherited
  // Port 9080, subset v1: the destination level.
  const auto* main = upstream(l, "outbound|9080||reviews");
  REQUIRE(main);
  CHECK(main->load_balancer == LoadBalancer::random);
  CHECK(main->pool.max_connections == 100);
  CHECK(main->endpoints.size() == 2);
  // Subset v2 has its own policy: its own upstream with only its endpoints;
  // the parts it does not set come from the destination level.
  const auto* v2 = upstream(l, "outbound|9080|v2|reviews");
  REQUIRE(v2);
  CHECK(v2->load_balancer == LoadBalancer::round_robin);
  CHECK(v2->pool.max_connections == 100);
  REQUIRE(v2->endpoints.size() == 1);
  CHECK(v2->endpoints[0].address == "127.0.0.2");
  Router router = compiled_router(l, 80);
  CHECK(route_of(router, request("x", "/v2", {}, "GET", 80)) == "outbound|9080|v2|reviews/v2");
  CHECK(route_of(router, request("x", "/", {}, "GET", 80)) == "outbound|9080||reviews/v1");
  compiles(l);
}

TEST_CASE("istio traffic: invalid values name the YAML path") {
  auto route = std::string("    route: [{destination: {host: shadow}}]\n");
  auto err = [&](const std::string& rule) {
    return error_of(with_vs("  - " + rule + "\n" + route));
  };
  CHECK(err("timeout: -1s") ==
        "VirtualService vs: http[0].timeout: invalid duration \"-1s\": must not be negative");
  CHECK(err("timeout: 5") ==
        "VirtualService vs: http[0].timeout: invalid duration \"5\": missing "
        "unit (h, m, s, ms, us, ns)");
  CHECK(err("timeout: 1.5ms") ==
        "VirtualService vs: http[0].timeout: invalid duration \"1.5ms\": "
        "only durations to ms precision are supported");
  CHECK(err("retries: {attempts: -1}") ==
        "VirtualService vs: http[0].retries.attempts: must be >= 0, got -1");
  CHECK(err("retries: {attempts: 2, retryOn: \"5xx,bogus\"}") ==
        "VirtualService vs: http[0].retries.retryOn: unknown retry condition \"bogus\"");
  CHECK(err("retries: {attempts: 2, retryOn: \"5xx,,503\"}") ==
        "VirtualService vs: http[0].retries.retryOn: empty retry condition (stray ',')");
  CHECK(err("fault: {delay: {fixedDelay: 0s, percentage: {value: 10}}}") ==
        "VirtualService vs: http[0].fault.delay.fixedDelay: must be at least 1ms");
  CHECK(err("fault: {abort: {httpStatus: 500, percentage: {value: 101}}}") ==
        "VirtualService vs: http[0].fault.abort.percentage.value: must be in [0, 100], got 101");
  CHECK(err("fault: {abort: {httpStatus: 99}}") ==
        "VirtualService vs: http[0].fault.abort.httpStatus: must be in 200..599, got 99");
  CHECK(err("fault: {abort: {grpcStatus: \"14\"}}")
            .starts_with(
                "VirtualService vs: http[0].fault.abort.grpcStatus: unknown gRPC status \"14\""));
  CHECK(err("fault: {}") == "VirtualService vs: http[0].fault: delay or abort is required");
  CHECK(err("mirror: {host: shadow}\n    mirrorPercentage: {value: -5}") ==
        "VirtualService vs: http[0].mirrorPercentage.value: must be in [0, 100], got -5");
  CHECK(err("mirrors: [{destination: {host: shadow}, percentage: {value: 200}}]") ==
        "VirtualService vs: http[0].mirrors[0].percentage.value: must be in [0, 100], got 200");
  CHECK(err("mirror: {host: nowhere}") ==
        "VirtualService vs: http[0].mirror.host: host \"nowhere\" is not declared by any "
        "ServiceEntry or Service (or start with --resolve-unknown-hosts dns)");
  CHECK(err("rewrite: {uriRegexRewrite: {match: \"(\", rewrite: /}}")
            .starts_with(
                "VirtualService vs: http[0].rewrite.uriRegexRewrite.match: invalid regex \"(\""));
  CHECK(err("rewrite: {uriRegexRewrite: {match: \"^/a$\", rewrite: \"\\\\1\"}}")
            .starts_with(
                "VirtualService vs: http[0].rewrite.uriRegexRewrite.rewrite: invalid rewrite"));
  CHECK(err("corsPolicy: {allowOrigins: [{regex: \"[\"}]}")
            .starts_with(
                "VirtualService vs: http[0].corsPolicy.allowOrigins[0].regex: invalid regex"));
  CHECK(err("corsPolicy: {unmatchedPreflights: DROP}") ==
        "VirtualService vs: http[0].corsPolicy.unmatchedPreflights: unknown value \"DROP\" (one of "
        "UNSPECIFIED, FORWARD, IGNORE)");
  CHECK(err("redirect: {uri: /x}") ==
        "VirtualService vs: http[0].redirect: route and redirect are mutually exclusive");
  CHECK(err("headers: {request: {remove: [host]}}") ==
        "VirtualService vs: http[0].headers.request.remove[0]: header \"host\" cannot be removed");
  CHECK(error_of(with_vs("  - redirect: {uri: /x, redirectCode: 200}\n")) ==
        "VirtualService vs: http[0].redirect.redirectCode: must be one of 301, 302, 303, 307, 308, "
        "got 200");
  CHECK(
      error_of(with_vs("  - redirect: {port: 80, derivePort: FROM_REQUEST_PORT}\n")) ==
      "VirtualService vs: http[0].redirect.derivePort: port and derivePort are mutually exclusive");
  CHECK(error_of(with_vs("  - redirect: {uri: /x}\n    fault: {abort: {httpStatus: 500}}\n")) ==
        "VirtualService vs: http[0].fault: cannot be used with redirect");
  CHECK(error_of(with_vs("  - route: [{destination: {host: shadow}}]\n", R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shadow}
spec:
  host: shadow
  trafficPolicy: {outlierDetection: {maxEjectionPercent: 101}}
)")) == "DestinationRule shadow: trafficPolicy.outlierDetection.maxEjectionPercent: must be in [0, "
        "100], got 101");
  CHECK(
      error_of(with_vs("  - route: [{destination: {host: shadow}}]\n", R"(
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shadow}
spec:
  host: shadow
  subsets:
  - name: a
    trafficPolicy: {connectionPool: {tcp: {connectTimeout: 10 s}}}
)")) ==
      "DestinationRule shadow: subsets[0].trafficPolicy.connectionPool.tcp.connectTimeout: invalid "
      "duration \"10 s\": unknown unit");
}

TEST_CASE("istio traffic: explain shows the actions a request would get") {
  auto l = load_ok(with_vs(R"(  - match: [{uri: {prefix: /r}}]
    redirect: {uri: /new, authority: other.example.com}
  - match: [{headers: {end-user: {exact: jason}}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 100}}}
    route: [{destination: {host: shadow}}]
  - rewrite: {uri: /v1}
    headers: {request: {set: {x-a: "1"}}}
    timeout: 2s
    retries: {attempts: 3, retryOn: 5xx, perTryTimeout: 500ms}
    mirror: {host: reviews, port: {number: 9080}}
    mirrorPercentage: {value: 50}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}], allowMethods: [GET]}
    route:
    - destination: {host: reviews, port: {number: 9080}}
      weight: 75
    - destination: {host: shadow}
      weight: 25
)"));
  const auto& listener = *l.listener_for_port(80);
  const RouterConfig& rc = router_for(l, 80);
  Router router = compiled_router(l, 80);
  auto text = [&](const RequestHead& req) {
    return istio::explain_text(l, listener, rc, router.explain(req));
  };
  std::string redirect = text(request("x", "/r/1", {}, "GET", 80));
  CHECK(redirect.find("redirect: 301 authority other.example.com uri /new") != std::string::npos);
  std::string fault = text(request("x", "/a", {{"end-user", "jason"}}, "GET", 80));
  CHECK(fault.find("fault:    abort 500 for 100% of requests") != std::string::npos);
  CHECK(fault.find("retries:  none (the route has a fault)") != std::string::npos);
  std::string full = text(request("x", "/a", {}, "GET", 80));
  INFO(full);
  CHECK(
      full.find("outbound|9080||reviews weight 75 (75%), outbound|8000||shadow weight 25 (25%)") !=
      std::string::npos);
  CHECK(full.find("rewrite:  uri /v1") != std::string::npos);
  CHECK(full.find("request headers: set x-a: 1") != std::string::npos);
  CHECK(full.find("timeout:  2s") != std::string::npos);
  CHECK(full.find("retries:  3 attempt(s) on 5xx, per try timeout 500ms") != std::string::npos);
  CHECK(full.find("mirror:   outbound|9080||reviews for 50% of requests") != std::string::npos);
  CHECK(full.find("cors:     origins exact \"https://a.example\"; methods GET") !=
        std::string::npos);
  std::string fallback = text(request("x", "/a", {}, "GET", 80));
  CHECK(fallback.find("skipped:") != std::string::npos);
}

}  // namespace traffic_loader_test
