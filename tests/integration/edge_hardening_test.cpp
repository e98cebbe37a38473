// Edge hardening (issue 10), request path, through real sockets: framing
// that Connection cannot name away, one normalised path, hostile upstream
// responses, tunnels refused, no silent replays, sanitised mirrors, client
// aborts that are no outlier strike, stream timeouts, malformed framing.
// Each test names the behaviour it pins down; the code before the fix fails
// every one of them.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

#include "support/body_pattern.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace edge_hardening_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------------------
// ScriptedUpstream: an origin that answers with exact bytes, for responses no
// well-behaved server (FakeUpstream included) would produce. Blocking sockets,
// one thread per connection. Per connection it reads a request head (up to
// CRLFCRLF), asks the script what to do, reads the Content-Length body and
// writes the script's bytes; then the next request. Optionally TLS (BoringSSL,
// a throwaway self-signed certificate).
// ---------------------------------------------------------------------------
class ScriptedUpstream {
 public:
  struct Action {
    // Written after the request body. Under TLS each part is its own record,
    // all parts in one TCP segment (corked), so the peer reads them together.
    std::vector<std::string> parts;
    bool reset_after_head = false;  // RST as soon as the head is read
  };
  // `index`: 0-based request number across all connections.
  using Script = std::function<Action(size_t index, const std::string& head)>;

