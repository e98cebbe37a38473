// Reading the ClientHello on a listener with PASSTHROUGH routes (issue 10,
// item 12): the bytes are read as they arrive, a partial hello costs no
// wake-ups until the handshake deadline, and a hello in fragments still
// routes, relayed or terminated.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"
#include "support/temp_dir.hpp"
#include "support/tunnel_upstream.hpp"
#include "support/wait.hpp"
#include "tls/cert.hpp"
#include "tls/server.hpp"
#include "tls/tls_support.hpp"

namespace test_client_hello_reads {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// A TLS client driven by hand: its first flight is captured before any
// byte is sent, so the test decides how the ClientHello is cut, then the
// handshake goes on over the socket.
class SplitHelloClient {
 public:
  // port 0: only the ClientHello is wanted, no connection.
  SplitHelloClient(uint16_t port, const std::string& sni, const Pem& ca)
      : ctx_(SSL_CTX_new(TLS_method())) {
    REQUIRE(tls::load_trust(ctx_, ca.text, false).empty());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    ssl_ = SSL_new(ctx_);
    SSL_set_tlsext_host_name(ssl_, sni.c_str());
    X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl_), sni.data(), sni.size());
    SSL_set_bio(ssl_, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set_connect_state(ssl_);
    SSL_do_handshake(ssl_);  // wants to read: the ClientHello is in the write BIO
    const uint8_t* data = nullptr;
    size_t len = 0;
    BIO_mem_contents(SSL_get_wbio(ssl_), &data, &len);
    hello_.assign(data, data + len);
    if (port == 0) return;

    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  }
  ~SplitHelloClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    if (fd_ >= 0) ::close(fd_);
  }

  const std::vector<uint8_t>& hello() const { return hello_; }
  uint16_t local_port() const {
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }
  bool send_raw(size_t from, size_t to) {
    return ::send(fd_, hello_.data() + from, to - from, MSG_NOSIGNAL) ==
           static_cast<ssize_t>(to - from);
  }
  // After the whole hello went out by hand: the rest of the handshake and
  // one GET over the socket. The response body, or nullopt.
  std::optional<std::string> finish_and_get(const std::string& host) {
    BIO* sock = BIO_new_socket(fd_, BIO_NOCLOSE);
    BIO_up_ref(sock);
    SSL_set0_rbio(ssl_, sock);
    SSL_set0_wbio(ssl_, sock);
    if (SSL_do_handshake(ssl_) != 1) return std::nullopt;
    std::string req = fmt::format("GET / HTTP/1.1\r\nhost: {}\r\n\r\n", host);
    if (SSL_write(ssl_, req.data(), static_cast<int>(req.size())) <= 0) return std::nullopt;
    std::string got;
    char buf[4096];
    for (;;) {
      size_t head_end = got.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t cl = got.find("ontent-Length: ");
        if (cl == std::string::npos) cl = got.find("ontent-length: ");
        if (cl != std::string::npos && cl < head_end) {
          size_t n = std::stoul(got.substr(cl + 15));
          if (got.size() >= head_end + 4 + n) {
            if (got.compare(0, 12, "HTTP/1.1 200") != 0) return std::nullopt;
            return got.substr(head_end + 4, n);
          }
        }
      }
      int n = SSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) return std::nullopt;
      got.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  std::vector<uint8_t> hello_;
};

TlsServer simple_server(std::vector<std::string> hosts, const KeyPair& kp) {
  TlsServer s;
  s.sni_hosts = std::move(hosts);
  s.certificate_chain = kp.cert.text;
  s.private_key = kp.key.text;
  return s;
}

// Listener "main": terminates httpbin.example.com, relays nginx.example.com
// to `origin`.
GatewayConfig mixed_config(uint16_t backend_port, uint16_t origin_port) {
  const Pki& p = pki();
  auto cfg = single_upstream_config(backend_port);
  cfg.listeners[0].tls_servers = {simple_server({"httpbin.example.com"}, p.httpbin)};
  cfg.upstreams.push_back(loopback_upstream("nginx", {origin_port}));
  cfg.listeners[0].passthrough.push_back(TlsPassthroughRoute{{"nginx.example.com"}, "nginx", ""});
  return cfg;
}

