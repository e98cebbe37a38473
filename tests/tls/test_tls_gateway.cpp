// Istio's secure-ingress task against a real Gateway: SIMPLE, SNI, MUTUAL,
// rotation, PASSTHROUGH, httpsRedirect, handshake timeout.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <mutex>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "support/tunnel_upstream.hpp"
#include "support/wait.hpp"
#include "tls/server.hpp"
#include "tls/tls_support.hpp"

namespace test_tls_gateway {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

TlsServer server_for(std::vector<std::string> hosts, const KeyPair& kp,
                     TlsServer::Mode mode = TlsServer::Mode::simple, const Pem* ca = nullptr) {
  TlsServer s;
  s.sni_hosts = std::move(hosts);
  s.mode = mode;
  s.certificate_chain = kp.cert.text;
  s.private_key = kp.key.text;
  if (ca) s.ca_certificates = ca->text;
  return s;
}

GatewayConfig tls_config(uint16_t upstream_port, std::vector<TlsServer> servers) {
  auto cfg = single_upstream_config(upstream_port);
  cfg.listeners[0].tls_servers = std::move(servers);
  return cfg;
}

std::string resolve(std::string_view host, uint16_t port) {
  return fmt::format("{}:{}:127.0.0.1", host, port);
}

// Remembers what hooks saw of the TLS connection.
class TlsHooks : public RecordingHooks {
 public:
  std::optional<Response> on_request(RequestContext& ctx) override {
    std::lock_guard lock(mutex_);
    sni_.emplace_back(ctx.sni);
    identity_.emplace_back(ctx.peer_identity);
    return std::nullopt;
  }
  std::vector<std::string> identities() const {
    std::lock_guard lock(mutex_);
    return identity_;
  }
  std::vector<std::string> snis() const {
    std::lock_guard lock(mutex_);
    return sni_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> sni_, identity_;
};

}  // namespace

TEST_CASE("SIMPLE: curl reaches the upstream over https with the CA") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin)}));
  uint16_t port = gw.port();
  auto r = run_curl({"--cacert", p.ca1.path, "--resolve", resolve("httpbin.example.com", port),
                     "-w", "\n%{http_code} %{http_version}",
                     fmt::format("https://httpbin.example.com:{}/status/418", port)});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == "backend\n200 2");  // curl offers h2 by ALPN, as Istio serves it
  REQUIRE(up.wait_for_requests(1));
  auto req = *up.last_request();
  CHECK(req.target == "/status/418");
  CHECK(req.header("x-forwarded-proto") == std::optional<std::string>("https"));
  CHECK_FALSE(req.header("x-forwarded-client-cert"));

  // The wrong CA fails verification on the client side.
  auto bad = run_curl({"--cacert", p.ca2.path, "--resolve", resolve("httpbin.example.com", port),
                       fmt::format("https://httpbin.example.com:{}/", port)});
  CHECK(bad.exit_code == 60);  // CURLE_PEER_FAILED_VERIFICATION

  // ALPN picks h2 for a client that offers it (ListenerConfig::http2).
  TlsClient c(port, {.sni = "httpbin.example.com", .ca = &p.ca1, .offer_h2 = true});
  REQUIRE_MESSAGE(c.handshake(), c.error());
  CHECK(c.alpn() == "h2");
  TlsClient h1(port, {.sni = "httpbin.example.com", .ca = &p.ca1});
  REQUIRE_MESSAGE(h1.handshake(), h1.error());
  CHECK(h1.alpn() == "http/1.1");
}

