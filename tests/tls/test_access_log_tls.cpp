// Access-log fields only a TLS connection has: the SNI the client sent
// (%REQUESTED_SERVER_NAME%) and the client certificate's URI SAN
// (%DOWNSTREAM_PEER_URI_SAN%), through a mutual-TLS listener.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/wait.hpp"
#include "tls/tls_support.hpp"

namespace test_access_log_tls {

using namespace sluice;
using namespace sluice::test;
namespace fs = std::filesystem;

TEST_CASE("access log over mutual TLS: requested server name and peer URI SAN") {
  const Pki& p = pki();
  std::string tmpl = (fs::temp_directory_path() / "sluice-alog-tls-XXXXXX").string();
  fs::path dir = ::mkdtemp(tmpl.data());
  std::string path = (dir / "access.log").string();
  FakeUpstream up("backend");
  auto cfg = single_upstream_config(up.port());
  TlsServer s;
  s.sni_hosts = {"httpbin.example.com"};
  s.mode = TlsServer::Mode::mutual;
  s.certificate_chain = p.httpbin.cert.text;
  s.private_key = p.httpbin.key.text;
  s.ca_certificates = p.ca1.text;
  cfg.listeners[0].tls_servers = {s};
  AccessLogConfig log;
  log.path = path;
  log.format = "%REQUESTED_SERVER_NAME% %DOWNSTREAM_PEER_URI_SAN% %RESPONSE_CODE%\n";
  cfg.telemetry.access_logs.push_back(log);
  cfg.telemetry.access_log_flush_interval = {};
  TestGateway gw(cfg, 1);

  TlsClient c(gw.port(), {.sni = "httpbin.example.com", .ca = &p.ca1, .cert = &p.client});
  REQUIRE_MESSAGE(c.handshake(), c.error());
  auto r = c.get("/", "httpbin.example.com");
  REQUIRE(r);
  CHECK(r->status == 200);
  auto text = [&] {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  REQUIRE(wait_until([&] { return !text().empty() && text().back() == '\n'; }));
  CHECK(text() == "httpbin.example.com spiffe://cluster.local/ns/default/sa/client 200\n");
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace test_access_log_tls
