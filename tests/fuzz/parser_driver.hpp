#pragma once
// Drives sluice::http::Parser over a byte stream the way the proxy session
// does (feed what has arrived, act on each event, re-offer unconsumed bytes
// with the next arrival) and records every event as text. The request and
// response fuzzers run one stream twice, whole and in fragments, and require
// the same record: a resumable parser must not care where reads split. The
// framing invariants of DESIGN.md's edge rules are checked on the way.

#include <charconv>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "http/parser.hpp"
#include "http/tokens.hpp"
#include "sluice/request.hpp"

namespace sluice::fuzz {

using http::ParseError;
using http::Parser;

struct DriveOptions {
  Parser::Kind kind = Parser::Kind::request;
  http::ParserLimits limits;
  uint8_t head_mask = 0;  // response k answers a HEAD request when bit k % 8 is set
};

// Parser::check_ahead() is new; use it when this checkout has it.
template <typename P>
bool check_ahead_or_true(const P& p, const char* data, size_t len) {
  if constexpr (requires { p.check_ahead(data, len); })
    return p.check_ahead(data, len);
  else
    return true;
}

inline void append_headers(std::string& out, const Headers& headers) {
  for (const auto& [name, value] : headers.entries()) {
    out += "  ";
    out += name;
    out += ": ";
    out += value;
    out += '\n';
  }
}

inline std::string last_coding(std::string_view value) {
  size_t comma = value.rfind(',');
  std::string_view c = comma == std::string_view::npos ? value : value.substr(comma + 1);
  while (!c.empty() && (c.front() == ' ' || c.front() == '\t')) c.remove_prefix(1);
  while (!c.empty() && (c.back() == ' ' || c.back() == '\t')) c.remove_suffix(1);
  std::string lower(c);
  for (char& ch : lower)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return lower;
}

// Framing invariants once a head parsed without error.
inline void check_head(Parser& p, Parser::Kind kind) {
  const Headers& h = kind == Parser::Kind::request ? p.request().headers : p.response().headers;
  // One Content-Length value at most, and it is what framing uses.
  for (const auto& [name, value] : h.entries()) {
    if (!http::iequals(name, "content-length")) continue;
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    FUZZ_CHECK(ec == std::errc() && end == value.data() + value.size(),
               "accepted Content-Length '%s'", value.c_str());
    FUZZ_CHECK(p.has_content_length() && v == p.content_length(),
               "Content-Length %s but framing says %llu", value.c_str(),
               static_cast<unsigned long long>(p.content_length()));
  }
  if (kind == Parser::Kind::request) {
    // Smuggling: Transfer-Encoding and Content-Length together, or a
    // Transfer-Encoding whose final coding is not chunked, must be refused.
    FUZZ_CHECK(!(p.chunked() && p.has_content_length()),
               "request accepted with both chunked and Content-Length");
    for (const auto& [name, value] : h.entries()) {
      if (!http::iequals(name, "transfer-encoding")) continue;
      FUZZ_CHECK(p.chunked(), "request with Transfer-Encoding '%s' accepted unchunked",
                 value.c_str());
    }
    if (auto te = h.get("transfer-encoding"); te && h.count("transfer-encoding") == 1)
      FUZZ_CHECK(last_coding(*te) == "chunked", "Transfer-Encoding '%s' accepted",
                 std::string(*te).c_str());
    // What the session does next; must not crash and must leave a sane head.
    RequestHead copy = p.request();
    if (http::validate_request(copy).empty()) {
      if (copy.method == "CONNECT")  // authority-form, refused later as a tunnel
        FUZZ_CHECK(!copy.target.empty() && copy.target.find('/') == std::string::npos,
                   "validated CONNECT target '%s'", copy.target.c_str());
      else
        FUZZ_CHECK(copy.target == "*" || (!copy.target.empty() && copy.target.front() == '/'),
                   "validated target '%s'", copy.target.c_str());
      for (unsigned char c : copy.authority)
        FUZZ_CHECK(c > 0x20 && c != 0x7f && c != '/' && c != '@', "validated authority '%s'",
                   copy.authority.c_str());
      FUZZ_CHECK(copy.headers.count("host") <= 1, "validated request with repeated Host");
    }
  } else {
    uint16_t st = p.response().status;
    FUZZ_CHECK(st >= 100 && st <= 599 && st != 101, "response status %u accepted", st);
  }
}

// Parses `stream`; `frag` null means every byte is available at once. The
// record says that an error happened, not which: llhttp reports a URL or
// header span only when it ends or the buffer does, so a head both too
// long and malformed is "too large" (431) or "bad" (400) depending on the
// split. Either way it is refused at the same message.
inline std::string drive(std::string_view stream, const DriveOptions& o, Fragmenter* frag) {
  Parser p(o.kind, o.limits);
  std::string trace;
  size_t message = 0;
  std::string body;
  bool no_body = o.kind == Parser::Kind::response && (o.head_mask & 1);
  p.expect_no_body(no_body);
  size_t off = 0;       // consumed
  size_t received = 0;  // arrived so far
  for (;;) {
    if (p.error() != ParseError::none) {
      trace += "error\n";
      break;
    }
    if (p.message_done()) {
      trace += "message " + std::to_string(message) + " body " + std::to_string(body.size()) +
               " keep_alive " + std::to_string(p.keep_alive()) + " upgrade " +
               std::to_string(p.upgrade()) + "\n" + body + "\n";
      // CONNECT ends at its head whatever it declares: what follows is the
      // tunnel, which the session refuses before forwarding anything.
      if (o.kind == Parser::Kind::request) {
        bool tunnel = p.request().method == "CONNECT";
        if (p.has_content_length() && !p.chunked() && !tunnel)
          FUZZ_CHECK(body.size() == p.content_length(), "request body %zu, Content-Length %llu",
                     body.size(), static_cast<unsigned long long>(p.content_length()));
        if (!p.has_content_length() && !p.chunked())
          FUZZ_CHECK(body.empty(), "unframed request carried a %zu-byte body", body.size());
      } else {
        uint16_t st = p.response().status;
        if (no_body || st == 204 || st == 304 || st < 200)
          FUZZ_CHECK(body.empty(), "response %u (HEAD %d) carried a %zu-byte body", st, no_body,
                     body.size());
        else if (p.has_content_length() && !p.chunked())
          FUZZ_CHECK(body.size() == p.content_length(), "response body %zu, Content-Length %llu",
                     body.size(), static_cast<unsigned long long>(p.content_length()));
      }
      // The session stops reading HTTP here: the rest is a tunnel or refused.
      if (p.upgrade() || !p.keep_alive()) break;
      p.next_message();
      ++message;
      body.clear();
      no_body = o.kind == Parser::Kind::response && (o.head_mask >> (message % 8) & 1);
      p.expect_no_body(no_body);
      continue;
    }
    if (off == received) {
      if (received == stream.size()) {
        bool complete = p.finish();
        trace += "finish " + std::to_string(complete) + " done " +
                 std::to_string(p.message_done()) + " body " + std::to_string(body.size()) + "\n";
        if (p.message_done()) trace += body + "\n";
        if (p.error() != ParseError::none) trace += "error\n";
        break;
      }
      received += frag ? frag->next(stream.size() - received) : stream.size() - received;
    }
    const char* data = stream.data() + off;
    size_t len = received - off;
    bool had_head = p.head_done();
    if (had_head && o.kind == Parser::Kind::request && !check_ahead_or_true(p, data, len)) {
      // check_ahead() said the buffered body framing is broken: the real
      // parse of the same bytes must fail too (nothing may go upstream).
      Parser* probe = &p;
      size_t at = 0;
      while (probe->error() == ParseError::none && !probe->message_done() && at < len) {
        size_t n = probe->feed(data + at, len - at);
        if (n == 0 && probe->error() == ParseError::none && !probe->message_done()) break;
        at += n;
      }
      FUZZ_CHECK(p.error() != ParseError::none, "check_ahead() refused bytes feed() accepts");
      trace += "error\n";
      break;
    }
    size_t n = p.feed(data, len);
    FUZZ_CHECK(n <= len, "feed consumed %zu of %zu", n, len);
    std::string_view b = p.body();
    if (!b.empty()) {
      FUZZ_CHECK(b.data() >= data && b.data() + b.size() <= data + n,
                 "body span outside the consumed bytes");
      body += b;
    }
    bool new_head = !had_head && p.head_done();
    if (new_head && p.error() == ParseError::none) {
      if (o.kind == Parser::Kind::request) {
        const RequestHead& r = p.request();
        trace +=
            "request " + r.method + " " + r.target + " 1." + std::to_string(r.version_minor) + "\n";
        append_headers(trace, r.headers);
      } else {
        const ResponseHead& r = p.response();
        trace += "response " + std::to_string(r.status) + " " + r.reason + " 1." +
                 std::to_string(r.version_minor) + "\n";
        append_headers(trace, r.headers);
      }
      trace += "framing chunked " + std::to_string(p.chunked()) + " length " +
               (p.has_content_length() ? std::to_string(p.content_length()) : "-") +
               " body_expected " + std::to_string(p.body_expected()) + "\n";
      check_head(p, o.kind);
    }
    bool event = new_head || !b.empty() || p.message_done() || p.error() != ParseError::none;
    // "No input makes a worker spin": with bytes offered, feed() either
    // consumes some or reports something.
    FUZZ_CHECK(n > 0 || event, "feed() made no progress on %zu bytes", len);
    off += n;
  }
  return trace;
}

// Runs one fuzz input: byte 0 picks the fragmentation, byte 1 the limits
// (and for responses which messages answer HEAD), the rest is the stream.
inline void run_parser_input(const uint8_t* data, size_t size, Parser::Kind kind) {
  if (size < 2) return;
  DriveOptions o;
  o.kind = kind;
  uint8_t flags = data[1];
  if (flags & 0x80) o.limits = {.max_header_bytes = 200, .max_headers = 6};
  o.head_mask = kind == Parser::Kind::response ? static_cast<uint8_t>(flags & 0x7f) : 0;
  std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::string whole = drive(stream, o, nullptr);
  Fragmenter frag(data[0]);
  std::string pieces = drive(stream, o, &frag);
  if (whole != pieces) {
    std::fprintf(stderr, "\nwhole:\n");
    print_escaped(whole, 4000);
    std::fprintf(stderr, "\nfragmented (seed %u):\n", data[0]);
    print_escaped(pieces, 4000);
    FUZZ_CHECK(whole == pieces, "parse depends on how the stream was split");
  }
}

}  // namespace sluice::fuzz
