// HTTP/1.1 proxying through a real Gateway: connection reuse, pipelining,
// body framings both ways, large streamed bodies, bodiless responses and
// Expect: 100-continue (issue #2, section 3).

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "support/body_pattern.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"

namespace proxy_http1_test {

using namespace sluice::test;
using namespace std::chrono_literals;

TEST_CASE("keep-alive on both sides reuses one upstream connection") {
  FakeUpstream upstream("backend");
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port());
  REQUIRE(client.connected());
  for (int i = 0; i < 5; ++i) {
    REQUIRE(client.send(make_request("GET", "/r" + std::to_string(i))));
    auto response = client.read_response();
    REQUIRE_MESSAGE(response, client.error());
    CHECK(response->status == 200);
    CHECK(response->body == "backend");
  }
  REQUIRE(upstream.wait_for_requests(5));
  CHECK(upstream.connections_accepted() == 1);
  for (const auto& r : upstream.requests()) CHECK(r.connection_index == 0);
  CHECK_FALSE(client.is_closed(50ms));  // the downstream connection stays open too
}

TEST_CASE("pipelined requests are answered in order") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received& r) {
    Reply reply;
    reply.body = "answer " + r.target;
    // The first one is slow: a gateway answering out of order would show it.
    if (r.target == "/1") reply.delay = 100ms;
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/1") + make_request("GET", "/2") +
                      make_request("GET", "/3")));
  for (int i = 1; i <= 3; ++i) {
    auto response = client.read_response();
    REQUIRE_MESSAGE(response, client.error());
    CHECK(response->status == 200);
    CHECK(response->body == "answer /" + std::to_string(i));
  }
}

TEST_CASE("request body with Content-Length reaches the upstream intact") {
  FakeUpstream upstream;
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port());
  std::string body = pattern_string(100'000);
  REQUIRE(client.send(make_request("POST", "/upload", "example.com", {}, body)));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  CHECK(response->status == 200);
  REQUIRE(upstream.wait_for_requests(1));
  auto r = *upstream.last_request();
  CHECK(r.method == "POST");
  CHECK(r.body_bytes == body.size());
  CHECK(r.body == body);
}

