// The ext_authz HTTP protocol without sockets (security/ext_authz): header
// patterns, the check request's bytes, and how an answer is read.
#include <doctest/doctest.h>

#include "security/ext_authz.hpp"

namespace test_ext_authz {

using namespace sluice;
using namespace sluice::security;

namespace {

CompiledExtAuthz compiled(ExtAuthzHttpProvider p) {
  p.name = "p";
  p.service = "authz";
  auto c = compile_ext_authz(p, 0);
  REQUIRE_MESSAGE(c, (c ? std::string() : c.error().to_string()));
  return std::move(c).value();
}

}  // namespace

TEST_CASE("ext_authz unit: Istio's header patterns, case-insensitive") {
  HeaderPatterns p({"X-Exact", "x-pre*", "*-suf"});
  CHECK(p.matches("x-exact"));
  CHECK_FALSE(p.matches("x-exact2"));
  CHECK(p.matches("X-PREfix"));
  CHECK(p.matches("a-suf"));
  CHECK_FALSE(p.matches("a-sufx"));
  CHECK_FALSE(HeaderPatterns().matches("x"));
}

TEST_CASE("ext_authz unit: the check request joins repeated headers and frames the body") {
  ExtAuthzHttpProvider cfg;
  cfg.path_prefix = "/check";
  cfg.include_request_headers_in_check = {"x-a"};
  cfg.include_additional_headers_in_check = {{"x-a", "replaced"}, {"x-extra", "1"}};
  cfg.include_request_body_in_check = ExtAuthzRequestBody{.max_request_bytes = 8};
  CompiledExtAuthz p = compiled(cfg);
  RequestHead head;
  head.method = "POST";
  head.target = "/p?q=1";
  head.authority = "example.com";
  head.headers.add("Host", "example.com");
  head.headers.add("X-B", "1");
  head.headers.add("X-B", "2");
  head.headers.add("Authorization", "Bearer t");
  head.headers.add("Transfer-Encoding", "chunked");

  SUBCASE("listed and repeated") {
    p.request_headers = HeaderPatterns({"x-b"});
    std::string out;
    append_check_request(out, p, head, "abc", true);
    CHECK(out ==
          "POST /check/p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-b: 1,2\r\n"
          "authorization: Bearer t\r\nx-a: replaced\r\nx-extra: 1\r\n"
          "x-envoy-auth-partial-body: true\r\ncontent-length: 3\r\n\r\nabc");
  }
  SUBCASE("unlisted headers stay out") {
    std::string out;
    append_check_request(out, p, head, "", false);
    CHECK(out.find("x-b") == std::string::npos);
    CHECK(out.find("chunked") == std::string::npos);
    CHECK(out.find("content-length: 0\r\n") != std::string::npos);
  }
}

TEST_CASE("ext_authz unit: 200 allows, 5xx is an error, other statuses deny") {
  ExtAuthzHttpProvider cfg;
  cfg.headers_to_upstream_on_allow = {"x-user"};
  CompiledExtAuthz p = compiled(cfg);
  ResponseHead head;
  head.headers.add("x-user", "alice");
  head.headers.add("host", "authz");
  head.headers.add("content-length", "4");
  auto ok = interpret_check_response(p, head, "");
  CHECK(ok.verdict == ExtAuthzVerdict::ok);
  CHECK(ok.upstream.get("x-user") == "alice");
  CHECK(ok.downstream.empty());

  head.status = 503;
  CHECK(interpret_check_response(p, head, "down").verdict == ExtAuthzVerdict::error);
  head.status = 302;
  auto denied = interpret_check_response(p, head, "body");
  CHECK(denied.verdict == ExtAuthzVerdict::denied);
  CHECK(denied.status == 302);
  CHECK(denied.body == "body");
  // All headers but Host and framing.
  CHECK(denied.downstream.get("x-user") == "alice");
  CHECK_FALSE(denied.downstream.get("host"));
  CHECK_FALSE(denied.downstream.get("content-length"));
}

TEST_CASE("ext_authz unit: configuration checks name the field") {
  ExtAuthzHttpProvider cfg;
  cfg.name = "p";
  cfg.status_on_error = 99;
  CHECK(compile_ext_authz(cfg, 0).error().to_string() ==
        "ExtAuthzHttpProvider p: status_on_error: 99 is not a final HTTP status (200..599)");
  cfg.status_on_error = 403;
  cfg.include_additional_headers_in_check = {{"x", "a\r\nb: c"}};
  CHECK(compile_ext_authz(cfg, 0).error().to_string().starts_with(
      "ExtAuthzHttpProvider p: include_additional_headers_in_check[0].value: "));
  cfg.include_additional_headers_in_check.clear();
  cfg.include_request_body_in_check = ExtAuthzRequestBody{};
  CHECK(compile_ext_authz(cfg, 0).error().to_string() ==
        "ExtAuthzHttpProvider p: include_request_body_in_check.max_request_bytes: must be > 0");
}

}  // namespace test_ext_authz
