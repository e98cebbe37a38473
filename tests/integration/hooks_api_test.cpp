// The extension API through the C++ API with real sockets: upstream_peer
// (keep, replace the endpoint, switch upstream, refuse), fail_to_proxy,
// the body hooks in both directions, per-worker hooks and the Logger.

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"
#include "support/wait.hpp"

namespace hooks_api_test {

using namespace sluice::test;
using namespace sluice;
using namespace std::chrono_literals;

namespace {

std::string key_of(const FakeUpstream& u) {
  return "127.0.0.1:" + std::to_string(u.port());
}

// One request on a fresh connection.
std::optional<HttpResponse> fetch(uint16_t port, const std::string& request) {
  RawClient client(port);
  if (!client.send(request)) return std::nullopt;
  return client.read_response();
}

// ---- upstream_peer ----

// Pins requests by header: x-pin-key names an endpoint by "ip:port",
// x-pin-index by index, x-upstream switches upstream, x-refuse refuses.
class Pinning : public RecordingHooks {
 public:
  std::optional<Response> upstream_peer(RequestContext& ctx, PeerChoice& peer) override {
    const Headers& h = ctx.request.headers;
    if (h.contains("x-refuse")) {
      Response r;
      r.status = 403;
      r.body = "refused by upstream_peer";
      return r;
    }
    if (auto name = h.get("x-upstream")) switched = peer.use_upstream(*name);
    if (auto key = h.get("x-pin-key")) pinned = peer.use_endpoint(*key);
    if (auto index = h.get("x-pin-index"))
      pinned = peer.use_endpoint(std::stoul(std::string(*index)));
    return std::nullopt;
  }
  std::atomic<bool> switched{false};
  std::atomic<bool> pinned{false};
};

GatewayConfig two_endpoints(const FakeUpstream& a, const FakeUpstream& b) {
  UpstreamConfig up = loopback_upstream("backend", {a.port(), b.port()});
  up.load_balancer = LoadBalancer::round_robin;
  return make_config({forward_all("backend")}, {up});
}

TEST_CASE("upstream_peer replaces the balancer's endpoint by key and by index") {
  FakeUpstream a("a");
  FakeUpstream b("b");
  auto hooks = std::make_shared<Pinning>();
  TestGateway gw(two_endpoints(a, b), 1, hooks);
  for (int i = 0; i < 4; ++i) {
    auto r = fetch(gw.port(), make_request("GET", "/", "example.com", {{"x-pin-key", key_of(b)}}));
    REQUIRE(r);
    CHECK(r->body == "b");
  }
  CHECK(hooks->pinned);
  for (int i = 0; i < 4; ++i) {
    auto r = fetch(gw.port(), make_request("GET", "/", "example.com", {{"x-pin-index", "0"}}));
    REQUIRE(r);
    CHECK(r->body == "a");
  }
  // Round robin alone would have split the eight requests four and four.
  CHECK(a.request_count() == 4);
  CHECK(b.request_count() == 4);
  REQUIRE(hooks->wait_for_logs(8));
  CHECK(hooks->logs()[0].endpoint == key_of(b));  // the log names the endpoint used
  CHECK(hooks->logs()[7].endpoint == key_of(a));
}

TEST_CASE("upstream_peer switches to another upstream, through its limits and pool") {
  FakeUpstream a("a");
  FakeUpstream other("other");
  auto hooks = std::make_shared<Pinning>();
  TestGateway gw(
      make_config({forward_all("backend")}, {loopback_upstream("backend", {a.port()}),
                                             loopback_upstream("other", {other.port()})}),
      1, hooks);
  RawClient client(gw.port());
  for (int i = 0; i < 3; ++i) {
    REQUIRE(client.send(make_request("GET", "/", "example.com", {{"x-upstream", "other"}})));
    auto r = client.read_response();
    REQUIRE_MESSAGE(r, client.error());
    CHECK(r->body == "other");
  }
  CHECK(hooks->switched);
  CHECK(a.request_count() == 0);
  CHECK(other.request_count() == 3);
  // One pooled connection, counted by the upstream it belongs to.
  CHECK(other.connections_accepted() == 1);
  CHECK(gw.gateway().upstream("other").connections == 1);
  CHECK(gw.gateway().upstream("backend").connections == 0);
  REQUIRE(hooks->wait_for_logs(3));
  CHECK(hooks->logs()[0].upstream == "other");
  CHECK(hooks->logs()[0].endpoint == key_of(other));
}

TEST_CASE("upstream_peer refuses with its own response and the connection stays usable") {
  FakeUpstream a("a");
  auto hooks = std::make_shared<Pinning>();
  TestGateway gw(single_upstream_config(a.port()), 1, hooks);
  RawClient client(gw.port());
  REQUIRE(client.send(make_request("GET", "/", "example.com", {{"x-refuse", "1"}})));
  auto refused = client.read_response();
  REQUIRE_MESSAGE(refused, client.error());
  CHECK(refused->status == 403);
  CHECK(refused->body == "refused by upstream_peer");
  REQUIRE(client.send(make_request("GET", "/")));
  auto next = client.read_response();
  REQUIRE_MESSAGE(next, client.error());
  CHECK(next->body == "a");
  CHECK(a.request_count() == 1);
}

// Sends the first attempt to `bad` and every retry to `good`.
class RetryElsewhere : public RecordingHooks {
 public:
  RetryElsewhere(std::string bad, std::string good)
      : bad_(std::move(bad)), good_(std::move(good)) {}
  std::optional<Response> upstream_peer(RequestContext& ctx, PeerChoice& peer) override {
    {
      std::lock_guard lock(mutex);
      attempts_seen.push_back(ctx.attempts);
    }
    peer.use_endpoint(ctx.attempts == 0 ? bad_ : good_);
    return std::nullopt;
  }
  std::mutex mutex;
  std::vector<uint32_t> attempts_seen;

