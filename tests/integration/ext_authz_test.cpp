// AuthorizationPolicy CUSTOM with an HTTP ext_authz provider (issue 12,
// section 3) through the C++ API: the provider is a FakeUpstream in the test
// process answering as Envoy's HTTP authorization service protocol says.
// Each case checks what the provider was asked, what the client got and what
// the upstream received (or that it received nothing).

#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/manual_clock.hpp"
#include "support/ports.hpp"
#include "support/raw_client.hpp"

namespace ext_authz_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

// Details and flags of each logged exchange, by target.
class DetailsHooks : public Hooks {
 public:
  void on_log(const RequestContext& c) override {
    std::lock_guard lock(mutex_);
    logs_.push_back(
        {c.request.target, std::string(c.response_code_details), to_string(c.response_flags)});
    cv_.notify_all();
  }
  // "details flags" of the exchange for `target`.
  std::string of(const std::string& target) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, 5s, [&] {
      for (const auto& l : logs_)
        if (l.target == target) return true;
      return false;
    });
    for (const auto& l : logs_)
      if (l.target == target) return l.details + " " + l.flags;
    return {};
  }

 private:
  struct Entry {
    std::string target, details, flags;
  };
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Entry> logs_;
};

// Istio's sample ext-authz server: allows `x-ext-authz: allow`, otherwise
// 403 with its body and a header saying so.
Reply sample_server(const Received& r) {
  Reply reply;
  if (r.header("x-ext-authz") == "allow") {
    reply.headers = {{"x-ext-authz-check-result", "allowed"}};
    return reply;
  }
  reply.status = 403;
  reply.headers = {{"x-ext-authz-check-result", "denied"}};
  reply.body = "denied by ext_authz for not found header `x-ext-authz: allow` in the request";
  return reply;
}

ExtAuthzHttpProvider provider(std::string name = "sample-ext-authz-http") {
  ExtAuthzHttpProvider p;
  p.name = std::move(name);
  p.service = "ext-authz";
  p.include_request_headers_in_check = {"x-ext-authz"};
  return p;
}

// CUSTOM on paths under /headers (the Istio task's policy).
AuthorizationPolicy custom_policy(std::string provider_name = "sample-ext-authz-http") {
  AuthorizationPolicy policy;
  policy.name = "ext-authz";
  policy.ns = "foo";
  policy.action = AuthzAction::custom;
  policy.provider = std::move(provider_name);
  AuthzRule rule;
  AuthzOperation op;
  op.paths = {"/headers*"};
  rule.to.push_back(op);
  policy.rules.push_back(rule);
  return policy;
}

// Every request to upstream "backend"; the provider at `authz_port`.
GatewayConfig config_with(uint16_t backend, uint16_t authz_port, ExtAuthzHttpProvider p) {
  auto cfg = single_upstream_config(backend);
  cfg.upstreams.push_back(loopback_upstream("ext-authz", {authz_port}));
  cfg.security.ext_authz_providers.push_back(std::move(p));
  cfg.security.authorization.push_back(custom_policy());
  return cfg;
}

std::optional<HttpResponse> send(uint16_t port, std::string_view method, std::string_view target,
                                 HeaderList headers = {}, std::string_view body = {}) {
  RawClient c(port);
  c.send(make_request(method, target, "example.com", headers, body));
  return c.read_response();
}

}  // namespace

