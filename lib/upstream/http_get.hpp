#pragma once
// A bounded GET (or POST) the gateway makes for itself (JWKS and OpenID
// discovery documents, span export): the host resolved without blocking the loop, one connection
// of its own through the upstream-connection layer (TLS origination
// included), `connection: close`, the response read with the project's
// parser. Bounded in time (one deadline on the loop's clock covers the
// lookup, connect, handshake and exchange) and in size. Redirects are not
// followed: a 3xx is an answer like any other non-200.

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "net/loop.hpp"

namespace sluice {

class UpstreamContext;
namespace tls {
class ClientContext;
}

struct HttpGetRequest {
  std::string host;  // name or IP literal (no brackets): looked up (IPv4), SNI
  uint16_t port = 0;
  std::string authority;  // the Host header
  std::string target;     // path and query
  // A POST with this body when content_type is set (span export), else a GET.
  std::string content_type;
  std::string body;
  // Set: connect to this address instead of looking `host` up.
  std::optional<asio::ip::tcp::endpoint> connect_to;
  // TLS origination when set (its settings carry the SNI and the CAs).
  std::shared_ptr<const tls::ClientContext> tls;
  std::chrono::milliseconds timeout{5'000};
  size_t max_body_bytes = 256 * 1024;
};

struct HttpGetResult {
  bool ok = false;  // a complete response arrived (any status)
  uint16_t status = 0;
  std::string body;
  std::string error;  // !ok: what failed, in words
};

// One exchange at a time. Held by shared_ptr: the exchange keeps it
// alive while it waits.
class HttpGet {
 public:
  explicit HttpGet(UpstreamContext& ctx);
  ~HttpGet();
  HttpGet(const HttpGet&) = delete;
  HttpGet& operator=(const HttpGet&) = delete;

  static asio::awaitable<HttpGetResult> run(std::shared_ptr<HttpGet> self, HttpGetRequest request);
  // Ends the exchange in progress (and any later one) with "cancelled".
  void cancel();

 private:
  // `self` keeps this alive while the exchange runs.
  asio::awaitable<HttpGetResult> perform(std::shared_ptr<HttpGet> self, HttpGetRequest request);
  asio::awaitable<HttpGetResult> exchange(const HttpGetRequest& request,
                                          const asio::ip::tcp::endpoint& address);

  UpstreamContext& ctx_;
  ConnectionSlot slot_{nullptr};
  asio::ip::tcp::resolver resolver_;
  bool cancelled_ = false;
  bool attached_ = false;
};

}  // namespace sluice
