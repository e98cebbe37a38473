// Remote key sets for RequestAuthentication (issue 12, section 1): jwksUri
// and OpenID discovery fetched by the gateway from a JWKS server in this
// process, refreshed on the gateway's injected clock, the last good set kept
// when a refresh fails, bounded responses; and token time (exp, nbf) on the
// injected wall clock. Every wait is for an event (a fetch reported through
// GatewayOptions::on_jwks_fetch, a response), never for time to pass.

#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/jwt_signer.hpp"
#include "support/manual_clock.hpp"
#include "support/raw_client.hpp"

namespace jwks_fetch_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

const std::string kIssuer = "testing@secure.istio.io";
const std::string kFetchFailed = "Jwks remote fetch is failed";
// The wall clock's start: tokens are made relative to it.
constexpr int64_t kWallStart = 1'700'000'000;

// A JWKS server: answers GET <path> from a table the test changes.
class JwksServer {
 public:
  JwksServer() : server_("jwks") {
    server_.set_handler([this](const Received& r) {
      std::lock_guard lock(mutex_);
      auto it = replies_.find(r.target);
      if (it == replies_.end()) return Reply{.status = 404, .body = "no such document"};
      return it->second;
    });
  }
  void serve(const std::string& path, Reply reply) {
    std::lock_guard lock(mutex_);
    replies_[path] = std::move(reply);
  }
  void serve_json(const std::string& path, std::string body) {
    serve(path, Reply{.headers = {{"content-type", "application/json"}}, .body = std::move(body)});
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + path;
  }
  FakeUpstream& upstream() { return server_; }
  size_t requests() const { return server_.request_count(); }

 private:
  std::mutex mutex_;
  std::map<std::string, Reply> replies_;
  // Last, so it is destroyed first: its thread may still be answering a
  // fetch (a slow one) from the table above when the test ends.
  FakeUpstream server_;
};

// A gateway on a manual clock and a manual wall clock that reports every
// fetch, in front of one backend.
class Harness {
 public:
  explicit Harness(GatewayConfig config, JwksFetchOptions fetch = {}) {
    GatewayOptions options;
    options.workers = 1;
    options.seed = 7;
    options.clock = clock.fn();
    options.wall_clock = [this] { return std::chrono::system_clock::time_point(wall.load() * 1s); };
    options.jwks = std::move(fetch);
    options.on_jwks_fetch = [this](const JwksFetchStatus& s) {
      std::lock_guard lock(mutex_);
      fetches_.push_back(s);
      cv_.notify_all();
    };
    gateway = std::make_unique<Gateway>(std::move(options));
    clock.drive(*gateway);
    Status st = gateway->apply(std::move(config));
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : st.error().to_string()));
    gateway->start();
  }
  ~Harness() {
    gateway->stop();
    clock.forget(*gateway);
  }

  // The n-th fetch report (1-based), once it has come.
  std::optional<JwksFetchStatus> fetch(size_t n) {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, 10s, [&] { return fetches_.size() >= n; })) return std::nullopt;
    return fetches_[n - 1];
  }
  size_t fetches() {
    std::lock_guard lock(mutex_);
    return fetches_.size();
  }

  uint16_t port() const { return gateway->port("main"); }
  HttpResponse get(const std::string& target, const std::string& token = {}) {
    RawClient c(port());
    HeaderList headers;
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    REQUIRE(c.send(make_request("GET", target, "example.com", headers)));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r.has_value(), c.error());
    return *r;
  }

  ManualClock clock;
  std::atomic<int64_t> wall{kWallStart};
  std::unique_ptr<Gateway> gateway;

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<JwksFetchStatus> fetches_;
};

std::string claims(int64_t exp, std::string extra = "", const std::string& issuer = kIssuer) {
  return R"({"iss":")" + issuer + R"(","sub":"alice","exp":)" + std::to_string(exp) + extra + "}";
}

GatewayConfig remote_config(uint16_t backend, const std::string& jwks_uri,
                            std::chrono::milliseconds timeout = 5s) {
  GatewayConfig cfg = single_upstream_config(backend);
  JwtProvider p;
  p.issuer = kIssuer;
  p.jwks_uri = jwks_uri;
  p.timeout = timeout;
  p.source = "RequestAuthentication istio-system/remote";
  cfg.security.jwt_providers.push_back(p);
  return cfg;
}

}  // namespace

