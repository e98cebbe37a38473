// Router::match() is the hot path: it must not allocate for typical requests.
// This file replaces the global operator new for the unit test binary with a
// counting one (malloc underneath), counting only inside a marked window.

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "sluice/router.hpp"

namespace test_router_alloc {
namespace {
std::atomic<bool> counting{false};
std::atomic<size_t> allocations{0};
}  // namespace
}  // namespace test_router_alloc

// Replacements of the global operators stay at global scope.
void* operator new(std::size_t n) {
  if (test_router_alloc::counting.load(std::memory_order_relaxed))
    test_router_alloc::allocations.fetch_add(1);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
// The nothrow form too (std::stable_sort's temporary buffer uses it): left
// to the runtime, its memory would come from one allocator and go back to
// the replaced delete above, a mismatch ASan reports.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  if (test_router_alloc::counting.load(std::memory_order_relaxed))
    test_router_alloc::allocations.fetch_add(1);
  return std::malloc(n ? n : 1);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace test_router_alloc {

using namespace sluice;

namespace {

// Allocations made by `fn`.
template <typename Fn>
size_t allocations_in(Fn&& fn) {
  allocations = 0;
  counting = true;
  fn();
  counting = false;
  return allocations.load();
}

Route forward(std::string name, std::vector<Matcher> matches) {
  Route r;
  r.name = std::move(name);
  r.matches = std::move(matches);
  r.destinations.push_back({"backend", "", 1});
  return r;
}

}  // namespace

TEST_CASE("router: match() does not allocate, and reports the matched block") {
  Matcher jason;
  jason.header("end-user", StringMatch::exact("jason"));
  jason.path_prefix("/reviews");
  Matcher icase;
  icase.path_exact("/Login");
  icase.ignore_uri_case = true;
  Matcher regex;
  regex.path_regex("/items/[0-9]+");
  regex.query("v", StringMatch::present());
  Matcher api;
  api.path_prefix("/api/");
  RouterConfig cfg{
      "main",
      {VirtualHost{"shop",
                   {"shop.example.com", "*.example.com"},
                   {forward("jason", {jason}), forward("login", {icase}), forward("items", {regex}),
                    forward("api", {api}), forward("rest", {})}}}};
  auto compiled = Router::compile(std::move(cfg));
  REQUIRE(compiled.ok());
  const Router& router = compiled.value();
  const auto& routes = router.config().virtual_hosts[0].routes;

  struct Case {
    std::string authority, target;
    std::vector<std::pair<std::string, std::string>> headers;
    size_t route;
    const Matcher* matched;
  };
  const Case cases[] = {
      {"shop.example.com", "/reviews/1", {{"End-User", "jason"}}, 0, &routes[0].matches[0]},
      {"shop.example.com", "/LOGIN", {}, 1, &routes[1].matches[0]},
      {"www.example.com:8080", "/items/7?v=2", {}, 2, &routes[2].matches[0]},
      {"shop.example.com", "/api/x", {}, 3, &routes[3].matches[0]},
      {"shop.example.com", "/reviews/1", {}, 4, nullptr},
  };
  for (const auto& c : cases) {
    RequestHead req;
    req.authority = c.authority;
    req.target = c.target;
    for (const auto& [n, v] : c.headers) req.headers.add(n, v);
    // RE2 fills its DFA state cache on first use; measure the steady state.
    std::optional<Router::Selection> s = router.match(req);
    size_t n = allocations_in([&] { s = router.match(req); });
    CHECK_MESSAGE(n == 0, c.target);
    REQUIRE(s);
    CHECK(s->route_index == c.route);
    CHECK(s->matched == c.matched);
  }

  // The counter works: explain() builds strings and does allocate.
  RequestHead req;
  req.authority = "shop.example.com";
  req.target = "/nowhere";
  CHECK(allocations_in([&] { (void)router.explain(req); }) > 0);
}

}  // namespace test_router_alloc
