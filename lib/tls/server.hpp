#pragma once
// Compiled downstream TLS of one listener: a BoringSSL context per
// TlsServer entry, chosen by SNI during the handshake, plus the listener's
// PASSTHROUGH routes. Built at snapshot compile time (bad PEM, a key that
// does not match its certificate, unknown cipher names fail there), then
// shared read-only; a connection in handshake holds the snapshot, so a
// reload never pulls a context from under it.

#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/gateway.hpp"
#include "sluice/result.hpp"
#include "tls/cert.hpp"

namespace sluice::tls {

// How well `pattern` ("a.example.com", "*.example.com", "*") matches the
// lowercased `host`: -1 none, 0 for "*", 1 + suffix length for a wildcard,
// a large value for an exact match. Higher wins.
int host_match_rank(std::string_view pattern, std::string_view host);

struct PassthroughTarget {
  std::vector<std::string> sni_hosts;  // lowercased
  uint32_t upstream = 0;               // index into Snapshot::upstreams
  uint32_t set = 0;                    // index into its CompiledUpstream::sets
  uint32_t route = 0;                  // index into ListenerConfig::passthrough
};

class ListenerTls {
 public:
  // One selected server entry: its context plus the client checks.
  struct Server {
    TlsServer config;  // sni_hosts lowercased
    std::unique_ptr<asio::ssl::context> context;
    int verify_mode = 0;  // SSL_VERIFY_* for this entry
    uint16_t min_version = 0, max_version = 0;
    std::string cipher_list;  // empty: library default
    std::string session_context;
  };

  ~ListenerTls();

  // `object` names the listener in errors ("Listener main"); fields are
  // reported as "tls_servers[i].<field>".
  static Result<std::shared_ptr<const ListenerTls>> compile(const ListenerConfig& config,
                                                            std::vector<PassthroughTarget> routes);

  bool terminates() const { return !servers_.empty(); }
  bool has_passthrough() const { return !passthrough_.empty(); }
  std::chrono::milliseconds handshake_timeout() const { return handshake_timeout_; }

  // The context new server streams are created with; its certificate
  // selection callback switches to the entry matching the SNI.
  asio::ssl::context& context() const { return *default_; }

  // The server entry for `sni` (exact, then the longest wildcard, then
  // "*"; an empty SNI matches only "*"); nullptr when none.
  const Server* select(std::string_view sni) const;
  const PassthroughTarget* find_passthrough(std::string_view sni) const;

 private:
  ListenerTls() = default;

  std::unique_ptr<asio::ssl::context> default_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<PassthroughTarget> passthrough_;
  std::chrono::milliseconds handshake_timeout_{10'000};
};

// Handshake failures on all listeners since the process started.
uint64_t handshake_failure_count();
void count_handshake_failure();

// What a finished TLS handshake tells the HTTP layer.
struct DownstreamTls {
  std::string sni;
  std::string peer_identity;    // see RequestContext::peer_identity
  std::string xfcc;             // x-forwarded-client-cert value (Envoy format); empty: none
  CertificateNames peer_names;  // the verified client certificate's; empty without one
};

DownstreamTls downstream_info(asio::ssl::stream<asio::ip::tcp::socket>& stream);

// A parked TLS connection keeps its socket and its SSL object only: Asio's
// stream around them holds ~68 KB of buffers and BIO pair. release_ssl takes
// the SSL object out of an established, idle `stream` and its socket into
// `socket`; the stream is left to be destroyed. It returns nullptr and
// leaves both alone when the connection holds bytes not yet read or
// written (splitting would lose them). resume_stream is the inverse.
SSL* release_ssl(asio::ssl::stream<asio::ip::tcp::socket>& stream, asio::ip::tcp::socket& socket);
asio::ssl::stream<asio::ip::tcp::socket> resume_stream(asio::ip::tcp::socket socket, SSL* ssl);

}  // namespace sluice::tls