TEST_CASE(
    "jwks: before the first fetch tokens get 401 fetch-failed, then the fetched keys verify") {
  FakeUpstream backend("backend");
  JwksServer jwks;
  JwtSigner signer("k1");
  // The first answer waits until the test releases it.
  jwks.serve("/jwks.json", Reply{.body = signer.jwks(), .hold = true});
  Harness h(remote_config(backend.port(), jwks.url("/jwks.json")));
  REQUIRE(jwks.upstream().wait_for_requests(1));

  auto status = h.gateway->jwks_status();
  REQUIRE(status.size() == 1);
  CHECK(status[0].uri == jwks.url("/jwks.json"));
  CHECK(status[0].state == JwksFetchStatus::State::pending);
  CHECK_FALSE(h.gateway->wait_jwks_fetched(0ms));

  std::string token = signer.sign(claims(kWallStart + 3600));
  auto early = h.get("/early", token);
  CHECK(early.status == 401);
  CHECK(early.body == kFetchFailed);
  CHECK(early.header("www-authenticate").value_or("").find("invalid_token") != std::string::npos);
  // Without a token nothing waits for keys.
  CHECK(h.get("/anonymous").status == 200);

  jwks.upstream().release();
  REQUIRE(h.gateway->wait_jwks_fetched());
  auto first = h.fetch(1);
  REQUIRE(first);
  CHECK_MESSAGE(first->state == JwksFetchStatus::State::ok, first->error);
  CHECK(first->keys == 1);
  CHECK(first->error.empty());
  auto received = jwks.upstream().last_request();
  REQUIRE(received);
  CHECK(received->method == "GET");
  CHECK(received->header("host") == "127.0.0.1:" + std::to_string(jwks.upstream().port()));

  auto late = h.get("/late", token);
  CHECK(late.status == 200);
  REQUIRE(backend.last_request());
  CHECK(backend.last_request()->target == "/late");
  CHECK(h.gateway->jwks_status()[0].successes == 1);
}

TEST_CASE("jwks: keys rotated at the server are picked up when the clock passes the refresh") {
  FakeUpstream backend("backend");
  JwksServer jwks;
  JwtSigner old_key("old"), new_key("new");
  jwks.serve_json("/jwks.json", old_key.jwks());
  JwksFetchOptions fetch;
  fetch.refresh_interval = 10min;
  Harness h(remote_config(backend.port(), jwks.url("/jwks.json")), fetch);
  REQUIRE(h.fetch(1));
  std::string old_token = old_key.sign(claims(kWallStart + 3600));
  std::string new_token = new_key.sign(claims(kWallStart + 3600));
  CHECK(h.get("/old", old_token).status == 200);
  CHECK(h.get("/new", new_token).status == 401);

  jwks.serve_json("/jwks.json", new_key.jwks());
  // Not yet due: the cached set stays and nothing is fetched.
  h.clock.advance(9min);
  CHECK(h.get("/still-old", old_token).status == 200);
  CHECK(jwks.requests() == 1);

  h.clock.advance(1min);
  auto second = h.fetch(2);
  REQUIRE(second);
  CHECK(second->state == JwksFetchStatus::State::ok);
  CHECK(second->successes == 2);
  CHECK(jwks.requests() == 2);
  CHECK(h.get("/new", new_token).status == 200);
  auto stale = h.get("/old", old_token);
  CHECK(stale.status == 401);
  CHECK(stale.body == "Jwks doesn't have key to match kid or alg from Jwt");
}

