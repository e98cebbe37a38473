// Istio TLS YAML -> GatewayConfig: Gateway servers[].tls, Secrets, VirtualService
// tls routes, DestinationRule trafficPolicy.tls, and the errors that name fields.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "istio_test_util.hpp"
#include "tls_certs.hpp"

namespace tls_loader_test {

using namespace sluice;
using namespace sluice::test;

namespace {

std::string gateway(const std::string& servers, const std::string& name = "gw",
                    const std::string& ns = "default") {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {}, namespace: {}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{}
---
)",
                     name, ns, servers);
}

std::string httpbin_service(uint16_t port = 8000, const std::string& host = "httpbin") {
  return fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {0}}}
spec:
  hosts: [{0}]
  ports: [{{number: {1}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
)",
                     host, port);
}

const char* httpbin_vs = R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: httpbin, port: {number: 8000}}}]
---
)";

const ListenerConfig& listener(const istio::LoadedConfig& l, const std::string& name) {
  for (const auto& x : l.config.listeners)
    if (x.name == name) return x;
  FAIL("no listener ", name);
  throw 0;
}

const UpstreamConfig& upstream(const istio::LoadedConfig& l, const std::string& name) {
  for (const auto& u : l.config.upstreams)
    if (u.name == name) return u;
  FAIL("no upstream ", name);
  throw 0;
}

}  // namespace

TEST_CASE("Gateway SIMPLE with file fields relative to the YAML file") {
  const auto& pki = istio_pki();
  namespace fs = std::filesystem;
  std::string dir = pki.dir + "/cfg-simple";
  fs::create_directories(dir + "/certs");
  fs::copy_file(pki.httpbin, dir + "/certs/httpbin.pem", fs::copy_options::overwrite_existing);
  fs::copy_file(pki.httpbin_key, dir + "/certs/httpbin.key", fs::copy_options::overwrite_existing);
  std::string yaml = gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [default/httpbin.example.com]
    tls:
      mode: SIMPLE
      serverCertificate: certs/httpbin.pem
      privateKey: certs/httpbin.key
      cipherSuites: [ECDHE-ECDSA-AES128-GCM-SHA256]
      maxProtocolVersion: TLSV1_3
)") + httpbin_vs + httpbin_service();
  { std::ofstream(dir + "/config.yaml") << yaml; }
  auto loaded = istio::load_files({dir + "/config.yaml"});
  REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : loaded.error().to_string()));
  const ListenerConfig& l = listener(*loaded, "https.443");
  CHECK(l.port == 443);
  REQUIRE(l.tls_servers.size() == 1);
  const TlsServer& t = l.tls_servers[0];
  CHECK(t.sni_hosts == std::vector<std::string>{"httpbin.example.com"});  // "default/" stripped
  CHECK(t.mode == TlsServer::Mode::simple);
  CHECK(t.certificate_chain == IstioPki::read(pki.httpbin));
  CHECK(t.private_key == IstioPki::read(pki.httpbin_key));
  CHECK(t.ca_certificates.empty());
  CHECK(t.min_version == TlsServer::Version::tls1_2);  // Istio's default minimum
  CHECK(t.max_version == TlsServer::Version::tls1_3);
  CHECK(t.cipher_suites == std::vector<std::string>{"ECDHE-ECDSA-AES128-GCM-SHA256"});
  CHECK(l.passthrough.empty());
  // The HTTP routes of the VirtualService are served behind the TLS.
  Router r = compiled_router(*loaded, 443);
  CHECK(route_of(r, request("httpbin.example.com", "/", {}, "GET", 443)) ==
        "outbound|8000||httpbin");
  // The files are what a reload watches.
  auto parsed = istio::parse_files({dir + "/config.yaml"});
  REQUIRE(parsed.ok());
  auto files = istio::referenced_files(*parsed);
  REQUIRE(files.size() == 2);
  CHECK(files[0] == dir + "/certs/httpbin.key");
  CHECK(files[1] == dir + "/certs/httpbin.pem");
  CHECK(compile(loaded->config).ok());
}

