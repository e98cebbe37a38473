// The Gateway as host code uses it: routing, weights, direct responses,
// hooks, live apply, a host-owned io_context, and curl end to end.

#include <doctest/doctest.h>

#include <asio.hpp>
#include <map>
#include <set>
#include <thread>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace gateway_api_test {

using namespace sluice::test;
using namespace sluice;
using namespace std::chrono_literals;

namespace {

// end-user: jason -> "reviews-v2", everyone else -> "reviews-v1".
GatewayConfig jason_config(uint16_t v1_port, uint16_t v2_port) {
  Route jason = forward_all("reviews-v2", "jason");
  jason.matches.push_back(Matcher{}.header("end-user", StringMatch::exact("jason")));
  return make_config(
      {jason, forward_all("reviews-v1", "default")},
      {loopback_upstream("reviews-v1", {v1_port}), loopback_upstream("reviews-v2", {v2_port})});
}

std::string get_body(uint16_t port, const HeaderList& headers = {}, std::string target = "/") {
  RawClient client(port, 3s);
  if (!client.send(make_request("GET", target, "example.com", headers))) return "<send failed>";
  auto response = client.read_response();
  return response ? response->body : "<" + client.error() + ">";
}

std::string url(uint16_t port, std::string_view path = "/") {
  return "http://127.0.0.1:" + std::to_string(port) + std::string(path);
}

}  // namespace

TEST_CASE("routing by header sends end-user jason to one upstream, others to the other") {
  FakeUpstream v1("reviews-v1");
  FakeUpstream v2("reviews-v2");
  TestGateway gw(jason_config(v1.port(), v2.port()));
  CHECK(get_body(gw.port(), {{"end-user", "jason"}}) == "reviews-v2");
  CHECK(get_body(gw.port(), {{"end-user", "bob"}}) == "reviews-v1");
  CHECK(get_body(gw.port()) == "reviews-v1");
  CHECK(v1.request_count() == 2);
  CHECK(v2.request_count() == 1);
}

TEST_CASE("weighted destinations split traffic by weight") {
  FakeUpstream a("a");
  FakeUpstream b("b");
  Route split;
  split.name = "split";
  split.destinations = {destination("a", 3), destination("b", 1)};
  TestGateway gw(make_config(
      {split}, {loopback_upstream("a", {a.port()}), loopback_upstream("b", {b.port()})}));
  RawClient client(gw.port());
  std::map<std::string, int> seen;
  for (int i = 0; i < 200; ++i) {
    REQUIRE(client.send(make_request("GET", "/")));
    auto response = client.read_response();
    REQUIRE_MESSAGE(response, client.error());
    ++seen[response->body];
  }
  CHECK(seen["a"] + seen["b"] == 200);
  // TestGateway's seed (42), one worker, one connection: the same split
  // every run (near 150 / 50).
  CHECK(seen["a"] == 155);
}

// The mirror draw comes from the worker's RNG: with the seed fixed the same
// requests are mirrored every run.
TEST_CASE("a mirror at 25 percent copies the same requests of a seeded run") {
  FakeUpstream primary("primary"), shadow("shadow");
  Route route = forward_all("primary");
  route.mirrors.push_back(Mirror{.upstream = "shadow", .percentage = 25});
  TestGateway gw(make_config({route}, {loopback_upstream("primary", {primary.port()}),
                                       loopback_upstream("shadow", {shadow.port()})}));
  RawClient client(gw.port());
  for (int i = 0; i < 80; ++i) {
    REQUIRE(client.send(make_request("GET", "/" + std::to_string(i))));
    auto response = client.read_response();
    REQUIRE_MESSAGE(response, client.error());
    CHECK(response->body == "primary");
  }
  // Every mirror has arrived and its connection is gone.
  const std::set<std::string> want = {"/0",  "/5",  "/8",  "/10", "/11", "/19",
                                      "/29", "/34", "/37", "/39", "/44", "/50",
                                      "/54", "/55", "/59", "/63", "/70", "/71"};  // seed 42
  CHECK(wait_until([&] {
    return shadow.request_count() == want.size() &&
           gw.gateway().upstream("shadow").connections == 0;
  }));
  std::set<std::string> mirrored;
  for (const auto& r : shadow.requests()) mirrored.insert(r.target);
  CHECK(mirrored == want);
  CHECK(primary.request_count() == 80);
}

