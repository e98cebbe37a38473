// WebSocket / Upgrade tunnels over HTTP/1.1 and TCP routes (issue 14 §3, §4):
// real sockets on 127.0.0.1, upstreams from support/tunnel_upstream.
#include <doctest/doctest.h>

#include <sluice/sluice.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "support/gateway_fixture.hpp"
#include "support/h2_client.hpp"
#include "support/manual_clock.hpp"
#include "support/raw_client.hpp"
#include "support/temp_dir.hpp"
#include "support/tunnel_upstream.hpp"
#include "support/wait.hpp"

namespace tunnel_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

const HeaderList kWebSocket = {{"Connection", "Upgrade"},
                               {"Upgrade", "websocket"},
                               {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                               {"Sec-WebSocket-Version", "13"}};

GatewayConfig ws_config(uint16_t port) {
  return make_config({forward_all("ws")}, {loopback_upstream("ws", {port})});
}

using h2::kH2WebSocket;

GatewayConfig h2_ws_config(uint16_t port) {
  GatewayConfig config = ws_config(port);
  config.listeners[0].http2_extended_connect = true;
  return config;
}
}  // namespace

TEST_CASE("upgrade: a websocket handshake gets the upstream's 101 and frames echo both ways") {
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(ws_config(up.port()), 1, hooks);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/ws", "example.com", kWebSocket)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 101);
  CHECK(r->header("upgrade") == "websocket");
  CHECK(r->header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK(r->header_count("content-length") == 0);
  CHECK(r->header_count("transfer-encoding") == 0);
  // Routed and forwarded with the upgrade kept and forwarding headers added.
  auto heads = up.heads();
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].find("GET /ws HTTP/1.1") == 0);
  CHECK(heads[0].find("connection: upgrade\r\n") != std::string::npos);
  CHECK(heads[0].find("upgrade: websocket\r\n") != std::string::npos);
  CHECK(heads[0].find("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==") != std::string::npos);
  CHECK(heads[0].find("x-forwarded-for: 127.0.0.1") != std::string::npos);
  for (std::string word : {"hello", "again"}) {
    REQUIRE(c.send(masked_frame(word)));
    std::string got = c.read_exactly(2 + word.size());
    CHECK(unmasked_payload(got) == word);
  }
  c.close();
  // One access-log line when the tunnel ends: 101, bytes both ways.
  REQUIRE(hooks->wait_for_logs(1));
  auto log = hooks->logs()[0];
  CHECK(log.status == 101);
  CHECK(log.bytes_received == 2 * masked_frame("hello").size());
  CHECK(log.bytes_sent == 2 * (2 + 5));
  CHECK(log.upstream == "ws");
}

TEST_CASE("upgrade: bytes sent with the upgrade head are held until the 101, then forwarded") {
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  TestGateway gw(ws_config(up.port()));
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/ws", "example.com", kWebSocket) + masked_frame("early")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 101);
  CHECK(unmasked_payload(c.read_exactly(7)) == "early");
  CHECK(up.early().empty());  // nothing came with the head
}

TEST_CASE("upgrade: a non-101 answer is relayed and closes: early bytes are never a request") {
  TunnelUpstream up(TunnelUpstream::Mode::answer_200);
  TestGateway gw(ws_config(up.port()));
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/ws", "example.com", kWebSocket) +
                 make_request("GET", "/smuggled")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 200);
  CHECK(r->body == "no");
  CHECK(r->header("connection") == "close");
  CHECK(c.is_closed());
  auto heads = up.heads();
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].find("GET /ws ") == 0);
}

TEST_CASE("upgrade: a 101 to a request that asked for none is 502, never a tunnel") {
  TunnelUpstream up(TunnelUpstream::Mode::always_101);
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(ws_config(up.port()), 1, hooks);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/plain")));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 502);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].flags == "UPE");
}

TEST_CASE("upgrade: a 101 switching to another protocol than asked is 502") {
  TunnelUpstream up(TunnelUpstream::Mode::upgrade_other);
  TestGateway gw(ws_config(up.port()));
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/ws", "example.com", kWebSocket)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 502);
  CHECK(c.is_closed());
}

