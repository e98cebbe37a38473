// RequestAuthentication and AuthorizationPolicy through the C++ API (issue
// 12, sections 1, 2 and 5): a gateway with SecurityConfig, real sockets, a
// key made at test time. Each case checks what the client got and what the
// upstream received (or that it received nothing).

#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>

#include "support/fake_upstream.hpp"
#include "support/gateway_fixture.hpp"
#include "support/jwt_signer.hpp"
#include "support/raw_client.hpp"

namespace security_api_test {

using namespace sluice;
using namespace sluice::test;
using namespace std::chrono_literals;

namespace {

const std::string kIssuer = "testing@secure.istio.io";

// The details of each logged exchange, by target.
class DetailsHooks : public Hooks {
 public:
  void on_log(const RequestContext& c) override {
    std::lock_guard lock(mutex_);
    details_.emplace_back(c.request.target, std::string(c.response_code_details));
    cv_.notify_all();
  }
  std::string details_of(const std::string& target) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, 5s, [&] {
      for (const auto& [t, d] : details_)
        if (t == target) return true;
      return false;
    });
    for (const auto& [t, d] : details_)
      if (t == target) return d;
    return {};
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, std::string>> details_;
};

std::string claims(int64_t exp_offset = 3600, std::string extra = "") {
  return R"({"iss":")" + kIssuer + R"(","sub":"alice","exp":)" +
         std::to_string(unix_now() + exp_offset) + extra + "}";
}

JwtProvider provider(const JwtSigner& signer) {
  JwtProvider p;
  p.issuer = kIssuer;
  p.jwks = signer.jwks();
  p.source = "RequestAuthentication istio-system/jwt-example";
  return p;
}

AuthorizationPolicy allow_principals(std::vector<std::string> principals) {
  AuthorizationPolicy policy;
  policy.name = "require-jwt";
  policy.ns = "istio-system";
  policy.action = AuthzAction::allow;
  AuthzRule rule;
  AuthzSource source;
  source.request_principals = std::move(principals);
  rule.from.push_back(source);
  policy.rules.push_back(rule);
  return policy;
}

std::optional<HttpResponse> get(uint16_t port, const std::string& target, HeaderList headers = {}) {
  RawClient c(port);
  c.send(make_request("GET", target, "example.com", headers));
  return c.read_response();
}

}  // namespace

TEST_CASE("security: a valid token passes and is removed, a bad one is 401, none is 403") {
  FakeUpstream up("ok");
  JwtSigner signer;
  auto cfg = single_upstream_config(up.port());
  cfg.security.jwt_providers.push_back(provider(signer));
  cfg.security.authorization.push_back(allow_principals({kIssuer + "/alice"}));
  auto hooks = std::make_shared<DetailsHooks>();
  TestGateway gw(cfg, 1, hooks);

  auto good = get(gw.port(), "/good", {{"Authorization", "Bearer " + signer.sign(claims())}});
  REQUIRE(good);
  CHECK(good->status == 200);
  REQUIRE(up.requests().size() == 1);
  // forwardOriginalToken is false by default: the token stays at the edge.
  CHECK_FALSE(up.requests()[0].header("authorization"));

  std::string token = signer.sign(claims());
  // A broken signature: one character inside it changed (not the last,
  // whose low bits are padding a strict decoder refuses).
  char& c = token[token.size() - 10];
  c = c == 'A' ? 'B' : 'A';
  auto bad = get(gw.port(), "/bad", {{"Authorization", "Bearer " + token}});
  REQUIRE(bad);
  CHECK(bad->status == 401);
  CHECK(bad->body == "Jwt verification fails");
  CHECK(bad->header("www-authenticate").value_or("").starts_with("Bearer realm="));
  CHECK(hooks->details_of("/bad") == "jwt_authn_access_denied{Jwt_verification_fails}");

  auto expired =
      get(gw.port(), "/expired", {{"Authorization", "Bearer " + signer.sign(claims(-3600))}});
  REQUIRE(expired);
  CHECK(expired->status == 401);
  CHECK(expired->body == "Jwt is expired");

  // No token is no principal: not a JWT error, but the ALLOW policy wants one.
  auto none = get(gw.port(), "/none");
  REQUIRE(none);
  CHECK(none->status == 403);
  CHECK(none->body == "RBAC: access denied");
  CHECK(hooks->details_of("/none") == "rbac_access_denied_matched_policy[none]");

  // A valid token of another subject is authenticated, then not allowed.
  auto bob = get(
      gw.port(), "/bob",
      {{"Authorization", "Bearer " + signer.sign(R"({"iss":")" + kIssuer + R"(","sub":"bob"})")}});
  REQUIRE(bob);
  CHECK(bob->status == 403);
  CHECK(up.requests().size() == 1);  // only the first request went upstream
}

