// A snapshot derived with new endpoints (what Gateway::update_endpoints
// publishes), without sockets: what it shares with its base, what it
// recomputes, and what it refuses.

#include <doctest/doctest.h>

#include <string>

#include "config/snapshot.hpp"
#include "tls/server.hpp"

namespace test_endpoint_update {

using namespace sluice;

namespace {

GatewayConfig config() {
  GatewayConfig c;
  UpstreamConfig up;
  up.name = "reviews";
  up.endpoints = {{"10.0.0.1", 9080, {{"version", "v1"}}, 1},
                  {"10.0.0.2", 9080, {{"version", "v2"}}, 1}};
  up.subsets = {{"v1", {{"version", "v1"}}}, {"v2", {{"version", "v2"}}}};
  UpstreamConfig secure;
  secure.name = "secure";
  secure.endpoints = {{"10.0.1.1", 443}};
  secure.tls = UpstreamTls{.sni = "secure.example.com", .insecure_skip_verify = true};
  c.upstreams = {up, secure};
  Route v2{.name = "v2", .destinations = {{.upstream = "reviews", .subset = "v2"}}};
  v2.matches.push_back(Matcher{}.header("end-user", StringMatch::exact("jason")));
  v2.rewrite =
      Rewrite{.uri_regex = std::make_pair(std::string("^/old/(.*)$"), std::string("/new/\\1"))};
  Route v1{.name = "v1", .destinations = {{.upstream = "reviews", .subset = "v1"}}};
  c.routers = {
      {.name = "main", .virtual_hosts = {{.name = "all", .domains = {"*"}, .routes = {v2, v1}}}}};
  ListenerConfig plain{.name = "http", .address = "127.0.0.1", .port = 0, .router = "main"};
  ListenerConfig pt{.name = "tls", .address = "127.0.0.1", .port = 0, .router = "main"};
  pt.passthrough = {{.sni_hosts = {"reviews.example.com"}, .upstream = "reviews", .subset = "v2"}};
  c.listeners = {plain, pt};
  return c;
}

std::vector<std::string> keys(const CompiledUpstream& up, const EndpointSet& set) {
  std::vector<std::string> out;
  for (uint32_t i : set.members) out.push_back(up.endpoints[i].key);
  return out;
}

}  // namespace

TEST_CASE("endpoint update: shares routers, policies, regexes and TLS with its base") {
  auto base = compile_snapshot(config());
  REQUIRE(base.ok());
  const Snapshot& s0 = **base;
  auto derived = with_endpoints(s0, "reviews", {{"10.0.0.3", 9080, {{"version", "v2"}}, 1}});
  REQUIRE(derived.ok());
  const Snapshot& s1 = **derived;

  CHECK(s1.source.get() == s0.source.get());
  REQUIRE(s1.routers.size() == 1);
  CHECK(&s1.routers[0].config() == &s0.routers[0].config());  // the same compiled router
  CHECK(s1.routes.get() == s0.routes.get());
  const auto* regex = s1.route(0, 0, 0).policy.uri_regex_rewrite.get();
  REQUIRE(regex != nullptr);
  CHECK(regex == s0.route(0, 0, 0).policy.uri_regex_rewrite.get());
  REQUIRE(s1.listeners.size() == 2);
  REQUIRE(s1.listeners[1].tls != nullptr);
  CHECK(s1.listeners[1].tls.get() == s0.listeners[1].tls.get());
  REQUIRE(s1.upstreams[1].tls != nullptr);
  CHECK(s1.upstreams[1].tls.get() == s0.upstreams[1].tls.get());

  // The passthrough target and the route name the same (upstream, set)
  // indices, which now hold the new endpoints.
  const tls::PassthroughTarget* target =
      s1.listeners[1].tls->find_passthrough("reviews.example.com");
  REQUIRE(target != nullptr);
  const CompiledUpstream& up = s1.upstreams[target->upstream];
  CHECK(keys(up, up.sets[target->set]) == std::vector<std::string>{"10.0.0.3:9080"});
  const ResolvedDestination& dest = s1.route(0, 0, 0).destinations.at(0);
  CHECK(keys(s1.upstreams[dest.upstream], s1.upstreams[dest.upstream].sets[dest.set]) ==
        std::vector<std::string>{"10.0.0.3:9080"});
  // The base is unchanged: requests in flight on it see the old endpoints.
  const CompiledUpstream& old = s0.upstreams[0];
  CHECK(keys(old, old.sets[dest.set]) == std::vector<std::string>{"10.0.0.2:9080"});
  CHECK(old.config.endpoints.size() == 2);
  CHECK(s1.upstreams[0].config.endpoints.size() == 1);
}

TEST_CASE("endpoint update: subsets and pool keys follow the new endpoints") {
  auto base = compile_snapshot(config());
  REQUIRE(base.ok());
  auto derived = with_endpoints(**base, "reviews",
                                {{"10.0.0.1", 9080, {{"version", "v2"}}, 1},
                                 {"10.0.0.2", 9080, {{"version", "v1"}}, 1},
                                 {"10.0.0.4", 9081, {{"version", "v1"}}, 0}});
  REQUIRE(derived.ok());
  const CompiledUpstream& up = (*derived)->upstreams[0];
  auto v1 = up.find_set("v1");
  auto v2 = up.find_set("v2");
  REQUIRE(v1);
  REQUIRE(v2);
  CHECK(keys(up, up.sets[*v1]) == std::vector<std::string>{"10.0.0.2:9080"});  // weight 0: out
  CHECK(keys(up, up.sets[*v2]) == std::vector<std::string>{"10.0.0.1:9080"});
  CHECK(keys(up, up.sets[0]) == std::vector<std::string>{"10.0.0.1:9080", "10.0.0.2:9080"});
  CHECK(up.endpoints[2].pool_key == "reviews|10.0.0.4:9081|plain");
  const CompiledUpstream& secure = (*derived)->upstreams[1];
  CHECK(secure.endpoints[0].pool_key == (*base)->upstreams[1].endpoints[0].pool_key);
}

TEST_CASE("endpoint update: a bad list is refused naming the upstream and field") {
  auto base = compile_snapshot(config());
  REQUIRE(base.ok());
  auto bad_address = with_endpoints(**base, "reviews", {{"10.0.0.1", 80}, {"reviews.local", 80}});
  REQUIRE(!bad_address.ok());
  CHECK(bad_address.error().to_string().find("Upstream reviews: endpoints[1].address") == 0);
  auto bad_port = with_endpoints(**base, "reviews", {{"10.0.0.1", 0}});
  REQUIRE(!bad_port.ok());
  CHECK(bad_port.error().to_string().find("Upstream reviews: endpoints[0].port") == 0);
  auto unknown = with_endpoints(**base, "ratings", {{"10.0.0.1", 80}});
  REQUIRE(!unknown.ok());
  CHECK(unknown.error().to_string().find("Upstream ratings") == 0);
  // Nothing of the base changed.
  CHECK((*base)->upstreams[0].config.endpoints.size() == 2);
}

}  // namespace test_endpoint_update
