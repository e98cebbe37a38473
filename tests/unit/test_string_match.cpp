// The one StringMatch evaluator (route conditions and CORS origins), the one
// regex compiler, and the small text helpers they share.

#include <doctest/doctest.h>

#include <string>

#include "http/regex.hpp"
#include "http/string_match.hpp"
#include "http/tokens.hpp"

namespace test_string_match {

using namespace sluice;

namespace {

http::CompiledStringMatch compiled(const StringMatch& m, bool ignore_case = false) {
  auto c = http::compile_string_match(m, ignore_case);
  REQUIRE_MESSAGE(c.ok(), c.error().message);
  return std::move(c).value();
}

}  // namespace

TEST_CASE("string match: exact, prefix and suffix compare bytes") {
  auto exact = compiled(StringMatch::exact("/a"));
  CHECK(exact.matches("/a"));
  CHECK_FALSE(exact.matches("/A"));
  CHECK_FALSE(exact.matches("/ab"));
  CHECK_FALSE(exact.matches(""));

  auto prefix = compiled(StringMatch::prefix("https://dev."));
  CHECK(prefix.matches("https://dev.b.com"));
  CHECK(prefix.matches("https://dev."));
  CHECK_FALSE(prefix.matches("https://DEV.b.com"));
  CHECK_FALSE(prefix.matches("https://dev"));

  auto suffix = compiled(StringMatch::suffix(".example.org"));
  CHECK(suffix.matches("shop.example.org"));
  CHECK(suffix.matches(".example.org"));
  CHECK_FALSE(suffix.matches("example.org"));
  CHECK_FALSE(suffix.matches("shop.example.org.evil"));
}

TEST_CASE("string match: ignore_case lowers exact and prefix only") {
  auto exact = compiled(StringMatch::exact("/Reviews"), true);
  CHECK(exact.value == "/reviews");
  CHECK(exact.matches("/REVIEWS"));
  CHECK(exact.matches("/reviews"));
  CHECK_FALSE(exact.matches("/reviewsX"));

  auto prefix = compiled(StringMatch::prefix("/API"), true);
  CHECK(prefix.matches("/api/v1"));
  CHECK(prefix.matches("/Api"));
  CHECK_FALSE(prefix.matches("/ap"));

  // Suffix and regex keep their case even when asked to ignore it.
  auto suffix = compiled(StringMatch::suffix(".COM"), true);
  CHECK_FALSE(suffix.ignore_case);
  CHECK(suffix.matches("a.COM"));
  CHECK_FALSE(suffix.matches("a.com"));
  auto regex = compiled(StringMatch::regex("A+"), true);
  CHECK_FALSE(regex.ignore_case);
  CHECK_FALSE(regex.matches("aa"));
}

TEST_CASE("string match: regex is an RE2 full match, compiled once") {
  auto m = compiled(StringMatch::regex("https://[a-z]+\\.example\\.org"));
  REQUIRE(m.regex);
  const re2::RE2* program = m.regex.get();
  CHECK(m.matches("https://shop.example.org"));
  CHECK_FALSE(m.matches("https://shop.example.org.evil"));
  CHECK_FALSE(m.matches("xhttps://shop.example.org"));
  CHECK(m.regex.get() == program);
  // Non-regex kinds carry no program.
  CHECK_FALSE(compiled(StringMatch::exact("x")).regex);
}

TEST_CASE("string match: present matches any value, an invalid regex is an error") {
  auto present = compiled(StringMatch::present());
  CHECK(present.matches(""));
  CHECK(present.matches("anything"));

  auto bad = http::compile_string_match(StringMatch::regex("/(a"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.starts_with("invalid regex \"/(a\": "));
  CHECK(bad.error().object.empty());
  CHECK(bad.error().field.empty());

  auto direct = http::compile_regex("[z-a]");
  REQUIRE_FALSE(direct.ok());
  CHECK(direct.error().message.starts_with("invalid regex \"[z-a]\": "));
  auto good = http::compile_regex("a(b)c");
  REQUIRE(good.ok());
  CHECK(good.value()->NumberOfCapturingGroups() == 1);
}

TEST_CASE("tokens: trim and trim_end strip only spaces and tabs") {
  CHECK(http::trim(" \t a b \t") == "a b");
  CHECK(http::trim_end(" \t a b \t") == " \t a b");
  CHECK(http::trim_end("a\r") == "a\r");
  CHECK(http::trim_end(" \t").empty());
  CHECK(http::trim("").empty());
}

}  // namespace test_string_match