  explicit ScriptedUpstream(Script script, bool tls = false) : script_(std::move(script)) {
    // A TLS write to a peer that closed must fail, not kill the test binary.
    std::signal(SIGPIPE, SIG_IGN);
    if (tls) ctx_ = make_server_context();
    listen_fd_ = bind_loopback(port_, 64);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~ScriptedUpstream() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    acceptor_.join();
    ::close(listen_fd_);
    {
      std::lock_guard lock(mutex_);
      for (auto& c : conns_)
        if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);  // wakes blocked reads
    }
    for (auto& c : conns_) c.thread.join();
    for (auto& c : conns_) close_conn(c, false);
    if (ctx_) SSL_CTX_free(ctx_);
  }

  uint16_t port() const { return port_; }
  size_t accepted() const { return accepted_.load(); }
  std::vector<std::string> heads() const {
    std::lock_guard lock(mutex_);
    return heads_;
  }
  std::string received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  size_t heads_starting_with(std::string_view prefix) const {
    std::lock_guard lock(mutex_);
    return static_cast<size_t>(std::count_if(
        heads_.begin(), heads_.end(), [&](const auto& h) { return h.rfind(prefix, 0) == 0; }));
  }

 private:
  struct Conn {
    int fd = -1;
    SSL* ssl = nullptr;
    std::thread thread;
  };

  static SSL_CTX* make_server_context() {
    EC_KEY* ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    REQUIRE(ec);
    REQUIRE(EC_KEY_generate_key(ec) == 1);
    EVP_PKEY* key = EVP_PKEY_new();
    REQUIRE(EVP_PKEY_assign_EC_KEY(key, ec) == 1);
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("scripted.test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    REQUIRE(ctx);
    REQUIRE(SSL_CTX_use_certificate(ctx, cert) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey(ctx, key) == 1);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ctx;
  }

  void accept_loop() {
    for (;;) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stopping_) return;
        continue;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      accepted_.fetch_add(1);
      std::lock_guard lock(mutex_);
      Conn& c = conns_.emplace_back();
      c.fd = fd;
      c.thread = std::thread([this, &c] { serve(c); });
    }
  }

  void close_conn(Conn& c, bool reset) {
    std::lock_guard lock(mutex_);
    if (c.fd < 0) return;
    if (reset) {
      linger l{1, 0};
      ::setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    if (c.ssl) SSL_free(c.ssl);
    c.ssl = nullptr;
    ::close(c.fd);
    c.fd = -1;
  }

  bool read_more(Conn& c, std::string& buf) {
    char tmp[65536];
    int n = c.ssl ? SSL_read(c.ssl, tmp, sizeof(tmp))
                  : static_cast<int>(::recv(c.fd, tmp, sizeof(tmp), 0));
    if (n <= 0) return false;
    buf.append(tmp, static_cast<size_t>(n));
    std::lock_guard lock(mutex_);
    received_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  bool write_parts(Conn& c, const std::vector<std::string>& parts) {
    if (!c.ssl) {
      std::string all;
      for (const auto& p : parts) all += p;
      for (std::string_view rest = all; !rest.empty();) {
        ssize_t n = ::send(c.fd, rest.data(), rest.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        rest.remove_prefix(static_cast<size_t>(n));
      }
      return true;
    }
    int on = 1, off = 0;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
    bool ok = true;
    for (const auto& p : parts)
      ok = ok && SSL_write(c.ssl, p.data(), static_cast<int>(p.size())) == int(p.size());
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
    return ok;
  }

  static uint64_t content_length(const std::string& head) {
    std::string lower = head;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    size_t at = lower.find("\r\ncontent-length:");
    if (at == std::string::npos) return 0;
    return std::strtoull(lower.c_str() + at + 17, nullptr, 10);
  }

  void serve(Conn& c) {
    if (ctx_) {
      c.ssl = SSL_new(ctx_);
      SSL_set_fd(c.ssl, c.fd);
      if (SSL_accept(c.ssl) != 1) return close_conn(c, false);
    }
    std::string buf;
    for (;;) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos)
        if (!read_more(c, buf)) return close_conn(c, false);
      std::string head = buf.substr(0, end + 4);
      buf.erase(0, end + 4);
      size_t index;
      {
        std::lock_guard lock(mutex_);
        index = heads_.size();
        heads_.push_back(head);
      }
      Action action = script_(index, head);
      if (action.reset_after_head) return close_conn(c, true);
      uint64_t body = content_length(head);
      while (buf.size() < body)
        if (!read_more(c, buf)) return close_conn(c, false);
      buf.erase(0, static_cast<size_t>(body));
      if (!write_parts(c, action.parts)) return close_conn(c, false);
    }
  }

  Script script_;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> accepted_{0};
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::list<Conn> conns_;  // stable addresses for the connection threads
  std::vector<std::string> heads_;
  std::string received_;
};

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// Request 0 gets `first`, every later one a plain 200 "ok".
ScriptedUpstream::Script first_then_ok(std::vector<std::string> first) {
  return [first = std::move(first)](size_t index, const std::string&) {
    if (index == 0) return ScriptedUpstream::Action{.parts = first};
    return ScriptedUpstream::Action{.parts = {kOk}};
  };
}

// RecordingHooks plus Envoy's response_code_details, which LogEntry lacks.
class DetailHooks : public RecordingHooks {
 public:
  void on_log(const RequestContext& context) override {
    {
      std::lock_guard lock(mutex_);
      details_.emplace_back(context.response_code_details);
    }
    RecordingHooks::on_log(context);
  }
  std::vector<std::string> details() const {
    std::lock_guard lock(mutex_);
    return details_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> details_;
};

std::optional<HttpResponse> send_and_read(uint16_t port, std::string_view bytes,
                                          ReadOptions options = {}) {
  RawClient client(port);
  if (!client.send(bytes)) return std::nullopt;
  return client.read_response(options);
}

std::optional<HttpResponse> get(uint16_t port, std::string_view target = "/") {
  return send_and_read(port, make_request("GET", target));
}

// A fresh connection right after a rejected request is served normally.
bool served(uint16_t port) {
  auto r = get(port);
  return r && r->status == 200;
}

Route deny_admin() {
  Route route;
  route.name = "admin";
  Matcher m;
  m.path_prefix("/admin");
  route.matches.push_back(m);
  route.direct_response = DirectResponse{.status = 403, .body = "denied"};
  return route;
}

// /admin -> 403 from the gateway; everything else -> "backend".
GatewayConfig admin_config(uint16_t port) {
  return make_config({deny_admin(), forward_all("backend")},
                     {loopback_upstream("backend", {port})});
}

Route no_retries(Route route) {
  route.retries.attempts = 0;
  return route;
}

}  // namespace

