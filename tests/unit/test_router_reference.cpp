// The compiled router (hashed domains, path/regex/header index) against a plain linear
// first-match reference written here from the Istio/Envoy rules, on random
// configurations and requests. The index must never change a routing result.

#include <doctest/doctest.h>
#include <re2/re2.h>

#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/router.hpp"

namespace test_router_reference {

using namespace sluice;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool string_match(const StringMatch& m, std::string_view v) {
  switch (m.kind) {
    case StringMatch::Kind::exact:
      return v == m.value;
    case StringMatch::Kind::prefix:
      return v.substr(0, m.value.size()) == m.value;
    case StringMatch::Kind::suffix:
      return v.size() >= m.value.size() && v.substr(v.size() - m.value.size()) == m.value;
    case StringMatch::Kind::regex: {
      // Compiled once per pattern: large configs repeat patterns often.
      static std::map<std::string, std::unique_ptr<RE2>> cache;
      auto& re = cache[m.value];
      if (!re) re = std::make_unique<RE2>(m.value);
      return RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *re);
    }
    case StringMatch::Kind::present:
      return true;
  }
  return false;
}

std::optional<std::string> header_value(const RequestHead& r, const std::string& name) {
  std::optional<std::string> out;
  for (const auto& [n, v] : r.headers.entries()) {
    if (lower(n) != lower(name)) continue;
    out = out ? *out + "," + v : v;
  }
  return out;
}