struct Usage {
  long voluntary_switches;
  std::chrono::microseconds cpu;
};
Usage usage_now() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& t) {
    return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec);
  };
  return Usage{ru.ru_nvcsw, us(ru.ru_utime) + us(ru.ru_stime)};
}

}  // namespace

TEST_CASE("passthrough listener: a partial ClientHello waits without waking the worker") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TlsOrigin origin("nginx", p.nginx);
  auto cfg = mixed_config(up.port(), origin.port());
  constexpr auto kTimeout = 1500ms;
  cfg.listeners[0].tls_handshake_timeout = kTimeout;
  TestGateway gw(cfg);
  uint16_t port = gw.port();
  auto failures = tls::handshake_failure_count();

  SplitHelloClient hello_source(0, "nginx.example.com", p.ca2);
  const auto& hello = hello_source.hello();
  REQUIRE(hello.size() > 100);
  RawClient half(port, 5s);
  REQUIRE(half.connected());
  auto start = std::chrono::steady_clock::now();
  REQUIRE(
      half.send(std::string_view(reinterpret_cast<const char*>(hello.data()), hello.size() / 2)));
  // The gateway took the bytes off the socket (it reads, it does not peek);
  // bounded well below the handshake timeout, so the window below stays.
  CHECK(gateway_read_everything(port, half.local_port(), 500ms));

  // From here to the deadline the worker has nothing to do: it may wake for
  // its 50 ms deadline ticker (about 20 times a second), not for the socket. Voluntary context
  // switches count every time a thread of this process blocked again; a
  // worker polling the socket every 2 ms makes hundreds of them per second.
  Usage before = usage_now();
  CHECK(half.is_closed(5s));
  Usage after = usage_now();
  auto elapsed = std::chrono::steady_clock::now() - start;
  long switches = after.voluntary_switches - before.voluntary_switches;
  auto cpu = after.cpu - before.cpu;
  MESSAGE("waiting window: ", switches, " voluntary switches, ", cpu.count(), " us CPU");
  CHECK(elapsed >= kTimeout);
  CHECK(switches < 100);
  CHECK(cpu < 300ms);
  CHECK(wait_until([&] { return tls::handshake_failure_count() > failures; }));
  CHECK(origin.handshakes() == 0);
}

TEST_CASE("passthrough listener: a ClientHello in three fragments is relayed by SNI") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TlsOrigin origin("nginx", p.nginx);
  TestGateway gw(mixed_config(up.port(), origin.port()));
  uint16_t port = gw.port();

  SplitHelloClient c(port, "nginx.example.com", p.ca2);
  size_t n = c.hello().size();
  // Inside the record header, then inside the hello body, then the rest.
  std::vector<size_t> cuts{0, 3, n / 2, n};
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    REQUIRE(c.send_raw(cuts[i], cuts[i + 1]));
    // Each fragment is read by the gateway before the next one is sent.
    if (i + 2 < cuts.size()) CHECK(gateway_read_everything(port, c.local_port()));
  }
  auto body = c.finish_and_get("nginx.example.com");
  REQUIRE(body);
  CHECK(*body == "nginx client=-");
  CHECK(origin.handshakes() == 1);
  CHECK(up.request_count() == 0);
}

TEST_CASE("passthrough listener: a ClientHello in three fragments is terminated by SNI") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TlsOrigin origin("nginx", p.nginx);
  TestGateway gw(mixed_config(up.port(), origin.port()));
  uint16_t port = gw.port();

  SplitHelloClient c(port, "httpbin.example.com", p.ca1);
  size_t n = c.hello().size();
  std::vector<size_t> cuts{0, 3, n / 2, n};
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    REQUIRE(c.send_raw(cuts[i], cuts[i + 1]));
    if (i + 2 < cuts.size()) CHECK(gateway_read_everything(port, c.local_port()));
  }
  // BoringSSL got the bytes the gateway had already read, in order.
  auto body = c.finish_and_get("httpbin.example.com");
  REQUIRE(body);
  CHECK(*body == "backend");
  CHECK(up.request_count() == 1);
  CHECK(origin.handshakes() == 0);
}

