// Header handling at the proxy hop: hop-by-hop removal, re-framing,
// x-forwarded-*, x-request-id and Host (issue #2, section 3).

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"

namespace headers_test {

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// Sends one request through a fresh gateway and returns what the upstream saw.
Received forward_one(FakeUpstream& upstream, const std::string& request) {
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port());
  REQUIRE(client.send(request));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  CHECK(response->status == 200);
  REQUIRE(upstream.wait_for_requests(1));
  return *upstream.last_request();
}

bool looks_like_uuid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

std::string without_spaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

}  // namespace

TEST_CASE("hop-by-hop headers are removed before the upstream") {
  FakeUpstream upstream;
  auto r = forward_one(upstream, make_request("GET", "/", "example.com",
                                              {{"Connection", "keep-alive, X-Custom-Hop"},
                                               {"X-Custom-Hop", "secret"},
                                               {"Keep-Alive", "timeout=5"},
                                               {"Proxy-Connection", "keep-alive"},
                                               {"TE", "trailers"},
                                               {"Trailer", "X-Checksum"},
                                               {"Upgrade", "h2c"},
                                               {"X-End-To-End", "kept"}}));
  CHECK(r.header_count("x-custom-hop") == 0);
  CHECK(r.header_count("keep-alive") == 0);
  CHECK(r.header_count("proxy-connection") == 0);
  CHECK(r.header_count("te") == 0);
  CHECK(r.header_count("trailer") == 0);
  CHECK(r.header_count("upgrade") == 0);
  // The gateway may say something about its own hop, never the client's.
  if (auto connection = r.header("connection")) {
    std::string lowered = *connection;
    std::transform(lowered.begin(), lowered.end(), lowered.begin(), ::tolower);
    CHECK(lowered.find("x-custom-hop") == std::string::npos);
  }
  CHECK(r.header("x-end-to-end") == "kept");
}

TEST_CASE("chunked request is never forwarded with both Transfer-Encoding and Content-Length") {
  FakeUpstream upstream;
  auto r = forward_one(upstream,
                       make_request("POST", "/", "example.com", {{"Transfer-Encoding", "chunked"}},
                                    "5\r\nhello\r\n0\r\n\r\n"));
  CHECK(r.body == "hello");
  CHECK(r.header_count("transfer-encoding") + r.header_count("content-length") == 1);
}

TEST_CASE("upstream response with Transfer-Encoding and Content-Length is never passed on as is") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received&) {
    Reply reply;
    reply.framing = Reply::Framing::chunked;  // the body is chunked; the length lies
    reply.headers = {{"Transfer-Encoding", "chunked"}, {"Content-Length", "3"}};
    reply.body = "chunked wins";
    reply.chunk_size = 5;
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port(), 2s);
  REQUIRE(client.send(make_request("GET", "/")));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  // RFC 9112 6.3 lets an intermediary re-frame (Transfer-Encoding wins) or
  // treat it as an upstream error (Envoy's default); never both headers.
  CHECK(response->header_count("transfer-encoding") + response->header_count("content-length") ==
        1);
  if (response->status == 200) {
    CHECK(response->body == "chunked wins");
  } else {
    CHECK((response->status == 502 || response->status == 503));
  }
}

TEST_CASE("x-forwarded-for gets the client address appended") {
  FakeUpstream upstream;
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port());
  REQUIRE(
      client.send(make_request("GET", "/plain") +
                  make_request("GET", "/chain", "example.com", {{"X-Forwarded-For", "10.1.2.3"}})));
  REQUIRE(client.read_response());
  REQUIRE(client.read_response());
  REQUIRE(upstream.wait_for_requests(2));
  auto log = upstream.requests();
  CHECK(log[0].header("x-forwarded-for") == "127.0.0.1");
  REQUIRE(log[1].header("x-forwarded-for"));
  CHECK(without_spaces(*log[1].header("x-forwarded-for")) == "10.1.2.3,127.0.0.1");
  CHECK(log[1].header_count("x-forwarded-for") == 1);
}

TEST_CASE("x-forwarded-proto is http on a plain listener") {
  FakeUpstream upstream;
  auto r = forward_one(upstream, make_request("GET", "/"));
  CHECK(r.header("x-forwarded-proto") == "http");
}

TEST_CASE("x-request-id is generated when absent, unique per request, and kept when present") {
  FakeUpstream upstream;
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/a") + make_request("GET", "/b") +
                      make_request("GET", "/c", "example.com", {{"X-Request-Id", "abc-123"}})));
  for (int i = 0; i < 3; ++i) REQUIRE(client.read_response());
  REQUIRE(upstream.wait_for_requests(3));
  auto log = upstream.requests();
  auto a = log[0].header("x-request-id");
  auto b = log[1].header("x-request-id");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(looks_like_uuid(*a));
  CHECK(looks_like_uuid(*b));
  CHECK(*a != *b);
  CHECK(log[2].header("x-request-id") == "abc-123");
  CHECK(log[2].header_count("x-request-id") == 1);
}

TEST_CASE("Host is forwarded unchanged") {
  FakeUpstream upstream;
  auto r = forward_one(upstream, make_request("GET", "/", "Shop.Example.com:8080"));
  CHECK(r.header("host") == "Shop.Example.com:8080");
  CHECK(r.header_count("host") == 1);
}

}  // namespace headers_test
