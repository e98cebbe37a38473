// gRPC through real sockets (issue 14 §2): trailers relayed both ways
// (HTTP/1.1 chunked and the h2c adapter), python3-grpcio end to end,
// grpc-timeout against the route timeout on a ManualClock, every reply the
// gateway makes itself as a gRPC status, retries on a trailers-only head,
// gRPC-Web (binary and text) with a raw HTTP/1.1 client, and the
// grpc_response_status metric label. The upstream is the in-process HTTP/1.1
// FakeUpstream answering gRPC-shaped chunked responses with trailers.

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "http/grpc.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/h2_client.hpp"
#include "support/jwt_signer.hpp"
#include "support/manual_clock.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace grpc_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// A gRPC length-prefixed message (not compressed).
std::string frame(std::string_view message) {
  std::string out(5, '\0');
  auto n = static_cast<uint32_t>(message.size());
  for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<char>((n >> (8 * (3 - i))) & 0xff);
  out += message;
  return out;
}

// The gRPC upstream: echoes the request's message as "pong:<it>", with
// grpc-status 0 and x-trailer in the chunked trailers.
void grpc_echo(FakeUpstream& up) {
  up.set_handler([](const Received& r) {
    Reply reply;
    reply.framing = Reply::Framing::chunked;
    reply.headers = {{"content-type", "application/grpc"}};
    std::string message = r.body.size() >= 5 ? r.body.substr(5) : std::string();
    reply.body = frame("pong:" + message);
    reply.trailers = {{"grpc-status", "0"}, {"grpc-message", "fine"}, {"x-trailer", "t"}};
    return reply;
  });
}

HeaderList grpc_headers(HeaderList extra = {}) {
  HeaderList h = {{"content-type", "application/grpc"}, {"te", "trailers"}};
  for (auto& e : extra) h.push_back(std::move(e));
  return h;
}

// One gRPC call as HTTP/1.1 with a Content-Length body; the gateway's reply.
std::optional<HttpResponse> call(uint16_t port, std::string_view path, HeaderList headers = {},
                                 std::string_view message = "ping") {
  RawClient c(port);
  c.send(
      make_request("POST", path, "example.com", grpc_headers(std::move(headers)), frame(message)));
  return c.read_response();
}

// What a gRPC client sees of a gateway's own reply.
struct GrpcReply {
  uint16_t http = 0;
  std::string content_type;
  std::string status;
  std::string message;
  std::string body;
};
GrpcReply grpc_reply(const std::optional<HttpResponse>& r) {
  if (!r) return {};
  return {r->status, r->header("content-type").value_or(""), r->header("grpc-status").value_or(""),
          r->header("grpc-message").value_or(""), r->body};
}

const RequestSeries* grpc_series(const Stats& s, std::string_view grpc_status) {
  for (const auto& r : s.requests)
    if (r.request_protocol == "grpc" && r.grpc_response_status == grpc_status) return &r;
  return nullptr;
}

ProcessResult python(const std::vector<std::string>& args) {
  return run_process("/usr/bin/python3", args);
}

// A unary call with python3-grpcio (raw bytes, no protoc): prints the
// response, the x-trailer trailing metadata and the code, or the error.
constexpr std::string_view kGrpcClient = R"(
import sys, grpc
port, path = sys.argv[1], sys.argv[2]
with grpc.insecure_channel('127.0.0.1:' + port) as ch:
    rpc = ch.unary_unary(path)
    try:
        resp, c = rpc.with_call(b'hello', timeout=10, metadata=(('x-client', '1'),))
        md = dict(c.trailing_metadata())
        print(resp.decode(), md.get('x-trailer'), c.code().name)
    except grpc.RpcError as e:
        print('error', e.code().name, e.details())
)";

}  // namespace

