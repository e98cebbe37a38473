// Access-log formats (lib/telemetry/access_log): Istio's default TEXT line
// byte for byte, custom format strings, JSON typing and escaping, and
// format errors at load.

#include <doctest/doctest.h>

#include <string>

#include "telemetry/access_log.hpp"

namespace test_access_log {

using namespace sluice;
using namespace sluice::telemetry;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  RequestHead request;
  Headers response;
  LogRecord record;

  Fixture() {
    request.method = "GET";
    request.target = "/status/418?x=1";
    request.authority = "httpbin.example.com";
    request.headers.add("user-agent", "curl/7.88.1");
    request.headers.add("x-request-id", "5c1f1c1a-27d3-4b0a-9b61-0cbbd2d1e1f3");
    response.add("x-envoy-upstream-service-time", "3");
    // 2026-12-01T20:17:00.310Z
    record.start_time = std::chrono::system_clock::time_point(1796156220s + 310ms);
    record.request = &request;
    record.response_headers = &response;
    record.response_code = 418;
    record.response_code_details = "via_upstream";
    record.bytes_received = 0;
    record.bytes_sent = 135;
    record.duration = 4567us;
    record.upstream_host = "10.0.0.7:80";
    record.upstream_cluster = "outbound|8000||httpbin.default.svc.cluster.local";
    record.upstream_local_address = "10.0.0.2:51234";
    record.downstream_local_address = "10.0.0.2:8080";
    record.downstream_remote_address = "192.0.2.9:40000";
    record.route_name = "default/httpbin/http[0]";
  }
};

std::string line(const LogFormat& f, const LogRecord& r) {
  std::string out;
  f.append(r, out);
  return out;
}

std::string error_of(std::string_view format) {
  auto f = LogFormat::text(format, "meshConfig.accessLogFormat");
  REQUIRE_FALSE(f.ok());
  return f.error().to_string();
}

}  // namespace

TEST_CASE("access log: Istio's default TEXT line") {
  Fixture x;
  CHECK(line(LogFormat::istio_text(), x.record) ==
        "[2026-12-01T20:17:00.310Z] \"GET /status/418?x=1 HTTP/1.1\" 418 - via_upstream - \"-\" "
        "0 135 4 3 \"-\" \"curl/7.88.1\" \"5c1f1c1a-27d3-4b0a-9b61-0cbbd2d1e1f3\" "
        "\"httpbin.example.com\" \"10.0.0.7:80\" outbound|8000||httpbin.default.svc.cluster.local "
        "10.0.0.2:51234 10.0.0.2:8080 192.0.2.9:40000 - default/httpbin/http[0]\n");
  // A local reply: no upstream, flags set, X-Envoy-Original-Path preferred.
  x.record.upstream_host = {};
  x.record.upstream_cluster = {};
  x.record.upstream_local_address = {};
  x.record.response_code = 404;
  x.record.response_flags = {ResponseFlag::no_route_found};
  x.record.response_code_details = "route_not_found";
  x.request.headers.add("x-envoy-original-path", "/original");
  x.record.response_headers = nullptr;
  x.record.requested_server_name = "httpbin.example.com";
  CHECK(line(LogFormat::istio_text(), x.record) ==
        "[2026-12-01T20:17:00.310Z] \"GET /original HTTP/1.1\" 404 NR route_not_found - \"-\" 0 "
        "135 4 - \"-\" \"curl/7.88.1\" \"5c1f1c1a-27d3-4b0a-9b61-0cbbd2d1e1f3\" "
        "\"httpbin.example.com\" \"-\" - - 10.0.0.2:8080 192.0.2.9:40000 httpbin.example.com "
        "default/httpbin/http[0]\n");
}

