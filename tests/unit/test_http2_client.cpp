// The HTTP/2 client codec against the server codec, both in memory:
// request translation, flow control both ways, trailers, GOAWAY refusing
// streams, and the response header bound.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "http2/client.hpp"
#include "http2/codec.hpp"

namespace test_http2_client {

using sluice::Headers;
using sluice::RequestHead;
using sluice::http2::ClientEvent;
using sluice::http2::ClientSession;
using sluice::http2::ClientSettings;
using sluice::http2::ErrorCode;
using sluice::http2::Event;
using sluice::http2::ServerSession;

namespace {

struct Pair {
  ClientSession client;
  ServerSession server;
  std::vector<ClientEvent> client_events;
  std::vector<Event> server_events;

  explicit Pair(ClientSettings cs = {}) : client(cs) {}

  void pump() {
    for (int i = 0; i < 1000; ++i) {
      std::string up, down;
      client.produce(up);
      if (!up.empty()) server.feed(up);
      for (auto& e : server.take_events()) server_events.push_back(std::move(e));
      server.produce(down);
      if (!down.empty()) client.feed(down);
      for (auto& e : client.take_events()) client_events.push_back(std::move(e));
      if (up.empty() && down.empty()) return;
    }
    FAIL("pump did not settle");
  }

  std::vector<ClientEvent> client_of(ClientEvent::Kind k) const {
    std::vector<ClientEvent> out;
    for (const auto& e : client_events)
      if (e.kind == k) out.push_back(e);
    return out;
  }
  std::vector<Event> server_of(Event::Kind k) const {
    std::vector<Event> out;
    for (const auto& e : server_events)
      if (e.kind == k) out.push_back(e);
    return out;
  }
};

RequestHead head(std::string method, std::string target) {
  RequestHead h;
  h.method = std::move(method);
  h.target = std::move(target);
  h.headers.add("Host", "svc.example:8080");
  h.headers.add("Connection", "keep-alive, x-hop");
  h.headers.add("X-Hop", "1");
  h.headers.add("Keep-Alive", "timeout=5");
  h.headers.add("TE", "trailers");
  h.headers.add("X-Kept", "yes");
  return h;
}

}  // namespace

TEST_CASE(
    "h2 client: a request head becomes pseudo-headers, hop-by-hop fields go, te trailers stays") {
  Pair p;
  int32_t id = p.client.submit_request(head("GET", "/a?b=1"), true);
  REQUIRE(id == 1);
  p.pump();
  auto reqs = p.server_of(Event::Kind::request);
  REQUIRE(reqs.size() == 1);
  const RequestHead& got = reqs[0].head;
  CHECK(got.method == "GET");
  CHECK(got.target == "/a?b=1");
  CHECK(got.authority == "svc.example:8080");
  CHECK(got.scheme == "http");
  CHECK(got.headers.get("x-kept") == "yes");
  CHECK(got.headers.get("te") == "trailers");
  CHECK_FALSE(got.headers.contains("x-hop"));
  CHECK_FALSE(got.headers.contains("keep-alive"));
  CHECK(reqs[0].end_stream);
}

TEST_CASE("h2 client: response head, body and trailers arrive as events") {
  Pair p;
  int32_t id = p.client.submit_request(head("POST", "/up"), false);
  REQUIRE(id > 0);
  REQUIRE(p.client.send_data(id, "hello", true));
  p.pump();
  auto data = p.server_of(Event::Kind::data);
  REQUIRE(data.size() == 1);
  CHECK(data[0].data == "hello");
  CHECK(p.server_of(Event::Kind::end).size() == 1);
  Headers rh;
  rh.add("content-type", "application/grpc");
  REQUIRE(p.server.submit_response(id, 200, rh, false));
  REQUIRE(p.server.send_data(id, "body", false));
  Headers trailers;
  trailers.add("grpc-status", "0");
  REQUIRE(p.server.submit_trailers(id, trailers));
  p.pump();
  auto heads = p.client_of(ClientEvent::Kind::head);
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].status == 200);
  CHECK(heads[0].headers.get("content-type") == "application/grpc");
  CHECK_FALSE(heads[0].end_stream);
  auto body = p.client_of(ClientEvent::Kind::data);
  REQUIRE(body.size() == 1);
  CHECK(body[0].data == "body");
  auto tr = p.client_of(ClientEvent::Kind::trailers);
  REQUIRE(tr.size() == 1);
  CHECK(tr[0].headers.get("grpc-status") == "0");
  CHECK(p.client_of(ClientEvent::Kind::end).size() == 1);
  CHECK(p.client_of(ClientEvent::Kind::reset).empty());
}

