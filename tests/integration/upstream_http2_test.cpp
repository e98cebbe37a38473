// HTTP/2 upstreams over real sockets: requests from HTTP/1.1 and h2
// clients multiplexed as streams over few upstream connections (counted at
// the in-process h2 upstream), maxConcurrentStreams opening a second
// connection, http2MaxRequests overflow (503 UO), GOAWAY mid-traffic,
// RST_STREAM retried per retryOn reset, large bodies both ways, and the
// HTTP/1.1 the multiplexer writes on the session's socket pair (chunked,
// trailers as chunked trailers).

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <thread>

#include "net/loop.hpp"
#include "support/gateway_fixture.hpp"
#include "support/h2_upstream.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "upstream/cluster.hpp"
#include "upstream/compiled.hpp"
#include "upstream/connect.hpp"
#include "upstream/context.hpp"

namespace upstream_http2_test {

using namespace sluice;
using namespace sluice::test;

namespace {

GatewayConfig h2_config(uint16_t port, void (*edit)(UpstreamConfig&) = nullptr) {
  GatewayConfig cfg = single_upstream_config(port);
  cfg.upstreams.at(0).protocol = UpstreamProtocol::http2;
  if (edit) edit(cfg.upstreams.at(0));
  return cfg;
}

// `n` HTTP/1.1 requests at once, one client each; the statuses in order.
std::vector<int> concurrent_gets(uint16_t port, size_t n) {
  std::vector<int> statuses(n, 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      RawClient c(port, std::chrono::seconds(10));
      if (!c.send(make_request("GET", fmt::format("/r{}", i)))) return;
      if (auto r = c.read_response()) statuses[i] = r->status;
    });
  for (auto& t : threads) t.join();
  return statuses;
}

}  // namespace

TEST_CASE("upstream h2c: a request goes as an HTTP/2 stream and the response comes back") {
  H2Upstream up;
  up.set_handler([](const H2Request& r) {
    H2Reply reply;
    reply.headers.add("x-seen-method", r.head.method);
    reply.headers.add("x-seen-authority", r.head.authority);
    reply.body = "got " + r.head.target + " " + r.body;
    return reply;
  });
  TestGateway gw(h2_config(up.port()));
  RawClient c(gw.port());
  for (int i = 0; i < 5; ++i) {
    REQUIRE(c.send(make_request("POST", fmt::format("/p{}?x=1", i), "svc.example",
                                {{"x-client", "1"}}, "hello")));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 200);
    CHECK(r->body == fmt::format("got /p{}?x=1 hello", i));
    CHECK(r->header("x-seen-method") == "POST");
    CHECK(r->header("x-seen-authority") == "svc.example");
  }
  auto got = up.received();
  REQUIRE(got.size() == 5);
  CHECK(got[0].head.headers.get("x-client") == "1");
  CHECK_FALSE(got[0].head.headers.contains("connection"));
  CHECK(got[0].head.scheme == "http");
  // Sequential requests share the one connection.
  CHECK(up.connections() == 1);
}

TEST_CASE(
    "upstream h2c: concurrent HTTP/1.1 clients are multiplexed over one upstream connection") {
  H2Upstream up;
  up.hold_until(12);  // all twelve streams open at once before any answer
  TestGateway gw(h2_config(up.port()));
  auto statuses = concurrent_gets(gw.port(), 12);
  for (int s : statuses) CHECK(s == 200);
  CHECK(up.connections() == 1);
  CHECK(up.max_open_streams() == 12);
}

TEST_CASE("upstream h2c: an h2 client's parallel streams are multiplexed upstream too") {
  H2Upstream up;
  up.hold_until(6);
  TestGateway gw(h2_config(up.port()));
  std::vector<std::string> args = {
      "--http2-prior-knowledge", "--parallel", "--parallel-immediate", "-s", "-w",
      "%{http_code}\n"};
  for (int i = 0; i < 6; ++i) args.push_back(fmt::format("http://127.0.0.1:{}/c{}", gw.port(), i));
  auto r = run_curl(args);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  size_t ok = 0;
  for (size_t pos = 0; (pos = r.out.find("200\n", pos)) != std::string::npos; pos += 4) ++ok;
  CHECK(ok == 6);
  CHECK(up.connections() == 1);
  CHECK(up.max_open_streams() == 6);
}

TEST_CASE("upstream h2c: maxConcurrentStreams full opens a second connection") {
  H2Upstream up;
  up.hold_until(8);
  TestGateway gw(
      h2_config(up.port(), [](UpstreamConfig& u) { u.pool.max_concurrent_streams = 4; }));
  auto statuses = concurrent_gets(gw.port(), 8);
  for (int s : statuses) CHECK(s == 200);
  CHECK(up.connections() == 2);
  CHECK(up.max_open_streams() == 4);
}