TEST_CASE("grpc: response trailers reach an HTTP/1.1 client in the last chunk, never the head") {
  FakeUpstream up;
  up.set_handler([](const Received&) {
    Reply reply;
    reply.framing = Reply::Framing::chunked;
    reply.headers = {{"content-type", "application/grpc"}};
    reply.body = frame("pong");
    // Names that frame, route or hop may not travel as trailers.
    reply.trailers = {{"grpc-status", "0"},         {"x-trailer", "t"},
                      {"content-length", "999"},    {"transfer-encoding", "chunked"},
                      {"connection", "keep-alive"}, {"host", "evil"}};
    return reply;
  });
  TestGateway gw(single_upstream_config(up.port()));
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("POST", "/svc/M", "example.com",
                              grpc_headers({{"connection", "close"}}), frame("ping"))));
  std::string raw = c.read_all_until_close();
  size_t head_end = raw.find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  std::string head = raw.substr(0, head_end);
  CHECK(head.find("transfer-encoding: chunked") != std::string::npos);
  CHECK(head.find("grpc-status") == std::string::npos);
  CHECK(head.find("x-trailer") == std::string::npos);
  std::string tail = "\r\n0\r\ngrpc-status: 0\r\nx-trailer: t\r\n\r\n";
  CHECK(raw.ends_with(tail));
  CHECK(raw.find("evil") == std::string::npos);
  CHECK(raw.find("999") == std::string::npos);
}

TEST_CASE("grpc: a chunked HTTP/1.1 request's trailers reach the upstream, never its head") {
  FakeUpstream up;
  grpc_echo(up);
  TestGateway gw(single_upstream_config(up.port()));
  RawClient c(gw.port());
  std::string body = frame("ping");
  std::string req = fmt::format(
      "POST /svc/M HTTP/1.1\r\nHost: example.com\r\ncontent-type: application/grpc\r\n"
      "transfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\nx-checksum: abc\r\n"
      "x-injected: 1\r\ncontent-length: 5\r\nhost: evil\r\nauthorization: Bearer x\r\n\r\n",
      body.size(), body);
  REQUIRE(c.send(req));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  REQUIRE(up.wait_for_requests(1));
  Received got = *up.last_request();
  CHECK(got.chunked);
  CHECK(got.body == body);
  CHECK(find_header(got.trailers, "x-checksum") == "abc");
  CHECK(find_header(got.trailers, "x-injected") == "1");
  // Never folded into the head; names that frame, route or authenticate dropped.
  CHECK_FALSE(got.header("x-checksum"));
  CHECK_FALSE(got.header("x-injected"));
  CHECK_FALSE(got.header("authorization"));
  CHECK(got.header("host") == "example.com");
  CHECK_FALSE(find_header(got.trailers, "content-length"));
  CHECK_FALSE(find_header(got.trailers, "host"));
  CHECK_FALSE(find_header(got.trailers, "authorization"));
}

TEST_CASE("grpc: an h2c client's request trailers reach a chunked upstream") {
  FakeUpstream up;
  grpc_echo(up);
  TestGateway gw(single_upstream_config(up.port()));
  RawClient c(gw.port());
  std::string bytes = h2::client_start();
  bytes += h2::frame(h2::kHeaders, h2::kEndHeaders, 1,
                     h2::request_block("POST", "/svc/M", "example.com",
                                       {{"content-type", "application/grpc"}, {"te", "trailers"}}));
  bytes += h2::frame(h2::kData, 0, 1, frame("ping"));
  bytes += h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 1,
                     h2::literal("x-req-trailer", "v") + h2::literal("x-more", "w"));
  REQUIRE(c.send(bytes));
  REQUIRE(up.wait_for_requests(1));
  Received got = *up.last_request();
  CHECK(got.chunked);
  CHECK(got.body == frame("ping"));
  CHECK(find_header(got.trailers, "x-req-trailer") == "v");
  CHECK(find_header(got.trailers, "x-more") == "w");
  CHECK_FALSE(got.header("x-req-trailer"));
}

