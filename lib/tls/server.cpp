#include "tls/server.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "http/tokens.hpp"
#include "tls/cert.hpp"

namespace sluice::tls {

namespace {

std::atomic<uint64_t> g_handshake_failures{0};

int listener_ex_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
int server_ex_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

uint16_t wire_version(TlsServer::Version v, uint16_t auto_value) {
  switch (v) {
    case TlsServer::Version::tls1_0:
      return TLS1_VERSION;
    case TlsServer::Version::tls1_1:
      return TLS1_1_VERSION;
    case TlsServer::Version::tls1_2:
      return TLS1_2_VERSION;
    case TlsServer::Version::tls1_3:
      return TLS1_3_VERSION;
    case TlsServer::Version::tls_auto:
      break;
  }
  return auto_value;
}

// ALPN: "h2" when the listener speaks HTTP/2 (a non-null `arg`) and the
// client offers it, else "http/1.1". Clients offering only other protocols
// get no ALPN answer rather than a failed handshake.
int select_alpn(SSL*, const uint8_t** out, uint8_t* out_len, const uint8_t* in, unsigned in_len,
                void* arg) {
  static constexpr uint8_t kHttp11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};
  static constexpr uint8_t kH2[] = {'h', '2'};
  const uint8_t* http11 = nullptr;
  for (unsigned i = 0; i < in_len;) {
    unsigned n = in[i];
    if (i + 1 + n > in_len) break;
    if (arg && n == sizeof(kH2) && std::equal(in + i + 1, in + i + 1 + n, kH2)) {
      *out = in + i + 1;
      *out_len = static_cast<uint8_t>(n);
      return SSL_TLSEXT_ERR_OK;
    }
    if (!http11 && n == sizeof(kHttp11) && std::equal(in + i + 1, in + i + 1 + n, kHttp11))
      http11 = in + i + 1;
    i += 1 + n;
  }
  if (!http11) return SSL_TLSEXT_ERR_NOACK;
  *out = http11;
  *out_len = sizeof(kHttp11);
  return SSL_TLSEXT_ERR_OK;
}
// Any non-null pointer: the listener offers h2.
int h2_on = 1;

// "AB:CD:..." -> "abcd...": Envoy accepts a digest with or without colons.
std::string normalize_hash(std::string_view h) {
  std::string out;
  for (char c : h)
    if (c != ':') out += http::to_lower(c);
  return out;
}

// Extra client certificate checks (subjectAltNames, SPKI and certificate
// hash pins) on the leaf, after the chain verified; failing here fails the
// handshake with a certificate alert, as Envoy does.
int verify_client(int preverify_ok, X509_STORE_CTX* store) {
  if (!preverify_ok || X509_STORE_CTX_get_error_depth(store) != 0) return preverify_ok;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (!ssl) return 0;
  const auto* server = static_cast<const ListenerTls::Server*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), server_ex_index()));
  if (!server) return 0;
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  const TlsServer& cfg = server->config;
  if (!cfg.subject_alt_names.empty()) {
    auto names = certificate_names(cert);
    bool found = false;
    for (const auto& want : cfg.subject_alt_names)
      for (const auto* list : {&names.uris, &names.dns, &names.others})
        if (std::find(list->begin(), list->end(), want) != list->end()) found = true;
    if (!found) {
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
  }
  if (!cfg.verify_certificate_spki.empty() || !cfg.verify_certificate_hash.empty()) {
    bool pinned = false;
    if (!cfg.verify_certificate_hash.empty()) {
      auto h = sha256_hex(cert);
      for (const auto& want : cfg.verify_certificate_hash)
        if (normalize_hash(want) == h) pinned = true;
    }
    if (!pinned && !cfg.verify_certificate_spki.empty()) {
      auto spki = spki_base64(cert);
      for (const auto& want : cfg.verify_certificate_spki)
        if (want == spki) pinned = true;
    }
    if (!pinned) {
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
  }
  return 1;
}

// Runs before version negotiation and session resumption: picks the server
// entry by SNI and moves the connection onto its context and settings. An
// unknown name fails the handshake with a handshake_failure alert.
ssl_select_cert_result_t select_server(const SSL_CLIENT_HELLO* hello) {
  SSL* ssl = hello->ssl;
  const auto* listener = static_cast<const ListenerTls*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), listener_ex_index()));
  if (!listener) return ssl_select_cert_error;
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const ListenerTls::Server* server = listener->select(http::to_lower(name ? name : ""));
  if (!server) return ssl_select_cert_error;
  SSL_CTX* ctx = server->context->native_handle();
  SSL_set_SSL_CTX(ssl, ctx);
  // Resumption is partitioned per entry: a ticket from a SIMPLE host must
  // not skip client verification on a MUTUAL one.
  SSL_set_session_id_context(ssl, reinterpret_cast<const uint8_t*>(server->session_context.data()),
                             server->session_context.size());
  SSL_set_min_proto_version(ssl, server->min_version);
  SSL_set_max_proto_version(ssl, server->max_version);
  if (!server->cipher_list.empty() && !SSL_set_strict_cipher_list(ssl, server->cipher_list.c_str()))
    return ssl_select_cert_error;
  if (server->verify_mode != SSL_VERIFY_NONE) {
    SSL_set_verify(ssl, server->verify_mode, verify_client);
    SSL_set1_verify_cert_store(ssl, SSL_CTX_get_cert_store(ctx));
  } else {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
    // Without a client certificate nothing reads the configuration after
    // the handshake (xfcc names the local certificate only for a client
    // with one); freeing it saves ~600 bytes per connection, idle ones too.
    SSL_set_shed_handshake_config(ssl, 1);
  }
  return ssl_select_cert_success;
}

