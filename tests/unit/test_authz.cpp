// AuthorizationPolicy (lib/security/authz): every source, operation and
// condition field and its not* form, Istio's string forms, CIDRs, the client
// address behind X-Forwarded-For, the order of actions, policies without
// rules, and validation errors that name the field.

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "security/authz.hpp"

namespace test_authz {

using namespace sluice;
using namespace sluice::security;

namespace {

IpAddress ip(std::string_view text) {
  auto a = IpAddress::parse(text);
  REQUIRE_MESSAGE(a.has_value(), std::string(text));
  return *a;
}

// Owns everything an AuthzRequest points at.
struct Req {
  std::string method = "GET";
  std::string authority = "example.com";
  std::string path = "/";
  Headers headers;
  uint16_t port = 8080;
  IpAddress peer = ip("10.0.0.1");
  IpAddress remote;  // unset: the peer
  IpAddress local = ip("10.9.0.1");
  std::string sni;
  bool mtls = false;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::string subject;
  bool jwt = false;
  std::string iss, sub, azp;
  std::vector<std::string> aud;
  std::vector<JwtClaim> claims;

  PeerIdentity peer_identity;
  JwtIdentity jwt_identity;

  Req& san(std::string s) {
    mtls = true;
    uri_sans.push_back(std::move(s));
    return *this;
  }
  Req& token(std::string i, std::string s) {
    jwt = true;
    iss = std::move(i);
    sub = std::move(s);
    return *this;
  }