TEST_CASE("h2 client: response body stops at the stream window until consumed") {
  Pair p;
  int32_t id = p.client.submit_request(head("GET", "/big"), true);
  p.pump();
  REQUIRE(p.server.submit_response(id, 200, {}, false));
  REQUIRE(p.server.send_data(id, std::string(200 * 1024, 'x'), true));
  p.pump();
  size_t got = 0;
  for (const auto& e : p.client_of(ClientEvent::Kind::data)) got += e.data.size();
  CHECK(got == 65535);  // the stream window, nothing more until credited
  p.client_events.clear();
  p.client.consume(id, got);
  p.pump();
  size_t more = 0;
  for (const auto& e : p.client_of(ClientEvent::Kind::data)) more += e.data.size();
  CHECK(more == 65535);
}

TEST_CASE("h2 client: request body waits for the server's window (pending_data bounds it)") {
  Pair p;
  int32_t id = p.client.submit_request(head("POST", "/up"), false);
  REQUIRE(p.client.send_data(id, std::string(100 * 1024, 'y'), false));
  p.pump();
  size_t got = 0;
  for (const auto& e : p.server_of(Event::Kind::data)) got += e.data.size();
  CHECK(got == 65535);
  CHECK(p.client.pending_data(id) == 100 * 1024 - 65535);
  p.server.consume(id, got);
  p.pump();
  CHECK(p.client.pending_data(id) == 0);
}

TEST_CASE("h2 client: GOAWAY refuses the streams past its last id and no new stream starts") {
  Pair p;
  int32_t a = p.client.submit_request(head("GET", "/a"), true);
  p.pump();
  p.server.shutdown();  // last stream id: a
  int32_t b = p.client.submit_request(head("GET", "/b"), true);
  REQUIRE(b > a);
  p.pump();
  CHECK(p.client.goaway_received());
  CHECK(p.client_of(ClientEvent::Kind::goaway).size() == 1);
  auto resets = p.client_of(ClientEvent::Kind::reset);
  REQUIRE(resets.size() == 1);
  CHECK(resets[0].stream == b);
  CHECK(resets[0].refused);
  CHECK(p.client.submit_request(head("GET", "/c"), true) == 0);
  // The stream the server took still completes.
  REQUIRE(p.server.submit_response(a, 204, {}, true));
  p.pump();
  CHECK(p.client_of(ClientEvent::Kind::head).size() == 1);
  CHECK(p.client_of(ClientEvent::Kind::end).size() == 1);
}

TEST_CASE("h2 client: a response head past the header bound resets the stream") {
  ClientSettings cs;
  cs.max_header_list_bytes = 1024;
  Pair p(cs);
  int32_t id = p.client.submit_request(head("GET", "/"), true);
  p.pump();
  Headers big;
  big.add("x-big", std::string(2000, 'z'));
  REQUIRE(p.server.submit_response(id, 200, big, true));
  p.pump();
  CHECK(p.client_of(ClientEvent::Kind::head).empty());
  auto resets = p.client_of(ClientEvent::Kind::reset);
  REQUIRE(resets.size() == 1);
  CHECK_FALSE(resets[0].refused);
  CHECK(p.client.alive());  // one stream's cost, not the connection's
}

TEST_CASE(
    "h2 client: an RST_STREAM before the response is a reset the server never processed only when "
    "REFUSED_STREAM") {
  Pair p;
  int32_t a = p.client.submit_request(head("GET", "/a"), true);
  int32_t b = p.client.submit_request(head("GET", "/b"), true);
  p.pump();
  p.server.reset(a, ErrorCode::refused_stream);
  p.server.reset(b, ErrorCode::internal_error);
  p.pump();
  auto resets = p.client_of(ClientEvent::Kind::reset);
  REQUIRE(resets.size() == 2);
  for (const auto& r : resets) CHECK(r.refused == (r.stream == a));
}

}  // namespace test_http2_client
