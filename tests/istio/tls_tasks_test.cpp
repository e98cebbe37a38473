// Istio's secure-ingress and egress TLS tasks end to end: YAML loaded by
// lib/istio, Gateways on 127.0.0.1 port 0, curl as the client, upstreams in
// the test process (a plain HTTP one, and sluice Gateways terminating TLS as
// TLS origins).

#include <doctest/doctest.h>

#include <memory>

#include <fmt/format.h>

#include "istio_test_util.hpp"
#include "sluice/sluice.hpp"
#include "support/fake_upstream.hpp"
#include "support/process.hpp"
#include "tls_certs.hpp"

namespace tls_tasks_test {

using namespace sluice;
using namespace sluice::test;

namespace {

class Running {
 public:
  explicit Running(const std::string& yaml) {
    istio::TranslateOptions options;
    options.bind_address = "127.0.0.1";
    options.ephemeral_ports = true;
    auto loaded = istio::load_string(yaml, options);
    REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? std::string() : loaded.error().to_string()));
    for (size_t i = 0; i < loaded->listeners.size(); ++i)
      names_[loaded->listeners[i].port] = loaded->listeners[i].name;
    GatewayOptions go;
    go.workers = 1;
    gateway_ = std::make_unique<Gateway>(go);
    Status st = gateway_->apply(std::move(loaded->config));
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
    gateway_->start();
  }
  ~Running() { gateway_->stop(); }
  // The bound port of the Gateway server port `istio_port`.
  uint16_t port(uint16_t istio_port) const {
    uint16_t p = gateway_->port(names_.at(istio_port));
    REQUIRE(p != 0);
    return p;
  }

 private:
  std::map<uint16_t, std::string> names_;
  std::unique_ptr<Gateway> gateway_;
};

std::string service(const std::string& host, uint16_t number, uint16_t endpoint_port) {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {0}}}
spec:
  hosts: [{0}]
  ports: [{{number: {1}, name: p}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{p: {2}}}}}]
---
)",
                     host, number, endpoint_port);
}

// A TLS origin: a second Gateway terminating `host` with `cert`, answering
// every request with 200 and `body`.
std::string origin_yaml(const std::string& host, const std::string& cert, const std::string& key,
                        const std::string& body) {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: origin}}
spec:
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [{0}]
    tls: {{mode: SIMPLE, serverCertificate: {1}, privateKey: {2}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: origin}}
spec:
  hosts: [{0}]
  gateways: [origin]
  http: [{{directResponse: {{status: 200, body: {{string: {3}}}}}}}]
)",
                     host, cert, key, body);
}

// The secure-ingress task's Gateway: httpbin.example.com on 443 from a Secret.
std::string secure_ingress(const std::string& mode, uint16_t httpbin_port,
                           const std::string& extra_server = "") {
  const auto& pki = istio_pki();
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: mygateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    tls: {{mode: {0}, credentialName: httpbin-credential}}
    hosts: [httpbin.example.com]
{1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin.example.com]
  gateways: [mygateway]
  http:
  - match: [{{uri: {{prefix: /status}}}}, {{uri: {{prefix: /delay}}}}]
    route: [{{destination: {{port: {{number: 8000}}, host: httpbin}}}}]
---
)",
                     mode, extra_server) +
         service("httpbin", 8000, httpbin_port) +
         kubectl_secret("httpbin-credential", "istio-system", pki.httpbin, pki.httpbin_key,
                        mode == "MUTUAL" ? pki.ca : "");
}

std::vector<std::string> resolve_args(const std::string& host, uint16_t port) {
  return {"--resolve", fmt::format("{}:{}:127.0.0.1", host, port)};
}

}  // namespace

TEST_CASE("secure ingress SIMPLE: credentialName Secret, curl --cacert --resolve") {
  const auto& pki = istio_pki();
  FakeUpstream httpbin("httpbin");
  Running gw(secure_ingress("SIMPLE", httpbin.port()));
  uint16_t port = gw.port(443);
  std::vector<std::string> args = resolve_args("httpbin.example.com", port);
  args.insert(args.end(), {"--cacert", pki.ca, "-w", " %{http_code}",
                           fmt::format("https://httpbin.example.com:{}/status/418", port)});
  auto r = run_curl(args);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == "httpbin 200");
  auto req = httpbin.last_request();
  REQUIRE(req.has_value());
  CHECK(req->target == "/status/418");
  // The certificate is for httpbin.example.com only: another name fails verification.
  std::vector<std::string> other = resolve_args("other.example.com", port);
  other.insert(other.end(),
               {"--cacert", pki.ca, fmt::format("https://other.example.com:{}/status/200", port)});
  CHECK(run_curl(other).exit_code != 0);
}

