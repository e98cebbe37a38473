// Load balancing through a real Gateway with in-process upstreams: round
// robin, consistent hashing on a header and on a cookie, least request.

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <thread>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace resilience_balancing_test {

using namespace sluice;
using namespace sluice::test;

namespace {

HttpResponse get(uint16_t port, const HeaderList& headers = {}, std::string_view target = "/") {
  RawClient c(port);
  REQUIRE(c.send(make_request("GET", target, "example.com", headers)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r.has_value(), c.error());
  return *r;
}

std::vector<uint16_t> ports_of(const std::vector<std::unique_ptr<FakeUpstream>>& ups) {
  std::vector<uint16_t> p;
  for (auto& u : ups) p.push_back(u->port());
  return p;
}

std::vector<std::unique_ptr<FakeUpstream>> three_upstreams() {
  std::vector<std::unique_ptr<FakeUpstream>> ups;
  for (auto name : {"a", "b", "c"}) ups.push_back(std::make_unique<FakeUpstream>(name));
  return ups;
}

}  // namespace

TEST_CASE("resilience: round robin spreads evenly over three endpoints") {
  auto ups = three_upstreams();
  auto up = loopback_upstream("backend", ports_of(ups));
  up.load_balancer = LoadBalancer::round_robin;
  TestGateway gw(make_config({forward_all("backend")}, {up}));
  RawClient c(gw.port());
  std::map<std::string, int> bodies;
  for (int i = 0; i < 30; ++i) {
    REQUIRE(c.send(make_request("GET", "/")));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    ++bodies[r->body];
  }
  CHECK(bodies["a"] == 10);
  CHECK(bodies["b"] == 10);
  CHECK(bodies["c"] == 10);
  for (auto& u : ups) CHECK(u->request_count() == 10);
}

TEST_CASE("resilience: the same header value reaches the same endpoint, values spread") {
  auto ups = three_upstreams();
  auto up = loopback_upstream("backend", ports_of(ups));
  up.load_balancer = LoadBalancer::consistent_hash;
  up.consistent_hash = ConsistentHash{.source = ConsistentHash::Source::header, .name = "x-user"};
  TestGateway gw(make_config({forward_all("backend")}, {up}), 2);
  std::set<std::string> seen;
  for (int user = 0; user < 24; ++user) {
    HeaderList h{{"x-user", "user-" + std::to_string(user)}};
    std::string first = get(gw.port(), h).body;
    for (int i = 0; i < 3; ++i) CHECK(get(gw.port(), h).body == first);
    seen.insert(first);
  }
  CHECK(seen.size() == 3);
}

TEST_CASE("resilience: cookie hashing sets the cookie when absent, then sticks") {
  auto ups = three_upstreams();
  auto up = loopback_upstream("backend", ports_of(ups));
  up.load_balancer = LoadBalancer::consistent_hash;
  up.consistent_hash = ConsistentHash{.source = ConsistentHash::Source::cookie,
                                      .name = "sticky",
                                      .cookie_ttl = std::chrono::seconds(60),
                                      .cookie_path = "/"};
  TestGateway gw(make_config({forward_all("backend")}, {up}));
  std::set<std::string> first_hits;
  for (int client = 0; client < 12; ++client) {
    auto first = get(gw.port());
    REQUIRE(first.status == 200);
    auto cookie = first.header("set-cookie");
    REQUIRE(cookie.has_value());
    CHECK(cookie->find("; Max-Age=60; Path=/; HttpOnly") != std::string::npos);
    std::string pair = cookie->substr(0, cookie->find(';'));
    REQUIRE(pair.rfind("sticky=", 0) == 0);
    for (int i = 0; i < 4; ++i) {
      auto again = get(gw.port(), {{"cookie", pair}});
      CHECK(again.body == first.body);
      CHECK_FALSE(again.header("set-cookie").has_value());
    }
    first_hits.insert(first.body);
  }
  CHECK(first_hits.size() >= 2);  // generated values spread over endpoints
}

TEST_CASE("resilience: least request prefers the fast endpoint of a slow/fast pair") {
  FakeUpstream slow("slow"), fast("fast");
  slow.set_handler([](const Received&) {
    Reply r;
    r.body = "slow";
    r.hold = true;  // busy until released
    return r;
  });
  auto up = loopback_upstream("backend", {slow.port(), fast.port()});
  up.load_balancer = LoadBalancer::least_request;
  TestGateway gw(make_config({forward_all("backend")}, {up}));
  std::vector<std::unique_ptr<RawClient>> waiting;
  int fast_answers = 0;
  for (int i = 0; i < 12; ++i) {
    // Counted before sending: a fast answer may arrive before the next line.
    size_t fast_before = fast.request_count(), slow_before = slow.request_count();
    auto c = std::make_unique<RawClient>(gw.port());
    REQUIRE(c->send(make_request("GET", "/")));
    REQUIRE(wait_until(
        [&] { return fast.request_count() > fast_before || slow.request_count() > slow_before; }));
    if (fast.request_count() > fast_before) {
      auto r = c->read_response();
      REQUIRE(r);
      CHECK(r->body == "fast");
      ++fast_answers;
    } else {
      waiting.push_back(std::move(c));
    }
  }
  // At most the very first request (both idle) lands on the slow endpoint.
  CHECK(slow.request_count() <= 1);
  CHECK(fast_answers >= 11);
  slow.release();
  for (auto& c : waiting) {
    auto r = c->read_response();
    REQUIRE(r);
    CHECK(r->body == "slow");
  }
}

}  // namespace resilience_balancing_test
