// The HTTP/2 server codec without sockets: request translation, responses
// with flow control and trailers, and the known attacks (rapid reset,
// CONTINUATION flood, HPACK bomb, SETTINGS/PING/empty DATA floods, stream-id
// exhaustion), each against frames written by hand.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "http2/codec.hpp"
#include "support/h2_client.hpp"

namespace test_http2_codec {

using sluice::Headers;
using sluice::http2::CloseReason;
using sluice::http2::ErrorCode;
using sluice::http2::Event;
using sluice::http2::ServerSession;
using sluice::http2::Settings;
namespace h2 = sluice::test::h2;

namespace {

using h2::frames_of;
using h2::goaway_code;
using h2::rst_code;

// Passes bytes both ways until neither side has more to say.
void pump(ServerSession& server, h2::Client& client) {
  for (int i = 0; i < 1000; ++i) {
    std::string up = client.take_output();
    if (!up.empty()) server.feed(up);
    std::string down;
    server.produce(down);
    if (!down.empty()) REQUIRE(client.feed(down));
    if (up.empty() && down.empty()) return;
  }
  FAIL("pump did not settle");
}

std::vector<Event> of_kind(const std::vector<Event>& events, Event::Kind kind) {
  std::vector<Event> out;
  for (const auto& e : events)
    if (e.kind == kind) out.push_back(e);
  return out;
}

}  // namespace

TEST_CASE("h2 codec: a GET becomes a request head with Host from :authority") {
  ServerSession server;
  h2::Client client;
  int32_t id = client.request("GET", "/a/b?x=1", "example.com:8080",
                              {{"cookie", "a=1"}, {"x-custom", "v"}, {"cookie", "b=2"}});
  pump(server, client);
  auto events = server.take_events();
  auto heads = of_kind(events, Event::Kind::request);
  REQUIRE(heads.size() == 1);
  const auto& head = heads[0].head;
  CHECK(heads[0].stream == id);
  CHECK(heads[0].end_stream);
  CHECK(head.method == "GET");
  CHECK(head.target == "/a/b?x=1");
  CHECK(head.scheme == "http");
  CHECK(head.authority == "example.com:8080");
  CHECK(head.headers.get("host") == "example.com:8080");
  CHECK(head.headers.get("cookie") == "a=1; b=2");
  CHECK(head.headers.count("cookie") == 1);
  CHECK(head.headers.get("x-custom") == "v");
  CHECK(of_kind(events, Event::Kind::end).size() == 1);

  Headers h;
  h.add("Content-Type", "text/plain");
  h.add("Connection", "keep-alive, x-hop");
  h.add("X-Hop", "dropped");
  h.add("Transfer-Encoding", "chunked");
  REQUIRE(server.submit_response(id, 200, h, false));
  REQUIRE(server.send_data(id, "hello", true));
  pump(server, client);
  const auto& r = client.responses().at(id);
  CHECK(r.status == 200);
  CHECK(r.body == "hello");
  CHECK(r.done);
  CHECK(r.headers.get("content-type") == "text/plain");
  CHECK_FALSE(r.headers.contains("connection"));
  CHECK_FALSE(r.headers.contains("x-hop"));
  CHECK_FALSE(r.headers.contains("transfer-encoding"));
  CHECK(server.open_streams() == 0);
}

TEST_CASE("h2 codec: connection-specific request headers and te other than trailers reset") {
  for (auto [name, value] :
       std::vector<std::pair<std::string, std::string>>{{"connection", "close"},
                                                        {"keep-alive", "5"},
                                                        {"proxy-connection", "x"},
                                                        {"transfer-encoding", "chunked"},
                                                        {"upgrade", "websocket"},
                                                        {"te", "gzip"}}) {
    CAPTURE(name);
    ServerSession server;
    std::string in =
        h2::client_start() + h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 1,
                                       h2::request_block("GET", "/", "a", {{name, value}}));
    server.feed(in);
    std::string out;
    server.produce(out);
    CHECK(rst_code(out, 1) == 0x1u);  // PROTOCOL_ERROR
    CHECK(of_kind(server.take_events(), Event::Kind::request).empty());
  }
  // te: trailers is the one te allowed.
  ServerSession server;
  server.feed(h2::client_start() +
              h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 1,
                        h2::request_block("GET", "/", "a", {{"te", "trailers"}})));
  auto heads = of_kind(server.take_events(), Event::Kind::request);
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].head.headers.get("te") == "trailers");
}

