#include "tls/cert.hpp"

#include <fmt/format.h>
#include <openssl/base64.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

namespace sluice::tls {

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

BioPtr mem_bio(std::string_view pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Every certificate in `pem`; an error message when there is none or one is
// malformed.
std::vector<X509Ptr> read_certificates(std::string_view pem, std::string& error) {
  std::vector<X509Ptr> out;
  auto bio = mem_bio(pem);
  for (;;) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (!x) break;
    out.emplace_back(x);
  }
  // Reading stops at end of input (PEM_R_NO_START_LINE) or at garbage.
  uint32_t err = ERR_peek_last_error();
  if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE && !out.empty())
    ERR_clear_error();
  else if (err != 0)
    error = "not a valid PEM certificate: " + drain_errors();
  if (out.empty() && error.empty()) error = "no PEM certificate found";
  return out;
}

std::string asn1_string(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string hex(const uint8_t* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0xf];
  }
  return out;
}

// Names with control bytes (C0, DEL) never leave this file: they would
// break or smuggle header lines in x-forwarded-client-cert and reach hooks
// through peer_identity. A CA may sign anything, so this is checked here.
bool has_control_bytes(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

void add_name(std::vector<std::string>& to, std::string name) {
  if (!has_control_bytes(name)) to.push_back(std::move(name));
}

// One XFCC value as Envoy's format defines it: double-quoted with `"` and
// `\` backslash-escaped when it holds `,` `;` `=` or `"` (or when `always`),
// so a SAN cannot add elements or keys of its own.
void append_xfcc_value(std::string& out, std::string_view v, bool always) {
  if (!always && v.find_first_of(",;=\"\\") == std::string_view::npos) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

}  // namespace

std::string drain_errors() {
  std::string out;
  while (uint32_t e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

std::string load_key_pair(SSL_CTX* ctx, std::string_view chain_pem, std::string_view key_pem,
                          std::string_view chain_field, std::string_view key_field) {
  ERR_clear_error();
  std::string error;
  auto certs = read_certificates(chain_pem, error);
  if (!error.empty()) return fmt::format("{}: {}", chain_field, error);
  if (!SSL_CTX_use_certificate(ctx, certs[0].get()))
    return fmt::format("{}: certificate rejected: {}", chain_field, drain_errors());
  SSL_CTX_clear_chain_certs(ctx);
  for (size_t i = 1; i < certs.size(); ++i)
    if (!SSL_CTX_add1_chain_cert(ctx, certs[i].get()))
      return fmt::format("{}: intermediate {} rejected: {}", chain_field, i, drain_errors());
  auto bio = mem_bio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (!key) {
    drain_errors();
    return fmt::format("{}: not a valid PEM private key", key_field);
  }
  int ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (!ok || !SSL_CTX_check_private_key(ctx)) {
    drain_errors();
    return fmt::format("{}: does not match the certificate in {}", key_field, chain_field);
  }
  return {};
}

std::string load_trust(SSL_CTX* ctx, std::string_view pem, bool client_ca_names) {
  ERR_clear_error();
  std::string error;
  auto certs = read_certificates(pem, error);
  if (!error.empty()) return error;
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (auto& c : certs) {
    if (!X509_STORE_add_cert(store, c.get())) return "certificate rejected: " + drain_errors();
    if (client_ca_names && !SSL_CTX_add_client_CA(ctx, c.get()))
      return "certificate rejected: " + drain_errors();
  }
  return {};
}

CertificateNames certificate_names(X509* cert) {
  CertificateNames out;
  if (!cert) return out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names) {
    for (size_t i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
      switch (n->type) {
        case GEN_URI:
          add_name(out.uris, asn1_string(n->d.uniformResourceIdentifier));
          break;
        case GEN_DNS:
          add_name(out.dns, asn1_string(n->d.dNSName));
          break;
        case GEN_EMAIL:
          add_name(out.others, asn1_string(n->d.rfc822Name));
          break;
        case GEN_IPADD: {
          const ASN1_OCTET_STRING* ip = n->d.iPAddress;
          const uint8_t* p = ASN1_STRING_get0_data(ip);
          if (ASN1_STRING_length(ip) == 4) {
            out.others.push_back(fmt::format("{}.{}.{}.{}", p[0], p[1], p[2], p[3]));
          } else if (ASN1_STRING_length(ip) == 16) {
            std::string s;
            for (int k = 0; k < 16; k += 2)
              s += fmt::format("{}{:x}", k ? ":" : "", (p[k] << 8) | p[k + 1]);
            out.others.push_back(s);
          }
          break;
        }
        default:
          break;
      }
    }
    GENERAL_NAMES_free(names);
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
    const uint8_t* data = nullptr;
    size_t len = 0;
    BIO_mem_contents(bio.get(), &data, &len);
    out.subject.assign(reinterpret_cast<const char*>(data), len);
    // RFC 2253 output escapes control bytes; should one get through anyway,
    // the subject is dropped like a SAN would be.
    if (has_control_bytes(out.subject)) out.subject.clear();
  }
  return out;
}

std::string sha256_hex(X509* cert) {
  uint8_t md[SHA256_DIGEST_LENGTH];
  unsigned len = 0;
  if (!X509_digest(cert, EVP_sha256(), md, &len)) return {};
  return hex(md, len);
}

std::string spki_base64(X509* cert) {
  uint8_t* der = nullptr;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
  if (len <= 0) return {};
  uint8_t md[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(len), md);
  OPENSSL_free(der);
  size_t out_len = 0;
  EVP_EncodedLength(&out_len, sizeof(md));
  std::string out(out_len, '\0');
  size_t n = EVP_EncodeBlock(reinterpret_cast<uint8_t*>(out.data()), md, sizeof(md));
  out.resize(n);
  return out;
}

std::string peer_identity(const CertificateNames& names) {
  if (!names.uris.empty()) return names.uris.front();
  if (!names.dns.empty()) return names.dns.front();
  return names.subject;
}

std::string xfcc_value(X509* peer, X509* local) {
  if (!peer) return {};
  std::string out;
  if (local) {
    // Envoy writes one By per local URI SAN.
    for (const auto& u : certificate_names(local).uris) {
      out += "By=";
      append_xfcc_value(out, u, false);
      out += ';';
    }
  }
  auto names = certificate_names(peer);
  out += "Hash=" + sha256_hex(peer);
  // As Envoy writes it: Subject always quoted, URI and DNS quoted only when
  // they need it, one pair per SAN. The RFC 2253 subject keeps its own
  // escapes (`\,`), which are escaped again inside the quotes.
  out += ";Subject=";
  append_xfcc_value(out, names.subject, true);
  // Envoy keeps the URI key even when the certificate has no URI SAN.
  if (names.uris.empty()) out += ";URI=";
  for (const auto& u : names.uris) {
    out += ";URI=";
    append_xfcc_value(out, u, false);
  }
  for (const auto& d : names.dns) {
    out += ";DNS=";
    append_xfcc_value(out, d, false);
  }
  return out;
}

}  // namespace sluice::tls