TEST_CASE("grpc: python3-grpcio unary call over h2c, trailers and deadline relayed") {
  FakeUpstream up;
  grpc_echo(up);
  Route route = forward_all("backend");
  route.matches = {Matcher{.uri = StringMatch::prefix("/echo.")}};
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}));
  std::string port = std::to_string(gw.port());
  auto ok = python({"-c", std::string(kGrpcClient), port, "/echo.Echo/Say"});
  REQUIRE_MESSAGE(ok.exit_code == 0, ok.err);
  CHECK(ok.out == "pong:hello t OK\n");
  REQUIRE(up.wait_for_requests(1));
  Received got = *up.last_request();
  CHECK(got.target == "/echo.Echo/Say");
  CHECK(got.header("x-client") == "1");
  CHECK(got.header("content-type") == "application/grpc");
  // The client's 10 s deadline, as the gateway passed it on (the route has
  // no timeout to cap it). grpc core encodes what remains rounded up, at
  // times past 10 s (10100m was seen), so the bound allows for that.
  auto deadline = sluice::http::parse_grpc_timeout(got.header("grpc-timeout").value_or(""));
  REQUIRE(deadline);
  CHECK(*deadline > 5s);
  CHECK(*deadline <= 11s);
  // No route: the gateway's 404 is UNIMPLEMENTED to a gRPC client.
  auto missing = python({"-c", std::string(kGrpcClient), port, "/other.Svc/M"});
  REQUIRE_MESSAGE(missing.exit_code == 0, missing.err);
  CHECK(missing.out == "error UNIMPLEMENTED route_not_found\n");
  CHECK(up.request_count() == 1);
}

TEST_CASE("grpc: over h2c a gateway reply is trailers-only, relayed trailers a HEADERS frame") {
  FakeUpstream up;
  grpc_echo(up);
  Route route = forward_all("backend");
  route.matches = {Matcher{.uri = StringMatch::prefix("/echo.")}};
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}));
  h2::Socket sock(gw.port());
  REQUIRE(sock.connected());
  h2::Client client;
  HeaderList grpc = {{"content-type", "application/grpc"}, {"te", "trailers"}};
  int32_t missing = client.request("POST", "/nowhere", "example.com", grpc, frame("x"));
  int32_t echo = client.request("POST", "/echo.E/M", "example.com", grpc, frame("ping"));
  auto done = [&] {
    for (int32_t id : {missing, echo}) {
      auto it = client.responses().find(id);
      if (it == client.responses().end() || !it->second.done) return false;
    }
    return true;
  };
  REQUIRE(sock.exchange(client, done));
  const auto& m = client.responses().at(missing);
  CHECK(m.status == 200);
  CHECK(m.headers.get("grpc-status") == "12");
  CHECK(m.headers.get("content-type") == "application/grpc");
  CHECK(m.body.empty());
  CHECK(m.trailers.empty());  // trailers-only: all of it in the one HEADERS
  const auto& e = client.responses().at(echo);
  CHECK(e.status == 200);
  CHECK(e.body == frame("pong:ping"));
  CHECK_FALSE(e.headers.get("grpc-status"));
  CHECK(e.trailers.get("grpc-status") == "0");
  CHECK(e.trailers.get("x-trailer") == "t");
  CHECK_FALSE(e.trailers.get("transfer-encoding"));
  // curl too: its header output ends with the trailers.
  auto t = run_curl({"--http2-prior-knowledge", "-sS", "-D", "-", "-o", "/dev/null", "-H",
                     "content-type: application/grpc", "-H", "te: trailers", "--data-binary", "x",
                     fmt::format("http://127.0.0.1:{}/echo.E/M", gw.port())});
  REQUIRE_MESSAGE(t.exit_code == 0, t.err);
  CHECK(t.out.starts_with("HTTP/2 200"));
  CHECK(t.out.find("x-trailer: t") != std::string::npos);
  CHECK(t.out.find("grpc-status: 0") != std::string::npos);
}

