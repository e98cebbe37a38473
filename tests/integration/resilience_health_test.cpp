// Active health checks on a worker driven by the test thread: a failing
// endpoint is marked unhealthy and picks avoid it; when it recovers it is
// picked again. (Through a whole Gateway once Worker::install starts them.)

#include <doctest/doctest.h>

#include <asio/io_context.hpp>
#include <set>

#include "config/snapshot.hpp"
#include "runtime/worker.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "upstream/cluster.hpp"

namespace resilience_health_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

TEST_CASE("resilience: active health checks mark a failing endpoint unhealthy, picks avoid it") {
  FakeUpstream good("good"), bad("bad");
  std::atomic<bool> bad_fails{true};
  bad.set_handler([&](const Received& r) {
    Reply reply;
    if (r.target == "/healthz" && bad_fails) reply.status = 503;
    return reply;
  });
  auto cfg = loopback_upstream("backend", {good.port(), bad.port()});
  cfg.load_balancer = LoadBalancer::round_robin;
  cfg.health_check = HealthCheck{.path = "/healthz",
                                 .interval = 10ms,
                                 .timeout = 1000ms,
                                 .healthy_threshold = 1,
                                 .unhealthy_threshold = 2};
  REQUIRE(validate_upstream(cfg, "Upstream backend").ok());
  GatewayConfig gc;
  gc.upstreams.push_back(cfg);
  auto compiled = compile_snapshot(gc);
  REQUIRE(compiled.ok());
  std::shared_ptr<Snapshot> snap = std::move(compiled).value();

  asio::io_context ctx;
  GatewayShared shared;
  auto& up = snap->upstreams[0];
  up.state = shared.clusters.get("backend");
  up.state->update(up);
  Worker worker(0, ctx, shared, 7);
  worker.install(snap);

  auto run_until = [&](const std::function<bool()>& pred) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!pred() && std::chrono::steady_clock::now() < deadline) ctx.run_for(5ms);
    return pred();
  };
  auto healthy = [&](uint16_t port) {
    for (const auto& e : up.state->view().endpoints)
      if (e.address == "127.0.0.1:" + std::to_string(port)) return e.healthy;
    return false;
  };
  auto picks = [&] {
    std::set<std::string> seen;
    RequestHead head;
    for (int i = 0; i < 20; ++i) {
      auto p = pick_endpoint(worker.upstream(), up, up.sets[0], PickRequest{&head, "127.0.0.1"});
      REQUIRE(p.endpoint >= 0);
      seen.insert(up.endpoints[p.endpoint].key);
    }
    return seen;
  };

  REQUIRE(run_until([&] { return !healthy(bad.port()); }));
  CHECK(healthy(good.port()));
  CHECK(picks() == std::set<std::string>{"127.0.0.1:" + std::to_string(good.port())});
  auto probe = bad.last_request();
  REQUIRE(probe);
  CHECK(probe->target == "/healthz");
  CHECK(probe->method == "GET");

  bad_fails = false;
  REQUIRE(run_until([&] { return healthy(bad.port()); }));
  CHECK(picks().size() == 2);

  // Stopped checks leave nothing running on the loop.
  stop_health_checks(worker.upstream());
  size_t probes = bad.request_count();
  ctx.run_for(50ms);
  CHECK(bad.request_count() <= probes + 1);
  ctx.restart();
  ctx.poll();
  CHECK(ctx.stopped());
}

}  // namespace resilience_health_test