  AuthzRequest view() {
    peer_identity = {uri_sans, dns_sans, subject};
    jwt_identity = {iss, sub, azp, aud, claims};
    AuthzRequest r;
    r.method = method;
    r.authority = authority;
    r.path = path;
    r.headers = &headers;
    r.destination_port = port;
    r.destination_ip = local;
    r.peer = peer;
    r.remote = remote;
    r.sni = sni;
    r.peer_identity = mtls ? &peer_identity : nullptr;
    r.jwt = jwt ? &jwt_identity : nullptr;
    return r;
  }
};

AuthorizationPolicy policy(std::string name, AuthzAction action, std::vector<AuthzRule> rules,
                           std::string ns = "foo") {
  AuthorizationPolicy p;
  p.name = std::move(name);
  p.ns = std::move(ns);
  p.action = action;
  p.rules = std::move(rules);
  return p;
}

AuthzRule from(AuthzSource s) {
  return {.from = {std::move(s)}};
}
AuthzRule to(AuthzOperation o) {
  return {.to = {std::move(o)}};
}
AuthzRule when(std::string key, std::vector<std::string> values,
               std::vector<std::string> not_values = {}) {
  return {.when = {{std::move(key), std::move(values), std::move(not_values)}}};
}

AuthzEngine compile_ok(const std::vector<AuthorizationPolicy>& policies,
                       const AuthzOptions& options = {}) {
  auto engine = AuthzEngine::compile(policies, options);
  REQUIRE_MESSAGE(engine.ok(), engine.error().to_string());
  return std::move(engine).value();
}

std::string compile_error(const std::vector<AuthorizationPolicy>& policies) {
  auto engine = AuthzEngine::compile(policies);
  REQUIRE_FALSE(engine.ok());
  return engine.error().to_string();
}

std::string compile_error(AuthzRule rule, AuthzAction action = AuthzAction::allow) {
  return compile_error({policy("bad", action, {std::move(rule)})});
}

// Whether a single ALLOW policy holding `rule` lets `r` through.
bool allows(const AuthzRule& rule, Req& r) {
  AuthzEngine engine = compile_ok({policy("p", AuthzAction::allow, {rule})});
  AuthzDecision d = engine.evaluate(r.view());
  CHECK(d.verdict != AuthzVerdict::ext_authz);
  return d.verdict == AuthzVerdict::allow;
}

}  // namespace

// ---------------------------------------------------------------------------
// Addresses

TEST_CASE("authz: IP literals parse as inet_pton reads them") {
  CHECK(IpAddress::parse("1.2.3.4")->family == IpAddress::Family::v4);
  CHECK(IpAddress::parse("2001:db8::1")->family == IpAddress::Family::v6);
  CHECK(IpAddress::parse("::ffff:1.2.3.4")->family == IpAddress::Family::v6);
  for (std::string_view bad : {"", "1.2.3", "01.2.3.4", "1.2.3.4:80", "[::1]", "fe80::1%eth0",
                               "256.1.1.1", "example.com", " 1.2.3.4"})
    CHECK_MESSAGE(!IpAddress::parse(bad), std::string(bad));
  CHECK(!IpAddress::parse(std::string_view("1.2.3.4\0x", 9)));
  CHECK(ip("::ffff:1.2.3.4").unmapped() == ip("1.2.3.4"));
  CHECK(ip("2001:db8::1").unmapped() == ip("2001:db8::1"));
  CHECK(ip("10.0.0.1").to_string() == "10.0.0.1");
  CHECK(ip("2001:0db8:0::1").to_string() == "2001:db8::1");
}

TEST_CASE("authz: CIDR edges for IPv4 and IPv6") {
  auto cidr = [](std::string_view t) {
    auto c = Cidr::parse(t);
    REQUIRE_MESSAGE(c.has_value(), std::string(t));
    return *c;
  };
  CHECK(cidr("10.0.0.0/8").contains(ip("10.255.255.255")));
  CHECK_FALSE(cidr("10.0.0.0/8").contains(ip("11.0.0.0")));
  CHECK(cidr("10.0.16.0/20").contains(ip("10.0.31.255")));
  CHECK_FALSE(cidr("10.0.16.0/20").contains(ip("10.0.32.0")));
  CHECK_FALSE(cidr("10.0.16.0/20").contains(ip("10.0.15.255")));
  CHECK(cidr("10.1.2.3/16").contains(ip("10.1.200.7")));  // host bits masked, as Envoy
  CHECK(cidr("1.2.3.4").contains(ip("1.2.3.4")));         // bare address: /32
  CHECK_FALSE(cidr("1.2.3.4").contains(ip("1.2.3.5")));
  CHECK(cidr("1.2.3.4/32").contains(ip("1.2.3.4")));
  CHECK(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
  CHECK_FALSE(cidr("0.0.0.0/0").contains(ip("::1")));  // families never mix
  CHECK_FALSE(cidr("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
  CHECK(cidr("10.0.0.0/8").contains(ip("::ffff:10.0.0.1").unmapped()));
  CHECK(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
  CHECK_FALSE(cidr("2001:db8::/32").contains(ip("2001:db9::1")));
  CHECK(cidr("2001:db8::/127").contains(ip("2001:db8::1")));
  CHECK_FALSE(cidr("2001:db8::/127").contains(ip("2001:db8::2")));
  CHECK(cidr("::1").contains(ip("::1")));
  CHECK(cidr("::/0").contains(ip("2001:db8::1")));
  CHECK_FALSE(cidr("::/0").contains(IpAddress{}));  // no address matches nothing
  for (std::string_view bad : {"10.0.0.0/33", "10.0.0.0/08", "10.0.0.0/", "10.0.0.0/+8",
                               "10.0.0.0/-1", "::/129", "10.0.0/8", "/8", "10.0.0.0/8/8"})
    CHECK_MESSAGE(!Cidr::parse(bad), std::string(bad));
}

TEST_CASE("authz: remote address from X-Forwarded-For with 0, 1 and 2 trusted proxies") {
  IpAddress peer = ip("10.0.0.1");
  std::string_view xff = "198.51.100.7, 203.0.113.9,192.0.2.5";
  CHECK(remote_address(peer, xff, 0) == peer);  // nothing trusted: the socket peer
  CHECK(remote_address(peer, xff, 1) == ip("192.0.2.5"));
  CHECK(remote_address(peer, xff, 2) == ip("203.0.113.9"));
  CHECK(remote_address(peer, xff, 3) == ip("198.51.100.7"));
  // Shorter than the trusted hops: the peer (a client cannot pick its address).
  CHECK(remote_address(peer, xff, 4) == peer);
  CHECK(remote_address(peer, "192.0.2.5", 2) == peer);
  CHECK(remote_address(peer, "", 1) == peer);
  // The chosen entry must be a bare IP, whitespace trimmed.
  CHECK(remote_address(peer, "  192.0.2.5\t", 1) == ip("192.0.2.5"));
  CHECK(remote_address(peer, "192.0.2.5:443", 1) == peer);
  CHECK(remote_address(peer, "unknown", 1) == peer);
  CHECK(remote_address(peer, "192.0.2.5,", 1) == peer);  // empty last entry
  CHECK(remote_address(peer, "2001:db8::7", 1) == ip("2001:db8::7"));
  // A bad entry further left does not matter.
  CHECK(remote_address(peer, "garbage, 192.0.2.5", 1) == ip("192.0.2.5"));

  Headers h;
  CHECK(remote_address(peer, h, 1) == peer);  // no header
  h.add("X-Forwarded-For", "198.51.100.7, 203.0.113.9");
  h.add("x-forwarded-for", "192.0.2.5");
  CHECK(remote_address(peer, h, 0) == peer);
  CHECK(remote_address(peer, h, 1) == ip("192.0.2.5"));
  CHECK(remote_address(peer, h, 2) == ip("203.0.113.9"));  // across lines, as if joined
  CHECK(remote_address(peer, h, 3) == ip("198.51.100.7"));
  CHECK(remote_address(peer, h, 4) == peer);
}

// ---------------------------------------------------------------------------
// Source fields

TEST_CASE("authz: principals match the peer certificate with spiffe:// in front") {
  AuthzRule exact = from({.principals = {"cluster.local/ns/default/sa/sleep"}});
  Req r;
  r.san("spiffe://cluster.local/ns/default/sa/sleep");
  CHECK(allows(exact, r));
  Req other;
  other.san("spiffe://cluster.local/ns/default/sa/other");
  CHECK_FALSE(allows(exact, other));
  Req plain;  // no client certificate
  CHECK_FALSE(allows(exact, plain));
  Req no_scheme;
  no_scheme.san("cluster.local/ns/default/sa/sleep");
  CHECK_FALSE(allows(exact, no_scheme));

  CHECK(allows(from({.principals = {"cluster.local/ns/default/*"}}), other));
  CHECK_FALSE(allows(from({.principals = {"cluster.local/ns/prod/*"}}), other));
  CHECK(allows(from({.principals = {"*/sa/sleep"}}), r));
  CHECK_FALSE(allows(from({.principals = {"*/sa/sleep"}}), other));
  Req https;  // a suffix match still needs the spiffe:// scheme
  https.san("https://cluster.local/sa/sleep");
  CHECK_FALSE(allows(from({.principals = {"*/sa/sleep"}}), https));
  CHECK(allows(from({.principals = {"*"}}), other));
  CHECK_FALSE(allows(from({.principals = {"*"}}), plain));

  // Envoy tries URI SANs, then DNS SANs, then the subject.
  Req second;
  second.san("spiffe://a/ns/x/sa/y");
  second.san("spiffe://cluster.local/ns/default/sa/sleep");
  CHECK(allows(exact, second));
  Req subject_only;
  subject_only.mtls = true;
  subject_only.subject = "CN=client";
  CHECK(allows(from({.principals = {"*"}}), subject_only));
  CHECK_FALSE(allows(exact, subject_only));

  AuthzRule not_sleep = from({.not_principals = {"cluster.local/ns/default/sa/sleep"}});
  CHECK_FALSE(allows(not_sleep, r));
  CHECK(allows(not_sleep, other));
  CHECK(allows(not_sleep, plain));
  CHECK_FALSE(allows(from({.not_principals = {"*"}}), other));
  CHECK(allows(from({.not_principals = {"*"}}), plain));
}

TEST_CASE("authz: namespaces come from the peer identity") {
  Req def, prod_eu, plain;
  def.san("spiffe://cluster.local/ns/default/sa/sleep");
  prod_eu.san("spiffe://cluster.local/ns/prod-eu/sa/api");
  CHECK(allows(from({.namespaces = {"default"}}), def));
  CHECK_FALSE(allows(from({.namespaces = {"default"}}), prod_eu));
  CHECK_FALSE(allows(from({.namespaces = {"def"}}), def));  // whole segment
  CHECK_FALSE(allows(from({.namespaces = {"default"}}), plain));
  CHECK(allows(from({.namespaces = {"prod-*"}}), prod_eu));
  CHECK_FALSE(allows(from({.namespaces = {"prod-*"}}), def));
  CHECK(allows(from({.namespaces = {"*-eu"}}), prod_eu));
  CHECK_FALSE(allows(from({.namespaces = {"*-us"}}), prod_eu));
  CHECK(allows(from({.namespaces = {"*"}}), def));
  CHECK_FALSE(allows(from({.namespaces = {"*"}}), plain));
  CHECK_FALSE(allows(from({.namespaces = {"default", "test"}}), prod_eu));
  CHECK(allows(from({.namespaces = {"test", "prod-eu"}}), prod_eu));

  CHECK_FALSE(allows(from({.not_namespaces = {"default"}}), def));
  CHECK(allows(from({.not_namespaces = {"default"}}), prod_eu));
  CHECK(allows(from({.not_namespaces = {"default"}}), plain));
}

TEST_CASE("authz: requestPrincipals split iss/sub at the last slash") {
  Req alice, bob, none;
  alice.token("issuer.example.com", "alice");
  bob.token("issuer.example.com", "bob");
  CHECK(allows(from({.request_principals = {"issuer.example.com/alice"}}), alice));
  CHECK_FALSE(allows(from({.request_principals = {"issuer.example.com/alice"}}), bob));
  CHECK_FALSE(allows(from({.request_principals = {"issuer.example.com/alice"}}), none));
  CHECK(allows(from({.request_principals = {"*"}}), bob));
  CHECK_FALSE(allows(from({.request_principals = {"*"}}), none));
  CHECK(allows(from({.request_principals = {"*/alice"}}), alice));
  CHECK_FALSE(allows(from({.request_principals = {"*/alice"}}), bob));
  CHECK(allows(from({.request_principals = {"*example.com/alice"}}), alice));
  CHECK_FALSE(allows(from({.request_principals = {"*example.org/alice"}}), alice));
  CHECK(allows(from({.request_principals = {"issuer.example.com/al*"}}), alice));
  CHECK_FALSE(allows(from({.request_principals = {"issuer.example.com/al*"}}), bob));
  CHECK(allows(from({.request_principals = {"issuer.example.com/*"}}), bob));
  CHECK(allows(from({.request_principals = {"issuer.*"}}), bob));  // no '/': iss prefix
  CHECK(allows(from({.request_principals = {"*ice"}}), alice));    // no '/': sub suffix
  CHECK_FALSE(allows(from({.request_principals = {"*ice"}}), bob));

  Req url;  // an issuer that is a URL
  url.token("https://accounts.example.com", "12345");
  CHECK(allows(from({.request_principals = {"https://accounts.example.com/12345"}}), url));
  CHECK(allows(from({.request_principals = {"https://accounts.example.com/*"}}), url));
  CHECK_FALSE(allows(from({.request_principals = {"https://accounts.example.com/1*9"}}), url));
  Req slash_sub;  // Istio's split: a sub holding '/' cannot be named exactly
  slash_sub.token("a", "b/c");
  CHECK_FALSE(allows(from({.request_principals = {"a/b/c"}}), slash_sub));

  CHECK_FALSE(allows(from({.not_request_principals = {"*/alice"}}), alice));
  CHECK(allows(from({.not_request_principals = {"*/alice"}}), bob));
  CHECK(allows(from({.not_request_principals = {"*/alice"}}), none));
}

TEST_CASE("authz: ipBlocks read the peer and remoteIpBlocks the client address") {
  Req r;
  r.peer = ip("10.0.0.1");
  r.remote = ip("203.0.113.9");
  CHECK(allows(from({.ip_blocks = {"10.0.0.0/8"}}), r));
  CHECK_FALSE(allows(from({.ip_blocks = {"203.0.113.0/24"}}), r));
  CHECK(allows(from({.remote_ip_blocks = {"203.0.113.0/24"}}), r));
  CHECK_FALSE(allows(from({.remote_ip_blocks = {"10.0.0.0/8"}}), r));
  CHECK(allows(from({.ip_blocks = {"192.0.2.1", "10.0.0.1"}}), r));
  CHECK_FALSE(allows(from({.not_ip_blocks = {"10.0.0.0/8"}}), r));
  CHECK(allows(from({.not_ip_blocks = {"203.0.113.0/24"}}), r));
  CHECK_FALSE(allows(from({.not_remote_ip_blocks = {"203.0.113.9"}}), r));
  CHECK(allows(from({.not_remote_ip_blocks = {"10.0.0.1"}}), r));
  // Fields of one source are ANDed.
  CHECK(allows(from({.ip_blocks = {"10.0.0.0/8"}, .remote_ip_blocks = {"203.0.113.0/24"}}), r));
  CHECK_FALSE(allows(from({.ip_blocks = {"10.0.0.0/8"}, .remote_ip_blocks = {"10.0.0.0/8"}}), r));

  Req direct;  // remote unset: the peer is the client
  direct.peer = ip("2001:db8::5");
  CHECK(allows(from({.remote_ip_blocks = {"2001:db8::/64"}}), direct));
  CHECK(allows(from({.ip_blocks = {"2001:db8::5"}}), direct));
  CHECK_FALSE(allows(from({.ip_blocks = {"10.0.0.0/8"}}), direct));
}

// ---------------------------------------------------------------------------
// Operation fields

TEST_CASE("authz: hosts match the whole authority ignoring case") {
  Req r;
  r.authority = "Example.COM";
  CHECK(allows(to({.hosts = {"example.com"}}), r));
  CHECK(allows(to({.hosts = {"EXAMPLE.com"}}), r));
  CHECK_FALSE(allows(to({.hosts = {"example.org"}}), r));
  Req with_port;
  with_port.authority = "example.com:8080";
  CHECK_FALSE(allows(to({.hosts = {"example.com"}}), with_port));
  CHECK(allows(to({.hosts = {"example.com:*"}}), with_port));
  CHECK(allows(to({.hosts = {"example.com", "example.com:*"}}), r));
  Req api;
  api.authority = "API.example.com";
  CHECK(allows(to({.hosts = {"*.example.com"}}), api));
  CHECK_FALSE(allows(to({.hosts = {"*.example.com"}}), r));
  CHECK(allows(to({.hosts = {"api.*"}}), api));
  CHECK(allows(to({.hosts = {"*"}}), r));
  CHECK_FALSE(allows(to({.not_hosts = {"*.EXAMPLE.com"}}), api));
  CHECK(allows(to({.not_hosts = {"*.example.com"}}), r));
  CHECK_FALSE(allows(to({.not_hosts = {"*"}}), r));
}

TEST_CASE("authz: ports are the destination port") {
  Req r;
  r.port = 8443;
  CHECK(allows(to({.ports = {"8443"}}), r));
  CHECK(allows(to({.ports = {"80", "8443"}}), r));
  CHECK_FALSE(allows(to({.ports = {"443"}}), r));
  CHECK(allows(to({.ports = {"08443"}}), r));  // strconv.ParseUint accepts leading zeros
  CHECK_FALSE(allows(to({.not_ports = {"8443"}}), r));
  CHECK(allows(to({.not_ports = {"443"}}), r));
}

TEST_CASE("authz: methods are case-sensitive with prefix, suffix and presence") {
  Req get, post, patch;
  post.method = "POST";
  patch.method = "PATCH";
  CHECK(allows(to({.methods = {"GET"}}), get));
  CHECK_FALSE(allows(to({.methods = {"get"}}), get));
  CHECK_FALSE(allows(to({.methods = {"GET", "HEAD"}}), post));
  CHECK(allows(to({.methods = {"P*"}}), post));
  CHECK(allows(to({.methods = {"P*"}}), patch));
  CHECK_FALSE(allows(to({.methods = {"P*"}}), get));
  CHECK(allows(to({.methods = {"*CH"}}), patch));
  CHECK_FALSE(allows(to({.methods = {"*CH"}}), post));
  CHECK(allows(to({.methods = {"*"}}), get));
  CHECK_FALSE(allows(to({.not_methods = {"GET"}}), get));
  CHECK(allows(to({.not_methods = {"GET"}}), post));
  CHECK_FALSE(allows(to({.not_methods = {"*"}}), post));
}

TEST_CASE("authz: paths exact, prefix, suffix, presence and templates") {
  Req r;
  r.path = "/api/v1/items";
  CHECK(allows(to({.paths = {"/api/v1/items"}}), r));
  CHECK_FALSE(allows(to({.paths = {"/api/v1"}}), r));
  CHECK_FALSE(allows(to({.paths = {"/API/v1/items"}}), r));  // case matters
  CHECK(allows(to({.paths = {"/api/*"}}), r));
  CHECK(allows(to({.paths = {"/api*"}}), r));
  CHECK_FALSE(allows(to({.paths = {"/admin/*"}}), r));
  CHECK(allows(to({.paths = {"*/items"}}), r));
  CHECK_FALSE(allows(to({.paths = {"*/item"}}), r));
  CHECK(allows(to({.paths = {"*"}}), r));
  CHECK_FALSE(allows(to({.not_paths = {"/api/*"}}), r));
  CHECK(allows(to({.not_paths = {"/admin/*"}}), r));

  // {*}: exactly one non-empty segment; {**}: any run of segments.
  AuthzRule one = to({.paths = {"/api/{*}/items"}});
  CHECK(allows(one, r));
  Req deeper, empty_segment, other;
  deeper.path = "/api/v1/v2/items";
  empty_segment.path = "/api//items";
  other.path = "/api/v1/things";
  CHECK_FALSE(allows(one, deeper));
  CHECK_FALSE(allows(one, empty_segment));
  CHECK_FALSE(allows(one, other));
  AuthzRule any = to({.paths = {"/api/{**}"}});
  CHECK(allows(any, r));
  CHECK(allows(any, deeper));
  Req root;
  root.path = "/other";
  CHECK_FALSE(allows(any, root));
  CHECK(allows(to({.paths = {"/{**}/items"}}), deeper));
  CHECK(allows(to({.paths = {"/{*}/{*}/{**}"}}), deeper));
  CHECK_FALSE(allows(to({.not_paths = {"/api/{*}/items"}}), r));
  Req dots;  // the literal part is not a regex
  dots.path = "/aXb/x";
  CHECK_FALSE(allows(to({.paths = {"/a.b/{*}"}}), dots));
}

TEST_CASE("authz: operations OR, their fields AND") {
  AuthzRule rule{
      .to = {{.methods = {"GET"}, .paths = {"/info*"}}, {.methods = {"POST"}, .paths = {"/data"}}}};
  Req get_info, post_data, post_info;
  get_info.path = "/info/x";
  post_data.method = "POST";
  post_data.path = "/data";
  post_info.method = "POST";
  post_info.path = "/info";
  CHECK(allows(rule, get_info));
  CHECK(allows(rule, post_data));
  CHECK_FALSE(allows(rule, post_info));

  // from, to and when must all match.
  AuthzRule all{.from = {{.ip_blocks = {"10.0.0.0/8"}}},
                .to = {{.methods = {"GET"}}},
                .when = {{"request.headers[x-env]", {"prod"}, {}}}};
  Req ok;
  ok.headers.add("X-Env", "prod");
  CHECK(allows(all, ok));
  Req wrong_env;
  wrong_env.headers.add("X-Env", "dev");
  CHECK_FALSE(allows(all, wrong_env));
  Req wrong_peer = ok;
  wrong_peer.peer = ip("192.0.2.1");
  CHECK_FALSE(allows(all, wrong_peer));
}

// ---------------------------------------------------------------------------
// Conditions

TEST_CASE("authz: request.headers conditions match one of the comma-separated values") {
  AuthzRule prod = when("request.headers[X-Env]", {"prod"});
  Req r, dev, none, repeated, listed, spaced, longer;
  r.headers.add("x-env", "prod");
  dev.headers.add("x-env", "dev");
  repeated.headers.add("x-env", "dev");
  repeated.headers.add("X-ENV", "prod");
  listed.headers.add("x-env", "dev,prod,test");
  spaced.headers.add("x-env", "dev, prod");
  longer.headers.add("x-env", "production");
  CHECK(allows(prod, r));
  CHECK_FALSE(allows(prod, dev));
  CHECK_FALSE(allows(prod, none));
  CHECK(allows(prod, repeated));
  CHECK(allows(prod, listed));
  CHECK_FALSE(allows(prod, spaced));  // Istio's regex does not trim
  CHECK_FALSE(allows(prod, longer));

  CHECK(allows(when("request.headers[x-env]", {"pro*"}), longer));
  CHECK(allows(when("request.headers[x-env]", {"pro*"}), listed));
  CHECK_FALSE(allows(when("request.headers[x-env]", {"rod*"}), r));
  CHECK(allows(when("request.headers[x-env]", {"*ev"}), listed));
  CHECK_FALSE(allows(when("request.headers[x-env]", {"*es"}), listed));
  Req empty_value;
  empty_value.headers.add("x-env", "");
  CHECK(allows(when("request.headers[x-env]", {"*"}), empty_value));  // presence
  CHECK_FALSE(allows(when("request.headers[x-env]", {"*"}), none));

  AuthzRule not_prod = when("request.headers[x-env]", {}, {"prod"});
  CHECK_FALSE(allows(not_prod, r));
  CHECK_FALSE(allows(not_prod, repeated));
  CHECK(allows(not_prod, dev));
  CHECK(allows(not_prod, none));  // absent: no value matches
  // values and notValues together.
  AuthzRule both = when("request.headers[x-env]", {"*"}, {"prod"});
  CHECK(allows(both, dev));
  CHECK_FALSE(allows(both, r));
  CHECK_FALSE(allows(both, none));
}

TEST_CASE("authz: address conditions source.ip, remote.ip and destination.ip") {
  Req r;
  r.peer = ip("10.0.0.1");
  r.remote = ip("203.0.113.9");
  r.local = ip("2001:db8::10");
  CHECK(allows(when("source.ip", {"10.0.0.0/8"}), r));
  CHECK_FALSE(allows(when("source.ip", {"203.0.113.9"}), r));
  CHECK_FALSE(allows(when("source.ip", {}, {"10.0.0.1"}), r));
  CHECK(allows(when("remote.ip", {"203.0.113.0/24"}), r));
  CHECK_FALSE(allows(when("remote.ip", {"10.0.0.0/8"}), r));
  CHECK(allows(when("remote.ip", {}, {"10.0.0.0/8"}), r));
  CHECK(allows(when("destination.ip", {"2001:db8::/64"}), r));
  CHECK_FALSE(allows(when("destination.ip", {"10.9.0.1"}), r));
  CHECK_FALSE(allows(when("destination.ip", {}, {"2001:db8::10"}), r));
}

TEST_CASE("authz: identity conditions source.principal and source.namespace") {
  Req r, plain;
  r.san("spiffe://cluster.local/ns/default/sa/sleep");
  CHECK(allows(when("source.principal", {"cluster.local/ns/default/sa/sleep"}), r));
  CHECK(allows(when("source.principal", {"*/sa/sleep"}), r));
  CHECK_FALSE(allows(when("source.principal", {"cluster.local/ns/default/sa/sleep"}), plain));
  CHECK_FALSE(allows(when("source.principal", {}, {"*"}), r));
  CHECK(allows(when("source.principal", {}, {"*"}), plain));
  CHECK(allows(when("source.namespace", {"default"}), r));
  CHECK(allows(when("source.namespace", {"def*"}), r));
  CHECK_FALSE(allows(when("source.namespace", {"prod"}), r));
  CHECK_FALSE(allows(when("source.namespace", {}, {"default"}), r));
  CHECK(allows(when("source.namespace", {}, {"default"}), plain));
}

TEST_CASE("authz: JWT conditions principal, audiences, presenter and claims") {
  Req r, none;
  r.token("https://issuer.example.com", "user-1");
  r.aud = {"api.example.com", "other.example.com"};
  r.azp = "web-client";
  r.claims = {{{"groups"}, {"admin", "dev"}},
              {{"iss"}, {"https://issuer.example.com"}},
              {{"realm", "roles"}, {"reader"}}};

  CHECK(allows(when("request.auth.principal", {"https://issuer.example.com/user-1"}), r));
  CHECK(allows(when("request.auth.principal", {"*/user-1"}), r));
  CHECK_FALSE(allows(when("request.auth.principal", {"https://issuer.example.com/user-2"}), r));
  CHECK_FALSE(allows(when("request.auth.principal", {"*"}), none));
  CHECK(allows(when("request.auth.principal", {}, {"*"}), none));

  CHECK(allows(when("request.auth.audiences", {"other.example.com"}), r));  // any element
  CHECK(allows(when("request.auth.audiences", {"api.*"}), r));
  CHECK_FALSE(allows(when("request.auth.audiences", {"third.example.com"}), r));
  CHECK_FALSE(allows(when("request.auth.audiences", {}, {"*.example.com"}), r));
  CHECK_FALSE(allows(when("request.auth.audiences", {"*"}), none));

  CHECK(allows(when("request.auth.presenter", {"web-client"}), r));
  CHECK(allows(when("request.auth.presenter", {"*-client"}), r));
  CHECK_FALSE(allows(when("request.auth.presenter", {"cli"}), r));
  Req no_azp = r;
  no_azp.azp.clear();
  CHECK_FALSE(allows(when("request.auth.presenter", {"*"}), no_azp));
  CHECK(allows(when("request.auth.presenter", {}, {"web-client"}), no_azp));

  CHECK(allows(when("request.auth.claims[groups]", {"dev"}), r));
  CHECK(allows(when("request.auth.claims[groups]", {"adm*"}), r));
  CHECK_FALSE(allows(when("request.auth.claims[groups]", {"ops"}), r));
  CHECK_FALSE(allows(when("request.auth.claims[groups]", {}, {"admin"}), r));
  CHECK_FALSE(allows(when("request.auth.claims[iss]", {"*@foo.com"}), r));
  CHECK(allows(when("request.auth.claims[iss]", {"*@foo.com", "https://*"}), r));
  CHECK(allows(when("request.auth.claims[iss]", {"https://issuer.example.com"}), r));
  CHECK(allows(when("request.auth.claims[realm][roles]", {"reader"}), r));
  CHECK_FALSE(allows(when("request.auth.claims[realm][roles]", {"writer"}), r));
  CHECK_FALSE(allows(when("request.auth.claims[roles]", {"reader"}), r));  // not nested
  CHECK_FALSE(allows(when("request.auth.claims[missing]", {"*"}), r));
  CHECK(allows(when("request.auth.claims[missing]", {}, {"x"}), r));
  CHECK_FALSE(allows(when("request.auth.claims[groups]", {"*"}), none));
}

TEST_CASE("authz: destination.port and connection.sni conditions") {
  Req r;
  r.port = 8443;
  r.sni = "api.example.com";
  CHECK(allows(when("destination.port", {"8443"}), r));
  CHECK_FALSE(allows(when("destination.port", {"443"}), r));
  CHECK_FALSE(allows(when("destination.port", {}, {"8443"}), r));
  CHECK(allows(when("connection.sni", {"api.example.com"}), r));
  CHECK(allows(when("connection.sni", {"*.example.com"}), r));
  CHECK(allows(when("connection.sni", {"api.*"}), r));
  CHECK_FALSE(allows(when("connection.sni", {"API.example.com"}), r));  // case-sensitive
  CHECK_FALSE(allows(when("connection.sni", {}, {"*"}), r));
  Req plain;  // no TLS: no server name
  CHECK_FALSE(allows(when("connection.sni", {"*"}), plain));
  CHECK(allows(when("connection.sni", {}, {"*"}), plain));
}

TEST_CASE("authz: all conditions of a rule must hold") {
  AuthzRule rule{
      .when = {{"request.headers[x-a]", {"1"}, {}}, {"request.headers[x-b]", {"2"}, {}}}};
  Req both, one;
  both.headers.add("x-a", "1");
  both.headers.add("x-b", "2");
  one.headers.add("x-a", "1");
  CHECK(allows(rule, both));
  CHECK_FALSE(allows(rule, one));
}

// ---------------------------------------------------------------------------
// Actions

TEST_CASE("authz: CUSTOM is decided before DENY, DENY before ALLOW") {
  auto custom =
      policy("ext-authz", AuthzAction::custom, {to({.paths = {"/admin/*"}})}, "istio-system");
  custom.provider = "my-ext-authz";
  auto deny = policy("deny-admin-delete", AuthzAction::deny, {to({.methods = {"DELETE"}})});
  auto allow = policy("allow-get", AuthzAction::allow, {to({.methods = {"GET", "DELETE"}})});
  AuthzEngine engine = compile_ok({allow, deny, custom});
  CHECK(engine.custom_provider() == "my-ext-authz");

  Req admin_delete;
  admin_delete.method = "DELETE";
  admin_delete.path = "/admin/users";
  AuthzDecision d = engine.evaluate(admin_delete.view());
  REQUIRE(d.verdict == AuthzVerdict::ext_authz);
  CHECK(d.provider == "my-ext-authz");
  REQUIRE(d.rule);
  CHECK(d.rule->id == "ns[istio-system]-policy[ext-authz]-rule[0]");
  CHECK(d.details().empty());
  // The provider allowed: DENY still applies after it.
  d = engine.evaluate(admin_delete.view(), AuthzStage::rbac);
  REQUIRE(d.verdict == AuthzVerdict::deny);
  REQUIRE(d.rule);
  CHECK(d.rule->action == AuthzAction::deny);
  CHECK(d.details() ==
        "rbac_access_denied_matched_policy[ns[foo]-policy[deny-admin-delete]-rule[0]]");

  Req get_admin;
  get_admin.path = "/admin/users";
  CHECK(engine.evaluate(get_admin.view()).verdict == AuthzVerdict::ext_authz);
  d = engine.evaluate(get_admin.view(), AuthzStage::rbac);
  CHECK(d.verdict == AuthzVerdict::allow);
  REQUIRE(d.rule);
  CHECK(d.rule->name == "allow-get");

  // CUSTOM does not match: straight to DENY and ALLOW.
  Req user_delete;
  user_delete.method = "DELETE";
  user_delete.path = "/users";
  d = engine.evaluate(user_delete.view());
  CHECK(d.verdict == AuthzVerdict::deny);
  Req post;
  post.method = "POST";
  d = engine.evaluate(post.view());
  CHECK(d.verdict == AuthzVerdict::deny);
  CHECK(d.rule == nullptr);
  CHECK(d.details() == "rbac_access_denied_matched_policy[none]");
  Req get;
  d = engine.evaluate(get.view());
  CHECK(d.verdict == AuthzVerdict::allow);
  CHECK(d.details().empty());
}

TEST_CASE("authz: DENY wins over a matching ALLOW, and without ALLOW policies all is allowed") {
  auto deny = policy("deny-dev", AuthzAction::deny, {when("request.headers[x-env]", {"dev"})});
  auto allow_all = policy("allow-all", AuthzAction::allow, {AuthzRule{}});
  AuthzEngine both = compile_ok({deny, allow_all});
  Req dev, prod;
  dev.headers.add("x-env", "dev");
  prod.headers.add("x-env", "prod");
  CHECK(both.evaluate(dev.view()).verdict == AuthzVerdict::deny);
  CHECK(both.evaluate(prod.view()).verdict == AuthzVerdict::allow);

  AuthzEngine deny_only = compile_ok({deny});
  AuthzDecision d = deny_only.evaluate(prod.view());
  CHECK(d.verdict == AuthzVerdict::allow);
  CHECK(d.rule == nullptr);  // no ALLOW policy decided it

  AuthzEngine nothing = compile_ok({});
  CHECK(nothing.empty());
  CHECK(nothing.evaluate(dev.view()).verdict == AuthzVerdict::allow);
  CHECK_FALSE(deny_only.empty());
}

TEST_CASE("authz: the reported policy is the first matching rule id, root namespace DENY first") {
  auto b = policy("b-deny", AuthzAction::deny, {AuthzRule{}});
  auto a = policy("a-deny", AuthzAction::deny, {to({.methods = {"POST"}}), AuthzRule{}});
  AuthzEngine engine = compile_ok({b, a});
  Req get;
  AuthzDecision d = engine.evaluate(get.view());
  REQUIRE(d.rule);
  CHECK(d.rule->id == "ns[foo]-policy[a-deny]-rule[1]");  // rule[0] is POST only
  CHECK(d.rule->rule == 1);
  CHECK(d.rule->ns == "foo");

  auto root = policy("z-deny", AuthzAction::deny, {AuthzRule{}}, "istio-system");
  AuthzEngine with_root = compile_ok({a, root});
  d = with_root.evaluate(get.view());
  REQUIRE(d.rule);
  CHECK(d.rule->id == "ns[istio-system]-policy[z-deny]-rule[0]");
  AuthzEngine other_root = compile_ok({a, root}, {.root_namespace = "mesh-root"});
  d = other_root.evaluate(get.view());
  REQUIRE(d.rule);
  CHECK(d.rule->id == "ns[foo]-policy[a-deny]-rule[1]");
}

TEST_CASE("authz: AUDIT marks requests and never denies") {
  auto audit = policy("audit-admin", AuthzAction::audit, {to({.paths = {"/admin*"}})});
  Req admin, home;
  admin.path = "/admin";
  home.path = "/";
  AuthzEngine only_audit = compile_ok({audit});
  AuthzDecision d = only_audit.evaluate(admin.view());
  CHECK(d.verdict == AuthzVerdict::allow);
  REQUIRE(d.audit);
  CHECK(d.audit->id == "ns[foo]-policy[audit-admin]-rule[0]");
  CHECK(d.audit->action == AuthzAction::audit);
  d = only_audit.evaluate(home.view());
  CHECK(d.verdict == AuthzVerdict::allow);
  CHECK(d.audit == nullptr);

  // Audited and denied are independent.
  auto deny = policy("deny-all", AuthzAction::deny, {AuthzRule{}});
  AuthzEngine with_deny = compile_ok({audit, deny});
  d = with_deny.evaluate(admin.view());
  CHECK(d.verdict == AuthzVerdict::deny);
  CHECK(d.audit != nullptr);

  // AUDIT without rules compiles and audits nothing.
  AuthzEngine empty_audit = compile_ok({policy("audit-none", AuthzAction::audit, {})});
  d = empty_audit.evaluate(admin.view());
  CHECK(d.verdict == AuthzVerdict::allow);
  CHECK(d.audit == nullptr);
}

TEST_CASE("authz: policies without rules and the empty rule") {
  Req r;
  // spec: {} is an ALLOW policy without rules: it allows nothing.
  AuthzEngine allow_nothing = compile_ok({policy("allow-nothing", AuthzAction::allow, {})});
  AuthzDecision d = allow_nothing.evaluate(r.view());
  CHECK(d.verdict == AuthzVerdict::deny);
  CHECK(d.details() == "rbac_access_denied_matched_policy[none]");
  // ... but another ALLOW policy still can.
  AuthzEngine plus =
      compile_ok({policy("allow-nothing", AuthzAction::allow, {}),
                  policy("allow-get", AuthzAction::allow, {to({.methods = {"GET"}})})});
  CHECK(plus.evaluate(r.view()).verdict == AuthzVerdict::allow);
  // rules: [{}] matches everything.
  CHECK(compile_ok({policy("allow-all", AuthzAction::allow, {AuthzRule{}})})
            .evaluate(r.view())
            .verdict == AuthzVerdict::allow);
  CHECK(compile_ok({policy("deny-all", AuthzAction::deny, {AuthzRule{}})})
            .evaluate(r.view())
            .verdict == AuthzVerdict::deny);
  // DENY and CUSTOM without rules would never trigger: Istio rejects them.
  CHECK(compile_error({policy("deny-none", AuthzAction::deny, {})})
            .starts_with("AuthorizationPolicy foo/deny-none: rules: DENY action without rules is "
                         "never triggered"));
  auto custom = policy("custom-none", AuthzAction::custom, {});
  custom.provider = "x";
  CHECK(compile_error({custom}).starts_with(
      "AuthorizationPolicy foo/custom-none: rules: CUSTOM action without rules"));
}

TEST_CASE("authz: a request head gives method, authority, path without query, headers, port") {
  RequestHead head;
  head.method = "POST";
  head.authority = "api.example.com:8443";
  head.target = "/admin/users?id=7";
  head.listener_port = 8443;
  head.headers.add("x-env", "prod");
  AuthzRequest r = authz_request(head);
  CHECK(r.method == "POST");
  CHECK(r.authority == "api.example.com:8443");
  CHECK(r.path == "/admin/users");
  CHECK(r.destination_port == 8443);
  REQUIRE(r.headers == &head.headers);
  AuthzEngine engine = compile_ok({policy(
      "allow", AuthzAction::allow,
      {AuthzRule{
          .to = {{.hosts = {"api.example.com:*"}, .ports = {"8443"}, .paths = {"/admin/users"}}},
          .when = {{"request.headers[x-env]", {"prod"}, {}}}}})});
  CHECK(engine.evaluate(r).verdict == AuthzVerdict::allow);
  head.target = "/admin/users/7";
  CHECK(engine.evaluate(authz_request(head)).verdict == AuthzVerdict::deny);
}

TEST_CASE("authz: the engine moves without invalidating decisions") {
  AuthzEngine a = compile_ok({policy("deny-all", AuthzAction::deny, {AuthzRule{}})});
  Req r;
  AuthzDecision d = a.evaluate(r.view());
  AuthzEngine b = std::move(a);
  REQUIRE(d.rule);
  CHECK(d.rule->name == "deny-all");
  CHECK(b.evaluate(r.view()).rule == d.rule);
}

// ---------------------------------------------------------------------------
// Validation

TEST_CASE("authz: invalid addresses and ports name the field") {
  CHECK(compile_error(from({.ip_blocks = {"10.0.0.0/8", "10.0.0.0/33"}})) ==
        "AuthorizationPolicy foo/bad: rules[0].from[0].source.ipBlocks[1]: invalid CIDR "
        "\"10.0.0.0/33\"");
  CHECK(compile_error(from({.not_remote_ip_blocks = {"1.2.3"}})) ==
        "AuthorizationPolicy foo/bad: rules[0].from[0].source.notRemoteIpBlocks[0]: invalid IP "
        "address \"1.2.3\"");
  CHECK(compile_error(to({.ports = {"http"}})) ==
        "AuthorizationPolicy foo/bad: rules[0].to[0].operation.ports[0]: invalid port \"http\": "
        "must be a number in [0, 65535]");
  CHECK(compile_error(to({.not_ports = {"65536"}})).find("operation.notPorts[0]: invalid port") !=
        std::string::npos);
  CHECK(compile_error(to({.ports = {"-1"}})).find("invalid port \"-1\"") != std::string::npos);
  CHECK(compile_error(to({.ports = {"99999999999999"}})).find("invalid port") != std::string::npos);
  CHECK(compile_error(when("destination.port", {"80", "x"})) ==
        "AuthorizationPolicy foo/bad: rules[0].when[0].values[1]: invalid port \"x\": must be a "
        "number in [0, 65535]");
  CHECK(compile_error(when("remote.ip", {}, {"300.1.1.1"})) ==
        "AuthorizationPolicy foo/bad: rules[0].when[0].notValues[0]: invalid IP address "
        "\"300.1.1.1\"");
  CHECK(compile_error(when("source.ip", {"::/200"})).find("invalid CIDR \"::/200\"") !=
        std::string::npos);
}

TEST_CASE("authz: empty values, sources and operations are refused") {
  CHECK(compile_error(to({.methods = {"GET", ""}})) ==
        "AuthorizationPolicy foo/bad: rules[0].to[0].operation.methods[1]: empty value not "
        "allowed");
  CHECK(compile_error(from({.request_principals = {""}})) ==
        "AuthorizationPolicy foo/bad: rules[0].from[0].source.requestPrincipals[0]: empty value "
        "not allowed");
  CHECK(compile_error(from({.not_namespaces = {""}})).find("source.notNamespaces[0]: empty") !=
        std::string::npos);
  CHECK(compile_error(when("request.headers[x]", {""})) ==
        "AuthorizationPolicy foo/bad: rules[0].when[0].values[0]: empty value not allowed");
  CHECK(compile_error(from({})) ==
        "AuthorizationPolicy foo/bad: rules[0].from[0].source: must not be empty");
  CHECK(compile_error(to({})) ==
        "AuthorizationPolicy foo/bad: rules[0].to[0].operation: must not be empty");
  AuthzRule second{.from = {{.ip_blocks = {"10.0.0.1"}}, {}}};
  CHECK(compile_error(second).find("rules[0].from[1].source: must not be empty") !=
        std::string::npos);
  CHECK(compile_error({policy("ok", AuthzAction::allow, {AuthzRule{}, to({})})})
            .find("rules[1].to[0].operation") != std::string::npos);
}

TEST_CASE("authz: condition keys Istio rejects, and malformed ones") {
  CHECK(compile_error(when("", {"x"})) ==
        "AuthorizationPolicy foo/bad: rules[0].when[0].key: must not be empty");
  CHECK(compile_error(when("request.headers[x]", {})) ==
        "AuthorizationPolicy foo/bad: rules[0].when[0]: at least one of values or notValues must "
        "be set for key request.headers[x]");
  CHECK(compile_error(when("request.path", {"/x"})) ==
        "AuthorizationPolicy foo/bad: rules[0].when[0].key: unknown attribute \"request.path\"");
  CHECK(compile_error(when("source.serviceAccount", {"x"})).find("unknown attribute") !=
        std::string::npos);
  CHECK(compile_error(when("destination.namespace", {"x"})).find("replaced by the metadata") !=
        std::string::npos);
  CHECK(compile_error(when("destination.labels[app]", {"x"})).find("workload selector") !=
        std::string::npos);
  CHECK(compile_error(when("destination.user", {"x"})).find("only supported in v1alpha1") !=
        std::string::npos);
  CHECK(compile_error(when("experimental.envoy.filters.a.b[c]", {"x"})).find("not supported") !=
        std::string::npos);
  for (std::string key :
       {"request.headers", "request.headers[]", "request.headersX[a]", "request.headers[a"}) {
    CHECK_MESSAGE(compile_error(when(key, {"x"})).find("expecting request.headers[NAME]") !=
                      std::string::npos,
                  key);
  }
  for (std::string key : {"request.auth.claims", "request.auth.claims[]", "request.auth.claims[a]b",
                          "request.auth.claims[a][", "request.auth.claims[[a]]"}) {
    CHECK_MESSAGE(compile_error(when(key, {"x"})).find("expecting request.auth.claims[NAME]") !=
                      std::string::npos,
                  key);
  }
  CHECK(compile_error(from({.namespaces = {"a.b"}})) ==
        "AuthorizationPolicy foo/bad: rules[0].from[0].source.namespaces[0]: invalid namespace "
        "\"a.b\": a Kubernetes namespace name, '*' allowed");
}

TEST_CASE("authz: path templates Istio or Envoy refuse") {
  for (std::string path : {"/api/{name}/{*}", "/api/{}/{*}", "/api/{x=*}/{*}", "/api/*/{*}",
                           "/api/{**}/{*}", "api/{*}", "/a{*}*"}) {
    CHECK_MESSAGE(compile_error(to({.paths = {path}}))
                          .find("rules[0].to[0].operation.paths[0]: invalid path template") !=
                      std::string::npos,
                  path);
  }
  CHECK(compile_error(to({.not_paths = {"/{**}/{**}"}})).find("operation.notPaths[0]") !=
        std::string::npos);
  // Without {*} or {**} a path is no template: braces are literal.
  Req braces;
  braces.path = "/api/{name}";
  CHECK(allows(to({.paths = {"/api/{name}"}}), braces));
}

TEST_CASE("authz: action and provider rules") {
  auto custom = policy("ext", AuthzAction::custom, {AuthzRule{}});
  CHECK(compile_error({custom}) ==
        "AuthorizationPolicy foo/ext: provider.name: must not be empty with action CUSTOM");
  auto allow = policy("p", AuthzAction::allow, {AuthzRule{}});
  allow.provider = "x";
  CHECK(compile_error({allow}) ==
        "AuthorizationPolicy foo/p: provider.name: only allowed with action CUSTOM, found ALLOW");

  // CUSTOM cannot use the mTLS or JWT identity.
  auto with = [](AuthzRule rule) {
    auto p = policy("ext", AuthzAction::custom, {std::move(rule)});
    p.provider = "authz";
    return compile_error({p});
  };
  CHECK(with(from({.principals = {"a"}})) ==
        "AuthorizationPolicy foo/ext: rules[0].from[0].source.principals: not supported with "
        "action CUSTOM");
  CHECK(with(from({.not_request_principals = {"*"}})).find("notRequestPrincipals: not supported") !=
        std::string::npos);
  CHECK(with(from({.namespaces = {"a"}})).find("source.namespaces: not supported") !=
        std::string::npos);
  CHECK(with(when("request.auth.claims[iss]", {"x"})) ==
        "AuthorizationPolicy foo/ext: rules[0].when[0].key: request.auth.claims[iss] is not "
        "supported with action CUSTOM");
  CHECK(with(when("source.principal", {"x"})).find("is not supported with action CUSTOM") !=
        std::string::npos);
  // Addresses and request attributes are fine.
  auto fine = policy("ext", AuthzAction::custom,
                     {AuthzRule{.from = {{.remote_ip_blocks = {"10.0.0.0/8"}}},
                                .when = {{"request.headers[x]", {"y"}, {}}}}});
  fine.provider = "authz";
  compile_ok({fine});

  // One provider per gateway.
  auto other = policy("ext-2", AuthzAction::custom, {AuthzRule{}}, "bar");
  other.provider = "other-authz";
  CHECK(compile_error({fine, other}) ==
        "AuthorizationPolicy bar/ext-2: provider.name: \"other-authz\": only one CUSTOM provider "
        "per gateway (Istio's default), and AuthorizationPolicy foo/ext uses \"authz\"");
  other.provider = "authz";
  compile_ok({fine, other});

  CHECK(compile_error({policy("", AuthzAction::allow, {})}) ==
        "AuthorizationPolicy foo/: metadata.name: must not be empty");
  CHECK(compile_error({policy("same", AuthzAction::allow, {}),
                       policy("same", AuthzAction::deny, {AuthzRule{}})}) ==
        "AuthorizationPolicy foo/same: metadata.name: duplicate policy (same namespace and name)");
  compile_ok(
      {policy("same", AuthzAction::allow, {}), policy("same", AuthzAction::allow, {}, "bar")});
}

TEST_CASE("authz: trace lists every rule in evaluation order with the first failing field") {
  AuthzOperation admin{.paths = {"/admin*"}};
  AuthzOperation get{.methods = {"GET"}};
  AuthzOperation post{.methods = {"POST"}};
  AuthzRule two_ops{.to = {get, post}};
  AuthzRule header = when("request.headers[x-user]", {"alice"});
  AuthzEngine engine = compile_ok({policy("allow-x", AuthzAction::allow, {header, two_ops}),
                                   policy("deny-admin", AuthzAction::deny, {to(admin)})});
  Req r;
  r.method = "PUT";
  r.path = "/api";
  auto t = engine.trace(r.view());
  REQUIRE(t.size() == 3);
  // DENY before ALLOW; ALLOW rules by id.
  CHECK(t[0].rule->name == "deny-admin");
  CHECK_FALSE(t[0].matched);
  CHECK(t[0].why == "rules[0].to[0].operation.paths does not hold for path \"/api\"");
  CHECK(t[1].rule->name == "allow-x");
  CHECK(t[1].rule->rule == 0);
  CHECK(t[1].why == "rules[0].when[0].values does not hold");
  CHECK(t[2].why ==
        "rules[1].to[0].operation.methods does not hold for method \"PUT\", nor does any of the "
        "other 1");
  r.path = "/admin/x";
  r.method = "POST";
  r.headers.add("x-user", "alice");
  t = engine.trace(r.view());
  REQUIRE(t.size() == 3);
  CHECK(t[0].matched);
  CHECK(t[0].why.empty());
  CHECK(t[1].matched);
  CHECK(t[2].matched);
  // not* fields are named as such.
  AuthzEngine negated =
      compile_ok({policy("p", AuthzAction::allow, {to(AuthzOperation{.not_paths = {"/admin*"}})})});
  t = negated.trace(r.view());
  REQUIRE(t.size() == 1);
  CHECK(t[0].why == "rules[0].to[0].operation.notPaths does not hold for path \"/admin/x\"");
}

}  // namespace test_authz