// Idle connections should hold no TLS record buffers. BoringSSL always
// frees them once empty (it defines SSL_MODE_RELEASE_BUFFERS as 0); the
// mode is set so that holds with any libssl.
void release_buffers(SSL_CTX* ctx) {
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

Error field_error(const std::string& object, size_t i, std::string_view field,
                  std::string message) {
  return Error{object, fmt::format("tls_servers[{}].{}", i, field), std::move(message)};
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Lowers and checks the sni_hosts of entry i: host names or "*." wildcards,
// none served by two entries (`seen`: host -> the entry serving it).
std::optional<Error> check_sni_hosts(const std::string& object, size_t i, TlsServer& cfg,
                                     std::vector<std::pair<std::string, size_t>>& seen) {
  if (cfg.sni_hosts.empty())
    return field_error(object, i, "sni_hosts", "must list at least one host (\"*\" for any)");
  for (size_t h = 0; h < cfg.sni_hosts.size(); ++h) {
    cfg.sni_hosts[h] = http::to_lower(cfg.sni_hosts[h]);
    const std::string& host = cfg.sni_hosts[h];
    bool wildcard_ok = host == "*" || (host.starts_with("*.") && host.size() > 2 &&
                                       host.find('*', 1) == std::string::npos);
    if (host.empty() || (host.find('*') != std::string::npos && !wildcard_ok))
      return field_error(object, i, fmt::format("sni_hosts[{}]", h),
                         fmt::format("\"{}\" is not a host name or wildcard", host));
    for (const auto& [other, j] : seen)
      if (other == host)
        return field_error(object, i, fmt::format("sni_hosts[{}]", h),
                           fmt::format("\"{}\" is already served by tls_servers[{}]", host, j));
    seen.emplace_back(host, i);
  }
  return std::nullopt;
}

// Protocol versions and cipher suites of entry i, on its context.
std::optional<Error> set_protocols(const std::string& object, size_t i,
                                   ListenerTls::Server& server) {
  const TlsServer& cfg = server.config;
  SSL_CTX* ctx = server.context->native_handle();
  server.min_version = wire_version(cfg.min_version, TLS1_2_VERSION);
  server.max_version = wire_version(cfg.max_version, TLS1_3_VERSION);
  if (server.min_version > server.max_version)
    return field_error(object, i, "max_version", "must not be below min_version");
  if (!SSL_CTX_set_min_proto_version(ctx, server.min_version) ||
      !SSL_CTX_set_max_proto_version(ctx, server.max_version))
    return field_error(object, i, "min_version", "unsupported protocol version");

  for (size_t c = 0; c < cfg.cipher_suites.size(); ++c) {
    const auto& suite = cfg.cipher_suites[c];
    if (suite.empty() || suite.find_first_of(":, ") != std::string::npos ||
        !SSL_CTX_set_strict_cipher_list(ctx, suite.c_str())) {
      drain_errors();
      return field_error(object, i, fmt::format("cipher_suites[{}]", c),
                         fmt::format("unknown cipher suite \"{}\"", suite));
    }
    server.cipher_list += (c ? ":" : "") + suite;
  }
  if (!server.cipher_list.empty() &&
      !SSL_CTX_set_strict_cipher_list(ctx, server.cipher_list.c_str())) {
    drain_errors();
    return field_error(object, i, "cipher_suites", "no usable cipher suite");
  }
  return std::nullopt;
}

// Client certificate checks of entry i: the CA and verify mode for MUTUAL
// and OPTIONAL_MUTUAL; well-formed pins, and no SAN or pin without them.
std::optional<Error> set_client_checks(const std::string& object, size_t i,
                                       ListenerTls::Server& server) {
  const TlsServer& cfg = server.config;
  bool mutual = cfg.mode != TlsServer::Mode::simple;
  if (mutual) {
    if (cfg.ca_certificates.empty())
      return field_error(object, i, "ca_certificates",
                         "required with mode MUTUAL or OPTIONAL_MUTUAL");
    auto ca_error = load_trust(server.context->native_handle(), cfg.ca_certificates, true);
    if (!ca_error.empty()) return field_error(object, i, "ca_certificates", ca_error);
    server.verify_mode = SSL_VERIFY_PEER;
    if (cfg.mode == TlsServer::Mode::mutual) server.verify_mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  }
  for (size_t k = 0; k < cfg.verify_certificate_hash.size(); ++k) {
    auto h = normalize_hash(cfg.verify_certificate_hash[k]);
    if (h.size() != 64 || !is_hex(h))
      return field_error(object, i, fmt::format("verify_certificate_hash[{}]", k),
                         "must be a hex SHA-256 digest");
  }
  for (size_t k = 0; k < cfg.verify_certificate_spki.size(); ++k)
    if (cfg.verify_certificate_spki[k].size() != 44)
      return field_error(object, i, fmt::format("verify_certificate_spki[{}]", k),
                         "must be a base64 SHA-256 digest");
  if (!mutual && (!cfg.subject_alt_names.empty() || !cfg.verify_certificate_hash.empty() ||
                  !cfg.verify_certificate_spki.empty()))
    return field_error(object, i, "mode",
                       "subject_alt_names and certificate pins need MUTUAL or OPTIONAL_MUTUAL");
  return std::nullopt;
}

}  // namespace

uint64_t handshake_failure_count() {
  return g_handshake_failures.load(std::memory_order_relaxed);
}
void count_handshake_failure() {
  g_handshake_failures.fetch_add(1, std::memory_order_relaxed);
}

int host_match_rank(std::string_view pattern, std::string_view host) {
  if (pattern == "*") return 0;
  if (pattern.size() > 2 && pattern.starts_with("*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    if (host.size() > suffix.size() && host.ends_with(suffix))
      return 1 + static_cast<int>(suffix.size());
    return -1;
  }
  return pattern == host && !host.empty() ? 1 << 20 : -1;
}

ListenerTls::~ListenerTls() = default;

const ListenerTls::Server* ListenerTls::select(std::string_view sni) const {
  const Server* best = nullptr;
  int best_rank = -1;
  for (const auto& s : servers_)
    for (const auto& h : s->config.sni_hosts) {
      int r = host_match_rank(h, sni);
      if (r > best_rank) best_rank = r, best = s.get();
    }
  return best;
}

const PassthroughTarget* ListenerTls::find_passthrough(std::string_view sni) const {
  const PassthroughTarget* best = nullptr;
  int best_rank = -1;
  for (const auto& p : passthrough_)
    for (const auto& h : p.sni_hosts) {
      int r = host_match_rank(h, sni);
      if (r > best_rank) best_rank = r, best = &p;
    }
  return best;
}

Result<std::shared_ptr<const ListenerTls>> ListenerTls::compile(
    const ListenerConfig& config, std::vector<PassthroughTarget> routes) {
  const std::string object = "Listener " + config.name;
  std::shared_ptr<ListenerTls> out(new ListenerTls());
  if (config.tls_handshake_timeout.count() <= 0)
    return Error{object, "tls_handshake_timeout", "must be > 0"};
  out->handshake_timeout_ = config.tls_handshake_timeout;
  for (auto& r : routes)
    for (auto& h : r.sni_hosts) h = http::to_lower(h);
  out->passthrough_ = std::move(routes);
  // A listener that relays TCP after termination carries no HTTP/2.
  bool offers_h2 = config.http2 && config.tcp_routes.empty();

  std::vector<std::pair<std::string, size_t>> seen_hosts;
  for (size_t i = 0; i < config.tls_servers.size(); ++i) {
    auto server = std::make_unique<Server>();
    server->config = config.tls_servers[i];
    const TlsServer& cfg = server->config;
    if (auto e = check_sni_hosts(object, i, server->config, seen_hosts)) return *e;

    server->context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    SSL_CTX* ctx = server->context->native_handle();
    release_buffers(ctx);
    if (cfg.certificate_chain.empty())
      return field_error(object, i, "certificate_chain", "must not be empty");
    if (cfg.private_key.empty()) return field_error(object, i, "private_key", "must not be empty");
    auto error = load_key_pair(ctx, cfg.certificate_chain, cfg.private_key,
                               fmt::format("tls_servers[{}].certificate_chain", i),
                               fmt::format("tls_servers[{}].private_key", i));
    if (!error.empty()) return Error{object, "", error};
    if (auto e = set_protocols(object, i, *server)) return *e;
    if (auto e = set_client_checks(object, i, *server)) return *e;

    server->session_context = fmt::format("sluice/{}/{}", config.name, i);
    SSL_CTX_set_session_id_context(ctx,
                                   reinterpret_cast<const uint8_t*>(server->session_context.data()),
                                   server->session_context.size());
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, offers_h2 ? &h2_on : nullptr);
    SSL_CTX_set_ex_data(ctx, server_ex_index(), server.get());
    out->servers_.push_back(std::move(server));
  }

  // The default context holds no certificate: every handshake goes through
  // select_server, which moves it to an entry. It owns the session cache and
  // ticket keys (BoringSSL keeps those on the initial context), so tickets
  // resume within one snapshot and a reload starts fresh.
  out->default_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* def = out->default_->native_handle();
  release_buffers(def);
  SSL_CTX_set_min_proto_version(def, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(def, TLS1_3_VERSION);
  SSL_CTX_set_alpn_select_cb(def, select_alpn, offers_h2 ? &h2_on : nullptr);
  SSL_CTX_set_select_certificate_cb(def, select_server);
  SSL_CTX_set_session_cache_mode(def, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_ex_data(def, listener_ex_index(), out.get());
  return std::shared_ptr<const ListenerTls>(std::move(out));
}

namespace {
// Asio's stream has no way to give up its SSL object, and BoringSSL's SSL
// has no reference count to keep it alive past the stream. Explicit
// instantiations may name private members ([temp.spec.general]/6), which is
// how release_ssl reaches the engine's pointer to clear it (the engine's
// destructor then frees only its BIO: asio/ssl/detail/impl/engine.ipp) and
// the stream's buffers to check them; a rename in a later Asio fails the
// build here, and the TLS parking tests under ASan cover the rest.
using TlsStream = asio::ssl::stream<asio::ip::tcp::socket>;
template <typename Tag, auto Member>
struct Expose {
  friend constexpr auto member(Tag) { return Member; }
};
struct StreamCore {
  friend constexpr auto member(StreamCore);
};
struct EngineSsl {
  friend constexpr auto member(EngineSsl);
};
template struct Expose<StreamCore, &TlsStream::core_>;
template struct Expose<EngineSsl, &asio::ssl::detail::engine::ssl_>;
}  // namespace

SSL* release_ssl(TlsStream& stream, asio::ip::tcp::socket& socket) {
  SSL* ssl = stream.native_handle();
  if (!ssl) return nullptr;
  auto& core = stream.*member(StreamCore{});
  BIO* bio = SSL_get_rbio(ssl);
  // Plaintext or ciphertext not yet handed on (by BoringSSL, the BIO pair or
  // Asio's input buffer), output not yet sent (a write in progress holds it
  // in Asio's buffer), or a verify callback Asio would free with the
  // stream: not idle.
  if (!bio || SSL_pending(ssl) > 0 || BIO_pending(bio) > 0 || BIO_wpending(bio) > 0 ||
      core.input_.size() > 0 || core.expiry(core.pending_write_) != core.neg_infin() ||
      SSL_get_app_data(ssl))
    return nullptr;
  core.engine_.*member(EngineSsl{}) = nullptr;
  // The inner half of the BIO pair goes now, the outer with the stream.
  SSL_set_bio(ssl, nullptr, nullptr);
  socket = std::move(stream.next_layer());
  return ssl;
}

TlsStream resume_stream(asio::ip::tcp::socket socket, SSL* ssl) {
  return TlsStream(std::move(socket), ssl);
}

DownstreamTls downstream_info(asio::ssl::stream<asio::ip::tcp::socket>& stream) {
  SSL* ssl = stream.native_handle();
  DownstreamTls out;
  if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name))
    out.sni = http::to_lower(sni);
  if (X509* peer = SSL_get_peer_certificate(ssl)) {
    out.peer_names = certificate_names(peer);
    out.peer_identity = peer_identity(out.peer_names);
    out.xfcc = xfcc_value(peer, SSL_get_certificate(ssl));
    X509_free(peer);
  }
  return out;
}

}  // namespace sluice::tls