TEST_CASE("h2 codec: missing or bad pseudo-headers reset the stream") {
  struct Case {
    std::string block;
    const char* what;
  };
  std::vector<Case> cases = {
      {h2::literal(":method", "GET") + h2::literal(":scheme", "http") +
           h2::literal(":authority", "a"),
       "no :path"},
      {h2::literal(":scheme", "http") + h2::literal(":path", "/") + h2::literal(":authority", "a"),
       "no :method"},
      {h2::literal(":method", "GET") + h2::literal(":scheme", "http") + h2::literal(":path", "/"),
       "no :authority nor host"},
      {h2::literal(":method", "GET") + h2::literal(":scheme", "http") + h2::literal(":path", "/") +
           h2::literal(":authority", "a") + h2::literal(":bogus", "x"),
       "unknown pseudo-header"},
      {h2::literal(":method", "GET") + h2::literal(":scheme", "http") + h2::literal(":path", "/") +
           h2::literal(":authority", "a") + h2::literal("Upper", "x"),
       "upper-case name"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    ServerSession server;
    server.feed(h2::client_start() +
                h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 1, c.block));
    std::string out;
    server.produce(out);
    CHECK(rst_code(out, 1).has_value());
    CHECK(of_kind(server.take_events(), Event::Kind::request).empty());
  }
}

TEST_CASE("h2 codec: a host header stands in for a missing :authority") {
  ServerSession server;
  server.feed(h2::client_start() +
              h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 1,
                        h2::literal(":method", "GET") + h2::literal(":scheme", "http") +
                            h2::literal(":path", "/") + h2::literal("host", "b.example")));
  auto heads = of_kind(server.take_events(), Event::Kind::request);
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].head.authority == "b.example");
  CHECK(heads[0].head.headers.count("host") == 1);
}

TEST_CASE("h2 codec: request and response bodies past the 64 KiB window flow as consumed") {
  ServerSession server;
  h2::Client client;
  std::string body(200 * 1024, 'q');
  for (size_t i = 0; i < body.size(); i += 997) body[i] = static_cast<char>('a' + i % 26);
  int32_t id = client.request("POST", "/up", "a", {}, body);
  pump(server, client);
  std::string got;
  bool ended = false;
  // Without consume() the client stalls at the stream window.
  for (const auto& e : server.take_events())
    if (e.kind == Event::Kind::data) got += e.data;
  CHECK(got.size() == 65535);
  size_t credited = 0;
  for (int round = 0; round < 100 && !ended; ++round) {
    server.consume(id, got.size() - credited);
    credited = got.size();
    pump(server, client);
    for (const auto& e : server.take_events()) {
      if (e.kind == Event::Kind::data) got += e.data;
      if (e.kind == Event::Kind::end) ended = true;
    }
  }
  CHECK(ended);
  CHECK(got == body);

  // The response: more than the client's 64 KiB window, sent as it opens.
  REQUIRE(server.submit_response(id, 201, {}, false));
  REQUIRE(server.send_data(id, body, true));
  pump(server, client);
  const auto& r = client.responses().at(id);
  CHECK(r.status == 201);
  CHECK(r.done);
  CHECK(r.body == body);
  CHECK(server.pending_data(id) == 0);
}

TEST_CASE("h2 codec: response data queued before it is available is deferred, then sent") {
  ServerSession server;
  h2::Client client;
  int32_t id = client.request("GET", "/", "a");
  pump(server, client);
  REQUIRE(server.submit_response(id, 200, {}, false));
  pump(server, client);
  CHECK(client.responses().at(id).status == 200);
  CHECK_FALSE(client.responses().at(id).done);
  REQUIRE(server.send_data(id, "part1-", false));
  pump(server, client);
  CHECK(client.responses().at(id).body == "part1-");
  REQUIRE(server.send_data(id, "part2", true));
  pump(server, client);
  CHECK(client.responses().at(id).body == "part1-part2");
  CHECK(client.responses().at(id).done);
}

