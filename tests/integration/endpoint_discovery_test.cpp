// Endpoint discovery through the C++ API: Gateway::update_endpoints swaps one
// upstream's endpoints without compiling anything else, EndpointSources feed
// it, and DnsEndpointSource keeps DNS upstreams current.

#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/snapshot.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace endpoint_discovery_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

std::string get_body(uint16_t port, const HeaderList& headers = {}) {
  RawClient c(port, 3s);
  if (!c.send(make_request("GET", "/", "example.com", headers))) return "<send failed>";
  auto r = c.read_response();
  if (!r) return "<" + c.error() + ">";
  return r->status == 200 ? r->body : "<status " + std::to_string(r->status) + ">";
}

Endpoint loopback(uint16_t port, Labels labels = {}) {
  return Endpoint{"127.0.0.1", port, std::move(labels), 1};
}

std::string key(uint16_t port) {
  return "127.0.0.1:" + std::to_string(port);
}

const UpstreamView::EndpointView* find(const UpstreamView& view, uint16_t port) {
  for (const auto& e : view.endpoints)
    if (e.address == key(port)) return &e;
  return nullptr;
}

std::vector<std::string> addresses(const UpstreamView& view) {
  std::vector<std::string> out;
  for (const auto& e : view.endpoints) out.push_back(e.address);
  return out;
}

// A clock that stands still: ejections last until the test moves it.
struct FakeClock {
  std::atomic<int64_t> ticks{std::chrono::steady_clock::now().time_since_epoch().count()};
  std::function<std::chrono::steady_clock::time_point()> fn() {
    return [this] {
      return std::chrono::steady_clock::time_point(
          std::chrono::steady_clock::duration(ticks.load()));
    };
  }
};

}  // namespace

TEST_CASE("update_endpoints: traffic moves to the new endpoint, nothing else is recompiled") {
  FakeUpstream a("A"), b("B");
  auto config = single_upstream_config(a.port());
  config.routers[0].virtual_hosts[0].routes[0].rewrite =
      Rewrite{.uri_regex = std::make_pair(std::string("^/(.*)$"), std::string("/\\1"))};
  UpstreamConfig secure;
  secure.name = "secure";
  secure.endpoints = {loopback(1)};
  secure.tls = UpstreamTls{.sni = "secure.example.com", .insecure_skip_verify = true};
  config.upstreams.push_back(secure);
  ListenerConfig pt{.name = "tls", .address = "127.0.0.1", .port = 0, .router = "main"};
  pt.passthrough = {{.sni_hosts = {"backend.example.com"}, .upstream = "backend"}};
  config.listeners.push_back(pt);
  TestGateway gw(std::move(config));
  REQUIRE(get_body(gw.port()) == "A");
  auto s0 = gw.gateway().snapshot();
  REQUIRE(s0);

  Status st = gw.gateway().update_endpoints("backend", {loopback(b.port())});
  REQUIRE_MESSAGE(st.ok(), st.error().to_string());
  CHECK(get_body(gw.port()) == "B");
  CHECK(get_body(gw.port()) == "B");
  CHECK(addresses(gw.gateway().upstream("backend")) == std::vector<std::string>{key(b.port())});

  auto s1 = gw.gateway().snapshot();
  REQUIRE(s1);
  CHECK(s1 != s0);
  CHECK(&s1->routers[0].config() == &s0->routers[0].config());
  CHECK(s1->routes.get() == s0->routes.get());
  CHECK(s1->route(0, 0, 0).policy.uri_regex_rewrite.get() != nullptr);
  CHECK(s1->source.get() == s0->source.get());
  REQUIRE(s1->listeners.size() == 2);
  CHECK(s1->listeners[1].tls != nullptr);
  CHECK(s1->listeners[1].tls.get() == s0->listeners[1].tls.get());
  CHECK(s1->upstreams[1].tls != nullptr);
  CHECK(s1->upstreams[1].tls.get() == s0->upstreams[1].tls.get());
  CHECK(s1->upstreams[0].state.get() == s0->upstreams[0].state.get());
  // The old snapshot, which requests in flight may still hold, is unchanged.
  CHECK(s0->upstreams[0].endpoints.at(0).key == key(a.port()));

  // The same list again publishes nothing.
  REQUIRE(gw.gateway().update_endpoints("backend", {loopback(b.port())}).ok());
  CHECK(gw.gateway().snapshot() == s1);
}