TEST_CASE("ext_authz: the provider's 200 allows, another status denies with its answer") {
  FakeUpstream up("backend");
  FakeUpstream authz("authz");
  authz.set_handler(sample_server);
  auto p = provider();
  p.path_prefix = "/check";
  auto hooks = std::make_shared<DetailsHooks>();
  TestGateway gw(config_with(up.port(), authz.port(), p), 1, hooks);

  auto allowed = send(gw.port(), "GET", "/headers?a=1",
                      {{"x-ext-authz", "allow"}, {"x-other", "1"}, {"authorization", "Basic x"}});
  REQUIRE(allowed);
  CHECK(allowed->status == 200);
  CHECK(allowed->body == "backend");
  REQUIRE(authz.request_count() == 1);
  // Envoy's check request: the client's method, the prefix and the path
  // with its query, its Host, Authorization, the listed headers, length 0.
  Received check = *authz.last_request();
  CHECK(check.method == "GET");
  CHECK(check.target == "/check/headers?a=1");
  CHECK(check.header("host") == "example.com");
  CHECK(check.header("x-ext-authz") == "allow");
  CHECK(check.header("authorization") == "Basic x");
  CHECK_FALSE(check.header("x-other"));
  CHECK(check.header("content-length") == "0");
  CHECK(check.body.empty());
  REQUIRE(up.request_count() == 1);
  CHECK(up.last_request()->header("x-other") == "1");

  auto denied = send(gw.port(), "GET", "/headers", {{"x-ext-authz", "deny"}});
  REQUIRE(denied);
  CHECK(denied->status == 403);
  CHECK(denied->body.starts_with("denied by ext_authz"));
  CHECK(denied->header("x-ext-authz-check-result") == "denied");
  CHECK(hooks->of("/headers") == "ext_authz_denied UAEX");
  CHECK(up.request_count() == 1);

  // The policy does not cover this path: the provider is not asked.
  auto other = send(gw.port(), "GET", "/ip");
  REQUIRE(other);
  CHECK(other->status == 200);
  CHECK(authz.request_count() == 2);
}

TEST_CASE("ext_authz: a denial keeps the provider's status and body, headers as listed") {
  FakeUpstream up("backend");
  FakeUpstream authz("authz");
  authz.set_handler([](const Received&) {
    Reply r;
    r.status = 401;
    r.body = "{\"error\":\"who are you\"}";
    r.headers = {{"content-type", "application/json"},
                 {"x-ext-authz-check-result", "denied"},
                 {"x-internal", "secret"},
                 {"www-authenticate", "Basic realm=\"x\""}};
    return r;
  });
  auto p = provider();

  SUBCASE("a list: only its headers, with WWW-Authenticate and Location") {
    p.headers_to_downstream_on_deny = {"x-ext-authz-*", "content-type"};
    TestGateway gw(config_with(up.port(), authz.port(), p));
    auto r = send(gw.port(), "GET", "/headers");
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(r->body == "{\"error\":\"who are you\"}");
    CHECK(r->header("content-type") == "application/json");
    CHECK(r->header("x-ext-authz-check-result") == "denied");
    CHECK(r->header("www-authenticate") == "Basic realm=\"x\"");
    CHECK_FALSE(r->header("x-internal"));
  }
  SUBCASE("no list: every header of the answer") {
    TestGateway gw(config_with(up.port(), authz.port(), p));
    auto r = send(gw.port(), "GET", "/headers");
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(r->header("x-internal") == "secret");
  }
  CHECK(up.request_count() == 0);
}

TEST_CASE("ext_authz: headers of an allowing answer reach the upstream and the client") {
  FakeUpstream up("backend");
  FakeUpstream authz("authz");
  authz.set_handler([](const Received&) {
    Reply r;
    r.headers = {{"x-user", "alice"}, {"x-auth-secret", "s"}, {"x-resp-note", "checked"}};
    return r;
  });
  auto p = provider();
  p.headers_to_upstream_on_allow = {"x-user"};
  p.headers_to_downstream_on_allow = {"x-resp-*"};
  TestGateway gw(config_with(up.port(), authz.port(), p));
  // The client's own x-user is replaced, not kept beside the provider's.
  auto r = send(gw.port(), "GET", "/headers", {{"x-user", "mallory"}});
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("x-resp-note") == "checked");
  CHECK_FALSE(r->header("x-user"));
  REQUIRE(up.request_count() == 1);
  Received got = *up.last_request();
  CHECK(got.header("x-user") == "alice");
  CHECK(got.header_count("x-user") == 1);
  CHECK_FALSE(got.header("x-auth-secret"));
  CHECK_FALSE(got.header("x-resp-note"));
}