TEST_CASE("h2 codec: response trailers follow the data and end the stream") {
  ServerSession server;
  h2::Client client;
  int32_t id = client.request("POST", "/svc/Method", "a", {{"te", "trailers"}}, "req");
  pump(server, client);
  Headers h;
  h.add("content-type", "application/grpc");
  REQUIRE(server.submit_response(id, 200, h, false));
  REQUIRE(server.send_data(id, "payload", false));
  Headers t;
  t.add("grpc-status", "0");
  t.add("grpc-message", "ok");
  REQUIRE(server.submit_trailers(id, t));
  pump(server, client);
  const auto& r = client.responses().at(id);
  CHECK(r.body == "payload");
  CHECK(r.done);
  CHECK(r.trailers.get("grpc-status") == "0");
  CHECK(r.trailers.get("grpc-message") == "ok");
}

TEST_CASE("h2 codec: request trailers arrive as an event") {
  ServerSession server;
  std::string in =
      h2::client_start() +
      h2::frame(h2::kHeaders, h2::kEndHeaders, 1, h2::request_block("POST", "/", "a")) +
      h2::frame(h2::kData, 0, 1, "body") +
      h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 1,
                h2::literal("x-checksum", "abc"));
  server.feed(in);
  auto events = server.take_events();
  auto trailers = of_kind(events, Event::Kind::trailers);
  REQUIRE(trailers.size() == 1);
  CHECK(trailers[0].trailers.get("x-checksum") == "abc");
  CHECK(of_kind(events, Event::Kind::end).size() == 1);
}

TEST_CASE("h2 codec: concurrent streams interleave and answer out of order") {
  ServerSession server;
  h2::Client client;
  std::vector<int32_t> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(client.request("GET", "/" + std::to_string(i), "a"));
  pump(server, client);
  CHECK(of_kind(server.take_events(), Event::Kind::request).size() == 10);
  CHECK(server.open_streams() == 10);
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    REQUIRE(server.submit_response(*it, 200, {}, false));
    REQUIRE(server.send_data(*it, std::to_string(*it), true));
  }
  pump(server, client);
  for (int32_t id : ids) CHECK(client.responses().at(id).body == std::to_string(id));
}

TEST_CASE("h2 codec: streams past max_concurrent_streams are refused") {
  Settings s;
  s.max_concurrent_streams = 2;
  auto open3 = [](ServerSession& server) {
    for (uint32_t id = 1; id <= 5; id += 2)
      server.feed(h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, id,
                            h2::request_block("GET", "/", "a")));
  };
  // Before the client acknowledged our SETTINGS: the stream is refused.
  ServerSession early(s);
  early.feed(h2::client_start());
  open3(early);
  std::string out;
  early.produce(out);
  CHECK(of_kind(early.take_events(), Event::Kind::request).size() == 2);
  CHECK(rst_code(out, 5) == 0x7u);  // REFUSED_STREAM
  CHECK(early.alive());
  // After it: a client that knew the limit broke it (nghttp2: GOAWAY).
  ServerSession late(s);
  late.feed(h2::client_start() + h2::frame(h2::kSettings, h2::kAck, 0, ""));
  open3(late);
  out.clear();
  late.produce(out);
  CHECK(of_kind(late.take_events(), Event::Kind::request).size() == 2);
  CHECK(goaway_code(out) == 0x1u);  // PROTOCOL_ERROR
}

TEST_CASE("h2 codec: the client's reset reaches the caller as a reset event") {
  ServerSession server;
  server.feed(h2::client_start() +
              h2::frame(h2::kHeaders, h2::kEndHeaders, 1, h2::request_block("POST", "/", "a")) +
              h2::frame(h2::kRstStream, 0, 1, std::string("\0\0\0\x08", 4)));
  auto events = server.take_events();
  auto resets = of_kind(events, Event::Kind::reset);
  REQUIRE(resets.size() == 1);
  CHECK(resets[0].error == ErrorCode::cancel);
  CHECK_FALSE(server.send_data(1, "x", true));  // the stream is gone
  CHECK(server.alive());
}

