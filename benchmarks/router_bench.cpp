// Route-table scale: Router::match at 10..10,000 rules, and the time to
// compile and apply a 10,000-rule configuration.
//
// Rules cycle through four kinds, all in one catch-all virtual host, first
// match wins (Istio order):
//   i % 4 == 0  exact path   /e<i>
//   i % 4 == 1  path prefix  /p<i>/
//   i % 4 == 2  path regex   /r<i>/[a-z]+/[0-9]+
//   i % 4 == 3  header       x-tenant: t<i>  (no uri condition)
// Each request is checked to select the intended rule before it is timed.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include <sluice/sluice.hpp>

namespace {

using namespace sluice;

enum class Kind { exact = 0, prefix = 1, regex = 2, header = 3 };

Route make_rule(size_t i) {
  Route r;
  r.name = "r" + std::to_string(i);
  Matcher m;
  switch (static_cast<Kind>(i % 4)) {
    case Kind::exact:
      m.path_exact("/e" + std::to_string(i));
      break;
    case Kind::prefix:
      m.path_prefix("/p" + std::to_string(i) + "/");
      break;
    case Kind::regex:
      m.path_regex("/r" + std::to_string(i) + "/[a-z]+/[0-9]+");
      break;
    case Kind::header:
      m.header("x-tenant", StringMatch::exact("t" + std::to_string(i)));
      break;
  }
  r.matches = {std::move(m)};
  r.destinations = {{.upstream = "origin"}};
  return r;
}

RouterConfig make_router(size_t rules) {
  RouterConfig config{.name = "main"};
  VirtualHost vh{.name = "all", .domains = {"*"}};
  vh.routes.reserve(rules);
  for (size_t i = 0; i < rules; ++i) vh.routes.push_back(make_rule(i));
  config.virtual_hosts.push_back(std::move(vh));
  return config;
}

GatewayConfig make_gateway_config(size_t rules) {
  GatewayConfig config;
  config.upstreams = {{.name = "origin", .endpoints = {{.address = "127.0.0.1", .port = 9}}}};
  config.routers = {make_router(rules)};
  config.listeners = {{.name = "http", .address = "127.0.0.1", .port = 0, .router = "main"}};
  return config;
}

// A browser-like request head; `kind` picks which rule (the last of that kind)
// it should select, or none.
RequestHead make_request(size_t rules, int kind, size_t& expected) {
  RequestHead req;
  req.method = "GET";
  req.authority = "bench.example.com";
  req.headers.add("Host", "bench.example.com");
  req.headers.add("User-Agent", "wrk");
  req.headers.add("Accept", "*/*");
  req.headers.add("Accept-Encoding", "gzip");
  req.headers.add("X-Request-Id", "5b9f7d2c-1f0e-4c4b-9d5e-3f2a1b0c9d8e");
  expected = SIZE_MAX;
  if (kind < 0) {  // miss: no path, regex or header rule accepts it
    req.target = "/nothing/here?x=1";
    req.headers.add("x-tenant", "nobody");
    return req;
  }
  // The last rule of that kind.
  size_t i = (rules - 1 - static_cast<size_t>(kind)) / 4 * 4 + static_cast<size_t>(kind);
  expected = i;
  switch (static_cast<Kind>(kind)) {
    case Kind::exact:
      req.target = "/e" + std::to_string(i);
      break;
    case Kind::prefix:
      req.target = "/p" + std::to_string(i) + "/some/resource?q=1";
      break;
    case Kind::regex:
      req.target = "/r" + std::to_string(i) + "/abc/123";
      break;
    case Kind::header:
      req.target = "/api/v1/things";
      req.headers.add("x-tenant", "t" + std::to_string(i));
      break;
  }
  return req;
}

// Args: {rules, kind}; kind -1 is a miss.
void BM_RouterMatch(benchmark::State& state) {
  size_t rules = static_cast<size_t>(state.range(0));
  int kind = static_cast<int>(state.range(1));
  auto router = Router::compile(make_router(rules));
  if (!router) {
    state.SkipWithError(router.error().to_string().c_str());
    return;
  }
  size_t expected = 0;
  RequestHead req = make_request(rules, kind, expected);
  auto sel = router->match(req);
  bool right = expected == SIZE_MAX ? !sel : (sel && sel->route_index == expected);
  if (!right) {
    state.SkipWithError("request did not select the intended rule");
    return;
  }
  for (auto _ : state) {
    auto s = router->match(req);
    benchmark::DoNotOptimize(s);
  }
  static const char* const kNames[] = {"late_exact", "late_prefix", "late_regex", "late_header"};
  state.SetLabel(kind < 0 ? "miss" : kNames[kind]);
}

void match_args(benchmark::internal::Benchmark* b) {
  for (int64_t rules : {10, 100, 1'000, 10'000})
    for (int64_t kind : {0, 1, 2, 3, -1}) b->Args({rules, kind});
}
BENCHMARK(BM_RouterMatch)->Apply(match_args);

// Router::compile of one 10,000-rule router (regexes compiled, index built).
void BM_RouterCompile(benchmark::State& state) {
  RouterConfig config = make_router(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    state.PauseTiming();
    RouterConfig copy = config;
    state.ResumeTiming();
    auto router = Router::compile(std::move(copy));
    if (!router) {
      state.SkipWithError(router.error().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(router);
  }
}
BENCHMARK(BM_RouterCompile)->Arg(10'000)->Unit(benchmark::kMillisecond)->Iterations(5);

// sluice::compile: the whole GatewayConfig validated and compiled to a snapshot.
void BM_SnapshotCompile(benchmark::State& state) {
  GatewayConfig config = make_gateway_config(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    state.PauseTiming();
    GatewayConfig copy = config;
    state.ResumeTiming();
    auto snap = sluice::compile(std::move(copy));
    if (!snap) {
      state.SkipWithError(snap.error().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(snap);
  }
}
BENCHMARK(BM_SnapshotCompile)->Arg(10'000)->Unit(benchmark::kMillisecond)->Iterations(5);

// Gateway::apply on a running one-worker gateway: compile plus publishing the
// snapshot to the worker (the listener stays bound across applies).
void BM_GatewayApply(benchmark::State& state) {
  GatewayConfig config = make_gateway_config(static_cast<size_t>(state.range(0)));
  Gateway gateway(GatewayOptions{.workers = 1});
  if (Status s = gateway.apply(config); !s) {
    state.SkipWithError(s.error().to_string().c_str());
    return;
  }
  gateway.start();
  for (auto _ : state) {
    state.PauseTiming();
    GatewayConfig copy = config;
    state.ResumeTiming();
    Status s = gateway.apply(std::move(copy));
    if (!s) {
      std::fprintf(stderr, "apply: %s\n", s.error().to_string().c_str());
      state.SkipWithError("Gateway::apply failed");
      break;
    }
  }
  gateway.stop();  // after the timed loop: not part of the figure
}
BENCHMARK(BM_GatewayApply)
    ->Arg(10'000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
