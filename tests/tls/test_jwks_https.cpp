// jwksUri over HTTPS (issue 12, section 1): the gateway fetches the key set
// through its TLS client, verifying the server against the CAs it is given
// (JwksFetchOptions::ca_certificates) and the URL's host.

#include <doctest/doctest.h>

#include <asio/read_until.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/jwt_signer.hpp"
#include "support/raw_client.hpp"
#include "tls/cert.hpp"
#include "tls/tls_support.hpp"

namespace test_jwks_https {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

const KeyPair& localhost_cert() {
  static const KeyPair cert =
      make_leaf_cert("jwks-localhost", "/CN=localhost",
                     "subjectAltName=DNS:localhost,IP:127.0.0.1\n", "ca1", 4101);
  return cert;
}

struct Fetched {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<JwksFetchStatus> all;
  std::optional<JwksFetchStatus> first() {
    std::unique_lock lock(mutex);
    if (!cv.wait_for(lock, 10s, [&] { return !all.empty(); })) return std::nullopt;
    return all.front();
  }
};

// A gateway whose one provider fetches `uri`, trusting `ca` (empty: the
// system store).
std::unique_ptr<Gateway> start_gateway(uint16_t backend, const std::string& uri,
                                       const std::string& ca, Fetched& fetched) {
  GatewayConfig cfg = single_upstream_config(backend);
  JwtProvider p;
  p.issuer = "testing@secure.istio.io";
  p.jwks_uri = uri;
  cfg.security.jwt_providers.push_back(p);
  GatewayOptions options;
  options.workers = 1;
  options.jwks.ca_certificates = ca;
  options.on_jwks_fetch = [&fetched](const JwksFetchStatus& s) {
    std::lock_guard lock(fetched.mutex);
    fetched.all.push_back(s);
    fetched.cv.notify_all();
  };
  auto gw = std::make_unique<Gateway>(std::move(options));
  Status st = gw->apply(std::move(cfg));
  REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
  gw->start();
  return gw;
}

int get_status(uint16_t port, const std::string& token) {
  RawClient c(port);
  REQUIRE(c.send(make_request("GET", "/", "example.com", {{"Authorization", "Bearer " + token}})));
  auto r = c.read_response();
  REQUIRE(r);
  return r->status;
}

std::string token_for(const JwtSigner& signer) {
  return signer.sign(R"({"iss":"testing@secure.istio.io","sub":"alice","exp":)" +
                     std::to_string(unix_now() + 3600) + "}");
}

}  // namespace

TEST_CASE("jwks https: the key set is fetched over TLS from a server the given CA vouches for") {
  FakeUpstream backend("backend");
  JwtSigner signer("k1");
  HttpsDocument server(localhost_cert(), signer.jwks());
  Fetched fetched;
  // By name (looked up, sent as SNI, checked against the certificate).
  auto gw = start_gateway(backend.port(),
                          "https://localhost:" + std::to_string(server.port()) + "/jwks.json",
                          pki().ca1.text, fetched);
  auto f = fetched.first();
  REQUIRE(f);
  CHECK_MESSAGE(f->state == JwksFetchStatus::State::ok, f->error);
  CHECK(server.served() == 1);
  CHECK(get_status(gw->port("main"), token_for(signer)) == 200);
  gw->stop();
}

TEST_CASE("jwks https: a server the trust store does not vouch for fails the fetch") {
  FakeUpstream backend("backend");
  JwtSigner signer("k1");
  HttpsDocument server(localhost_cert(), signer.jwks());
  std::string uri = "https://localhost:" + std::to_string(server.port()) + "/jwks.json";

  SUBCASE("the system trust store does not hold the test CA") {
    Fetched fetched;
    auto gw = start_gateway(backend.port(), uri, "", fetched);
    auto f = fetched.first();
    REQUIRE(f);
    CHECK(f->state == JwksFetchStatus::State::failed);
    CHECK(f->error.find("TLS handshake failed") != std::string::npos);
    CHECK(get_status(gw->port("main"), token_for(signer)) == 401);
    gw->stop();
  }
  SUBCASE("another CA") {
    Fetched fetched;
    auto gw = start_gateway(backend.port(), uri, pki().ca2.text, fetched);
    auto f = fetched.first();
    REQUIRE(f);
    CHECK(f->state == JwksFetchStatus::State::failed);
    gw->stop();
  }
  SUBCASE("a certificate for another name") {
    HttpsDocument other(pki().httpbin, signer.jwks());  // CA1, httpbin.example.com
    Fetched fetched;
    auto gw = start_gateway(backend.port(),
                            "https://localhost:" + std::to_string(other.port()) + "/jwks.json",
                            pki().ca1.text, fetched);
    auto f = fetched.first();
    REQUIRE(f);
    CHECK(f->state == JwksFetchStatus::State::failed);
    CHECK(other.served() == 0);
    gw->stop();
  }
  CHECK(server.served() == 0);
}

}  // namespace test_jwks_https
