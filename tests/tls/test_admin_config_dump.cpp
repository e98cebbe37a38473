// /config_dump's TLS part (sluice::config_dump_json): each server's
// certificate expiry, read from its leaf, and never its private key.

#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "support/gateway_fixture.hpp"
#include "tls_support.hpp"

namespace test_admin_config_dump {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

TEST_CASE("config dump: a TLS server's certificate expiry, and no private key") {
  auto cfg = single_upstream_config(9);
  TlsServer server;
  server.sni_hosts = {"httpbin.example.com"};
  server.certificate_chain = pki().httpbin.cert.text;
  server.private_key = pki().httpbin.key.text;
  cfg.listeners[0].tls_servers = {server};
  auto snapshot = compile(cfg);
  REQUIRE_MESSAGE(snapshot.ok(), snapshot.error().to_string());

  auto now = std::chrono::system_clock::now();
  std::string text = config_dump_json(**snapshot, now);
  auto dump = nlohmann::json::parse(text);
  const auto& tls = dump["listeners"][0]["tls_servers"];
  REQUIRE(tls.size() == 1);
  CHECK(tls[0]["mode"] == "SIMPLE");
  CHECK(tls[0]["sni_hosts"][0] == "httpbin.example.com");
  // The test leaves are made for 2 days (tls_support.cpp).
  int64_t left = tls[0]["expires_in_seconds"].get<int64_t>();
  CHECK(left > 86400);
  CHECK(left <= 2 * 86400 + 60);
  std::string expiry = tls[0]["certificate_expiry"].get<std::string>();
  CHECK(expiry.size() == 20);
  CHECK(expiry.back() == 'Z');
  // A later `now` leaves less time.
  auto later = nlohmann::json::parse(config_dump_json(**snapshot, now + 24h));
  CHECK(later["listeners"][0]["tls_servers"][0]["expires_in_seconds"].get<int64_t>() ==
        left - 86400);
  CHECK(text.find("PRIVATE KEY") == std::string::npos);
}

}  // namespace test_admin_config_dump
