// Every error path of the downstream session, one at a time: the same
// keep-alive exchange runs over a stream that fails its n-th read or write,
// for n = 1, 2, ... up to the number of operations a clean run takes. Each
// run must end the session (nothing left attached to the worker), never send
// the upstream a request that is not the client's, and leave the gateway able
// to serve the next client. The sanitizer build runs it too.

#include <doctest/doctest.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <optional>
#include <thread>

#include "config/snapshot.hpp"
#include "proxy/fail_stream.hpp"
#include "runtime/worker.hpp"
#include "support/body_pattern.hpp"
#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/raw_client.hpp"
#include "upstream/cluster.hpp"

namespace fail_count_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

constexpr size_t kBodyBytes = 100 * 1024;  // several reads on the way in

struct Outcome {
  size_t operations = 0;
  std::optional<HttpResponse> first, second;
};

class FailCountFixture {
 public:
  FailCountFixture() {
    upstream_.set_handler([](const Received& r) {
      Reply reply;
      reply.body = r.method + " " + r.target;
      reply.generated_bytes = r.method == "GET" ? 200 * 1024 : 0;  // several writes out
      return reply;
    });
    GatewayConfig config = single_upstream_config(upstream_.port());
    auto compiled = compile_snapshot(config);
    REQUIRE(compiled.ok());
    snap_ = std::move(compiled).value();
    for (auto& up : snap_->upstreams) {
      up.state = shared_.clusters.get(up.config.name);
      up.state->update(up);
    }
    worker_.emplace(0, ctx_, shared_, 7);
    worker_->install(snap_);
  }

  FakeUpstream& upstream() { return upstream_; }
  Worker& worker() { return *worker_; }

  // A POST with a body, then a GET, on one connection whose gateway side
  // fails operation `fail_at` (0: none).
  Outcome run(size_t fail_at) {
    asio::ip::tcp::acceptor acceptor(ctx_, {asio::ip::make_address("127.0.0.1"), 0});
    uint16_t port = acceptor.local_endpoint().port();
    Outcome out;
    std::atomic<bool> client_done{false};
    std::thread client([&] {
      RawClient c(port, 5s);
      std::string body = pattern_string(kBodyBytes);
      if (c.send(make_request("POST", "/upload", "example.com", {}, body))) {
        out.first = c.read_response();
        if (out.first && c.send(make_request("GET", "/download")))
          out.second = c.read_response({.store_body = false});
      }
      client_done = true;
    });
    asio::ip::tcp::socket socket(ctx_);
    acceptor.accept(socket);
    start_fail_count_session(*worker_, FailCountStream(std::move(socket), fail_at, &out.operations),
                             "main", port);
    ctx_.restart();  // the previous run may have left it out of work
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while ((!client_done || worker_->connection_count() > 0) &&
           std::chrono::steady_clock::now() < deadline)
      ctx_.run_for(5ms);
    client.join();
    CHECK_MESSAGE(worker_->connection_count() == 0, "session still attached after fail_at ",
                  fail_at);
    return out;
  }

 private:
  FakeUpstream upstream_{"backend"};
  asio::io_context ctx_;
  GatewayShared shared_;
  std::shared_ptr<Snapshot> snap_;
  std::optional<Worker> worker_;
};

}  // namespace

TEST_CASE(
    "fail-count: every failing read or write ends the session cleanly, then serving goes on") {
  FailCountFixture f;
  Outcome clean = f.run(0);
  REQUIRE(clean.first);
  REQUIRE(clean.second);
  CHECK(clean.first->status == 200);
  CHECK(clean.first->body == "POST /upload");
  CHECK(clean.second->status == 200);
  CHECK(clean.second->body_bytes == 200 * 1024);
  // Reads of the head and body, the two responses' writes, the read that
  // sees the client close: enough operations that each phase is hit.
  REQUIRE(clean.operations >= 5);

  for (size_t n = 1; n <= clean.operations; ++n) {
    CAPTURE(n);
    Outcome o = f.run(n);
    // Whatever failed, an answer that did arrive is the right one.
    if (o.first) CHECK((o.first->status == 200 || o.first->status >= 400));
    if (o.first && o.first->status == 200) CHECK(o.first->body == "POST /upload");
    if (o.second) CHECK(o.second->status == 200);
  }

  // The upstream only ever saw whole requests from the client.
  for (const auto& r : f.upstream().requests()) {
    if (r.method == "POST") {
      CHECK(r.target == "/upload");
      CHECK(r.body_bytes == kBodyBytes);
      CHECK(r.body_checksum == pattern_checksum(kBodyBytes));
    } else {
      CHECK(r.method == "GET");
      CHECK(r.target == "/download");
    }
  }

  Outcome after = f.run(0);
  REQUIRE(after.first);
  CHECK(after.first->status == 200);
  REQUIRE(after.second);
  CHECK(after.second->status == 200);
}

}  // namespace fail_count_test