// --- 1. Connection cannot name framing or route-set headers away ----------

TEST_CASE("edge: Connection naming Content-Length cannot smuggle a request") {
  FakeUpstream up;
  TestGateway gw(admin_config(up.port()));
  const std::string smuggled = "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
  RawClient client(gw.port());
  REQUIRE(
      client.send("POST / HTTP/1.1\r\nHost: example.com\r\nConnection: content-length\r\n"
                  "Content-Length: " +
                  std::to_string(smuggled.size()) + "\r\n\r\n" + smuggled));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 200);
  // A later request on a fresh connection: anything smuggled arrives first.
  CHECK(served(gw.port()));
  auto reqs = up.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].target == "/");
  CHECK(reqs[0].header_count("content-length") == 1);
  CHECK(reqs[0].header("content-length") == std::to_string(smuggled.size()));
  CHECK(reqs[0].body == smuggled);
  CHECK(reqs[1].method == "GET");
  CHECK(reqs[1].target == "/");
}

TEST_CASE("edge: Connection naming a header the route sets cannot remove it") {
  FakeUpstream up;
  Route route = forward_all("backend");
  route.request_headers.set.emplace_back("x-internal-auth", "yes");
  TestGateway gw(make_config({route}, {loopback_upstream("backend", {up.port()})}));
  auto r = send_and_read(
      gw.port(), make_request("GET", "/", "example.com",
                              {{"Connection", "x-internal-auth"}, {"x-internal-auth", "forged"}}));
  REQUIRE(r);
  CHECK(r->status == 200);
  auto req = up.last_request();
  REQUIRE(req);
  CHECK(req->header_count("x-internal-auth") == 1);
  CHECK(req->header("x-internal-auth") == "yes");
}

TEST_CASE("edge: an upstream's Connection naming Content-Length keeps the response framed") {
  FakeUpstream up;
  up.set_handler([](const Received&) {
    Reply reply;
    reply.headers.emplace_back("Connection", "content-length");
    reply.body = "hello";  // FakeUpstream adds Content-Length: 5
    return reply;
  });
  TestGateway gw(single_upstream_config(up.port()));
  // Short timeout: an unframed response would be read until close.
  RawClient client(gw.port(), 3s);
  for (int i = 0; i < 2; ++i) {  // the second proves the connection stayed in sync
    REQUIRE(client.send(make_request("GET", "/")));
    auto r = client.read_response();
    REQUIRE_MESSAGE(r, client.error());
    CHECK(r->status == 200);
    CHECK(r->header("content-length") == "5");
    CHECK(r->body == "hello");
    CHECK_FALSE(r->close_delimited);
  }
}

// --- 2. One normalised path for routing and forwarding ---------------------

TEST_CASE("edge: BASE path normalisation routes and forwards the normalised path") {
  FakeUpstream up;
  TestGateway gw(admin_config(up.port()));
  for (const char* target : {"/x/../admin", "/./admin", "/%61dmin", "/x/%2e%2e/admin"}) {
    auto r = get(gw.port(), target);
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 403, target);
  }
  CHECK(up.request_count() == 0);

  auto r = get(gw.port(), "/foo/./bar/../baz?q=/../x");
  REQUIRE(r);
  CHECK(r->status == 200);
  REQUIRE(up.last_request());
  CHECK(up.last_request()->target == "/foo/baz?q=/../x");  // the query untouched

  // BASE leaves repeated slashes alone.
  r = get(gw.port(), "//admin");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(up.last_request()->target == "//admin");

  for (const char* target : {"/a%00b", "/a%zz"}) {
    auto bad = get(gw.port(), target);
    REQUIRE(bad);
    CHECK_MESSAGE(bad->status == 400, target);
    CHECK(served(gw.port()));
  }
  CHECK(up.request_count() == 2 + 2);  // the two above and the two served()
}