std::optional<std::string> query_value(std::string_view query, const std::string& name) {
  size_t start = 0;
  while (start <= query.size() && !query.empty()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    std::string_view pair = query.substr(start, end - start);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return std::string(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    start = end + 1;
  }
  return std::nullopt;
}

bool reference_block(const Matcher& m, const RequestHead& r) {
  if (m.uri) {
    std::string_view path = r.path();
    bool icase = m.ignore_uri_case && m.uri->kind != StringMatch::Kind::regex;
    if (icase) {
      StringMatch lowered{m.uri->kind, lower(m.uri->value)};
      if (!string_match(lowered, lower(path))) return false;
    } else if (!string_match(*m.uri, path)) {
      return false;
    }
  }
  if (m.method && !string_match(*m.method, r.method)) return false;
  if (m.authority && !string_match(*m.authority, r.authority)) return false;
  if (m.scheme && !string_match(*m.scheme, r.scheme)) return false;
  if (m.port && *m.port != r.listener_port) return false;
  for (const auto& h : m.headers) {
    auto v = header_value(r, h.name);
    bool positive = v && string_match(h.match, *v);
    if (positive == h.invert) return false;
  }
  for (const auto& q : m.query_params) {
    auto v = query_value(r.query(), q.name);
    if (!v || !string_match(q.match, *v)) return false;
  }
  return true;
}

struct Expected {
  size_t vhost = 0;
  std::optional<size_t> route;
  std::optional<size_t> block;
};

// Tiers: exact with port, exact, wildcard (longest suffix; with port first),
// "*". Returns nullopt when no virtual host matches.
std::optional<size_t> reference_host(const RouterConfig& cfg, std::string_view authority) {
  std::string full = lower(authority);
  std::string host = full;
  bool has_port = false;
  if (size_t c = full.rfind(':');
      c != std::string::npos && c + 1 < full.size() && full.find(':') == c) {
    host = full.substr(0, c);
    has_port = true;
  }
  std::optional<size_t> best;
  int best_tier = 99;
  long best_len = -1;
  int best_port = 0;
  for (size_t i = 0; i < cfg.virtual_hosts.size(); ++i)
    for (const auto& raw : cfg.virtual_hosts[i].domains) {
      std::string d = lower(raw);
      bool d_port = d.find(':') != std::string::npos;
      const std::string& subject = d_port ? full : host;
      if (d_port && !has_port) continue;
      int tier;
      long len = 0;
      if (d == "*") {
        tier = 3;
      } else if (d[0] == '*') {
        std::string suffix = d.substr(1);
        if (subject.size() <= suffix.size() ||
            subject.compare(subject.size() - suffix.size(), suffix.size(), suffix) != 0)
          continue;
        tier = 2;
        len = static_cast<long>(suffix.size());
      } else {
        if (subject != d) continue;
        tier = d_port ? 0 : 1;
      }
      bool better = tier < best_tier || (tier == best_tier && len > best_len) ||
                    (tier == best_tier && len == best_len && d_port && !best_port);
      if (better) {
        best = i;
        best_tier = tier;
        best_len = len;
        best_port = d_port;
      }
    }
  return best;
}

std::optional<Expected> reference(const RouterConfig& cfg, const RequestHead& r) {
  auto vh = reference_host(cfg, r.authority);
  if (!vh) return std::nullopt;
  Expected e{*vh, {}, {}};
  const auto& routes = cfg.virtual_hosts[*vh].routes;
  for (size_t j = 0; j < routes.size(); ++j) {
    if (routes[j].matches.empty()) {
      e.route = j;
      return e;
    }
    for (size_t k = 0; k < routes[j].matches.size(); ++k)
      if (reference_block(routes[j].matches[k], r)) {
        e.route = j;
        e.block = k;
        return e;
      }
  }
  return e;
}

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool chance(int percent) { return pick(100) < static_cast<size_t>(percent); }
  template <typename T>
  const T& one_of(const std::vector<T>& v) {
    return v[pick(v.size())];
  }

  std::string path() {
    static const std::vector<std::string> parts = {"/",    "/a",  "/A", "/ab", "/api",
                                                   "/API", "/v1", "/b", "/x",  ""};
    std::string p;
    size_t n = 1 + pick(3);
    for (size_t i = 0; i < n; ++i) p += one_of(parts);
    return p.empty() ? "/" : p;
  }

  StringMatch string_match(bool for_uri) {
    // With literal prefixes (indexed by them), with case-insensitive parts,
    // anchors and alternations that shorten or remove the literal, and none.
    static const std::vector<std::string> regexes = {
        "/a.*",        "/(a|b)+",      R"(/api/v\d)", "(?i)/ab.*",       "/.*x",
        "[a-z/]+",     R"(\d+$)",      "/api.*",      "/api/v1.*",       "(?i)/API/.*",
        "^/ab(/.*)?$", "/a|/b",        "/ab?/?.*",    "/a{2,3}.*",       "(/api|/ab).*",
        "/A.*",        "(?i:/A)b.*",   "/ab\\.?.*",   "/v1(/v1)*",       "/x*",
        "/[aA]pi/.*",  "(/[ab])+/x.*", ".*",          "/api/v1/?[a-z]*", "a.*"};
    size_t k = pick(for_uri ? 3 : 5);
    if (k == 0) return StringMatch::exact(path());
    if (k == 1) return StringMatch::prefix(path().substr(0, 1 + pick(4)));
    if (k == 2) return StringMatch::regex(one_of(regexes));
    if (k == 3) return StringMatch::suffix(one_of(std::vector<std::string>{"1", "a", "ab"}));
    return StringMatch::present();
  }

  StringMatch value_match() {
    static const std::vector<std::string> values = {"1", "2", "ab", "a", "", "1,2"};
    switch (pick(5)) {
      case 0:
        return StringMatch::exact(one_of(values));
      case 1:
        return StringMatch::prefix(one_of(values));
      case 2:
        return StringMatch::regex(one_of(std::vector<std::string>{"[0-9]+", "a.*", "1|2"}));
      case 3:
        return StringMatch::present();
      default:
        return StringMatch::suffix(one_of(values));
    }
  }

  Matcher block() {
    Matcher m;
    // Mostly indexable shapes, as real configs are: exact, prefix, regex
    // (most with a literal prefix) and header-exact-only blocks.
    size_t shape = pick(14);
    if (shape < 3)
      m.uri = StringMatch::exact(path());
    else if (shape < 6)
      m.uri = StringMatch::prefix(path().substr(0, pick(5)));
    else if (shape < 9)
      m.uri = StringMatch::regex(regex_with_prefix());
    else if (shape < 10)
      m.uri = string_match(true);
    else if (shape < 13)
      m.headers.push_back({one_of(header_names_), header_exact(), false});
    m.ignore_uri_case = chance(25);
    if (chance(15)) m.method = StringMatch::exact(chance(50) ? "GET" : "POST");
    if (chance(5)) m.scheme = StringMatch::exact("https");
    if (chance(5)) m.authority = StringMatch::prefix("a.");
    if (chance(5)) m.port = chance(50) ? 80 : 8080;
    if (chance(20)) m.headers.push_back({one_of(header_names_), value_match(), chance(30)});
    if (chance(10)) {
      StringMatch q = value_match();
      if (q.kind == StringMatch::Kind::suffix) q = StringMatch::present();
      m.query_params.push_back({one_of(query_names_), q});
    }
    return m;
  }

  // A regex starting with a literal built from path pieces, then a tail.
  std::string regex_with_prefix() {
    static const std::vector<std::string> tails = {
        "", ".*", "(/.*)?", "[a-z]+", R"(/\d+)", "/?[a-zA-Z0-9]*", "(?i)/ab.*", "|/x", "b?.*", "$"};
    std::string literal = path();
    if (chance(30)) literal = literal.substr(0, 1 + pick(literal.size()));
    std::string quoted = RE2::QuoteMeta(literal);
    return (chance(10) ? "^" : "") + quoted + one_of(tails);
  }

  StringMatch header_exact() {
    return StringMatch::exact(
        one_of(std::vector<std::string>{"1", "2", "ab", "a", "", "21", "1,2", "AB"}));
  }

  RouterConfig config() {
    static const std::vector<std::string> pool = {
        "a.com", "*.a.com", "b.a.com", "*", "B.a.com:8080", "*.b.a.com", "*-x.a.com", "c.com:81"};
    RouterConfig cfg;
    cfg.name = "ref";
    size_t hosts = 1 + pick(3);
    for (size_t i = 0; i < hosts; ++i)
      cfg.virtual_hosts.push_back({"vh" + std::to_string(i), {}, {}});
    for (const auto& d : pool)
      if (chance(70)) cfg.virtual_hosts[pick(hosts)].domains.push_back(d);
    for (auto& vh : cfg.virtual_hosts) {
      if (vh.domains.empty()) vh.domains.push_back("only-" + vh.name + ".com");
      size_t routes = chance(10) ? 150 + pick(150) : pick(30);
      for (size_t j = 0; j < routes; ++j) {
        Route r;
        r.name = "r" + std::to_string(j);
        size_t blocks = chance(8) ? 0 : 1 + (chance(25) ? pick(3) : 0);
        for (size_t k = 0; k < blocks; ++k) r.matches.push_back(block());
        r.direct_response = DirectResponse{200, ""};
        vh.routes.push_back(std::move(r));
      }
    }
    return cfg;
  }

  RequestHead request() {
    static const std::vector<std::string> authorities = {
        "a.com",    "A.COM:80", "b.a.com", "x.b.a.com", "b.a.com:8080", "q-x.a.com",
        "c.com:81", "c.com",    "zzz.org", "-x.a.com",  "a.com:8080"};
    RequestHead r;
    r.authority = one_of(authorities);
    r.method = chance(70) ? "GET" : "POST";
    r.scheme = chance(80) ? "http" : "https";
    r.listener_port = chance(50) ? 80 : 8080;
    r.target = path();
    if (chance(40)) {
      r.target += "?";
      size_t n = 1 + pick(3);
      for (size_t i = 0; i < n; ++i) {
        if (i) r.target += "&";
        r.target += one_of(query_names_);
        if (chance(80))
          r.target += "=" + one_of(std::vector<std::string>{"1", "2", "ab", "a1", ""});
      }
    }
    size_t headers = pick(4);
    for (size_t i = 0; i < headers; ++i)
      r.headers.add(chance(50) ? one_of(header_names_) : upper_first(one_of(header_names_)),
                    one_of(std::vector<std::string>{"1", "2", "ab", "a", "", "21", "AB"}));
    if (chance(20)) r.headers.add("accept", "*/*");
    return r;
  }

 private:
  static std::string upper_first(std::string s) {
    for (char& c : s)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return s;
  }

  std::mt19937 rng_;
  std::vector<std::string> header_names_ = {"x-user", "X-Env", "x-debug"};
  std::vector<std::string> query_names_ = {"v", "id", "debug"};
};

}  // namespace

