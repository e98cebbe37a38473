// Access logs through a Gateway with real sockets: Istio's default TEXT
// line byte for byte, the JSON keys issue 13 lists, format errors and
// unopenable files rejected at apply (the running config kept), writers kept
// across reloads, and rotation with reopen_access_logs().

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/raw_client.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace access_log_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

size_t lines_in(const std::string& path) {
  std::string text = read_file(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// 2026-12-01T20:17:00.310Z, and a gateway clock that does not move: the
// line's start time and duration are exact.
const auto kWallTime = std::chrono::system_clock::time_point(1796156220s + 310ms);

struct LoggedGateway {
  ManualClock clock;
  std::unique_ptr<Gateway> gateway;

  explicit LoggedGateway(GatewayConfig config) {
    GatewayOptions options;
    options.workers = 2;
    options.seed = 7;
    options.clock = clock.fn();
    options.wall_clock = [] { return kWallTime; };
    gateway = std::make_unique<Gateway>(std::move(options));
    clock.drive(*gateway);
    Status st = gateway->apply(std::move(config));
    REQUIRE_MESSAGE(st.ok(), st.error().to_string());
    gateway->start();
  }
  ~LoggedGateway() {
    gateway->stop();
    clock.forget(*gateway);
  }
  uint16_t port() const { return gateway->port("main"); }
};

GatewayConfig logged_config(uint16_t upstream_port, AccessLogConfig log) {
  GatewayConfig c = single_upstream_config(upstream_port);
  c.telemetry.access_logs.push_back(std::move(log));
  c.telemetry.access_log_flush_interval = {};  // the tests read the file right after a request
  return c;
}

AccessLogConfig log_to(const std::string& path) {
  AccessLogConfig log;
  log.path = path;
  return log;
}

const char* kRequest =
    "GET /status/418?x=1 HTTP/1.1\r\nHost: httpbin.example.com\r\nUser-Agent: curl/7.88.1\r\n"
    "X-Request-Id: 5c1f1c1a-27d3-4b0a-9b61-0cbbd2d1e1f3\r\nX-Forwarded-For: 192.0.2.9\r\n\r\n";

}  // namespace

TEST_CASE("access log: Istio's default TEXT line, byte for byte") {
  TempDir tmp;
  FakeUpstream up("backend");  // answers 200 "backend"
  std::string path = tmp.file("access.log");
  LoggedGateway gw(logged_config(up.port(), log_to(path)));

  RawClient client(gw.port());
  REQUIRE(client.send(kRequest));
  auto r = client.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);
  REQUIRE(wait_until([&] { return lines_in(path) == 1; }));
  std::string expected = fmt::format(
      "[2026-12-01T20:17:00.310Z] \"GET /status/418?x=1 HTTP/1.1\" 200 - via_upstream - \"-\" 0 7 "
      "0 - \"192.0.2.9, 127.0.0.1\" \"curl/7.88.1\" \"5c1f1c1a-27d3-4b0a-9b61-0cbbd2d1e1f3\" "
      "\"httpbin.example.com\" \"127.0.0.1:{}\" backend - 127.0.0.1:{} 127.0.0.1:{} - default\n",
      up.port(), gw.port(), client.local_port());
  CHECK(read_file(path) == expected);
}

TEST_CASE("access log: the path as received, before the route's rewrite") {
  TempDir tmp;
  FakeUpstream up("backend");
  std::string path = tmp.file("access.log");
  GatewayConfig c = logged_config(up.port(), log_to(path));
  c.telemetry.access_logs[0].format = "%REQ(:PATH)% %REQ(:AUTHORITY)% %RESPONSE_CODE%\n";
  Rewrite rewrite;
  rewrite.uri_regex = std::pair<std::string, std::string>("^/old/(.*)$", "/v2/old/\\1");
  rewrite.authority = "internal.example.com";
  c.routers[0].virtual_hosts[0].routes[0].rewrite = rewrite;
  LoggedGateway gw(std::move(c));
  RawClient client(gw.port());
  REQUIRE(client.send("GET /old/x HTTP/1.1\r\nHost: a.example.com\r\n\r\n"));
  REQUIRE(client.read_response());
  REQUIRE(up.wait_for_requests(1));
  CHECK(up.last_request()->target == "/v2/old/x");
  CHECK(up.last_request()->header("host") == "internal.example.com");
  REQUIRE(wait_until([&] { return lines_in(path) == 1; }));
  CHECK(read_file(path) == "/old/x a.example.com 200\n");
}

TEST_CASE("access log: a gateway-made reply is logged with its flags and details") {
  TempDir tmp;
  FakeUpstream up("backend");
  std::string path = tmp.file("access.log");
  GatewayConfig c = logged_config(up.port(), log_to(path));
  c.telemetry.access_logs[0].format =
      "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %ROUTE_NAME% %UPSTREAM_HOST%\n";
  c.routers[0].virtual_hosts[0].domains = {"only.example.com"};
  LoggedGateway gw(std::move(c));
  RawClient client(gw.port());
  REQUIRE(client.send("GET / HTTP/1.1\r\nHost: other.example.com\r\n\r\n"));
  auto r = client.read_response();
  REQUIRE(r);
  CHECK(r->status == 404);
  REQUIRE(wait_until([&] { return lines_in(path) == 1; }));
  CHECK(read_file(path) == "404 NR route_not_found - -\n");
}