TEST_CASE("update_endpoints: a kept endpoint keeps its ejection, a new one starts clean") {
  FakeUpstream bad("bad"), good("good"), fresh("fresh");
  bad.set_handler([](const Received&) { return Reply{.status = 503}; });
  auto up = loopback_upstream("backend", {bad.port(), good.port()});
  up.load_balancer = LoadBalancer::round_robin;
  up.outlier_detection =
      OutlierDetection{.consecutive_5xx = 1, .interval = 10ms, .max_ejection_percent = 100};
  FakeClock clock;
  GatewayOptions options;
  options.workers = 1;
  options.seed = 42;
  options.clock = clock.fn();
  Gateway gateway(options);
  REQUIRE(gateway.apply(make_config({forward_all("backend")}, {up})).ok());
  gateway.start();
  uint16_t port = gateway.port("main");
  for (int i = 0; i < 2; ++i) get_body(port);
  auto view = gateway.upstream("backend");
  REQUIRE(find(view, bad.port()) != nullptr);
  REQUIRE(find(view, bad.port())->ejected);
  size_t good_before = good.request_count();
  size_t bad_before = bad.request_count();

  Status st = gateway.update_endpoints("backend", {loopback(bad.port()), loopback(fresh.port())});
  REQUIRE_MESSAGE(st.ok(), st.error().to_string());
  view = gateway.upstream("backend");
  CHECK(addresses(view) == std::vector<std::string>{key(bad.port()), key(fresh.port())});
  REQUIRE(find(view, bad.port()) != nullptr);
  CHECK(find(view, bad.port())->ejected);
  CHECK(find(view, bad.port())->ejections == 1);
  REQUIRE(find(view, fresh.port()) != nullptr);
  CHECK_FALSE(find(view, fresh.port())->ejected);
  // The ejected endpoint stays out of rotation: every request reaches the new one.
  for (int i = 0; i < 4; ++i) CHECK(get_body(port) == "fresh");
  CHECK(good.request_count() == good_before);  // removed
  CHECK(bad.request_count() == bad_before);    // ejected
  gateway.stop();
}

TEST_CASE("update_endpoints: a bad list is refused naming the field, and serving goes on") {
  FakeUpstream a("A");
  TestGateway gw(single_upstream_config(a.port()));
  auto before = gw.gateway().snapshot();

  Status bad_address =
      gw.gateway().update_endpoints("backend", {loopback(a.port()), {"a.example.com", 80}});
  REQUIRE_FALSE(bad_address.ok());
  CHECK(bad_address.error().to_string().find("Upstream backend: endpoints[1].address") == 0);
  Status bad_port = gw.gateway().update_endpoints("backend", {{"127.0.0.1", 0}});
  REQUIRE_FALSE(bad_port.ok());
  CHECK(bad_port.error().to_string().find("Upstream backend: endpoints[0].port") == 0);
  Status unknown = gw.gateway().update_endpoints("ratings", {loopback(a.port())});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().to_string().find("Upstream ratings") == 0);

  CHECK(gw.gateway().snapshot() == before);
  CHECK(addresses(gw.gateway().upstream("backend")) == std::vector<std::string>{key(a.port())});
  CHECK(get_body(gw.port()) == "A");
}

TEST_CASE("update_endpoints: subsets follow the endpoints' labels") {
  FakeUpstream one("one"), two("two");
  UpstreamConfig up;
  up.name = "reviews";
  up.endpoints = {loopback(one.port(), {{"version", "v1"}}),
                  loopback(two.port(), {{"version", "v2"}})};
  up.subsets = {{"v1", {{"version", "v1"}}}, {"v2", {{"version", "v2"}}}};
  Route jason{.name = "jason", .destinations = {{.upstream = "reviews", .subset = "v2"}}};
  jason.matches.push_back(Matcher{}.header("end-user", StringMatch::exact("jason")));
  Route rest{.name = "rest", .destinations = {{.upstream = "reviews", .subset = "v1"}}};
  TestGateway gw(make_config({jason, rest}, {up}));
  HeaderList as_jason = {{"end-user", "jason"}};
  REQUIRE(get_body(gw.port(), as_jason) == "two");
  REQUIRE(get_body(gw.port()) == "one");

  // The labels swap: so do the subsets.
  Status st = gw.gateway().update_endpoints("reviews", {loopback(one.port(), {{"version", "v2"}}),
                                                        loopback(two.port(), {{"version", "v1"}})});
  REQUIRE_MESSAGE(st.ok(), st.error().to_string());
  CHECK(get_body(gw.port(), as_jason) == "one");
  CHECK(get_body(gw.port()) == "two");

  // No endpoint left in v2: that subset answers 503 UH, v1 still serves.
  st = gw.gateway().update_endpoints("reviews", {loopback(two.port(), {{"version", "v1"}})});
  REQUIRE(st.ok());
  CHECK(get_body(gw.port(), as_jason) == "<status 503>");
  CHECK(get_body(gw.port()) == "two");
}