TEST_CASE("chunked request body reaches the upstream intact") {
  FakeUpstream upstream;
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port());
  REQUIRE(client.send(
      make_request("POST", "/upload", "example.com", {{"Transfer-Encoding", "chunked"}})));
  REQUIRE(client.send_pattern_chunked(70'000, 3'000));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  CHECK(response->status == 200);
  REQUIRE(upstream.wait_for_requests(1));
  auto r = *upstream.last_request();
  CHECK(r.body_bytes == 70'000);
  CHECK(r.body == pattern_string(70'000));
  // The same connection goes on: the chunked body was consumed exactly.
  REQUIRE(client.send(make_request("GET", "/after")));
  auto next = client.read_response();
  REQUIRE_MESSAGE(next, client.error());
  CHECK(next->status == 200);
}

namespace {
void check_response_framing(Reply::Framing framing) {
  FakeUpstream upstream;
  upstream.set_handler([framing](const Received&) {
    Reply reply;
    reply.framing = framing;
    reply.generated_bytes = 200'000;
    reply.chunk_size = 4'321;
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/download")));
  auto response = client.read_response();
  REQUIRE_MESSAGE(response, client.error());
  CHECK(response->status == 200);
  CHECK(response->body_bytes == 200'000);
  CHECK(response->body_checksum == pattern_checksum(200'000));
}
}  // namespace

TEST_CASE("content-length response body reaches the client intact") {
  check_response_framing(Reply::Framing::content_length);
}

TEST_CASE("chunked response body reaches the client intact") {
  check_response_framing(Reply::Framing::chunked);
}

TEST_CASE("close-delimited response body reaches the client intact") {
  check_response_framing(Reply::Framing::close_delimited);
}

TEST_CASE("64 MiB upload and 64 MiB download are streamed intact") {
  constexpr uint64_t size = 64ull << 20;
  FakeUpstream upstream;
  upstream.set_store_body_limit(0);
  upstream.set_handler([](const Received& r) {
    Reply reply;
    if (r.target == "/download") {
      reply.generated_bytes = size;
    } else {
      reply.body = std::to_string(r.body_bytes) + ":" + std::to_string(r.body_checksum);
    }
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  const uint64_t expected = pattern_checksum(size);
  RawClient client(gw.port(), 30s);

  REQUIRE(client.send(
      make_request("POST", "/upload", "example.com", {{"Content-Length", std::to_string(size)}})));
  REQUIRE_MESSAGE(client.send_pattern(size), client.error());
  auto up = client.read_response();
  REQUIRE_MESSAGE(up, client.error());
  CHECK(up->status == 200);
  CHECK(up->body == std::to_string(size) + ":" + std::to_string(expected));

  REQUIRE(client.send(make_request("GET", "/download")));
  auto down = client.read_response(ReadOptions{.store_body = false});
  REQUIRE_MESSAGE(down, client.error());
  CHECK(down->status == 200);
  CHECK(down->body_bytes == size);
  CHECK(down->body_checksum == expected);
}

// Slow (minutes under sanitizers): run with --no-skip or -tc='1 GiB*'.
TEST_CASE("1 GiB each way with RSS growth under 64 MiB" * doctest::skip()) {
  constexpr uint64_t size = 1ull << 30;
  FakeUpstream upstream;
  upstream.set_store_body_limit(0);
  upstream.set_handler([](const Received& r) {
    Reply reply;
    if (r.target == "/download") {
      reply.generated_bytes = size;
      reply.framing = Reply::Framing::chunked;
      reply.chunk_size = 64 * 1024;
    } else {
      reply.body = std::to_string(r.body_bytes) + ":" + std::to_string(r.body_checksum);
    }
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()), 2);
  const uint64_t expected = pattern_checksum(size);

  // The gateway shares this process with its peers, which stream too: the
  // growth of the whole process bounds the gateway's.
  const uint64_t baseline = current_rss_bytes();
  std::atomic<bool> done{false};
  std::atomic<uint64_t> peak{baseline};
  std::thread sampler([&] {
    while (!done.load()) {
      uint64_t rss = current_rss_bytes();
      if (rss > peak.load()) peak.store(rss);
      std::this_thread::sleep_for(20ms);  // sampling period, not a wait for an event
    }
  });

  RawClient client(gw.port(), 60s);
  bool sent = client.send(make_request("POST", "/upload", "example.com",
                                       {{"Transfer-Encoding", "chunked"}})) &&
              client.send_pattern_chunked(size, 256 * 1024);
  auto up = client.read_response();
  bool sent_download = client.send(make_request("GET", "/download"));
  auto down = client.read_response(ReadOptions{.store_body = false});
  done.store(true);
  sampler.join();

  REQUIRE(sent);
  REQUIRE_MESSAGE(up, client.error());
  CHECK(up->body == std::to_string(size) + ":" + std::to_string(expected));
  REQUIRE(sent_download);
  REQUIRE_MESSAGE(down, client.error());
  CHECK(down->body_bytes == size);
  CHECK(down->body_checksum == expected);
  CHECK(peak.load() - baseline < (64ull << 20));
}

TEST_CASE("HEAD response has no body even with Content-Length") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received&) {
    Reply reply;
    reply.body = "hello";  // not sent for HEAD; Content-Length: 5 is
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port(), 2s);
  REQUIRE(client.send(make_request("HEAD", "/") + make_request("GET", "/next")));
  auto head = client.read_response(ReadOptions{.head_request = true});
  REQUIRE_MESSAGE(head, client.error());
  CHECK(head->status == 200);
  CHECK(head->header("content-length") == "5");
  // Any stray body bytes would corrupt the next response on the connection.
  auto next = client.read_response();
  REQUIRE_MESSAGE(next, client.error());
  CHECK(next->status == 200);
  CHECK(next->body == "hello");
}

TEST_CASE("204 response has no body") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received& r) {
    Reply reply;
    if (r.target == "/empty") reply.status = 204;  // no framing headers at all
    reply.body = "after";
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port(), 2s);
  REQUIRE(client.send(make_request("DELETE", "/empty") + make_request("GET", "/next")));
  auto empty = client.read_response();
  REQUIRE_MESSAGE(empty, client.error());
  CHECK(empty->status == 204);
  CHECK(empty->header_count("transfer-encoding") == 0);
  auto next = client.read_response();
  REQUIRE_MESSAGE(next, client.error());
  CHECK(next->status == 200);
  CHECK(next->body == "after");
}

TEST_CASE("304 response has no body even with Content-Length") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received& r) {
    Reply reply;
    if (r.target == "/cached") {
      reply.status = 304;
      // The representation's size, not a body length (RFC 9110 8.6).
      reply.headers = {{"Content-Length", "1234"}, {"ETag", "\"v1\""}};
    } else {
      reply.body = "after";
    }
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port(), 2s);
  REQUIRE(client.send(make_request("GET", "/cached", "example.com", {{"If-None-Match", "\"v1\""}}) +
                      make_request("GET", "/next")));
  auto cached = client.read_response();
  REQUIRE_MESSAGE(cached, client.error());
  CHECK(cached->status == 304);
  CHECK(cached->header("etag") == "\"v1\"");
  auto next = client.read_response();
  REQUIRE_MESSAGE(next, client.error());
  CHECK(next->status == 200);
  CHECK(next->body == "after");
}

TEST_CASE("Expect: 100-continue gets 100 Continue, then the final response") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received& r) {
    Reply reply;
    reply.body = "got " + r.body;
    return reply;
  });
  TestGateway gw(single_upstream_config(upstream.port()));
  RawClient client(gw.port(), 2s);
  // The body is held back until the interim response arrives, as curl does.
  REQUIRE(client.send(make_request("POST", "/upload", "example.com",
                                   {{"Content-Length", "5"}, {"Expect", "100-continue"}})));
  auto interim = client.read_response();
  REQUIRE_MESSAGE(interim, client.error());
  CHECK(interim->status == 100);
  REQUIRE(client.send("hello"));
  auto final_response = client.read_response();
  REQUIRE_MESSAGE(final_response, client.error());
  CHECK(final_response->status == 200);
  CHECK(final_response->body == "got hello");
  REQUIRE(upstream.wait_for_requests(1));
  CHECK(upstream.last_request()->header_count("expect") == 0);
}

}  // namespace proxy_http1_test
