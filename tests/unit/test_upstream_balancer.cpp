// Load balancers without sockets: compiled upstreams, a Balancer, a fixed
// RNG seed and a fake clock.

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <set>

#include "config/snapshot.hpp"
#include "upstream/balancer.hpp"
#include "upstream/cluster.hpp"
#include "upstream/hash.hpp"

namespace test_upstream_balancer {

using namespace sluice;
using namespace std::chrono_literals;

namespace {

UpstreamConfig make_upstream(std::vector<uint32_t> weights, LoadBalancer lb) {
  UpstreamConfig u;
  u.name = "svc";
  u.load_balancer = lb;
  for (size_t i = 0; i < weights.size(); ++i)
    u.endpoints.push_back(Endpoint{"10.0.0." + std::to_string(i + 1), 8080, {}, weights[i]});
  return u;
}

struct Bench {
  std::shared_ptr<Snapshot> snap;
  std::shared_ptr<ClusterState> state = std::make_shared<ClusterState>("svc");
  Balancer balancer;
  std::mt19937_64 rng{42};
  TimePoint now = TimePoint(std::chrono::hours(1));
  std::function<TimePoint()> clock = [this] { return now; };

  Bench() { state->attach_clock(&clock); }
  explicit Bench(const UpstreamConfig& cfg) : Bench() { load(cfg); }

