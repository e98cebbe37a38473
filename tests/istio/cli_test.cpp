// sluice-ingress driven the way programs outside the repository drive it:
// --check, --explain, serving with reloads by SIGHUP and file change, and
// draining on SIGTERM.

#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include <yaml-cpp/yaml.h>

#include "child.hpp"
#include "istio_test_util.hpp"
#include "support/fake_upstream.hpp"
#include "support/process.hpp"
#include "support/raw_client.hpp"
#include "support/temp_dir.hpp"

namespace cli_test {

using namespace sluice;
using namespace sluice::test;
namespace fs = std::filesystem;

namespace {

const std::string bin = SLUICE_INGRESS_BIN;

ProcessResult ingress(std::vector<std::string> args) {
  return run_process(bin, args);
}

std::string bookinfo_dir() {
  return std::string(SLUICE_SOURCE_DIR) + "/examples/ingress/bookinfo";
}

// Bookinfo with the test's upstreams as reviews v1/v2/v3 and productpage.
struct Bookinfo {
  FakeUpstream productpage{"productpage-v1"};
  FakeUpstream v1{"reviews-v1"};
  FakeUpstream v2{"reviews-v2"};
  FakeUpstream v3{"reviews-v3"};
  std::map<std::string, std::string> ports() const {
    return {{"PRODUCTPAGE_V1", std::to_string(productpage.port())},
            {"REVIEWS_V1", std::to_string(v1.port())},
            {"REVIEWS_V2", std::to_string(v2.port())},
            {"REVIEWS_V3", std::to_string(v3.port())}};
  }
  std::string base() const {
    return fixtures(
        {"bookinfo-gateway.yaml", "bookinfo-services.yaml", "destination-rule-all.yaml"}, ports());
  }
  std::string routes(const char* vs) const { return fixtures({vs}, ports()); }
};

// The port sluice-ingress reports for Gateway server port `server_port`.
uint16_t listening_port(Child& child, uint16_t server_port, size_t from = 0) {
  auto line = child.wait_line(fmt::format("listening {} ", server_port), from);
  REQUIRE_MESSAGE(line, "no listening line; stderr: ", child.err());
  return static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
}

std::string get_body(uint16_t port, const std::string& target, const HeaderList& headers = {}) {
  RawClient c(port);
  if (!c.connected()) return "<no connection>";
  c.send(make_request("GET", target, "bookinfo.example.com", headers));
  auto r = c.read_response();
  if (!r) return "<no response: " + c.error() + ">";
  if (r->status != 200) return "<status " + std::to_string(r->status) + ">";
  return r->body;
}

Child serve(const std::vector<std::string>& configs, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {bin, "--ephemeral-ports", "--bind", "127.0.0.1", "--workers",
                                   "2", "--dns-refresh",     "0"};
  for (const auto& c : configs) {
    args.push_back("--config");
    args.push_back(c);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  return Child(args);
}

}  // namespace

TEST_CASE("sluice-ingress --check summarizes the bundled Bookinfo config") {
  auto r = ingress({"--check", "--config", bookinfo_dir()});
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(r.out.find("listener http.8080 on 0.0.0.0:8080") != std::string::npos);
  CHECK(r.out.find("server Gateway bookinfo-gateway servers[0]") != std::string::npos);
  CHECK(r.out.find("host bookinfo.example.com") != std::string::npos);
  CHECK(r.out.find("VirtualService reviews http[0]") != std::string::npos);
  CHECK(r.out.find("header \"end-user\" exact \"jason\"") != std::string::npos);
  CHECK(r.out.find("-> outbound|9080||reviews subset v2") != std::string::npos);
  CHECK(r.out.find("configuration OK") != std::string::npos);
}

TEST_CASE("sluice-ingress --check rejects an invalid config naming kind, name and field") {
  TempDir dir;
  std::string yaml =
      fixtures({"bookinfo-gateway.yaml", "bookinfo-services.yaml", "destination-rule-all.yaml",
                "virtual-service-reviews-test-v2.yaml"});
  yaml.replace(yaml.find("subset: v1"), 10, "subset: v9");
  dir.write("bad.yaml", yaml);
  auto r = ingress({"--check", "--config", (dir.path / "bad.yaml").string()});
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(r.err.find("VirtualService reviews: http[1].route[0].destination.subset: subset "
                           "\"v9\" is not defined by any DestinationRule for host \"reviews\"") !=
                    std::string::npos,
                r.err);
  // Serving the same config refuses to start.
  auto s = ingress({"--config", (dir.path / "bad.yaml").string(), "--ephemeral-ports"});
  CHECK(s.exit_code != 0);
  CHECK(s.err.find("subset \"v9\"") != std::string::npos);
  CHECK(s.out.find("ready") == std::string::npos);
}

TEST_CASE("sluice-ingress --explain shows server, VirtualService, rule and destination") {
  auto jason = ingress({"--explain", "GET http://bookinfo.example.com:8080/reviews/1", "-H",
                        "end-user: jason", "--config", bookinfo_dir()});
  CHECK_MESSAGE(jason.exit_code == 0, jason.err);
  CHECK(jason.out.find("server:   Gateway bookinfo-gateway servers[0]") != std::string::npos);
  CHECK(jason.out.find("rule:     VirtualService reviews http[0] match[0]") != std::string::npos);
  CHECK(jason.out.find("destination: outbound|9080||reviews subset v2") != std::string::npos);
  CHECK(jason.out.find("skipped:  VirtualService bookinfo http[0]") != std::string::npos);

  auto other = ingress(
      {"--explain", "GET http://bookinfo.example.com:8080/reviews/1", "--config", bookinfo_dir()});
  CHECK_MESSAGE(other.exit_code == 0, other.err);
  CHECK(other.out.find("rule:     VirtualService reviews http[1]") != std::string::npos);
  CHECK(other.out.find("skipped:  VirtualService reviews http[0]: ") != std::string::npos);
  CHECK(other.out.find("end-user") != std::string::npos);
  CHECK(other.out.find("subset v1") != std::string::npos);

  auto none = ingress(
      {"--explain", "GET http://bookinfo.example.com:8080/nothing", "--config", bookinfo_dir()});
  CHECK(none.exit_code == 1);
  CHECK(none.out.find("404") != std::string::npos);
}

TEST_CASE("sluice-ingress serves Bookinfo request routing and reloads on SIGHUP") {
  Bookinfo b;
  TempDir dir;
  dir.write("bookinfo.yaml", b.base() + b.routes("virtual-service-reviews-test-v2.yaml"));
  Child child = serve({(dir.path / "bookinfo.yaml").string()}, {"--no-watch"});
  uint16_t port = listening_port(child, 8080);
  REQUIRE(child.wait_line("ready"));
  CHECK(get_body(port, "/reviews/1", {{"end-user", "jason"}}) == "reviews-v2");
  CHECK(get_body(port, "/reviews/1") == "reviews-v1");
  CHECK(get_body(port, "/productpage") == "productpage-v1");
  CHECK(get_body(port, "/other") == "<status 404>");

  // 50/50 between v1 and v3; SIGHUP applies it.
  size_t from = child.line_count();
  dir.write("bookinfo.yaml", b.base() + b.routes("virtual-service-reviews-50-v3.yaml"));
  child.signal(SIGHUP);
  REQUIRE_MESSAGE(child.wait_line("reloaded", from), child.err());
  uint16_t port2 = listening_port(child, 8080, from);
  std::map<std::string, int> seen;
  for (int i = 0; i < 40; ++i) ++seen[get_body(port2, "/reviews/1", {{"end-user", "jason"}})];
  CHECK(seen.size() == 2);
  CHECK(seen["reviews-v1"] > 0);
  CHECK(seen["reviews-v3"] > 0);

  // An invalid config is rejected; the old one keeps serving.
  from = child.line_count();
  dir.write("bookinfo.yaml", b.base() +
                                 "---\nkind: VirtualService\napiVersion: "
                                 "networking.istio.io/v1\nmetadata: {name: x}\nspec: {hosts: [y], "
                                 "gateways: [nope]}\n");
  child.signal(SIGHUP);
  REQUIRE(child.wait_line("reload rejected", from));
  CHECK(child.wait_err("VirtualService x: gateways[0]: Gateway \"default/nope\" does not exist"));
  CHECK(get_body(port2, "/productpage") == "productpage-v1");
  // The admin's metrics count both reloads: the YAML refused by the loader too.
  auto admin = child.wait_line("admin 127.0.0.1:");
  REQUIRE(admin);
  std::string stats = get_body(
      static_cast<uint16_t>(std::stoi(admin->substr(admin->rfind(':') + 1))), "/stats/prometheus");
  CHECK(stats.find("sluice_config_reloads_total{result=\"ok\"} 2\n") != std::string::npos);
  CHECK(stats.find("sluice_config_reloads_total{result=\"rejected\"} 1\n") != std::string::npos);

  child.signal(SIGTERM);
  CHECK(child.wait_exit() == 0);
}

TEST_CASE("sluice-ingress reloads when a file under a --config directory changes") {
  Bookinfo b;
  TempDir dir;
  dir.write("00-base.yaml", b.base());
  dir.write("10-reviews.yaml", b.routes("virtual-service-reviews-test-v2.yaml"));
  Child child = serve({dir.path.string()});
  uint16_t port = listening_port(child, 8080);
  REQUIRE(child.wait_line("ready"));
  CHECK(get_body(port, "/reviews/1") == "reviews-v1");

  size_t from = child.line_count();
  dir.write("10-reviews.yaml", b.routes("virtual-service-reviews-80-20.yaml"));
  REQUIRE_MESSAGE(child.wait_line("reloaded", from), child.err());
  uint16_t port2 = listening_port(child, 8080, from);
  std::map<std::string, int> seen;
  for (int i = 0; i < 60; ++i) ++seen[get_body(port2, "/reviews/1", {{"end-user", "jason"}})];
  // jason no longer has a rule of his own: 80/20 between v1 and v2.
  CHECK(seen["reviews-v1"] > seen["reviews-v2"]);
  CHECK(seen["reviews-v2"] > 0);
  CHECK(seen.size() == 2);

  child.signal(SIGTERM);
  CHECK(child.wait_exit() == 0);
}

// Kubernetes updates a mounted ConfigMap with its atomic writer: the files
// live in a timestamped directory, `..data` links to it and each visible
// name links through `..data`. An update writes a new directory, points
// `..data_tmp` at it and renames that over `..data`, then deletes the old
// directory. The only event in the watched directory that names anything
// is the rename to `..data`; the watch must reload on it, with no request
// failing meanwhile.
TEST_CASE("sluice-ingress reloads on a ConfigMap ..data swap, no request fails") {
  Bookinfo b;
  TempDir dir;
  auto publish = [&](const std::string& version, const std::string& text) {
    fs::path data = dir.path / ("..2026_12_02_00_00_0" + version);
    fs::create_directory(data);
    { std::ofstream(data / "bookinfo.yaml", std::ios::binary) << text; }
    fs::create_directory_symlink(data.filename(), dir.path / "..data_tmp");
    fs::rename(dir.path / "..data_tmp", dir.path / "..data");
  };
  publish("1", b.base() + b.routes("virtual-service-reviews-test-v2.yaml"));
  fs::create_symlink("..data/bookinfo.yaml", dir.path / "bookinfo.yaml");
  std::string config;
  SUBCASE("--config names the mounted directory") {
    config = dir.path.string();
  }
  SUBCASE("--config names the file, a link through ..data") {
    config = (dir.path / "bookinfo.yaml").string();
  }
  Child child = serve({config});
  uint16_t port = listening_port(child, 8080);
  REQUIRE(child.wait_line("ready"));
  CHECK(get_body(port, "/reviews/1", {{"end-user", "jason"}}) == "reviews-v2");

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::thread client([&] {
    while (!stop) {
      RawClient c(port);
      auto r = c.send(make_request("GET", "/reviews/1", "bookinfo.example.com")) ? c.read_response()
                                                                                 : std::nullopt;
      (r && r->status == 200 ? ok : failed)++;
    }
  });
  // Stopped and joined however the test ends (a failed REQUIRE throws).
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } joiner{stop, client};
  REQUIRE(wait_until([&] { return ok.load() > 20; }, std::chrono::seconds(10)));
  size_t from = child.line_count();
  publish("2", b.base() + b.routes("virtual-service-reviews-50-v3.yaml"));
  fs::remove_all(dir.path / "..2026_12_02_00_00_01");
  REQUIRE_MESSAGE(child.wait_line("reloaded", from), child.err());
  int at_reload = ok.load();
  REQUIRE(wait_until([&] { return ok.load() > at_reload + 20; }, std::chrono::seconds(10)));
  stop = true;
  client.join();
  CHECK(failed.load() == 0);
  // Half of everyone's requests now reach v3, which no rule named before.
  std::map<std::string, int> seen;
  for (int i = 0; i < 40; ++i) ++seen[get_body(port, "/reviews/1", {{"end-user", "jason"}})];
  CHECK(seen["reviews-v3"] > 0);
  CHECK(seen["reviews-v2"] == 0);
  child.signal(SIGTERM);
  CHECK(child.wait_exit() == 0);
}

TEST_CASE("sluice-ingress drains on SIGTERM: the request in flight completes, exit 0") {
  Bookinfo b;
  b.v1.set_handler([](const Received&) {
    Reply r;
    r.body = "slow-v1";
    r.hold = true;
    return r;
  });
  TempDir dir;
  dir.write("bookinfo.yaml", b.base() + b.routes("virtual-service-reviews-test-v2.yaml"));
  Child child = serve({(dir.path / "bookinfo.yaml").string()});
  uint16_t port = listening_port(child, 8080);
  REQUIRE(child.wait_line("ready"));

  RawClient client(port);
  REQUIRE(client.send(make_request("GET", "/reviews/1", "bookinfo.example.com")));
  REQUIRE(b.v1.wait_for_requests(1));
  child.signal(SIGTERM);
  // New connections are refused once the listener closes; the held one finishes.
  CHECK(wait_until([&] { return !RawClient(port, std::chrono::milliseconds(200)).connected(); }));
  b.v1.release();
  auto r = client.read_response();
  REQUIRE_MESSAGE(r, client.error());
  CHECK(r->status == 200);
  CHECK(r->body == "slow-v1");
  CHECK(child.wait_exit() == 0);
}

TEST_CASE("sluice-ingress: reloads under load from four clients fail no request") {
  Bookinfo b;
  TempDir dir;
  dir.write("bookinfo.yaml", b.base() + b.routes("virtual-service-reviews-test-v2.yaml"));
  Child child = serve({(dir.path / "bookinfo.yaml").string()}, {"--no-watch"});
  uint16_t port = listening_port(child, 8080);
  REQUIRE(child.wait_line("ready"));

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex mutex;
  std::string first_failure;
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&, t] {
      // Half the clients keep one connection alive, half open one per request.
      std::unique_ptr<RawClient> c;
      while (!stop) {
        if (!c || t % 2 == 1) c = std::make_unique<RawClient>(port);
        std::string why;
        if (!c->connected()) {
          why = "connect failed";
        } else if (!c->send(make_request("GET", "/reviews/1", "bookinfo.example.com"))) {
          why = "send failed";
        } else if (auto r = c->read_response(); !r) {
          why = "no response: " + c->error();
        } else if (r->status != 200) {
          why = "status " + std::to_string(r->status);
        } else if (r->header("connection") == std::optional<std::string>("close")) {
          c.reset();  // the gateway may close a kept-alive connection after a response
        }
        if (why.empty()) {
          ++ok;
        } else {
          ++failed;
          std::lock_guard lock(mutex);
          if (first_failure.empty()) first_failure = why;
          c.reset();
        }
      }
    });

  const char* variants[] = {"virtual-service-reviews-80-20.yaml",
                            "virtual-service-reviews-50-v3.yaml",
                            "virtual-service-reviews-test-v2.yaml"};
  for (int i = 0; i < 6; ++i) {
    REQUIRE(wait_until([&] { return ok.load() > (i + 1) * 50; }, std::chrono::seconds(10)));
    size_t from = child.line_count();
    dir.write("bookinfo.yaml", b.base() + b.routes(variants[i % 3]));
    child.signal(SIGHUP);
    REQUIRE_MESSAGE(child.wait_line("reloaded", from), child.err());
    REQUIRE(listening_port(child, 8080, from) == port);  // the listener survives a reload
  }
  REQUIRE(wait_until([&] { return ok.load() > 400; }, std::chrono::seconds(10)));
  stop = true;
  for (auto& t : clients) t.join();
  CHECK_MESSAGE(failed.load() == 0, first_failure);
  CHECK(ok.load() > 400);
  child.signal(SIGTERM);
  CHECK(child.wait_exit() == 0);
}