TEST_CASE("Gateway MUTUAL: CA, SANs, SPKI and hash pins, versions") {
  const auto& pki = istio_pki();
  std::string yaml =
      gateway(fmt::format(R"(
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [httpbin.example.com]
    tls:
      mode: MUTUAL
      serverCertificate: {}
      privateKey: {}
      caCertificates: {}
      subjectAltNames: [spiffe://cluster.local/ns/default/sa/client]
      verifyCertificateSpki: [Zm9vYmFy]
      verifyCertificateHash: ["AB:CD"]
      minProtocolVersion: TLSV1_3
  - port: {{number: 443, name: https-opt, protocol: HTTPS}}
    hosts: ["*.example.org"]
    tls: {{mode: OPTIONAL_MUTUAL, serverCertificate: {}, privateKey: {}, caCertificates: {}}}
)",
                          pki.httpbin, pki.httpbin_key, pki.ca, pki.nginx, pki.nginx_key, pki.ca)) +
      httpbin_vs + httpbin_service();
  auto loaded = load_ok(yaml);
  const ListenerConfig& l = listener(loaded, "https.443");
  REQUIRE(l.tls_servers.size() == 2);
  const TlsServer& t = l.tls_servers[0];
  CHECK(t.mode == TlsServer::Mode::mutual);
  CHECK(t.ca_certificates == IstioPki::read(pki.ca));
  CHECK(t.subject_alt_names ==
        std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/client"});
  CHECK(t.verify_certificate_spki == std::vector<std::string>{"Zm9vYmFy"});
  CHECK(t.verify_certificate_hash == std::vector<std::string>{"AB:CD"});
  CHECK(t.min_version == TlsServer::Version::tls1_3);
  CHECK(t.max_version == TlsServer::Version::tls_auto);
  CHECK(l.tls_servers[1].mode == TlsServer::Mode::optional_mutual);
  CHECK(l.tls_servers[1].sni_hosts == std::vector<std::string>{"*.example.org"});
}

TEST_CASE("credentialName reads a kubectl-printed Secret (base64 data), and <name>-cacert") {
  const auto& pki = istio_pki();
  std::string yaml =
      gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: SIMPLE, credentialName: httpbin-credential}
  - port: {number: 443, name: https-mtls, protocol: HTTPS}
    hosts: [nginx.example.com]
    tls: {mode: MUTUAL, credentialName: nginx-credential}
)") + httpbin_vs +
      httpbin_service() +
      // Istio's ingress reads Secrets from its own namespace (istio-system).
      kubectl_secret("httpbin-credential", "istio-system", pki.httpbin, pki.httpbin_key) + "---\n" +
      kubectl_secret("nginx-credential", "istio-system", pki.nginx, pki.nginx_key) + "---\n" + R"(
