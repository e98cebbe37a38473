// Mesh mTLS (Istio ISTIO_MUTUAL, issue 16 §3): the gateway presents the
// workload certificate, trusts only the mesh root and checks the upstream's
// SPIFFE identity; the Istio loader and sluice-ingress --mesh-certs.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "istio/child.hpp"
#include "istio/istio.hpp"
#include "istio/istio_test_util.hpp"
#include "support/gateway_fixture.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "tls/tls_support.hpp"

namespace test_mesh_certs {

using namespace sluice;
using namespace sluice::test;
namespace fs = std::filesystem;

namespace {

constexpr const char* kProductpageId = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";

// Certificates of a small mesh whose root is pki().ca1.
struct MeshPki {
  KeyPair gateway;          // the ingress gateway's workload certificate
  KeyPair gateway_rotated;  // the same identity, reissued
  KeyPair productpage;      // server, ca1, spiffe .../sa/bookinfo-productpage
  KeyPair foreign;          // server, ca2 (not the mesh root), same identity
  KeyPair other_domain;     // server, ca1, spiffe://other.example/...
};

std::string spiffe_ext(const std::string& uri, const char* usage) {
  return fmt::format("subjectAltName=URI:{}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={}\n", uri,
                     usage);
}

const MeshPki& mesh_pki() {
  static MeshPki m = [] {
    MeshPki p;
    std::string gw =
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";
    p.gateway = make_leaf_cert("mesh-gw", "/CN=istio-ingressgateway",
                               spiffe_ext(gw, "clientAuth,serverAuth"), "ca1", 901);
    p.gateway_rotated = make_leaf_cert("mesh-gw2", "/CN=istio-ingressgateway-rotated",
                                       spiffe_ext(gw, "clientAuth,serverAuth"), "ca1", 902);
    p.productpage = make_leaf_cert("mesh-pp", "/CN=productpage",
                                   spiffe_ext(kProductpageId, "serverAuth,clientAuth"), "ca1", 903);
    p.foreign = make_leaf_cert("mesh-foreign", "/CN=productpage",
                               spiffe_ext(kProductpageId, "serverAuth,clientAuth"), "ca2", 904);
    p.other_domain = make_leaf_cert(
        "mesh-other", "/CN=productpage",
        spiffe_ext("spiffe://other.example/ns/default/sa/bookinfo-productpage", "serverAuth"),
        "ca1", 905);
    return p;
  }();
  return m;
}

UpstreamTls mesh_tls(std::vector<std::string> sans) {
  const MeshPki& m = mesh_pki();
  UpstreamTls t;
  t.mode = UpstreamTls::Mode::mutual;
  t.sni = "outbound_.9080_._.productpage.default.svc.cluster.local";
  t.ca_certificates = pki().ca1.text;
  t.client_certificate = m.gateway.cert.text;
  t.private_key = m.gateway.key.text;
  t.spiffe_trust_domain = "cluster.local";
  t.subject_alt_names = std::move(sans);
  return t;
}

struct Outcome {
  int status = 0;
  std::string body;
  std::string flags;
};

// One request through a gateway whose only upstream is `origin` over mesh mTLS.
Outcome through(const TlsOrigin& origin, UpstreamTls tls) {
  GatewayConfig cfg = single_upstream_config(origin.port());
  cfg.upstreams.at(0).tls = std::move(tls);
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(std::move(cfg), 1, hooks);
  RawClient client(gw.port(), std::chrono::seconds(5));
  REQUIRE(client.send(make_request("GET", "/")));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  REQUIRE(hooks->wait_for_logs(1));
  return {r->status, r->body, hooks->logs().at(0).flags};
}

}  // namespace

TEST_CASE("mesh mTLS: the expected SPIFFE identity connects, the workload certificate is shown") {
  TlsOrigin origin("productpage", mesh_pki().productpage, &pki().ca1);
  auto out = through(origin, mesh_tls({kProductpageId}));
  CHECK(out.status == 200);
  CHECK(out.body.find("client=CN=istio-ingressgateway") != std::string::npos);
  CHECK(out.body.find("rotated") == std::string::npos);
}

TEST_CASE("mesh mTLS: another SPIFFE identity is refused, 503 UF") {
  TlsOrigin origin("productpage", mesh_pki().productpage, &pki().ca1);
  auto out = through(origin, mesh_tls({"spiffe://cluster.local/ns/default/sa/bookinfo-reviews"}));
  CHECK(out.status == 503);
  CHECK(out.flags.find("UF") != std::string::npos);
  CHECK(out.body.find("productpage") == std::string::npos);
}

TEST_CASE("mesh mTLS: without known identities any in the trust domain, none outside it") {
  TlsOrigin inside("productpage", mesh_pki().productpage, &pki().ca1);
  CHECK(through(inside, mesh_tls({})).status == 200);
  TlsOrigin outside("productpage", mesh_pki().other_domain, &pki().ca1);
  auto out = through(outside, mesh_tls({}));
  CHECK(out.status == 503);
  CHECK(out.flags.find("UF") != std::string::npos);
}

TEST_CASE("mesh mTLS: a server certificate from another root is refused") {
  TlsOrigin origin("productpage", mesh_pki().foreign, &pki().ca1);
  auto out = through(origin, mesh_tls({kProductpageId}));
  CHECK(out.status == 503);
  CHECK(out.flags.find("UF") != std::string::npos);
}

TEST_CASE("spiffe_trust_domain_of reads the leaf's SPIFFE URI") {
  auto td = spiffe_trust_domain_of(mesh_pki().other_domain.cert.text);
  REQUIRE(td.ok());
  CHECK(*td == "other.example");
  auto none = spiffe_trust_domain_of(pki().httpbin.cert.text);
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK(!spiffe_trust_domain_of("not a certificate").ok());
}

namespace {

std::string mesh_dir(const std::string& name, const KeyPair& workload) {
  std::string dir = pki().dir + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(workload.cert.path, dir + "/cert-chain.pem");
  fs::copy_file(workload.key.path, dir + "/key.pem");
  fs::copy_file(pki().ca1.path, dir + "/root-cert.pem");
  return dir;
}

const char* kMtlsBookinfo[] = {"bookinfo-gateway.yaml", "bookinfo-kubernetes.yaml",
                               "destination-rule-all-mtls.yaml"};

std::string mtls_bookinfo(const std::map<std::string, std::string>& ports = dummy_ports()) {
  return fixtures({kMtlsBookinfo[0], kMtlsBookinfo[1], kMtlsBookinfo[2]}, ports);
}

const UpstreamConfig* upstream_named(const istio::LoadedConfig& l, const std::string& name) {
  for (const auto& u : l.config.upstreams)
    if (u.name == name) return &u;
  return nullptr;
}

}  // namespace

TEST_CASE("destination-rule-all-mtls.yaml without mesh certificates names --mesh-certs") {
  auto r = istio::load_string(mtls_bookinfo());
  REQUIRE(!r.ok());
  std::string err = r.error().to_string();
  CHECK(err.find("DestinationRule productpage: trafficPolicy.tls.mode") != std::string::npos);
  CHECK(err.find("--mesh-certs DIR") != std::string::npos);
}

TEST_CASE("destination-rule-all-mtls.yaml with mesh certificates: SNI, root, Pods' identities") {
  auto certs = istio::load_mesh_certs(mesh_dir("mesh-load", mesh_pki().gateway));
  REQUIRE_MESSAGE(certs.ok(), (certs.ok() ? std::string() : certs.error().to_string()));
  CHECK(certs->trust_domain == "cluster.local");
  CHECK(certs->files.size() == 3);
  istio::TranslateOptions options;
  options.mesh_certs = *certs;
  auto r = istio::load_string(mtls_bookinfo(), options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error().to_string()));
  const UpstreamConfig* pp =
      upstream_named(*r, "outbound|9080||productpage.default.svc.cluster.local");
  REQUIRE(pp);
  REQUIRE(pp->tls);
  CHECK(pp->tls->mode == UpstreamTls::Mode::mutual);
  CHECK(pp->tls->sni == "outbound_.9080_._.productpage.default.svc.cluster.local");
  CHECK(pp->tls->spiffe_trust_domain == "cluster.local");
  CHECK(pp->tls->ca_certificates == pki().ca1.text);
  CHECK(pp->tls->client_certificate == mesh_pki().gateway.cert.text);
  CHECK(pp->tls->subject_alt_names == std::vector<std::string>{kProductpageId});
}