TEST_CASE("a destination with weight 0 gets nothing") {
  FakeUpstream a("a");
  FakeUpstream b("b");
  Route split;
  split.name = "split";
  split.destinations = {destination("a", 1), destination("b", 0)};
  TestGateway gw(make_config(
      {split}, {loopback_upstream("a", {a.port()}), loopback_upstream("b", {b.port()})}));
  for (int i = 0; i < 30; ++i) CHECK(get_body(gw.port()) == "a");
  CHECK(b.request_count() == 0);
}

TEST_CASE("direct_response answers without an upstream") {
  FakeUpstream upstream;
  Route direct;
  direct.name = "teapot";
  direct.matches.push_back(Matcher{}.path_exact("/tea"));
  direct.direct_response = DirectResponse{418, "short and stout"};
  TestGateway gw(make_config({direct, forward_all("backend")},
                             {loopback_upstream("backend", {upstream.port()})}));
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/tea") + make_request("GET", "/coffee")));
  auto tea = client.read_response();
  REQUIRE_MESSAGE(tea, client.error());
  CHECK(tea->status == 418);
  CHECK(tea->body == "short and stout");
  auto coffee = client.read_response();
  REQUIRE_MESSAGE(coffee, client.error());
  CHECK(coffee->status == 200);
  REQUIRE(upstream.wait_for_requests(1));
  CHECK(upstream.request_count() == 1);
  CHECK(upstream.last_request()->target == "/coffee");
}

namespace {
struct ShortCircuit : RecordingHooks {
  std::optional<Response> on_request(RequestContext& context) override {
    if (context.request.headers.contains("x-deny")) {
      Response response;
      response.status = 401;
      response.body = "denied by hook";
      return response;
    }
    context.request.headers.add("x-added-by-hook", "yes");
    return std::nullopt;
  }
};
}  // namespace

TEST_CASE("hook on_request can answer directly or edit the request") {
  FakeUpstream upstream;
  auto hooks = std::make_shared<ShortCircuit>();
  TestGateway gw(single_upstream_config(upstream.port()), 1, hooks);
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/", "example.com", {{"x-deny", "1"}})));
  auto denied = client.read_response();
  REQUIRE_MESSAGE(denied, client.error());
  CHECK(denied->status == 401);
  CHECK(denied->body == "denied by hook");
  CHECK(upstream.request_count() == 0);
  RawClient other(gw.port());
  REQUIRE(other.send(make_request("GET", "/")));
  auto allowed = other.read_response();
  REQUIRE_MESSAGE(allowed, other.error());
  CHECK(allowed->status == 200);
  REQUIRE(upstream.wait_for_requests(1));
  CHECK(upstream.last_request()->header("x-added-by-hook") == "yes");
}

namespace {
struct ChosenRecorder : RecordingHooks {
  std::mutex mutex;
  std::vector<std::pair<std::string, std::string>> chosen;
  std::optional<Response> upstream_peer(RequestContext& context, PeerChoice& peer) override {
    std::lock_guard lock(mutex);
    chosen.emplace_back(context.upstream, context.endpoint);
    chosen.emplace_back(peer.upstream(), peer.endpoint_key());
    return std::nullopt;
  }
};
}  // namespace

