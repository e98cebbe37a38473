// Path normalisation (Istio pathNormalization), as a pure function.

#include <doctest/doctest.h>

#include "http/path.hpp"

namespace test_path {

using sluice::PathNormalization;
using sluice::http::normalize_target;

namespace {

// The normalised target, or "400: <why>".
std::string norm(std::string target, PathNormalization mode = PathNormalization::base) {
  std::string why = normalize_target(target, mode);
  return why.empty() ? target : "400: " + why;
}

}  // namespace

TEST_CASE("BASE removes dot segments and never climbs above the root") {
  CHECK(norm("/x/../admin") == "/admin");
  CHECK(norm("/./admin") == "/admin");
  CHECK(norm("/a/b/../../../admin") == "/admin");
  CHECK(norm("/..") == "/");
  CHECK(norm("/a/b/..") == "/a/");
  CHECK(norm("/a/b/.") == "/a/b/");
  CHECK(norm("/a/.b/..c") == "/a/.b/..c");  // only whole segments are dots
  CHECK(norm("/") == "/");
}

TEST_CASE("BASE decodes unreserved escapes, uppercases the rest, keeps %2F and %5C") {
  CHECK(norm("/%61dmin") == "/admin");
  CHECK(norm("/%2e%2e/admin") == "/admin");
  CHECK(norm("/a/%2E/b") == "/a/b");
  CHECK(norm("/%7e%5fx") == "/~_x");
  CHECK(norm("/a%2fb") == "/a%2Fb");
  CHECK(norm("/a%5cb") == "/a%5Cb");
  CHECK(norm("/sp%20ace") == "/sp%20ace");
}

TEST_CASE("BASE turns a raw backslash into a slash") {
  CHECK(norm("/x\\..\\admin") == "/admin");
}

TEST_CASE("the query is kept byte for byte") {
  CHECK(norm("/a/../b?x=/../%61&y") == "/b?x=/../%61&y");
  CHECK(norm("/?") == "/?");
}

TEST_CASE("NUL and invalid escapes are refused in every mode") {
  for (auto mode :
       {PathNormalization::none, PathNormalization::base, PathNormalization::merge_slashes,
        PathNormalization::decode_and_merge_slashes}) {
    CHECK(norm("/a%00b", mode).starts_with("400"));
    CHECK(norm("/a%zz", mode).starts_with("400"));
    CHECK(norm("/a%4", mode).starts_with("400"));
    CHECK(norm("/a%", mode).starts_with("400"));
  }
}

TEST_CASE("NONE leaves the path as received") {
  CHECK(norm("/x/../%61dmin//b", PathNormalization::none) == "/x/../%61dmin//b");
}

TEST_CASE("MERGE_SLASHES merges runs of slashes after BASE") {
  CHECK(norm("//admin", PathNormalization::merge_slashes) == "/admin");
  CHECK(norm("/a///b/", PathNormalization::merge_slashes) == "/a/b/");
  CHECK(norm("//admin") == "//admin");  // BASE keeps them
  CHECK(norm("/a%2F%2Fb", PathNormalization::merge_slashes) == "/a%2F%2Fb");
}

TEST_CASE("DECODE_AND_MERGE_SLASHES decodes %2F and %5C first") {
  auto mode = PathNormalization::decode_and_merge_slashes;
  CHECK(norm("/admin%2Fx", mode) == "/admin/x");
  CHECK(norm("/x%2F..%2Fadmin", mode) == "/admin");
  CHECK(norm("/x%5c..%5cadmin", mode) == "/admin");
  CHECK(norm("/a%2F%2F/b", mode) == "/a/b");
}

TEST_CASE("a path must start with a slash") {
  CHECK(norm("admin").starts_with("400"));
  CHECK(norm("?x").starts_with("400"));
}

}  // namespace test_path