TEST_CASE("grpc: the gateway's own replies are gRPC statuses (Envoy's mapping)") {
  FakeUpstream up;
  grpc_echo(up);

  SUBCASE("no route: 404 -> 12 UNIMPLEMENTED") {
    Route route = forward_all("backend");
    route.matches = {Matcher{.uri = StringMatch::prefix("/echo.")}};
    TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}));
    auto g = grpc_reply(call(gw.port(), "/other/M"));
    CHECK(g.http == 200);
    CHECK(g.content_type == "application/grpc");
    CHECK(g.status == "12");
    CHECK(g.message == "route_not_found");
    CHECK(g.body.empty());
  }
  SUBCASE("no healthy upstream: 503 UH -> 14 UNAVAILABLE") {
    auto cfg = single_upstream_config(up.port());
    cfg.upstreams[0].endpoints.clear();
    TestGateway gw(cfg);
    auto g = grpc_reply(call(gw.port(), "/svc/M"));
    CHECK(g.http == 200);
    CHECK(g.status == "14");
    CHECK(g.message == "no healthy upstream");
  }
  SUBCASE("connect failure: 503 UF -> 14, the message percent-encoded") {
    uint16_t closed = 0;
    {
      FakeUpstream gone;
      closed = gone.port();
    }
    auto cfg = single_upstream_config(closed);
    cfg.routers[0].virtual_hosts[0].routes[0].retries.attempts = 0;
    TestGateway gw(cfg);
    auto g = grpc_reply(call(gw.port(), "/svc/M"));
    CHECK(g.http == 200);
    CHECK(g.status == "14");
    CHECK(g.message.starts_with("upstream connect error or disconnect/reset before headers"));
    CHECK(g.message.find(' ') != std::string::npos);  // printable ASCII stays as is
  }
  SUBCASE("overflow: 503 UO -> 14") {
    up.set_handler([](const Received&) { return Reply{.hold = true}; });
    auto cfg = single_upstream_config(up.port());
    cfg.upstreams[0].pool.max_connections = 1;
    cfg.upstreams[0].pool.max_pending_requests = 0;
    cfg.routers[0].virtual_hosts[0].routes[0].retries.attempts = 0;
    TestGateway gw(cfg);
    RawClient first(gw.port());
    REQUIRE(
        first.send(make_request("POST", "/svc/held", "example.com", grpc_headers(), frame("x"))));
    REQUIRE(wait_until([&] { return up.held() == 1; }));
    auto g = grpc_reply(call(gw.port(), "/svc/M"));
    up.release();
    CHECK(g.http == 200);
    CHECK(g.status == "14");
    CHECK(g.message.ends_with("overflow"));
  }
  SUBCASE("upstream timeout: 504 UT -> 4 DEADLINE_EXCEEDED") {
    up.set_handler([](const Received&) { return Reply{.hold = true}; });
    Route route = forward_all("backend");
    route.timeout = 3s;
    ManualClock clock;
    TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}), 1, nullptr,
                   &clock);
    RawClient c(gw.port());
    REQUIRE(c.send(make_request("POST", "/svc/M", "example.com", grpc_headers(), frame("x"))));
    REQUIRE(wait_until([&] { return up.held() == 1; }));
    clock.settle();
    clock.advance(3s);
    auto g = grpc_reply(c.read_response());
    up.release();
    CHECK(g.http == 200);
    CHECK(g.status == "4");
    CHECK(g.message == "upstream request timeout");
  }
  SUBCASE("rate limited: 429 -> 14") {
    auto cfg = single_upstream_config(up.port());
    LocalRateLimit l;
    l.stat_prefix = "http_local_rate_limiter";
    l.token_bucket = TokenBucket{1, 1, 60s};
    l.filter_enabled = FractionalPercent::percent(100);
    l.filter_enforced = FractionalPercent::percent(100);
    cfg.rate_limits.local = l;
    ManualClock clock;
    TestGateway gw(cfg, 1, nullptr, &clock);
    CHECK(grpc_reply(call(gw.port(), "/svc/M")).body == frame("pong:ping"));  // proxied
    auto g = grpc_reply(call(gw.port(), "/svc/M"));
    CHECK(g.http == 200);
    CHECK(g.status == "14");
    CHECK(g.message == "local_rate_limited");
  }
  SUBCASE("RBAC denial: 403 -> 7, JWT failure: 401 -> 16") {
    JwtSigner signer;
    auto cfg = single_upstream_config(up.port());
    JwtProvider p;
    p.issuer = "issuer@example.com";
    p.jwks = signer.jwks();
    cfg.security.jwt_providers.push_back(p);
    AuthorizationPolicy policy;
    policy.name = "require-jwt";
    policy.ns = "istio-system";
    policy.action = AuthzAction::allow;
    AuthzRule rule;
    AuthzSource source;
    source.request_principals = {"*"};
    rule.from.push_back(source);
    policy.rules.push_back(rule);
    cfg.security.authorization.push_back(policy);
    TestGateway gw(cfg);
    auto denied = grpc_reply(call(gw.port(), "/svc/M"));
    CHECK(denied.http == 200);
    CHECK(denied.status == "7");
    CHECK(denied.message == "RBAC: access denied");
    auto bad = grpc_reply(call(gw.port(), "/svc/M", {{"authorization", "Bearer not.a.jwt"}}));
    CHECK(bad.http == 200);
    CHECK(bad.status == "16");
    CHECK_FALSE(bad.message.empty());
  }
  SUBCASE("ext_authz denial: the provider's 403 -> 7") {
    FakeUpstream authz("authz");
    authz.set_handler([](const Received&) {
      Reply r;
      r.status = 403;
      r.body = "denied by ext_authz";
      return r;
    });
    auto cfg = single_upstream_config(up.port());
    cfg.upstreams.push_back(loopback_upstream("ext-authz", {authz.port()}));
    ExtAuthzHttpProvider p;
    p.name = "authz";
    p.service = "ext-authz";
    cfg.security.ext_authz_providers.push_back(p);
    AuthorizationPolicy policy;
    policy.name = "ext-authz";
    policy.ns = "foo";
    policy.action = AuthzAction::custom;
    policy.provider = "authz";
    policy.rules.push_back(AuthzRule{});
    cfg.security.authorization.push_back(policy);
    TestGateway gw(cfg);
    auto g = grpc_reply(call(gw.port(), "/svc/M"));
    CHECK(g.http == 200);
    CHECK(g.status == "7");
    CHECK(g.message == "denied by ext_authz");
    CHECK(up.request_count() == 0);
  }
  SUBCASE("fault aborts: an HTTP status is mapped, a gRPC status kept") {
    Route http_abort = forward_all("backend", "http");
    http_abort.matches = {Matcher{.uri = StringMatch::prefix("/http")}};
    http_abort.fault = Fault{.abort = FaultAbort{.http_status = 503, .percentage = 100}};
    Route grpc_abort = forward_all("backend", "grpc");
    grpc_abort.fault = Fault{.abort = FaultAbort{.grpc_status = 8u, .percentage = 100}};
    TestGateway gw(
        make_config({http_abort, grpc_abort}, {loopback_upstream("backend", {up.port()})}));
    auto h = grpc_reply(call(gw.port(), "/http/M"));
    CHECK(h.http == 200);
    CHECK(h.status == "14");
    CHECK(h.message == "fault filter abort");
    auto g = grpc_reply(call(gw.port(), "/svc/M"));
    CHECK(g.http == 200);
    CHECK(g.status == "8");
    CHECK(g.content_type == "application/grpc");
    CHECK(up.request_count() == 0);
  }
  SUBCASE("malformed request: 400 -> 13 INTERNAL") {
    TestGateway gw(single_upstream_config(up.port()));
    RawClient c(gw.port());
    // Chunked framing already known to be broken: refused before routing.
    REQUIRE(
        c.send("POST /svc/M HTTP/1.1\r\nHost: example.com\r\ncontent-type: application/grpc\r\n"
               "transfer-encoding: chunked\r\n\r\nzz\r\n"));
    auto g = grpc_reply(c.read_response());
    CHECK(g.http == 200);
    CHECK(g.status == "13");
    CHECK(g.message == "http1.codec_error");
    CHECK(up.request_count() == 0);
  }
  SUBCASE("a plain HTTP client still gets HTTP statuses") {
    Route route = forward_all("backend");
    route.matches = {Matcher{.uri = StringMatch::prefix("/echo.")}};
    TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}));
    RawClient c(gw.port());
    REQUIRE(c.send(make_request("GET", "/other")));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK_FALSE(r->header("grpc-status"));
  }
}

