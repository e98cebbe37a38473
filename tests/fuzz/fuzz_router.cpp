// libFuzzer target: Router::compile and matching (include/sluice/router.hpp,
// matcher.hpp). Builds a RouterConfig and requests from the input; requests
// reuse strings from the config so they reach the routes. match() uses the
// route index and explain() scans every rule, so they must agree on the
// virtual host, the route and the match block; the chosen block must also
// hold for the request on its simplest conditions.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "sluice/router.hpp"

namespace {

using namespace sluice;

class Builder {
 public:
  explicit Builder(FuzzedDataProvider& in) : in_(in) {}

  // A string from the pool (so requests hit config values) or a new one.
  std::string text(size_t max = 24) {
    if (!pool_.empty() && in_.ConsumeBool()) {
      std::string s = pool_[in_.ConsumeIntegralInRange<size_t>(0, pool_.size() - 1)];
      switch (in_.ConsumeIntegralInRange(0, 3)) {
        case 0:
          break;
        case 1:
          s += in_.ConsumeRandomLengthString(4);
          break;
        case 2:
          for (char& c : s)
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
          break;
        case 3:
          if (!s.empty()) s.pop_back();
          break;
      }
      return s;
    }
    std::string s = in_.ConsumeRandomLengthString(max);
    if (pool_.size() < 64) pool_.push_back(s);
    return s;
  }

  std::string path() {
    std::string s = text();
    if (in_.ConsumeBool() && (s.empty() || s[0] != '/')) s.insert(0, "/");
    return s;
  }

  StringMatch string_match(bool for_path) {
    auto kind = static_cast<StringMatch::Kind>(in_.ConsumeIntegralInRange(0, 4));
    std::string v = for_path && kind != StringMatch::Kind::regex ? path() : text();
    if (kind == StringMatch::Kind::regex && in_.ConsumeBool()) v = "/" + v + ".*";
    return {kind, kind == StringMatch::Kind::present ? std::string() : v};
  }

  Matcher matcher() {
    Matcher m;
    if (in_.ConsumeProbability<float>() < 0.8f) m.uri = string_match(true);
    m.ignore_uri_case = in_.ConsumeBool();
    if (in_.ConsumeBool()) m.method = string_match(false);
    if (in_.ConsumeBool()) m.authority = string_match(false);
    if (in_.ConsumeProbability<float>() < 0.2f) m.scheme = string_match(false);
    for (int n = in_.ConsumeIntegralInRange(0, 2); n > 0; --n)
      m.headers.push_back({header_name(), string_match(false), in_.ConsumeBool()});
    for (int n = in_.ConsumeIntegralInRange(0, 2); n > 0; --n)
      m.query_params.push_back({text(8), string_match(false)});
    if (in_.ConsumeProbability<float>() < 0.2f)
      m.port = in_.ConsumeIntegralInRange<uint16_t>(79, 81);
    return m;
  }

  std::string header_name() {
    static const char* const kNames[] = {"end-user", "x-version", ":authority",
                                         ":path",    ":method",   "cookie"};
    if (in_.ConsumeBool()) return kNames[in_.ConsumeIntegralInRange<size_t>(0, 5)];
    return text(10);
  }

  Route route(size_t index) {
    Route r;
    r.name = "r" + std::to_string(index);
    for (int n = in_.ConsumeIntegralInRange(0, 3); n > 0; --n) r.matches.push_back(matcher());
    switch (in_.ConsumeIntegralInRange(0, 5)) {
      case 0:
        r.direct_response = DirectResponse{in_.ConsumeIntegralInRange<uint16_t>(100, 599), text()};
        break;
      case 1:
        r.redirect = Redirect{.uri = path(), .authority = text(), .code = 301};
        break;
      default:
        r.destinations.push_back(
            {.upstream = "u" + std::to_string(in_.ConsumeIntegral<uint8_t>() % 3),
             .weight = in_.ConsumeIntegralInRange<uint32_t>(0, 3)});
        if (in_.ConsumeBool()) r.destinations.push_back({.upstream = "u1", .weight = 1});
        break;
    }
    if (in_.ConsumeProbability<float>() < 0.2f) {
      Rewrite w;
      if (in_.ConsumeBool()) w.uri = path();
      if (in_.ConsumeBool()) w.uri_regex = std::make_pair(text(), text());
      r.rewrite = w;
    }
    return r;
  }