TEST_CASE("update_endpoints: concurrent with apply and traffic, every request is served") {
  FakeUpstream a("A"), b("B");
  auto config = single_upstream_config(a.port());
  TestGateway gw(config, 2);
  std::atomic<bool> done{false};
  std::atomic<int> failures{0}, served{0}, refused{0};
  std::thread client([&] {
    while (!done) {
      std::string body = get_body(gw.port());
      if (body == "A" || body == "B")
        ++served;
      else
        ++failures;
    }
  });
  std::thread applier([&] {
    for (int i = 0; i < 30; ++i) {
      auto c = single_upstream_config(i % 2 ? a.port() : b.port());
      if (!gw.apply(c).ok()) ++refused;
    }
  });
  for (int i = 0; i < 200; ++i) {
    Status st = gw.gateway().update_endpoints("backend", {loopback(i % 2 ? a.port() : b.port())});
    if (!st.ok()) ++refused;
  }
  applier.join();
  REQUIRE(wait_until([&] { return served.load() >= 20; }, 10s));
  done = true;
  client.join();
  CHECK(failures == 0);
  CHECK(refused == 0);
  // The last word wins, whoever said it.
  REQUIRE(gw.gateway().update_endpoints("backend", {loopback(b.port())}).ok());
  CHECK(get_body(gw.port()) == "B");
  REQUIRE(gw.apply(single_upstream_config(a.port())).ok());
  CHECK(get_body(gw.port()) == "A");
}

namespace {

// An EndpointSource the test drives by hand.
class ManualSource : public EndpointSource {
 public:
  void start(EndpointSink sink) override {
    std::lock_guard lock(mutex_);
    sink_ = std::move(sink);
    ++starts;
  }
  void stop() override {
    std::lock_guard lock(mutex_);
    sink_ = nullptr;
    ++stops;
  }
  Status push(std::string upstream, std::vector<Endpoint> endpoints) {
    std::lock_guard lock(mutex_);
    if (!sink_) return Error{"ManualSource", "", "not started"};
    return sink_(upstream, std::move(endpoints));
  }
  std::atomic<int> starts{0}, stops{0};

 private:
  std::mutex mutex_;
  EndpointSink sink_;
};

}  // namespace

