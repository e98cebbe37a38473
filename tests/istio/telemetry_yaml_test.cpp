// The Istio side of telemetry: meshConfig accessLogFile / accessLogEncoding /
// accessLogFormat, extensionProviders envoyFileAccessLog and opentelemetry,
// defaultProviders, and Telemetry resources (accessLogging, tracing,
// metrics) into GatewayConfig::telemetry; errors naming resource and field.
// Then sluice-ingress: a request's default line, --access-log-format json,
// and rotation with SIGUSR1 on the real binary.

#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "child.hpp"
#include "istio_test_util.hpp"
#include "support/fake_upstream.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace telemetry_yaml_test {

using namespace sluice;
using namespace sluice::test;
namespace fs = std::filesystem;

namespace {

istio::MeshSettings mesh_of(const std::string& yaml) {
  auto m = istio::parse_mesh_config(yaml, "mesh.yaml");
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? std::string() : m.error().to_string()));
  return std::move(m).value();
}

std::string mesh_error(const std::string& yaml) {
  auto m = istio::parse_mesh_config(yaml, "mesh.yaml");
  REQUIRE_MESSAGE(!m.ok(), "expected the MeshConfig to be rejected");
  return m.error().to_string();
}

// A gateway and route, so that translate() has something to serve.
const char* kSite = R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: site}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: backend}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backend}
spec:
  hosts: [backend]
  ports: [{number: 80, name: http, targetPort: __PORT__}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
)";

std::string site(uint16_t port = 19999) {
  return render(kSite, {{"PORT", std::to_string(port)}});
}

Result<istio::LoadedConfig> load_with(const std::string& mesh_yaml, const std::string& extra) {
  istio::TranslateOptions t;
  auto mesh = mesh_of(mesh_yaml);
  istio::apply_mesh(mesh, t);
  return istio::load_string(site() + "\n---\n" + extra, t);
}

TelemetryConfig telemetry_of(const std::string& mesh_yaml, const std::string& extra = "") {
  auto r = load_with(mesh_yaml, extra);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().to_string()));
  return r->config.telemetry;
}

std::string load_failure(const std::string& mesh_yaml, const std::string& extra) {
  auto r = load_with(mesh_yaml, extra);
  REQUIRE_MESSAGE(!r.ok(), "expected the configuration to be rejected");
  return r.error().to_string();
}

const char* kProviders = R"(
extensionProviders:
- name: file-json
  envoyFileAccessLog:
    path: /var/log/json.log
    logFormat:
      labels: {code: "%RESPONSE_CODE%", path: "%REQ(:PATH)%"}
- name: file-text
  envoyFileAccessLog:
    path: /var/log/text.log
    logFormat: {text: "%REQ(:METHOD)% %RESPONSE_CODE%\n"}
- name: otel
  opentelemetry: {service: opentelemetry-collector.observability.svc.cluster.local, port: 4318}
)";

}  // namespace

TEST_CASE("telemetry: meshConfig accessLogFile turns on the envoy provider") {
  CHECK(telemetry_of("").access_logs.empty());
  // accessLogFile empty: nothing, whatever the encoding says.
  CHECK(telemetry_of("accessLogEncoding: JSON\n").access_logs.empty());

  auto text = telemetry_of("accessLogFile: /dev/stdout\n");
  REQUIRE(text.access_logs.size() == 1);
  CHECK(text.access_logs[0].path == "/dev/stdout");
  CHECK(text.access_logs[0].encoding == AccessLogConfig::Encoding::text);
  CHECK(text.access_logs[0].format.empty());  // Istio's default line

  auto json = telemetry_of(R"(
accessLogFile: /var/log/access.json
accessLogEncoding: JSON
accessLogFormat: '{"code": "%RESPONSE_CODE%", "who": "%REQ(USER-AGENT)%"}'
)");
  REQUIRE(json.access_logs.size() == 1);
  CHECK(json.access_logs[0].encoding == AccessLogConfig::Encoding::json);
  REQUIRE(json.access_logs[0].json_fields.size() == 2);
  CHECK(json.access_logs[0].json_fields[0].first == "code");
  CHECK(json.access_logs[0].json_fields[1].second == "%REQ(USER-AGENT)%");

  auto custom = telemetry_of("accessLogFile: /tmp/a.log\naccessLogFormat: \"%PROTOCOL%\\n\"\n");
  CHECK(custom.access_logs.at(0).format == "%PROTOCOL%\n");
  CHECK(compile(load_with("accessLogFile: /tmp/a.log\n", "")->config).ok());
}

