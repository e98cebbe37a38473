// sluice-ingress with TLS configuration: --check output without secret
// material, and reload when a certificate file the configuration names changes.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "child.hpp"
#include "istio_test_util.hpp"
#include "support/fake_upstream.hpp"
#include "support/process.hpp"
#include "tls_certs.hpp"

namespace tls_cli_test {

using namespace sluice;
using namespace sluice::test;
namespace fs = std::filesystem;

namespace {

const std::string bin = SLUICE_INGRESS_BIN;

std::string tls_config(uint16_t httpbin_port, const std::string& tls_block) {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: mygateway}}
spec:
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [httpbin.example.com]
    tls: {}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin.example.com]
  gateways: [mygateway]
  http: [{{route: [{{destination: {{host: httpbin, port: {{number: 8000}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  ports: [{{number: 8000, name: http}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
)",
                     tls_block, httpbin_port);
}

std::string temp_dir(const std::string& name) {
  std::string dir = istio_pki().dir + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Replaces `to` by a copy of `from` atomically (write aside, rename), the
// way certificate managers rotate files.
void replace_file(const std::string& from, const std::string& to) {
  fs::copy_file(from, to + ".tmp", fs::copy_options::overwrite_existing);
  fs::rename(to + ".tmp", to);
}

}  // namespace

TEST_CASE("sluice-ingress --check with a Secret: TLS summary, no secret material") {
  const auto& pki = istio_pki();
  std::string dir = temp_dir("check");
  std::ofstream(dir + "/config.yaml")
      << tls_config(8000, "{mode: SIMPLE, credentialName: httpbin-credential}")
      << kubectl_secret("httpbin-credential", "istio-system", pki.httpbin, pki.httpbin_key);
  auto r = run_process(bin, {"--check", "--config", dir});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.find("listener https.443") != std::string::npos);
  CHECK(r.out.find("tls terminate: SIMPLE certificate for httpbin.example.com") !=
        std::string::npos);
  CHECK(r.out.find("BEGIN") == std::string::npos);
  CHECK(r.out.find(base64(IstioPki::read(pki.httpbin_key)).substr(0, 40)) == std::string::npos);
  CHECK(r.err.find("kind not supported") == std::string::npos);

  auto ex =
      run_process(bin, {"--explain", "GET https://httpbin.example.com:443/get", "--config", dir});
  CHECK_MESSAGE(ex.exit_code == 0, ex.err);
  CHECK(ex.out.find("tls:      SIMPLE certificate for httpbin.example.com") != std::string::npos);

  std::ofstream(dir + "/config.yaml")
      << tls_config(8000, "{mode: SIMPLE, credentialName: missing}");
  auto bad = run_process(bin, {"--check", "--config", dir});
  CHECK(bad.exit_code != 0);
  CHECK(bad.err.find("Gateway mygateway: servers[0].tls.credentialName") != std::string::npos);
}

TEST_CASE("sluice-ingress reloads when a certificate file changes, new handshakes use it") {
  const auto& pki = istio_pki();
  FakeUpstream httpbin("httpbin");
  std::string dir = temp_dir("rotate");
  fs::create_directories(dir + "/certs");
  fs::copy_file(pki.httpbin, dir + "/certs/tls.crt");
  fs::copy_file(pki.httpbin_key, dir + "/certs/tls.key");
  // The YAML lives in its own directory: only the certificate watch can notice.
  fs::create_directories(dir + "/config");
  std::ofstream(dir + "/config/gateway.yaml")
      << tls_config(httpbin.port(),
                    "{mode: SIMPLE, serverCertificate: ../certs/tls.crt, privateKey: "
                    "../certs/tls.key}");
  Child child({bin, "--ephemeral-ports", "--bind", "127.0.0.1", "--workers", "1", "--dns-refresh",
               "0", "--config", dir + "/config"});
  auto line = child.wait_line("listening 443 ");
  REQUIRE_MESSAGE(line, child.err());
  uint16_t port = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  REQUIRE(child.wait_line("ready"));

  auto curl_with = [&](const std::string& ca) {
    return run_curl({"--resolve", fmt::format("httpbin.example.com:{}:127.0.0.1", port), "--cacert",
                     ca, fmt::format("https://httpbin.example.com:{}/get", port)});
  };
  auto before = curl_with(pki.ca);
  CHECK_MESSAGE(before.exit_code == 0, before.err);
  CHECK(before.out == "httpbin");
  CHECK(curl_with(pki.ca2).exit_code != 0);

  size_t from = child.line_count();
  replace_file(pki.httpbin2_key, dir + "/certs/tls.key");
  replace_file(pki.httpbin2, dir + "/certs/tls.crt");
  REQUIRE_MESSAGE(child.wait_line("reloaded", from), child.err());
  // The listener keeps its port across the reload only if the core keeps it;
  // take the port announced after the reload.
  auto again = child.wait_line("listening 443 ", from);
  REQUIRE(again);
  port = static_cast<uint16_t>(std::stoi(again->substr(again->rfind(':') + 1)));
  auto after = curl_with(pki.ca2);
  CHECK_MESSAGE(after.exit_code == 0, after.err);
  CHECK(after.out == "httpbin");
  CHECK(curl_with(pki.ca).exit_code != 0);

  child.signal(SIGTERM);
  CHECK(child.wait_exit() == 0);
}

}  // namespace tls_cli_test