TEST_CASE("upstream h2c: the upstream's SETTINGS_MAX_CONCURRENT_STREAMS caps a connection too") {
  http2::Settings s;
  s.max_concurrent_streams = 3;
  H2Upstream up(std::nullopt, s);
  // Warm the connection so its SETTINGS are known before the burst.
  TestGateway gw(h2_config(up.port()));
  {
    RawClient c(gw.port());
    REQUIRE(c.send(make_request("GET", "/warm")));
    REQUIRE(c.read_response());
  }
  up.hold_until(1 + 6);
  auto statuses = concurrent_gets(gw.port(), 6);
  for (int st : statuses) CHECK(st == 200);
  CHECK(up.connections() == 2);
  CHECK(up.max_open_streams() <= 3);
}

TEST_CASE("upstream h2c: http2MaxRequests overflows at once with 503 UO") {
  H2Upstream up;
  up.hold_until(100);  // held until released
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(h2_config(up.port(), [](UpstreamConfig& u) { u.pool.max_requests = 2; }), 1,
                 hooks);
  RawClient a(gw.port()), b(gw.port()), c(gw.port());
  REQUIRE(a.send(make_request("GET", "/a")));
  REQUIRE(b.send(make_request("GET", "/b")));
  REQUIRE(up.wait_for_requests(2));
  REQUIRE(c.send(make_request("GET", "/c")));
  auto rc = c.read_response();
  REQUIRE_MESSAGE(rc, c.error());
  CHECK(rc->status == 503);
  CHECK(rc->header("x-envoy-overloaded") == "true");
  up.release_held();
  auto ra = a.read_response();
  auto rb = b.read_response();
  REQUIRE(ra);
  REQUIRE(rb);
  CHECK(ra->status == 200);
  CHECK(rb->status == 200);
  REQUIRE(hooks->wait_for_logs(3));
  bool uo = false;
  for (const auto& l : hooks->logs()) uo = uo || (l.status == 503 && l.flags == "UO");
  CHECK(uo);
  CHECK(up.requests() == 2);
  // The places came back: a new request goes through.
  RawClient d(gw.port());
  REQUIRE(d.send(make_request("GET", "/d")));
  auto rd = d.read_response();
  REQUIRE(rd);
  CHECK(rd->status == 200);
}

TEST_CASE("upstream h2c: GOAWAY mid-traffic loses no request") {
  H2Upstream up;
  up.goaway_after(3);  // every connection serves three streams, then GOAWAY
  // Streams past a GOAWAY are refused unprocessed: one free resend, then
  // retries under refused-stream (in Istio's default retryOn). With eight
  // at once against three per connection, one may be refused a few times.
  GatewayConfig cfg = h2_config(up.port());
  auto& retries = cfg.routers.at(0).virtual_hosts.at(0).routes.at(0).retries;
  retries.attempts = 2;  // Istio's default
  retries.backoff_base = std::chrono::milliseconds(1);
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(cfg, 1, hooks);
  for (int round = 0; round < 3; ++round) {
    auto statuses = concurrent_gets(gw.port(), 8);
    for (int s : statuses) CHECK(s == 200);
  }
  // Sequential ones after the GOAWAYs as well.
  RawClient c(gw.port());
  for (int i = 0; i < 7; ++i) {
    REQUIRE(c.send(make_request("GET", "/seq")));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 200);
  }
  CHECK(up.connections() >= 4);
  for (const auto& l : hooks->logs())
    if (l.status != 200) MESSAGE("status " << l.status << " flags " << l.flags);
}

TEST_CASE("upstream h2c: RST_STREAM before the response is retried per retryOn reset") {
  H2Upstream up;
  std::atomic<int> calls{0};
  up.set_handler([&](const H2Request&) {
    H2Reply reply;
    if (calls++ == 0) reply.reset = http2::ErrorCode::internal_error;
    reply.body = "second";
    return reply;
  });
  GatewayConfig cfg = h2_config(up.port());
  cfg.routers.at(0).virtual_hosts.at(0).routes.at(0).retries.retry_on = "reset";
  cfg.routers.at(0).virtual_hosts.at(0).routes.at(0).retries.backoff_base =
      std::chrono::milliseconds(1);
  TestGateway gw(cfg);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  CHECK(r->body == "second");
  CHECK(up.requests() == 2);
}

TEST_CASE("upstream h2c: RST_STREAM without retries is a 502 reset before the response (UC)") {
  H2Upstream up;
  up.set_handler([](const H2Request&) {
    H2Reply reply;
    reply.reset = http2::ErrorCode::internal_error;
    return reply;
  });
  GatewayConfig cfg = h2_config(up.port());
  cfg.routers.at(0).virtual_hosts.at(0).routes.at(0).retries.attempts = 0;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(cfg, 1, hooks);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 502);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs().at(0).flags == "UC");
  CHECK(up.requests() == 1);
}