TEST_CASE("passthrough relay counts its upstream connection") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TlsOrigin origin("nginx", p.nginx);
  auto cfg = mixed_config(up.port(), origin.port());
  cfg.upstreams.back().pool.max_connections = 1;
  TestGateway gw(cfg);
  uint16_t port = gw.port();
  auto open_to_nginx = [&] { return gw.gateway().upstream("nginx").connections; };
  {
    TlsClient first(port, {.sni = "nginx.example.com", .ca = &p.ca2});
    REQUIRE_MESSAGE(first.handshake(), first.error());
    CHECK(open_to_nginx() == 1);
    // At max_connections a second relay is refused, not opened.
    TlsClient second(port, {.sni = "nginx.example.com", .ca = &p.ca2, .timeout = 2000ms});
    CHECK_FALSE(second.handshake());
    auto r = first.get("/", "nginx.example.com");
    REQUIRE(r);
    CHECK(r->body == "nginx client=-");
  }
  CHECK(wait_until([&] { return open_to_nginx() == 0; }));
  TlsClient third(port, {.sni = "nginx.example.com", .ca = &p.ca2});
  CHECK_MESSAGE(third.handshake(), third.error());
}

TEST_CASE("passthrough listener: Istio's TCP series count the ClientHello and the bytes after it") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TunnelUpstream echo(TunnelUpstream::Mode::echo);
  TestGateway gw(mixed_config(up.port(), echo.port()));
  SplitHelloClient hello_source(0, "nginx.example.com", p.ca2);
  const auto& hello = hello_source.hello();
  // The echo answers the hello with itself: the relay carries bytes, never TLS.
  std::string bytes = std::string(hello.begin(), hello.end()) + "after the hello";
  CHECK(exchange_until_close(gw.port(), bytes) == bytes);
  Stats s;
  CHECK(wait_until([&] {
    s = gw.gateway().stats();
    return s.tcp.size() == 1 && s.tcp[0].connections_closed == 1;
  }));
  REQUIRE(s.tcp.size() == 1);
  const TcpSeries& t = s.tcp[0];
  CHECK(t.response_flags == "-");
  CHECK(t.connections_opened == 1);
  CHECK(t.destination_service == "nginx");  // the passthrough route's upstream, no service
  CHECK(t.destination_upstream == "nginx");
  // What the gateway read to find the SNI was received from the client too.
  CHECK(t.received_bytes == bytes.size());
  CHECK(t.sent_bytes == bytes.size());
  CHECK(s.requests.empty());
}

TEST_CASE("passthrough listener: one access-log line per relayed connection, with the SNI") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TunnelUpstream echo(TunnelUpstream::Mode::echo);
  GatewayConfig cfg = mixed_config(up.port(), echo.port());
  TempDir dir;
  AccessLogConfig log;
  log.path = dir.file("access.log");
  log.format =
      "%PROTOCOL% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_CLUSTER% "
      "%REQUESTED_SERVER_NAME% %DOWNSTREAM_LOCAL_ADDRESS%\n";
  cfg.telemetry.access_logs.push_back(log);
  cfg.telemetry.access_log_flush_interval = {};
  TestGateway gw(std::move(cfg));
  SplitHelloClient hello_source(0, "nginx.example.com", p.ca2);
  const auto& hello = hello_source.hello();
  std::string bytes = std::string(hello.begin(), hello.end()) + "after";
  CHECK(exchange_until_close(gw.port(), bytes) == bytes);
  auto read = [&] { return read_file(log.path); };
  REQUIRE(wait_until([&] { return read().find('\n') != std::string::npos; }));
  CHECK(read() == fmt::format("- - {} {} nginx nginx.example.com 127.0.0.1:{}\n", bytes.size(),
                              bytes.size(), gw.port()));
}

}  // namespace test_client_hello_reads