TEST_CASE("router reference: compiled router agrees with a linear scan") {
  Generator gen(20240611);
  size_t configs = 0, requests = 0, routed = 0, no_host = 0;
  for (int c = 0; c < 120; ++c) {
    RouterConfig cfg = gen.config();
    auto compiled = Router::compile(cfg);
    REQUIRE_MESSAGE(compiled.ok(), compiled.error().to_string());
    const Router& router = compiled.value();
    ++configs;
    for (int q = 0; q < 40; ++q) {
      RequestHead r = gen.request();
      auto want = reference(cfg, r);
      auto got = router.match(r);
      Explanation e = router.explain(r);
      ++requests;
      INFO("config ", c, " authority ", r.authority, " target ", r.target);
      if (!want) {
        ++no_host;
        CHECK_FALSE(got.has_value());
        CHECK_FALSE(e.host_matched);
        continue;
      }
      CHECK(e.host_matched);
      CHECK(e.virtual_host_index == want->vhost);
      CHECK(e.route_index == want->route);
      CHECK(e.match_index == want->block);
      if (!want->route) {
        CHECK_FALSE(got.has_value());
        continue;
      }
      ++routed;
      REQUIRE(got.has_value());
      CHECK(got->virtual_host_index == want->vhost);
      CHECK(got->route_index == *want->route);
      CHECK(got->route == &router.config().virtual_hosts[want->vhost].routes[*want->route]);
    }
  }
  CHECK(requests == 4800);
  // The generator must exercise both outcomes, or the comparison proves little.
  CHECK(routed > requests / 4);
  CHECK(no_host > 0);
  CHECK(requests - routed - no_host > 0);
}