TEST_CASE("grpc: grpc-timeout is the deadline, capped by the route timeout") {
  FakeUpstream up;
  up.set_handler([](const Received&) { return Reply{.hold = true}; });
  Route route = forward_all("backend");
  route.timeout = 10s;
  ManualClock clock;
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}), 1, nullptr,
                 &clock);

  SUBCASE("a shorter grpc-timeout fires first, and the upstream is told it") {
    RawClient c(gw.port());
    REQUIRE(c.send(make_request("POST", "/svc/M", "example.com",
                                grpc_headers({{"grpc-timeout", "2S"}}), frame("x"))));
    REQUIRE(wait_until([&] { return up.held() == 1; }));
    CHECK(up.last_request()->header("grpc-timeout") == "2000m");
    clock.settle();
    clock.advance(2s - 1ms);
    CHECK(gw.gateway().upstream("backend").connections == 1);
    clock.advance(1ms);
    auto g = grpc_reply(c.read_response());
    CHECK(g.status == "4");
  }
  SUBCASE("a longer one is capped by the route timeout") {
    RawClient c(gw.port());
    REQUIRE(c.send(make_request("POST", "/svc/M", "example.com",
                                grpc_headers({{"grpc-timeout", "1H"}}), frame("x"))));
    REQUIRE(wait_until([&] { return up.held() == 1; }));
    CHECK(up.last_request()->header("grpc-timeout") == "10000m");
    clock.settle();
    clock.advance(10s - 1ms);
    CHECK(gw.gateway().upstream("backend").connections == 1);
    clock.advance(1ms);
    CHECK(grpc_reply(c.read_response()).status == "4");
  }
  SUBCASE("garbage and overflowing values are ignored: the route timeout applies") {
    for (const char* bad : {"123456789S", "-5S", "5x", "S", "99999999999999999999H"}) {
      CAPTURE(bad);
      RawClient c(gw.port());
      size_t before = up.request_count();
      REQUIRE(c.send(make_request("POST", "/svc/M", "example.com",
                                  grpc_headers({{"grpc-timeout", bad}}), frame("x"))));
      REQUIRE(up.wait_for_requests(before + 1));
      CHECK(up.last_request()->header("grpc-timeout") == "10000m");
      clock.settle();
      clock.advance(10s - 1ms);
      CHECK(gw.gateway().upstream("backend").connections >= 1);
      clock.advance(1ms);
      CHECK(grpc_reply(c.read_response()).status == "4");
    }
  }
  up.release();
}

