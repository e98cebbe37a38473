// Gateway::apply is all-or-nothing: whatever can fail (binding new listeners)
// happens before anything running changes. Snapshots from compile() apply
// directly; one belongs to the gateway that first applied it.

#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace apply_atomic_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

std::string get_body(uint16_t port) {
  RawClient c(port, 3s);
  if (!c.send(make_request("GET", "/"))) return "<send failed>";
  auto r = c.read_response();
  if (!r) return "<" + c.error() + ">";
  return r->status == 200 ? r->body : "<status " + std::to_string(r->status) + ">";
}

ListenerConfig listener(std::string name, uint16_t port) {
  return ListenerConfig{
      .name = std::move(name), .address = "127.0.0.1", .port = port, .router = "main"};
}

const UpstreamView::EndpointView* endpoint(const UpstreamView& view, uint16_t port) {
  for (const auto& e : view.endpoints)
    if (e.address == "127.0.0.1:" + std::to_string(port)) return &e;
  return nullptr;
}

// Everything a view shows that traffic does not change on its own (open
// connections come and go with the pools).
std::string describe(const UpstreamView& v) {
  std::string out = v.name + ":";
  for (const auto& e : v.endpoints)
    out += " " + e.address + (e.healthy ? "" : " unhealthy") + (e.ejected ? " ejected" : "") +
           " ejections=" + std::to_string(e.ejections) +
           " active=" + std::to_string(e.active_requests) + ";";
  return out + " active=" + std::to_string(v.active_requests) +
         " pending=" + std::to_string(v.pending_requests) +
         " overflows=" + std::to_string(v.overflows);
}

// "backend" = {bad (always 503), good}, round robin, ejected after 2 5xx.
UpstreamConfig ejecting_backend(uint16_t bad, uint16_t good) {
  auto cfg = loopback_upstream("backend", {bad, good});
  cfg.load_balancer = LoadBalancer::round_robin;
  cfg.outlier_detection = OutlierDetection{.consecutive_5xx = 2, .max_ejection_percent = 50};
  return cfg;
}

Route no_retries(std::string upstream) {
  Route route = forward_all(std::move(upstream));
  route.retries.attempts = 0;  // every 503 counts towards the ejection
  return route;
}

void answer_503(FakeUpstream& upstream) {
  upstream.set_handler([](const Received&) {
    Reply r;
    r.status = 503;
    r.body = "bad";
    return r;
  });
}

// Sends requests until `bad` has seen two and is ejected; waits until no
// request is in flight so the view is settled.
void eject(Gateway& gw, FakeUpstream& bad) {
  for (int i = 0; i < 40 && bad.request_count() < 2; ++i) get_body(gw.port("main"));
  REQUIRE(bad.request_count() == 2);
  REQUIRE(wait_until([&] {
    auto v = gw.upstream("backend");
    auto* e = endpoint(v, bad.port());
    return e && e->ejected && v.active_requests == 0;
  }));
}

}  // namespace

TEST_CASE(
    "apply: a new listener on a taken port is rejected, upstream state and traffic unchanged") {
  FakeUpstream bad("bad"), good("good"), other("other");
  answer_503(bad);
  ManualClock clock;  // stands still: ejections last for the whole test
  Gateway gw(GatewayOptions{.workers = 2, .clock = clock.fn()});
  REQUIRE(
      gw.apply(make_config({no_retries("backend")}, {ejecting_backend(bad.port(), good.port())}))
          .ok());
  gw.start();
  uint16_t main_port = gw.port("main");
  REQUIRE(main_port != 0);
  eject(gw, bad);
  UpstreamView before = gw.upstream("backend");
  REQUIRE(before.endpoints.size() == 2);
  CHECK(endpoint(before, bad.port())->ejections == 1);

  // New endpoints for "backend" and two new listeners: "added" binds, then
  // "extra" fails on the taken port.
  LoopbackPort taken(1);  // listening: a bind by anyone else fails
  auto moved = ejecting_backend(bad.port(), good.port());
  moved.endpoints = loopback_upstream("backend", {other.port()}).endpoints;
  GatewayConfig changed = make_config({no_retries("backend")}, {moved});
  changed.listeners.push_back(listener("added", 0));
  changed.listeners.push_back(listener("extra", taken.port()));

  Status st = gw.apply(changed);
  REQUIRE_FALSE(st.ok());
  std::string message = st.error().to_string();
  INFO(message);
  CHECK(st.error().object == "Listener extra");
  CHECK(st.error().field == "port");
  CHECK(message.find("127.0.0.1:" + std::to_string(taken.port())) != std::string::npos);

  // Nothing changed: listeners, upstream state, where traffic goes.
  CHECK(gw.port("main") == main_port);
  CHECK(gw.port("added") == 0);
  CHECK(gw.port("extra") == 0);
  CHECK(describe(gw.upstream("backend")) == describe(before));
  for (int i = 0; i < 6; ++i) CHECK(get_body(main_port) == "good");
  CHECK(other.request_count() == 0);
  CHECK(bad.request_count() == 2);
  CHECK(describe(gw.upstream("backend")) == describe(before));

  // The same change without the clash applies in full.
  changed.listeners.back().port = 0;
  st = gw.apply(changed);
  REQUIRE_MESSAGE(st.ok(), st.error().to_string());
  CHECK(gw.port("main") == main_port);
  REQUIRE(gw.port("extra") != 0);
  CHECK(get_body(main_port) == "other");
  CHECK(get_body(gw.port("extra")) == "other");
  CHECK(get_body(gw.port("added")) == "other");
  auto view = gw.upstream("backend");
  REQUIRE(view.endpoints.size() == 1);
  CHECK(endpoint(view, other.port()));
}

