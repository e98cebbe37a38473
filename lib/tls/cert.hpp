#pragma once
// Certificate helpers over BoringSSL: PEM loading into contexts, identity
// extraction and the x-forwarded-client-cert value. Config-path functions
// return an error message (empty: ok); none throw.

#include <openssl/ssl.h>

#include <string>
#include <string_view>
#include <vector>

namespace sluice::tls {

// Certificate chain (leaf first) and private key from PEM; checks that the
// key matches the leaf. Returns an error message naming the part at fault
// ("certificate_chain: ...", "private_key: ...").
std::string load_key_pair(SSL_CTX* ctx, std::string_view chain_pem, std::string_view key_pem,
                          std::string_view chain_field, std::string_view key_field);
// Adds every certificate of `pem` to the context's trust store (and, for
// servers, to the CA names sent in CertificateRequest).
std::string load_trust(SSL_CTX* ctx, std::string_view pem, bool client_ca_names);

struct CertificateNames {
  std::vector<std::string> uris;
  std::vector<std::string> dns;
  std::vector<std::string> others;  // IP addresses and emails, for SAN matching
  std::string subject;              // RFC 2253, e.g. "CN=client,O=example"
};
// Names holding a control byte (C0 or DEL) are left out, and so never reach
// peer_identity, x-forwarded-client-cert or SAN matching: each remaining
// name is still one the CA signed, and Hash pins the exact certificate.
CertificateNames certificate_names(X509* cert);

std::string sha256_hex(X509* cert);   // of the DER certificate, lowercase
std::string spki_base64(X509* cert);  // base64 SHA-256 of the SubjectPublicKeyInfo

// Identity as the gateway reports it: first URI SAN, else first DNS SAN,
// else the subject.
std::string peer_identity(const CertificateNames& names);

// Envoy's x-forwarded-client-cert element for a verified peer certificate
// (SANITIZE_SET with subject, URI and DNS, as Istio gateways configure it):
// By=<local URI SAN>;Hash=<hex>;Subject="<subject>";URI=<uri>;DNS=<dns>...
// A value with `,` `;` `=` `"` or `\` is double-quoted with `"` and `\`
// backslash-escaped (Subject always quoted), as Envoy's format defines.
std::string xfcc_value(X509* peer, X509* local);

// The OpenSSL error queue as one line (drained).
std::string drain_errors();

}  // namespace sluice::tls