TEST_CASE("SNI: two hosts with their own certificates on one port") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  auto hooks = std::make_shared<TlsHooks>();
  TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin),
                                        server_for({"helloworld.example.com"}, p.helloworld)}),
                 1, hooks);
  uint16_t port = gw.port();
  for (std::string host : {"httpbin.example.com", "helloworld.example.com"}) {
    TlsClient c(port, {.sni = host, .ca = &p.ca1});
    REQUIRE_MESSAGE(c.handshake(), c.error());
    CHECK(c.peer_subject().find("CN=" + host) != std::string::npos);
    auto r = c.get("/", host);
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(hooks->snis() == std::vector<std::string>{"httpbin.example.com", "helloworld.example.com"});

  // curl -v names the served certificate's subject.
  auto r =
      run_curl({"-v", "--cacert", p.ca1.path, "--resolve", resolve("helloworld.example.com", port),
                fmt::format("https://helloworld.example.com:{}/", port)});
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("CN=helloworld.example.com") != std::string::npos);
}

TEST_CASE("SNI: an unknown host or no SNI fails the handshake with an alert") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin),
                                        server_for({"*.example.org"}, p.helloworld)}));
  uint16_t port = gw.port();
  auto before = tls::handshake_failure_count();
  {
    TlsClient c(port, {.sni = "unknown.example.com", .ca = &p.ca1});
    CHECK_FALSE(c.handshake());
    CHECK_MESSAGE(c.error().find("HANDSHAKE_FAILURE") != std::string::npos, c.error());
  }
  {
    TlsClient c(port, {.sni = ""});
    CHECK_FALSE(c.handshake());
  }
  // A wildcard entry serves any name under it.
  {
    TlsClient c(port, {.sni = "a.b.example.org"});
    CHECK_MESSAGE(c.handshake(), c.error());
    CHECK(c.peer_subject().find("CN=helloworld.example.com") != std::string::npos);
  }
  CHECK(wait_until([&] { return tls::handshake_failure_count() >= before + 2; }));
  auto r = run_curl({"--cacert", p.ca1.path, "--resolve", resolve("other.example.com", port),
                     fmt::format("https://other.example.com:{}/", port)});
  CHECK(r.exit_code == 35);  // CURLE_SSL_CONNECT_ERROR
  CHECK_MESSAGE(r.err.find("handshake failure") != std::string::npos, r.err);
}

TEST_CASE("MUTUAL: a client certificate is required, and its identity reaches hooks and upstream") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  auto hooks = std::make_shared<TlsHooks>();
  TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin,
                                                   TlsServer::Mode::mutual, &p.ca1)}),
                 1, hooks);
  uint16_t port = gw.port();
  std::string url = fmt::format("https://httpbin.example.com:{}/headers", port);
  std::string res = resolve("httpbin.example.com", port);

  auto without = run_curl({"--cacert", p.ca1.path, "--resolve", res, url});
  CHECK(without.exit_code != 0);
  CHECK(up.request_count() == 0);

  // A certificate from another CA is refused too.
  auto stranger = run_curl({"--cacert", p.ca1.path, "--resolve", res, "--cert",
                            p.client_ca2.cert.path, "--key", p.client_ca2.key.path, url});
  CHECK(stranger.exit_code != 0);
  CHECK(up.request_count() == 0);

  auto with = run_curl({"--cacert", p.ca1.path, "--resolve", res, "--cert", p.client.cert.path,
                        "--key", p.client.key.path, "-H", "x-forwarded-client-cert: spoofed", url});
  CHECK_MESSAGE(with.exit_code == 0, with.err);
  CHECK(with.out == "backend");
  REQUIRE(up.wait_for_requests(1));
  auto req = *up.last_request();
  CHECK(req.header_count("x-forwarded-client-cert") == 1);
  std::string xfcc = req.header("x-forwarded-client-cert").value_or("");
  auto fp = run_process("openssl",
                        {"x509", "-in", p.client.cert.path, "-noout", "-fingerprint", "-sha256"});
  std::string hex;
  for (char c : fp.out.substr(fp.out.find('=') + 1))
    if (std::isxdigit(static_cast<unsigned char>(c)))
      hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  CHECK(hex.size() == 64);
  CHECK(xfcc.starts_with("Hash=" + hex + ";Subject=\""));
  CHECK(xfcc.find(";Subject=\"CN=client,O=client organization\"") != std::string::npos);
  CHECK(xfcc.find(";URI=spiffe://cluster.local/ns/default/sa/client") != std::string::npos);
  CHECK(xfcc.ends_with(";DNS=client.example.com"));
  CHECK(xfcc.find("spoofed") == std::string::npos);
  REQUIRE(hooks->identities().size() == 1);
  CHECK(hooks->identities()[0] == "spiffe://cluster.local/ns/default/sa/client");
}