TEST_CASE("upstream h2c: a large upload and a large download pass with flow control") {
  H2Upstream up;
  const size_t kSize = 3 * 1024 * 1024 + 17;
  up.set_handler([&](const H2Request& r) {
    H2Reply reply;
    reply.headers.add("x-got", std::to_string(r.body.size()));
    reply.body = std::string(kSize, 'd');
    return reply;
  });
  TestGateway gw(h2_config(up.port()));
  RawClient c(gw.port(), std::chrono::seconds(20));
  std::string body(kSize, 'u');
  for (size_t i = 0; i < body.size(); i += 4096) body[i] = static_cast<char>('a' + (i / 4096) % 26);
  REQUIRE(c.send(make_request("POST", "/upload", "example.com", {}, body)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  CHECK(r->header("x-got") == std::to_string(kSize));
  CHECK(r->body.size() == kSize);
  auto got = up.received();
  REQUIRE(got.size() == 1);
  CHECK(got[0].body == body);
}

TEST_CASE("upstream h2c: connect failure is a 503 UF like an HTTP/1 one") {
  uint16_t dead_port = 0;
  {
    H2Upstream gone;
    dead_port = gone.port();
  }
  GatewayConfig cfg = h2_config(dead_port);
  cfg.routers.at(0).virtual_hosts.at(0).routes.at(0).retries.attempts = 0;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(cfg, 1, hooks);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 503);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs().at(0).flags == "UF");
}

// Below the session: what the multiplexer writes on the socket pair.
TEST_CASE(
    "upstream h2 pair: the response comes back chunked with its trailers as chunked trailers") {
  H2Upstream up;
  up.set_handler([](const H2Request&) {
    H2Reply reply;
    reply.headers.add("content-type", "application/grpc");
    reply.body = "payload";
    Headers t;
    t.add("grpc-status", "0");
    t.add("grpc-message", "ok");
    reply.trailers = t;
    return reply;
  });
  UpstreamConfig config = loopback_upstream("backend", {up.port()});
  config.protocol = UpstreamProtocol::http2;
  auto compiled = compile_upstream(config);
  REQUIRE(compiled.ok());
  CompiledUpstream upstream = std::move(*compiled);
  upstream.state = std::make_shared<ClusterState>("backend");
  asio::io_context io;
  std::function<TimePoint()> no_clock;
  Loop loop(io, no_clock, 1);
  std::string wire;
  Lease::Status status = Lease::Status::cancelled;
  {
    UpstreamContext ctx(loop);
    ConnectionSlot slot(nullptr);
    slot.now = &loop.refresh_now();
    auto exchange = [&]() -> asio::awaitable<void> {
      Lease lease = co_await lease_connection(ctx, slot, upstream, 0);
      status = lease.status;
      if (!lease.conn) co_return;
      CHECK(lease.conn->h2 != nullptr);
      std::string req = "GET /svc/Method HTTP/1.1\r\nHost: backend\r\nte: trailers\r\n\r\n";
      co_await asio::async_write(lease.conn->socket, asio::buffer(req), kNoThrow);
      std::array<char, 4096> buf;
      while (wire.find("\r\n0\r\n") == std::string::npos || !wire.ends_with("\r\n\r\n")) {
        auto [ec, n] = co_await lease.conn->socket.async_read_some(asio::buffer(buf), kNoThrow);
        if (ec || n == 0) break;
        wire.append(buf.data(), n);
      }
      release_connection(ctx, upstream, std::move(lease.conn), true);
      io.stop();
    };
    asio::co_spawn(io, exchange(), asio::detached);
    io.run_for(std::chrono::seconds(5));
  }
  CHECK(status == Lease::Status::ok);
  CHECK(wire.starts_with("HTTP/1.1 200"));
  CHECK(wire.find("transfer-encoding: chunked\r\n") != std::string::npos);
  CHECK(wire.find("\r\n7\r\npayload\r\n") != std::string::npos);
  CHECK(wire.ends_with("\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n"));
  auto got = up.received();
  REQUIRE(got.size() == 1);
  CHECK(got[0].head.headers.get("te") == "trailers");
  CHECK(got[0].head.target == "/svc/Method");
}

TEST_CASE("upstream h2c: a sized response's trailers reach a client that takes trailers") {
  // gRPC servers may send content-length; the status is in the trailers.
  H2Upstream up;
  up.set_handler([](const H2Request&) {
    H2Reply reply;
    reply.headers.add("content-type", "application/grpc");
    reply.headers.add("content-length", "5");
    reply.body = "hello";
    reply.trailers = Headers{};
    reply.trailers->add("grpc-status", "0");
    return reply;
  });
  TestGateway gw(h2_config(up.port()));
  RawClient c(gw.port());
  REQUIRE(
      c.send(make_request("POST", "/svc/M", "example.com",
                          {{"content-type", "application/grpc"}, {"connection", "close"}}, "x")));
  std::string raw = c.read_all_until_close();
  CHECK(raw.find("transfer-encoding: chunked") != std::string::npos);
  CHECK(raw.find("content-length") == std::string::npos);
  CHECK(raw.ends_with("\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n"));
}

}  // namespace upstream_http2_test