TEST_CASE("grpc: retryOn gRPC codes retry a trailers-only head, never a status in trailers") {
  for (uint32_t code : {1u, 4u, 8u, 13u, 14u}) {
    CAPTURE(code);
    FakeUpstream up;
    std::atomic<int> n{0};
    up.set_handler([&](const Received&) {
      Reply reply;
      reply.headers = {{"content-type", "application/grpc"}};
      if (n++ == 0) {
        reply.headers.emplace_back("grpc-status", std::to_string(code));  // trailers-only
        return reply;
      }
      reply.framing = Reply::Framing::chunked;
      reply.body = frame("ok");
      reply.trailers = {{"grpc-status", "0"}};
      return reply;
    });
    Route route = forward_all("backend");
    route.retries.attempts = 2;
    route.retries.retry_on = "cancelled,deadline-exceeded,resource-exhausted,internal,unavailable";
    route.retries.backoff_base = 1ms;
    TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}));
    auto r = call(gw.port(), "/svc/M");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == frame("ok"));
    CHECK(up.request_count() == 2);
  }
  // A code the policy does not name, and a retriable code in the trailers:
  // the answer stands.
  FakeUpstream up;
  std::atomic<int> n{0};
  up.set_handler([&](const Received&) {
    Reply reply;
    reply.headers = {{"content-type", "application/grpc"}};
    reply.framing = Reply::Framing::chunked;
    reply.body = frame("x");
    reply.trailers = {{"grpc-status", "14"}};
    if (n++ == 0) {
      reply.framing = Reply::Framing::content_length;
      reply.body.clear();
      reply.trailers.clear();
      reply.headers.emplace_back("grpc-status", "5");
    }
    return reply;
  });
  Route route = forward_all("backend");
  route.retries.attempts = 2;
  route.retries.retry_on = "unavailable";
  route.retries.backoff_base = 1ms;
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}));
  auto first = call(gw.port(), "/svc/M");
  REQUIRE(first);
  CHECK(first->header("grpc-status") == "5");
  CHECK(up.request_count() == 1);
  auto second = call(gw.port(), "/svc/M");
  REQUIRE(second);
  CHECK(up.request_count() == 2);
}