TEST_CASE("sluice-ingress --demo: end-user jason reaches reviews-v2") {
  Child child({bin, "--demo", "--ephemeral-ports", "--workers", "1"});
  auto line = child.wait_line("listening ");
  REQUIRE_MESSAGE(line, child.err());
  uint16_t port = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  REQUIRE(child.wait_line("ready"));
  CHECK(get_body(port, "/", {{"end-user", "jason"}}) == "reviews-v2\n");
  CHECK(get_body(port, "/") == "reviews-v1\n");
  child.signal(SIGINT);
  CHECK(child.wait_exit() == 0);
}

TEST_CASE("sluice-ingress keeps DNS ServiceEntries current through the library's DNS source") {
  FakeUpstream upstream{"by-dns"};
  TempDir dir;
  dir.write("dns.yaml", fmt::format(R"(
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  servers: [{{port: {{number: 8080, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext}}
spec:
  hosts: [ext.example.com]
  ports: [{{number: {}, name: http}}]
  resolution: DNS
  endpoints: [{{address: localhost}}, {{address: nothing.invalid}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: ext.example.com}}}}]
)",
                                    upstream.port()));
  Child child = serve({dir.path.string()}, {"--dns-refresh", "1", "--no-watch"});
  uint16_t port = listening_port(child, 8080);
  REQUIRE(child.wait_line("ready"));
  // The source's first round runs at start and reports the name that fails.
  CHECK_MESSAGE(child.wait_err("warning: DNS: DnsEndpointSource: nothing.invalid: did not resolve"),
                child.err());
  CHECK(get_body(port, "/") == "by-dns");

  // A reload replaces the source; the old one is stopped, serving goes on.
  size_t from = child.line_count();
  child.signal(SIGHUP);
  REQUIRE(child.wait_line("reloaded", from));
  uint16_t port2 = listening_port(child, 8080, from);
  CHECK(get_body(port2, "/") == "by-dns");
  child.signal(SIGTERM);
  CHECK(child.wait_exit() == 0);
}

