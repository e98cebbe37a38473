// HTTP/2 over TLS: ALPN picks h2 when the client offers it, the request runs
// the HTTPS pipeline (x-forwarded-proto https, SNI-scoped hosts), and a
// listener with http2 off stays on HTTP/1.1.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/process.hpp"
#include "tls/tls_support.hpp"

namespace test_http2_tls {

using namespace sluice;
using namespace sluice::test;

namespace {

GatewayConfig h2_tls_config(uint16_t upstream_port, bool http2) {
  const Pki& p = pki();
  auto cfg = single_upstream_config(upstream_port);
  TlsServer s;
  s.sni_hosts = {"httpbin.example.com"};
  s.certificate_chain = p.httpbin.cert.text;
  s.private_key = p.httpbin.key.text;
  cfg.listeners[0].tls_servers = {s};
  cfg.listeners[0].http2 = http2;
  return cfg;
}

std::vector<std::string> curl_args(uint16_t port, std::string_view path) {
  return {"--http2",
          "--cacert",
          pki().ca1.path,
          "--resolve",
          fmt::format("httpbin.example.com:{}:127.0.0.1", port),
          "-w",
          "\n%{http_code} %{http_version}",
          fmt::format("https://httpbin.example.com:{}{}", port, path)};
}

}  // namespace

TEST_CASE("h2 over TLS: curl --http2 is served by ALPN h2 through the https pipeline") {
  FakeUpstream up("backend");
  TestGateway gw(h2_tls_config(up.port(), true));
  auto r = run_curl(curl_args(gw.port(), "/status/418"));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == "backend\n200 2");
  REQUIRE(up.wait_for_requests(1));
  auto req = *up.last_request();
  CHECK(req.target == "/status/418");
  CHECK(req.header("x-forwarded-proto") == std::optional<std::string>("https"));
  CHECK(req.header("host") == fmt::format("httpbin.example.com:{}", gw.port()));

  // A Host its SNI did not select is refused as over HTTP/1.1.
  auto other = run_curl({"--http2", "--cacert", pki().ca1.path, "--resolve",
                         fmt::format("httpbin.example.com:{}:127.0.0.1", gw.port()), "-H",
                         "host: other.example.com", "-o", "/dev/null", "-w", "%{http_code}",
                         fmt::format("https://httpbin.example.com:{}/", gw.port())});
  CHECK(other.out != "200");
  CHECK(up.request_count() == 1);
}

TEST_CASE("h2 over TLS: with http2 off the listener answers ALPN http/1.1") {
  FakeUpstream up("backend");
  TestGateway gw(h2_tls_config(up.port(), false));
  auto r = run_curl(curl_args(gw.port(), "/"));
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == "backend\n200 1.1");
  TlsClient c(gw.port(), {.sni = "httpbin.example.com", .ca = &pki().ca1, .offer_h2 = true});
  REQUIRE_MESSAGE(c.handshake(), c.error());
  CHECK(c.alpn() == "http/1.1");
}

}  // namespace test_http2_tls
