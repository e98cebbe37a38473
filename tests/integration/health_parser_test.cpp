// Active health checks read the answer with the project's response parser
// (issue 10, item 15): a malformed or oversized answer is a failed probe,
// even when it starts with "HTTP/1.1 200".

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/io_context.hpp>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "config/snapshot.hpp"
#include "runtime/worker.hpp"
#include "support/gateway_fixture.hpp"
#include "support/ports.hpp"
#include "upstream/cluster.hpp"

namespace health_parser_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// Answers every connection with fixed bytes, whatever they are, then
// closes. Blocking, on its own thread; stopped by shutting the listener.
class CannedServer {
 public:
  explicit CannedServer(std::string answer) : answer_(std::move(answer)) {
    fd_ = bind_loopback(port_, 16);
    thread_ = std::thread([this] { serve(); });
  }
  ~CannedServer() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  size_t answered() const { return answered_.load(); }
  void set_answer(std::string a) {
    std::lock_guard lock(mutex_);
    answer_ = std::move(a);
  }

 private:
  void serve() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::string got;
      char buf[1024];
      while (got.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      std::string answer;
      {
        std::lock_guard lock(mutex_);
        answer = answer_;
      }
      ::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      ::shutdown(c, SHUT_WR);
      // Let the prober read everything before the socket goes away.
      while (::recv(c, buf, sizeof(buf), 0) > 0) {
      }
      ::close(c);
      ++answered_;
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::mutex mutex_;
  std::string answer_;
  std::atomic<size_t> answered_{0};
  std::thread thread_;
};

// One upstream with one endpoint at `port`, health-checked every `interval`
// (on `clock`, steady_clock when empty) on a worker the test drives.
struct Checked {
  explicit Checked(uint16_t port, std::chrono::milliseconds interval = 10ms,
                   std::function<TimePoint()> clock = {}) {
    auto cfg = loopback_upstream("backend", {port});
    cfg.health_check = HealthCheck{.path = "/healthz",
                                   .interval = interval,
                                   .timeout = 1000ms,
                                   .healthy_threshold = 1,
                                   .unhealthy_threshold = 2};
    GatewayConfig gc;
    gc.upstreams.push_back(cfg);
    auto compiled = compile_snapshot(gc);
    REQUIRE(compiled.ok());
    snap = std::move(compiled).value();
    shared.clock = std::move(clock);
    auto& up = snap->upstreams[0];
    up.state = shared.clusters.get("backend");
    up.state->update(up);
    worker.emplace(0, ctx, shared, 7);
    worker->install(snap);
  }
  ~Checked() {
    stop_health_checks(worker->upstream());
    ctx.run_for(20ms);
  }
  bool healthy() const { return snap->upstreams[0].state->view().endpoints.at(0).healthy; }
  bool run_until(const std::function<bool()>& pred) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!pred() && std::chrono::steady_clock::now() < deadline) ctx.run_for(5ms);
    return pred();
  }

  asio::io_context ctx;
  GatewayShared shared;
  std::shared_ptr<Snapshot> snap;
  std::optional<Worker> worker;
};

}  // namespace

TEST_CASE("health: answers the response parser refuses are failed probes") {
  std::string answer;
  SUBCASE("garbage") {
    answer = "garbage\r\n\r\n";
  }
  SUBCASE("200 with a header line without a colon") {
    answer = "HTTP/1.1 200 OK\r\nbad header\r\ncontent-length: 0\r\n\r\n";
  }
  SUBCASE("200 with a space before the colon") {
    answer = "HTTP/1.1 200 OK\r\nx-bad : 1\r\ncontent-length: 0\r\n\r\n";
  }
  SUBCASE("200 and the connection closed before the head ends") {
    answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n";
  }
  SUBCASE("200 then a head over the bound") {
    answer = "HTTP/1.1 200 OK\r\n";
    while (answer.size() < 64 * 1024)
      answer += "x-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    answer += "\r\n";
  }
  CAPTURE(answer.substr(0, 60));
  CannedServer server(answer);
  Checked checked(server.port());
  REQUIRE(checked.run_until([&] { return server.answered() >= 2; }));
  CHECK(checked.run_until([&] { return !checked.healthy(); }));

  // The same endpoint answering properly passes again.
  server.set_answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
  CHECK(checked.run_until([&] { return checked.healthy(); }));
}

TEST_CASE("health: a well-formed 200 passes (also after a 100 Continue) and a 503 fails") {
  CannedServer server("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
  Checked checked(server.port());
  REQUIRE(checked.run_until([&] { return !checked.healthy(); }));
  server.set_answer(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: "
      "chunked\r\n\r\n0\r\n\r\n");
  CHECK(checked.run_until([&] { return checked.healthy(); }));
  server.set_answer("HTTP/1.0 200\r\n\r\n");
  size_t seen = server.answered();
  REQUIRE(checked.run_until([&] { return server.answered() >= seen + 3; }));
  CHECK(checked.healthy());
}

// Catches: the pause between probes slept on steady_clock (an hour: the
// second probe would never come) instead of the gateway's clock.
TEST_CASE("health: the pause between probes follows the gateway's clock") {
  CannedServer server("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  TimePoint now(std::chrono::hours(1000));
  Checked checked(server.port(), std::chrono::hours(1), [&now] { return now; });
  REQUIRE(checked.run_until([&] { return server.answered() == 1; }));
  for (size_t probes = 2; probes <= 3; ++probes) {
    now += std::chrono::hours(1);
    checked.worker->tick();  // what Gateway::clock_advanced does
    CHECK(checked.run_until([&] { return server.answered() == probes; }));
  }
  CHECK(checked.healthy());
}

}  // namespace health_parser_test