TEST_CASE("grpc-web: binary requests go upstream as gRPC, trailers come back as a 0x80 frame") {
  FakeUpstream up;
  grpc_echo(up);
  TestGateway gw(single_upstream_config(up.port()));
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("POST", "/svc/M", "example.com",
                              {{"content-type", "application/grpc-web+proto"},
                               {"x-grpc-web", "1"},
                               {"connection", "close"}},
                              frame("ping"))));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  CHECK(r->header("content-type") == "application/grpc-web+proto");
  CHECK_FALSE(r->header("grpc-status"));
  std::string trailers = "grpc-status:0\r\ngrpc-message:fine\r\nx-trailer:t\r\n";
  std::string expect = frame("pong:ping") + std::string(1, '\x80') +
                       frame(trailers).substr(1);  // same length prefix, flag 0x80
  CHECK(r->body == expect);
  REQUIRE(up.wait_for_requests(1));
  Received got = *up.last_request();
  CHECK(got.header("content-type") == "application/grpc+proto");
  CHECK(got.body == frame("ping"));
  CHECK(got.header("content-length") == std::to_string(frame("ping").size()));
}

TEST_CASE("grpc-web: text mode is base64 both ways, garbage refused, frame lengths not trusted") {
  FakeUpstream up;
  grpc_echo(up);
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(single_upstream_config(up.port()), 1, hooks);
  auto b64 = [](std::string_view bytes) {
    sluice::http::Base64Encoder e;
    std::string out;
    e.feed(bytes, out);
    e.finish(out);
    return out;
  };
  {
    // Two messages each encoded by itself (padding mid-stream), as clients do.
    RawClient c(gw.port());
    std::string body = b64(frame("pi")) + b64(frame("ng"));
    REQUIRE(c.send(make_request("POST", "/svc/M", "example.com",
                                {{"content-type", "application/grpc-web-text"}}, body)));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->header("content-type") == "application/grpc-web-text+proto");
    REQUIRE(up.wait_for_requests(1));
    Received got = *up.last_request();
    CHECK(got.header("content-type") == "application/grpc");
    CHECK(got.chunked);  // decoding changes the length
    CHECK(got.body == frame("pi") + frame("ng"));
    sluice::http::Base64Decoder d;
    std::string decoded;
    REQUIRE(d.feed(r->body, decoded));
    CHECK(d.finish());
    CHECK(decoded.starts_with(frame("pong:pi" + frame("ng"))));
    CHECK(decoded.find("\x80") != std::string::npos);
    CHECK(decoded.ends_with("x-trailer:t\r\n"));
  }
  {
    // Not base64: INTERNAL, nothing more of it upstream.
    RawClient c(gw.port());
    REQUIRE(c.send(make_request("POST", "/svc/M", "example.com",
                                {{"content-type", "application/grpc-web-text"}}, "AAAA*!==")));
    auto g = grpc_reply(c.read_response());
    CHECK(g.http == 200);
    CHECK(g.content_type == "application/grpc-web-text+proto");
    CHECK(g.status == "13");
  }
  {
    // A frame claiming 4 GiB with five bytes behind it: passed through as
    // bytes; the gateway neither waits for nor buffers the claimed length.
    RawClient c(gw.port());
    std::string lie = std::string("\0\xff\xff\xff\xff", 5) + "12345";
    size_t before = up.request_count();
    REQUIRE(c.send(make_request("POST", "/svc/M", "example.com",
                                {{"content-type", "application/grpc-web"}}, lie)));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r, c.error());
    REQUIRE(up.wait_for_requests(before + 1));
    CHECK(up.last_request()->body == lie);
  }
}