apiVersion: v1
kind: Secret
metadata: {name: nginx-credential-cacert, namespace: istio-system}
type: Opaque
stringData:
  ca.crt: |
)";
  std::istringstream ca(IstioPki::read(pki.ca));
  for (std::string line; std::getline(ca, line);) yaml += "    " + line + "\n";
  auto loaded = load_ok(yaml);
  CHECK_FALSE(has_warning(loaded, "Secret"));  // a known kind now
  const ListenerConfig& l = listener(loaded, "https.443");
  REQUIRE(l.tls_servers.size() == 2);
  CHECK(l.tls_servers[0].certificate_chain == IstioPki::read(pki.httpbin));
  CHECK(l.tls_servers[0].private_key == IstioPki::read(pki.httpbin_key));
  CHECK(l.tls_servers[1].mode == TlsServer::Mode::mutual);
  CHECK(l.tls_servers[1].certificate_chain == IstioPki::read(pki.nginx));
  CHECK(l.tls_servers[1].ca_certificates == IstioPki::read(pki.ca));
  CHECK(compile(loaded.config).ok());

  // --check never prints secret material.
  std::string text = istio::summary(loaded);
  CHECK(text.find("tls terminate: SIMPLE certificate for httpbin.example.com") !=
        std::string::npos);
  CHECK(text.find("tls terminate: MUTUAL certificate for nginx.example.com") != std::string::npos);
  CHECK(text.find("BEGIN") == std::string::npos);
  CHECK(text.find(base64(IstioPki::read(pki.httpbin_key)).substr(0, 40)) == std::string::npos);
  // --explain names the certificate the host's SNI would pick.
  const istio::ListenerInfo* info = loaded.listener_for_port(443);
  REQUIRE(info != nullptr);
  const RouterConfig& rc = router_for(loaded, 443);
  Router router = compiled_router(loaded, 443);
  auto e = router.explain(request("httpbin.example.com", "/", {}, "GET", 443));
  std::string ex = istio::explain_text(loaded, *info, rc, e);
  CHECK(ex.find("tls:      SIMPLE certificate for httpbin.example.com") != std::string::npos);
}

TEST_CASE("Secret and certificate errors name the field, the Secret and the path") {
  const auto& pki = istio_pki();
  SUBCASE("missing Secret") {
    std::string err = load_error(gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [httpbin.example.com]
    name: web
    tls: {mode: SIMPLE, credentialName: nope}
)") + httpbin_vs + httpbin_service());
    CHECK(err.find("Gateway gw") != std::string::npos);
    CHECK(err.find("servers[0].tls.credentialName") != std::string::npos);
    CHECK(err.find("server 0 \"web\" on port 443") != std::string::npos);
    CHECK(err.find("Secret \"nope\"") != std::string::npos);
  }
  SUBCASE("MUTUAL Secret without ca.crt") {
    std::string err = load_error(gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: MUTUAL, credentialName: cred}
)") + httpbin_vs + httpbin_service() +
                                 kubectl_secret("cred", "default", pki.httpbin, pki.httpbin_key));
    CHECK(err.find("servers[0].tls.credentialName") != std::string::npos);
    CHECK(err.find("ca.crt") != std::string::npos);
  }
  SUBCASE("Secret without tls.key") {
    std::string err = load_error(gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: SIMPLE, credentialName: cred}
)") + httpbin_vs + httpbin_service() +
                                 kubectl_secret("cred", "default", pki.httpbin, ""));
    CHECK(err.find("has no tls.key") != std::string::npos);
  }
  SUBCASE("bad base64 in a Secret names the key, not the value") {
    std::string err = load_error(R"(
apiVersion: v1
kind: Secret
metadata: {name: cred}
type: kubernetes.io/tls
data: {tls.crt: "not*base64", tls.key: ""}
)");
    CHECK(err.find("Secret cred") != std::string::npos);
    CHECK(err.find("data.tls.crt") != std::string::npos);
    CHECK(err.find("not*base64") == std::string::npos);
  }
  SUBCASE("unreadable certificate file") {
    std::string err = load_error(gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: SIMPLE, serverCertificate: /nonexistent/cert.pem, privateKey: /nonexistent/key.pem}
)"));
    CHECK(err.find("servers[0].tls.serverCertificate") != std::string::npos);
    CHECK(err.find("/nonexistent/cert.pem") != std::string::npos);
  }
  SUBCASE("SIMPLE without a certificate") {
    std::string err = load_error(gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [httpbin.example.com]
    tls: {mode: SIMPLE}
)"));
    CHECK(err.find("servers[0].tls.serverCertificate: required with mode SIMPLE") !=
          std::string::npos);
  }
  SUBCASE("MUTUAL without caCertificates") {
    std::string err = load_error(gateway(fmt::format(R"(
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [httpbin.example.com]
    tls: {{mode: MUTUAL, serverCertificate: {}, privateKey: {}}}
)",
                                                     pki.httpbin, pki.httpbin_key)));
    CHECK(err.find("servers[0].tls.caCertificates") != std::string::npos);
  }
}