TEST_CASE("load_mesh_certs names the missing file") {
  std::string dir = mesh_dir("mesh-missing", mesh_pki().gateway);
  fs::remove(dir + "/key.pem");
  auto certs = istio::load_mesh_certs(dir);
  REQUIRE(!certs.ok());
  CHECK(certs.error().to_string().find("key.pem") != std::string::npos);
}

namespace {

void replace_file(const std::string& from, const std::string& to) {
  fs::copy_file(from, to + ".tmp", fs::copy_options::overwrite_existing);
  fs::rename(to + ".tmp", to);
}

std::string get_productpage(uint16_t port) {
  RawClient c(port, std::chrono::seconds(5));
  if (!c.connected()) return "<no connection>";
  c.send(make_request("GET", "/productpage", "bookinfo.example.com"));
  auto r = c.read_response();
  if (!r) return "<no response: " + c.error() + ">";
  if (r->status != 200) return "<status " + std::to_string(r->status) + ">";
  return r->body;
}

uint16_t listening(Child& child, size_t from = 0) {
  auto line = child.wait_line("listening 8080 ", from);
  REQUIRE_MESSAGE(line, "stderr: ", child.err());
  return static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
}

}  // namespace

TEST_CASE("sluice-ingress --mesh-certs serves Bookinfo over mesh mTLS and reloads the identity") {
  TlsOrigin productpage("productpage", mesh_pki().productpage, &pki().ca1);
  std::string certs = mesh_dir("mesh-serve", mesh_pki().gateway);
  std::string config = pki().dir + "/mesh-serve-config";
  fs::remove_all(config);
  fs::create_directories(config);
  std::ofstream(config + "/bookinfo.yaml")
      << mtls_bookinfo({{"PRODUCTPAGE_V1", std::to_string(productpage.port())},
                        {"REVIEWS_V1", "1"},
                        {"REVIEWS_V2", "2"},
                        {"REVIEWS_V3", "3"}});

  auto without = run_process(SLUICE_INGRESS_BIN, {"--check", "--config", config});
  CHECK(without.exit_code != 0);
  CHECK(without.err.find("ISTIO_MUTUAL needs the mesh's certificates: start with --mesh-certs") !=
        std::string::npos);

  auto with =
      run_process(SLUICE_INGRESS_BIN, {"--check", "--config", config, "--mesh-certs", certs});
  CHECK_MESSAGE(with.exit_code == 0, with.err);
  CHECK(with.out.find(fmt::format("ISTIO_MUTUAL: mesh certificates, SPIFFE identities {}",
                                  kProductpageId)) != std::string::npos);

  Child child({SLUICE_INGRESS_BIN, "--ephemeral-ports", "--bind", "127.0.0.1", "--workers", "1",
               "--dns-refresh", "0", "--admin", "off", "--config", config, "--mesh-certs", certs});
  uint16_t port = listening(child);
  REQUIRE(child.wait_line("ready"));
  std::string before = get_productpage(port);
  CHECK(before.starts_with("productpage client=CN=istio-ingressgateway"));
  CHECK(before.find("rotated") == std::string::npos);

  size_t from = child.line_count();
  replace_file(mesh_pki().gateway_rotated.key.path, certs + "/key.pem");
  replace_file(mesh_pki().gateway_rotated.cert.path, certs + "/cert-chain.pem");
  REQUIRE_MESSAGE(child.wait_line("reloaded", from), child.err());
  port = listening(child, from);
  CHECK(get_productpage(port) == "productpage client=CN=istio-ingressgateway-rotated");

  child.signal(SIGTERM);
  CHECK(child.wait_exit() == 0);
}

}  // namespace test_mesh_certs
