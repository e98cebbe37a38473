#pragma once
// TLS origination towards an upstream (Istio DestinationRule
// trafficPolicy.tls with mode SIMPLE or MUTUAL). Compiled once per
// configuration; the handshake runs on a stream created with context().

#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/use_awaitable.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "sluice/result.hpp"
#include "sluice/upstream.hpp"

namespace sluice::tls {

// The public UpstreamTls (Istio ClientTLSSettings but DISABLE; ISTIO_MUTUAL is
// MUTUAL with the mesh's certificates and a SPIFFE trust domain).
using ClientTlsSettings = UpstreamTls;

class ClientContext {
 public:
  ~ClientContext();
  // Errors name `object` and `field_prefix` + ".<field>", e.g.
  // "Upstream reviews: tls.client_certificate: ...".
  static Result<std::shared_ptr<const ClientContext>> compile(const ClientTlsSettings& settings,
                                                              std::string object,
                                                              std::string field_prefix = "tls");
  asio::ssl::context& context() const { return *context_; }
  const ClientTlsSettings& settings() const { return settings_; }
  // A short digest of every setting (hex): equal settings, equal digests.
  // Part of the pool key, so a connection made under other TLS settings is
  // never reused.
  const std::string& digest() const { return digest_; }

 private:
  ClientContext() = default;
  ClientTlsSettings settings_;
  std::string digest_;
  std::unique_ptr<asio::ssl::context> context_;
};

// Errors of handshake_client beyond those of BoringSSL.
enum class ClientError { san_mismatch = 1, spiffe_mismatch };
const std::error_category& client_error_category();
inline std::error_code make_error_code(ClientError e) {
  return {static_cast<int>(e), client_error_category()};
}

// The parts of a client handshake around BoringSSL's: SNI and name checks
// before, SAN checks after.
void prepare_client(SSL* ssl, const ClientContext& context, std::string_view destination_host);
std::error_code check_client(SSL* ssl, const ClientContext& context);

// Client handshake on `stream` (an asio::ssl::stream created with
// `context.context()` over a connected socket, or a reference to one): SNI =
// settings.sni or `destination_host`, ALPN http/1.1 (with "istio" first
// for a mesh peer), chain verified against the CAs, server name, SANs or
// SPIFFE identity checked. Never throws; the error code says
// what failed.
template <typename Stream>
asio::awaitable<std::error_code> handshake_client(Stream& stream, const ClientContext& context,
                                                  std::string_view destination_host) {
  prepare_client(stream.native_handle(), context, destination_host);
  auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::client,
                                              asio::experimental::as_tuple(asio::use_awaitable));
  if (ec) co_return ec;
  co_return check_client(stream.native_handle(), context);
}

}  // namespace sluice::tls
