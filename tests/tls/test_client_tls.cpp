// Upstream TLS origination (lib/tls/client.hpp) against an in-process TLS
// origin: SIMPLE, MUTUAL, SNI and SAN checks, insecure_skip_verify.
#include <doctest/doctest.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "tls/client.hpp"
#include "tls/tls_support.hpp"

namespace test_client_tls {

using namespace sluice;
using namespace sluice::test;
using tls::ClientTlsSettings;

namespace {

struct Outcome {
  std::error_code handshake;
  std::string body;  // the origin's answer after a GET, when the handshake worked
  std::string sni_sent;
};

// Connects to the origin, runs handshake_client, sends one GET.
Outcome originate(uint16_t port, const ClientTlsSettings& settings, std::string destination) {
  auto compiled = tls::ClientContext::compile(settings, "Upstream test");
  REQUIRE_MESSAGE(compiled.ok(), compiled.error().to_string());
  auto ctx = compiled.value();
  asio::io_context io;
  Outcome out;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
        asio::ssl::stream<asio::ip::tcp::socket> stream(io, ctx->context());
        auto [cec] = co_await stream.lowest_layer().async_connect(
            {asio::ip::make_address("127.0.0.1"), port}, nothrow);
        CHECK_FALSE(cec);
        if (cec) co_return;
        out.handshake = co_await tls::handshake_client(stream, *ctx, destination);
        if (const char* sni = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name))
          out.sni_sent = sni;
        if (out.handshake) co_return;
        std::string req = "GET / HTTP/1.1\r\nHost: " + destination + "\r\n\r\n";
        co_await asio::async_write(stream, asio::buffer(req), nothrow);
        std::string in;
        char buf[1024];
        for (;;) {
          auto [ec, n] = co_await stream.async_read_some(asio::buffer(buf), nothrow);
          if (ec) break;
          in.append(buf, n);
          auto head_end = in.find("\r\n\r\n");
          if (head_end != std::string::npos) {
            auto cl = in.find("Content-Length: ");
            size_t len = std::stoul(in.substr(cl + 16));
            if (in.size() >= head_end + 4 + len) {
              out.body = in.substr(head_end + 4, len);
              break;
            }
          }
        }
      },
      asio::detached);
  io.run_for(std::chrono::seconds(5));
  return out;
}

}  // namespace

TEST_CASE("origination SIMPLE: SNI from the destination host, chain and name verified") {
  const Pki& p = pki();
  TlsOrigin origin("nginx", p.nginx);
  ClientTlsSettings s;
  s.ca_certificates = p.ca2.text;
  auto ok = originate(origin.port(), s, "nginx.example.com");
  CHECK_MESSAGE(!ok.handshake, ok.handshake.message());
  CHECK(ok.sni_sent == "nginx.example.com");
  CHECK(ok.body == "nginx client=-");

  // A name the certificate does not cover fails verification.
  auto wrong_host = originate(origin.port(), s, "other.example.com");
  CHECK(wrong_host.handshake);
  // An explicit sni overrides the destination host (and is what is checked).
  s.sni = "nginx.example.com";
  auto with_sni = originate(origin.port(), s, "nginx.internal");
  CHECK_MESSAGE(!with_sni.handshake, with_sni.handshake.message());
  CHECK(with_sni.sni_sent == "nginx.example.com");

  // The wrong CA fails; insecure_skip_verify accepts anything.
  ClientTlsSettings wrong_ca;
  wrong_ca.ca_certificates = p.ca1.text;
  CHECK(originate(origin.port(), wrong_ca, "nginx.example.com").handshake);
  wrong_ca.insecure_skip_verify = true;
  CHECK_FALSE(originate(origin.port(), wrong_ca, "nginx.example.com").handshake);
}

TEST_CASE("origination: subject_alt_names replace the host name check") {
  const Pki& p = pki();
  TlsOrigin origin("nginx", p.nginx);
  ClientTlsSettings s;
  s.ca_certificates = p.ca2.text;
  s.subject_alt_names = {"nginx.example.com"};
  CHECK_FALSE(originate(origin.port(), s, "10.0.0.1").handshake);
  s.subject_alt_names = {"spiffe://cluster.local/ns/x/sa/y"};
  auto r = originate(origin.port(), s, "nginx.example.com");
  CHECK(r.handshake == tls::make_error_code(tls::ClientError::san_mismatch));
}

TEST_CASE("origination MUTUAL: the client certificate is presented") {
  const Pki& p = pki();
  TlsOrigin origin("secure", p.nginx, &p.ca1);
  ClientTlsSettings s;
  s.ca_certificates = p.ca2.text;
  auto without = originate(origin.port(), s, "nginx.example.com");
  CHECK(without.body.empty());  // the origin refuses the handshake
  s.mode = ClientTlsSettings::Mode::mutual;
  s.client_certificate = p.client.cert.text;
  s.private_key = p.client.key.text;
  auto with = originate(origin.port(), s, "nginx.example.com");
  CHECK_MESSAGE(!with.handshake, with.handshake.message());
  CHECK(with.body == "secure client=CN=client,O=client organization");
}

TEST_CASE("origination config errors name the field") {
  const Pki& p = pki();
  auto err = [](const ClientTlsSettings& s) {
    auto r = tls::ClientContext::compile(s, "Upstream reviews");
    return r.ok() ? std::string() : r.error().to_string();
  };
  ClientTlsSettings s;
  s.mode = ClientTlsSettings::Mode::mutual;
  CHECK(err(s) == "Upstream reviews: tls.client_certificate: required with mode MUTUAL");
  s.client_certificate = p.client.cert.text;
  s.private_key = p.nginx.key.text;
  CHECK(err(s).find("Upstream reviews: tls.private_key: does not match") == 0);
  ClientTlsSettings bad_ca;
  bad_ca.ca_certificates = "not pem";
  CHECK(err(bad_ca).find("Upstream reviews: tls.ca_certificates:") == 0);
  ClientTlsSettings system;
  CHECK(err(system).empty());  // the system trust store
}

}  // namespace test_client_tls