TEST_CASE("upgrade: an upgrade request with a body is 400 and never reaches the upstream") {
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  TestGateway gw(ws_config(up.port()));
  for (HeaderList framing :
       {HeaderList{{"Content-Length", "5"}}, HeaderList{{"Transfer-Encoding", "chunked"}}}) {
    HeaderList headers = kWebSocket;
    headers.insert(headers.end(), framing.begin(), framing.end());
    std::string body = framing[0].first == "Content-Length" ? "abcde" : "5\r\nabcde\r\n0\r\n\r\n";
    RawClient c(gw.port());
    std::string req = make_request("GET", "/ws", "example.com", headers);
    REQUIRE(c.send(req + body));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 400);
    CHECK(c.is_closed());
  }
  CHECK(up.connections() == 0);
}

TEST_CASE("upgrade: only the configured upgrade types tunnel, others are 403") {
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  auto config = ws_config(up.port());
  config.upgrade_types = {"x-custom", "WebSocket"};  // compared without case
  TestGateway gw(std::move(config));
  {
    RawClient c(gw.port());
    REQUIRE(c.send(make_request("GET", "/other", "example.com",
                                {{"Connection", "upgrade"}, {"Upgrade", "x-other"}})));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 403);
    CHECK(c.is_closed());
  }
  CHECK(up.connections() == 0);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/ws", "example.com", kWebSocket)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 101);
}

TEST_CASE("upgrade: an idle tunnel closes after stream_idle_timeout on the injected clock") {
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  ManualClock clock;
  auto config = ws_config(up.port());
  config.limits.stream_idle_timeout = 30s;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(std::move(config), 1, hooks, &clock);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/ws", "example.com", kWebSocket)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  REQUIRE(r->status == 101);
  REQUIRE(c.send(masked_frame("ping")));
  CHECK(unmasked_payload(c.read_exactly(6)) == "ping");
  clock.settle();
  clock.advance(29s);
  CHECK(!c.is_closed(100ms));  // still open before the timeout
  clock.advance(1s);
  CHECK(c.is_closed());
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].status == 101);
  CHECK(hooks->logs()[0].flags == "SI");
}

TEST_CASE("upgrade: a drain closes an idle tunnel after the drain timeout") {
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  auto config = ws_config(up.port());
  config.limits.drain_timeout = 200ms;
  TestGateway gw(std::move(config));
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/ws", "example.com", kWebSocket)));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  REQUIRE(r->status == 101);
  gw.stop();
  CHECK(c.is_closed());
}

TEST_CASE("tcp: a TCP route relays bytes both ways to its upstream") {
  TunnelUpstream echo(TunnelUpstream::Mode::echo);
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(tcp_config({TcpRoute{.name = "echo", .destinations = {destination("echo")}}},
                            {loopback_upstream("echo", {echo.port()})}));
  RawClient c(gw.port("tcp"));
  REQUIRE(c.send("hello over tcp"));
  c.shutdown_send();
  CHECK(c.read_all_until_close() == "hello over tcp");
}

TEST_CASE("tcp: weighted destinations split connections by weight with a fixed seed") {
  TunnelUpstream a(TunnelUpstream::Mode::echo, "A");
  TunnelUpstream b(TunnelUpstream::Mode::echo, "B");
  TcpRoute route{.name = "split", .destinations = {destination("a", 3), destination("b", 1)}};
  TestGateway gw(tcp_config(
      {route}, {loopback_upstream("a", {a.port()}), loopback_upstream("b", {b.port()})}));
  std::map<std::string, int> seen;
  constexpr int kConnections = 80;
  for (int i = 0; i < kConnections; ++i) ++seen[exchange_until_close(gw.port("tcp"), "x")];
  CHECK(seen["Ax"] + seen["Bx"] == kConnections);
  CHECK(seen["Ax"] > 45);  // expected 60
  CHECK(seen["Bx"] > 8);   // expected 20
  CHECK(a.connections() == static_cast<size_t>(seen["Ax"]));
}

TEST_CASE("tcp: the first route whose source subnets hold the client wins") {
  TunnelUpstream a(TunnelUpstream::Mode::echo, "A");
  TunnelUpstream b(TunnelUpstream::Mode::echo, "B");
  TcpRoute elsewhere{
      .name = "ten", .source_subnets = {"10.0.0.0/8"}, .destinations = {destination("a")}};
  TcpRoute local{
      .name = "local", .source_subnets = {"127.0.0.0/8"}, .destinations = {destination("b")}};
  TestGateway gw(tcp_config({elsewhere, local}, {loopback_upstream("a", {a.port()}),
                                                 loopback_upstream("b", {b.port()})}));
  CHECK(exchange_until_close(gw.port("tcp"), "x") == "Bx");
  CHECK(a.connections() == 0);
}