TEST_CASE("endpoint sources: the gateway starts them, feeds update_endpoints, stops them") {
  FakeUpstream a("A"), b("B");
  TestGateway gw(single_upstream_config(a.port()));
  auto source = std::make_shared<ManualSource>();
  REQUIRE(gw.gateway().add_endpoint_source(source).ok());
  CHECK(source->starts == 1);
  REQUIRE(source->push("backend", {loopback(b.port())}).ok());
  CHECK(get_body(gw.port()) == "B");
  Status bad = source->push("backend", {{"nowhere", 80}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().field == "endpoints[0].address");

  auto other = std::make_shared<ManualSource>();
  REQUIRE(gw.gateway().add_endpoint_source(other).ok());
  gw.gateway().remove_endpoint_source(other);
  CHECK(other->stops == 1);
  CHECK(source->stops == 0);

  gw.stop();
  CHECK(source->stops == 1);
  CHECK_FALSE(gw.gateway().add_endpoint_source(std::make_shared<ManualSource>()).ok());
  CHECK_FALSE(gw.gateway().update_endpoints("backend", {loopback(a.port())}).ok());
}

namespace {

// DNS answers the test sets; counts the rounds.
struct FakeDns {
  std::mutex mutex;
  DnsAnswers answers;
  std::atomic<int> rounds{0};
  std::vector<std::string> asked;

  void set(const std::string& name, std::vector<std::string> ips) {
    std::lock_guard lock(mutex);
    answers[name] = std::move(ips);
  }
  std::function<DnsAnswers(const std::vector<std::string>&)> fn() {
    return [this](const std::vector<std::string>& names) {
      std::lock_guard lock(mutex);
      asked = names;
      ++rounds;
      DnsAnswers out;
      for (const auto& n : names)
        if (auto it = answers.find(n); it != answers.end()) out[n] = it->second;
      return out;
    };
  }
};

struct ErrorLog {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::function<void(const Error&)> fn() {
    return [this](const Error& e) {
      std::lock_guard lock(mutex);
      lines.push_back(e.to_string());
    };
  }
  bool contains(const std::string& text) {
    std::lock_guard lock(mutex);
    for (const auto& l : lines)
      if (l.find(text) != std::string::npos) return true;
    return false;
  }
};

}  // namespace

TEST_CASE("DnsEndpointSource: answers become endpoints, a failed lookup keeps the last good set") {
  FakeUpstream a("A"), b("B"), c("C");
  TestGateway gw(single_upstream_config(c.port()));
  FakeDns dns;
  ErrorLog errors;
  dns.set("a.test", {"127.0.0.1"});
  DnsSourceOptions options;
  options.refresh_interval = std::chrono::hours(1);  // rounds come from refresh()
  options.resolve = dns.fn();
  options.on_error = errors.fn();
  DnsUpstream backend{"backend",
                      {{"a.test", a.port(), {{"version", "v1"}}, 1},
                       {"b.test", b.port(), {}, 2},
                       {"127.0.0.1", c.port(), {}, 1}}};
  auto source = std::make_shared<DnsEndpointSource>(std::vector<DnsUpstream>{backend}, options);
  REQUIRE(gw.gateway().add_endpoint_source(source).ok());
  source->refresh();  // the start's round, at the latest, has been delivered
  CHECK(addresses(gw.gateway().upstream("backend")) ==
        std::vector<std::string>{key(a.port()), key(c.port())});
  CHECK(errors.contains("DnsEndpointSource: b.test: did not resolve"));
  {
    std::lock_guard lock(dns.mutex);
    // IP literals are never looked up.
    CHECK(dns.asked == std::vector<std::string>{"a.test", "b.test"});
  }
  auto snap = gw.gateway().snapshot();
  const auto& eps = snap->upstreams[0].config.endpoints;
  REQUIRE(eps.size() == 2);
  CHECK(eps[0].labels.at("version") == "v1");

  // a.test fails now: its last answer stays; b.test resolves.
  dns.set("a.test", {});
  dns.set("b.test", {"127.0.0.1"});
  source->refresh();
  CHECK(addresses(gw.gateway().upstream("backend")) ==
        std::vector<std::string>{key(a.port()), key(b.port()), key(c.port())});
  CHECK(errors.contains("a.test: did not resolve; keeping its last 1 address(es)"));
  snap = gw.gateway().snapshot();
  CHECK(snap->upstreams[0].config.endpoints.at(1).weight == 2);

  // A full apply resets the endpoints; the next round puts the DNS ones back.
  REQUIRE(gw.apply(single_upstream_config(c.port())).ok());
  CHECK(addresses(gw.gateway().upstream("backend")) == std::vector<std::string>{key(c.port())});
  source->refresh();
  CHECK(addresses(gw.gateway().upstream("backend")).size() == 3);
  gw.stop();
}

TEST_CASE("DnsEndpointSource: an upstream none of whose names ever resolved keeps its endpoints") {
  FakeUpstream a("A");
  TestGateway gw(single_upstream_config(a.port()));
  FakeDns dns;
  DnsSourceOptions options;
  options.refresh_interval = std::chrono::hours(1);
  options.resolve = dns.fn();
  auto source = std::make_shared<DnsEndpointSource>(
      std::vector<DnsUpstream>{{"backend", {{"nowhere.test", 80, {}, 1}}}}, options);
  REQUIRE(gw.gateway().add_endpoint_source(source).ok());
  source->refresh();
  CHECK(dns.rounds >= 1);
  CHECK(addresses(gw.gateway().upstream("backend")) == std::vector<std::string>{key(a.port())});
  CHECK(get_body(gw.port()) == "A");
}

TEST_CASE("DnsEndpointSource: re-resolves every interval on its own thread") {
  FakeUpstream a("A");
  TestGateway gw(single_upstream_config(a.port()));
  FakeDns dns;
  dns.set("a.test", {"127.0.0.1"});
  DnsSourceOptions options;
  options.refresh_interval = 1ms;
  options.resolve = dns.fn();
  auto source = std::make_shared<DnsEndpointSource>(
      std::vector<DnsUpstream>{{"backend", {{"a.test", a.port(), {}, 1}}}}, options);
  REQUIRE(gw.gateway().add_endpoint_source(source).ok());
  // Waits for rounds to happen, never for time to pass.
  CHECK(wait_until([&] { return dns.rounds.load() >= 3; }, 10s));
  gw.gateway().remove_endpoint_source(source);
  int after_stop = dns.rounds.load();
  source->refresh();  // stopped: no round
  CHECK(dns.rounds.load() == after_stop);
}

TEST_CASE("DnsEndpointSource: the system resolver finds localhost") {
  FakeUpstream a("A"), other("other");
  TestGateway gw(single_upstream_config(other.port()));
  auto source = std::make_shared<DnsEndpointSource>(
      std::vector<DnsUpstream>{{"backend", {{"localhost", a.port(), {}, 1}}}});
  REQUIRE(gw.gateway().add_endpoint_source(source).ok());
  source->refresh();
  CHECK(find(gw.gateway().upstream("backend"), a.port()) != nullptr);
  CHECK(get_body(gw.port()) == "A");
  CHECK(resolve_hostnames({"localhost"})["localhost"] == std::vector<std::string>{"127.0.0.1"});
}

}  // namespace endpoint_discovery_test
