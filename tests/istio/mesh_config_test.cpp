// Istio MeshConfig (`sluice-ingress --mesh-config`): a bare MeshConfig or the
// `istio` ConfigMap (data.mesh); pathNormalization; errors naming the file
// and field; --explain and serving apply the normalisation.

#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "child.hpp"
#include "istio_test_util.hpp"
#include "support/fake_upstream.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"

namespace mesh_config_test {

using namespace sluice;
using namespace sluice::test;
namespace fs = std::filesystem;

namespace {

struct Dir {
  fs::path path;
  Dir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-mesh-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    fs::path tmp = path / (".tmp-" + name);
    { std::ofstream(tmp, std::ios::binary) << text; }
    fs::rename(tmp, path / name);
    return (path / name).string();
  }
};

PathNormalization mode_of(const std::string& yaml) {
  auto m = istio::parse_mesh_config(yaml, "mesh.yaml");
  REQUIRE_MESSAGE(m.ok(), (m.ok() ? std::string() : m.error().to_string()));
  return m->path_normalization;
}

std::string error_of(const std::string& yaml) {
  auto m = istio::parse_mesh_config(yaml, "/etc/istio/mesh.yaml");
  REQUIRE_MESSAGE(!m.ok(), "expected the MeshConfig to be rejected");
  return m.error().to_string();
}

// /admin goes to the "admin" upstream; everything else to "public".
std::string admin_config(uint16_t public_port) {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  servers: [{{port: {{number: 8080, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: site}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - name: admin
    match: [{{uri: {{prefix: /admin}}}}]
    directResponse: {{status: 403}}
  - name: public
    route: [{{destination: {{host: public}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: public}}
spec:
  hosts: [public]
  ports: [{{number: 80, name: http, targetPort: {}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
)",
                     public_port);
}

}  // namespace

TEST_CASE("mesh config: a bare MeshConfig sets pathNormalization") {
  CHECK(mode_of("") == PathNormalization::base);
  CHECK(mode_of("accessLogFile: /dev/stdout\n") == PathNormalization::base);
  CHECK(mode_of("pathNormalization: {}\n") == PathNormalization::base);
  CHECK(mode_of("pathNormalization: {normalization: DEFAULT}\n") == PathNormalization::base);
  CHECK(mode_of("pathNormalization: {normalization: BASE}\n") == PathNormalization::base);
  CHECK(mode_of("pathNormalization: {normalization: NONE}\n") == PathNormalization::none);
  CHECK(mode_of("pathNormalization: {normalization: MERGE_SLASHES}\n") ==
        PathNormalization::merge_slashes);
  CHECK(mode_of("pathNormalization:\n  normalization: DECODE_AND_MERGE_SLASHES\n") ==
        PathNormalization::decode_and_merge_slashes);
  // Fields sluice does not use are valid Istio: ignored, whatever their shape.
  CHECK(mode_of(R"(
enableTracing: true
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  tracing: {zipkin: {address: zipkin:9411}}
extensionProviders: [{name: otel, opentelemetry: {port: 4317, service: otel}}]
pathNormalization: {normalization: MERGE_SLASHES}
)") == PathNormalization::merge_slashes);
}

TEST_CASE("mesh config: the istio ConfigMap as kubectl prints it") {
  CHECK(mode_of(R"(apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
  labels: {install.operator.istio.io/owning-resource: unknown}
data:
  mesh: |-
    defaultConfig:
      discoveryAddress: istiod.istio-system.svc:15012
    enablePrometheusMerge: true
    pathNormalization:
      normalization: DECODE_AND_MERGE_SLASHES
    rootNamespace: istio-system
  meshNetworks: 'networks: {}'
)") == PathNormalization::decode_and_merge_slashes);
  CHECK(mode_of("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata: {}\n") ==
        PathNormalization::base);
}

TEST_CASE("mesh config: a wrong value or type of a known field is an error") {
  CHECK(error_of("pathNormalization: {normalization: FOO}\n") ==
        "MeshConfig /etc/istio/mesh.yaml: pathNormalization.normalization: unknown value \"FOO\" "
        "(NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)");
  CHECK(error_of("pathNormalization: {normalization: [BASE]}\n") ==
        "MeshConfig /etc/istio/mesh.yaml: pathNormalization.normalization: must be a string");
  CHECK(error_of("pathNormalization: BASE\n") ==
        "MeshConfig /etc/istio/mesh.yaml: pathNormalization: must be a mapping");
  CHECK(
      error_of("kind: ConfigMap\ndata:\n  mesh: |\n    pathNormalization: {normalization: x}\n") ==
      "MeshConfig /etc/istio/mesh.yaml: pathNormalization.normalization: unknown value \"x\" "
      "(NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)");
  CHECK(error_of("kind: Gateway\n") ==
        "MeshConfig /etc/istio/mesh.yaml: kind: expected a MeshConfig or the istio ConfigMap, got "
        "kind Gateway");
  CHECK(error_of("a: [1\n").starts_with("MeshConfig /etc/istio/mesh.yaml: line "));
  CHECK(error_of("- 1\n") == "MeshConfig /etc/istio/mesh.yaml: a MeshConfig must be a mapping");

  auto missing = istio::load_mesh_config("/nonexistent/mesh.yaml");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().to_string() == "MeshConfig /nonexistent/mesh.yaml: cannot read file");

  GatewayConfig c;
  istio::apply_mesh({PathNormalization::merge_slashes}, c);
  CHECK(c.path_normalization == PathNormalization::merge_slashes);
}

TEST_CASE("sluice-ingress --mesh-config: --check and --explain") {
  Dir dir;
  std::string config = dir.write("site.yaml", admin_config(19999));
  std::string bad = dir.write("bad-mesh.yaml", "pathNormalization: {normalization: FOO}\n");
  auto r = run_process(SLUICE_INGRESS_BIN, {"--check", "--config", config, "--mesh-config", bad});
  CHECK(r.exit_code == 1);
  CHECK_MESSAGE(r.err.find(fmt::format("error: MeshConfig {}: pathNormalization.normalization: "
                                       "unknown value \"FOO\"",
                                       bad)) != std::string::npos,
                r.err);

  auto help = run_process(SLUICE_INGRESS_BIN, {"--help"});
  CHECK(help.out.find("--mesh-config PATH") != std::string::npos);

  // BASE (the default): "/x/../admin" is "/admin", so the admin rule applies.
  std::string base = dir.write("mesh.yaml", "pathNormalization: {normalization: BASE}\n");
  auto e = run_process(SLUICE_INGRESS_BIN, {"--config", config, "--mesh-config", base, "--explain",
                                            "GET http://a.example.com:8080/x/../admin"});
  CHECK_MESSAGE(e.exit_code == 0, e.err);
  CHECK_MESSAGE(e.out.find("VirtualService site http[0]") != std::string::npos, e.out);
  CHECK(e.out.find("normalised from /x/../admin") != std::string::npos);
  // Without --mesh-config the default is BASE too.
  auto d = run_process(SLUICE_INGRESS_BIN, {"--config", config, "--explain",
                                            "GET http://a.example.com:8080/x/../admin"});
  CHECK_MESSAGE(d.out.find("VirtualService site http[0]") != std::string::npos, d.out);

  // NONE: the path is routed as received and misses the admin prefix.
  std::string none = dir.write("none.yaml", R"(apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    pathNormalization:
      normalization: NONE
)");
  auto n = run_process(SLUICE_INGRESS_BIN, {"--config", config, "--mesh-config", none, "--explain",
                                            "GET http://a.example.com:8080/x/../admin"});
  CHECK_MESSAGE(n.out.find("VirtualService site http[1]") != std::string::npos, n.out);

  // MERGE_SLASHES: "//admin" is "/admin"; BASE keeps "//admin".
  std::string merge =
      dir.write("merge.yaml", "pathNormalization: {normalization: MERGE_SLASHES}\n");
  auto m = run_process(SLUICE_INGRESS_BIN, {"--config", config, "--mesh-config", merge, "--explain",
                                            "GET http://a.example.com:8080//admin"});
  CHECK_MESSAGE(m.out.find("VirtualService site http[0]") != std::string::npos, m.out);
  auto b = run_process(SLUICE_INGRESS_BIN, {"--config", config, "--mesh-config", base, "--explain",
                                            "GET http://a.example.com:8080//admin"});
  CHECK_MESSAGE(b.out.find("VirtualService site http[1]") != std::string::npos, b.out);
}

TEST_CASE("sluice-ingress --mesh-config: served requests are routed on the normalised path") {
  // Depends on the session applying GatewayConfig::path_normalization.
  FakeUpstream upstream{"public"};
  Dir dir;
  std::string config = dir.write("site.yaml", admin_config(upstream.port()));
  std::string mesh = dir.write("mesh.yaml", "pathNormalization: {normalization: MERGE_SLASHES}\n");
  Child child({SLUICE_INGRESS_BIN, "--ephemeral-ports", "--bind", "127.0.0.1", "--workers", "1",
               "--dns-refresh", "0", "--config", config, "--mesh-config", mesh});
  auto line = child.wait_line("listening 8080 ");
  REQUIRE_MESSAGE(line, child.err());
  auto port = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  REQUIRE(child.wait_line("ready"));
  auto status = [&](const std::string& target) {
    RawClient c(port);
    c.send(make_request("GET", target, "a.example.com"));
    auto r = c.read_response();
    return r ? r->status : 0;
  };
  CHECK(status("/public") == 200);
  CHECK(status("/x/../admin") == 403);
  CHECK(status("//admin") == 403);

  // The mesh config is reloaded with the rest (file change here).
  size_t from = child.line_count();
  dir.write("mesh.yaml", "pathNormalization: {normalization: BASE}\n");
  REQUIRE_MESSAGE(child.wait_line("reloaded", from), child.err());
  CHECK(status("//admin") == 200);
  CHECK(status("/x/../admin") == 403);

  // A bad mesh config is rejected on reload; the previous one keeps serving.
  from = child.line_count();
  dir.write("mesh.yaml", "pathNormalization: {normalization: FOO}\n");
  REQUIRE(child.wait_line("reload rejected", from));
  CHECK(child.wait_err("pathNormalization.normalization: unknown value \"FOO\""));
  CHECK(status("//admin") == 200);
  child.signal(SIGTERM);
  CHECK(child.wait_exit() == 0);
}

}  // namespace mesh_config_test
