// Istio's rate-limit task ("Enabling Rate Limits using Envoy") as YAML
// (issue 12, section 4): the task's EnvoyFilters and ratelimit ConfigMap
// verbatim, loaded by lib/istio and served by real Gateways on 127.0.0.1
// port 0 with a real redis-server; the task's curl checks as assertions.
// Time never passes by itself: the steady and wall clocks are injected.

#include <doctest/doctest.h>

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>

#include <fmt/format.h>

#include "istio/child.hpp"
#include "istio/istio.hpp"
#include "sluice/sluice.hpp"
#include "support/fake_upstream.hpp"
#include "support/manual_clock.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "support/redis_server.hpp"

namespace ratelimit_yaml_test {

using namespace sluice;
using namespace sluice::test;

namespace {

// The task's ConfigMap (snip_global_rate_limit_1).
const std::string kConfigMap = R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: ratelimit-config
data:
  config.yaml: |
    domain: ratelimit
    descriptors:
      - key: PATH
        value: "/productpage"
        rate_limit:
          unit: minute
          requests_per_unit: 1
      - key: PATH
        value: "api"
        rate_limit:
          unit: minute
          requests_per_unit: 2
      - key: PATH
        rate_limit:
          unit: minute
          requests_per_unit: 100
)";

// snip_global_rate_limit_3
const std::string kFilterRatelimit = R"(apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit
  namespace: istio-system
spec:
  workloadSelector:
    # select by label in the same namespace
    labels:
      istio: ingressgateway
  configPatches:
    # The Envoy config you want to modify
    - applyTo: HTTP_FILTER
      match:
        context: GATEWAY
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
              subFilter:
                name: "envoy.filters.http.router"
      patch:
        operation: INSERT_BEFORE
        # Adds the Envoy Rate Limit Filter in HTTP filter chain.
        value:
          name: envoy.filters.http.ratelimit
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
            # domain can be anything! Match it to the ratelimter service config
            domain: ratelimit
            failure_mode_deny: true
            timeout: 10s
            rate_limit_service:
              grpc_service:
                envoy_grpc:
                  cluster_name: outbound|8081||ratelimit.default.svc.cluster.local
                  authority: ratelimit.default.svc.cluster.local
              transport_api_version: V3
)";

// snip_global_rate_limit_4
const std::string kFilterRatelimitSvc = R"(apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
    - applyTo: VIRTUAL_HOST
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: ""
            route:
              action: ANY
      patch:
        operation: MERGE
        # Applies the rate limit rules.
        value:
          rate_limits:
            - actions: # any actions in here
              - request_headers:
                  header_name: ":path"
                  descriptor_key: "PATH"
)";

// snip_global_rate_limit_advanced_case_1 (the VirtualService) and _2.
const std::string kBookinfoVirtualService = R"(apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  gateways:
  - bookinfo-gateway
  hosts:
  - '*'
  http:
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /static
    - uri:
        exact: /login
    - uri:
        exact: /logout
    route:
    - destination:
        host: productpage
        port:
          number: 9080
  - match:
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
    name: api
)";

const std::string kFilterRatelimitSvcApi = R"(apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-ratelimit-svc-api
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
    - applyTo: HTTP_ROUTE
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: "*:8080"
            route:
              name: "api"
      patch:
        operation: MERGE
        value:
          route:
            rate_limits:
            - actions:
              - header_value_match:
                  descriptor_key: "PATH"
                  descriptor_value: "api"
                  headers:
                    - name: ":path"
                      safe_regex_match:
                        google_re2: {}
                        regex: "/api/v1/products/[1-9]{1,2}"
)";

// snip_local_rate_limit_2: for the productpage sidecar, not the gateway.
const std::string kLocalSidecar = R"(apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: filter-local-ratelimit-svc
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      app: productpage
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_INBOUND
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
              token_bucket:
                max_tokens: 4
                tokens_per_fill: 4
                fill_interval: 60s
              filter_enabled:
                runtime_key: local_rate_limit_enabled
                default_value:
                  numerator: 100
                  denominator: HUNDRED
              filter_enforced:
                runtime_key: local_rate_limit_enforced
                default_value:
                  numerator: 100
                  denominator: HUNDRED
              response_headers_to_add:
                - append: false
                  header:
                    key: x-local-rate-limit
                    value: 'true'
)";

// The same filter at the ingress gateway: only the workload selector and the
// context differ from the task's.
std::string local_at_gateway() {
  std::string y = kLocalSidecar;
  y.replace(y.find("app: productpage"), 16, "istio: ingressgateway");
  y.replace(y.find("SIDECAR_INBOUND"), 15, "GATEWAY");
  return y;
}