TEST_CASE("OPTIONAL_MUTUAL and client certificate checks") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  auto hooks = std::make_shared<TlsHooks>();
  auto optional =
      server_for({"httpbin.example.com"}, p.httpbin, TlsServer::Mode::optional_mutual, &p.ca1);
  auto pinned =
      server_for({"helloworld.example.com"}, p.helloworld, TlsServer::Mode::mutual, &p.ca1);
  pinned.subject_alt_names = {"spiffe://cluster.local/ns/default/sa/other"};
  TestGateway gw(tls_config(up.port(), {optional, pinned}), 1, hooks);
  uint16_t port = gw.port();
  {
    TlsClient c(port, {.sni = "httpbin.example.com", .ca = &p.ca1});
    REQUIRE_MESSAGE(c.handshake(), c.error());
    auto r = c.get("/", "httpbin.example.com");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  {
    TlsClient c(port, {.sni = "httpbin.example.com", .ca = &p.ca1, .cert = &p.client});
    REQUIRE_MESSAGE(c.handshake(), c.error());
    auto r = c.get("/", "httpbin.example.com");
    REQUIRE(r);
  }
  auto ids = hooks->identities();
  REQUIRE(ids.size() == 2);
  CHECK(ids[0].empty());
  CHECK(ids[1] == "spiffe://cluster.local/ns/default/sa/client");
  {
    // Valid chain, but not one of the accepted subjectAltNames.
    TlsClient c(port, {.sni = "helloworld.example.com", .ca = &p.ca1, .cert = &p.client});
    bool ok = c.handshake() && c.get("/", "helloworld.example.com").has_value();
    CHECK_FALSE(ok);
  }

  // Now accept it by certificate hash.
  auto by_hash = pinned;
  by_hash.subject_alt_names.clear();
  auto hash_out = run_process(
      "openssl", {"x509", "-in", p.client.cert.path, "-noout", "-fingerprint", "-sha256"});
  REQUIRE(hash_out.exit_code == 0);
  auto eq = hash_out.out.find('=');
  std::string fingerprint = hash_out.out.substr(eq + 1);
  while (!fingerprint.empty() && fingerprint.back() == '\n') fingerprint.pop_back();
  by_hash.verify_certificate_hash = {fingerprint};  // "AB:CD:..." as openssl prints it
  REQUIRE(gw.apply(tls_config(up.port(), {optional, by_hash})).ok());
  TlsClient c(port, {.sni = "helloworld.example.com", .ca = &p.ca1, .cert = &p.client});
  REQUIRE_MESSAGE(c.handshake(), c.error());
  auto r = c.get("/", "helloworld.example.com");
  REQUIRE(r);
  CHECK(r->status == 200);
}