namespace {

// Thousands of rules over a few hundred keys, in the shapes the index files
// separately (exact, prefix, regex with a literal, header exact), plus some
// it cannot (regex without a literal, suffix headers), so requests hit rules
// deep in the table and candidate lists from several sources at once.
class BigGenerator {
 public:
  explicit BigGenerator(uint32_t seed) : gen_(seed) {}

  std::string key() { return "/s" + std::to_string(gen_.pick(keys_)); }

  Matcher block() {
    Matcher m;
    size_t shape = gen_.pick(100);
    std::string k = key();
    if (shape < 20) {
      m.path_exact(k + (gen_.chance(50) ? "/x" : ""));
    } else if (shape < 40) {
      m.path_prefix(k + (gen_.chance(50) ? "/" : ""));
    } else if (shape < 50) {
      m.path_exact(upper(k));
      m.ignore_uri_case = true;
    } else if (shape < 55) {
      m.path_prefix(upper(k) + "/");
      m.ignore_uri_case = true;
    } else if (shape < 75) {
      static const std::vector<std::string> tails = {"/[a-z]+/[0-9]+", "(/.*)?",   "/x", "/?",
                                                     "[0-9]*/x",       "(?i)/ITEM"};
      m.path_regex((gen_.chance(10) ? "(?i)" : "") + RE2::QuoteMeta(k) + gen_.one_of(tails));
    } else if (shape < 78) {
      m.path_regex(".*" + RE2::QuoteMeta(k) + "/x");  // no literal prefix
    } else if (shape < 96) {
      m.header(gen_.chance(80) ? "x-tenant" : "X-Zone", StringMatch::exact(tenant()));
    } else {
      m.header("x-tenant", StringMatch::suffix(std::to_string(gen_.pick(10))));
    }
    if (gen_.chance(15)) m.method = StringMatch::exact("POST");
    if (gen_.chance(5)) m.without_header("x-debug");
    return m;
  }

