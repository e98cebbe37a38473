// The HTTP/1 codec without sockets: framing, limits, RFC 9112 rejections,
// serialisation and hop-by-hop handling.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "http/parser.hpp"
#include "http/serializer.hpp"
#include "http/tokens.hpp"

namespace test_http_codec {

using sluice::Headers;
using sluice::http::ParseError;
using sluice::http::Parser;

namespace {

struct Parsed {
  bool head = false;
  bool done = false;
  std::string body;
  ParseError error = ParseError::none;
  size_t consumed = 0;
};

// Feeds `input` in pieces of `step` bytes, the way reads arrive, until the
// message ends or the parser fails.
Parsed parse(Parser& p, std::string_view input, size_t step = 1 << 20) {
  Parsed out;
  size_t pos = 0;
  size_t window_end = std::min(input.size(), step);
  for (int guard = 0; guard < 100000; ++guard) {
    size_t n = p.feed(input.data() + pos, window_end - pos);
    pos += n;
    out.body += p.body();
    if (p.error() != ParseError::none || p.message_done()) break;
    if (n == 0 && p.body().empty()) {
      if (window_end == input.size()) break;
      window_end = std::min(input.size(), window_end + step);
    }
  }
  out.head = p.head_done();
  out.done = p.message_done();
  out.error = p.error();
  out.consumed = pos;
  return out;
}

ParseError response_error(std::string_view raw, sluice::http::ParserLimits limits = {}) {
  Parser p(Parser::Kind::response, limits);
  return parse(p, raw).error;
}

ParseError request_error(std::string_view raw) {
  Parser p(Parser::Kind::request);
  auto r = parse(p, raw);
  if (r.error != ParseError::none) return r.error;
  if (r.head && !sluice::http::validate_request(p.request()).empty())
    return ParseError::bad_request;
  return ParseError::none;
}

}  // namespace

TEST_CASE("request head, headers and content-length body") {
  for (size_t step : {1, 3, 7, 1 << 20}) {
    Parser p(Parser::Kind::request);
    auto r = parse(p,
                   "POST /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Multi: one \r\n"
                   "x-multi: two\r\nContent-Length: 5\r\n\r\nhello",
                   step);
    CHECK(r.done);
    CHECK(r.body == "hello");
    auto& h = p.request();
    CHECK(h.method == "POST");
    CHECK(h.target == "/a/b?x=1");
    CHECK(h.path() == "/a/b");
    CHECK(h.query() == "x=1");
    CHECK(h.headers.count("X-MULTI") == 2);
    CHECK(*h.headers.get("x-multi") == "one");  // trailing whitespace stripped
    CHECK(p.has_content_length());
    CHECK(p.content_length() == 5);
    CHECK(sluice::http::validate_request(h).empty());
    CHECK(h.authority == "example.com");
  }
}

TEST_CASE("chunked request body is de-framed across arbitrary splits") {
  std::string raw =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n";
  for (size_t step : {1, 2, 5, 1 << 20}) {
    Parser p(Parser::Kind::request);
    auto r = parse(p, raw, step);
    CHECK(r.done);
    CHECK(p.chunked());
    CHECK(r.body == "hello world!");
  }
}

TEST_CASE("pipelined requests parse one after the other") {
  std::string raw = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
  Parser p(Parser::Kind::request);
  auto first = parse(p, raw);
  CHECK(first.done);
  CHECK(p.request().target == "/1");
  p.next_message();
  CHECK(p.idle());
  auto second = parse(p, std::string_view(raw).substr(first.consumed));
  CHECK(second.done);
  CHECK(p.request().target == "/2");
}

TEST_CASE("each message on a connection sees exactly its own headers") {
  // The parser reuses the previous head's header strings: nothing of an
  // earlier, longer name or value may show through, whatever the split.
  std::vector<std::vector<Headers::Entry>> heads = {
      {{"Host", "h"}, {"User-Agent", std::string(200, 'u')}, {"X-Long-Name-Here", "v1"}},
      {{"Host", "h"}, {"A", "b"}},
      {{"Host", "hh"},
       {"Cookie", std::string(400, 'c')},
       {"X-B", "2"},
       {"X-C", "3"},
       {"X-D", std::string(20, 'd')}},
      {{"Host", "h"}, {"User-Agent", "short"}, {"X-Long-Name-Here", std::string(300, 'w')}},
  };
  for (size_t step : {1, 5, 1 << 20}) {
    Parser p(Parser::Kind::request);
    for (int round = 0; round < 3; ++round)
      for (const auto& expected : heads) {
        std::string raw = "GET / HTTP/1.1\r\n";
        for (const auto& [name, value] : expected) raw += name + ": " + value + "\r\n";
        raw += "\r\n";
        p.next_message();
        CHECK(parse(p, raw, step).done);
        CHECK(p.request().headers.entries() == expected);
        // A caller may add and take headers between messages.
        p.request().headers.add("x-added-by-the-caller", std::string(40, 'x'));
      }
  }
}

TEST_CASE("keep-alive follows version and Connection") {
  Parser a(Parser::Kind::request);
  parse(a, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(a.keep_alive());
  Parser b(Parser::Kind::request);
  parse(b, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  CHECK_FALSE(b.keep_alive());
  Parser c(Parser::Kind::request);
  parse(c, "GET / HTTP/1.0\r\n\r\n");
  CHECK_FALSE(c.keep_alive());
}

TEST_CASE("transfer codings, versions and chunk framing (the malformed-request matrix)") {
  // A coding before chunked: the proxy cannot decode it (501); chunked not
  // last or twice, or any TE on HTTP/1.0: 400.
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                      "0\r\n\r\n") == ParseError::not_implemented);
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n") ==
        ParseError::not_implemented);
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
                      "0\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error("POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "0\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error("GET / HTTP/2.0\r\nHost: h\r\n\r\n") == ParseError::bad_version);
  // llhttp does not frame "chunked<TAB>" as chunked: refused, not guessed.
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n"
                      "3\r\nabc\r\n0\r\n\r\n") == ParseError::bad_request);
  // CONNECT takes authority-form only (found by the request_parser fuzzer).
  CHECK(request_error("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n") ==
        ParseError::none);
  CHECK(request_error("CONNECT https://a?e@x:443 HTTP/1.1\r\nHost: x\r\n\r\n") ==
        ParseError::bad_request);
  CHECK(request_error("CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n") == ParseError::bad_request);
  // An empty Transfer-Encoding is still one (llhttp does not flag it).
  CHECK(
      request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\nContent-Length: 4\r\n\r\n"
                    "abcd") == ParseError::bad_request);
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:   \r\n\r\n") ==
        ParseError::bad_request);
  // Strict mode: bytes after chunk data, and a bare CR in the chunk line.
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhelloXX\r\n0\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\rhello\r\n0\r\n\r\n") == ParseError::bad_request);
}