TEST_CASE("hook upstream_peer sees the upstream and endpoint") {
  FakeUpstream upstream;
  auto hooks = std::make_shared<ChosenRecorder>();
  TestGateway gw(single_upstream_config(upstream.port()), 1, hooks);
  CHECK(get_body(gw.port()) == "upstream");
  std::lock_guard lock(hooks->mutex);
  REQUIRE(hooks->chosen.size() == 2);
  std::string key = "127.0.0.1:" + std::to_string(upstream.port());
  CHECK(hooks->chosen[0].first == "backend");  // the context
  CHECK(hooks->chosen[0].second == key);
  CHECK(hooks->chosen[1].first == "backend");  // the choice
  CHECK(hooks->chosen[1].second == key);
}

namespace {
struct HeaderAdder : RecordingHooks {
  void on_response_headers(RequestContext& context, ResponseHead& head) override {
    head.headers.add("x-hooked", std::to_string(head.status) + " " + std::string(context.route));
  }
};
}  // namespace

TEST_CASE("hook on_response_headers can add a header, on gateway answers too") {
  FakeUpstream upstream;
  Route api = forward_all("backend", "api");
  api.matches.push_back(Matcher{}.path_prefix("/api"));
  auto hooks = std::make_shared<HeaderAdder>();
  TestGateway gw(make_config({api}, {loopback_upstream("backend", {upstream.port()})}), 1, hooks);
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/api/x")));
  auto routed = client.read_response();
  REQUIRE_MESSAGE(routed, client.error());
  CHECK(routed->header("x-hooked") == "200 api");
  RawClient other(gw.port());
  REQUIRE(other.send(make_request("GET", "/nowhere")));
  auto unrouted = other.read_response();
  REQUIRE_MESSAGE(unrouted, other.error());
  CHECK(unrouted->status == 404);
  REQUIRE(unrouted->header("x-hooked"));
  CHECK(unrouted->header("x-hooked")->rfind("404", 0) == 0);
}

TEST_CASE("hook on_log sees status, flags, route, upstream and byte counts") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received&) {
    Reply reply;
    reply.body = "12345";
    return reply;
  });
  Route api = forward_all("backend", "api");
  api.matches.push_back(Matcher{}.path_prefix("/api"));
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(make_config({api}, {loopback_upstream("backend", {upstream.port()})}), 1, hooks);
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("POST", "/api", "example.com", {}, "abc")));
  REQUIRE(client.read_response());
  REQUIRE(hooks->wait_for_logs(1));
  RawClient other(gw.port());
  REQUIRE(other.send(make_request("GET", "/nowhere")));
  REQUIRE(other.read_response());
  REQUIRE(hooks->wait_for_logs(2));
  auto logs = hooks->logs();
  CHECK(logs[0].status == 200);
  CHECK(logs[0].flags == "-");
  CHECK(logs[0].listener == "main");
  CHECK(logs[0].route == "api");
  CHECK(logs[0].upstream == "backend");
  CHECK(logs[0].bytes_received == 3);
  CHECK(logs[0].bytes_sent == 5);
  CHECK(logs[0].client_address.rfind("127.0.0.1:", 0) == 0);
  CHECK(logs[1].status == 404);
  CHECK(logs[1].flags == "NR");
}

TEST_CASE("apply swaps routes while a request is in flight on the old ones") {
  FakeUpstream old_upstream("old");
  FakeUpstream new_upstream("new");
  old_upstream.set_handler([](const Received& r) {
    Reply reply;
    reply.hold = r.target == "/slow";
    reply.body = "old " + r.target;
    return reply;
  });
  TestGateway gw(
      make_config({forward_all("old")}, {loopback_upstream("old", {old_upstream.port()})}));
  RawClient slow(gw.port(), 5s);
  REQUIRE(slow.send(make_request("GET", "/slow")));
  REQUIRE(old_upstream.wait_for_requests(1));
  REQUIRE(wait_until([&] { return old_upstream.held() == 1; }));

  Status status = gw.apply(
      make_config({forward_all("new")}, {loopback_upstream("new", {new_upstream.port()})}));
  REQUIRE_MESSAGE(status.ok(), status.error().to_string());
  // New connections see the new routes at once (the port is kept).
  CHECK(get_body(gw.port()) == "new");

  old_upstream.release();
  auto response = slow.read_response();
  REQUIRE_MESSAGE(response, slow.error());
  CHECK(response->status == 200);
  CHECK(response->body == "old /slow");
}