TEST_CASE("apply: a snapshot from compile() applies and serves") {
  FakeUpstream upstream("backend");
  auto snapshot = compile(single_upstream_config(upstream.port()));
  REQUIRE(snapshot);
  Gateway gw(GatewayOptions{.workers = 2});
  Status st = gw.apply(snapshot.value());
  REQUIRE_MESSAGE(st.ok(), st.error().to_string());
  gw.start();
  REQUIRE(gw.port("main") != 0);
  CHECK(get_body(gw.port("main")) == "backend");
  CHECK(get_body(gw.port("main")) == "backend");
  auto view = gw.upstream("backend");
  CHECK(view.name == "backend");
  REQUIRE(view.endpoints.size() == 1);
  CHECK(endpoint(view, upstream.port()));

  Status null_st = gw.apply(std::shared_ptr<const Snapshot>{});
  REQUIRE_FALSE(null_st.ok());
  CHECK(null_st.error().field == "snapshot");
  CHECK(get_body(gw.port("main")) == "backend");
}

TEST_CASE(
    "apply: a snapshot applied again to its gateway rolls back with the same upstream state") {
  FakeUpstream bad("bad"), good("good"), other("other");
  answer_503(bad);
  ManualClock clock;  // stands still: ejections last for the whole test
  Gateway gw(GatewayOptions{.workers = 2, .clock = clock.fn()});
  auto first =
      compile(make_config({no_retries("backend")}, {ejecting_backend(bad.port(), good.port())}));
  REQUIRE(first);
  REQUIRE(gw.apply(first.value()).ok());
  gw.start();
  uint16_t port = gw.port("main");
  eject(gw, bad);

  // Applying the current snapshot again changes nothing.
  REQUIRE(gw.apply(first.value()).ok());
  CHECK(endpoint(gw.upstream("backend"), bad.port())->ejected);
  CHECK(get_body(port) == "good");

  // A config without "backend" drops its state ...
  REQUIRE(gw.apply(make_config({forward_all("next")}, {loopback_upstream("next", {other.port()})}))
              .ok());
  CHECK(get_body(port) == "other");
  CHECK(gw.upstream("backend").name.empty());

  // ... and the first snapshot brings it back: views and traffic share it.
  Status st = gw.apply(first.value());
  REQUIRE_MESSAGE(st.ok(), st.error().to_string());
  CHECK(gw.port("main") == port);
  CHECK(gw.upstream("next").name.empty());
  auto view = gw.upstream("backend");
  REQUIRE(view.endpoints.size() == 2);
  CHECK(endpoint(view, bad.port())->ejected);
  CHECK(endpoint(view, bad.port())->ejections == 1);
  for (int i = 0; i < 4; ++i) CHECK(get_body(port) == "good");
  CHECK(bad.request_count() == 2);
}

TEST_CASE("apply: a snapshot applied to a second gateway is rejected") {
  FakeUpstream upstream("backend");
  auto snapshot = compile(single_upstream_config(upstream.port()));
  REQUIRE(snapshot);
  Gateway one(GatewayOptions{.workers = 1});
  Gateway two(GatewayOptions{.workers = 1});
  REQUIRE(one.apply(snapshot.value()).ok());
  one.start();
  two.start();

  Status st = two.apply(snapshot.value());
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().object == "Gateway");
  CHECK(st.error().field == "snapshot");
  CHECK(st.error().message.find("another Gateway") != std::string::npos);
  CHECK(two.port("main") == 0);
  CHECK(two.upstream("backend").name.empty());
  CHECK(get_body(one.port("main")) == "backend");

  // Compiled again, the same config applies to the second gateway.
  auto again = compile(single_upstream_config(upstream.port()));
  REQUIRE(again);
  REQUIRE(two.apply(again.value()).ok());
  CHECK(get_body(two.port("main")) == "backend");

  // A failed apply claims nothing: the next gateway gets the real error.
  LoopbackPort taken(1);  // listening: a bind by anyone else fails
  GatewayConfig clash = single_upstream_config(upstream.port());
  clash.listeners.push_back(listener("extra", taken.port()));
  auto failing = compile(clash);
  REQUIRE(failing);
  Status first_error = one.apply(failing.value());
  REQUIRE_FALSE(first_error.ok());
  CHECK(first_error.error().object == "Listener extra");
  Status second_error = two.apply(failing.value());
  REQUIRE_FALSE(second_error.ok());
  CHECK(second_error.error().object == "Listener extra");
  CHECK(get_body(one.port("main")) == "backend");
  CHECK(get_body(two.port("main")) == "backend");
}

}  // namespace apply_atomic_test