TEST_CASE("security: claims from the token decide a when condition") {
  FakeUpstream up("ok");
  JwtSigner signer;
  auto cfg = single_upstream_config(up.port());
  cfg.security.jwt_providers.push_back(provider(signer));
  AuthorizationPolicy policy;
  policy.name = "groups";
  policy.ns = "default";
  AuthzRule rule;
  rule.when.push_back(AuthzCondition{"request.auth.claims[groups]", {"group1"}, {}});
  policy.rules.push_back(rule);
  cfg.security.authorization.push_back(policy);
  TestGateway gw(cfg);

  auto in = get(gw.port(), "/",
                {{"Authorization",
                  "Bearer " + signer.sign(claims(3600, R"(,"groups":["group1","group2"])"))}});
  REQUIRE(in);
  CHECK(in->status == 200);
  auto out = get(gw.port(), "/",
                 {{"Authorization", "Bearer " + signer.sign(claims(3600, R"(,"groups":["x"])"))}});
  REQUIRE(out);
  CHECK(out->status == 403);
}

TEST_CASE("security: DENY on a path matches the normalised path, not the bytes sent") {
  FakeUpstream up("ok");
  auto cfg = single_upstream_config(up.port());
  AuthorizationPolicy deny;
  deny.name = "deny-admin";
  deny.ns = "default";
  deny.action = AuthzAction::deny;
  AuthzRule rule;
  AuthzOperation op;
  op.paths = {"/admin*"};
  rule.to.push_back(op);
  deny.rules.push_back(rule);
  cfg.security.authorization.push_back(deny);
  auto hooks = std::make_shared<DetailsHooks>();
  TestGateway gw(cfg, 1, hooks);

  CHECK(get(gw.port(), "/public")->status == 200);
  for (std::string target : {"/admin", "/x/../admin/users", "/%61dmin", "/./admin"}) {
    auto r = get(gw.port(), target);
    REQUIRE(r);
    CHECK_MESSAGE(r->status == 403, target);
  }
  CHECK(hooks->details_of("/admin") ==
        "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]");
  CHECK(up.requests().size() == 1);
}

TEST_CASE("security: remoteIpBlocks read X-Forwarded-For with numTrustedProxies") {
  FakeUpstream up("ok");
  auto cfg = single_upstream_config(up.port());
  AuthorizationPolicy allow;
  allow.name = "ingress";
  allow.ns = "istio-system";
  AuthzRule rule;
  AuthzSource source;
  source.remote_ip_blocks = {"203.0.113.0/24"};
  rule.from.push_back(source);
  allow.rules.push_back(rule);
  cfg.security.authorization.push_back(allow);

  SUBCASE("one trusted proxy: the last X-Forwarded-For entry is the client") {
    cfg.security.num_trusted_proxies = 1;
    TestGateway gw(cfg);
    CHECK(get(gw.port(), "/", {{"X-Forwarded-For", "203.0.113.7"}})->status == 200);
    CHECK(get(gw.port(), "/", {{"X-Forwarded-For", "203.0.113.7, 198.51.100.1"}})->status == 403);
    CHECK(get(gw.port(), "/")->status == 403);  // no header: the peer, 127.0.0.1
  }
  SUBCASE("no trusted proxy: the header is ignored, the peer decides") {
    TestGateway gw(cfg);
    CHECK(get(gw.port(), "/", {{"X-Forwarded-For", "203.0.113.7"}})->status == 403);
  }
}

