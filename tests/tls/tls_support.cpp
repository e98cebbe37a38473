#include "tls/tls_support.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <stdlib.h>
#include <asio/connect.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/write.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "tls/cert.hpp"

namespace sluice::test {

namespace {

void openssl(const std::vector<std::string>& args) {
  auto r = run_process("openssl", args);
  if (r.exit_code != 0) throw std::runtime_error("openssl " + args.front() + " failed: " + r.err);
}

Pem make_ca(const std::string& dir, const std::string& name, const std::string& cn) {
  std::string key = dir + "/" + name + ".key", crt = dir + "/" + name + ".crt";
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", key, "-out", crt, "-days", "3", "-subj", "/O=example Inc./CN=" + cn});
  return Pem{crt, read_file(crt)};
}

KeyPair make_leaf_ext(const std::string& dir, const std::string& name, const std::string& subject,
                      const std::string& extensions, const std::string& ca, int serial) {
  std::string key = dir + "/" + name + ".key", csr = dir + "/" + name + ".csr",
              crt = dir + "/" + name + ".crt", ext = dir + "/" + name + ".ext";
  std::ofstream(ext) << extensions;
  openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
           key, "-out", csr, "-subj", subject});
  openssl({"x509", "-req", "-in", csr, "-CA", dir + "/" + ca + ".crt", "-CAkey",
           dir + "/" + ca + ".key", "-set_serial", std::to_string(serial), "-days", "2", "-out",
           crt, "-extfile", ext});
  return KeyPair{Pem{crt, read_file(crt)}, Pem{key, read_file(key)}};
}

KeyPair make_leaf(const std::string& dir, const std::string& name, const std::string& subject,
                  const std::string& san, const std::string& ca, int serial) {
  return make_leaf_ext(dir, name, subject,
                       "subjectAltName=" + san + "\nbasicConstraints=CA:FALSE\n", ca, serial);
}

Pki* build_pki() {
  auto* p = new Pki();
  char tmpl[] = "/tmp/sluice-tls-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  p->dir = tmpl;
  const std::string& d = p->dir;
  p->ca1 = make_ca(d, "ca1", "example.com");
  p->ca2 = make_ca(d, "ca2", "example.org");
  p->httpbin = make_leaf(d, "httpbin", "/O=httpbin organization/CN=httpbin.example.com",
                         "DNS:httpbin.example.com", "ca1", 101);
  p->helloworld = make_leaf(d, "helloworld", "/O=helloworld organization/CN=helloworld.example.com",
                            "DNS:helloworld.example.com", "ca1", 102);
  p->httpbin_ca2 = make_leaf(d, "httpbin2", "/O=httpbin organization 2/CN=httpbin.example.com",
                             "DNS:httpbin.example.com", "ca2", 103);
  p->nginx = make_leaf(d, "nginx", "/O=nginx organization/CN=nginx.example.com",
                       "DNS:nginx.example.com", "ca2", 104);
  p->client = make_leaf(d, "client", "/O=client organization/CN=client",
                        "URI:spiffe://cluster.local/ns/default/sa/client,DNS:client.example.com",
                        "ca1", 105);
  p->client_ca2 =
      make_leaf(d, "stranger", "/O=elsewhere/CN=stranger", "DNS:stranger.example.org", "ca2", 106);
  static std::string dir_to_remove = d;
  std::atexit([] {
    std::error_code ec;
    std::filesystem::remove_all(dir_to_remove, ec);
  });
  return p;
}

int client_ex_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int keep_ticket(SSL* ssl, SSL_SESSION* session) {
  auto** slot = static_cast<SSL_SESSION**>(SSL_get_ex_data(ssl, client_ex_index()));
  if (!slot) return 0;
  if (*slot) SSL_SESSION_free(*slot);
  *slot = session;
  return 1;  // we own it now
}

std::string subject_of(X509* cert) {
  if (!cert) return {};
  return tls::certificate_names(cert).subject;
}

}  // namespace

const Pki& pki() {
  static const Pki* instance = build_pki();
  return *instance;
}

KeyPair make_leaf_cert(const std::string& name, const std::string& subject,
                       const std::string& extensions, const std::string& ca, int serial) {
  return make_leaf_ext(pki().dir, name, subject, extensions, ca, serial);
}

