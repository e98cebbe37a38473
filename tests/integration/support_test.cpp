// Checks the test tools themselves (FakeUpstream against RawClient and curl),
// so a failing integration test points at the gateway, not at its peers.

#include <doctest/doctest.h>

#include "support/body_pattern.hpp"
#include "support/fake_upstream.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace support_test {

using namespace sluice::test;

TEST_CASE("support: fake upstream answers keep-alive and pipelined requests") {
  FakeUpstream upstream("alpha");
  RawClient client(upstream.port());
  REQUIRE(client.connected());
  REQUIRE(client.send(make_request("GET", "/a") + make_request("GET", "/b")));
  auto first = client.read_response();
  auto second = client.read_response();
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->status == 200);
  CHECK(first->body == "alpha");
  CHECK(second->body == "alpha");
  REQUIRE(upstream.wait_for_requests(2));
  auto log = upstream.requests();
  CHECK(log[0].target == "/a");
  CHECK(log[1].target == "/b");
  CHECK(log[1].index_on_connection == 1);
  CHECK(upstream.connections_accepted() == 1);
}

TEST_CASE("support: fake upstream framings, bodies and checksums") {
  FakeUpstream upstream("beta");
  upstream.set_store_body_limit(16);
  upstream.set_handler([](const Received& r) {
    Reply reply;
    if (r.target == "/chunked") {
      reply.framing = Reply::Framing::chunked;
      reply.generated_bytes = 100'000;
      reply.chunk_size = 777;
    } else if (r.target == "/close") {
      reply.framing = Reply::Framing::close_delimited;
      reply.body = "until close";
    } else {
      reply.body = "echo:" + std::to_string(r.body_bytes);
    }
    return reply;
  });
  RawClient client(upstream.port());
  REQUIRE(client.send(make_request("POST", "/cl", "h", {}, "0123456789")));
  auto r1 = client.read_response();
  REQUIRE(r1);
  CHECK(r1->body == "echo:10");

  REQUIRE(client.send(make_request("POST", "/te", "h", {{"Transfer-Encoding", "chunked"}})));
  REQUIRE(client.send_pattern_chunked(50'000, 1000));
  auto r2 = client.read_response();
  REQUIRE(r2);
  CHECK(r2->body == "echo:50000");
  REQUIRE(upstream.wait_for_requests(2));
  auto chunked = upstream.requests()[1];
  CHECK(chunked.chunked);
  CHECK_FALSE(chunked.body_stored);
  CHECK(chunked.body_checksum == pattern_checksum(50'000));

  REQUIRE(client.send(make_request("GET", "/chunked")));
  auto r3 = client.read_response(ReadOptions{.store_body = false});
  REQUIRE(r3);
  CHECK(r3->chunked);
  CHECK(r3->body_bytes == 100'000);
  CHECK(r3->body_checksum == pattern_checksum(100'000));

  REQUIRE(client.send(make_request("GET", "/close")));
  auto r4 = client.read_response();
  REQUIRE(r4);
  CHECK(r4->close_delimited);
  CHECK(r4->body == "until close");
  CHECK(client.is_closed());
}

TEST_CASE("support: fake upstream reset, hold and release") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received& r) {
    Reply reply;
    reply.reset_before_response = r.target == "/reset";
    reply.hold = r.target == "/hold";
    reply.body = "ok";
    return reply;
  });
  RawClient reset_client(upstream.port());
  REQUIRE(reset_client.send(make_request("GET", "/reset")));
  CHECK_FALSE(reset_client.read_response());
  CHECK(reset_client.is_closed());

  RawClient held_client(upstream.port());
  REQUIRE(held_client.send(make_request("GET", "/hold")));
  REQUIRE(upstream.wait_for_requests(2));
  REQUIRE(wait_until([&] { return upstream.held() == 1; }));
  upstream.release();
  auto r = held_client.read_response();
  REQUIRE(r);
  CHECK(r->body == "ok");
  CHECK(upstream.max_concurrent_connections() >= 1);
}

TEST_CASE("support: curl reaches the fake upstream") {
  FakeUpstream upstream("gamma");
  auto result = run_curl({"http://127.0.0.1:" + std::to_string(upstream.port()) + "/x"});
  CHECK(result.exit_code == 0);
  CHECK(result.out == "gamma");
  CHECK(current_rss_bytes() > 0);
}

TEST_CASE("support: fake upstream stops with held requests and open connections") {
  auto upstream = std::make_unique<FakeUpstream>();
  upstream->set_handler([](const Received&) {
    Reply reply;
    reply.hold = true;
    return reply;
  });
  RawClient held(upstream->port());
  RawClient idle(upstream->port());
  REQUIRE(held.send(make_request("GET", "/")));
  REQUIRE(wait_until([&] { return upstream->held() == 1; }));
  REQUIRE(upstream->wait_for_connections(2));
  upstream.reset();
  CHECK(held.is_closed());
  CHECK(idle.is_closed());
}

}  // namespace support_test
