// Timeouts and the downstream connection limit: a stalled client never blocks
// others (issue #2, section 3). Every timeout here runs on a ManualClock
// (issue 11, item 5): time moves only when the test advances it, so each
// case shows the timeout has not fired just before its time and fires at it.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace timeouts_test {

using namespace sluice::test;
using namespace sluice;
using namespace std::chrono_literals;

namespace {

bool get_ok(uint16_t port) {
  RawClient client(port, 2s);
  if (!client.send(make_request("GET", "/"))) return false;
  auto response = client.read_response();
  return response && response->status == 200;
}

// A loopback listener whose accept queue is full. Linux drops a SYN to such
// a listener (tcp_conn_request: sk_acceptq_is_full) however often it is
// retried, so a connect to it never completes and never fails: only the
// gateway's connect timeout ends it. The queue is read back (TCP_INFO on a
// listener: tcpi_unacked is its length, tcpi_sacked its limit), so a kernel
// that behaves otherwise fails the test instead of skipping it.
class BlackholePort {
 public:
  BlackholePort() {
    listener_ = bind_loopback(port_, 0);  // limit 0: one queued connection fills it
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    filler_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(filler_ >= 0);
    REQUIRE(::connect(filler_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    REQUIRE(wait_until([&] { return full(); }));
  }
  ~BlackholePort() {
    ::close(filler_);
    ::close(listener_);
  }
  uint16_t port() const { return port_; }
  bool full() const {
    tcp_info info{};
    socklen_t len = sizeof(info);
    if (::getsockopt(listener_, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return false;
    return info.tcpi_unacked > info.tcpi_sacked;
  }

 private:
  int listener_ = -1;
  int filler_ = -1;
  uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("request-header timeout closes a slowloris at its time while others are served") {
  FakeUpstream upstream;
  ManualClock clock;
  auto config = single_upstream_config(upstream.port());
  config.limits.request_header_timeout = 10s;
  TestGateway gw(std::move(config), 1, nullptr, &clock);
  // Two clients stall mid-header at the same (frozen) time.
  RawClient early(gw.port(), 5s), late(gw.port(), 5s);
  for (RawClient* c : {&early, &late}) {
    REQUIRE(c->send("GET / HTTP/1.1\r\nHost: example.com\r\nX-Half: "));
    REQUIRE(gateway_read_everything(gw.port(), c->local_port()));
  }
  clock.settle();  // both header deadlines armed
  // Served while the slow ones are stuck mid-header.
  CHECK(get_ok(gw.port()));

  clock.advance(10s - 1ms);
  // Not yet: one of them finishes its head and is served.
  REQUIRE(early.send("1\r\n\r\n"));
  auto served = early.read_response();
  REQUIRE_MESSAGE(served, early.error());
  CHECK(served->status == 200);

  clock.advance(1ms);
  CHECK(late.is_closed(5s));
  // It may get a 408 first; nothing else.
  const std::string& said = late.buffered();
  CHECK((said.empty() || said.rfind("HTTP/1.1 408", 0) == 0));
  CHECK(upstream.request_count() == 2);
}

// Catches: an idle connection closed at once (or at the first tick), or
// never; the keep-alive connection not reused before its time.
TEST_CASE("idle keep-alive connection is closed at the idle timeout, not before") {
  FakeUpstream upstream;
  ManualClock clock;
  auto config = single_upstream_config(upstream.port());
  config.limits.idle_timeout = 30s;
  TestGateway gw(std::move(config), 1, nullptr, &clock);
  RawClient client(gw.port(), 5s);
  for (int i = 0; i < 2; ++i) {
    REQUIRE(client.send(make_request("GET", "/")));
    auto response = client.read_response();
    REQUIRE_MESSAGE(response, client.error());
    CHECK(response->status == 200);
    clock.settle();                        // idle from now
    if (i == 0) clock.advance(30s - 1ms);  // still open: the next request is served on it
  }
  clock.advance(30s);
  CHECK(client.is_closed(5s));
  CHECK(client.buffered().empty());
  CHECK(upstream.request_count() == 2);
}

// Catches: a parked connection's idle timeout restarting when it parks (it
// would then close up to a tick plus the park delay late).
TEST_CASE("a parked idle connection still times out counting from when it went idle") {
  FakeUpstream upstream;
  ManualClock clock;
  auto config = single_upstream_config(upstream.port());
  config.limits.idle_timeout = 1s;
  TestGateway gw(std::move(config), 1, nullptr, &clock);
  RawClient client(gw.port(), 5s);
  REQUIRE(client.send(make_request("GET", "/")));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  clock.settle();
  clock.advance(600ms);  // parks (after 50 ms idle)
  clock.settle();        // the session has handed the socket to park()
  clock.advance(400ms);  // 1 s since the response
  CHECK(client.is_closed(5s));
  CHECK(client.buffered().empty());
}

// Catches: the connect timeout read from steady_clock (this would wait the
// real 10 s), a connect abandoned before its time, the wrong answer.
TEST_CASE("upstream connect timeout answers 503 (UF) when the clock reaches it") {
  BlackholePort blackhole;
  ManualClock clock;
  auto config = single_upstream_config(blackhole.port());
  config.upstreams[0].pool.connect_timeout = 10s;  // longer than the client waits
  config.routers[0].virtual_hosts[0].routes[0].retries.attempts = 0;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(std::move(config), 1, hooks, &clock);
  RawClient client(gw.port(), 5s);
  REQUIRE(client.send(make_request("GET", "/")));
  // The connect holds a place under the upstream's limits while it runs.
  REQUIRE(wait_until([&] { return gw.gateway().upstream("backend").connections == 1; }));
  clock.settle();
  clock.advance(10s - 1ms);
  CHECK(gw.gateway().upstream("backend").connections == 1);  // still connecting
  CHECK(hooks->logs().empty());
  clock.advance(1ms);
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  CHECK(response->status == 503);
  CHECK(response->body.rfind("upstream connect error or disconnect/reset before headers", 0) == 0);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].flags.find("UF") != std::string::npos);
  CHECK(hooks->logs()[0].duration == 10s);
  CHECK(gw.gateway().upstream("backend").connections == 0);
  CHECK(blackhole.full());
}

// Catches: the wait for a connection place (max_connections) bounded by
// steady_clock instead of the gateway's clock, or not bounded at all.
TEST_CASE("a request waiting for a connection place gives up at connect_timeout: 503 UO") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received& r) {
    Reply reply;
    reply.hold = r.target == "/hold";
    return reply;
  });
  ManualClock clock;
  auto config = single_upstream_config(upstream.port());
  config.upstreams[0].pool.max_connections = 1;
  config.upstreams[0].pool.max_pending_requests = 1;
  config.upstreams[0].pool.connect_timeout = 30s;  // longer than the client waits
  config.routers[0].virtual_hosts[0].routes[0].retries.attempts = 0;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(std::move(config), 1, hooks, &clock);
  RawClient holder(gw.port(), 5s), waiter(gw.port(), 5s);
  REQUIRE(holder.send(make_request("GET", "/hold")));
  REQUIRE(wait_until([&] { return upstream.held() == 1; }));
  REQUIRE(waiter.send(make_request("GET", "/wait")));
  REQUIRE(wait_until([&] { return gw.gateway().upstream("backend").pending_requests == 1; }));
  clock.settle();
  clock.advance(30s - 1ms);
  CHECK(gw.gateway().upstream("backend").pending_requests == 1);  // still waiting
  clock.advance(1ms);
  auto response = waiter.read_response();
  REQUIRE_MESSAGE(response, waiter.error());
  CHECK(response->status == 503);
  CHECK(response->header("x-envoy-overloaded") == std::optional<std::string>("true"));
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].flags == "UO");
  CHECK(hooks->logs()[0].duration == 30s);
  CHECK(gw.gateway().upstream("backend").pending_requests == 0);
  CHECK(gw.gateway().upstream("backend").overflows == 1);
  upstream.release();
  auto held = holder.read_response();
  REQUIRE_MESSAGE(held, holder.error());
  CHECK(held->status == 200);
}

TEST_CASE("connections beyond max_connections are closed") {
  FakeUpstream upstream;
  auto config = single_upstream_config(upstream.port());
  config.limits.max_connections = 2;
  TestGateway gw(std::move(config));
  RawClient a(gw.port(), 2s);
  RawClient b(gw.port(), 2s);
  for (RawClient* c : {&a, &b}) {
    REQUIRE(c->send(make_request("GET", "/")));
    auto response = c->read_response();
    REQUIRE_MESSAGE(response, c->error());
    CHECK(response->status == 200);
  }
  RawClient third(gw.port(), 2s);
  third.send(make_request("GET", "/"));  // may fail once the gateway closed it
  CHECK(third.is_closed(2s));
  CHECK(third.buffered().find("200 OK") == std::string::npos);
  // The two admitted ones are unaffected.
  REQUIRE(a.send(make_request("GET", "/")));
  auto again = a.read_response();
  REQUIRE_MESSAGE(again, a.error());
  CHECK(again->status == 200);
  // Closing one makes room for a new one.
  b.close();
  CHECK(wait_until([&] { return get_ok(gw.port()); }));
}

}  // namespace timeouts_test