TlsClient::TlsClient(uint16_t port, TlsClientOptions options)
    : ctx_(asio::ssl::context::tls_client), options_(std::move(options)) {
  SSL_CTX* ctx = ctx_.native_handle();
  static constexpr uint8_t kAlpn[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (options_.offer_h2)
    SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof(kAlpn));
  else
    SSL_CTX_set_alpn_protos(ctx, kAlpn + 3, sizeof(kAlpn) - 3);
  if (options_.ca) {
    REQUIRE(tls::load_trust(ctx, options_.ca->text, false).empty());
    ctx_.set_verify_mode(asio::ssl::verify_peer);
  } else {
    ctx_.set_verify_mode(asio::ssl::verify_none);
  }
  if (options_.cert)
    REQUIRE(
        tls::load_key_pair(ctx, options_.cert->cert.text, options_.cert->key.text, "cert", "key")
            .empty());
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
  SSL_CTX_sess_set_new_cb(ctx, keep_ticket);
  stream_.emplace(io_, ctx_);
  SSL* ssl = stream_->native_handle();
  if (!options_.sni.empty()) SSL_set_tlsext_host_name(ssl, options_.sni.c_str());
  if (options_.ca && !options_.sni.empty())
    X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), options_.sni.data(), options_.sni.size());
  SSL_set_ex_data(ssl, client_ex_index(), &ticket_);
  if (options_.session) SSL_set_session(ssl, options_.session);
  asio::error_code ec;
  stream_->lowest_layer().connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) error_ = "connect: " + ec.message();
}

TlsClient::~TlsClient() {
  stream_.reset();
  if (ticket_) SSL_SESSION_free(ticket_);
}

bool TlsClient::run_until(const bool& done) {
  io_.restart();
  auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  while (!done && std::chrono::steady_clock::now() < deadline) io_.run_one_until(deadline);
  if (!done) {
    asio::error_code ec;
    stream_->lowest_layer().cancel(ec);
    io_.restart();
    while (!done) io_.run_one();
    return false;
  }
  return true;
}

bool TlsClient::handshake() {
  if (!error_.empty()) return false;
  bool done = false;
  asio::error_code result;
  stream_->async_handshake(asio::ssl::stream_base::client, [&](asio::error_code ec) {
    result = ec;
    done = true;
  });
  if (!run_until(done)) {
    error_ = "handshake timeout";
    return false;
  }
  if (result) {
    error_ = result.message();
    return false;
  }
  return true;
}

bool TlsClient::send(std::string_view bytes) {
  bool done = false;
  asio::error_code result;
  asio::async_write(*stream_, asio::buffer(bytes), [&](asio::error_code ec, size_t) {
    result = ec;
    done = true;
  });
  if (!run_until(done) || result) {
    error_ = "send: " + (result ? result.message() : std::string("timeout"));
    return false;
  }
  return true;
}

bool TlsClient::fill() {
  char tmp[16384];
  bool done = false;
  asio::error_code result;
  size_t got = 0;
  stream_->async_read_some(asio::buffer(tmp), [&](asio::error_code ec, size_t n) {
    result = ec;
    got = n;
    done = true;
  });
  if (!run_until(done) || result) {
    error_ = "read: " + (result ? result.message() : std::string("timeout"));
    return false;
  }
  buf_.append(tmp, got);
  return true;
}

std::string TlsClient::read_exactly(size_t n) {
  while (buf_.size() < n)
    if (!fill()) return {};
  std::string out = buf_.substr(0, n);
  buf_.erase(0, n);
  return out;
}

std::optional<HttpResponse> TlsClient::read_response() {
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
    if (!fill()) return std::nullopt;
  HttpResponse r;
  std::istringstream head(buf_.substr(0, end));
  std::string line;
  std::getline(head, line);
  if (line.size() < 12) return std::nullopt;
  r.status = static_cast<uint16_t>(std::stoi(line.substr(9, 3)));
  size_t length = 0;
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon), value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (strcasecmp(name.c_str(), "content-length") == 0) length = std::stoul(value);
    r.headers.emplace_back(name, value);
  }
  buf_.erase(0, end + 4);
  while (buf_.size() < length)
    if (!fill()) return std::nullopt;
  r.body = buf_.substr(0, length);
  r.body_bytes = length;
  buf_.erase(0, length);
  return r;
}

std::optional<HttpResponse> TlsClient::get(std::string_view target, std::string_view host,
                                           const HeaderList& headers) {
  std::string req = fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\n", target, host);
  for (const auto& [k, v] : headers) req += fmt::format("{}: {}\r\n", k, v);
  req += "\r\n";
  if (!send(req)) return std::nullopt;
  return read_response();
}

bool TlsClient::closed_by_peer() {
  char tmp[4096];
  for (;;) {
    bool done = false;
    asio::error_code result;
    stream_->async_read_some(asio::buffer(tmp), [&](asio::error_code ec, size_t) {
      result = ec;
      done = true;
    });
    if (!run_until(done)) return false;
    if (result) return true;
  }
}

std::string TlsClient::peer_subject() const {
  X509* cert = SSL_get_peer_certificate(const_cast<TlsClient*>(this)->stream_->native_handle());
  std::string s = subject_of(cert);
  X509_free(cert);
  return s;
}