  RouterConfig config() {
    RouterConfig c;
    c.name = "fuzz";
    static const char* const kDomains[] = {
        "*", "*.example.com", "example.com", "example.com:8080", "a.example.com", "*.com"};
    for (int v = in_.ConsumeIntegralInRange(1, 3); v > 0; --v) {
      VirtualHost vh;
      vh.name = "vh" + std::to_string(c.virtual_hosts.size());
      for (int d = in_.ConsumeIntegralInRange(1, 3); d > 0; --d)
        vh.domains.push_back(in_.ConsumeBool() ? kDomains[in_.ConsumeIntegralInRange(0, 5)]
                                               : text(16));
      for (int r = in_.ConsumeIntegralInRange(0, 6); r > 0; --r)
        vh.routes.push_back(route(vh.routes.size()));
      vh.https_redirect = in_.ConsumeProbability<float>() < 0.1f;
      c.virtual_hosts.push_back(std::move(vh));
    }
    return c;
  }

  RequestHead request() {
    RequestHead r;
    static const char* const kMethods[] = {"GET", "POST", "HEAD", "OPTIONS", "get"};
    r.method = in_.ConsumeBool() ? kMethods[in_.ConsumeIntegralInRange(0, 4)] : text(8);
    r.target = path();
    if (in_.ConsumeBool()) r.target += "?" + text(8) + "=" + text(8);
    r.authority = text(20);
    r.scheme = in_.ConsumeBool() ? "http" : "https";
    r.listener_port = in_.ConsumeIntegralInRange<uint16_t>(79, 81);
    for (int n = in_.ConsumeIntegralInRange(0, 4); n > 0; --n) r.headers.add(header_name(), text());
    return r;
  }

 private:
  FuzzedDataProvider& in_;
  std::vector<std::string> pool_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Builder b(in);
  RouterConfig config = b.config();
  auto router = Router::compile(config);
  if (!router) {
    FUZZ_CHECK(!router.error().to_string().empty(), "compile failed without a message");
    return 0;
  }
  for (int n = 0; n < 8 && in.remaining_bytes() > 0; ++n) {
    RequestHead req = b.request();
    auto sel = router->match(req);
    Explanation why = router->explain(req);
    (void)why.to_string();
    FUZZ_CHECK(sel.has_value() == why.route_index.has_value(),
               "match() %s a route, explain() %s (authority '%s', path '%s')",
               sel ? "found" : "did not find", why.route_index ? "did" : "did not",
               req.authority.c_str(), req.target.c_str());
    if (!sel) continue;
    FUZZ_CHECK(why.host_matched && sel->virtual_host_index == why.virtual_host_index,
               "virtual host %zu vs %zu", sel->virtual_host_index, why.virtual_host_index);
    FUZZ_CHECK(sel->route_index == *why.route_index,
               "match() chose route %zu, explain() route %zu (path '%s')", sel->route_index,
               *why.route_index, req.target.c_str());
    const RouterConfig& cfg = router->config();
    const VirtualHost& vh = cfg.virtual_hosts[sel->virtual_host_index];
    FUZZ_CHECK(sel->virtual_host == &vh && sel->route == &vh.routes[sel->route_index],
               "selection pointers do not point into config()");
    for (const auto& s : why.skipped)
      FUZZ_CHECK(s.route_index < sel->route_index, "skipped a route after the chosen one");
    if (sel->route->matches.empty()) {
      FUZZ_CHECK(sel->matched == nullptr && !why.match_index, "block for a route without any");
      continue;
    }
    FUZZ_CHECK(why.match_index && sel->matched == &sel->route->matches[*why.match_index],
               "match() and explain() chose different match blocks");
    // The chosen block's plain uri condition holds.
    const Matcher& m = *sel->matched;
    std::string_view path = req.path();
    if (m.uri && !m.ignore_uri_case) {
      if (m.uri->kind == StringMatch::Kind::exact)
        FUZZ_CHECK(path == m.uri->value, "exact '%s' chose path '%s'", m.uri->value.c_str(),
                   std::string(path).c_str());
      if (m.uri->kind == StringMatch::Kind::prefix)
        FUZZ_CHECK(path.starts_with(m.uri->value), "prefix '%s' chose path '%s'",
                   m.uri->value.c_str(), std::string(path).c_str());
    }
    if (m.port) FUZZ_CHECK(*m.port == req.listener_port, "port condition ignored");
  }
  return 0;
}