TEST_CASE("telemetry: mesh access-log errors name the field") {
  CHECK(mesh_error("accessLogFile: /tmp/a\naccessLogEncoding: XML\n") ==
        "MeshConfig mesh.yaml: accessLogEncoding: must be TEXT or JSON, got \"XML\"");
  CHECK(mesh_error("accessLogFile: /tmp/a\naccessLogFormat: \"%NOPE%\"\n")
            .starts_with("MeshConfig mesh.yaml: accessLogFormat: "));
  CHECK(mesh_error("accessLogFile: /tmp/a\naccessLogFormat: \"%NOPE%\"\n").find("NOPE") !=
        std::string::npos);
  CHECK(mesh_error("accessLogFile: /tmp/a\naccessLogEncoding: JSON\naccessLogFormat: x\n") ==
        "MeshConfig mesh.yaml: accessLogFormat: with JSON encoding, must be a JSON object of key "
        "-> format string");
  CHECK(mesh_error(
            "extensionProviders:\n- name: f\n  envoyFileAccessLog: {path: /x, colour: red}\n") ==
        "MeshConfig mesh.yaml: extensionProviders[0].envoyFileAccessLog.colour: unknown field "
        "\"colour\"");
  CHECK(mesh_error("extensionProviders:\n- name: f\n  envoyFileAccessLog:\n    logFormat: {text: "
                   "\"%BAD%\"}\n")
            .starts_with("MeshConfig mesh.yaml: extensionProviders[0].envoyFileAccessLog."
                         "logFormat.text: "));
  CHECK(mesh_error("extensionProviders:\n- name: o\n  opentelemetry: {port: 4318}\n") ==
        "MeshConfig mesh.yaml: extensionProviders[0].opentelemetry.service: required field is "
        "missing");
  CHECK(mesh_error("defaultProviders: {metrics: [stackdriver]}\n")
            .starts_with("MeshConfig mesh.yaml: defaultProviders.metrics: unknown metrics provider "
                         "\"stackdriver\""));
}

TEST_CASE("telemetry: a Telemetry resource chooses providers and overrides the mesh") {
  std::string mesh = std::string("accessLogFile: /dev/stdout\n") + kProviders;
  // No Telemetry: the mesh's accessLogFile.
  CHECK(telemetry_of(mesh).access_logs.size() == 1);

  auto t = telemetry_of(mesh, R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: file-json}, {name: envoy}]
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 25.5
)");
  REQUIRE(t.access_logs.size() == 2);
  CHECK(t.access_logs[0].path == "/var/log/json.log");
  CHECK(t.access_logs[0].encoding == AccessLogConfig::Encoding::json);
  CHECK(t.access_logs[0].json_fields.size() == 2);
  CHECK(t.access_logs[1].path == "/dev/stdout");  // "envoy": the mesh's accessLogFile
  CHECK(t.tracing.otlp_endpoint ==
        "http://opentelemetry-collector.observability.svc.cluster.local:4318/v1/traces");
  CHECK(t.tracing.sampling_percentage == doctest::Approx(25.5));

  // One selecting the gateway overrides the root namespace's; disabled: none.
  auto off = telemetry_of(mesh, R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: file-text}]}]
---
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {name: gateway, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  accessLogging: [{disabled: true}]
)");
  CHECK(off.access_logs.empty());

  // An entry for SERVER traffic only: not the gateway's (Istio's gateways
  // are CLIENT), so the root namespace's applies.
  auto server = telemetry_of(mesh, R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: file-text}]}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: gateway, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  accessLogging: [{match: {mode: SERVER}, disabled: true}]
)");
  REQUIRE(server.access_logs.size() == 1);
  CHECK(server.access_logs[0].path == "/var/log/text.log");

  // One selecting another workload changes nothing.
  auto other = telemetry_of(mesh, R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: other, namespace: istio-system}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging: [{providers: [{name: file-text}]}]
)");
  REQUIRE(other.access_logs.size() == 1);
  CHECK(other.access_logs[0].path == "/dev/stdout");

  // Without accessLogFile, "envoy" is standard output in the default format.
  auto builtin = telemetry_of(kProviders, R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
  metrics: [{providers: [{name: prometheus}]}]
)");
  REQUIRE(builtin.access_logs.size() == 1);
  CHECK(builtin.access_logs[0].path == "/dev/stdout");
  CHECK(builtin.access_logs[0].format.empty());

  // defaultProviders apply where no Telemetry names providers.
  auto defaults = telemetry_of(std::string(kProviders) +
                               "defaultProviders: {accessLogging: [file-text], tracing: [otel]}\n");
  REQUIRE(defaults.access_logs.size() == 1);
  CHECK(defaults.access_logs[0].path == "/var/log/text.log");
  CHECK(defaults.access_logs[0].format == "%REQ(:METHOD)% %RESPONSE_CODE%\n");
  CHECK_FALSE(defaults.tracing.otlp_endpoint.empty());
  CHECK(defaults.tracing.sampling_percentage == doctest::Approx(1.0));
}