  RouterConfig config(size_t rules) {
    RouterConfig cfg{"big", {VirtualHost{"vh", {"*"}, {}}}};
    auto& routes = cfg.virtual_hosts[0].routes;
    routes.reserve(rules);
    for (size_t j = 0; j < rules; ++j) {
      Route r;
      r.name = "r" + std::to_string(j);
      size_t blocks = gen_.chance(15) ? 2 : 1;
      for (size_t k = 0; k < blocks; ++k) r.matches.push_back(block());
      r.direct_response = DirectResponse{200, ""};
      routes.push_back(std::move(r));
    }
    return cfg;
  }

  RequestHead request() {
    static const std::vector<std::string> tails = {"",      "/x",  "/",      "/abc/12", "/item",
                                                   "/ITEM", "7/x", "/a/b/c", "/Abc/1"};
    RequestHead r;
    r.authority = "big.example";
    r.method = gen_.chance(70) ? "GET" : "POST";
    std::string path = key() + gen_.one_of(tails);
    if (gen_.chance(15)) path = upper(path);
    if (gen_.chance(10)) path = "/nothing" + path;
    r.target = path + (gen_.chance(20) ? "?q=1" : "");
    r.headers.add("User-Agent", "test");
    if (gen_.chance(60)) r.headers.add(gen_.chance(50) ? "x-tenant" : "X-Tenant", tenant());
    if (gen_.chance(10)) r.headers.add("x-tenant", tenant());  // repeated: matched joined
    if (gen_.chance(20)) r.headers.add("x-zone", tenant());
    if (gen_.chance(5)) r.headers.add("x-debug", "1");
    return r;
  }

 private:
  std::string tenant() { return "t" + std::to_string(gen_.pick(keys_)); }
  static std::string upper(std::string s) {
    for (char& c : s)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return s;
  }

  Generator gen_;
  size_t keys_ = 400;
};

}  // namespace

TEST_CASE("router reference: thousands of rules in every indexed shape") {
  BigGenerator gen(77);
  size_t requests = 0, routed = 0, deep = 0;
  for (size_t rules : {1000, 3000, 6000}) {
    RouterConfig cfg = gen.config(rules);
    auto compiled = Router::compile(cfg);
    REQUIRE_MESSAGE(compiled.ok(), compiled.error().to_string());
    const Router& router = compiled.value();
    for (int q = 0; q < 150; ++q) {
      RequestHead r = gen.request();
      auto want = reference(cfg, r);
      REQUIRE(want);
      auto got = router.match(r);
      ++requests;
      INFO("rules ", rules, " target ", r.target);
      REQUIRE(got.has_value() == want->route.has_value());
      if (!got) continue;
      ++routed;
      if (*want->route > rules / 10) ++deep;
      CHECK(got->route_index == *want->route);
      CHECK(got->matched ==
            &router.config().virtual_hosts[0].routes[*want->route].matches.at(*want->block));
    }
  }
  // Both outcomes, and matches far down the table, or this proves little.
  CHECK(routed > requests / 3);
  CHECK(requests - routed > 0);
  CHECK(deep > 0);
}

TEST_CASE("router reference: many distinct prefix lengths keep first-match order") {
  // Far more candidate lists than the merge holds inline: it spills, and the
  // order must still be the rules'.
  RouterConfig cfg{"many", {VirtualHost{"vh", {"*"}, {}}}};
  auto& routes = cfg.virtual_hosts[0].routes;
  for (int len = 100; len >= 1; --len) {
    Route r;
    r.name = "p" + std::to_string(len);
    Matcher m;
    m.path_prefix("/" + std::string(len - 1, 'a'));
    if (len % 3 == 0) m.method = StringMatch::exact("POST");
    r.matches.push_back(m);
    r.direct_response = DirectResponse{200, ""};
    routes.push_back(r);
  }
  auto router = Router::compile(cfg);
  REQUIRE(router.ok());
  for (int n = 0; n < 120; ++n) {
    RequestHead r;
    r.authority = "h";
    r.target = "/" + std::string(n, 'a');
    r.method = n % 2 ? "GET" : "POST";
    auto want = reference(cfg, r);
    REQUIRE(want);
    auto got = router->match(r);
    REQUIRE(got.has_value() == want->route.has_value());
    if (got) CHECK(got->route_index == *want->route);
  }
}

}  // namespace test_router_reference