TEST_CASE("edge: merge_slashes and none path normalisation") {
  FakeUpstream up;
  {
    auto config = admin_config(up.port());
    config.path_normalization = PathNormalization::merge_slashes;
    TestGateway gw(std::move(config));
    auto r = get(gw.port(), "//admin");
    REQUIRE(r);
    CHECK(r->status == 403);
    r = get(gw.port(), "/a//b/");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(up.last_request()->target == "/a/b/");
  }
  {
    auto config = admin_config(up.port());
    config.path_normalization = PathNormalization::none;
    TestGateway gw(std::move(config));
    auto r = get(gw.port(), "/x/../admin");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(up.last_request()->target == "/x/../admin");
  }
}

// --- 5. Malicious upstream responses ----------------------------------------

namespace {

// A bad first response is 502 UPE; the next request gets a normal answer.
void check_protocol_error(std::vector<std::string> bad,
                          const std::function<void(GatewayConfig&)>& tweak = {}) {
  ScriptedUpstream up(first_then_ok(std::move(bad)));
  auto config = single_upstream_config(up.port());
  config.routers[0].virtual_hosts[0].routes[0].retries.attempts = 0;
  if (tweak) tweak(config);
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(std::move(config), 1, hooks);
  auto r = get(gw.port());
  REQUIRE(r);
  CHECK(r->status == 502);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].flags == "UPE");
  auto next = get(gw.port());
  REQUIRE(next);
  CHECK(next->status == 200);
  CHECK(next->body == "ok");
}

std::string many_headers(size_t n) {
  std::string out = "HTTP/1.1 200 OK\r\n";
  for (size_t i = 0; i < n; ++i) out += "x-h-" + std::to_string(i) + ": v\r\n";
  return out + "Content-Length: 2\r\n\r\nok";
}

}  // namespace

TEST_CASE("edge: an upstream 101 to a plain request is 502 UPE") {
  check_protocol_error({"HTTP/1.1 101 Switching Protocols\r\n\r\n"});
}

TEST_CASE("edge: an upstream status outside 100-599 is 502 UPE") {
  check_protocol_error({"HTTP/1.1 099 X\r\n\r\n"});
}

TEST_CASE("edge: an upstream reason phrase of 100 KiB is 502 UPE") {
  check_protocol_error(
      {"HTTP/1.1 200 " + std::string(100 * 1024, 'r') + "\r\nContent-Length: 2\r\n\r\nok"});
}

TEST_CASE("edge: an upstream response over max_response_header_bytes is 502 UPE") {
  check_protocol_error({"HTTP/1.1 200 OK\r\nx-big: " + std::string(16 * 1024, 'b') +
                        "\r\nContent-Length: 2\r\n\r\nok"},
                       [](GatewayConfig& c) { c.limits.max_response_header_bytes = 8 * 1024; });
}

TEST_CASE("edge: upstream response header count is bounded by max_response_headers") {
  check_protocol_error({many_headers(200)});  // default limit 100
  // Raised limit: the same response passes whole.
  ScriptedUpstream up(first_then_ok({many_headers(200)}));
  auto config = single_upstream_config(up.port());
  config.limits.max_response_headers = 300;
  TestGateway gw(std::move(config));
  auto r = get(gw.port());
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("x-h-199") == "v");
  CHECK(r->body == "ok");
}

