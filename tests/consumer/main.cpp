// A gateway on 127.0.0.1:8080 that sends requests carrying `end-user: jason`
// to reviews-v2 and everything else to reviews-v1.
#include <cstdio>
#include <string_view>

#include <sluice/sluice.hpp>

int main(int argc, char** argv) {
  using namespace sluice;

  GatewayConfig config;
  config.upstreams = {
      {.name = "reviews-v1", .endpoints = {{.address = "127.0.0.1", .port = 9081}}},
      {.name = "reviews-v2", .endpoints = {{.address = "127.0.0.1", .port = 9082}}},
  };
  // Rules are tried in order; the first that matches wins.
  Route jason{.name = "jason",
              .matches = {Matcher{}.header("end-user", StringMatch::exact("jason"))},
              .destinations = {{.upstream = "reviews-v2"}}};
  Route everyone{.name = "everyone-else", .destinations = {{.upstream = "reviews-v1"}}};
  config.routers = {
      {.name = "main",
       .virtual_hosts = {{.name = "reviews", .domains = {"*"}, .routes = {jason, everyone}}}}};
  config.listeners = {{.name = "http", .address = "127.0.0.1", .port = 8080, .router = "main"}};

  // Validation happens here, before any socket opens; errors name the field.
  if (auto snapshot = compile(config); !snapshot) {
    std::fprintf(stderr, "invalid config: %s\n", snapshot.error().to_string().c_str());
    return 1;
  }

  // Ask the router why a request goes where it goes.
  auto router = Router::compile(config.routers[0]);
  if (!router) return 1;
  RequestHead request;
  request.authority = "reviews.example.com";
  request.headers.add("end-user", "jason");
  Explanation why = router->explain(request);
  std::printf("%s\n", why.to_string().c_str());

  if (argc > 1 && std::string_view(argv[1]) == "--serve") {
    Gateway gateway;  // one worker per hardware thread
    if (Status applied = gateway.apply(config); !applied) {
      std::fprintf(stderr, "%s\n", applied.error().to_string().c_str());
      return 1;
    }
    gateway.run();  // serves until gateway.stop() is called
  }
  return why.route_name == "jason" ? 0 : 1;
}