TEST_CASE(
    "secure ingress MUTUAL: without a client certificate the request fails, with one it "
    "succeeds") {
  const auto& pki = istio_pki();
  FakeUpstream httpbin("httpbin");
  Running gw(secure_ingress("MUTUAL", httpbin.port()));
  uint16_t port = gw.port(443);
  std::string url = fmt::format("https://httpbin.example.com:{}/status/200", port);
  std::vector<std::string> base = resolve_args("httpbin.example.com", port);
  base.insert(base.end(), {"--cacert", pki.ca});

  auto without = base;
  without.push_back(url);
  auto r1 = run_curl(without);
  CHECK(r1.exit_code != 0);
  CHECK(httpbin.request_count() == 0);

  auto stranger = base;
  stranger.insert(stranger.end(), {"--cert", pki.stranger, "--key", pki.stranger_key, url});
  CHECK(run_curl(stranger).exit_code != 0);
  CHECK(httpbin.request_count() == 0);

  auto with = base;
  with.insert(with.end(),
              {"--cert", pki.client, "--key", pki.client_key, "-w", " %{http_code}", url});
  auto r2 = run_curl(with);
  CHECK_MESSAGE(r2.exit_code == 0, r2.err);
  CHECK(r2.out == "httpbin 200");
}

TEST_CASE("httpsRedirect answers 301 to the https URL") {
  FakeUpstream httpbin("httpbin");
  Running gw(secure_ingress("SIMPLE", httpbin.port(), R"(
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [httpbin.example.com]
    tls: {httpsRedirect: true})"));
  uint16_t port = gw.port(80);
  std::vector<std::string> args = resolve_args("httpbin.example.com", port);
  args.insert(args.end(), {"-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                           fmt::format("http://httpbin.example.com:{}/status/200?x=1", port)});
  auto r = run_curl(args);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.starts_with("301 https://httpbin.example.com"));
  CHECK(r.out.ends_with("/status/200?x=1"));
  CHECK(httpbin.request_count() == 0);
}

TEST_CASE("PASSTHROUGH by SNI to a TLS upstream whose certificate the client verifies") {
  const auto& pki = istio_pki();
  Running origin(origin_yaml("nginx.example.com", pki.nginx, pki.nginx_key, "nginx-origin"));
  Running gw(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: mygateway}
spec:
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: [nginx.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nginx}
spec:
  hosts: [nginx.example.com]
  gateways: [mygateway]
  tls:
  - match: [{port: 443, sniHosts: [nginx.example.com]}]
    route: [{destination: {host: my-nginx, port: {number: 443}}}]
---
)" + service("my-nginx", 443, origin.port(443)));
  uint16_t port = gw.port(443);
  std::vector<std::string> args = resolve_args("nginx.example.com", port);
  args.insert(args.end(), {"--cacert", pki.ca, "-w", " %{http_code}",
                           fmt::format("https://nginx.example.com:{}/", port)});
  auto r = run_curl(args);
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == "nginx-origin 200");
  // An SNI no route names is not relayed.
  std::vector<std::string> other = resolve_args("other.example.com", port);
  other.insert(other.end(), {"-k", fmt::format("https://other.example.com:{}/", port)});
  CHECK(run_curl(other).exit_code != 0);
}

TEST_CASE("egress TLS origination from a DestinationRule (plain HTTP in, TLS out)") {
  const auto& pki = istio_pki();
  Running origin(origin_yaml("httpbin.example.com", pki.httpbin, pki.httpbin_key, "tls-origin"));
  Running gw(fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: egress}}
spec:
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: out}}
spec:
  hosts: ["*"]
  gateways: [egress]
  http: [{{route: [{{destination: {{host: httpbin.example.com, port: {{number: 443}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: originate}}
spec:
  host: httpbin.example.com
  trafficPolicy:
    portLevelSettings:
    - port: {{number: 443}}
      tls: {{mode: SIMPLE, caCertificates: {}}}
---
)",
                         pki.ca) +
             service("httpbin.example.com", 443, origin.port(443)));
  // As in Istio's task: `curl http://edition.cnn.com/...`, the Host names the external service.
  auto r = run_curl({"-H", "Host: httpbin.example.com", "-w", " %{http_code}",
                     fmt::format("http://127.0.0.1:{}/get", gw.port(80))});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == "tls-origin 200");
}

}  // namespace tls_tasks_test
