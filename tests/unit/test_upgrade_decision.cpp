// decide_upgrade (lib/proxy/tunnel.hpp): which Upgrade requests tunnel.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "http/parser.hpp"
#include "http/serializer.hpp"
#include "proxy/tunnel.hpp"

namespace test_upgrade_decision {

using namespace sluice;
using Verdict = UpgradeDecision::Verdict;

namespace {

const std::vector<std::string> kAllowed = {"websocket"};

Headers with(std::vector<std::pair<std::string, std::string>> list) {
  Headers h;
  for (auto& [n, v] : list) h.add(n, v);
  return h;
}

}  // namespace

TEST_CASE("upgrade decision: no upgrade asked is none") {
  auto d = decide_upgrade(with({{"upgrade", "websocket"}}), false, false, kAllowed);
  CHECK(d.verdict == Verdict::none);
}

TEST_CASE("upgrade decision: an allowed protocol tunnels, compared without case") {
  auto d = decide_upgrade(with({{"Upgrade", "WebSocket"}}), true, false, kAllowed);
  CHECK(d.verdict == Verdict::allowed);
  CHECK(d.token == "websocket");
  auto versioned = decide_upgrade(with({{"upgrade", "websocket/13"}}), true, false, kAllowed);
  CHECK(versioned.verdict == Verdict::allowed);
  CHECK(versioned.token == "websocket/13");
}

TEST_CASE("upgrade decision: other protocols, lists and repeated headers are refused") {
  CHECK(decide_upgrade(with({{"upgrade", "foo"}}), true, false, kAllowed).verdict ==
        Verdict::refused);
  CHECK(decide_upgrade(with({{"upgrade", "websocket, foo"}}), true, false, kAllowed).verdict ==
        Verdict::refused);
  CHECK(decide_upgrade(with({{"upgrade", "websocket"}, {"upgrade", "websocket"}}), true, false,
                       kAllowed)
            .verdict == Verdict::refused);
  CHECK(decide_upgrade(with({{"upgrade", "/13"}}), true, false, kAllowed).verdict ==
        Verdict::refused);
  CHECK(decide_upgrade(with({{"upgrade", "websocket"}}), true, false, {}).verdict ==
        Verdict::refused);
}

TEST_CASE("upgrade decision: a body with an upgrade is refused before the type is looked at") {
  auto d = decide_upgrade(with({{"upgrade", "websocket"}}), true, true, kAllowed);
  CHECK(d.verdict == Verdict::has_body);
}

TEST_CASE("response parser: a 101 is a final head only when an upgrade was asked for") {
  const std::string wire =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
      "\x81\x02hi";
  http::Parser asked(http::Parser::Kind::response);
  asked.expect_upgrade(true);
  size_t used = asked.feed(wire.data(), wire.size());
  REQUIRE(asked.error() == http::ParseError::none);
  CHECK(asked.head_done());
  CHECK(asked.response().status == 101);
  CHECK(wire.substr(used) == "\x81\x02hi");  // the tunnel's bytes are left alone

  http::Parser unasked(http::Parser::Kind::response);
  unasked.feed(wire.data(), wire.size());
  CHECK(unasked.error() == http::ParseError::bad_response);
  // reset() forgets the permission.
  asked.reset();
  asked.feed(wire.data(), wire.size());
  CHECK(asked.error() == http::ParseError::bad_response);
}

TEST_CASE("forwarded request head: an allowed upgrade keeps Connection and Upgrade") {
  RequestHead head;
  head.target = "/ws";
  head.headers.add("host", "example.com");
  std::string out;
  http::Forwarding f{.client_ip = "10.0.0.1", .proto = "http", .upgrade = "websocket"};
  http::append_forwarded_request_head(out, head, f);
  CHECK(out.find("connection: upgrade\r\nupgrade: websocket\r\n") != std::string::npos);
  std::string plain;
  http::append_forwarded_request_head(plain, head, http::Forwarding{.client_ip = "10.0.0.1"});
  CHECK(plain.find("upgrade") == std::string::npos);
}

}  // namespace test_upgrade_decision