std::string TlsClient::alpn() const {
  const uint8_t* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(const_cast<TlsClient*>(this)->stream_->native_handle(), &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

bool TlsClient::session_reused() const {
  return SSL_session_reused(const_cast<TlsClient*>(this)->stream_->native_handle());
}

// --- TlsOrigin ---

TlsOrigin::TlsOrigin(std::string name, const KeyPair& cert, const Pem* client_ca)
    : name_(std::move(name)), ctx_(asio::ssl::context::tls_server), acceptor_(io_) {
  SSL_CTX* ctx = ctx_.native_handle();
  REQUIRE(tls::load_key_pair(ctx, cert.cert.text, cert.key.text, "cert", "key").empty());
  if (client_ca) {
    REQUIRE(tls::load_trust(ctx, client_ca->text, true).empty());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  acceptor_.open(ep.protocol());
  acceptor_.bind(ep);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  accept_loop();
  thread_ = std::thread([this] { io_.run(); });
}

TlsOrigin::~TlsOrigin() {
  io_.stop();
  thread_.join();
}

namespace {
struct OriginConn : std::enable_shared_from_this<OriginConn> {
  OriginConn(asio::ip::tcp::socket s, asio::ssl::context& ctx, std::string name,
             std::atomic<size_t>& handshakes)
      : stream(std::move(s), ctx), name(std::move(name)), handshakes(handshakes) {}
  asio::ssl::stream<asio::ip::tcp::socket> stream;
  std::string name;
  std::atomic<size_t>& handshakes;
  std::string in;
  std::string out;
  char buf[4096];

  void start() {
    stream.async_handshake(asio::ssl::stream_base::server,
                           [self = shared_from_this()](asio::error_code ec) {
                             if (ec) return;
                             ++self->handshakes;
                             self->read();
                           });
  }
  void read() {
    auto pos = in.find("\r\n\r\n");
    if (pos != std::string::npos) {
      in.erase(0, pos + 4);
      X509* peer = SSL_get_peer_certificate(stream.native_handle());
      std::string body = fmt::format("{} client={}", name, peer ? subject_of(peer) : "-");
      X509_free(peer);
      out = fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}", body.size(), body);
      asio::async_write(stream, asio::buffer(out),
                        [self = shared_from_this()](asio::error_code ec, size_t) {
                          if (!ec) self->read();
                        });
      return;
    }
    stream.async_read_some(asio::buffer(buf),
                           [self = shared_from_this()](asio::error_code ec, size_t n) {
                             if (ec) return;
                             self->in.append(self->buf, n);
                             self->read();
                           });
  }
};
}  // namespace

void TlsOrigin::accept_loop() {
  acceptor_.async_accept([this](asio::error_code ec, asio::ip::tcp::socket s) {
    if (ec) return;
    std::make_shared<OriginConn>(std::move(s), ctx_, name_, handshakes_)->start();
    accept_loop();
  });
}

HttpsDocument::HttpsDocument(const KeyPair& cert, std::string body)
    : body_(std::move(body)), ctx_(asio::ssl::context::tls_server), acceptor_(io_) {
  REQUIRE(
      sluice::tls::load_key_pair(ctx_.native_handle(), cert.cert.text, cert.key.text, "cert", "key")
          .empty());
  asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  acceptor_.open(ep.protocol());
  acceptor_.bind(ep);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  thread_ = std::thread([this] { serve(); });
}

HttpsDocument::~HttpsDocument() {
  stopping_ = true;
  asio::io_context io;
  asio::ip::tcp::socket wake(io);
  asio::error_code ec;
  wake.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);  // ends the blocking accept
  thread_.join();
}

std::string HttpsDocument::last_head() const {
  std::lock_guard lock(mutex_);
  return head_;
}

void HttpsDocument::serve() {
  while (!stopping_) {
    asio::ip::tcp::socket s(io_);
    asio::error_code ec;
    acceptor_.accept(s, ec);
    if (ec || stopping_) return;
    asio::ssl::stream<asio::ip::tcp::socket> stream(std::move(s), ctx_);
    stream.handshake(asio::ssl::stream_base::server, ec);
    if (ec) continue;  // a client that did not trust us
    std::string in;
    asio::read_until(stream, asio::dynamic_buffer(in), "\r\n\r\n", ec);
    if (ec) continue;
    {
      std::lock_guard lock(mutex_);
      head_ = in;
    }
    std::string out = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " +
                      std::to_string(body_.size()) + "\r\nconnection: close\r\n\r\n" + body_;
    // Counted before the write: the client may act on the answer (and a
    // test read served()) before this thread runs again.
    ++served_;
    asio::write(stream, asio::buffer(out), ec);
    stream.shutdown(ec);
  }
}

}  // namespace sluice::test
