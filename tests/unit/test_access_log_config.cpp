// GatewayConfig::telemetry.access_logs through compile(): formats compiled
// once into the snapshot, and errors naming the object and field.

#include <doctest/doctest.h>

#include "config/snapshot.hpp"

namespace test_access_log_config {

using namespace sluice;

namespace {

std::string error_of(AccessLogConfig log) {
  GatewayConfig c;
  c.telemetry.access_logs.push_back(std::move(log));
  auto s = compile(std::move(c));
  REQUIRE_FALSE(s.ok());
  return s.error().to_string();
}

}  // namespace

TEST_CASE("access log config: compiled into the snapshot, none costs nothing") {
  GatewayConfig none;
  auto empty = compile(none);
  REQUIRE(empty.ok());
  CHECK((*empty)->access_logs == nullptr);

  GatewayConfig c;
  AccessLogConfig text;
  text.path = "/tmp/a.log";
  AccessLogConfig json;
  json.path = "-";
  json.encoding = AccessLogConfig::Encoding::json;
  json.json_fields = {{"code", "%RESPONSE_CODE%"}};
  c.telemetry.access_logs = {text, json};
  auto s = compile(c);
  REQUIRE_MESSAGE(s.ok(), (s.ok() ? std::string() : s.error().to_string()));
  REQUIRE((*s)->access_logs != nullptr);
  REQUIRE((*s)->access_logs->logs.size() == 2);
  CHECK((*s)->access_logs->logs[1].path == "-");
  CHECK((*s)->access_logs->logs[0].writer == nullptr);  // filled by Gateway::apply

  telemetry::LogRecord r;
  r.response_code = 503;
  std::string line;
  (*s)->access_logs->logs[1].format.append(r, line);
  CHECK(line == "{\"code\":503}\n");
}

TEST_CASE("access log config: errors name the object and field") {
  AccessLogConfig bad;
  bad.path = "/tmp/a.log";
  bad.format = "%REQ(:METHOD)% %NOT_AN_OPERATOR%";
  std::string e = error_of(bad);
  CHECK(e.starts_with("GatewayConfig: telemetry.access_logs[0].format: "));
  CHECK(e.find("NOT_AN_OPERATOR") != std::string::npos);

  AccessLogConfig json;
  json.path = "/tmp/a.log";
  json.encoding = AccessLogConfig::Encoding::json;
  json.json_fields = {{"ok", "%PROTOCOL%"}, {"who", "%NOPE%"}};
  CHECK(error_of(json).starts_with("GatewayConfig: telemetry.access_logs[0].json_fields.who: "));

  AccessLogConfig nopath;
  CHECK(error_of(nopath) == "GatewayConfig: telemetry.access_logs[0].path: must not be empty");

  AccessLogConfig mixed;
  mixed.path = "/tmp/a.log";
  mixed.json_fields = {{"a", "%PROTOCOL%"}};
  CHECK(error_of(mixed) ==
        "GatewayConfig: telemetry.access_logs[0].json_fields: only with the JSON encoding");

  // A log the Istio loader made names its resource instead.
  AccessLogConfig from_istio = bad;
  from_istio.source = "Telemetry istio-system/mesh-default: accessLogging[0]";
  CHECK(error_of(from_istio)
            .starts_with("Telemetry istio-system/mesh-default: accessLogging[0]: format: "));
}

TEST_CASE("access log config: the flush interval is Istio's 1 s, and negative is an error") {
  GatewayConfig c;
  CHECK(c.telemetry.access_log_flush_interval == std::chrono::seconds(1));
  c.telemetry.access_logs.push_back({.path = "/tmp/a.log"});
  c.telemetry.access_log_flush_interval = std::chrono::milliseconds(250);
  auto s = compile(c);
  REQUIRE(s.ok());
  CHECK((*s)->access_logs->flush_interval == std::chrono::milliseconds(250));
  c.telemetry.access_log_flush_interval = std::chrono::milliseconds(-1);
  auto bad = compile(c);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().to_string() ==
        "GatewayConfig: telemetry.access_log_flush_interval: must be >= 0");
}

}  // namespace test_access_log_config