TEST_CASE("h2 codec attack: rapid reset (HEADERS then RST_STREAM) ends in GOAWAY") {
  ServerSession server;
  std::string in = h2::client_start();
  for (uint32_t id = 1; id < 2 * 300; id += 2) {
    in += h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, id,
                    h2::request_block("GET", "/", "a"));
    in += h2::frame(h2::kRstStream, 0, id, std::string("\0\0\0\x08", 4));
  }
  server.feed(in);
  std::string out;
  server.produce(out);
  CHECK(goaway_code(out) == 0xbu);  // ENHANCE_YOUR_CALM
  CHECK(server.close_reason() == CloseReason::rapid_reset);
  CHECK_FALSE(server.alive());
  // Streams that got answers before their reset are not premature.
  ServerSession calm;
  h2::Client client;
  for (int i = 0; i < 150; ++i) {
    int32_t id = client.request("GET", "/", "a");
    pump(calm, client);
    REQUIRE(calm.submit_response(id, 200, {}, true));
    pump(calm, client);
  }
  CHECK(calm.alive());
  CHECK(calm.close_reason() == CloseReason::none);
}

TEST_CASE("h2 codec attack: nghttp2's RST_STREAM token bucket also ends the connection") {
  Settings s;
  s.premature_reset_min_streams = 1'000'000;  // leave it to the bucket
  s.reset_burst = 50;
  s.reset_rate_per_second = 1;
  ServerSession server(s);
  std::string in = h2::client_start();
  for (uint32_t id = 1; id < 2 * 200; id += 2) {
    in += h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, id,
                    h2::request_block("GET", "/", "a"));
    in += h2::frame(h2::kRstStream, 0, id, std::string("\0\0\0\x08", 4));
  }
  server.feed(in);
  std::string out;
  server.produce(out);
  CHECK(goaway_code(out).has_value());
  CHECK_FALSE(server.alive());
}

TEST_CASE("h2 codec attack: CONTINUATION flood is refused without buffering it") {
  ServerSession server;
  std::string in =
      h2::client_start() + h2::frame(h2::kHeaders, 0, 1, h2::request_block("GET", "/", "a"));
  std::string filler = h2::literal("x-pad", std::string(1000, 'p'));
  for (int i = 0; i < 50; ++i) in += h2::frame(h2::kContinuation, 0, 1, filler);
  bool alive = server.feed(in);
  std::string out;
  server.produce(out);
  CHECK_FALSE(alive);
  CHECK(goaway_code(out).has_value());
  CHECK(server.close_reason() == CloseReason::flood);
  CHECK(of_kind(server.take_events(), Event::Kind::request).empty());
}

TEST_CASE("h2 codec attack: a header list decoded past the limit resets the stream") {
  // HPACK bomb: one 4000-byte field enters the dynamic table, then 1-byte
  // references to it decode to far more than 60 KiB.
  ServerSession server;
  std::string block =
      h2::request_block("GET", "/", "a") + h2::literal_indexed("x-bomb", std::string(4000, 'b'));
  for (int i = 0; i < 100; ++i) block += h2::indexed(62);
  REQUIRE(block.size() < 16384);
  server.feed(h2::client_start() +
              h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 1, block));
  std::string out;
  server.produce(out);
  CHECK(rst_code(out, 1).has_value());
  CHECK(of_kind(server.take_events(), Event::Kind::request).empty());
  // The connection still serves.
  CHECK(server.alive());
  server.feed(h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 3,
                        h2::request_block("GET", "/", "a")));
  CHECK(of_kind(server.take_events(), Event::Kind::request).size() == 1);
}

TEST_CASE("h2 codec attack: too many header fields reset the stream") {
  ServerSession server;
  std::vector<std::pair<std::string, std::string>> extra;
  for (int i = 0; i < 120; ++i) extra.emplace_back("x-h" + std::to_string(i), "v");
  server.feed(h2::client_start() + h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream, 1,
                                             h2::request_block("GET", "/", "a", extra)));
  std::string out;
  server.produce(out);
  CHECK(rst_code(out, 1).has_value());
  CHECK(of_kind(server.take_events(), Event::Kind::request).empty());
}