namespace {

// Over TLS the bytes past a bodyless response sit in the TLS engine, not the
// socket: the connection must still not go back to the pool.
void check_not_reused_after_extra_bytes(std::string_view method, std::vector<std::string> first,
                                        uint16_t first_status) {
  ScriptedUpstream up(first_then_ok(std::move(first)), /*tls=*/true);
  auto upstream = loopback_upstream("backend", {up.port()});
  upstream.tls = UpstreamTls{.insecure_skip_verify = true};
  Route route = no_retries(forward_all("backend"));
  TestGateway gw(make_config({route}, {upstream}));
  RawClient client(gw.port());
  REQUIRE(client.send(make_request(method, "/")));
  auto r = client.read_response({.head_request = method == "HEAD"});
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == first_status);
  CHECK(r->body.empty());
  REQUIRE(client.send(make_request("GET", "/")));
  auto next = client.read_response();
  REQUIRE_MESSAGE(next, client.error());
  CHECK(next->status == 200);
  CHECK(next->body == "ok");
  CHECK(up.accepted() == 2);
}

}  // namespace

TEST_CASE("edge: bytes after a 204 (TLS upstream) retire the upstream connection") {
  check_not_reused_after_extra_bytes("GET", {"HTTP/1.1 204 No Content\r\n\r\n", "hello"}, 204);
}

TEST_CASE("edge: a body after a HEAD response (TLS upstream) retires the upstream connection") {
  check_not_reused_after_extra_bytes(
      "HEAD", {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "hello"}, 200);
}

// --- 6. No tunnels: CONNECT and upgrades ------------------------------------

TEST_CASE("edge: CONNECT is 404 and closes and the bytes after it are never parsed") {
  FakeUpstream up;
  TestGateway gw(single_upstream_config(up.port()));
  const std::string inner = "GET /xy HTTP/1.1\r\nHost: ab\r\n\r\n";
  RawClient client(gw.port());
  REQUIRE(
      client.send("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                  "Content-Length: " +
                  std::to_string(inner.size()) + "\r\n\r\n" + inner));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 404);
  CHECK(client.is_closed());
  CHECK(served(gw.port()));
  CHECK(up.request_count() == 1);  // served() only
  CHECK(up.last_request()->target == "/");
}

TEST_CASE("edge: an upgrade not allowed is 403 and closes but an h2c offer is a plain request") {
  FakeUpstream up;
  auto config = single_upstream_config(up.port());
  config.upgrade_types.clear();  // websocket is allowed by default (tunnel_test.cpp)
  TestGateway gw(std::move(config));
  {
    RawClient client(gw.port());
    REQUIRE(client.send(make_request("GET", "/ws", "example.com",
                                     {{"Connection", "Upgrade"},
                                      {"Upgrade", "websocket"},
                                      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                      {"Sec-WebSocket-Version", "13"}})));
    auto r = client.read_response();
    REQUIRE_MESSAGE(r, client.error());
    CHECK(r->status == 403);
    CHECK(client.is_closed());
  }
  CHECK(served(gw.port()));
  CHECK(up.request_count() == 1);  // served() only

  auto r = send_and_read(gw.port(), make_request("GET", "/h2c", "example.com",
                                                 {{"Connection", "Upgrade, HTTP2-Settings"},
                                                  {"Upgrade", "h2c"},
                                                  {"HTTP2-Settings", "AAMAAABkAAQAAP__"}}));
  REQUIRE(r);
  CHECK(r->status == 200);
  auto req = up.last_request();
  REQUIRE(req);
  CHECK(req->target == "/h2c");
  CHECK(req->header_count("upgrade") == 0);
  CHECK(req->header_count("http2-settings") == 0);
}

// --- 7. A request is resent only when all of it can be ------------------------

