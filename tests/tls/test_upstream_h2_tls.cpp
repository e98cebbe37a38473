// HTTP/2 upstream over TLS: origination offers ALPN "h2", the upstream
// picks it, and concurrent requests share the one TLS connection.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <thread>

#include "support/gateway_fixture.hpp"
#include "support/h2_upstream.hpp"
#include "support/raw_client.hpp"
#include "tls/tls_support.hpp"

namespace test_upstream_h2_tls {

using namespace sluice;
using namespace sluice::test;

TEST_CASE("upstream h2 over TLS: ALPN h2, requests multiplexed over one handshake") {
  const Pki& p = pki();
  H2Upstream up(H2TlsFiles{p.nginx.cert.path, p.nginx.key.path});
  up.hold_until(5);
  GatewayConfig cfg = single_upstream_config(up.port());
  UpstreamTls tls;
  tls.sni = "nginx.example.com";
  tls.ca_certificates = p.ca2.text;
  cfg.upstreams.at(0).tls = tls;
  cfg.upstreams.at(0).protocol = UpstreamProtocol::http2;
  TestGateway gw(cfg);
  std::vector<int> statuses(5, 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 5; ++i)
    threads.emplace_back([&, i] {
      RawClient c(gw.port(), std::chrono::seconds(10));
      if (!c.send(make_request("GET", fmt::format("/t{}", i)))) return;
      if (auto r = c.read_response()) statuses[i] = r->status;
    });
  for (auto& t : threads) t.join();
  for (int s : statuses) CHECK(s == 200);
  CHECK(up.connections() == 1);
  CHECK(up.max_open_streams() == 5);
  CHECK(up.last_alpn() == "h2");
  auto got = up.received();
  REQUIRE(got.size() == 5);
  CHECK(got[0].head.scheme == "https");
}

}  // namespace test_upstream_h2_tls
