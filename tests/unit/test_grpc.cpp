// gRPC and gRPC-Web helpers without sockets: content types, grpc-timeout,
// Envoy's HTTP-to-gRPC status mapping, grpc-message encoding, base64 text
// mode and the trailer frame.

#include <doctest/doctest.h>

#include <string>

#include "http/grpc.hpp"
#include "policy/retry_state.hpp"

namespace test_grpc {

using namespace std::chrono_literals;
using sluice::Headers;
using sluice::http::GrpcKind;

TEST_CASE("content types name gRPC and gRPC-Web") {
  using sluice::http::grpc_kind;
  CHECK(grpc_kind("application/grpc") == GrpcKind::grpc);
  CHECK(grpc_kind("application/grpc+proto") == GrpcKind::grpc);
  CHECK(grpc_kind("Application/GRPC; charset=utf-8") == GrpcKind::grpc);
  CHECK(grpc_kind("application/grpc-web") == GrpcKind::web);
  CHECK(grpc_kind("application/grpc-web+proto") == GrpcKind::web);
  CHECK(grpc_kind("application/grpc-web-text") == GrpcKind::web_text);
  CHECK(grpc_kind("application/grpc-web-text+proto") == GrpcKind::web_text);
  CHECK(grpc_kind("application/grpcx") == GrpcKind::none);
  CHECK(grpc_kind("application/json") == GrpcKind::none);
  CHECK(grpc_kind("") == GrpcKind::none);
  using sluice::http::grpc_content_type_from_web;
  CHECK(grpc_content_type_from_web("application/grpc-web") == "application/grpc");
  CHECK(grpc_content_type_from_web("application/grpc-web+proto") == "application/grpc+proto");
  CHECK(grpc_content_type_from_web("application/grpc-web-text+Proto") == "application/grpc+proto");
}

TEST_CASE("grpc-timeout parses every unit and refuses garbage") {
  using sluice::http::parse_grpc_timeout;
  CHECK(parse_grpc_timeout("1H") == 3'600'000ms);
  CHECK(parse_grpc_timeout("2M") == 120'000ms);
  CHECK(parse_grpc_timeout("3S") == 3000ms);
  CHECK(parse_grpc_timeout("250m") == 250ms);
  CHECK(parse_grpc_timeout("1500u") == 2ms);  // rounded up, never shortened
  CHECK(parse_grpc_timeout("1n") == 1ms);
  CHECK(parse_grpc_timeout("0m") == 0ms);
  CHECK(parse_grpc_timeout("99999999H") == std::chrono::milliseconds(99'999'999LL * 3'600'000));
  // More than 8 digits, no digits, signs, spaces, unknown units.
  for (const char* bad :
       {"123456789S", "S", "", "-1S", "+1S", " 1S", "1 S", "1s", "1", "1x", "1.5S", "0x10S", "1SS"})
    CHECK_MESSAGE(!parse_grpc_timeout(bad).has_value(), bad);
}

TEST_CASE("grpc-timeout is written in the shortest unit that fits") {
  using sluice::http::format_grpc_timeout;
  CHECK(format_grpc_timeout(250ms) == "250m");
  CHECK(format_grpc_timeout(99'999'999ms) == "99999999m");
  CHECK(format_grpc_timeout(100'000'000ms) == "100000S");
  CHECK(format_grpc_timeout(100'000'001ms) == "100001S");  // rounded up
  CHECK(sluice::http::parse_grpc_timeout(format_grpc_timeout(123'456'789'000ms)) >=
        123'456'789'000ms);
}

TEST_CASE("HTTP statuses map to gRPC statuses as Envoy maps them") {
  struct Row {
    uint16_t http;
    uint32_t grpc;
  };
  // Envoy's Grpc::Utility::httpToGrpcStatus (gRPC's http-grpc-status-mapping).
  const Row table[] = {{400, 13}, {401, 16}, {403, 7}, {404, 12}, {429, 14}, {502, 14},
                       {503, 14}, {504, 14}, {500, 2}, {408, 2},  {413, 2},  {431, 2},
                       {501, 2},  {505, 2},  {301, 2}, {200, 2},  {409, 2},  {0, 2}};
  for (const Row& r : table) {
    CAPTURE(r.http);
    CHECK(sluice::http::grpc_status_from_http(r.http) == r.grpc);
  }
}

TEST_CASE("grpc-status and grpc-message values") {
  using sluice::http::parse_grpc_status;
  CHECK(parse_grpc_status("0") == 0u);
  CHECK(parse_grpc_status("14") == 14u);
  CHECK(parse_grpc_status("4294967295") == 4294967295u);
  CHECK_FALSE(parse_grpc_status("4294967296").has_value());
  CHECK_FALSE(parse_grpc_status("").has_value());
  CHECK_FALSE(parse_grpc_status("1 ").has_value());
  CHECK_FALSE(parse_grpc_status("-1").has_value());
  std::string m;
  sluice::http::append_grpc_message(m, "no route: 100% \xc3\xa9\r\n");
  CHECK(m == "no route: 100%25 %C3%A9%0D%0A");
}

TEST_CASE("gRPC-Web text: base64 decoded across any split, padded groups mid-stream") {
  // "\0\0\0\0\x01A" then "\0\0\0\0\x01B", each encoded by itself (padded).
  std::string in = std::string("AAAAAAFB") + "AAAAAAFC";
  std::string expect = std::string(
      "\0\0\0\0\x01"
      "A\0\0\0\0\x01"
      "B",
      12);
  for (size_t step = 1; step <= in.size(); ++step) {
    sluice::http::Base64Decoder d;
    std::string out;
    for (size_t i = 0; i < in.size(); i += step) CHECK(d.feed(in.substr(i, step), out));
    CHECK(d.finish());
    CHECK(out == expect);
  }
  sluice::http::Base64Decoder padded;
  std::string out;
  CHECK(padded.feed("YQ==YmM=", out));
  CHECK(padded.finish());
  CHECK(out == "abc");
}

TEST_CASE("gRPC-Web text: base64 garbage is refused and stays refused") {
  for (const char* bad : {"AAA*", "A===", "AA=A", "====", "AAAA\r\nAA", "YQ==Y", "-_AA"}) {
    sluice::http::Base64Decoder d;
    std::string out;
    bool fed = d.feed(bad, out);
    CHECK_MESSAGE(!(fed && d.finish()), bad);
    if (!fed) CHECK_FALSE(d.feed("AAAA", out));
  }
}

TEST_CASE("gRPC-Web text: base64 encoded across any split") {
  std::string data;
  for (int i = 0; i < 100; ++i) data += static_cast<char>(i * 7);
  std::string whole;
  {
    sluice::http::Base64Encoder e;
    e.feed(data, whole);
    e.finish(whole);
  }
  CHECK(whole.size() == (data.size() + 2) / 3 * 4);
  for (size_t step = 1; step <= 7; ++step) {
    sluice::http::Base64Encoder e;
    std::string out;
    for (size_t i = 0; i < data.size(); i += step) e.feed(data.substr(i, step), out);
    e.finish(out);
    CHECK(out == whole);
  }
  sluice::http::Base64Decoder d;
  std::string back;
  CHECK(d.feed(whole, back));
  CHECK(d.finish());
  CHECK(back == data);
}

TEST_CASE("gRPC-Web trailer frame: flag 0x80, big-endian length, lower-case fields") {
  Headers t;
  t.add("Grpc-Status", "0");
  t.add("grpc-message", "ok");
  t.add("transfer-encoding", "chunked");  // never forwarded
  std::string out = "x";
  sluice::http::append_grpc_web_trailers(out, t);
  std::string fields = "grpc-status:0\r\ngrpc-message:ok\r\n";
  REQUIRE(out.size() == 1 + 5 + fields.size());
  CHECK(static_cast<unsigned char>(out[1]) == 0x80);
  CHECK(out.substr(2, 4) == std::string("\0\0\0", 3) + static_cast<char>(fields.size()));
  CHECK(out.substr(6) == fields);
}

TEST_CASE("retries see the grpc-status of a trailers-only head, for each retryOn code") {
  using namespace sluice::policy;
  struct Row {
    const char* token;
    uint32_t code;
  };
  const Row rows[] = {{"cancelled", 1},
                      {"deadline-exceeded", 4},
                      {"resource-exhausted", 8},
                      {"internal", 13},
                      {"unavailable", 14}};
  for (const Row& r : rows) {
    CAPTURE(r.token);
    auto on = parse_retry_on(r.token);
    REQUIRE(on.ok());
    CompiledRetry policy;
    policy.attempts = 2;
    policy.on = *on;
    for (uint32_t code : {0u, 1u, 2u, 4u, 8u, 13u, 14u}) {
      CAPTURE(code);
      RetryState state(policy);
      AttemptEnd end;
      end.status = 200;
      end.grpc_status = code;
      BodyState body;
      CHECK((state.after(0, end, body).next == RetryState::Next::retry) == (code == r.code));
    }
    // No grpc-status in the head (it came in trailers): no retry.
    RetryState state(policy);
    AttemptEnd end;
    end.status = 200;
    CHECK(state.after(0, end, BodyState{}).next == RetryState::Next::respond);
  }
}

}  // namespace test_grpc
