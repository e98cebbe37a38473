// --mesh-certs: the workload certificate, key and root Istio mounts for a
// proxy (istio-proxy's /etc/certs layout), for ISTIO_MUTUAL destinations.

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "istio/istio.hpp"

namespace sluice::istio {

Result<MeshCertificates> load_mesh_certs(const std::string& dir) {
  MeshCertificates out;
  std::string object = fmt::format("--mesh-certs {}", dir);
  for (auto [name, dst] :
       {std::pair{"cert-chain.pem", &out.cert_chain}, std::pair{"key.pem", &out.key},
        std::pair{"root-cert.pem", &out.root_cert}}) {
    std::string path = dir + "/" + name;
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    if (!in || ss.str().empty()) return Error{object, name, "missing, unreadable or empty"};
    *dst = ss.str();
    out.files.push_back(path);
  }
  auto domain = spiffe_trust_domain_of(out.cert_chain);
  if (!domain) return Error{object, "cert-chain.pem", domain.error().message};
  // Istio's default trust domain, for a chain without a SPIFFE URI.
  out.trust_domain = domain->empty() ? "cluster.local" : *domain;
  return out;
}

}  // namespace sluice::istio