TEST_CASE("ext_authz: a provider slower than its timeout is an error (status_on_error)") {
  FakeUpstream up("backend");
  FakeUpstream authz("authz");
  authz.set_handler([](const Received&) {
    Reply r;
    r.hold = true;
    return r;
  });
  ManualClock clock;
  auto p = provider();
  p.timeout = 2s;
  p.status_on_error = 503;
  auto hooks = std::make_shared<DetailsHooks>();
  TestGateway gw(config_with(up.port(), authz.port(), p), 1, hooks, &clock);
  RawClient c(gw.port());
  REQUIRE(c.send(make_request("GET", "/headers")));
  REQUIRE(authz.wait_for_requests(1));
  clock.settle();
  clock.advance(2s + 100ms);
  auto r = c.read_response();
  REQUIRE_MESSAGE(r, c.error());
  CHECK(r->status == 503);
  CHECK(hooks->of("/headers") == "ext_authz_error UAEX");
  CHECK(up.request_count() == 0);
  authz.release();
}

TEST_CASE("ext_authz: failures (down, 5xx, early close, oversized answer) and fail_open") {
  FakeUpstream up("backend");
  FakeUpstream authz("authz");
  LoopbackPort down;  // bound, nobody listens: connects are refused
  auto p = provider();
  uint16_t provider_port = authz.port();

  SUBCASE("down") {
    provider_port = down.port();
  }
  SUBCASE("5xx") {
    authz.set_handler([](const Received&) {
      Reply r;
      r.status = 500;
      r.body = "provider broke";
      return r;
    });
  }
  SUBCASE("closes before answering") {
    authz.set_handler([](const Received&) {
      Reply r;
      r.reset_before_response = true;
      return r;
    });
  }
  SUBCASE("answer body over the cap") {
    authz.set_handler([](const Received&) {
      Reply r;
      r.status = 403;
      r.generated_bytes = 1 << 20;
      return r;
    });
  }
  SUBCASE("closes mid-body") {
    authz.set_handler([](const Received&) {
      Reply r;
      r.status = 403;
      r.body = std::string(100, 'x');
      r.reset_after_body_bytes = 10;
      return r;
    });
  }
  {
    TestGateway gw(config_with(up.port(), provider_port, p));
    auto r = send(gw.port(), "GET", "/headers", {{"x-ext-authz", "allow"}});
    REQUIRE(r);
    CHECK(r->status == 403);
    CHECK(r->body.empty());
    CHECK(up.request_count() == 0);
  }
  p.fail_open = true;
  TestGateway open(config_with(up.port(), provider_port, p));
  auto r = send(open.port(), "GET", "/headers");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(up.request_count() == 1);
}