TEST_CASE("grpc: request_protocol and grpc_response_status labels") {
  FakeUpstream up;
  grpc_echo(up);
  Route route = forward_all("backend");
  route.matches = {Matcher{.uri = StringMatch::prefix("/echo.")}};
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}));
  CHECK(grpc_reply(call(gw.port(), "/echo.E/M")).http == 200);  // status 0 in trailers
  CHECK(grpc_reply(call(gw.port(), "/nowhere")).status == "12");
  RawClient plain(gw.port());
  REQUIRE(plain.send(make_request("GET", "/echo.plain")));
  REQUIRE(plain.read_response());
  Stats s;
  REQUIRE(wait_until([&] {
    s = gw.gateway().stats();
    uint64_t n = 0;
    for (const auto& r : s.requests) n += r.requests;
    return n >= 3;
  }));
  const RequestSeries* ok = grpc_series(s, "0");
  REQUIRE(ok);
  CHECK(ok->requests == 1);
  CHECK(ok->response_code == 200);
  const RequestSeries* nr = grpc_series(s, "12");
  REQUIRE(nr);
  CHECK(nr->response_code == 200);
  bool plain_seen = false;
  for (const auto& r : s.requests)
    if (r.request_protocol == "http") {
      plain_seen = true;
      CHECK(r.grpc_response_status.empty());
    }
  CHECK(plain_seen);
}

TEST_CASE("grpc: trailers past the limits end the exchange instead of passing on") {
  FakeUpstream up;
  up.set_handler([](const Received&) {
    Reply reply;
    reply.framing = Reply::Framing::chunked;
    reply.headers = {{"content-type", "application/grpc"}};
    reply.body = frame("pong");
    for (int i = 0; i < 101; ++i) reply.trailers.emplace_back("x-t" + std::to_string(i), "v");
    return reply;
  });
  TestGateway gw(single_upstream_config(up.port()));
  {
    // 101 trailer fields from the upstream (limit 100): the client never
    // gets a last chunk, so it cannot take the response for complete.
    RawClient c(gw.port());
    REQUIRE(c.send(make_request("POST", "/svc/M", "example.com", grpc_headers(), frame("ping"))));
    std::string raw = c.read_all_until_close();
    CHECK(raw.starts_with("HTTP/1.1 200"));
    CHECK(raw.find("\r\n0\r\n") == std::string::npos);
    CHECK(raw.find("x-t0") == std::string::npos);
  }
  {
    // 101 trailer fields from the client: a gRPC error, none of them upstream.
    RawClient c(gw.port());
    std::string body = frame("ping");
    std::string req = fmt::format(
        "POST /svc/M HTTP/1.1\r\nHost: example.com\r\ncontent-type: application/grpc\r\n"
        "transfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n",
        body.size(), body);
    for (int i = 0; i < 101; ++i) req += fmt::format("x-c{}: v\r\n", i);
    req += "\r\n";
    size_t before = up.request_count();
    REQUIRE(c.send(req));
    auto g = grpc_reply(c.read_response());
    CHECK(g.http == 200);
    CHECK(g.status == "13");
    for (const auto& r : up.requests()) CHECK(r.trailers.empty());
    CHECK(up.request_count() <= before + 1);
  }
}

TEST_CASE("grpc: the access log's GRPC_STATUS is the status the client saw") {
  FakeUpstream up;
  grpc_echo(up);
  std::string tmpl = "/tmp/sluice-grpc-log-XXXXXX";
  std::string dir = ::mkdtemp(tmpl.data());
  std::string path = dir + "/access.log";
  Route route = forward_all("backend");
  route.matches = {Matcher{.uri = StringMatch::prefix("/echo.")}};
  GatewayConfig cfg = make_config({route}, {loopback_upstream("backend", {up.port()})});
  AccessLogConfig log;
  log.path = path;
  log.format = "%REQ(:PATH)% %RESPONSE_CODE% %GRPC_STATUS% %GRPC_STATUS_NUMBER%\n";
  cfg.telemetry.access_logs.push_back(log);
  cfg.telemetry.access_log_flush_interval = {};
  {
    TestGateway gw(std::move(cfg));
    CHECK(grpc_reply(call(gw.port(), "/echo.E/M")).http == 200);    // the upstream's trailers: 0
    CHECK(grpc_reply(call(gw.port(), "/other/M")).status == "12");  // the gateway's reply
    RawClient plain(gw.port());
    REQUIRE(plain.send(make_request("GET", "/other/x")));
    REQUIRE(plain.read_response());
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str() ==
        "/echo.E/M 200 Ok 0\n"
        "/other/M 200 Unimplemented 12\n"
        "/other/x 404 - -\n");
  std::filesystem::remove_all(dir);
}

}  // namespace grpc_test