TEST_CASE("tcp: a bad source subnet or a missing upstream is refused at load") {
  TcpRoute bad{
      .name = "bad", .source_subnets = {"10.0.0.0/33"}, .destinations = {destination("a")}};
  auto r = compile(tcp_config({bad}, {loopback_upstream("a", {1})}));
  REQUIRE(!r.ok());
  CHECK(r.error().to_string().find("tcp_routes[0].source_subnets[0]") != std::string::npos);
  TcpRoute missing{.name = "m", .destinations = {destination("nope")}};
  auto r2 = compile(tcp_config({missing}, {loopback_upstream("a", {1})}));
  REQUIRE(!r2.ok());
  CHECK(r2.error().to_string().find("no upstream named \"nope\"") != std::string::npos);
}

TEST_CASE("tcp: an idle TCP connection closes after idle_timeout on the injected clock") {
  TunnelUpstream echo(TunnelUpstream::Mode::echo);
  ManualClock clock;
  auto config = tcp_config({TcpRoute{.name = "echo", .destinations = {destination("echo")}}},
                           {loopback_upstream("echo", {echo.port()})});
  config.limits.idle_timeout = 60s;
  TestGateway gw(std::move(config), 1, nullptr, &clock);
  RawClient c(gw.port("tcp"));
  REQUIRE(c.send("a"));
  // The echo came back through the relay: the gateway has seen its connect
  // complete and armed the idle deadline (an upstream accept alone can come
  // before the gateway's loop hears of it).
  REQUIRE(c.read_exactly(1) == "a");
  clock.settle();
  clock.advance(59s);
  CHECK(!c.is_closed(100ms));
  clock.advance(1s);
  CHECK(c.is_closed());
}

TEST_CASE("tcp: one access-log line per connection with bytes both ways and the route") {
  TempDir dir;
  std::string path = dir.file("access.log");
  TunnelUpstream echo(TunnelUpstream::Mode::echo, "v1 ");
  auto config = tcp_config({TcpRoute{.name = "echo", .destinations = {destination("echo")}}},
                           {loopback_upstream("echo", {echo.port()})});
  AccessLogConfig log;
  log.path = path;
  log.format =
      "%PROTOCOL% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_CLUSTER% "
      "%UPSTREAM_HOST% %ROUTE_NAME% %DOWNSTREAM_LOCAL_ADDRESS%\n";
  config.telemetry.access_logs.push_back(log);
  config.telemetry.access_log_flush_interval = {};
  TestGateway gw(std::move(config));
  CHECK(exchange_until_close(gw.port("tcp"), "hello") == "v1 hello");
  auto read = [&] { return read_file(path); };
  REQUIRE(wait_until([&] { return read().find('\n') != std::string::npos; }));
  // The local address is read before the socket closes (it was once empty).
  CHECK(read() == "- - 5 8 echo 127.0.0.1:" + std::to_string(echo.port()) +
                      " echo 127.0.0.1:" + std::to_string(gw.port("tcp")) + "\n");
}

TEST_CASE("upgrade over HTTP/2: an extended CONNECT websocket is an HTTP/1.1 upgrade upstream") {
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(h2_ws_config(up.port()), 1, hooks);
  h2::Peer peer(gw.port());
  REQUIRE(peer.ready());
  CHECK(peer.client.server_setting(h2::kEnableConnectProtocol) == 1);
  int32_t id = peer.client.open("CONNECT", "/ws", "example.com", kH2WebSocket);
  const h2::Response& r = peer.head_of(id);
  REQUIRE(r.status == 200);  // RFC 8441: a 2xx opens the tunnel, never a 101
  CHECK(!r.done);
  CHECK(!r.headers.contains("sec-websocket-accept"));  // the gateway's own key's answer
  CHECK(!r.headers.contains("upgrade"));
  // The upstream saw HTTP/1.1's handshake, with a key the gateway made up.
  auto heads = up.heads();
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].find("GET /ws HTTP/1.1\r\n") == 0);
  CHECK(heads[0].find("connection: upgrade\r\n") != std::string::npos);
  CHECK(heads[0].find("upgrade: websocket\r\n") != std::string::npos);
  CHECK(heads[0].find("sec-websocket-version: 13\r\n") != std::string::npos);
  auto key = heads[0].find("sec-websocket-key: ");
  REQUIRE(key != std::string::npos);
  CHECK(heads[0].find("\r\n", key) - key == 19 + 24);  // base64 of 16 bytes
  // Frames flow both ways as DATA.
  std::string want;
  for (std::string word : {"hello", "again"}) {
    peer.client.send(id, masked_frame(word));
    want += std::string("\x81") + static_cast<char>(word.size()) + word;
    CHECK(peer.body_of(id, want.size()).body == want);
  }
  // The client's END_STREAM half-closes: the upstream closes, the stream ends.
  peer.client.send(id, {}, true);
  peer.sock.exchange(peer.client, [&] { return peer.response(id).done; });
  CHECK(peer.response(id).done);
  CHECK(!peer.response(id).reset);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].status == 200);  // what the HTTP/2 client saw
  CHECK(hooks->logs()[0].upstream == "ws");
  CHECK(hooks->logs()[0].bytes_received == 2 * masked_frame("hello").size());
  // The connection still serves other streams.
  int32_t next = peer.client.open("CONNECT", "/ws", "example.com", kH2WebSocket);
  CHECK(peer.head_of(next).status == 200);
}