TEST_CASE("an invalid apply names the field and keeps the old config serving") {
  FakeUpstream upstream("backend");
  TestGateway gw(single_upstream_config(upstream.port()));
  CHECK(get_body(gw.port()) == "backend");

  Route bad_regex = forward_all("backend", "bad");
  bad_regex.matches.push_back(Matcher{}.path_regex("("));
  Status regex_status =
      gw.apply(make_config({bad_regex}, {loopback_upstream("backend", {upstream.port()})}));
  REQUIRE_FALSE(regex_status.ok());
  CHECK(regex_status.error().to_string().find("routes[0].matches[0].uri") != std::string::npos);

  Status missing_status = gw.apply(make_config({forward_all("missing")}, {}));
  REQUIRE_FALSE(missing_status.ok());
  CHECK_FALSE(missing_status.error().field.empty());
  CHECK(missing_status.error().to_string().find("missing") != std::string::npos);

  CHECK(get_body(gw.port()) == "backend");
}

TEST_CASE("a Gateway runs on a host-owned io_context") {
  FakeUpstream upstream("backend");
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  {
    GatewayOptions options;
    options.seed = 7;
    Gateway gateway(io, options);
    Status status = gateway.apply(single_upstream_config(upstream.port()));
    REQUIRE_MESSAGE(status.ok(), status.error().to_string());
    gateway.start();
    uint16_t port = gateway.port("main");
    REQUIRE(port != 0);
    CHECK(get_body(port) == "backend");
    CHECK(get_body(port) == "backend");
    gateway.stop();
    // Stopping on a host context may finish asynchronously on that context.
    CHECK(wait_until([&] {
      RawClient probe(port, 1s);
      return !probe.connected() || probe.is_closed(100ms);
    }));
  }
  guard.reset();
  io.stop();
  runner.join();
}

TEST_CASE("curl end to end: header routing") {
  FakeUpstream v1("reviews-v1");
  FakeUpstream v2("reviews-v2");
  TestGateway gw(jason_config(v1.port(), v2.port()));
  auto jason = run_curl({"-H", "end-user: jason", url(gw.port())});
  CHECK(jason.exit_code == 0);
  CHECK(jason.out == "reviews-v2");
  auto other = run_curl({url(gw.port(), "/x")});
  CHECK(other.exit_code == 0);
  CHECK(other.out == "reviews-v1");
}

TEST_CASE("curl end to end: chunked upload, Expect: 100-continue and HEAD") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received& r) {
    Reply reply;
    reply.body = r.method + " " + std::to_string(r.body_bytes);
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  auto chunked = run_curl(
      {"-H", "Transfer-Encoding: chunked", "--data-binary", "hello world", url(gw.port(), "/up")});
  CHECK(chunked.exit_code == 0);
  CHECK(chunked.out == "POST 11");
  // curl waits (1 s by default) for 100 Continue before sending the body; a
  // fast answer shows the gateway sent it.
  auto start = std::chrono::steady_clock::now();
  auto expect = run_curl({"-H", "Expect: 100-continue", "--expect100-timeout", "5", "--data-binary",
                          "abc", url(gw.port(), "/up")});
  CHECK(std::chrono::steady_clock::now() - start < 4s);
  CHECK(expect.exit_code == 0);
  CHECK(expect.out == "POST 3");
  auto head = run_curl({"-I", url(gw.port())});
  CHECK(head.exit_code == 0);
  CHECK(head.out.rfind("HTTP/1.1 200", 0) == 0);
}

}  // namespace gateway_api_test