TEST_CASE("TLS modes and protocols that are errors") {
  SUBCASE("ISTIO_MUTUAL needs the mesh") {
    std::string err = load_error(gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
)"));
    CHECK(err.find("servers[0].tls.mode") != std::string::npos);
    CHECK(err.find("needs the mesh") != std::string::npos);
  }
  SUBCASE("AUTO_PASSTHROUGH is not supported at an ingress without mesh") {
    std::string err = load_error(gateway(R"(
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.local"]
    tls: {mode: AUTO_PASSTHROUGH}
)"));
    CHECK(err.find("AUTO_PASSTHROUGH is not supported") != std::string::npos);
    CHECK(err.find("without the mesh") != std::string::npos);
  }
  SUBCASE("HTTPS needs tls") {
    std::string err = load_error(gateway(R"(
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
)"));
    CHECK(err.find("servers[0].tls: required with protocol HTTPS") != std::string::npos);
  }
  SUBCASE("plain HTTP and TLS on one port") {
    std::string err = load_error(gateway(R"(
  - port: {number: 8443, name: http, protocol: HTTP}
    hosts: [a.example.com]
  - port: {number: 8443, name: tls, protocol: TLS}
    hosts: [b.example.com]
    tls: {mode: PASSTHROUGH}
)"));
    CHECK(err.find("servers[1].port.protocol") != std::string::npos);
    CHECK(err.find("port 8443 is plain HTTP in one server and TLS in another") !=
          std::string::npos);
  }
  SUBCASE("TLS settings on an HTTP server") {
    std::string err = load_error(gateway(R"(
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: x}
)"));
    CHECK(err.find("servers[0].tls.mode") != std::string::npos);
    CHECK(err.find("need protocol HTTPS or TLS") != std::string::npos);
  }
  SUBCASE("VirtualService tcp destinationSubnets") {
    std::string err = load_error(gateway(R"(
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
)") + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp: [{match: [{destinationSubnets: [10.0.0.0/8]}], route: [{destination: {host: httpbin}}]}]
)");
    CHECK(err.find("VirtualService v: tcp[0].match[0].destinationSubnets: destinationSubnets is "
                   "not implemented yet") != std::string::npos);
  }
  SUBCASE("DestinationRule ISTIO_MUTUAL") {
    std::string err = load_error(R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: httpbin
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
)");
    CHECK(err.find("DestinationRule d: trafficPolicy.tls.mode") != std::string::npos);
    CHECK(err.find("needs the mesh") != std::string::npos);
  }
  SUBCASE("tls route sniHosts outside the VirtualService hosts") {
    std::string err = load_error(gateway(R"(
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
)") + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: v}
spec:
  hosts: [nginx.example.com]
  gateways: [gw]
  tls:
  - match: [{port: 443, sniHosts: [other.example.com]}]
    route: [{destination: {host: httpbin, port: {number: 8000}}}]
---
)" + httpbin_service());
    CHECK(err.find("tls[0].match[0].sniHosts[0]") != std::string::npos);
  }
}

TEST_CASE("PASSTHROUGH (also a tls block without mode) takes VirtualService tls routes") {
  std::string yaml = gateway(R"(
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [nginx.example.com, "*.example.org"]
    tls: {}
)") + R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: nginx}
spec:
  hosts: [nginx.example.com, a.example.org]
  gateways: [gw]
  tls:
  - match: [{port: 443, sniHosts: [nginx.example.com]}]
    route: [{destination: {host: my-nginx, port: {number: 443}}}]
  - match: [{port: 8443, sniHosts: [a.example.org]}]
    route: [{destination: {host: my-nginx, port: {number: 443}}}]
  - match: [{sniHosts: [a.example.org]}]
    route: [{destination: {host: my-nginx, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: nginx}
spec:
  host: my-nginx
  subsets: [{name: v1, labels: {version: v1}}]
---
)" + httpbin_service(443, "my-nginx");
  auto loaded = load_ok(yaml);
  const ListenerConfig& l = listener(loaded, "https.443");
  CHECK(l.tls_servers.empty());
  REQUIRE(l.passthrough.size() == 2);  // the port 8443 match does not apply here
  CHECK(l.passthrough[0].sni_hosts == std::vector<std::string>{"nginx.example.com"});
  CHECK(l.passthrough[0].upstream == "outbound|443||my-nginx");
  CHECK(l.passthrough[0].subset.empty());
  CHECK(l.passthrough[1].sni_hosts == std::vector<std::string>{"a.example.org"});
  CHECK(l.passthrough[1].subset == "v1");
  CHECK(loaded.listeners[0].servers[0].tls_mode == "PASSTHROUGH");
  CHECK_FALSE(has_warning(loaded, "every request gets 404"));
  CHECK(compile(loaded.config).ok());
  std::string text = istio::summary(loaded);
  CHECK(text.find("tls passthrough: sni nginx.example.com -> outbound|443||my-nginx") !=
        std::string::npos);
  CHECK(text.find("TLS tls PASSTHROUGH hosts") != std::string::npos);
}

TEST_CASE("PASSTHROUGH without any tls route warns") {
  auto loaded = load_ok(gateway(R"(
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
)"));
  CHECK(has_warning(loaded, "no VirtualService tls route"));
}

TEST_CASE("httpsRedirect marks the server's virtual hosts, also hosts without a VirtualService") {
  const auto& pki = istio_pki();
  std::string yaml = gateway(fmt::format(R"(
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [httpbin.example.com, bare.example.com]
    tls: {{httpsRedirect: true}}
  - port: {{number: 80, name: http2, protocol: HTTP}}
    hosts: [plain.example.com]
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [httpbin.example.com]
    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}
)",
                                         pki.httpbin, pki.httpbin_key)) +
                     R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin.example.com, plain.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: httpbin, port: {number: 8000}}}]
---
)" + httpbin_service();
  auto loaded = load_ok(yaml);
  const RouterConfig& r80 = router_for(loaded, 80);
  std::map<std::string, bool> redirect;
  for (const auto& vh : r80.virtual_hosts) redirect[vh.name] = vh.https_redirect;
  CHECK(redirect.at("httpbin.example.com"));
  CHECK(redirect.at("bare.example.com"));
  CHECK_FALSE(redirect.at("plain.example.com"));
  for (const auto& vh : router_for(loaded, 443).virtual_hosts) CHECK_FALSE(vh.https_redirect);
  CHECK(compile(loaded.config).ok());
  CHECK(istio::summary(loaded).find("host bare.example.com (httpsRedirect") != std::string::npos);
}