TEST_CASE("sluice-ingress --check: Istio's bookinfo-gateway.yaml next to kubectl's Service YAML") {
  TempDir dir;
  dir.write("gateway.yaml", fixtures({"istio-bookinfo-gateway.yaml"}));
  auto alone = ingress({"--check", "--config", dir.path.string()});
  CHECK(alone.exit_code != 0);
  CHECK_MESSAGE(
      alone.err.find("VirtualService bookinfo: http[0].route[0].destination.host: host "
                     "\"productpage\" is not declared by any ServiceEntry") != std::string::npos,
      alone.err);
  dir.write("services.yaml", fixtures({"bookinfo-kubernetes.yaml"}));
  auto ok = ingress({"--check", "--config", dir.path.string()});
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);
  CHECK(ok.out.find("-> outbound|9080||productpage.default.svc.cluster.local") !=
        std::string::npos);
  CHECK(ok.out.find("127.0.0.1:19080 {app=productpage,version=v1}") != std::string::npos);
  CHECK(ok.err.find("warning") == std::string::npos);
  // A Service whose endpoints have no Pod behind them: a subset selects
  // nothing, and --check says which.
  dir.write("zz-ratings.yaml", R"(
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: ratings}
subsets: [{addresses: [{ip: 10.244.0.20}], ports: [{name: http, port: 9080}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec: {host: ratings, subsets: [{name: v1, labels: {version: v1}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings.example.com]
  gateways: [bookinfo-gateway]
  http: [{route: [{destination: {host: ratings.default, subset: v1}}]}]
)");
  auto warned = ingress({"--check", "--config", dir.path.string()});
  CHECK_MESSAGE(warned.exit_code == 0, warned.err);
  CHECK_MESSAGE(warned.err.find("warning: VirtualService ratings: http[0].route[0].destination."
                                "subset: subset \"v1\" of "
                                "outbound|9080||ratings.default.svc.cluster.local selects no "
                                "endpoints") != std::string::npos,
                warned.err);
}

// examples/kubernetes is copied by users: its ConfigMap must hold a
// configuration sluice-ingress accepts, and its Deployment's arguments must
// be ones sluice-ingress takes.
TEST_CASE("examples/kubernetes: the ConfigMap passes --check with the Deployment's arguments") {
  std::string root = std::string(SLUICE_SOURCE_DIR) + "/examples/kubernetes/";
  YAML::Node cm = YAML::LoadFile(root + "configmap.yaml");
  TempDir dir;
  for (const auto& file : cm["data"])
    dir.write(file.first.as<std::string>(), file.second.as<std::string>());
  YAML::Node deployment = YAML::LoadFile(root + "deployment.yaml");
  auto args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
                  .as<std::vector<std::string>>();
  REQUIRE(std::find(args.begin(), args.end(), "/etc/sluice") != args.end());
  for (auto& a : args)
    if (a == "/etc/sluice") a = dir.path.string();
  args.insert(args.begin(), "--check");
  auto r = ingress(args);
  CHECK_MESSAGE(r.exit_code == 0, r.out, r.err);
  CHECK(r.out.find("VirtualService sluice/web") != std::string::npos);
}

}  // namespace cli_test
