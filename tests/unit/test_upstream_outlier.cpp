// Outlier detection with a fake clock: consecutive errors, ejection time
// growing with the number of ejections, max_ejection_percent, state kept
// across configuration updates.

#include <doctest/doctest.h>

#include "config/snapshot.hpp"
#include "upstream/cluster.hpp"

namespace test_upstream_outlier {

using namespace sluice;
using namespace std::chrono_literals;
using policy::AttemptOutcome;

namespace {

struct Cluster {
  std::shared_ptr<Snapshot> snap;
  ClusterState state{"svc"};
  std::vector<std::shared_ptr<EndpointState>> eps;
  TimePoint now = TimePoint(std::chrono::hours(1));
  std::function<TimePoint()> clock = [this] { return now; };
  OutlierDetection od;

  explicit Cluster(size_t n) {
    state.attach_clock(&clock);
    load(n);
  }
  void load(size_t n) {
    GatewayConfig g;
    UpstreamConfig u;
    u.name = "svc";
    for (size_t i = 0; i < n; ++i)
      u.endpoints.push_back(Endpoint{"10.0.0." + std::to_string(i + 1), 80});
    g.upstreams.push_back(u);
    auto r = compile_snapshot(g);
    REQUIRE(r.ok());
    snap = std::move(r).value();
    state.update(snap->upstreams[0]);
    eps = state.resolve(snap->upstreams[0]);
  }
  bool fail(size_t i, uint16_t status = 503) {
    return record_outcome(state, *eps[i], od, AttemptOutcome::response, status, now);
  }
  void succeed(size_t i) { record_outcome(state, *eps[i], od, AttemptOutcome::response, 200, now); }
};

}  // namespace

TEST_CASE("five consecutive 5xx eject for base_ejection_time, then it grows") {
  Cluster c(3);
  for (int i = 0; i < 4; ++i) CHECK_FALSE(c.fail(0));
  CHECK_FALSE(c.eps[0]->ejected(c.now));
  CHECK(c.fail(0));
  CHECK(c.eps[0]->ejected(c.now));
  CHECK(c.eps[0]->ejections == 1);
  c.now += 29s;
  CHECK(c.eps[0]->ejected(c.now));
  c.now += 1s;
  CHECK_FALSE(c.eps[0]->ejected(c.now));
  for (int i = 0; i < 5; ++i) c.fail(0);
  CHECK(c.eps[0]->ejections == 2);
  c.now += 59s;
  CHECK(c.eps[0]->ejected(c.now));  // 2 x 30 s
  c.now += 1s;
  CHECK_FALSE(c.eps[0]->ejected(c.now));
  auto view = c.state.view();
  REQUIRE(view.endpoints.size() == 3);
  CHECK(view.endpoints[0].ejections == 2);
  CHECK_FALSE(view.endpoints[0].ejected);
}

TEST_CASE("a success resets the count, local failures count as 5xx") {
  Cluster c(3);
  for (int i = 0; i < 4; ++i) c.fail(0);
  c.succeed(0);
  for (int i = 0; i < 4; ++i) CHECK_FALSE(c.fail(0));
  CHECK(record_outcome(c.state, *c.eps[0], c.od, AttemptOutcome::connect_failure, 0, c.now));
  for (int i = 0; i < 4; ++i)
    record_outcome(c.state, *c.eps[1], c.od, AttemptOutcome::reset, 0, c.now);
  CHECK_FALSE(c.eps[1]->ejected(c.now));  // max_ejection_percent: one of three is out already
}

TEST_CASE("consecutive gateway errors count 502, 503, 504 only") {
  Cluster c(2);
  c.od.consecutive_5xx = 0;
  c.od.consecutive_gateway_errors = 3;
  c.fail(0, 502);
  c.fail(0, 504);
  c.fail(0, 500);  // a 5xx, but not a gateway error: resets
  CHECK_FALSE(c.fail(0, 503));
  CHECK_FALSE(c.fail(0, 503));
  CHECK(c.fail(0, 503));
}

TEST_CASE("max_ejection_percent: at least one, then only within the share") {
  Cluster c(4);
  c.od.max_ejection_percent = 10;
  for (int i = 0; i < 5; ++i) c.fail(0);
  CHECK(c.eps[0]->ejected(c.now));  // always one
  for (int i = 0; i < 5; ++i) c.fail(1);
  CHECK_FALSE(c.eps[1]->ejected(c.now));

  Cluster d(4);
  d.od.max_ejection_percent = 50;
  for (size_t e = 0; e < 3; ++e)
    for (int i = 0; i < 5; ++i) d.fail(e);
  CHECK(d.eps[0]->ejected(d.now));
  CHECK(d.eps[1]->ejected(d.now));
  CHECK_FALSE(d.eps[2]->ejected(d.now));  // 3 of 4 would be 75%
}

TEST_CASE("ejection state survives a configuration update with the endpoint kept") {
  Cluster c(3);
  for (int i = 0; i < 5; ++i) c.fail(1);
  auto before = c.eps[1];
  c.load(4);  // one endpoint more
  CHECK(c.eps[1].get() == before.get());
  CHECK(c.eps[1]->ejected(c.now));
  CHECK(c.state.view().endpoints.size() == 4);
  CHECK(c.state.view().endpoints[1].ejected);
  c.load(1);  // the ejected endpoint removed: its state goes
  CHECK(c.state.view().endpoints.size() == 1);
  c.load(3);
  CHECK_FALSE(c.eps[1]->ejected(c.now));
  CHECK(c.eps[1]->ejections == 0);
}

}  // namespace test_upstream_outlier