TEST_CASE("ext_authz: the check request carries the body when asked, within its limit") {
  FakeUpstream up("backend");
  FakeUpstream authz("authz");
  auto p = provider();
  p.include_request_body_in_check = ExtAuthzRequestBody{.max_request_bytes = 10};

  SUBCASE("a body within the limit") {
    TestGateway gw(config_with(up.port(), authz.port(), p));
    auto r = send(gw.port(), "POST", "/headers", {}, "hello");
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(authz.request_count() == 1);
    Received check = *authz.last_request();
    CHECK(check.body == "hello");
    CHECK(check.header("content-length") == "5");
    CHECK(check.header("x-envoy-auth-partial-body") == "false");
    REQUIRE(up.request_count() == 1);
    CHECK(up.last_request()->body == "hello");
  }
  SUBCASE("longer, without allow_partial_message: 413 and nobody asked") {
    TestGateway gw(config_with(up.port(), authz.port(), p));
    auto r = send(gw.port(), "POST", "/headers", {}, "0123456789abcdefghij");
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(authz.request_count() == 0);
    CHECK(up.request_count() == 0);
  }
  SUBCASE("longer and chunked, with allow_partial_message: the first bytes, all go upstream") {
    p.include_request_body_in_check->allow_partial_message = true;
    TestGateway gw(config_with(up.port(), authz.port(), p));
    RawClient c(gw.port());
    REQUIRE(
        c.send("POST /headers HTTP/1.1\r\nHost: example.com\r\n"
               "Transfer-Encoding: chunked\r\n\r\n"
               "8\r\n01234567\r\n8\r\n89abcdef\r\n4\r\nghij\r\n0\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE_MESSAGE(r, c.error());
    CHECK(r->status == 200);
    REQUIRE(authz.request_count() == 1);
    Received check = *authz.last_request();
    CHECK(check.body == "0123456789");
    CHECK(check.header("x-envoy-auth-partial-body") == "true");
    REQUIRE(up.request_count() == 1);
    CHECK(up.last_request()->body == "0123456789abcdefghij");
  }
}

TEST_CASE("ext_authz: CUSTOM comes first, then a DENY policy still denies") {
  FakeUpstream up("backend");
  FakeUpstream authz("authz");  // allows everything
  auto cfg = config_with(up.port(), authz.port(), provider());
  AuthorizationPolicy deny;
  deny.name = "deny-admin";
  deny.ns = "foo";
  deny.action = AuthzAction::deny;
  AuthzRule rule;
  AuthzOperation op;
  op.paths = {"/headers/admin"};
  rule.to.push_back(op);
  deny.rules.push_back(rule);
  cfg.security.authorization.push_back(deny);
  auto hooks = std::make_shared<DetailsHooks>();
  TestGateway gw(cfg, 1, hooks);

  auto r = send(gw.port(), "GET", "/headers/admin");
  REQUIRE(r);
  CHECK(r->status == 403);
  CHECK(r->body == "RBAC: access denied");
  CHECK(authz.request_count() == 1);  // asked first, and it allowed
  CHECK(hooks->of("/headers/admin") ==
        "rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin]-rule[0]] -");
  CHECK(send(gw.port(), "GET", "/headers/x")->status == 200);
  CHECK(up.request_count() == 1);
}

TEST_CASE("ext_authz: configuration errors name the provider or policy and the field") {
  auto cfg = config_with(1, 2, provider());
  SUBCASE("unknown service") {
    cfg.security.ext_authz_providers[0].service = "nowhere";
    auto c = compile(cfg);
    REQUIRE_FALSE(c);
    CHECK(c.error().to_string() ==
          "ExtAuthzHttpProvider sample-ext-authz-http: service: no upstream named \"nowhere\"");
  }
  SUBCASE("a CUSTOM policy naming no provider") {
    cfg.security.authorization[0].provider = "other";
    auto c = compile(cfg);
    REQUIRE_FALSE(c);
    CHECK(c.error().to_string() ==
          "AuthorizationPolicy foo/ext-authz: provider.name: no ext_authz provider named "
          "\"other\"");
  }
  SUBCASE("a path prefix with CR LF") {
    cfg.security.ext_authz_providers[0].path_prefix = "/x\r\nevil: 1";
    auto c = compile(cfg);
    REQUIRE_FALSE(c);
    CHECK(c.error().to_string().starts_with(
        "ExtAuthzHttpProvider sample-ext-authz-http: path_prefix: "));
  }
  SUBCASE("the service port names the loader's upstream") {
    cfg.upstreams[1].name = "outbound|8000||ext-authz.foo.svc.cluster.local";
    cfg.security.ext_authz_providers[0].service = "ext-authz.foo.svc.cluster.local";
    cfg.security.ext_authz_providers[0].port = 8000;
    CHECK(compile(cfg));
  }
}

TEST_CASE("ext_authz: a pooled connection the provider dropped is not a failure") {
  FakeUpstream up("backend");
  FakeUpstream authz("authz");
  std::atomic<int> calls{0};
  // The second check arrives on the pooled connection and is reset unanswered.
  authz.set_handler([&](const Received&) {
    Reply r;
    r.reset_before_response = ++calls == 2;
    return r;
  });
  TestGateway gw(config_with(up.port(), authz.port(), provider()));
  CHECK(send(gw.port(), "GET", "/headers")->status == 200);
  auto second = send(gw.port(), "GET", "/headers");
  REQUIRE(second);
  CHECK(second->status == 200);
  CHECK(calls == 3);
  CHECK(authz.connections_accepted() == 2);
  CHECK(up.request_count() == 2);
}

}  // namespace ext_authz_test
