// The ClientHello reader used for PASSTHROUGH, and the BoringSSL link check.
#include <doctest/doctest.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tls/client_hello.hpp"

namespace test_client_hello {

#ifndef OPENSSL_IS_BORINGSSL
#error "sluice must build against BoringSSL (android-libboringssl-dev), not OpenSSL"
#endif

namespace {

using sluice::tls::ClientHelloInfo;
using sluice::tls::parse_client_hello;
using Status = ClientHelloInfo::Status;

// The first flight of a real BoringSSL client, captured through a memory BIO.
std::vector<uint8_t> real_client_hello(const char* sni) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_connect_state(ssl);
  if (sni) SSL_set_tlsext_host_name(ssl, sni);
  SSL_do_handshake(ssl);  // wants to read: the ClientHello is in wbio
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(wbio, &data, &len);
  std::vector<uint8_t> out(data, data + len);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

ClientHelloInfo parse(const std::vector<uint8_t>& b) {
  return parse_client_hello(b);
}

}  // namespace

TEST_CASE("BoringSSL, not OpenSSL, is what the library links") {
  CHECK(std::string(OpenSSL_version(OPENSSL_VERSION)).find("BoringSSL") != std::string::npos);
  // The loaded libssl is Debian's Android BoringSSL build, not libssl.so.3.
  std::ifstream maps("/proc/self/maps");
  std::string line;
  bool android_ssl = false, openssl3 = false;
  while (std::getline(maps, line)) {
    if (line.find("/android/libssl.so") != std::string::npos) android_ssl = true;
    if (line.find("libssl.so.3") != std::string::npos) openssl3 = true;
  }
  CHECK(android_ssl);
  CHECK_FALSE(openssl3);
}

TEST_CASE("client hello: SNI from a real BoringSSL ClientHello") {
  auto hello = real_client_hello("Nginx.Example.COM");
  REQUIRE(hello.size() > 50);
  auto info = parse(hello);
  CHECK(info.status == Status::ok);
  CHECK(info.sni == "nginx.example.com");

  auto no_sni = parse(real_client_hello(nullptr));
  CHECK(no_sni.status == Status::ok);
  CHECK(no_sni.sni.empty());
}

TEST_CASE("client hello: every strict prefix asks for more, never succeeds") {
  auto hello = real_client_hello("a.example.com");
  for (size_t n = 0; n < hello.size(); ++n) {
    auto info = parse_client_hello(std::span<const uint8_t>(hello.data(), n));
    CHECK_MESSAGE(info.status == Status::need_more, "prefix ", n);
  }
}

TEST_CASE("client hello: split over several records") {
  auto hello = real_client_hello("split.example.com");
  // Re-frame the handshake message into 7-byte records.
  std::vector<uint8_t> body(hello.begin() + 5, hello.end());
  std::vector<uint8_t> framed;
  for (size_t off = 0; off < body.size(); off += 7) {
    size_t n = std::min<size_t>(7, body.size() - off);
    framed.insert(framed.end(), {22, 3, 1, 0, static_cast<uint8_t>(n)});
    framed.insert(framed.end(), body.begin() + off, body.begin() + off + n);
  }
  auto info = parse(framed);
  CHECK(info.status == Status::ok);
  CHECK(info.sni == "split.example.com");
  auto partial = parse_client_hello(std::span<const uint8_t>(framed.data(), framed.size() - 3));
  CHECK(partial.status == Status::need_more);
}

TEST_CASE("client hello: not TLS, wrong message, oversized") {
  std::string http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(parse_client_hello(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(http.data()), http.size()))
            .status == Status::invalid);
  CHECK(parse({22}).status == Status::need_more);
  CHECK(parse({23}).status == Status::invalid);
  CHECK(parse({22, 2}).status == Status::invalid);
  CHECK(parse({22, 3, 1, 0, 0}).status == Status::invalid);                       // empty record
  CHECK(parse({22, 3, 1, 0, 4, 2, 0, 0, 0}).status == Status::invalid);           // ServerHello
  CHECK(parse({22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff}).status == Status::invalid);  // too large
  // A ClientHello whose declared body is too short for its fields.
  CHECK(parse({22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3}).status == Status::invalid);
}

TEST_CASE("client hello: corrupted input never crashes and never reads out of bounds") {
  auto hello = real_client_hello("fuzz.example.com");
  std::mt19937 rng(12345);
  size_t ok = 0;
  for (int round = 0; round < 20000; ++round) {
    auto b = hello;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    if (rng() % 4 == 0) b.resize(rng() % b.size());
    // An exact-size copy so ASan sees any read past the end.
    std::vector<uint8_t> exact(b.begin(), b.end());
    auto info = parse(exact);
    if (info.status == Status::ok) {
      ++ok;
      for (char c : info.sni) CHECK((c > 0x20 && c < 0x7f && !(c >= 'A' && c <= 'Z')));
    }
  }
  CHECK(ok > 0);  // many mutations leave the hello valid
}

TEST_CASE("server_name extension body") {
  using sluice::tls::parse_server_name;
  std::vector<uint8_t> ok = {0, 6, 0, 0, 3, 'A', 'b', 'c'};
  CHECK(parse_server_name(ok) == std::optional<std::string>("abc"));
  std::vector<uint8_t> bad_len = {0, 7, 0, 0, 3, 'a', 'b', 'c'};
  CHECK_FALSE(parse_server_name(bad_len));
  std::vector<uint8_t> nul = {0, 6, 0, 0, 3, 'a', 0, 'c'};
  CHECK_FALSE(parse_server_name(nul));
  std::vector<uint8_t> empty_name = {0, 3, 0, 0, 0};
  CHECK_FALSE(parse_server_name(empty_name));
}

}  // namespace test_client_hello