TEST_CASE("check_ahead finds broken framing in buffered body bytes and consumes nothing") {
  std::string head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (auto [body, ok] : {std::pair<std::string_view, bool>{"5\r\nhello\r\n0\r\n\r\n", true},
                          {"5\r\nhello\r\nZZ\r\n", false},
                          {"5\r\nhe", true},  // incomplete is not broken
                          {"5\r\nhelloXX", false}}) {
    CAPTURE(body);
    std::string raw = head + std::string(body);
    Parser p(Parser::Kind::request);
    size_t n = p.feed(raw.data(), raw.size());
    REQUIRE(p.head_done());
    CHECK(p.check_ahead(raw.data() + n, raw.size() - n) == ok);
    // The real parse still starts at the first body byte.
    size_t m = p.feed(raw.data() + n, raw.size() - n);
    if (ok) CHECK(p.error() == ParseError::none);
    if (ok && m > 0) CHECK(p.body() == std::string_view(body).substr(3, p.body().size()));
  }
}

TEST_CASE("malicious responses: 101 unasked, status out of range, HTTP/2.0, unbounded heads") {
  CHECK(response_error("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == ParseError::none);
  CHECK(response_error("HTTP/1.1 101 Switching Protocols\r\n\r\n") == ParseError::bad_response);
  CHECK(response_error("HTTP/1.1 099 Low\r\n\r\n") == ParseError::bad_response);
  CHECK(response_error("HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n") ==
        ParseError::bad_response);
  CHECK(response_error("HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n") == ParseError::bad_response);
  // The reason phrase counts toward the head limit; so do header counts.
  std::string long_reason = "HTTP/1.1 200 " + std::string(70 * 1024, 'a') + "\r\n\r\n";
  CHECK(response_error(long_reason) == ParseError::bad_response);
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 101; ++i) many += "x-h" + std::to_string(i) + ": v\r\n";
  many += "Content-Length: 0\r\n\r\n";
  CHECK(response_error(many) == ParseError::bad_response);
  CHECK(response_error(many, {.max_header_bytes = 60 * 1024, .max_headers = 200}) ==
        ParseError::none);
}

TEST_CASE("trailers are kept apart and never folded into the head") {
  Parser p(Parser::Kind::request);
  auto r = parse(p,
                 "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\nx-trailer: t  \r\nx-other: u\r\n\r\n");
  CHECK(r.done);
  CHECK(r.body == "abc");
  CHECK_FALSE(p.request().headers.contains("x-trailer"));
  CHECK(p.request().headers.size() == 2);
  REQUIRE(p.trailers().size() == 2);
  CHECK(p.trailers().get("x-trailer") == "t");
  CHECK(p.trailers().get("x-other") == "u");
  // The next message starts with none.
  p.next_message();
  CHECK(p.trailers().empty());
}

TEST_CASE("framing fields among trailers do not reframe the message") {
  // A fuzzer find: llhttp's flags take trailer fields too, so a chunked
  // message read as sized once its trailers carried Content-Length.
  Parser p(Parser::Kind::response);
  auto r = parse(p,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                 "Transfer-Encoding: chunkedx\r\nContent-Length: 11\r\n\r\n");
  CHECK(r.done);
  CHECK(r.body == "hello");
  CHECK(p.chunked());
  CHECK_FALSE(p.has_content_length());
  CHECK(p.content_length() == 0);
  CHECK(p.trailers().get("content-length") == "11");
  p.next_message();
  CHECK_FALSE(p.chunked());
}

TEST_CASE("a Connection field among trailers does not change keep-alive") {
  // Like the framing fields: the head decides whether the connection stays.
  Parser p(Parser::Kind::response);
  auto r = parse(p,
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
                 "Connection: close\r\n\r\n");
  CHECK(r.done);
  CHECK(p.keep_alive());
  CHECK(p.trailers().get("connection") == "close");
  Parser q(Parser::Kind::request);
  r = parse(q,
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nTransfer-Encoding: "
            "chunked\r\n\r\n0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(r.done);
  CHECK_FALSE(q.keep_alive());
  // The next message on a kept connection parses: llhttp's own check after
  // a message sees the head's Connection too.
  Parser k(Parser::Kind::request);
  std::string two =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
      "Connection: close\r\n\r\n";
  two += "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
  r = parse(k, two);
  REQUIRE(r.done);
  CHECK(k.keep_alive());
  k.next_message();
  r = parse(k, std::string_view(two).substr(r.consumed));
  CHECK(r.error == ParseError::none);
  CHECK(r.done);
  CHECK(k.request().target == "/next");
}

TEST_CASE("trailers are bounded in count and bytes together with the head") {
  std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
  std::string many = head;
  for (int i = 0; i < 11; ++i) many += "t" + std::to_string(i) + ": v\r\n";
  many += "\r\n";
  CHECK(response_error(many, {.max_header_bytes = 60 * 1024, .max_headers = 10}) ==
        ParseError::bad_response);
  CHECK(response_error(many, {.max_header_bytes = 60 * 1024, .max_headers = 11}) ==
        ParseError::none);
  std::string big = head + "grpc-message: " + std::string(2000, 'x') + "\r\n\r\n";
  CHECK(response_error(big, {.max_header_bytes = 1024, .max_headers = 10}) ==
        ParseError::bad_response);
  CHECK(response_error(big, {.max_header_bytes = 4096, .max_headers = 10}) == ParseError::none);
  // A request's trailers past the limits answer 431, like its head.
  Parser p(Parser::Kind::request, {.max_header_bytes = 200, .max_headers = 100});
  auto r = parse(p, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx: " +
                        std::string(300, 'y') + "\r\n\r\n");
  CHECK(r.error == ParseError::header_too_large);
}

TEST_CASE("the last chunk carries only forwardable trailers") {
  Headers t;
  t.add("grpc-status", "0");
  t.add("grpc-message", "ok");
  for (const char* name : {"Transfer-Encoding", "content-length", "Host", "connection", "te",
                           "trailer", "upgrade", "keep-alive", "authorization", "cookie",
                           "set-cookie", "content-type", "x-forwarded-for", "x-request-id"})
    t.add(name, "evil");
  std::string out;
  sluice::http::append_last_chunk(out, t);
  CHECK(out == "0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n");
  out.clear();
  sluice::http::append_last_chunk(out, Headers{});
  CHECK(out == sluice::http::kLastChunk);
  CHECK(sluice::http::is_forwardable_trailer("x-checksum"));
  CHECK_FALSE(sluice::http::is_forwardable_trailer(":status"));
  CHECK_FALSE(sluice::http::is_forwardable_trailer(""));
}

TEST_CASE("malformed requests are rejected") {
  CHECK(request_error("GET / HTTP/1.1\r\nHost: h\r\n\r\n") == ParseError::none);
  // Conflicting or doubled framing.
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
                      "abcd") == ParseError::bad_request);
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: "
                      "chunked\r\n\r\n0\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n") ==
        ParseError::bad_request);
  CHECK(request_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") ==
        ParseError::bad_request);
  // Bytes that split or smuggle headers.
  CHECK(request_error("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error(std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 33)) ==
        ParseError::bad_request);
  CHECK(request_error("GET / HTTP/1.1\r\nHost : h\r\n\r\n") == ParseError::bad_request);
  // Host rules and target form.
  CHECK(request_error("GET / HTTP/1.1\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n") == ParseError::bad_request);
  CHECK(request_error("GET / HTTP/1.0\r\n\r\n") == ParseError::none);
}