// An idle TLS connection parks as a plain one does, keeping only its socket
// and BoringSSL's state (tls::release_ssl), and the next request resumes it
// in a new session. On a ManualClock the tick that sees 50 ms of idleness
// parks it; the listener's sluice_listener_downstream_cx_parked gauge shows
// it. Catches: TLS connections never parking, a resumed stream that lost
// the connection's keys or bytes (pipelined requests), the SNI, client
// identity or XFCC lost on the way (MUTUAL keeps its handshake
// configuration, SIMPLE sheds it), and a parked TLS connection holding up
// the drain.
TEST_CASE("parking: an idle TLS connection parks and resumes with its SNI and identity") {
  const Pki& p = pki();
  for (auto mode : {TlsServer::Mode::simple, TlsServer::Mode::mutual}) {
    bool mutual = mode == TlsServer::Mode::mutual;
    CAPTURE(mutual);
    FakeUpstream up("backend");
    auto hooks = std::make_shared<TlsHooks>();
    ManualClock clock;
    TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin, mode,
                                                     mutual ? &p.ca1 : nullptr)}),
                   1, hooks, &clock);
    auto parked = [&] { return gw.metric("sluice_listener_downstream_cx_parked"); };
    auto park = [&] {
      clock.settle();  // idle from now
      clock.advance(150ms);
      return wait_until([&] { return parked() == 1; });
    };
    TlsClientOptions o;
    o.sni = "httpbin.example.com";
    o.ca = &p.ca1;
    if (mutual) o.cert = &p.client;
    TlsClient c(gw.port(), o);
    REQUIRE_MESSAGE(c.handshake(), c.error());
    auto get = [&](std::string_view target) {
      auto r = c.get(target, "httpbin.example.com");
      return r && r->status == 200 && r->body == "backend";
    };
    REQUIRE_MESSAGE(get("/1"), c.error());
    CHECK(parked() == 0);

    REQUIRE(park());
    REQUIRE_MESSAGE(get("/2"), c.error());
    CHECK(parked() == 0);

    REQUIRE(park());  // two pipelined requests in one record
    REQUIRE(
        c.send("GET /3 HTTP/1.1\r\nHost: httpbin.example.com\r\n\r\n"
               "GET /4 HTTP/1.1\r\nHost: httpbin.example.com\r\n\r\n"));
    for (int i = 0; i < 2; ++i) {
      auto r = c.read_response();
      REQUIRE_MESSAGE(r, c.error());
      CHECK(r->status == 200);
    }

    auto reqs = up.requests();
    REQUIRE(reqs.size() == 4);
    std::string xfcc = reqs[0].header("x-forwarded-client-cert").value_or("");
    CHECK(xfcc.empty() != mutual);
    for (size_t i = 0; i < reqs.size(); ++i) {
      CHECK(reqs[i].target == "/" + std::to_string(i + 1));
      CHECK(reqs[i].header("x-forwarded-client-cert").value_or("") == xfcc);
    }
    std::string identity = mutual ? "spiffe://cluster.local/ns/default/sa/client" : "";
    CHECK(hooks->identities() == std::vector<std::string>(4, identity));
    CHECK(hooks->snis() == std::vector<std::string>(4, "httpbin.example.com"));

    // A parked TLS connection does not hold up the drain.
    REQUIRE(park());
    auto start = std::chrono::steady_clock::now();
    gw.stop();
    CHECK(std::chrono::steady_clock::now() - start < 2s);  // drain_timeout is 5 s
    CHECK(c.closed_by_peer());
  }
}