TEST_CASE("DestinationRule tls: SIMPLE, MUTUAL, portLevelSettings, subsets, DISABLE") {
  const auto& pki = istio_pki();
  std::string yaml =
      gateway(R"(
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
)") +
      fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: v}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /a}}}}]
    route: [{{destination: {{host: edition.cnn.com, port: {{number: 443}}}}}}]
  - match: [{{uri: {{prefix: /b}}}}]
    route: [{{destination: {{host: edition.cnn.com, port: {{number: 8443}}}}}}]
  - match: [{{uri: {{prefix: /c}}}}]
    route: [{{destination: {{host: edition.cnn.com, port: {{number: 443}}, subset: plain}}}}]
  - match: [{{uri: {{prefix: /d}}}}]
    route: [{{destination: {{host: mtls.example.com, port: {{number: 443}}}}}}]
  - route: [{{destination: {{host: secret.example.com, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: cnn}}
spec:
  hosts: [edition.cnn.com, mtls.example.com, secret.example.com]
  ports: [{{number: 443, name: https}}, {{number: 8443, name: https-alt}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, labels: {{v: one}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: cnn}}
spec:
  host: edition.cnn.com
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: {0}, subjectAltNames: [edition.cnn.com]}}
    portLevelSettings:
    - port: {{number: 8443}}
      tls: {{mode: SIMPLE, sni: alt.cnn.com, insecureSkipVerify: true}}
  subsets:
  - name: plain
    labels: {{v: one}}
    trafficPolicy: {{tls: {{mode: DISABLE}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: mtls}}
spec:
  host: mtls.example.com
  trafficPolicy:
    tls: {{mode: MUTUAL, clientCertificate: {1}, privateKey: {2}, caCertificates: {0}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: secret}}
spec:
  host: secret.example.com
  trafficPolicy:
    tls: {{mode: MUTUAL, credentialName: client-credential}}
---
)",
                  pki.ca, pki.client, pki.client_key) +
      kubectl_secret("client-credential", "default", pki.client, pki.client_key, pki.ca);
  auto loaded = load_ok(yaml);
  const auto& a = upstream(loaded, "outbound|443||edition.cnn.com");
  REQUIRE(a.tls.has_value());
  CHECK(a.tls->mode == UpstreamTls::Mode::simple);
  CHECK(a.tls->sni == "edition.cnn.com");  // Istio's default: the destination host
  CHECK(a.tls->ca_certificates == IstioPki::read(pki.ca));
  CHECK(a.tls->subject_alt_names == std::vector<std::string>{"edition.cnn.com"});
  CHECK_FALSE(a.tls->insecure_skip_verify);
  const auto& b = upstream(loaded, "outbound|8443||edition.cnn.com");
  REQUIRE(b.tls.has_value());
  CHECK(b.tls->sni == "alt.cnn.com");
  CHECK(b.tls->insecure_skip_verify);
  CHECK(b.tls->ca_certificates.empty());  // port-level settings do not inherit
  const auto& c = upstream(loaded, "outbound|443|plain|edition.cnn.com");
  CHECK_FALSE(c.tls.has_value());
  const auto& d = upstream(loaded, "outbound|443||mtls.example.com");
  REQUIRE(d.tls.has_value());
  CHECK(d.tls->mode == UpstreamTls::Mode::mutual);
  CHECK(d.tls->client_certificate == IstioPki::read(pki.client));
  CHECK(d.tls->private_key == IstioPki::read(pki.client_key));
  const auto& e = upstream(loaded, "outbound|443||secret.example.com");
  REQUIRE(e.tls.has_value());
  CHECK(e.tls->client_certificate == IstioPki::read(pki.client));
  CHECK(e.tls->ca_certificates == IstioPki::read(pki.ca));
  std::string text = istio::summary(loaded);
  CHECK(text.find("tls origination SIMPLE sni \"edition.cnn.com\" (CA from configuration)") !=
        std::string::npos);
  CHECK(text.find("BEGIN") == std::string::npos);
  CHECK(compile(loaded.config).ok());
}

TEST_CASE("DestinationRule tls errors name the field") {
  SUBCASE("MUTUAL without a client certificate") {
    std::string err = load_error(R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: httpbin
  trafficPolicy: {portLevelSettings: [{port: {number: 443}, tls: {mode: MUTUAL}}]}
)");
    CHECK(err.find("trafficPolicy.portLevelSettings[0].tls.clientCertificate") !=
          std::string::npos);
  }
  SUBCASE("missing caCertificates file") {
    std::string err = load_error(R"(
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: httpbin
  trafficPolicy: {tls: {mode: SIMPLE, caCertificates: /no/such/ca.pem}}
)");
    CHECK(err.find("trafficPolicy.tls.caCertificates") != std::string::npos);
    CHECK(err.find("/no/such/ca.pem") != std::string::npos);
  }
}

}  // namespace tls_loader_test
