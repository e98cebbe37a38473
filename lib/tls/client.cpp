#include "tls/client.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <fstream>

#include "tls/cert.hpp"

namespace sluice::tls {

namespace {

class ClientErrorCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "sluice.tls.client"; }
  std::string message(int e) const override {
    switch (static_cast<ClientError>(e)) {
      case ClientError::san_mismatch:
        return "server certificate matches none of the subject_alt_names";
      case ClientError::spiffe_mismatch:
        return "server certificate has no accepted SPIFFE identity";
    }
    return "unknown TLS client error";
  }
};

bool is_ip_literal(std::string_view host) {
  asio::error_code ec;
  asio::ip::make_address(std::string(host), ec);
  return !ec;
}

// SHA-256 over every setting, each length-prefixed so no two lists of
// fields run together; the first 8 bytes in hex are plenty to tell configs
// apart (they are not a secret, nor attacker-chosen).
std::string settings_digest(const ClientTlsSettings& s) {
  SHA256_CTX sha;
  SHA256_Init(&sha);
  auto add = [&](std::string_view v) {
    uint64_t n = v.size();
    SHA256_Update(&sha, &n, sizeof(n));
    SHA256_Update(&sha, v.data(), v.size());
  };
  add(s.mode == ClientTlsSettings::Mode::mutual ? "mutual" : "simple");
  add(s.sni);
  add(s.ca_certificates);
  add(s.client_certificate);
  add(s.private_key);
  for (const auto& san : s.subject_alt_names) add(san);
  add(s.insecure_skip_verify ? "insecure" : "verify");
  add(s.spiffe_trust_domain);
  uint8_t md[SHA256_DIGEST_LENGTH];
  SHA256_Final(md, &sha);
  return fmt::format("{:02x}", fmt::join(md, md + 8, ""));
}

}  // namespace

const std::error_category& client_error_category() {
  static const ClientErrorCategory category;
  return category;
}

ClientContext::~ClientContext() = default;

Result<std::shared_ptr<const ClientContext>> ClientContext::compile(
    const ClientTlsSettings& settings, std::string object, std::string field_prefix) {
  std::shared_ptr<ClientContext> out(new ClientContext());
  out->settings_ = settings;
  out->digest_ = settings_digest(settings);
  out->context_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* ctx = out->context_->native_handle();
  auto field = [&](std::string_view f) { return fmt::format("{}.{}", field_prefix, f); };
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  // Pooled idle connections hold no record buffers (BoringSSL frees empty
  // ones anyway and defines this mode as 0; other libssl builds need it).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  // Istio's sidecars pick their mTLS filter chain by the "istio" ALPN.
  static constexpr uint8_t kAlpn[] = {5,   'i', 's', 't', 'i', 'o', 8,  'h',
                                      't', 't', 'p', '/', '1', '.', '1'};
  if (settings.spiffe_trust_domain.empty())
    SSL_CTX_set_alpn_protos(ctx, kAlpn + 6, sizeof(kAlpn) - 6);
  else
    SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof(kAlpn));

  if (settings.mode == ClientTlsSettings::Mode::mutual) {
    if (settings.client_certificate.empty())
      return Error{object, field("client_certificate"), "required with mode MUTUAL"};
    if (settings.private_key.empty())
      return Error{object, field("private_key"), "required with mode MUTUAL"};
    auto error = load_key_pair(ctx, settings.client_certificate, settings.private_key,
                               field("client_certificate"), field("private_key"));
    if (!error.empty()) return Error{object, "", error};
  } else if (!settings.client_certificate.empty() || !settings.private_key.empty()) {
    return Error{object, field("client_certificate"), "only used with mode MUTUAL"};
  }

  if (!settings.insecure_skip_verify) {
    if (!settings.ca_certificates.empty()) {
      auto error = load_trust(ctx, settings.ca_certificates, false);
      if (!error.empty()) return Error{object, field("ca_certificates"), error};
    } else {
      // Debian's bundle; BoringSSL (Android build) has no default paths.
      std::ifstream in("/etc/ssl/certs/ca-certificates.crt");
      std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (pem.empty() || !load_trust(ctx, pem, false).empty())
        return Error{object, field("ca_certificates"),
                     "required: no system trust store at /etc/ssl/certs/ca-certificates.crt"};
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  // Client sessions are not cached here: pooled connections are the reuse.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  return std::shared_ptr<const ClientContext>(std::move(out));
}

}  // namespace sluice::tls

namespace sluice {

Result<std::string> spiffe_trust_domain_of(std::string_view certificate_pem) {
  bssl::UniquePtr<BIO> bio(BIO_new_mem_buf(certificate_pem.data(), certificate_pem.size()));
  bssl::UniquePtr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  tls::drain_errors();
  if (!cert) return Error{"", "", "no PEM certificate"};
  for (const auto& uri : tls::certificate_names(cert.get()).uris) {
    constexpr std::string_view kScheme = "spiffe://";
    if (!uri.starts_with(kScheme)) continue;
    std::string_view rest = std::string_view(uri).substr(kScheme.size());
    return std::string(rest.substr(0, rest.find('/')));
  }
  return std::string();
}

}  // namespace sluice

namespace sluice::tls {

void prepare_client(SSL* ssl, const ClientContext& context, std::string_view destination_host) {
  const ClientTlsSettings& s = context.settings();
  std::string host(s.sni.empty() ? destination_host : std::string_view(s.sni));
  bool ip = is_ip_literal(host);
  if (!host.empty() && !ip) SSL_set_tlsext_host_name(ssl, host.c_str());
  // A mesh peer is checked by its SPIFFE identity, never by the SNI name.
  if (!s.insecure_skip_verify && s.subject_alt_names.empty() && s.spiffe_trust_domain.empty() &&
      !host.empty()) {
    // The certificate must be valid for the name we asked for.
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ip)
      X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, host.data(), host.size());
  }
}

std::error_code check_client(SSL* ssl, const ClientContext& context) {
  const ClientTlsSettings& s = context.settings();
  if (!s.insecure_skip_verify && !s.spiffe_trust_domain.empty()) {
    X509* peer = SSL_get_peer_certificate(ssl);
    auto names = certificate_names(peer);
    X509_free(peer);
    std::string prefix = "spiffe://" + s.spiffe_trust_domain + "/";
    bool found = false;
    for (const auto& uri : names.uris) {
      if (s.subject_alt_names.empty())
        found = found || uri.starts_with(prefix);
      else
        found = found || std::find(s.subject_alt_names.begin(), s.subject_alt_names.end(), uri) !=
                             s.subject_alt_names.end();
    }
    if (!found) return make_error_code(ClientError::spiffe_mismatch);
    return {};
  }
  if (!s.insecure_skip_verify && !s.subject_alt_names.empty()) {
    X509* peer = SSL_get_peer_certificate(ssl);
    auto names = certificate_names(peer);
    X509_free(peer);
    bool found = false;
    for (const auto& want : s.subject_alt_names)
      for (const auto* list : {&names.dns, &names.uris, &names.others})
        if (std::find(list->begin(), list->end(), want) != list->end()) found = true;
    if (!found) return make_error_code(ClientError::san_mismatch);
  }
  return {};
}

}  // namespace sluice::tls