TEST_CASE("jwks: a failing refresh keeps the last good set and retries with backoff") {
  FakeUpstream backend("backend");
  JwksServer jwks;
  JwtSigner signer("k1"), rotated("k2");
  jwks.serve_json("/jwks.json", signer.jwks());
  JwksFetchOptions fetch;
  fetch.refresh_interval = 10min;
  fetch.retry_initial = 2s;
  fetch.retry_max = 5s;
  Harness h(remote_config(backend.port(), jwks.url("/jwks.json")), fetch);
  REQUIRE(h.fetch(1));
  std::string token = signer.sign(claims(kWallStart + 3600));

  jwks.serve("/jwks.json", Reply{.status = 500, .body = "down"});
  h.clock.advance(10min);
  auto failed = h.fetch(2);
  REQUIRE(failed);
  CHECK(failed->state == JwksFetchStatus::State::failed);
  CHECK(failed->error.find("HTTP status 500") != std::string::npos);
  CHECK(failed->keys == 1);  // the last good set is still in use
  CHECK(h.get("/kept", token).status == 200);

  // Retries: after 2 s, then 4 s (doubled), then 5 s (the cap).
  h.clock.advance(1999ms);
  CHECK(jwks.requests() == 2);
  h.clock.advance(1ms);
  REQUIRE(h.fetch(3));
  h.clock.advance(4s);
  REQUIRE(h.fetch(4));
  CHECK(h.fetch(4)->failures == 3);
  // An answer that is not a key set fails the same way.
  jwks.serve_json("/jwks.json", R"({"keys":[{"kty":"oct","k":"c2VjcmV0"}]})");
  h.clock.advance(5s);
  auto invalid = h.fetch(5);
  REQUIRE(invalid);
  CHECK(invalid->error.find("invalid JWKS") != std::string::npos);
  CHECK(h.get("/still-kept", token).status == 200);

  jwks.serve_json("/jwks.json", rotated.jwks());
  h.clock.advance(5s);
  auto back = h.fetch(6);
  REQUIRE(back);
  CHECK(back->state == JwksFetchStatus::State::ok);
  CHECK(back->error.empty());
  CHECK(h.get("/rotated", rotated.sign(claims(kWallStart + 3600))).status == 200);
  CHECK(h.get("/gone", token).status == 401);
}

TEST_CASE("jwks: oversize, redirected and slow answers fail the fetch within their bounds") {
  FakeUpstream backend("backend");
  JwksServer jwks;
  JwtSigner signer("k1");
  std::string token = signer.sign(claims(kWallStart + 3600));

  SUBCASE("a body over the size limit") {
    jwks.serve_json("/jwks.json", std::string(300 * 1024, ' ') + signer.jwks());
    Harness h(remote_config(backend.port(), jwks.url("/jwks.json")));
    auto f = h.fetch(1);
    REQUIRE(f);
    CHECK(f->state == JwksFetchStatus::State::failed);
    CHECK(f->error.find("over the 262144 byte limit") != std::string::npos);
    CHECK(f->keys == 0);
    auto r = h.get("/big", token);
    CHECK(r.status == 401);
    CHECK(r.body == kFetchFailed);
  }
  SUBCASE("a chunked body over a smaller limit") {
    jwks.serve("/jwks.json",
               Reply{.body = signer.jwks(), .framing = Reply::Framing::chunked, .chunk_size = 16});
    JwksFetchOptions fetch;
    fetch.max_response_bytes = 64;
    Harness h(remote_config(backend.port(), jwks.url("/jwks.json")), fetch);
    auto f = h.fetch(1);
    REQUIRE(f);
    CHECK(f->error.find("response body is over the 64 byte limit") != std::string::npos);
  }
  SUBCASE("a redirect is not followed") {
    jwks.serve("/jwks.json", Reply{.status = 302, .headers = {{"location", "/other.json"}}});
    jwks.serve_json("/other.json", signer.jwks());
    Harness h(remote_config(backend.port(), jwks.url("/jwks.json")));
    auto f = h.fetch(1);
    REQUIRE(f);
    CHECK(f->error.find("HTTP status 302 (redirects are not followed)") != std::string::npos);
    CHECK(jwks.requests() == 1);
  }
  SUBCASE("a server that never answers times out on the gateway's clock") {
    jwks.serve("/jwks.json", Reply{.body = signer.jwks(), .hold = true});
    Harness h(remote_config(backend.port(), jwks.url("/jwks.json"), 2s));
    REQUIRE(jwks.upstream().wait_for_requests(1));
    h.clock.advance(1900ms);
    CHECK(h.fetches() == 0);
    h.clock.advance(100ms);
    auto f = h.fetch(1);
    REQUIRE(f);
    CHECK(f->state == JwksFetchStatus::State::failed);
    CHECK(f->error.find("timed out after 2000 ms") != std::string::npos);
    CHECK(h.get("/slow", token).body == kFetchFailed);
    jwks.upstream().release();
  }
}