TEST_CASE("telemetry: what sluice cannot do is refused, naming resource and field") {
  const char* head = R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
)";
  CHECK(load_failure(kProviders, std::string(head) +
                                     "  accessLogging: [{providers: [{name: envoy}], filter: "
                                     "{expression: \"response.code >= 400\"}}]\n") ==
        "Telemetry istio-system/mesh-default: accessLogging[0].filter.expression: access-log "
        "filters (CEL expressions) are not supported: sluice logs every request");
  CHECK(load_failure(kProviders,
                     std::string(head) + "  accessLogging: [{providers: [{name: nope}]}]\n") ==
        "Telemetry istio-system/mesh-default: accessLogging[0].providers[0].name: no "
        "extensionProviders entry named \"nope\" in the mesh config");
  CHECK(load_failure(kProviders,
                     std::string(head) + "  accessLogging: [{providers: [{name: otel}]}]\n")
            .find("is not an envoyFileAccessLog provider") != std::string::npos);
  CHECK(load_failure(kProviders,
                     std::string(head) + "  tracing: [{providers: [{name: file-text}]}]\n")
            .find("is not an opentelemetry provider") != std::string::npos);
  CHECK(load_failure(kProviders,
                     std::string(head) + "  tracing: [{randomSamplingPercentage: 101}]\n") ==
        "Telemetry istio-system/mesh-default: tracing[0].randomSamplingPercentage: must be in "
        "0..100");
  CHECK(load_failure(kProviders, std::string(head) +
                                     "  metrics: [{providers: [{name: prometheus}], overrides: "
                                     "[{disabled: true}]}]\n")
            .starts_with("Telemetry istio-system/mesh-default: metrics[0].overrides: metric "
                         "overrides"));
  CHECK(load_failure(kProviders, std::string(head) + "  accessLogging: [{colour: red}]\n") ==
        "Telemetry istio-system/mesh-default: accessLogging[0].colour: unknown field \"colour\"");
}