namespace {
// A TLS client on a plain blocking socket that can seal a request without
// sending it, then send its ciphertext a byte at a time.
class DribbleClient {
 public:
  explicit DribbleClient(uint16_t port) : ctx_(SSL_CTX_new(TLS_method())) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssl_ = SSL_new(ctx_);
    SSL_set_tlsext_host_name(ssl_, "httpbin.example.com");
    SSL_set_fd(ssl_, fd_);
  }
  ~DribbleClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    ::close(fd_);
  }
  bool handshake() { return SSL_connect(ssl_) == 1; }
  bool write(std::string_view s) {
    return SSL_write(ssl_, s.data(), static_cast<int>(s.size())) == static_cast<int>(s.size());
  }
  // The records of `s`, not sent; later writes are sealed the same way.
  std::string seal(std::string_view s) {
    BIO* mem = BIO_new(BIO_s_mem());
    SSL_set0_wbio(ssl_, mem);
    SSL_write(ssl_, s.data(), static_cast<int>(s.size()));
    std::string out;
    char buf[4096];
    for (int n; (n = BIO_read(mem, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  bool send_raw(std::string_view s) {
    return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Segments this client sent that the gateway has not acknowledged yet.
  unsigned unacked() const {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return ~0u;
    return info.tcpi_unacked;
  }
  // The status line of the next response, once all of it is read: head and
  // body come in separate records, and the gateway is done with the
  // response (ManualClock::settle can follow) only when the last one is in.
  std::string read_status() {
    std::string got;
    char buf[4096];
    for (;;) {
      size_t end = got.find("\r\n\r\n");
      if (end != std::string::npos) {
        size_t at = got.find("content-length: ");
        size_t length = at < end ? std::stoul(got.substr(at + 16)) : 0;
        if (got.size() >= end + 4 + length) return got.substr(0, got.find("\r\n"));
      }
      int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) return {};
      got.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_ = -1;
  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
};
}  // namespace

// A parked TLS connection woken by bytes that make no plaintext (here the
// first byte of a record) goes back to waiting, and its idle timeout keeps
// counting from when it went idle. Catches: each wake-up restarting the idle
// timeout, which let a client hold a connection forever with a byte now and
// then.
TEST_CASE("parking: ciphertext that makes no request does not restart a TLS idle timeout") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  ManualClock clock;
  auto cfg = tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin)});
  cfg.limits.idle_timeout = 1000ms;
  TestGateway gw(cfg, 1, nullptr, &clock);
  DribbleClient c(gw.port());
  REQUIRE(c.handshake());
  REQUIRE(c.write("GET /1 HTTP/1.1\r\nHost: httpbin.example.com\r\n\r\n"));
  CHECK(c.read_status() == "HTTP/1.1 200 OK");
  clock.settle();
  // A connection parks once it has been idle 50 ms. Under a slow build the
  // session may go idle only after a first step, so time moves in steps
  // until it parks: it has then been idle at least 50 ms.
  auto parked = [&] { return gw.metric("sluice_listener_downstream_cx_parked") == 1; };
  for (int step = 0; step < 20 && !parked(); ++step) {
    clock.advance(50ms);
    wait_until(parked, 200ms);
  }
  REQUIRE(parked());

  std::string records = c.seal("GET /2 HTTP/1.1\r\nHost: httpbin.example.com\r\n\r\n");
  REQUIRE(records.size() > 5);
  REQUIRE(c.send_raw(records.substr(0, 1)));
  REQUIRE(wait_until([&] { return gw.metric("sluice_listener_downstream_cx_parked") == 0; }));
  clock.settle();
  // Idle at least 50 + 960 ms in all, though only 960 ms since the byte:
  // the timeout fires only if that byte did not restart it.
  clock.advance(960ms);
  CHECK(wait_until([&] { return gw.metric("envoy_listener_downstream_cx_active") == 0; }));
  CHECK(up.request_count() == 1);
}

TEST_CASE("the client's Finished is acknowledged at once (a client with Nagle on sends at once)") {
  // This client leaves Nagle on, as python's ssl does: its first request
  // waits until the Finished before it is acknowledged. The gateway has no
  // data to carry that ACK, and a delayed ACK takes at least 40 ms on Linux,
  // so without a quick ACK no handshake below can see one within 30 ms.
  // Three tries keep a stalled machine from failing the test.
  const Pki& p = pki();
  FakeUpstream up("backend");
  TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin)}));
  bool quick = false;
  for (int attempt = 0; attempt < 3 && !quick; ++attempt) {
    DribbleClient c(gw.port());
    REQUIRE(c.handshake());
    quick = wait_until([&] { return c.unacked() == 0; }, 30ms);
  }
  CHECK(quick);
}