// Gateway "bookinfo-gateway" on 8080 for "*" and the productpage service
// at `port`, with the task's VirtualService.
std::string bookinfo(uint16_t port) {
  return fmt::format(R"(apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bookinfo-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 8080, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: productpage}}
spec:
  hosts: [productpage]
  ports: [{{number: 9080, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
{})",
                     port, kBookinfoVirtualService);
}

istio::LoadedConfig load(const std::string& yaml) {
  istio::TranslateOptions options;
  options.bind_address = "127.0.0.1";
  options.ephemeral_ports = true;
  auto loaded = istio::load_string(yaml, options);
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
  return std::move(loaded).value();
}

std::string load_fails(const std::string& yaml) {
  auto loaded = istio::load_string(yaml, {});
  REQUIRE_MESSAGE(!loaded.ok(), "expected the configuration to be rejected");
  return loaded.error().to_string();
}

struct WallClock {
  std::atomic<int64_t> seconds{1'700'000'040};  // a minute boundary
  std::function<std::chrono::system_clock::time_point()> fn() {
    return [this] { return std::chrono::system_clock::time_point(std::chrono::seconds(seconds)); };
  }
};

class Ingress {
 public:
  Ingress(const istio::LoadedConfig& loaded, ManualClock& clock, WallClock* wall = nullptr)
      : clock_(clock) {
    listener_ = loaded.config.listeners.at(0).name;
    GatewayOptions go;
    go.workers = 1;
    go.clock = clock.fn();
    if (wall) go.wall_clock = wall->fn();
    gateway_ = std::make_unique<Gateway>(go);
    Status st = gateway_->apply(loaded.config);
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
    gateway_->start();
    clock_.drive(*gateway_);
  }
  ~Ingress() {
    clock_.forget(*gateway_);
    gateway_->stop();
  }
  uint16_t port() const { return gateway_->port(listener_); }

 private:
  ManualClock& clock_;
  std::string listener_;
  std::unique_ptr<Gateway> gateway_;
};

HttpResponse get(uint16_t port, std::string_view target) {
  RawClient c(port);
  REQUIRE(c.connected());
  REQUIRE(c.send(make_request("GET", target, "bookinfo.example.com")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r.has_value(), c.error());
  return *r;
}

bool listed(const std::vector<istio::SecurityPolicyInfo>& list, const std::string& object) {
  for (const auto& p : list)
    if (p.object == object) return true;
  return false;
}

}  // namespace

TEST_CASE("istio rate-limit task: global limits on Redis, held across two gateways") {
  RedisServer redis;
  FakeUpstream productpage("productpage");
  auto loaded = load(bookinfo(productpage.port()) + "\n---\n" + kFilterRatelimit + "\n---\n" +
                     kFilterRatelimitSvc + "\n---\n" + kFilterRatelimitSvcApi);
  auto service = istio::parse_rate_limit_config(kConfigMap, "ratelimit-config.yaml");
  REQUIRE_MESSAGE(service.ok(), (service.ok() ? "" : service.error().to_string()));
  REQUIRE(service->size() == 1);
  loaded.config.rate_limits.service = *service;
  loaded.config.rate_limits.redis_address = "127.0.0.1:" + std::to_string(redis.port());
  CHECK(listed(loaded.envoy_filters_applied, "EnvoyFilter istio-system/filter-ratelimit"));
  REQUIRE(loaded.config.rate_limits.global);
  CHECK(loaded.config.rate_limits.global->failure_mode_deny);
  CHECK(loaded.config.rate_limits.global->timeout == std::chrono::seconds(10));

  ManualClock clock;
  WallClock wall;
  Ingress first(loaded, clock, &wall);
  Ingress second(loaded, clock, &wall);
  // snip_verify_global_rate_limit_1: 200, then 429 (1 a minute), on either
  // gateway: they count in one Redis.
  CHECK(get(first.port(), "/productpage").status == 200);
  auto limited = get(second.port(), "/productpage");
  CHECK(limited.status == 429);
  CHECK(limited.header("x-envoy-ratelimited") == "true");
  CHECK(get(first.port(), "/productpage").status == 429);
  // snip_verify_global_rate_limit_2: the api route's own rule, 2 a minute.
  CHECK(get(first.port(), "/api/v1/products/1").status == 200);
  CHECK(get(second.port(), "/api/v1/products/2").status == 200);
  CHECK(get(first.port(), "/api/v1/products/3").status == 429);
  CHECK(productpage.requests().size() == 3);
  // A new minute, a new window.
  wall.seconds += 60;
  CHECK(get(second.port(), "/productpage").status == 200);
}

TEST_CASE("istio rate-limit task: the local filter, at the gateway and at the sidecar") {
  FakeUpstream productpage("productpage");
  // The task's own YAML selects the productpage sidecar: accepted, listed
  // as not applying to the gateway.
  auto sidecar = load(bookinfo(productpage.port()) + "\n---\n" + kLocalSidecar);
  CHECK(
      listed(sidecar.envoy_filters_skipped, "EnvoyFilter istio-system/filter-local-ratelimit-svc"));
  CHECK_FALSE(sidecar.config.rate_limits.local);

  // The same filter selecting the gateway: 4 tokens a minute, then 429 with
  // the task's header (snip_verify_local_rate_limit_1's 200 x4, 429).
  auto loaded = load(bookinfo(productpage.port()) + "\n---\n" + local_at_gateway());
  REQUIRE(loaded.config.rate_limits.local);
  ManualClock clock;
  Ingress gw(loaded, clock);
  for (int i = 0; i < 4; ++i) CHECK(get(gw.port(), "/productpage").status == 200);
  auto limited = get(gw.port(), "/productpage");
  CHECK(limited.status == 429);
  CHECK(limited.body == "local_rate_limited");
  CHECK(limited.header("x-local-rate-limit") == "true");
  clock.advance(std::chrono::seconds(60));
  CHECK(get(gw.port(), "/productpage").status == 200);
}

TEST_CASE(
    "istio rate-limit task: per-route local config through HTTP_ROUTE typed_per_filter_config") {
  FakeUpstream productpage("productpage");
  // snip_local_rate_limit_3 at the gateway: the filter without a bucket,
  // the bucket on the routes of the gateway's virtual host.
  std::string yaml = local_at_gateway();
  yaml = yaml.substr(0, yaml.find("              token_bucket:"));
  yaml += R"(    - applyTo: HTTP_ROUTE
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: "*:8080"
            route:
              name: "api"
      patch:
        operation: MERGE
        value:
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              value:
                stat_prefix: http_local_rate_limiter
                token_bucket:
                  max_tokens: 2
                  tokens_per_fill: 2
                  fill_interval: 60s
                filter_enabled:
                  runtime_key: local_rate_limit_enabled
                  default_value:
                    numerator: 100
                    denominator: HUNDRED
                filter_enforced:
                  runtime_key: local_rate_limit_enforced
                  default_value:
                    numerator: 100
                    denominator: HUNDRED
)";
  auto loaded = load(bookinfo(productpage.port()) + "\n---\n" + yaml);
  REQUIRE(loaded.config.rate_limits.local_overrides.size() == 1);
  ManualClock clock;
  Ingress gw(loaded, clock);
  CHECK(get(gw.port(), "/api/v1/products/1").status == 200);
  CHECK(get(gw.port(), "/api/v1/products/1").status == 200);
  CHECK(get(gw.port(), "/api/v1/products/1").status == 429);
  // The other route: the filter's config, which has no bucket.
  for (int i = 0; i < 5; ++i) CHECK(get(gw.port(), "/productpage").status == 200);
}

TEST_CASE("istio rate-limit task: other EnvoyFilters are rejected whole, naming the field") {
  std::string listener_patch = R"(apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: tweak, namespace: istio-system}
spec:
  configPatches:
  - applyTo: LISTENER
    patch: {operation: MERGE, value: {per_connection_buffer_limit_bytes: 1024}}
)";
  std::string err = load_fails(listener_patch);
  CHECK_MESSAGE(err.find("EnvoyFilter istio-system/tweak: configPatches[0].applyTo") == 0, err);

  std::string lua = kFilterRatelimit;
  lua.replace(lua.find("name: envoy.filters.http.ratelimit"), 34, "name: envoy.filters.http.lua");
  err = load_fails(lua);
  CHECK_MESSAGE(
      err.find("EnvoyFilter istio-system/filter-ratelimit: configPatches[0].patch.value.name") == 0,
      err);

  std::string bad_bucket = local_at_gateway();
  bad_bucket.replace(bad_bucket.find("fill_interval: 60s"), 18, "fill_interval: 0.01s");
  err = load_fails(bad_bucket);
  CHECK_MESSAGE(err.find("token_bucket.fill_interval: must be >= 50ms") != std::string::npos, err);

  std::string unknown = kFilterRatelimitSvc;
  unknown.replace(unknown.find("descriptor_key: \"PATH\""), 22,
                  "descriptor_key: \"PATH\"\n                  extra: 1");
  err = load_fails(unknown);
  CHECK_MESSAGE(err.find("request_headers.extra") != std::string::npos, err);

  auto bad_service = istio::parse_rate_limit_config(
      "domain: ratelimit\ndescriptors:\n- key: PATH\n"
      "  rate_limit: {unit: fortnight}\n",
      "config.yaml");
  REQUIRE_FALSE(bad_service.ok());
  CHECK(bad_service.error().field == "descriptors[0].rate_limit.unit");
}

TEST_CASE("sluice-ingress --check accepts the task's EnvoyFilters and ConfigMap") {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "sluice-rl-XXXXXX").string();
  fs::path dir = mkdtemp(tmpl.data());
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
  };
  fs::create_directory(dir / "config");
  write("config/bookinfo.yaml", bookinfo(9080));
  write("config/filters.yaml", kFilterRatelimit + "---\n" + kFilterRatelimitSvc + "---\n" +
                                   kFilterRatelimitSvcApi + "---\n" + kLocalSidecar);
  write("ratelimit-config.yaml", kConfigMap);
  auto r = run_process(SLUICE_INGRESS_BIN,
                       {"--check", "--config", (dir / "config").string(), "--rate-limit-config",
                        (dir / "ratelimit-config.yaml").string(), "--redis", "127.0.0.1:6390"});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.find("global domain ratelimit on Redis 127.0.0.1:6390 (1 service config(s))") !=
        std::string::npos);
  CHECK(r.out.find("applies: EnvoyFilter istio-system/filter-ratelimit-svc-api") !=
        std::string::npos);
  CHECK(r.out.find("skipped: EnvoyFilter istio-system/filter-local-ratelimit-svc") !=
        std::string::npos);
  CHECK(r.out.find("configuration OK") != std::string::npos);

  write("bad-config.yaml", "domain: ratelimit\ndescriptors: [{key: \"\"}]\n");
  auto bad =
      run_process(SLUICE_INGRESS_BIN, {"--check", "--config", (dir / "config").string(),
                                       "--rate-limit-config", (dir / "bad-config.yaml").string()});
  CHECK(bad.exit_code != 0);
  CHECK_MESSAGE(bad.err.find("descriptors[0].key") != std::string::npos, bad.err);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// The task's claim itself: sluice processes pointed at one Redis share the