TEST_CASE("edge: with retries off a POST reset on a pooled connection is 502 and not resent") {
  FakeUpstream up;
  up.set_handler([](const Received& r) {
    Reply reply;
    reply.body = "ok";
    // The second request on a connection: read whole, then reset.
    reply.reset_before_response = r.index_on_connection == 1;
    return reply;
  });
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(make_config({no_retries(forward_all("backend"))},
                             {loopback_upstream("backend", {up.port()})}),
                 1, hooks);
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/")));
  auto first = client.read_response();
  REQUIRE_MESSAGE(first, client.error());
  CHECK(first->status == 200);
  REQUIRE(client.send(make_request("POST", "/p", "example.com", {}, "abc")));
  auto second = client.read_response();
  REQUIRE_MESSAGE(second, client.error());
  CHECK(second->status == 502);
  REQUIRE(hooks->wait_for_logs(2));
  CHECK(hooks->logs()[1].flags == "UC");
  CHECK(served(gw.port()));  // a fresh upstream connection, its first request
  auto reqs = up.requests();
  CHECK(std::count_if(reqs.begin(), reqs.end(),
                      [](const Received& r) { return r.method == "POST"; }) == 1);
  // GET + POST on the pooled connection, then served() on a new one: no
  // connection was opened to resend the POST.
  CHECK(up.connections_accepted() == 2);
}

TEST_CASE("edge: a large POST reset mid-body on a pooled connection is never half-resent") {
  // Request 0 (a GET) is answered; request 1 (the POST) is reset once its
  // head is read, while the body is still streaming.
  ScriptedUpstream up([](size_t index, const std::string&) {
    if (index == 1) return ScriptedUpstream::Action{.reset_after_head = true};
    return ScriptedUpstream::Action{.parts = {kOk}};
  });
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(make_config({no_retries(forward_all("backend"))},
                             {loopback_upstream("backend", {up.port()})}),
                 1, hooks);
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/")));
  auto first = client.read_response();
  REQUIRE_MESSAGE(first, client.error());
  CHECK(first->status == 200);
  constexpr uint64_t kBody = 4 * 1024 * 1024;
  REQUIRE(client.send("POST /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: " +
                      std::to_string(kBody) + "\r\n\r\n"));
  // The gateway stops reading once it gives up: the send may fail part-way.
  (void)client.send_pattern(kBody);
  REQUIRE(hooks->wait_for_logs(2));
  CHECK(hooks->logs()[1].status == 502);
  CHECK(hooks->logs()[1].flags == "UC");
  CHECK(served(gw.port()));
  CHECK(up.heads_starting_with("POST ") == 1);
  CHECK(up.heads_starting_with("GET ") == 2);
  CHECK(up.accepted() == 2);  // the pooled one, then served()'s
}

// --- 8. Mirrors get the same sanitised request as the upstream ---------------

