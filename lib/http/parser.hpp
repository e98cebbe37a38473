#pragma once
// HTTP/1.x parser over llhttp. Pure codec: bytes in, head / body spans /
// message end out; never touches a socket. One message event per feed() so the
// caller can act (route, connect upstream, write) between events.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sluice/request.hpp"

struct llhttp__internal_s;  // llhttp_t, kept out of this header

namespace sluice::http {

enum class ParseError {
  none,
  bad_request,       // 400: malformed syntax or framing
  header_too_large,  // 431: header block over the byte or count limit
  bad_response,      // upstream sent something unparseable or over a limit
  not_implemented,   // 501: a transfer coding other than chunked
  bad_version,       // 505: not HTTP/1.x
};

struct ParserLimits {
  size_t max_header_bytes = 60 * 1024;
  size_t max_headers = 100;
};

class Parser {
 public:
  enum class Kind { request, response };

  explicit Parser(Kind kind, ParserLimits limits = {});
  ~Parser();
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Parses from `data`, stopping after the head completes, after one body
  // span, after the message completes, or when input runs out. Returns the
  // number of bytes consumed; check the accessors below after each call.
  // Body spans point into `data`.
  size_t feed(const char* data, size_t len);
  // The peer closed: completes a close-delimited body. Returns false if the
  // message was cut short.
  bool finish();

  void set_limits(ParserLimits limits) { limits_ = limits; }

  // For a response parser: the next response answers a HEAD request, so it
  // has no body whatever its headers say. Set before feeding the response.
  void expect_no_body(bool v) { no_body_ = v; }
  // For a response parser: the request asked for an upgrade, so a 101 is a
  // final head (the bytes after it are the tunnel's); otherwise a 101 is a
  // bad response. Set before feeding the response.
  void expect_upgrade(bool v) { upgrade_ok_ = v; }

  bool head_done() const { return head_done_; }        // set once per message
  std::string_view body() const { return body_; }      // this feed's span
  bool message_done() const { return message_done_; }  // set once per message
  ParseError error() const { return error_; }
  std::string_view error_reason() const { return error_reason_; }

  // Head fields, valid after head_done().
  RequestHead& request() { return request_; }
  ResponseHead& response() { return response_; }
  bool keep_alive() const;  // per version and Connection header
  bool chunked() const;     // Transfer-Encoding: chunked framing
  bool has_content_length() const;
  uint64_t content_length() const;
  bool body_expected() const;  // framing says a body follows the head
  bool upgrade() const;
  // A chunked message's trailer fields, valid once message_done(). Kept
  // apart from the head (never folded into it: a client cannot add headers
  // late) and bounded with it: their count by max_headers, their bytes by
  // max_header_bytes together with the head's.
  const Headers& trailers() const { return trailers_; }

  // After head_done(), before body bytes are forwarded: runs the framing of
  // the `len` bytes already buffered through a copy of the parser state, so
  // a request whose body framing is already known to be broken is refused
  // before anything goes upstream. Consumes nothing. False: broken framing.
  bool check_ahead(const char* data, size_t len) const;

  // Clears per-message state to parse the next message on the connection.
  void next_message();
  // Forgets the connection too: the next bytes start a fresh stream.
  void reset();
  // True when no byte of a new message has been seen since next_message().
  bool idle() const { return !started_; }

 private:
  struct Callbacks;
  void fail(ParseError e, const char* reason);
  bool count_header_bytes(size_t n);

  std::unique_ptr<::llhttp__internal_s> llhttp_;
  Kind kind_;
  ParserLimits limits_;
  RequestHead request_;
  ResponseHead response_;
  // A header name or value as it arrives: a view of the bytes being fed
  // while it lies within one feed(), copied only when a read splits it.
  struct Piece {
    std::string owned;
    std::string_view span;
    void add(const char* at, size_t n);
    void spill();  // feed() returns: its bytes are the caller's again
    std::string_view view() const { return owned.empty() ? span : std::string_view(owned); }
    void clear() {
      owned.clear();
      span = {};
    }
  };
  Piece field_;
  Piece value_;
  size_t header_bytes_ = 0;
  Headers trailers_;
  uint64_t content_length_ = 0;
  // The head's framing, kept at head_done(): llhttp's flags also take
  // trailer fields, which must not reframe a message after the fact.
  bool head_chunked_ = false;
  bool head_sized_ = false;
  uint16_t head_connection_ = 0;  // the head's Connection flags (llhttp's)
  bool started_ = false;
  bool head_done_ = false;
  bool message_done_ = false;
  bool no_body_ = false;
  bool upgrade_ok_ = false;
  std::string_view body_;
  ParseError error_ = ParseError::none;
  std::string error_reason_;
};

// Validates a parsed request head against RFC 9112 rules llhttp leaves to the
// application (Host presence and uniqueness, target form, fragments) and
// normalises absolute-form targets. Returns an empty string when valid,
// otherwise the reason.
std::string validate_request(RequestHead& head);

}  // namespace sluice::http