TEST_CASE("access log: JSON lines carry every key issue 13 lists") {
  TempDir tmp;
  FakeUpstream up("backend");
  std::string path = tmp.file("access.json");
  AccessLogConfig log = log_to(path);
  log.encoding = AccessLogConfig::Encoding::json;
  LoggedGateway gw(logged_config(up.port(), log));
  RawClient client(gw.port());
  REQUIRE(client.send(kRequest));
  REQUIRE(client.read_response());
  REQUIRE(wait_until([&] { return lines_in(path) == 1; }));
  std::string line = read_file(path);
  CHECK(line.front() == '{');
  CHECK(line.ends_with("}\n"));
  for (const char* key :
       {"start_time", "method", "path", "protocol", "response_code", "response_flags",
        "response_code_details", "bytes_received", "bytes_sent", "duration", "upstream_host",
        "upstream_cluster", "route_name", "x_forwarded_for", "user_agent", "x_request_id",
        "authority", "requested_server_name"})
    CHECK_MESSAGE(line.find(fmt::format("\"{}\":", key)) != std::string::npos, key);
  CHECK(line.find("\"start_time\":\"2026-12-01T20:17:00.310Z\"") != std::string::npos);
  CHECK(line.find("\"response_code\":200") != std::string::npos);
  CHECK(line.find("\"bytes_sent\":7") != std::string::npos);
  CHECK(line.find("\"path\":\"/status/418?x=1\"") != std::string::npos);
  CHECK(line.find(fmt::format("\"upstream_host\":\"127.0.0.1:{}\"", up.port())) !=
        std::string::npos);
  CHECK(line.find("\"requested_server_name\":null") != std::string::npos);
}

TEST_CASE("access log: a bad format or an unopenable file rejects the config whole") {
  TempDir tmp;
  FakeUpstream up("backend");
  std::string path = tmp.file("access.log");
  LoggedGateway gw(logged_config(up.port(), log_to(path)));

  AccessLogConfig bad = log_to(tmp.file("other.log"));
  bad.format = "%REQ(:METHOD)% %NO_SUCH_OPERATOR%\n";
  Status st = gw.gateway->apply(logged_config(up.port(), bad));
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().object == "GatewayConfig");
  CHECK(st.error().field == "telemetry.access_logs[0].format");
  CHECK(st.error().message.find("NO_SUCH_OPERATOR") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp.file("other.log")));

  Status unopenable = gw.gateway->apply(logged_config(up.port(), log_to(tmp.file("no/dir.log"))));
  REQUIRE_FALSE(unopenable.ok());
  CHECK(unopenable.error().to_string().find(tmp.file("no/dir.log")) != std::string::npos);

  // The running config still logs to its file.
  RawClient client(gw.port());
  REQUIRE(client.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(client.read_response());
  REQUIRE(wait_until([&] { return lines_in(path) == 1; }));
}

TEST_CASE("access log: a reload keeps the file, a new path opens at apply, rotation reopens") {
  TempDir tmp;
  FakeUpstream up("backend");
  std::string path = tmp.file("access.log");
  LoggedGateway gw(logged_config(up.port(), log_to(path)));
  auto request = [&](const char* target) {
    RawClient client(gw.port());
    REQUIRE(client.send(fmt::format("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", target)));
    REQUIRE(client.read_response());
  };
  request("/one");
  REQUIRE(wait_until([&] { return lines_in(path) == 1; }));

  // Same path: the same writer goes on appending to the same file.
  REQUIRE(gw.gateway->apply(logged_config(up.port(), log_to(path))).ok());
  request("/two");
  REQUIRE(wait_until([&] { return lines_in(path) == 2; }));

  // Rotation: renamed away, then reopened; the next line starts a new file.
  fs::rename(path, tmp.file("access.log.1"));
  gw.gateway->reopen_access_logs();
  REQUIRE(wait_until([&] { return fs::exists(path); }));
  request("/three");
  REQUIRE(wait_until([&] { return lines_in(path) == 1; }));
  CHECK(read_file(path).find("/three") != std::string::npos);
  CHECK(lines_in(tmp.file("access.log.1")) == 2);

  // A second log on a new path: opened at apply, both get every line.
  GatewayConfig two = logged_config(up.port(), log_to(path));
  two.telemetry.access_logs.push_back(log_to(tmp.file("second.log")));
  REQUIRE(gw.gateway->apply(std::move(two)).ok());
  CHECK(fs::exists(tmp.file("second.log")));
  request("/four");
  REQUIRE(wait_until([&] { return lines_in(path) == 2 && lines_in(tmp.file("second.log")) == 1; }));
}

TEST_CASE("access log: buffered lines reach the file at flush_access_logs()") {
  TempDir tmp;
  FakeUpstream up("backend");
  std::string path = tmp.file("access.log");
  GatewayConfig c = logged_config(up.port(), log_to(path));
  // Longer than any test: only the explicit flush writes the line.
  c.telemetry.access_log_flush_interval = std::chrono::hours(1);
  LoggedGateway gw(std::move(c));
  RawClient client(gw.port());
  REQUIRE(client.send(kRequest));
  REQUIRE(client.read_response());
  // The worker logs the line just after the response; flushing until it is
  // there waits for that, not for time.
  REQUIRE(wait_until([&] {
    gw.gateway->flush_access_logs();
    return lines_in(path) == 1;
  }));
  CHECK(read_file(path).find("\"GET /status/418?x=1 HTTP/1.1\" 200") != std::string::npos);
}

}  // namespace access_log_test