TEST_CASE("rotation: new handshakes get the CA2 certificate, a live connection keeps working") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin)}));
  uint16_t port = gw.port();
  TlsClient old_conn(port, {.sni = "httpbin.example.com", .ca = &p.ca1});
  REQUIRE_MESSAGE(old_conn.handshake(), old_conn.error());
  auto r1 = old_conn.get("/before", "httpbin.example.com");
  REQUIRE(r1);
  CHECK(r1->status == 200);

  REQUIRE(
      gw.apply(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin_ca2)})).ok());
  // New handshakes see the new certificate (the apply is asynchronous per worker).
  CHECK(wait_until([&] {
    TlsClient c(port, {.sni = "httpbin.example.com", .ca = &p.ca2});
    return c.handshake();
  }));
  TlsClient with_old_ca(port, {.sni = "httpbin.example.com", .ca = &p.ca1});
  CHECK_FALSE(with_old_ca.handshake());
  TlsClient fresh(port, {.sni = "httpbin.example.com", .ca = &p.ca2});
  REQUIRE_MESSAGE(fresh.handshake(), fresh.error());
  CHECK(fresh.peer_subject().find("O=httpbin organization 2") != std::string::npos);

  auto r2 = old_conn.get("/after", "httpbin.example.com");
  REQUIRE_MESSAGE(r2, old_conn.error());
  CHECK(r2->status == 200);
  CHECK(old_conn.peer_subject().ends_with("O=httpbin organization"));
}

TEST_CASE("session resumption with tickets") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin)}));
  SSL_SESSION* session = nullptr;
  {
    TlsClient c(gw.port(), {.sni = "httpbin.example.com", .ca = &p.ca1});
    REQUIRE(c.handshake());
    REQUIRE(c.get("/", "httpbin.example.com"));  // TLS 1.3 tickets arrive after the handshake
    CHECK_FALSE(c.session_reused());
    session = c.ticket();
    REQUIRE(session);
    SSL_SESSION_up_ref(session);
  }
  TlsClient c(gw.port(), {.sni = "httpbin.example.com", .ca = &p.ca1, .session = session});
  REQUIRE(c.handshake());
  CHECK(c.session_reused());
  // A ticket from one server entry never resumes on another: here a MUTUAL
  // host, whose client verification it would otherwise skip.
  REQUIRE(gw.apply(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin),
                                          server_for({"helloworld.example.com"}, p.helloworld,
                                                     TlsServer::Mode::mutual, &p.ca1)}))
              .ok());
  CHECK(wait_until([&] {
    TlsClient probe(gw.port(), {.sni = "helloworld.example.com", .ca = &p.ca1});
    // TLS 1.3: the client finishes before the server rejects the missing
    // certificate, so the refusal shows on the first exchange.
    return !(probe.handshake() && probe.get("/", "helloworld.example.com"));
  }));
  SSL_SESSION* simple_ticket = nullptr;
  {
    TlsClient s(gw.port(), {.sni = "httpbin.example.com", .ca = &p.ca1});
    REQUIRE(s.handshake());
    REQUIRE(s.get("/", "httpbin.example.com"));
    simple_ticket = s.ticket();
    REQUIRE(simple_ticket);
    SSL_SESSION_up_ref(simple_ticket);
  }
  TlsClient cross(gw.port(),
                  {.sni = "helloworld.example.com", .ca = &p.ca1, .session = simple_ticket});
  bool served = cross.handshake() && cross.get("/", "helloworld.example.com").has_value();
  CHECK_FALSE(served);
  CHECK_FALSE(cross.session_reused());
  SSL_SESSION_free(simple_ticket);
  SSL_SESSION_free(session);
}

