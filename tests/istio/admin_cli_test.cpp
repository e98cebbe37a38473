// sluice-ingress --admin and --status-port: the admin server and Istio's
// status ports started beside the gateway, their bound ports printed with
// --ephemeral-ports.

#include <doctest/doctest.h>
#include <signal.h>

#include <string>

#include "child.hpp"
#include "support/raw_client.hpp"

namespace admin_cli_test {

using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

const std::string bin = SLUICE_INGRESS_BIN;

// The port of a printed `<prefix>ADDR:PORT` line.
uint16_t port_of(Child& child, const std::string& prefix) {
  auto line = child.wait_line(prefix);
  REQUIRE_MESSAGE(line.has_value(), child.err());
  return static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
}

HttpResponse get(uint16_t port, std::string_view target) {
  RawClient client(port, 5s);
  REQUIRE(client.send(make_request("GET", target, "localhost")));
  auto r = client.read_response();
  REQUIRE_MESSAGE(r.has_value(), client.error());
  return *r;
}

}  // namespace

TEST_CASE(
    "sluice-ingress --admin with --ephemeral-ports prints the bound admin port and serves it") {
  Child child({bin, "--demo", "--ephemeral-ports", "--workers", "1", "--status-port"});
  uint16_t admin = port_of(child, "admin 127.0.0.1:");
  uint16_t ready_port = port_of(child, "status 15021 127.0.0.1:");
  uint16_t prom_port = port_of(child, "status 15090 127.0.0.1:");
  REQUIRE(child.wait_line("ready"));
  CHECK(get(admin, "/ready").status == 200);
  CHECK(get(admin, "/graph").status == 200);
  auto dump = get(admin, "/config_dump");
  CHECK(dump.status == 200);
  CHECK(dump.body.find("\"jason\"") != std::string::npos);

  CHECK(get(ready_port, "/healthz/ready").status == 200);
  CHECK(get(ready_port, "/stats/prometheus").status == 404);
  auto prom = get(prom_port, "/stats/prometheus");
  CHECK(prom.status == 200);
  CHECK(prom.header("content-type").value_or("").starts_with("text/plain; version=0.0.4"));
  CHECK(get(prom_port, "/healthz/ready").status == 404);
  child.signal(SIGTERM);
  CHECK(child.wait_line("stopped"));
}

TEST_CASE("sluice-ingress --admin off starts no admin server") {
  Child child({bin, "--demo", "--ephemeral-ports", "--workers", "1", "--admin", "off"});
  REQUIRE(child.wait_line("ready"));
  CHECK_FALSE(child.wait_line("admin ", 0, 0ms).has_value());
  child.signal(SIGTERM);
  CHECK(child.wait_line("stopped"));
}

TEST_CASE("sluice-ingress --admin rejects a malformed address") {
  Child child({bin, "--demo", "--ephemeral-ports", "--workers", "1", "--admin", "127.0.0.1:99999"});
  CHECK(child.wait_exit() == 1);
  CHECK(child.err().find("--admin wants ADDR:PORT") != std::string::npos);
}

}  // namespace admin_cli_test