  void load(const UpstreamConfig& cfg) {
    REQUIRE(validate_upstream(cfg, "Upstream svc").ok());
    GatewayConfig g;
    g.upstreams.push_back(cfg);
    auto r = compile_snapshot(g);
    REQUIRE(r.ok());
    snap = std::move(r).value();
    snap->upstreams[0].state = state;
    state->update(snap->upstreams[0]);
    balancer.reset();
  }
  const CompiledUpstream& up() const { return snap->upstreams[0]; }
  PickResult pick_full(const RequestHead* head = nullptr, std::string_view ip = {}) {
    PickRequest in{.request = head, .client_ip = ip};
    return balancer.pick(up(), up().sets[0], in, now, rng);
  }
  // The endpoint picked, as "ip:port".
  std::string pick(const RequestHead* head = nullptr, std::string_view ip = {}) {
    auto r = pick_full(head, ip);
    REQUIRE(r.endpoint >= 0);
    return up().endpoints[r.endpoint].key;
  }
  EndpointState& ep(size_t i) { return *balancer.endpoint_state(up(), int64_t(i)); }
};

RequestHead with_header(std::string name, std::string value) {
  RequestHead h;
  h.headers.add(std::move(name), std::move(value));
  return h;
}

UpstreamConfig hashed(size_t n, ConsistentHash::Algorithm algo) {
  std::vector<uint32_t> w(n, 1);
  auto u = make_upstream(w, LoadBalancer::consistent_hash);
  ConsistentHash ch;
  ch.source = ConsistentHash::Source::header;
  ch.name = "x-user";
  ch.algorithm = algo;
  u.consistent_hash = ch;
  return u;
}

}  // namespace

TEST_CASE("round robin: equal weights take turns exactly") {
  Bench b(make_upstream({1, 1, 1}, LoadBalancer::round_robin));
  std::map<std::string, int> count;
  for (int i = 0; i < 300; ++i) ++count[b.pick()];
  REQUIRE(count.size() == 3);
  for (auto& [k, n] : count) CHECK(n == 100);
}

TEST_CASE("round robin: weights give proportional, smoothly spread shares") {
  Bench b(make_upstream({5, 1, 1}, LoadBalancer::round_robin));
  std::map<std::string, int> count;
  std::string last;
  int run = 0, max_run = 0;
  for (int i = 0; i < 700; ++i) {
    std::string k = b.pick();
    run = k == last ? run + 1 : 1;
    max_run = std::max(max_run, run);
    last = k;
    ++count[k];
  }
  CHECK(count["10.0.0.1:8080"] == 500);
  CHECK(count["10.0.0.2:8080"] == 100);
  CHECK(count["10.0.0.3:8080"] == 100);
  CHECK(max_run < 5);  // smooth: never all five in a row
}

TEST_CASE("round robin skips ejected and unhealthy endpoints, all out means panic") {
  Bench b(make_upstream({1, 1, 1}, LoadBalancer::round_robin));
  b.ep(0).ejected_until = (b.now + 10s).time_since_epoch().count();
  b.ep(1).healthy = false;
  for (int i = 0; i < 20; ++i) CHECK(b.pick() == "10.0.0.3:8080");
  b.ep(2).healthy = false;
  std::set<std::string> seen;
  for (int i = 0; i < 30; ++i) seen.insert(b.pick());
  CHECK(seen.size() == 3);  // panic: every endpoint again
  b.now += 11s;             // the ejection ends
  b.ep(1).healthy = true;
  b.ep(2).healthy = true;
  seen.clear();
  for (int i = 0; i < 30; ++i) seen.insert(b.pick());
  CHECK(seen.size() == 3);
}

TEST_CASE("retries avoid endpoints already tried when others remain") {
  Bench b(make_upstream({1, 1, 1}, LoadBalancer::random));
  std::array<int64_t, 2> tried{0, 1};
  for (int i = 0; i < 50; ++i) {
    PickRequest in{.tried = tried, .avoid_tried = true};
    CHECK(b.balancer.pick(b.up(), b.up().sets[0], in, b.now, b.rng).endpoint == 2);
  }
}

TEST_CASE("least request: the idle endpoint wins against a busy one") {
  Bench b(make_upstream({1, 1, 1}, LoadBalancer::least_request));
  b.ep(1).active_requests = 5;
  std::map<std::string, int> count;
  for (int i = 0; i < 300; ++i) ++count[b.pick()];
  CHECK(count["10.0.0.2:8080"] == 0);
  CHECK(count["10.0.0.1:8080"] == 151);  // seed 42: near half each
  CHECK(count["10.0.0.3:8080"] == 149);
}

TEST_CASE("least request with weights: shares follow weight over (active + 1)") {
  Bench b(make_upstream({1, 3}, LoadBalancer::least_request));
  std::map<std::string, int> count;
  for (int i = 0; i < 4000; ++i) ++count[b.pick()];
  CHECK(count["10.0.0.2:8080"] == 3033);  // seed 42: near 3 in 4
  b.ep(1).active_requests = 8;            // 3/9 against 1/1
  count.clear();
  for (int i = 0; i < 4000; ++i) ++count[b.pick()];
  CHECK(count["10.0.0.1:8080"] == 3022);  // 1/1 against 3/9: near 3 in 4 the other way
}

TEST_CASE("random respects weights") {
  Bench b(make_upstream({1, 4}, LoadBalancer::random));
  int heavy = 0;
  for (int i = 0; i < 5000; ++i) heavy += b.pick() == "10.0.0.2:8080";
  CHECK(heavy == 4002);  // seed 42: near 4 in 5
}

TEST_CASE("passthrough takes the first eligible endpoint") {
  Bench b(make_upstream({1, 1}, LoadBalancer::passthrough));
  CHECK(b.pick() == "10.0.0.1:8080");
  b.ep(0).healthy = false;
  CHECK(b.pick() == "10.0.0.2:8080");
}

TEST_CASE("warmup ramps a newly added endpoint from 10% to its full weight") {
  auto cfg = make_upstream({1, 1}, LoadBalancer::round_robin);
  cfg.warmup = 100s;
  Bench b(cfg);
  // The first configuration's endpoints are warm at once.
  std::map<std::string, int> count;
  for (int i = 0; i < 200; ++i) ++count[b.pick()];
  CHECK(count["10.0.0.1:8080"] == 100);
  cfg.endpoints.push_back(Endpoint{"10.0.0.3", 8080, {}, 1});
  b.load(cfg);
  count.clear();
  for (int i = 0; i < 2100; ++i) ++count[b.pick()];
  // Weight 0.1 against 1 and 1: 100 of 2100 (smooth round robin: exact).
  CHECK(count["10.0.0.3:8080"] == 100);
  b.now += 50s;  // half way: 0.5
  count.clear();
  for (int i = 0; i < 2500; ++i) ++count[b.pick()];
  CHECK(count["10.0.0.3:8080"] == 500);
  b.now += 60s;  // done
  count.clear();
  for (int i = 0; i < 3000; ++i) ++count[b.pick()];
  CHECK(count["10.0.0.3:8080"] == 1000);
}

TEST_CASE("consistent hash: same key same endpoint, keys spread, ring and maglev") {
  for (auto algo : {ConsistentHash::Algorithm::ring_hash, ConsistentHash::Algorithm::maglev}) {
    CAPTURE(int(algo));
    Bench b(hashed(4, algo));
    Bench other(hashed(4, algo));  // another worker's balancer: same answer
    std::map<std::string, int> count;
    for (int k = 0; k < 2000; ++k) {
      auto head = with_header("x-user", "user-" + std::to_string(k));
      std::string first = b.pick(&head);
      CHECK(b.pick(&head) == first);
      CHECK(other.pick(&head) == first);
      ++count[first];
    }
    REQUIRE(count.size() == 4);
    for (auto& [k, n] : count) CHECK(n > 2000 / 4 * 0.6);
  }
}

TEST_CASE("consistent hash: removing an endpoint moves only its keys") {
  for (auto algo : {ConsistentHash::Algorithm::ring_hash, ConsistentHash::Algorithm::maglev}) {
    CAPTURE(int(algo));
    Bench b(hashed(5, algo));
    std::vector<std::string> before;
    for (int k = 0; k < 2000; ++k) {
      auto head = with_header("x-user", "u" + std::to_string(k));
      before.push_back(b.pick(&head));
    }
    auto cfg = hashed(5, algo);
    cfg.endpoints.erase(cfg.endpoints.begin() + 2);  // 10.0.0.3
    b.load(cfg);
    int kept = 0, others = 0;
    for (int k = 0; k < 2000; ++k) {
      auto head = with_header("x-user", "u" + std::to_string(k));
      std::string now = b.pick(&head);
      CHECK(now != "10.0.0.3:8080");
      if (before[k] == "10.0.0.3:8080") continue;
      ++others;
      kept += now == before[k];
    }
    // Ring hash keeps every other key (the ring's points per weight stay
    // the same from 5 to 4 endpoints); Maglev nearly all.
    if (algo == ConsistentHash::Algorithm::ring_hash)
      CHECK(kept == others);
    else
      CHECK(kept >= others * 0.9);
  }
}

TEST_CASE("consistent hash: an ejected endpoint's keys move, the others stay") {
  Bench b(hashed(4, ConsistentHash::Algorithm::ring_hash));
  std::vector<std::string> before;
  for (int k = 0; k < 500; ++k) {
    auto head = with_header("x-user", "u" + std::to_string(k));
    before.push_back(b.pick(&head));
  }
  b.ep(0).ejected_until = (b.now + 30s).time_since_epoch().count();
  for (int k = 0; k < 500; ++k) {
    auto head = with_header("x-user", "u" + std::to_string(k));
    std::string now = b.pick(&head);
    CHECK(now != "10.0.0.1:8080");
    if (before[k] != "10.0.0.1:8080") CHECK(now == before[k]);
  }
}

TEST_CASE("consistent hash: weights give more of the keys") {
  auto cfg = hashed(2, ConsistentHash::Algorithm::ring_hash);
  cfg.endpoints[1].weight = 3;
  Bench b(cfg);
  int heavy = 0;
  for (int k = 0; k < 4000; ++k) {
    auto head = with_header("x-user", "k" + std::to_string(k));
    heavy += b.pick(&head) == "10.0.0.2:8080";
  }
  CHECK(heavy == 2983);  // no RNG, the ring itself: near 3 in 4
  HashTable ring = HashTable::ring({{"a", 1}, {"b", 3}}, 1024);
  CHECK(ring.size() >= 1024);
  HashTable mag = HashTable::maglev({{"a", 1}, {"b", 3}}, 65537);
  CHECK(mag.size() == 65537);
}

TEST_CASE("consistent hash on a cookie: generated when absent, then sticky") {
  auto cfg = make_upstream({1, 1, 1, 1}, LoadBalancer::consistent_hash);
  ConsistentHash ch;
  ch.source = ConsistentHash::Source::cookie;
  ch.name = "session";
  ch.cookie_ttl = 3600s;
  ch.cookie_path = "/";
  cfg.consistent_hash = ch;
  Bench b(cfg);
  RequestHead bare;
  auto first = b.pick_full(&bare);
  REQUIRE(first.endpoint >= 0);
  REQUIRE(first.set_cookie.rfind("session=", 0) == 0);
  CHECK(first.set_cookie.find("; Max-Age=3600; Path=/; HttpOnly") != std::string::npos);
  std::string value = first.set_cookie.substr(8, first.set_cookie.find(';') - 8);
  RequestHead with_cookie;
  with_cookie.headers.add("cookie", "theme=dark; session=" + value);
  for (int i = 0; i < 20; ++i) {
    auto r = b.pick_full(&with_cookie);
    CHECK(r.set_cookie.empty());
    CHECK(r.endpoint == first.endpoint);
  }
}

TEST_CASE("consistent hash on source ip and query parameter") {
  auto cfg = make_upstream({1, 1, 1, 1}, LoadBalancer::consistent_hash);
  cfg.consistent_hash = ConsistentHash{.source = ConsistentHash::Source::source_ip};
  Bench b(cfg);
  RequestHead h;
  std::set<std::string> seen;
  for (int i = 0; i < 64; ++i) {
    std::string ip = "192.168.1." + std::to_string(i);
    std::string e = b.pick(&h, ip);
    CHECK(b.pick(&h, ip) == e);
    seen.insert(e);
  }
  CHECK(seen.size() == 4);

  cfg.consistent_hash =
      ConsistentHash{.source = ConsistentHash::Source::query_parameter, .name = "user"};
  b.load(cfg);
  seen.clear();
  for (int i = 0; i < 64; ++i) {
    RequestHead q;
    q.target = "/p?a=1&user=" + std::to_string(i) + "&z=2";
    RequestHead q2;
    q2.target = "/other?user=" + std::to_string(i);
    std::string e = b.pick(&q);
    CHECK(b.pick(&q2) == e);
    seen.insert(e);
  }
  CHECK(seen.size() == 4);
}

TEST_CASE("validate_upstream rejects what Envoy would") {
  auto cfg = hashed(2, ConsistentHash::Algorithm::maglev);
  CHECK(validate_upstream(cfg, "Upstream svc").ok());
  cfg.consistent_hash->maglev_table_size = 65536;
  auto st = validate_upstream(cfg, "Upstream svc");
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().to_string() ==
        "Upstream svc: consistent_hash.maglev_table_size: 65536 is not a prime number");
  cfg.consistent_hash->maglev_table_size = 251;
  CHECK(validate_upstream(cfg, "Upstream svc").ok());
  cfg.consistent_hash->name.clear();
  CHECK_FALSE(validate_upstream(cfg, "Upstream svc").ok());

  auto lb = make_upstream({1}, LoadBalancer::consistent_hash);
  CHECK(validate_upstream(lb, "Upstream svc").error().field == "consistent_hash");
  auto od = make_upstream({1}, LoadBalancer::round_robin);
  od.outlier_detection = OutlierDetection{.max_ejection_percent = 101};
  CHECK(validate_upstream(od, "Upstream svc").error().field ==
        "outlier_detection.max_ejection_percent");
  auto hc = make_upstream({1}, LoadBalancer::round_robin);
  hc.health_check = HealthCheck{.path = "health"};
  CHECK(validate_upstream(hc, "Upstream svc").error().field == "health_check.path");
  auto pool = make_upstream({1}, LoadBalancer::round_robin);
  pool.pool.max_connections = 0;
  CHECK(validate_upstream(pool, "Upstream svc").error().field == "pool.max_connections");
}

}  // namespace test_upstream_balancer