TEST_CASE("PASSTHROUGH: SNI routes the raw TLS stream to a TLS origin the client verifies") {
  const Pki& p = pki();
  FakeUpstream plain("backend");
  TlsOrigin origin("nginx", p.nginx);
  auto cfg = tls_config(plain.port(), {server_for({"httpbin.example.com"}, p.httpbin)});
  cfg.upstreams.push_back(loopback_upstream("nginx", {origin.port()}));
  cfg.listeners[0].passthrough.push_back(TlsPassthroughRoute{{"nginx.example.com"}, "nginx", ""});
  TestGateway gw(cfg);
  uint16_t port = gw.port();

  auto r = run_curl({"--cacert", p.ca2.path, "--resolve", resolve("nginx.example.com", port),
                     fmt::format("https://nginx.example.com:{}/", port)});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out == "nginx client=-");
  CHECK(origin.handshakes() == 1);

  // Keep-alive through the relay: two requests on one connection.
  {
    TlsClient c(port, {.sni = "nginx.example.com", .ca = &p.ca2});
    REQUIRE_MESSAGE(c.handshake(), c.error());
    CHECK(c.peer_subject().find("CN=nginx.example.com") != std::string::npos);
    for (int i = 0; i < 2; ++i) {
      auto resp = c.get("/", "nginx.example.com");
      REQUIRE(resp);
      CHECK(resp->body == "nginx client=-");
    }
  }
  // Other names on the same port are terminated by the gateway.
  auto t = run_curl({"--cacert", p.ca1.path, "--resolve", resolve("httpbin.example.com", port),
                     fmt::format("https://httpbin.example.com:{}/", port)});
  CHECK(t.exit_code == 0);
  CHECK(t.out == "backend");
}

TEST_CASE("PASSTHROUGH only: an unmatched SNI or plain text is closed") {
  const Pki& p = pki();
  TlsOrigin origin("nginx", p.nginx);
  auto cfg = single_upstream_config(origin.port());
  cfg.upstreams[0].name = "nginx";
  cfg.routers[0].virtual_hosts[0].routes[0].destinations[0].upstream = "nginx";
  cfg.listeners[0].passthrough.push_back(TlsPassthroughRoute{{"*.example.com"}, "nginx", ""});
  TestGateway gw(cfg);
  {
    TlsClient c(gw.port(), {.sni = "nginx.example.com", .ca = &p.ca2});
    CHECK_MESSAGE(c.handshake(), c.error());
  }
  {
    TlsClient c(gw.port(), {.sni = "nginx.example.org", .ca = &p.ca2});
    CHECK_FALSE(c.handshake());
  }
  RawClient raw(gw.port());
  REQUIRE(raw.send(make_request("GET", "/")));
  CHECK(raw.is_closed());
  // Only the matching connection reached the origin.
  CHECK(wait_until([&] { return origin.handshakes() == 1; }));
  CHECK(origin.handshakes() == 1);
}

TEST_CASE("httpsRedirect: a plain listener answers 301 to the https URL") {
  FakeUpstream up("backend");
  auto cfg = single_upstream_config(up.port());
  cfg.routers[0].virtual_hosts[0].https_redirect = true;
  TestGateway gw(cfg);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/status/200?x=1", "httpbin.example.com")));
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == 301);
  CHECK(r->header("location") ==
        std::optional<std::string>("https://httpbin.example.com/status/200?x=1"));
  CHECK(up.request_count() == 0);
}

// On a ManualClock: the handshake deadline fires when the clock reaches it.
TEST_CASE("handshake timeout closes a silent client and counts a failure") {
  const Pki& p = pki();
  FakeUpstream up("backend");
  auto cfg = tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin)});
  cfg.listeners[0].tls_handshake_timeout = std::chrono::seconds(10);
  ManualClock clock;
  TestGateway gw(cfg, 1, nullptr, &clock);
  auto before = tls::handshake_failure_count();
  RawClient silent(gw.port());
  REQUIRE(silent.connected());
  REQUIRE(gateway_accepted(gw.port(), silent.local_port()));
  // Accepted, then the handshake coroutine starts (a second step): settled
  // twice, its deadline is armed.
  clock.settle();
  clock.settle();
  clock.advance(std::chrono::seconds(10) - std::chrono::milliseconds(1));
  CHECK(tls::handshake_failure_count() == before);
  clock.advance(std::chrono::milliseconds(1));
  CHECK(wait_until([&] { return tls::handshake_failure_count() == before + 1; }));
  CHECK(silent.is_closed(std::chrono::seconds(5)));
  CHECK(silent.buffered().empty());
}