 private:
  std::string bad_, good_;
};

TEST_CASE("upstream_peer is asked again for a retry") {
  LoopbackPort refusing;  // bound, not listening: connects are refused
  FakeUpstream good("good");
  auto hooks = std::make_shared<RetryElsewhere>("127.0.0.1:" + std::to_string(refusing.port()),
                                                key_of(good));
  TestGateway gw(make_config({forward_all("backend")},
                             {loopback_upstream("backend", {refusing.port(), good.port()})}),
                 1, hooks);
  auto r = fetch(gw.port(), make_request("GET", "/"));
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "good");
  std::lock_guard lock(hooks->mutex);
  CHECK(hooks->attempts_seen == std::vector<uint32_t>{0, 1});  // a connect failure, then a retry
}

TEST_CASE("PeerChoice refuses names and keys that do not exist") {
  GatewayConfig config =
      make_config({forward_all("backend")},
                  {loopback_upstream("backend", {8001, 8002}), loopback_upstream("other", {9001})});
  auto snap = compile(config);
  REQUIRE(snap);
  PeerChoice peer(**snap, 0, 1);
  CHECK(peer.upstream() == "backend");
  CHECK(peer.endpoint_key() == "127.0.0.1:8002");
  CHECK(peer.endpoint_count() == 2);
  CHECK_FALSE(peer.use_endpoint("127.0.0.1:9001"));  // another upstream's
  CHECK_FALSE(peer.use_endpoint(size_t{2}));
  CHECK_FALSE(peer.use_upstream("nowhere"));
  CHECK(peer.endpoint() == 1);
  CHECK(peer.use_endpoint("127.0.0.1:8001"));
  CHECK(peer.endpoint() == 0);
  CHECK(peer.use_upstream("other"));
  CHECK(peer.upstream_index() == 1);
  CHECK(peer.endpoint() == -1);  // its balancer will pick
  CHECK(peer.use_endpoint(size_t{0}));
  CHECK(peer.endpoint_key() == "127.0.0.1:9001");
}

// ---- fail_to_proxy ----

class Apologetic : public RecordingHooks {
 public:
  struct Seen {
    ProxyError::Kind kind;
    ProxyError::Source source;
    uint16_t status;
    std::string flags;
    std::string details;
  };
  std::optional<Response> fail_to_proxy(RequestContext&, const ProxyError& e) override {
    {
      std::lock_guard lock(mutex);
      seen.push_back(
          {e.kind, e.source(), e.response.status, to_string(e.flags), std::string(e.details)});
    }
    if (e.kind != ProxyError::Kind::connect_failure) return std::nullopt;
    Response r;
    r.status = 502;
    r.headers.add("x-why", "connect");
    r.body = "sorry, try later";
    return r;
  }
  std::mutex mutex;
  std::vector<Seen> seen;
};

TEST_CASE("fail_to_proxy rewrites the gateway's 503 and keeps the log's flags") {
  LoopbackPort refusing;  // bound, not listening: connects are refused
  Route api = forward_all("backend", "api");
  api.matches.push_back(Matcher{}.path_prefix("/api"));
  auto hooks = std::make_shared<Apologetic>();
  TestGateway gw(make_config({api}, {loopback_upstream("backend", {refusing.port()})}), 1, hooks);
  auto failed = fetch(gw.port(), make_request("GET", "/api"));
  REQUIRE(failed);
  CHECK(failed->status == 502);
  CHECK(failed->header("x-why") == "connect");
  CHECK(failed->body == "sorry, try later");
  auto unrouted = fetch(gw.port(), make_request("GET", "/elsewhere"));
  REQUIRE(unrouted);
  CHECK(unrouted->status == 404);  // not replaced: the hook returned nothing
  REQUIRE(hooks->wait_for_logs(2));
  auto logs = hooks->logs();
  CHECK(logs[0].status == 502);
  CHECK(logs[0].flags == "URX,UF");  // Istio's default retries ran out first
  CHECK(logs[1].flags == "NR");
  std::lock_guard lock(hooks->mutex);
  REQUIRE(hooks->seen.size() == 2);
  CHECK(hooks->seen[0].kind == ProxyError::Kind::connect_failure);
  CHECK(hooks->seen[0].source == ProxyError::Source::upstream);
  CHECK(hooks->seen[0].status == 503);  // what the gateway was about to send
  CHECK(hooks->seen[0].flags == "URX,UF");
  CHECK(hooks->seen[0].details == "upstream_connect_failure");
  CHECK(hooks->seen[1].kind == ProxyError::Kind::no_route);
  CHECK(hooks->seen[1].source == ProxyError::Source::downstream);
  CHECK(hooks->seen[1].status == 404);
}

// ---- body hooks ----

void to_upper(std::string& s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
}

// Upper-cases both bodies and ends each response with '!' (a length change).
class UpperBodies : public RecordingHooks {
 public:
  void on_request_body(RequestContext&, BodyChunk& chunk) override {
    if (!chunk.data.empty()) ++request_chunks;
    if (chunk.end_of_stream) ++request_ends;
    to_upper(chunk.data);
  }
  void on_response_body(RequestContext&, BodyChunk& chunk) override {
    if (!chunk.data.empty()) ++response_chunks;
    to_upper(chunk.data);
    if (chunk.end_of_stream) {
      ++response_ends;
      chunk.data += '!';
    }
  }
  std::atomic<int> request_chunks{0}, request_ends{0}, response_chunks{0}, response_ends{0};
};

TEST_CASE("body hooks rewrite streamed bodies both ways, over chunked and sized upstreams") {
  // Larger than a 16 KiB I/O buffer, so both bodies stream in pieces.
  constexpr size_t kSize = 100'000;
  for (auto framing : {Reply::Framing::content_length, Reply::Framing::chunked}) {
    CAPTURE(static_cast<int>(framing));
    FakeUpstream upstream;
    upstream.set_handler([&](const Received&) {
      Reply reply;
      reply.body = std::string(kSize, 'r');
      reply.framing = framing;
      reply.chunk_size = 8 * 1024;
      return reply;
    });
    auto hooks = std::make_shared<UpperBodies>();
    TestGateway gw(single_upstream_config(upstream.port()), 1, hooks);
    RawClient client(gw.port());
    REQUIRE(client.send(make_request("POST", "/", "example.com", {}, std::string(kSize, 'q'))));
    auto response = client.read_response();
    REQUIRE_MESSAGE(response, client.error());
    CHECK(response->status == 200);
    CHECK(response->body == std::string(kSize, 'R') + "!");
    // The hook changed the length: the response cannot keep a Content-Length.
    CHECK(response->chunked);
    CHECK_FALSE(response->header("content-length"));
    REQUIRE(upstream.wait_for_requests(1));
    Received got = *upstream.last_request();
    CHECK(got.body == std::string(kSize, 'Q'));
    CHECK(got.chunked);  // a sized request body goes chunked while the hook runs
    CHECK(hooks->request_chunks > 1);
    CHECK(hooks->request_ends == 1);
    CHECK(hooks->response_chunks > 1);
    CHECK(hooks->response_ends == 1);
    REQUIRE(hooks->wait_for_logs(1));
    CHECK(hooks->logs()[0].bytes_received == kSize);
    CHECK(hooks->logs()[0].bytes_sent == kSize + 1);  // what the client got
    // The same connection carries the next exchange.
    REQUIRE(client.send(make_request("GET", "/")));
    auto next = client.read_response();
    REQUIRE_MESSAGE(next, client.error());
    CHECK(next->body == std::string(kSize, 'R') + "!");
    CHECK(hooks->request_ends == 1);  // a request without a body: no request-body call
    CHECK(hooks->response_ends == 2);
  }
}

TEST_CASE("Hooks without body hooks leave the framing as it was") {
  FakeUpstream upstream;
  upstream.set_handler([](const Received&) {
    Reply reply;
    reply.body = "sized";
    return reply;
  });
  auto hooks = std::make_shared<RecordingHooks>();
  TestGateway gw(single_upstream_config(upstream.port()), 1, hooks);
  for (int i = 0; i < 2; ++i) {
    auto response = fetch(gw.port(), make_request("POST", "/", "example.com", {}, "payload"));
    REQUIRE(response);
    CHECK(response->body == "sized");
    CHECK(response->header("content-length") == "5");
    CHECK_FALSE(response->chunked);
  }
  REQUIRE(upstream.wait_for_requests(2));
  CHECK(upstream.last_request()->body == "payload");
  CHECK_FALSE(upstream.last_request()->chunked);
  CHECK(upstream.last_request()->header("content-length") == "7");
}

// ---- per-worker hooks ----

// No locks on purpose: only its own worker's thread may call it (TSan
// would see anything else).
class WorkerHooks : public Hooks {
 public:
  explicit WorkerHooks(unsigned index) : index(index) {}
  std::optional<Response> on_request(RequestContext&) override {
    auto me = std::this_thread::get_id();
    if (requests++ == 0)
      thread = me;
    else if (me != thread)
      other_thread = true;
    return std::nullopt;
  }
  const unsigned index;
  std::thread::id thread{};
  bool other_thread = false;
  uint64_t requests = 0;
};

TEST_CASE("hooks_factory makes one Hooks per worker, each called on its worker only") {
  FakeUpstream upstream;
  std::vector<std::shared_ptr<WorkerHooks>> made;
  GatewayOptions options;
  options.workers = 3;
  options.seed = 42;
  options.hooks = std::make_shared<RecordingHooks>();  // unused with a factory
  options.hooks_factory = [&](unsigned worker) {
    made.push_back(std::make_shared<WorkerHooks>(worker));
    return made.back();
  };
  Gateway gateway(options);
  REQUIRE(made.size() == 3);  // at construction, once per worker
  for (unsigned i = 0; i < 3; ++i) CHECK(made[i]->index == i);
  REQUIRE(gateway.apply(single_upstream_config(upstream.port())).ok());
  gateway.start();
  constexpr int kRequests = 30;
  for (int i = 0; i < kRequests; ++i) {
    auto r = fetch(gateway.port("main"), make_request("GET", "/"));
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  gateway.stop();  // joins the workers: their writes are visible now
  CHECK(made.size() == 3);
  uint64_t total = 0;
  std::set<std::thread::id> threads;
  for (const auto& h : made) {
    total += h->requests;
    CHECK_FALSE(h->other_thread);
    if (h->requests > 0) threads.insert(h->thread);
  }
  CHECK(total == kRequests);
  size_t busy = std::count_if(made.begin(), made.end(), [](auto& h) { return h->requests > 0; });
  CHECK(threads.size() == busy);  // no two instances shared a thread
}

// ---- Logger, and nothing on stderr ----

// Points fd 2 at a temporary file for its lifetime.
class StderrCapture {
 public:
  StderrCapture() : file_(std::tmpfile()) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    ::dup2(::fileno(file_), 2);
  }
  ~StderrCapture() {
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    std::fclose(file_);
  }
  std::string text() {
    std::fflush(stderr);
    std::string out;
    char buf[512];
    ::lseek(::fileno(file_), 0, SEEK_SET);
    ssize_t n;
    while ((n = ::read(::fileno(file_), buf, sizeof(buf))) > 0) out.append(buf, size_t(n));
    return out;
  }

 private:
  std::FILE* file_;
  int saved_ = -1;
};

class RecordingLogger : public Logger {
 public:
  void log(LogLevel level, std::string_view message) override {
    std::lock_guard lock(mutex_);
    lines_.emplace_back(level, std::string(message));
  }
  std::vector<std::pair<LogLevel, std::string>> lines() {
    std::lock_guard lock(mutex_);
    return lines_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

// A passthrough-only TLS listener: a client that speaks plain HTTP to it
// fails the handshake (no ClientHello), which the listener reports.
GatewayConfig passthrough_config(uint16_t upstream_port) {
  GatewayConfig config = single_upstream_config(upstream_port);
  TlsPassthroughRoute route;
  route.sni_hosts = {"pt.example.com"};
  route.upstream = "backend";
  config.listeners[0].passthrough = {route};
  return config;
}

void fail_a_handshake(Gateway& gateway) {
  RawClient client(gateway.port("main"));
  REQUIRE(client.send(make_request("GET", "/")));
  CHECK(client.is_closed());
}

TEST_CASE("the Logger gets the TLS handshake failure and nothing reaches stderr") {
  FakeUpstream upstream;
  StderrCapture captured;
  {
    auto logger = std::make_shared<RecordingLogger>();
    GatewayOptions options;
    options.workers = 1;
    options.logger = logger;
    Gateway gateway(options);
    REQUIRE(gateway.apply(passthrough_config(upstream.port())).ok());
    gateway.start();
    fail_a_handshake(gateway);
    REQUIRE(wait_until([&] { return !logger->lines().empty(); }));
    auto lines = logger->lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].first == LogLevel::info);
    CHECK(lines[0].second.find("listener main: TLS handshake with 127.0.0.1:") == 0);
    CHECK(lines[0].second.find("failed: no valid TLS ClientHello") != std::string::npos);
    gateway.stop();
  }
  {
    // Without a Logger the message is dropped, not printed.
    Gateway gateway(GatewayOptions{.workers = 1});
    REQUIRE(gateway.apply(passthrough_config(upstream.port())).ok());
    gateway.start();
    fail_a_handshake(gateway);
    gateway.stop();
  }
  CHECK(upstream.request_count() == 0);
  CHECK(captured.text() == "");
}

TEST_CASE("StderrLogger writes level-tagged lines from its minimum level up") {
  StderrCapture captured;
  StderrLogger logger(LogLevel::warning);
  logger.log(LogLevel::info, "quiet");
  logger.log(LogLevel::warning, "passthrough for \"x\": connect failed");
  CHECK(captured.text() == "sluice: warning: passthrough for \"x\": connect failed\n");
}

}  // namespace

}  // namespace hooks_api_test