TEST_CASE("jwks: OpenID discovery finds the key set from the issuer") {
  FakeUpstream backend("backend");
  JwksServer jwks;
  JwtSigner signer("k1");
  std::string issuer = jwks.url("/realms/test/");
  jwks.serve_json("/realms/test/.well-known/openid-configuration",
                  R"({"issuer":")" + issuer + R"(","jwks_uri":")" + jwks.url("/certs") + R"("})");
  jwks.serve_json("/certs", signer.jwks());
  GatewayConfig cfg = single_upstream_config(backend.port());
  JwtProvider p;
  p.issuer = issuer;  // no jwks, no jwks_uri
  cfg.security.jwt_providers.push_back(p);
  Harness h(cfg);
  auto f = h.fetch(1);
  REQUIRE(f);
  CHECK(f->state == JwksFetchStatus::State::ok);
  CHECK(f->uri == jwks.url("/realms/test/.well-known/openid-configuration"));
  CHECK(f->jwks_uri == jwks.url("/certs"));
  CHECK(h.get("/discovered", signer.sign(claims(kWallStart + 3600, "", issuer))).status == 200);

  // A discovery document without jwks_uri fails, naming what is missing.
  jwks.serve_json("/realms/test/.well-known/openid-configuration", R"({"issuer":"x"})");
  h.clock.advance(10min);
  auto missing = h.fetch(2);
  REQUIRE(missing);
  CHECK(missing->error.find("has no jwks_uri") != std::string::npos);
}

TEST_CASE("jwks: a reload that keeps the URI keeps the keys without fetching again") {
  FakeUpstream backend("backend");
  JwksServer jwks;
  JwtSigner signer("k1"), other("k2");
  jwks.serve_json("/jwks.json", signer.jwks());
  jwks.serve_json("/other.json", other.jwks());
  Harness h(remote_config(backend.port(), jwks.url("/jwks.json")));
  REQUIRE(h.fetch(1));
  std::string token = signer.sign(claims(kWallStart + 3600));

  // The server now stalls: a fetch would leave the new slots empty.
  jwks.serve("/jwks.json", Reply{.status = 503, .hold = true});
  REQUIRE(h.gateway->apply(remote_config(backend.port(), jwks.url("/jwks.json"))).ok());
  CHECK(h.get("/after-reload", token).status == 200);
  CHECK(jwks.requests() == 1);
  CHECK(h.gateway->jwks_status()[0].successes == 1);

  // Another URI is fetched; the old one is dropped.
  REQUIRE(h.gateway->apply(remote_config(backend.port(), jwks.url("/other.json"))).ok());
  auto f = h.fetch(2);
  REQUIRE(f);
  CHECK(f->uri == jwks.url("/other.json"));
  auto status = h.gateway->jwks_status();
  REQUIRE(status.size() == 1);
  CHECK(status[0].uri == jwks.url("/other.json"));
  CHECK(h.get("/other", other.sign(claims(kWallStart + 3600))).status == 200);
  CHECK(h.get("/first", token).status == 401);
  jwks.upstream().release();
}

TEST_CASE("jwks: exp and nbf follow the injected wall clock, with 60 s of skew") {
  FakeUpstream backend("backend");
  JwtSigner signer("k1");
  GatewayConfig cfg = single_upstream_config(backend.port());
  JwtProvider p;
  p.issuer = kIssuer;
  p.jwks = signer.jwks();  // inline: no fetch needed for token time
  cfg.security.jwt_providers.push_back(p);
  Harness h(cfg);
  CHECK(h.gateway->jwks_status().empty());
  CHECK(h.gateway->wait_jwks_fetched(0ms));

  std::string expiring = signer.sign(claims(kWallStart + 100));
  CHECK(h.get("/valid", expiring).status == 200);
  h.wall = kWallStart + 160;  // 60 s past exp: still within the skew
  CHECK(h.get("/skew", expiring).status == 200);
  h.wall = kWallStart + 161;
  auto expired = h.get("/expired", expiring);
  CHECK(expired.status == 401);
  CHECK(expired.body == "Jwt is expired");

  h.wall = kWallStart;
  std::string later =
      signer.sign(claims(kWallStart + 7200, R"(,"nbf":)" + std::to_string(kWallStart + 1000)));
  auto early = h.get("/early", later);
  CHECK(early.status == 401);
  CHECK(early.body == "Jwt not yet valid");
  h.wall = kWallStart + 940;  // nbf - 60 s
  CHECK(h.get("/now-valid", later).status == 200);
}

}  // namespace jwks_fetch_test