TEST_CASE("TLS config errors name the listener field") {
  const Pki& p = pki();
  auto expect_error = [](GatewayConfig cfg, std::string_view want) {
    auto r = compile(std::move(cfg));
    REQUIRE_FALSE(r.ok());
    CHECK_MESSAGE(r.error().to_string().find(want) != std::string::npos, r.error().to_string());
  };
  auto good = server_for({"httpbin.example.com"}, p.httpbin);
  {
    auto s = good;
    s.certificate_chain = "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n";
    expect_error(tls_config(1, {s}), "Listener main: tls_servers[0].certificate_chain:");
  }
  {
    auto s = good;
    s.private_key = p.helloworld.key.text;
    expect_error(tls_config(1, {s}),
                 "Listener main: tls_servers[0].private_key: does not match the certificate");
  }
  {
    auto s = good;
    s.private_key = "garbage";
    expect_error(tls_config(1, {s}), "tls_servers[0].private_key: not a valid PEM private key");
  }
  {
    auto s = good;
    s.cipher_suites = {"ECDHE-RSA-AES128-GCM-SHA256", "NOT-A-CIPHER"};
    expect_error(tls_config(1, {s}), "tls_servers[0].cipher_suites[1]: unknown cipher suite");
  }
  {
    auto s = good;
    s.mode = TlsServer::Mode::mutual;
    expect_error(tls_config(1, {s}), "tls_servers[0].ca_certificates: required");
  }
  {
    auto s = good;
    s.min_version = TlsServer::Version::tls1_3;
    s.max_version = TlsServer::Version::tls1_2;
    expect_error(tls_config(1, {s}), "tls_servers[0].max_version");
  }
  expect_error(tls_config(1, {good, good}),
               "tls_servers[1].sni_hosts[0]: \"httpbin.example.com\" is already served");
  {
    auto cfg = tls_config(1, {good});
    cfg.listeners[0].passthrough.push_back(TlsPassthroughRoute{{"a.example.com"}, "missing", ""});
    expect_error(cfg, "Listener main: passthrough[0].upstream: no upstream named \"missing\"");
  }
  {
    auto s = good;
    s.cipher_suites = {"ECDHE-ECDSA-AES128-GCM-SHA256"};
    s.max_version = TlsServer::Version::tls1_2;
    CHECK(compile(tls_config(1, {s})).ok());
  }
}

TEST_CASE("wss: a WebSocket over a terminating TLS listener tunnels after the 101") {
  const Pki& p = pki();
  TunnelUpstream up(TunnelUpstream::Mode::websocket);
  TestGateway gw(tls_config(up.port(), {server_for({"httpbin.example.com"}, p.httpbin)}));
  TlsClient c(gw.port(), {.sni = "httpbin.example.com", .ca = &p.ca1});
  REQUIRE_MESSAGE(c.handshake(), c.error());
  REQUIRE(
      c.send("GET /ws HTTP/1.1\r\nHost: httpbin.example.com\r\nConnection: Upgrade\r\n"
             "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n"));
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 101);
  // Frames go through TLS to the client and as plain bytes upstream.
  for (std::string word : {"over", "tls"}) {
    REQUIRE(c.send(masked_frame(word)));
    CHECK(unmasked_payload(c.read_exactly(2 + word.size())) == word);
  }
  auto heads = up.heads();
  REQUIRE(heads.size() == 1);
  CHECK(heads[0].find("x-forwarded-proto: https\r\n") != std::string::npos);
}

}  // namespace test_tls_gateway
