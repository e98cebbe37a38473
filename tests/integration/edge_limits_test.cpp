// Limits::max_connections_per_client (issue 10, item 13): per client IP,
// across workers, a place given back when the connection ends.

#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <vector>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace edge_limits_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

bool served(RawClient& c) {
  if (!c.send(make_request("GET", "/"))) return false;
  auto r = c.read_response();
  return r && r->status == 200;
}

}  // namespace

TEST_CASE("limits: max_connections_per_client closes the connection over the limit") {
  FakeUpstream up("backend");
  auto cfg = single_upstream_config(up.port());
  cfg.limits.max_connections_per_client = 2;
  TestGateway gw(cfg, 2);  // two workers: the count is shared
  uint16_t port = gw.port();

  auto a = std::make_unique<RawClient>(port, 2s);
  RawClient b(port, 2s);
  // Served: both were accepted before the third connects.
  REQUIRE(served(*a));
  REQUIRE(served(b));

  RawClient third(port, 2s);
  CHECK(third.is_closed(2s));
  CHECK(up.request_count() == 2);

  // The two stay open and keep working.
  CHECK(served(*a));
  CHECK(served(b));

  // One ends: its place goes back, and one new connection gets it.
  a.reset();
  std::unique_ptr<RawClient> d;
  CHECK(wait_until([&] {
    d = std::make_unique<RawClient>(port, 2s);
    return served(*d);
  }));
  RawClient fourth(port, 2s);
  CHECK(fourth.is_closed(2s));
  CHECK(served(b));
  CHECK(served(*d));
}

TEST_CASE("limits: max_connections_per_client 0 means unlimited") {
  FakeUpstream up("backend");
  auto cfg = single_upstream_config(up.port());
  TestGateway gw(cfg, 1);
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 8; ++i) {
    clients.push_back(std::make_unique<RawClient>(gw.port(), 2s));
    CHECK(served(*clients.back()));
  }
}

}  // namespace edge_limits_test