TEST_CASE("upgrade over HTTP/2: a client's own key is kept and the upstream's accept relayed") {
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  TestGateway gw(h2_ws_config(up.port()));
  h2::Peer peer(gw.port());
  REQUIRE(peer.ready());
  auto headers = kH2WebSocket;
  headers.emplace_back("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
  int32_t id = peer.client.open("CONNECT", "/ws", "example.com", headers);
  const h2::Response& r = peer.head_of(id);
  REQUIRE(r.status == 200);
  CHECK(r.headers.get("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  auto heads = up.heads();
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].find("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n") != std::string::npos);
}

TEST_CASE(
    "upgrade over HTTP/2: off by default, :protocol is a stream error and others are served") {
  TunnelUpstream up(TunnelUpstream::Mode::answer_200);
  TestGateway gw(ws_config(up.port()));
  h2::Peer peer(gw.port());
  REQUIRE(peer.ready());
  CHECK(peer.client.server_setting(h2::kEnableConnectProtocol) == 0);
  int32_t id = peer.client.open("CONNECT", "/ws", "example.com", kH2WebSocket);
  const h2::Response& r = peer.head_of(id);
  CHECK(r.status == 0);
  CHECK(r.reset == 0x1u);  // PROTOCOL_ERROR
  CHECK(up.connections() == 0);
  int32_t plain = peer.client.request("GET", "/", "example.com");
  const h2::Response& ok = peer.body_of(plain, SIZE_MAX);
  CHECK(ok.status == 200);
  CHECK(ok.body == "no");
}

TEST_CASE("upgrade over HTTP/2: a refused upgrade type or a non-101 answer ends the stream") {
  SUBCASE("the upgrade type is not allowed: 403, the upstream never asked") {
    TunnelUpstream up(TunnelUpstream::Mode::websocket);
    GatewayConfig config = h2_ws_config(up.port());
    config.upgrade_types = {"x-custom"};
    TestGateway gw(std::move(config));
    h2::Peer peer(gw.port());
    REQUIRE(peer.ready());
    int32_t id = peer.client.open("CONNECT", "/ws", "example.com", kH2WebSocket);
    const h2::Response& r = peer.body_of(id, SIZE_MAX);
    CHECK(r.status == 403);
    CHECK(r.done);
    CHECK(up.connections() == 0);
  }
  SUBCASE("the upstream answers 200 instead of 101: relayed, and no tunnel") {
    TunnelUpstream up(TunnelUpstream::Mode::answer_200);
    TestGateway gw(h2_ws_config(up.port()));
    h2::Peer peer(gw.port());
    REQUIRE(peer.ready());
    int32_t id = peer.client.open("CONNECT", "/ws", "example.com", kH2WebSocket);
    peer.client.send(id, masked_frame("early"));
    const h2::Response& r = peer.body_of(id, SIZE_MAX);
    CHECK(r.status == 200);
    CHECK(r.body == "no");
    CHECK(r.done);
    REQUIRE(up.heads().size() == 1);  // the tunnel bytes never became a request
  }
}

TEST_CASE("upgrade over HTTP/2: a plain CONNECT is 404 NR, as over HTTP/1.1") {
  TunnelUpstream up(TunnelUpstream::Mode::echo);
  TestGateway gw(h2_ws_config(up.port()));
  h2::Peer peer(gw.port());
  REQUIRE(peer.ready());
  // nghttp2 builds a plain CONNECT from :authority alone.
  int32_t id = peer.client.request("CONNECT", "", "example.com:443");
  const h2::Response& r = peer.body_of(id, SIZE_MAX);
  CHECK(r.status == 404);
  CHECK(up.connections() == 0);
}

}  // namespace tunnel_test
