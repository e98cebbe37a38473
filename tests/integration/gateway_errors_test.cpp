// Answers the gateway makes itself, and malformed requests rejected with 400
// and a closed connection while everyone else is still served (issue #2,
// section 3).

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"

namespace gateway_errors_test {

using namespace sluice::test;
using namespace sluice;
using namespace std::chrono_literals;

namespace {

// One request, one response, through a fresh gateway with `config`.
HttpResponse exchange(GatewayConfig config, const std::string& request,
                      std::shared_ptr<RecordingHooks> hooks = nullptr) {
  TestGateway gw(std::move(config), 1, hooks);
  RawClient client(gw.port());
  REQUIRE(client.send(request));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  if (hooks) REQUIRE(hooks->wait_for_logs(1));
  return *response;
}

// `raw` must be answered 400 and the connection closed, without reaching the
// upstream; a fresh connection right after is served normally.
void expect_rejected(const std::string& raw) {
  FakeUpstream upstream("backend");
  TestGateway gw(single_upstream_config(upstream.port()));
  {
    RawClient bad(gw.port(), 2s);
    REQUIRE(bad.send(raw));
    auto response = bad.read_response();
    REQUIRE_MESSAGE(response, bad.error());
    CHECK(response->status == 400);
    CHECK(bad.is_closed(2s));
  }
  CHECK(upstream.request_count() == 0);
  RawClient good(gw.port(), 2s);
  REQUIRE(good.send(make_request("GET", "/")));
  auto response = good.read_response();
  REQUIRE_MESSAGE(response, good.error());
  CHECK(response->status == 200);
  CHECK(response->body == "backend");
}

}  // namespace

TEST_CASE("no matching route answers 404 with flag NR") {
  FakeUpstream upstream;
  Route api = forward_all("backend", "api");
  api.matches.push_back(Matcher{}.path_prefix("/api"));
  auto hooks = std::make_shared<RecordingHooks>();
  auto response = exchange(make_config({api}, {loopback_upstream("backend", {upstream.port()})}),
                           make_request("GET", "/other"), hooks);
  CHECK(response.status == 404);
  CHECK(upstream.request_count() == 0);
  CHECK(hooks->logs().at(0).status == 404);
  CHECK(hooks->logs().at(0).flags == "NR");
}

TEST_CASE("an upstream without endpoints answers 503 no healthy upstream (UH)") {
  auto hooks = std::make_shared<RecordingHooks>();
  auto response = exchange(make_config({forward_all("empty")}, {loopback_upstream("empty", {})}),
                           make_request("GET", "/"), hooks);
  CHECK(response.status == 503);
  CHECK(response.body == "no healthy upstream");
  CHECK(hooks->logs().at(0).flags == "UH");
}

TEST_CASE("an endpoint refusing connections answers 503 (UF)") {
  LoopbackPort refusing;  // bound, not listening: connects are refused
  auto hooks = std::make_shared<RecordingHooks>();
  auto response =
      exchange(single_upstream_config(refusing.port()), make_request("GET", "/"), hooks);
  CHECK(response.status == 503);
  CHECK(response.body.rfind("upstream connect error or disconnect/reset before headers", 0) == 0);
  CHECK(hooks->logs().at(0).flags.find("UF") != std::string::npos);
}

TEST_CASE("an upstream reset before the response answers 502 (UC)") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received&) {
    Reply reply;
    reply.reset_before_response = true;
    return reply;
  });
  auto hooks = std::make_shared<RecordingHooks>();
  auto response =
      exchange(single_upstream_config(upstream.port()), make_request("GET", "/"), hooks);
  CHECK(response.status == 502);
  CHECK(upstream.request_count() >= 1);
  CHECK(hooks->logs().at(0).flags.find("UC") != std::string::npos);
}

TEST_CASE("a malformed request line answers 400 and closes") {
  expect_rejected("THIS IS NOT HTTP\r\n\r\n");
}

TEST_CASE("a header block over the default 60 KiB answers 431") {
  FakeUpstream upstream;
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port(), 3s);
  REQUIRE(client.send(
      make_request("GET", "/", "example.com", {{"X-Big", std::string(61 * 1024, 'a')}})));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  CHECK(response->status == 431);
  CHECK(client.is_closed(2s));
  CHECK(upstream.request_count() == 0);
}

TEST_CASE("more than the default 100 headers answers 431") {
  FakeUpstream upstream;
  TestGateway gw(single_upstream_config(upstream.port()));
  HeaderList many;
  for (int i = 0; i < 101; ++i) many.emplace_back("X-H" + std::to_string(i), "v");
  RawClient client(gw.port(), 3s);
  REQUIRE(client.send(make_request("GET", "/", "example.com", many)));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  CHECK(response->status == 431);
  CHECK(upstream.request_count() == 0);
}

TEST_CASE("lowered header limits answer 431 above them and serve below them") {
  FakeUpstream upstream;
  auto config = single_upstream_config(upstream.port());
  config.limits.max_request_header_bytes = 1024;
  config.limits.max_request_headers = 10;
  TestGateway gw(std::move(config));
  {
    RawClient small(gw.port(), 3s);
    REQUIRE(
        small.send(make_request("GET", "/", "example.com", {{"X-Pad", std::string(500, 'a')}})));
    auto response = small.read_response();
    REQUIRE_MESSAGE(response, small.error());
    CHECK(response->status == 200);
  }
  {
    RawClient large(gw.port(), 3s);
    REQUIRE(
        large.send(make_request("GET", "/", "example.com", {{"X-Pad", std::string(2000, 'a')}})));
    auto response = large.read_response();
    REQUIRE_MESSAGE(response, large.error());
    CHECK(response->status == 431);
  }
  {
    HeaderList eleven;
    for (int i = 0; i < 11; ++i) eleven.emplace_back("X-H" + std::to_string(i), "v");
    RawClient counted(gw.port(), 3s);
    REQUIRE(counted.send(make_request("GET", "/", "example.com", eleven)));
    auto response = counted.read_response();
    REQUIRE_MESSAGE(response, counted.error());
    CHECK(response->status == 431);
  }
  CHECK(upstream.request_count() == 1);
}

TEST_CASE("rejected: conflicting Content-Length") {
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
      "hello!");
}

TEST_CASE("rejected: Content-Length together with Transfer-Encoding") {
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n");
}

TEST_CASE("rejected: Transfer-Encoding not ending in chunked") {
  expect_rejected("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc");
}

TEST_CASE("rejected: invalid chunk size") {
  expect_rejected(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
}

TEST_CASE("rejected: bare CR in a header") {
  expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nX-Bad: one\rtwo\r\n\r\n");
}

TEST_CASE("rejected: NUL in a header value") {
  using namespace std::string_literals;
  expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nX-Bad: one\0two\r\n\r\n"s);
}

TEST_CASE("rejected: whitespace before the colon") {
  expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nX-Bad : value\r\n\r\n");
}

TEST_CASE("rejected: HTTP/1.1 without Host") {
  expect_rejected("GET / HTTP/1.1\r\nX-Other: a\r\n\r\n");
}

TEST_CASE("rejected: repeated Host") {
  expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
}

TEST_CASE("rejected: fragment in the target") {
  expect_rejected("GET /page#section HTTP/1.1\r\nHost: a\r\n\r\n");
}

}  // namespace gateway_errors_test