TEST_CASE("edge: a mirror gets the sanitised head and whole body and the same request id") {
  FakeUpstream a("a"), b("b");
  Route route = forward_all("a");
  route.mirrors.push_back(Mirror{.upstream = "b"});
  route.request_headers.set.emplace_back("x-route", "set");
  TestGateway gw(make_config(
      {route}, {loopback_upstream("a", {a.port()}), loopback_upstream("b", {b.port()})}));
  RawClient client(gw.port());
  REQUIRE(
      client.send("POST /m HTTP/1.1\r\nHost: example.com\r\n"
                  "x-forwarded-client-cert: forged\r\nx-forwarded-for: 1.2.3.4\r\n"
                  "x-forwarded-proto: https\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 200);
  REQUIRE(a.wait_for_requests(1));
  REQUIRE(b.wait_for_requests(1));
  auto ra = *a.last_request();
  auto rb = *b.last_request();
  CHECK(rb.method == "POST");
  CHECK(rb.target == "/m");
  CHECK(rb.header("host") == "example.com-shadow");
  CHECK(rb.header("x-forwarded-proto") == "http");
  CHECK(rb.header_count("x-forwarded-proto") == 1);
  CHECK(rb.header("x-forwarded-for") == "1.2.3.4, 127.0.0.1");
  CHECK(rb.header_count("x-forwarded-client-cert") == 0);
  CHECK(rb.header_count("x-trailer") == 0);
  CHECK_FALSE(rb.chunked);
  CHECK(rb.header("content-length") == "11");
  CHECK(rb.body == "hello world");
  CHECK(rb.header("x-route") == "set");
  REQUIRE(ra.header("x-request-id"));
  CHECK(rb.header("x-request-id") == ra.header("x-request-id"));
  // The primary got the same sanitised forwarding headers.
  CHECK(ra.header_count("x-forwarded-client-cert") == 0);
  CHECK(ra.header("x-forwarded-proto") == "http");
}

// --- 11. A client abort is not an outlier strike --------------------------------

TEST_CASE("edge: client aborts mid-body do not eject the upstream endpoint") {
  FakeUpstream up;
  auto upstream = loopback_upstream("backend", {up.port()});
  upstream.outlier_detection = OutlierDetection{.consecutive_5xx = 2};
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(make_config({no_retries(forward_all("backend"))}, {upstream}), 1, hooks);
  for (size_t i = 0; i < 5; ++i) {
    RawClient client(gw.port());
    REQUIRE(client.send("POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1000\r\n\r\n" +
                        std::string(10, 'x')));
    client.close();
    REQUIRE(hooks->wait_for_logs(i + 1));
    CHECK(hooks->logs()[i].flags == "DC");
  }
  auto view = gw.gateway().upstream("backend");
  REQUIRE(view.endpoints.size() == 1);
  CHECK_FALSE(view.endpoints[0].ejected);
  CHECK(view.endpoints[0].ejections == 0);
  auto r = get(gw.port());
  REQUIRE(r);
  CHECK(r->status == 200);
}

// --- 13. Stream timeouts ---------------------------------------------------------

// On a ManualClock: the clock is moved to 1 ms before the timeout, then to
// it; the log's duration (the gateway's clock) says when the request ended.

namespace {

// A POST whose body stalls after 2 of 10 bytes. Returns once the upstream
// has those 2 bytes and the gateway waits for more (settled).
void stall_upload(RawClient& client, FakeUpstream& up, ManualClock& clock) {
  REQUIRE(client.send("POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nab"));
  REQUIRE(wait_until([&] { return up.body_bytes_received() == 2; }));
  clock.settle();
}

// Moves `clock` to 1 ms before `timeout`, then to it; the answer that follows.
std::optional<HttpResponse> answer_at(RawClient& client, ManualClock& clock,
                                      std::chrono::milliseconds timeout) {
  clock.advance(timeout - 1ms);
  clock.advance(1ms);
  return client.read_response();
}

}  // namespace

TEST_CASE("edge: stream_idle_timeout answers a stalled upload 408 SI") {
  FakeUpstream up;
  ManualClock clock;
  auto config = single_upstream_config(up.port());
  config.limits.stream_idle_timeout = 30s;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(std::move(config), 1, hooks, &clock);
  RawClient client(gw.port());
  stall_upload(client, up, clock);
  auto r = answer_at(client, clock, 30s);
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 408);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].flags == "SI");
  CHECK(hooks->logs()[0].duration == 30s);
  CHECK(served(gw.port()));
}

TEST_CASE("edge: stream_idle_timeout answers a silent upstream 408 SI") {
  FakeUpstream up;
  up.set_handler([](const Received&) { return Reply{.hold = true}; });
  ManualClock clock;
  auto config = single_upstream_config(up.port());
  config.limits.stream_idle_timeout = 30s;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(std::move(config), 1, hooks, &clock);
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/")));
  REQUIRE(wait_until([&] { return up.held() == 1; }));
  clock.settle();
  auto r = answer_at(client, clock, 30s);
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 408);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].flags == "SI");
  CHECK(hooks->logs()[0].duration == 30s);
  up.release();
}