// limit. Two sluice-ingress processes run on the real clock, so the test
// reads Redis to know whether its requests fell in one window.
TEST_CASE("sluice-ingress: two processes share the task's global limit through one Redis") {
  namespace fs = std::filesystem;
  RedisServer redis;
  FakeUpstream productpage("productpage");
  std::string tmpl = (fs::temp_directory_path() / "sluice-rl2-XXXXXX").string();
  fs::path dir = mkdtemp(tmpl.data());
  std::ofstream(dir / "config.yaml", std::ios::binary) << bookinfo(productpage.port()) << "\n---\n"
                                                       << kFilterRatelimit << "\n---\n"
                                                       << kFilterRatelimitSvc;
  std::ofstream(dir / "ratelimit-config.yaml", std::ios::binary) << kConfigMap;
  auto start = [&] {
    return std::make_unique<Child>(std::vector<std::string>{
        SLUICE_INGRESS_BIN, "--ephemeral-ports", "--bind", "127.0.0.1", "--workers", "1",
        "--no-watch", "--config", (dir / "config.yaml").string(), "--rate-limit-config",
        (dir / "ratelimit-config.yaml").string(), "--redis",
        "127.0.0.1:" + std::to_string(redis.port())});
  };
  auto a = start();
  auto b = start();
  auto port_of = [](Child& c) {
    auto line = c.wait_line("listening 8080 ");
    REQUIRE_MESSAGE(line, c.err());
    REQUIRE(c.wait_line("ready"));
    return static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  };
  uint16_t pa = port_of(*a), pb = port_of(*b);
  int s1 = get(pa, "/productpage").status;
  int s2 = get(pb, "/productpage").status;
  int s3 = get(pa, "/productpage").status;
  // Every request was counted in Redis, under the reference service's key
  // for the minute it fell in.
  auto keys = run_process("redis-cli", {"-p", std::to_string(redis.port()), "--scan", "--pattern",
                                        "ratelimit_PATH_/productpage_*"});
  REQUIRE_MESSAGE(keys.exit_code == 0, keys.err);
  std::vector<std::string> names;
  for (size_t at = 0, nl; (nl = keys.out.find('\n', at)) != std::string::npos; at = nl + 1)
    if (nl > at) names.push_back(keys.out.substr(at, nl - at));
  REQUIRE(!names.empty());
  int counted = 0;
  for (const auto& k : names) {
    auto v = run_process("redis-cli", {"-p", std::to_string(redis.port()), "GET", k});
    counted += std::stoi(v.out);
  }
  CHECK(counted == 3);
  if (names.size() == 1) {
    // One window: 1 a minute, whichever process is asked.
    CHECK(s1 == 200);
    CHECK(s2 == 429);
    CHECK(s3 == 429);
    CHECK(productpage.requests().size() == 1);
  } else {
    MESSAGE("the requests crossed a minute boundary; only the count is checked");
  }
  a->signal(SIGTERM);
  b->signal(SIGTERM);
  CHECK(a->wait_exit() == 0);
  CHECK(b->wait_exit() == 0);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace ratelimit_yaml_test