TEST_CASE("h2 codec attack: PING flood without reading the acks ends the connection") {
  ServerSession server;
  std::string in = h2::client_start();
  for (int i = 0; i < 1200; ++i) in += h2::frame(h2::kPing, 0, 0, "12345678");
  bool alive = server.feed(in);
  CHECK_FALSE(alive);
  CHECK(server.close_reason() == CloseReason::flood);
}

TEST_CASE("h2 codec attack: SETTINGS flood without reading the acks ends the connection") {
  ServerSession server;
  std::string in = h2::client_start();
  for (int i = 0; i < 1200; ++i) in += h2::frame(h2::kSettings, 0, 0, "");
  CHECK_FALSE(server.feed(in));
  CHECK(server.close_reason() == CloseReason::flood);
  // A SETTINGS frame with more entries than allowed.
  ServerSession other;
  std::string many;
  for (int i = 0; i < 40; ++i) many += std::string("\0\x03\0\0\0\x64", 6);
  other.feed(h2::client_start() + h2::frame(h2::kSettings, 0, 0, many));
  std::string out;
  other.produce(out);
  CHECK(goaway_code(out).has_value());
  CHECK_FALSE(other.alive());
}

TEST_CASE("h2 codec attack: empty DATA frames flood ends the connection") {
  ServerSession server;
  std::string in = h2::client_start() +
                   h2::frame(h2::kHeaders, h2::kEndHeaders, 1, h2::request_block("POST", "/", "a"));
  for (int i = 0; i < 10; ++i) in += h2::frame(h2::kData, 0, 1, "");
  server.feed(in);
  std::string out;
  server.produce(out);
  CHECK(goaway_code(out) == 0xbu);
  CHECK(server.close_reason() == CloseReason::flood);
  // One empty frame between real ones is fine.
  ServerSession ok;
  ok.feed(h2::client_start() +
          h2::frame(h2::kHeaders, h2::kEndHeaders, 1, h2::request_block("POST", "/", "a")) +
          h2::frame(h2::kData, 0, 1, "") + h2::frame(h2::kData, 0, 1, "x") +
          h2::frame(h2::kData, 0, 1, "") + h2::frame(h2::kData, h2::kEndStream, 1, ""));
  CHECK(ok.close_reason() == CloseReason::none);
  CHECK(of_kind(ok.take_events(), Event::Kind::end).size() == 1);
}

TEST_CASE("h2 codec attack: stream ids near 2^31 end the connection gracefully") {
  ServerSession server;
  server.feed(h2::client_start() + h2::frame(h2::kHeaders, h2::kEndHeaders | h2::kEndStream,
                                             0x7fffffff - 2, h2::request_block("GET", "/", "a")));
  auto heads = of_kind(server.take_events(), Event::Kind::request);
  REQUIRE(heads.size() == 1);  // that stream is still served
  std::string out;
  server.produce(out);
  CHECK(goaway_code(out) == 0u);  // NO_ERROR
  CHECK(server.close_reason() == CloseReason::stream_ids_used);
  REQUIRE(server.submit_response(heads[0].stream, 200, {}, true));
  out.clear();
  server.produce(out);
  CHECK_FALSE(frames_of(out).empty());
  // Nothing is left: the socket can close.
  CHECK_FALSE(server.alive());
}

TEST_CASE("h2 codec: a bad preface ends the connection") {
  ServerSession server;
  CHECK_FALSE(server.feed(std::string_view("GET / HTTP/1.1\r\nHost: a\r\n\r\n")));
  std::string out;
  server.produce(out);
  CHECK_FALSE(server.alive());
  CHECK(server.close_reason() == CloseReason::protocol_error);
}

TEST_CASE("h2 codec: h2 fields from HTTP/1 drop hop-by-hop ones and lower-case names") {
  Headers h;
  h.add("Content-Length", "3");
  h.add("Connection", "close, X-Private");
  h.add("X-Private", "1");
  h.add("Keep-Alive", "timeout=5");
  h.add("Proxy-Connection", "x");
  h.add("Upgrade", "h2c");
  h.add("Host", "a");
  h.add("X-Kept", "yes");
  Headers out = sluice::http2::h2_fields_from_h1(h);
  REQUIRE(out.size() == 2);
  CHECK(out.entries()[0].first == "content-length");
  CHECK(out.entries()[1].first == "x-kept");
}

}  // namespace test_http2_codec