TEST_CASE("absolute-form target becomes origin-form with its authority") {
  Parser p(Parser::Kind::request);
  parse(p, "GET http://other.example:8080/x?y HTTP/1.1\r\nHost: h\r\n\r\n");
  auto& h = p.request();
  CHECK(sluice::http::validate_request(h).empty());
  CHECK(h.target == "/x?y");
  CHECK(h.authority == "other.example:8080");
  CHECK(h.headers.count("host") == 1);
}

TEST_CASE("header limits: bytes and count give header_too_large") {
  sluice::http::ParserLimits limits{.max_header_bytes = 1024, .max_headers = 3};
  {
    Parser p(Parser::Kind::request, limits);
    std::string raw = "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(2000, 'a') + "\r\n\r\n";
    CHECK(parse(p, raw, 100).error == ParseError::header_too_large);
  }
  {
    Parser p(Parser::Kind::request, limits);
    CHECK(parse(p, "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n").error ==
          ParseError::header_too_large);
  }
  {
    Parser p(Parser::Kind::request, limits);
    CHECK(parse(p, "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n").done);
  }
}

TEST_CASE("response framing: content-length, chunked, close-delimited, no-body") {
  {
    Parser p(Parser::Kind::response);
    auto r = parse(p, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    CHECK(r.done);
    CHECK(r.body == "abc");
    CHECK(p.response().status == 200);
  }
  {
    Parser p(Parser::Kind::response);
    auto r =
        parse(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 2);
    CHECK(r.done);
    CHECK(r.body == "abc");
  }
  {
    Parser p(Parser::Kind::response);
    auto r = parse(p, "HTTP/1.1 200 OK\r\n\r\nuntil close");
    CHECK_FALSE(r.done);
    CHECK(r.body == "until close");
    CHECK(p.finish());
    CHECK(p.message_done());
  }
  {
    // A response to HEAD has no body whatever Content-Length says.
    Parser p(Parser::Kind::response);
    p.expect_no_body(true);
    auto r = parse(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    CHECK(r.done);
    CHECK(r.body.empty());
  }
  for (const char* raw : {"HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 304 Not Modified\r\n\r\n"}) {
    Parser p(Parser::Kind::response);
    CHECK(parse(p, raw).done);
    CHECK_FALSE(p.body_expected());
  }
  {
    // A truncated Content-Length body is not complete at close.
    Parser p(Parser::Kind::response);
    parse(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    CHECK_FALSE(p.finish());
  }
}

TEST_CASE("hop-by-hop headers and those named by Connection are stripped") {
  Headers h;
  h.add("Connection", "keep-alive, X-Secret");
  h.add("Keep-Alive", "timeout=5");
  h.add("Proxy-Connection", "keep-alive");
  h.add("TE", "trailers");
  h.add("Trailer", "x");
  h.add("Upgrade", "websocket");
  h.add("Transfer-Encoding", "chunked");
  h.add("x-secret", "1");
  h.add("X-Kept", "yes");
  sluice::http::strip_hop_by_hop(h);
  REQUIRE(h.size() == 1);
  CHECK(h.entries()[0].first == "X-Kept");
}

// Listed names are gathered once, up to a fixed number; more fall back to
// scanning the values per entry. Catches: names past the first few, or in a
// second Connection header, surviving; Host listed among many dropping it.
TEST_CASE("every name listed by Connection is stripped, however many and in however many headers") {
  Headers h;
  std::string first, second;
  for (int i = 0; i < 12; ++i) {
    std::string name = "x-l" + std::to_string(i);
    (i % 2 ? second : first) += name + ", ";
    h.add(name, "v");
  }
  h.add("Connection", first + "host");
  h.add("connection", second + "keep-alive");
  h.add("Host", "h");
  h.add("x-kept", "yes");
  sluice::http::strip_hop_by_hop(h);
  REQUIRE(h.size() == 2);
  CHECK(h.get("host") == "h");
  CHECK(h.get("x-kept") == "yes");

  Headers few;
  few.add("Connection", "close");
  few.add("connection", "x-a");
  few.add("X-A", "1");
  few.add("close", "1");
  few.add("x-b", "2");
  sluice::http::strip_hop_by_hop(few);
  REQUIRE(few.size() == 1);
  CHECK(few.entries()[0].first == "x-b");
}

TEST_CASE("serialisation") {
  sluice::RequestHead req;
  req.method = "GET";
  req.target = "/p?q";
  req.headers.add("Host", "h");
  std::string out;
  sluice::http::append_request_head(out, req);
  CHECK(out == "GET /p?q HTTP/1.1\r\nHost: h\r\n\r\n");

  sluice::ResponseHead resp;
  resp.status = 404;
  resp.headers.add("content-length", "4");
  std::string wire;
  sluice::http::append_response_head(wire, resp);
  CHECK(wire == "HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\n");

  std::string chunk;
  sluice::http::append_chunk_header(chunk, 255);
  CHECK(chunk == "ff\r\n");
}

TEST_CASE("forwarded request head: hop-by-hop out, forwarding headers in") {
  sluice::RequestHead req;
  req.method = "POST";
  req.target = "/x";
  req.headers.add("Host", "h");
  req.headers.add("Connection", "X-Drop, keep-alive");
  req.headers.add("X-Drop", "1");
  req.headers.add("Expect", "100-continue");
  req.headers.add("X-Forwarded-For", "1.1.1.1");
  req.headers.add("x-forwarded-for", "2.2.2.2");
  req.headers.add("X-Forwarded-Proto", "https");
  req.headers.add("X-Forwarded-Client-Cert", "forged");
  req.headers.add("Transfer-Encoding", "chunked");
  req.headers.add("TE", "trailers");
  req.headers.add("X-Keep", "k");
  // The session strips what Connection names first.
  sluice::http::strip_hop_by_hop(req.headers);
  std::string out;
  bool expect = sluice::http::append_forwarded_request_head(
      out, req, {.client_ip = "9.9.9.9", .proto = "http", .request_id = "rid", .chunked = true});
  CHECK(expect);
  CHECK(out ==
        "POST /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 9.9.9.9\r\n"
        "X-Keep: k\r\nx-forwarded-proto: http\r\nx-request-id: rid\r\n"
        "transfer-encoding: chunked\r\n\r\n");

  sluice::RequestHead bare;
  bare.version_minor = 0;
  bare.headers.add("X-Request-Id", "keep-me");
  std::string out2;
  CHECK_FALSE(sluice::http::append_forwarded_request_head(out2, bare,
                                                          {.client_ip = "9.9.9.9",
                                                           .proto = "https",
                                                           .xfcc = "Hash=ab",
                                                           .request_id = "new",
                                                           .default_host = "10.0.0.1:80"}));
  CHECK(out2 ==
        "GET / HTTP/1.1\r\nX-Request-Id: keep-me\r\nhost: 10.0.0.1:80\r\n"
        "x-forwarded-for: 9.9.9.9\r\nx-forwarded-proto: https\r\n"
        "x-forwarded-client-cert: Hash=ab\r\n\r\n");
}

TEST_CASE("Connection cannot name framing away, framing comes from the parsed message") {
  sluice::RequestHead req;
  req.method = "POST";
  req.target = "/";
  req.headers.add("Host", "h");
  req.headers.add("Connection", "content-length, host, x-auth");
  req.headers.add("Content-Length", "45");
  req.headers.add("x-auth", "forged");
  sluice::http::strip_hop_by_hop(req.headers);
  CHECK(req.headers.get("content-length") == "45");
  CHECK(req.headers.get("host") == "h");
  CHECK_FALSE(req.headers.contains("x-auth"));
  CHECK_FALSE(req.headers.contains("connection"));

  // A header operation that set Content-Length does not frame the message.
  req.headers.set("content-length", "0");
  std::string out;
  sluice::http::append_forwarded_request_head(
      out, req, {.client_ip = "9.9.9.9", .proto = "http", .content_length = 45});
  CHECK(out ==
        "POST / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 9.9.9.9\r\nx-forwarded-proto: http\r\n"
        "content-length: 45\r\n\r\n");

  // Mirrors: the Host is replaced, and the connection closes.
  std::string mirror;
  sluice::http::append_forwarded_request_head(mirror, req,
                                              {.client_ip = "9.9.9.9",
                                               .proto = "http",
                                               .host = "h-shadow",
                                               .content_length = 0,
                                               .close = true});
  CHECK(mirror ==
        "POST / HTTP/1.1\r\nhost: h-shadow\r\nx-forwarded-for: 9.9.9.9\r\n"
        "x-forwarded-proto: http\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

TEST_CASE("Headers: case-insensitive get, set replaces all, remove") {
  Headers h;
  h.add("A", "1");
  h.add("a", "2");
  h.add("B", "3");
  CHECK(*h.get("a") == "1");
  h.set("A", "9");
  CHECK(h.count("a") == 1);
  CHECK(*h.get("A") == "9");
  CHECK(h.remove("b") == 1);
  CHECK_FALSE(h.contains("B"));
  CHECK(sluice::http::iequals("Content-Length", "content-length"));
  CHECK_FALSE(sluice::http::iequals("a@", "a`"));
}

}  // namespace test_http_codec