TEST_CASE("edge: request_timeout bounds the whole upload: 408 request_overall_timeout") {
  FakeUpstream up;
  ManualClock clock;
  auto config = single_upstream_config(up.port());
  config.limits.request_timeout = 10s;
  config.limits.stream_idle_timeout = 60s;  // never the one that fires here
  auto hooks = std::make_shared<DetailHooks>();
  TestGateway gw(std::move(config), 1, hooks, &clock);
  RawClient client(gw.port());
  stall_upload(client, up, clock);
  auto r = answer_at(client, clock, 10s);
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 408);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->details().at(0) == "request_overall_timeout");
  CHECK(hooks->logs()[0].duration == 10s);
  CHECK(served(gw.port()));
}

TEST_CASE("edge: max_stream_duration bounds a request and its response: 408 DT") {
  FakeUpstream up;
  up.set_handler([](const Received&) { return Reply{.hold = true}; });
  ManualClock clock;
  auto config = single_upstream_config(up.port());
  config.limits.max_stream_duration = 20s;
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(std::move(config), 1, hooks, &clock);
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/")));
  REQUIRE(wait_until([&] { return up.held() == 1; }));
  clock.settle();
  auto r = answer_at(client, clock, 20s);
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 408);
  REQUIRE(hooks->wait_for_logs(1));
  CHECK(hooks->logs()[0].flags == "DT");
  CHECK(hooks->logs()[0].duration == 20s);
  up.release();
}

// --- 14. Malformed framing --------------------------------------------------------

namespace {

// Sends `bytes` on a fresh connection and expects `status` then a close.
void expect_rejected(uint16_t port, std::string_view bytes, uint16_t status) {
  RawClient client(port);
  REQUIRE(client.send(bytes));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == status);
  CHECK(client.is_closed());
}

}  // namespace

TEST_CASE("edge: Transfer-Encoding gzip then chunked is 501 and nothing is forwarded") {
  FakeUpstream up;
  TestGateway gw(single_upstream_config(up.port()));
  expect_rejected(gw.port(),
                  "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip, chunked\r\n"
                  "\r\n5\r\nhello\r\n0\r\n\r\n",
                  501);
  CHECK(served(gw.port()));
  CHECK(up.request_count() == 1);
  CHECK(up.connections_accepted() == 1);
}

TEST_CASE("edge: Transfer-Encoding in an HTTP/1.0 request is 400 and closes") {
  FakeUpstream up;
  TestGateway gw(single_upstream_config(up.port()));
  expect_rejected(gw.port(),
                  "POST / HTTP/1.0\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n0\r\n\r\n",
                  400);
  CHECK(served(gw.port()));
  CHECK(up.request_count() == 1);
  CHECK(up.connections_accepted() == 1);
}

TEST_CASE("edge: an HTTP/2.0 request line is 505 and a bare CR in a header value is 400") {
  FakeUpstream up;
  TestGateway gw(single_upstream_config(up.port()));
  expect_rejected(gw.port(), "GET / HTTP/2.0\r\nHost: example.com\r\n\r\n", 505);
  CHECK(served(gw.port()));
  expect_rejected(gw.port(), "GET / HTTP/1.1\r\nHost: example.com\r\nX-A: a\rb\r\n\r\n", 400);
  CHECK(served(gw.port()));
  CHECK(up.request_count() == 2);  // the two served()
}

TEST_CASE("edge: broken chunk framing buffered with the head is refused before forwarding") {
  FakeUpstream up;
  TestGateway gw(single_upstream_config(up.port()));
  const std::string head =
      "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n";
  // Second chunk size not hex.
  expect_rejected(gw.port(), head + "5\r\nhello\r\nZZ\r\n", 400);
  CHECK(served(gw.port()));
  // Bytes between the chunk data and its CRLF.
  expect_rejected(gw.port(), head + "5\r\nhelloXX\r\n0\r\n\r\n", 400);
  CHECK(served(gw.port()));
  // Only the served() requests reached the upstream, each on the pooled
  // connection opened by the first: the rejected ones opened none.
  CHECK(up.request_count() == 2);
  CHECK(up.connections_accepted() == 1);
}

}  // namespace edge_hardening_test