TEST_CASE("sluice-ingress: access log lines, JSON, and rotation with SIGUSR1") {
  FakeUpstream up("backend");
  std::string tmpl = (fs::temp_directory_path() / "sluice-alog-XXXXXX").string();
  fs::path dir = mkdtemp(tmpl.data());
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return (dir / name).string();
  };
  std::string config = write("site.yaml", site(up.port()));
  std::string log = (dir / "access.log").string();
  std::string mesh = write("mesh.yaml", "accessLogFile: " + log + "\n");
  auto lines_in = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  };
  auto read_all = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };

  {
    Child gw({SLUICE_INGRESS_BIN, "--config", config, "--mesh-config", mesh, "--bind", "127.0.0.1",
              "--ephemeral-ports", "--workers", "2", "--no-watch", "--file-flush-interval-msec",
              "0"});
    auto listening = gw.wait_line("listening 8080 ");
    REQUIRE_MESSAGE(listening, gw.err());
    REQUIRE(gw.wait_line("ready"));
    uint16_t port = static_cast<uint16_t>(std::stoi(listening->substr(listening->rfind(':') + 1)));
    auto request = [&](const std::string& target) {
      RawClient client(port);
      REQUIRE(client.send(fmt::format(
          "GET {} HTTP/1.1\r\nHost: bookinfo.example.com\r\nUser-Agent: t/1\r\n\r\n", target)));
      auto r = client.read_response();
      REQUIRE(r);
      CHECK(r->status == 200);
      return client.local_port();
    };
    uint16_t client_port = request("/first");
    REQUIRE(wait_until([&] { return lines_in(log) == 1; }));
    // Istio's default line; the time, duration and request id by pattern.
    std::string line = read_all(log);
    std::string cluster = "outbound|80||backend";
    std::string head = "\"GET /first HTTP/1.1\" 200 - via_upstream - \"-\" 0 7 ";
    CHECK_MESSAGE(line.find(head) == 27, line);  // after "[YYYY-MM-DDTHH:MM:SS.mmmZ] "
    CHECK(line[0] == '[');
    CHECK(line[20] == '.');
    CHECK(line.substr(24, 3) == "Z] ");
    // Duration, then the upstream service time and the request's headers
    // (X-Forwarded-For with the client appended, as Envoy logs it); the
    // request id (generated or not) by pattern.
    CHECK_MESSAGE(line.find(" - \"127.0.0.1\" \"t/1\" \"") != std::string::npos, line);
    std::string end = fmt::format(
        "\" \"bookinfo.example.com\" \"127.0.0.1:{}\" {} - 127.0.0.1:{} 127.0.0.1:{} - ", up.port(),
        cluster, port, client_port);
    CHECK_MESSAGE(line.find(end) != std::string::npos, line);
    CHECK(line.ends_with("\n"));

    // Rotation: rename, SIGUSR1, and the next line is in a new file.
    fs::rename(log, log + ".1");
    gw.signal(SIGUSR1);
    REQUIRE(wait_until([&] { return fs::exists(log); }));
    request("/second");
    REQUIRE(wait_until([&] { return lines_in(log) == 1; }));
    CHECK(read_all(log).find("/second") != std::string::npos);
    CHECK(lines_in(log + ".1") == 1);
    gw.signal(SIGTERM);
    CHECK(gw.wait_line("stopped"));
  }

  // --access-log and --access-log-format json override the mesh config.
  std::string json_log = (dir / "access.json").string();
  {
    Child gw({SLUICE_INGRESS_BIN, "--config", config, "--mesh-config", mesh, "--bind", "127.0.0.1",
              "--ephemeral-ports", "--no-watch", "--access-log", json_log, "--access-log-format",
              "json", "--file-flush-interval-msec", "0"});
    auto listening = gw.wait_line("listening 8080 ");
    REQUIRE_MESSAGE(listening, gw.err());
    uint16_t port = static_cast<uint16_t>(std::stoi(listening->substr(listening->rfind(':') + 1)));
    RawClient client(port);
    REQUIRE(client.send("GET /j HTTP/1.1\r\nHost: a\r\nX-Request-Id: rid-1\r\n\r\n"));
    REQUIRE(client.read_response());
    REQUIRE(wait_until([&] { return lines_in(json_log) == 1; }));
    std::string line = read_all(json_log);
    CHECK(line.find("\"x_request_id\":\"rid-1\"") != std::string::npos);
    CHECK(line.find("\"path\":\"/j\"") != std::string::npos);
    CHECK(line.find("\"upstream_cluster\":\"outbound|80||backend\"") != std::string::npos);
    CHECK(lines_in(log) == 1);  // the mesh's file got nothing new
  }

  // --check lists the access logs and the tracer.
  std::string traced = write("traced.yaml", std::string(kProviders) +
                                                "accessLogFile: /dev/stdout\n"
                                                "defaultProviders: {tracing: [otel]}\n");
  auto check = run_process(SLUICE_INGRESS_BIN, {"--check", "--config", config, "--mesh-config",
                                                traced, "--access-log-format", "json"});
  CHECK_MESSAGE(check.exit_code == 0, check.err);
  CHECK_MESSAGE(
      check.out.find("access log: /dev/stdout (Istio's default JSON)\n") != std::string::npos,
      check.out);
  CHECK(check.out.find("tracing: OTLP/HTTP to "
                       "http://opentelemetry-collector.observability.svc.cluster.local:4318/"
                       "v1/traces, sampling 1%\n") != std::string::npos);

  // A bad --access-log-format fails --check with the flag named.
  auto bad = run_process(SLUICE_INGRESS_BIN, {"--check", "--config", config, "--access-log", "-",
                                              "--access-log-format", "%NOPE%"});
  CHECK(bad.exit_code == 1);
  CHECK_MESSAGE(bad.err.find("error: --access-log-format: format: ") != std::string::npos, bad.err);
  // A flush interval is a count of milliseconds; "-1" is not a huge one.
  auto negative = run_process(SLUICE_INGRESS_BIN,
                              {"--check", "--config", config, "--file-flush-interval-msec", "-1"});
  CHECK(negative.exit_code == 2);
  CHECK_MESSAGE(negative.err.find("--file-flush-interval-msec needs a number") != std::string::npos,
                negative.err);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace telemetry_yaml_test
