#pragma once
// Helpers for the TLS suite: certificates made at test time with the openssl
// CLI, a blocking TLS client with timeouts, and an in-process TLS origin.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_upstream.hpp"
#include "support/raw_client.hpp"

namespace sluice::test {

// PEM text and its file path.
struct Pem {
  std::string path;
  std::string text;
};
struct KeyPair {
  Pem cert;
  Pem key;
};

// Made once per process in a temporary directory (removed at exit):
// two CAs, server leaves for httpbin/helloworld/nginx.example.com, a
// rotated httpbin leaf signed by CA2, a client certificate (URI and DNS
// SANs) from CA1 and one from CA2.
struct Pki {
  std::string dir;
  Pem ca1, ca2;
  KeyPair httpbin;      // CA1, CN/SAN httpbin.example.com
  KeyPair helloworld;   // CA1, CN/SAN helloworld.example.com
  KeyPair httpbin_ca2;  // CA2, CN/SAN httpbin.example.com
  KeyPair nginx;        // CA2, CN/SAN nginx.example.com (passthrough origin)
  KeyPair client;       // CA1, CN=client, URI spiffe://cluster.local/ns/default/sa/client,
                        //      DNS client.example.com
  KeyPair client_ca2;   // CA2, CN=stranger
};
const Pki& pki();

// Another leaf in pki().dir signed by "ca1" or "ca2", with `extensions` as
// the openssl -extfile text (e.g. "subjectAltName=@alt\n[alt]\nURI.1=...").
KeyPair make_leaf_cert(const std::string& name, const std::string& subject,
                       const std::string& extensions, const std::string& ca, int serial);

struct TlsClientOptions {
  std::string sni;                 // empty: none sent
  const Pem* ca = nullptr;         // null: no verification
  const KeyPair* cert = nullptr;   // client certificate
  SSL_SESSION* session = nullptr;  // to resume
  std::chrono::milliseconds timeout{5000};
  // ALPN "h2" before "http/1.1"; the client itself speaks HTTP/1.1 only, so
  // only ALPN checks set it.
  bool offer_h2 = false;
};

// One TLS connection to 127.0.0.1:port, driven synchronously with a
// deadline per operation.
class TlsClient {
 public:
  TlsClient(uint16_t port, TlsClientOptions options);
  ~TlsClient();

  bool handshake();  // false: see error()
  bool send(std::string_view bytes);
  // One HTTP/1.1 response with Content-Length framing.
  std::optional<HttpResponse> read_response();
  // The next `n` bytes after what was read (empty on error or timeout).
  std::string read_exactly(size_t n);
  // GET `target` with Host `host` and `headers`, then the response.
  std::optional<HttpResponse> get(std::string_view target, std::string_view host,
                                  const HeaderList& headers = {});
  // True when the peer closed (TLS close or TCP) within the timeout.
  bool closed_by_peer();

  std::string peer_subject() const;  // RFC 2253 subject of the server certificate
  std::string alpn() const;
  bool session_reused() const;
  // The latest resumable session the server sent (a TLS 1.3 ticket arrives
  // with the first response); owned by this client.
  SSL_SESSION* ticket() const { return ticket_; }
  const std::string& error() const { return error_; }

 private:
  // Runs the io_context until `done` or the deadline; on timeout cancels.
  bool run_until(const bool& done);
  bool fill();  // reads more into buf_

  asio::io_context io_;
  asio::ssl::context ctx_;
  std::optional<asio::ssl::stream<asio::ip::tcp::socket>> stream_;  // made after ctx_ is set up
  TlsClientOptions options_;
  std::string buf_;
  std::string error_;
  SSL_SESSION* ticket_ = nullptr;
};

// A TLS HTTP/1.1 origin on its own thread: answers every request with 200
// and body "<name> client=<client subject or ->" (keep-alive).
class TlsOrigin {
 public:
  TlsOrigin(std::string name, const KeyPair& cert, const Pem* client_ca = nullptr);
  ~TlsOrigin();
  uint16_t port() const { return port_; }
  size_t handshakes() const { return handshakes_.load(); }

 private:
  void accept_loop();
  std::string name_;
  asio::io_context io_;
  asio::ssl::context ctx_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<size_t> handshakes_{0};
  std::thread thread_;
};

// An HTTPS server that answers every GET with one body (200, connection:
// close), one connection at a time, on its own thread; a JWKS or discovery
// document for the gateway's fetcher. Keeps the last request head.
class HttpsDocument {
 public:
  HttpsDocument(const KeyPair& cert, std::string body);
  ~HttpsDocument();
  uint16_t port() const { return port_; }
  size_t served() const { return served_.load(); }
  std::string last_head() const;

 private:
  void serve();
  std::string body_;
  asio::io_context io_;
  asio::ssl::context ctx_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> served_{0};
  mutable std::mutex mutex_;
  std::string head_;
  std::thread thread_;
};

}  // namespace sluice::test