TEST_CASE("access log: custom formats, lengths, times and addresses") {
  Fixture x;
  auto f = LogFormat::text(
      "%REQ(USER-AGENT):4% %REQ(X-MISSING?:AUTHORITY)% %START_TIME(%s.%3f)% "
      "%START_TIME(%Y/%m/%d %6f)% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "
      "%UPSTREAM_REQUEST_ATTEMPT_COUNT% %RESP(NOPE)%",
      "test");
  REQUIRE_MESSAGE(f.ok(), f.error().to_string());
  x.record.attempts = 2;
  CHECK(line(*f, x.record) ==
        "curl httpbin.example.com 1796156220.310 2026/12/01 310000 192.0.2.9 2 -");
  x.record.downstream_remote_address = "[2001:db8::1]:443";
  auto v6 = LogFormat::text("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "test");
  REQUIRE(v6.ok());
  CHECK(line(*v6, x.record) == "2001:db8::1");
}

TEST_CASE("access log: header operators read each header's first value, in any case") {
  Fixture x;
  x.request.headers.clear();
  x.request.headers.add("User-Agent", "first");
  x.request.headers.add("user-agent", "second");
  x.request.headers.add("X-Empty", "");
  x.request.headers.add("X-Forwarded-For", "1.2.3.4");
  x.response.add("X-B", "b");
  x.record.forwarded_client = "192.0.2.9";
  auto f = LogFormat::text(
      "%REQ(user-agent)% %REQ(USER-AGENT):3% %REQ(X-MISSING?User-Agent)% [%REQ(x-empty)%] "
      "%REQ(x-missing)% %RESP(X-A?x-b)% %RESP(x-b)% %REQ(X-B)% %REQ(X-FORWARDED-FOR)%",
      "test");
  REQUIRE_MESSAGE(f.ok(), f.error().to_string());
  CHECK(line(*f, x.record) == "first fir first [] - b b - 1.2.3.4, 192.0.2.9");
  // The next line finds its own headers: nothing carries over.
  x.request.headers.clear();
  x.request.headers.add("x-b", "request's");
  x.response.clear();
  CHECK(line(*f, x.record) == "- - - [-] - - - request's 192.0.2.9");
  x.record.forwarded_client = {};
  x.request.headers.add("x-forwarded-for", "5.6.7.8");
  CHECK(line(*f, x.record).ends_with(" 5.6.7.8"));
}

TEST_CASE("access log: the path and authority as received, before a rewrite") {
  Fixture x;
  auto f = LogFormat::text("%REQ(:AUTHORITY)%%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "test");
  REQUIRE(f.ok());
  x.record.received_target = "/as/received";
  x.record.received_authority = "";  // set, though empty: not the rewritten one
  CHECK(line(*f, x.record) == "/as/received");
  x.record.received_authority = "received.example.com";
  CHECK(line(*f, x.record) == "received.example.com/as/received");
  x.record.received_target = {};
  x.record.received_authority = {};
  CHECK(line(*f, x.record) == "httpbin.example.com/status/418?x=1");
}

TEST_CASE("access log: JSON fields each read their own headers") {
  Fixture x;
  x.request.headers.add("x-a", "request a");
  x.request.headers.add("x-b", "request b");
  x.response.add("x-b", "response b");
  auto f = LogFormat::json({{"a", "%REQ(X-A)%"},
                            {"rb", "%REQ(X-B)%"},
                            {"resp", "%RESP(X-B)%"},
                            {"both", "%REQ(X-B)%/%RESP(X-A?X-B)%"}},
                           "test");
  REQUIRE(f.ok());
  CHECK(line(*f, x.record) ==
        "{\"a\":\"request a\",\"rb\":\"request b\",\"resp\":\"response "
        "b\",\"both\":\"request b/response b\"}\n");
}

TEST_CASE("access log: JSON lines type numbers, escape strings and null what is unset") {
  Fixture x;
  x.request.headers.add("x-forwarded-for", "1.2.3.4");
  x.request.headers.set("user-agent", "a \"quoted\" \\ agent\x01");
  std::string json = line(LogFormat::istio_json(), x.record);
  CHECK(json.back() == '\n');
  CHECK(json.find("\"start_time\":\"2026-12-01T20:17:00.310Z\"") != std::string::npos);
  CHECK(json.find("\"method\":\"GET\"") != std::string::npos);
  CHECK(json.find("\"path\":\"/status/418?x=1\"") != std::string::npos);
  CHECK(json.find("\"protocol\":\"HTTP/1.1\"") != std::string::npos);
  CHECK(json.find("\"response_code\":418,") != std::string::npos);
  CHECK(json.find("\"response_flags\":\"-\"") != std::string::npos);
  CHECK(json.find("\"bytes_sent\":135,") != std::string::npos);
  CHECK(json.find("\"duration\":4,") != std::string::npos);
  CHECK(json.find("\"requested_server_name\":null") != std::string::npos);
  CHECK(json.find("\"x_request_id\":\"5c1f1c1a-27d3-4b0a-9b61-0cbbd2d1e1f3\"") !=
        std::string::npos);
  CHECK(json.find("\"user_agent\":\"a \\\"quoted\\\" \\\\ agent\\u0001\"") != std::string::npos);
  CHECK(json.find("\"upstream_cluster\":\"outbound|8000||httpbin.default.svc.cluster.local\"") !=
        std::string::npos);

  auto custom = LogFormat::json({{"where", "%REQ(:AUTHORITY)%%REQ(:PATH)%"},
                                 {"sni", "[%REQUESTED_SERVER_NAME%]"},
                                 {"constant", "x"}},
                                "test");
  REQUIRE(custom.ok());
  CHECK(line(*custom, x.record) ==
        "{\"where\":\"httpbin.example.com/status/418?x=1\",\"sni\":\"[-]\",\"constant\":\"x\"}\n");
}

TEST_CASE("access log: format errors name the operator and the position") {
  CHECK(error_of("%BOGUS%") ==
        "meshConfig.accessLogFormat: at position 0: unknown operator %BOGUS%");
  CHECK(error_of("x %REQ%") ==
        "meshConfig.accessLogFormat: at position 2: %REQ% needs a header: %REQ(NAME)%");
  CHECK(error_of("%REQ(A%") == "meshConfig.accessLogFormat: at position 0: unclosed '('");
  CHECK(error_of("%DURATION(x)%") ==
        "meshConfig.accessLogFormat: at position 0: %DURATION% takes no argument");
  CHECK(error_of("%DURATION") ==
        "meshConfig.accessLogFormat: at position 0: %DURATION is not closed by '%'");
  CHECK(error_of("100% sure") ==
        "meshConfig.accessLogFormat: at position 3: '%' does not start an operator (%NAME%)");
  CHECK(error_of("%REQ(A):0%") ==
        "meshConfig.accessLogFormat: at position 0: ':' wants a length greater than 0");
  auto json = LogFormat::json({{"ok", "%DURATION%"}, {"bad", "%NOPE%"}}, "accessLogFormat");
  REQUIRE_FALSE(json.ok());
  CHECK(json.error().to_string() == "accessLogFormat: bad: at position 0: unknown operator %NOPE%");
}

TEST_CASE("access log: long values grow the line, set-but-empty values are not unset") {
  Fixture x;
  std::string agent(5000, 'a');
  x.request.headers.set("user-agent", agent);
  x.request.headers.add("x-empty", "");
  auto f =
      LogFormat::text("[%REQ(USER-AGENT)%] <%REQ(X-EMPTY)%> %RESPONSE_CODE% %BYTES_SENT%|", "test");
  REQUIRE(f.ok());
  // Appended after what the string already holds, which is kept.
  std::string out = "before ";
  f->append(x.record, out);
  CHECK(out == "before [" + agent + "] <> 418 135|");

  // Many numbers in one line: each is written before the next is made.
  std::string many;
  for (int i = 0; i < 40; ++i) many += "%BYTES_SENT%-%RESPONSE_CODE%,";
  auto m = LogFormat::text(many, "test");
  REQUIRE(m.ok());
  std::string expect;
  for (int i = 0; i < 40; ++i) expect += "135-418,";
  CHECK(line(*m, x.record) == expect);

  // In JSON, text before a single operator makes the value a string.
  auto j = LogFormat::json({{"sent", "n=%BYTES_SENT%"}, {"code", "%RESPONSE_CODE%"}}, "test");
  REQUIRE(j.ok());
  CHECK(line(*j, x.record) == "{\"sent\":\"n=135\",\"code\":418}\n");
}

TEST_CASE("access log: GRPC_STATUS as Envoy names it, a number, or unset") {
  Fixture x;
  auto f = LogFormat::text(
      "%GRPC_STATUS% %GRPC_STATUS(CAMEL_STRING)% %GRPC_STATUS(SNAKE_STRING)% "
      "%GRPC_STATUS(NUMBER)% %GRPC_STATUS_NUMBER%\n",
      "test");
  REQUIRE(f.ok());
  CHECK(line(*f, x.record) == "- - - - -\n");  // no gRPC status seen
  x.record.grpc_status = 5;
  CHECK(line(*f, x.record) == "NotFound NotFound NOT_FOUND 5 5\n");
  x.record.grpc_status = 0;
  CHECK(line(*f, x.record) == "Ok Ok OK 0 0\n");
  x.record.grpc_status = 1;
  CHECK(line(*f, x.record) == "Canceled Canceled CANCELLED 1 1\n");
  x.record.grpc_status = 42;  // beyond the table: the number
  CHECK(line(*f, x.record) == "42 42 42 42 42\n");

  auto json = LogFormat::json({{"n", "%GRPC_STATUS_NUMBER%"}, {"s", "%GRPC_STATUS%"}}, "test");
  REQUIRE(json.ok());
  x.record.grpc_status = 14;
  CHECK(line(*json, x.record) == "{\"n\":14,\"s\":\"Unavailable\"}\n");
  x.record.grpc_status = -1;
  CHECK(line(*json, x.record) == "{\"n\":null,\"s\":null}\n");

  CHECK(error_of("%GRPC_STATUS(LOUD)%") ==
        "meshConfig.accessLogFormat: at position 0: %GRPC_STATUS(...)% takes CAMEL_STRING, "
        "SNAKE_STRING or NUMBER");
}

}  // namespace test_access_log