TEST_CASE("security: an invalid policy is rejected whole, naming the policy and field") {
  FakeUpstream up("ok");
  TestGateway gw(single_upstream_config(up.port()));
  auto cfg = single_upstream_config(up.port());
  AuthorizationPolicy bad;
  bad.name = "bad";
  bad.ns = "foo";
  AuthzRule rule;
  AuthzSource source;
  source.ip_blocks = {"10.0.0.0/33"};
  rule.from.push_back(source);
  bad.rules.push_back(rule);
  cfg.security.authorization.push_back(bad);
  Status st = gw.apply(cfg);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().to_string().find("AuthorizationPolicy foo/bad") != std::string::npos);
  CHECK(st.error().to_string().find("ipBlocks[0]") != std::string::npos);
  CHECK(get(gw.port(), "/")->status == 200);  // the old configuration serves

  auto jwt_cfg = single_upstream_config(up.port());
  JwtProvider p;
  p.issuer = kIssuer;
  p.jwks = R"({"keys":[]})";
  p.source = "RequestAuthentication default/broken";
  jwt_cfg.security.jwt_providers.push_back(p);
  st = gw.apply(jwt_cfg);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().to_string().find("RequestAuthentication default/broken") != std::string::npos);
  CHECK(st.error().to_string().find("jwks") != std::string::npos);
}

TEST_CASE("security: explain names the policy that decides, and why the others did not match") {
  FakeUpstream up("ok");
  JwtSigner signer;
  auto cfg = single_upstream_config(up.port());
  cfg.security.jwt_providers.push_back(provider(signer));
  cfg.security.authorization.push_back(allow_principals({kIssuer + "/alice"}));
  AuthorizationPolicy deny;
  deny.name = "deny-admin";
  deny.ns = "default";
  deny.action = AuthzAction::deny;
  AuthzOperation admin;
  admin.paths = {"/admin*"};
  deny.rules.push_back(AuthzRule{.to = {admin}});
  cfg.security.authorization.push_back(deny);
  auto snap = compile(cfg);
  REQUIRE_MESSAGE(snap.ok(), snap.error().to_string());

  auto request = [](std::string target, std::string token = "") {
    RequestHead r;
    r.method = "GET";
    r.target = std::move(target);
    r.authority = "example.com";
    r.headers.add("host", "example.com");
    if (!token.empty()) r.headers.add("authorization", "Bearer " + token);
    return r;
  };
  std::string alice = signer.sign(claims());

  // Allowed: the ALLOW rule matched, the DENY rule did not (and says why).
  Explanation e = explain(**snap, "main", request("/api", alice));
  REQUIRE(e.security);
  CHECK(e.security->principal == kIssuer + "/alice");
  CHECK(e.security->status == 0);
  CHECK(e.security->decision == "allowed by ALLOW policy istio-system/require-jwt rules[0]");
  REQUIRE(e.security->rules.size() == 2);
  CHECK(e.security->rules[0].policy == "default/deny-admin");
  CHECK_FALSE(e.security->rules[0].matched);
  CHECK(e.security->rules[0].why ==
        "rules[0].to[0].operation.paths does not hold for path \"/api\"");
  CHECK(e.security->rules[1].matched);
  CHECK(e.route_index);

  // Denied by DENY, on the normalised path, with Envoy's details.
  e = explain(**snap, "main", request("/x/../%61dmin", alice));
  REQUIRE(e.security);
  CHECK(e.security->status == 403);
  CHECK(e.security->decision == "denied by DENY policy default/deny-admin rules[0]");
  CHECK(e.security->details ==
        "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]");

  // No token: no principal, so no ALLOW policy matches.
  e = explain(**snap, "main", request("/api"));
  REQUIRE(e.security);
  CHECK(e.security->authentication == "no token: no request principal");
  CHECK(e.security->decision == "denied: ALLOW policies exist and none matched");
  CHECK(e.security->rules[1].why == "rules[0].from[0].source.requestPrincipals does not hold");

  // An expired token at a time of the caller's choosing.
  ExplainInput later;
  later.now = std::chrono::system_clock::now() + std::chrono::hours(2);
  e = explain(**snap, "main", request("/api", alice), later);
  REQUIRE(e.security);
  CHECK(e.security->status == 401);
  CHECK(e.security->authentication == "token rejected: Jwt is expired");
  CHECK(e.security->rules.empty());
  CHECK(e.to_string().find("the gateway answers 401") != std::string::npos);

  // Serving agrees with the explanations.
  TestGateway gw(cfg);
  CHECK(get(gw.port(), "/api", {{"Authorization", "Bearer " + alice}})->status == 200);
  CHECK(get(gw.port(), "/x/../%61dmin", {{"Authorization", "Bearer " + alice}})->status == 403);
  CHECK(get(gw.port(), "/api")->status == 403);
  e = gw.gateway().explain("main", request("/api", alice));
  REQUIRE(e.security);
  CHECK(e.security->status == 0);
  CHECK(explain(**snap, "nope", request("/api")).host_match == "no listener named \"nope\"");
}

}  // namespace security_api_test
