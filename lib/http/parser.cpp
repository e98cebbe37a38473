#include "http/parser.hpp"

#include "http/tokens.hpp"
#include "http/wire_check.hpp"

#include <llhttp.h>

#include <array>
#include <charconv>

namespace sluice::http {

namespace {
constexpr int kPause = HPE_PAUSED;

constexpr int kUserError = HPE_USER;
constexpr uint16_t kConnectionFlags =
    F_CONNECTION_KEEP_ALIVE | F_CONNECTION_CLOSE | F_CONNECTION_UPGRADE;

// RFC 9112 6.1 and 6.3 for a request: HTTP/1.0 has no Transfer-Encoding;
// chunked must be the final coding and appear once; any other coding is one
// a proxy cannot decode (501, as nginx answers).
ParseError check_transfer_encoding(const Headers& headers, int minor, const char*& why) {
  if (minor == 0) {
    why = "Transfer-Encoding in an HTTP/1.0 request";
    return ParseError::bad_request;
  }
  int chunked = 0;
  bool chunked_last = false;
  bool other = false;
  for (const auto& [name, value] : headers.entries()) {
    if (!iequals(name, "transfer-encoding")) continue;
    for_each_list_item(value, [&](std::string_view coding) {
      chunked_last = iequals(coding, "chunked");
      if (chunked_last)
        ++chunked;
      else
        other = true;
    });
  }
  if (chunked != 1 || !chunked_last) {
    why = "Transfer-Encoding must end in chunked, once";
    return ParseError::bad_request;
  }
  if (other) {
    why = "unsupported transfer coding";
    return ParseError::not_implemented;
  }
  return ParseError::none;
}
}  // namespace

struct Parser::Callbacks {
  static Parser& self(llhttp_t* p) { return *static_cast<Parser*>(p->data); }

  static int on_message_begin(llhttp_t* p) {
    auto& s = self(p);
    s.started_ = true;
    s.request_.target.clear();  // RequestHead defaults to "/"
    return 0;
  }
  static int on_url(llhttp_t* p, const char* at, size_t n) {
    auto& s = self(p);
    s.started_ = true;
    if (!s.count_header_bytes(n)) return kUserError;
    s.request_.target.append(at, n);
    return 0;
  }
  static int on_status(llhttp_t* p, const char* at, size_t n) {
    auto& s = self(p);
    // The reason phrase is part of the bounded head.
    if (!s.count_header_bytes(n)) return kUserError;
    s.response_.reason.append(at, n);
    return 0;
  }
  static int on_header_field(llhttp_t* p, const char* at, size_t n) {
    auto& s = self(p);
    if (!s.count_header_bytes(n)) return kUserError;
    s.field_.add(at, n);
    return 0;
  }
  static int on_header_value(llhttp_t* p, const char* at, size_t n) {
    auto& s = self(p);
    if (!s.count_header_bytes(n)) return kUserError;
    s.value_.add(at, n);
    return 0;
  }
  static int on_header_value_complete(llhttp_t* p) {
    auto& s = self(p);
    Headers& h = s.kind_ == Kind::request ? s.request_.headers : s.response_.headers;
    // llhttp 8 lets whitespace before the colon through; RFC 9112 5.1 says reject.
    std::string_view name = s.field_.view();
    if (!is_token(name)) {
      s.fail(ParseError::bad_request, "invalid header field name");
      return kUserError;
    }
    // Trailers go to their own list: the head has already gone on, and
    // folding them into it would let a client add headers late.
    Headers& into = s.head_done_ ? s.trailers_ : h;
    if (into.size() + 1 > s.limits_.max_headers) {
      s.fail(s.kind_ == Kind::request ? ParseError::header_too_large : ParseError::bad_response,
             "too many headers");
      return kUserError;
    }
    // llhttp keeps trailing whitespace of values; RFC 9110 says strip it.
    std::string_view value = trim_end(s.value_.view());
    into.entries().emplace_back(std::piecewise_construct, std::forward_as_tuple(name),
                                std::forward_as_tuple(value));
    s.field_.clear();
    s.value_.clear();
    return 0;
  }
  static int on_headers_complete(llhttp_t* p) {
    auto& s = self(p);
    s.head_done_ = true;
    // llhttp counts content_length down while reading the body; keep the declared value.
    s.content_length_ = p->content_length;
    s.head_chunked_ = (p->flags & F_CHUNKED) != 0;
    s.head_sized_ = (p->flags & F_CONTENT_LENGTH) != 0;
    s.head_connection_ = p->flags & kConnectionFlags;
    if (s.kind_ == Kind::request) {
      if (p->http_major != 1) {
        s.fail(ParseError::bad_version, "HTTP version not supported");
        return kUserError;
      }
      // llhttp flags Transfer-Encoding only when its value is not empty; an
      // empty one is still a Transfer-Encoding that does not end in chunked.
      if ((p->flags & F_TRANSFER_ENCODING) || s.request_.headers.contains("transfer-encoding")) {
        const char* why = nullptr;
        if (ParseError e = check_transfer_encoding(s.request_.headers, p->http_minor, why);
            e != ParseError::none) {
          s.fail(e, why);
          return kUserError;
        }
        // The framing llhttp will use must be the one we checked: it does not
        // take "chunked" followed by whitespace for chunked (a fuzzer find).
        if (!(p->flags & F_CHUNKED)) {
          s.fail(ParseError::bad_request, "Transfer-Encoding not understood as chunked");
          return kUserError;
        }
      }
      s.request_.version_minor = p->http_minor;
      s.request_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    } else {
      // A 101 to a request that asked for no upgrade is as wrong as a
      // status outside 1xx-5xx or a version other than 1.x: each would leave
      // the connection in no known state.
      if (p->http_major != 1 || p->status_code < 100 || p->status_code > 599 ||
          (p->status_code == 101 && !s.upgrade_ok_)) {
        s.fail(ParseError::bad_response, "invalid response status");
        return kUserError;
      }
      s.response_.status = p->status_code;
      s.response_.version_minor = p->http_minor;
      // 1 tells llhttp the message has no body: a response to HEAD, and
      // 1xx, 204 and 304 whatever their headers say (RFC 9112 6.3).
      int st = p->status_code;
      if ((s.no_body_ && st >= 200) || st == 204 || st == 304 ||
          (st >= 100 && st < 200 && st != 101))
        return 1;
    }
    return kPause;
  }
  static int on_body(llhttp_t* p, const char* at, size_t n) {
    self(p).body_ = std::string_view(at, n);
    return kPause;
  }
  static int on_message_complete(llhttp_t* p) {
    auto& s = self(p);
    s.message_done_ = true;
    // llhttp's flags also take a Connection field among the trailers; the
    // head's decides, for keep_alive() and for llhttp's own check of what
    // may follow this message.
    p->flags = static_cast<uint16_t>((p->flags & ~kConnectionFlags) | s.head_connection_);
    return kPause;
  }

  static const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t v;
      llhttp_settings_init(&v);
      v.on_message_begin = on_message_begin;
      v.on_url = on_url;
      v.on_status = on_status;
      v.on_header_field = on_header_field;
      v.on_header_value = on_header_value;
      v.on_header_value_complete = on_header_value_complete;
      v.on_headers_complete = on_headers_complete;
      v.on_body = on_body;
      v.on_message_complete = on_message_complete;
      return v;
    }();
    return s;
  }
};

Parser::Parser(Kind kind, ParserLimits limits)
    : llhttp_(std::make_unique<llhttp_t>()), kind_(kind), limits_(limits) {
  llhttp_init(llhttp_.get(), kind == Kind::request ? HTTP_REQUEST : HTTP_RESPONSE,
              &Callbacks::settings());
  llhttp_->data = this;
}

Parser::~Parser() = default;

bool Parser::count_header_bytes(size_t n) {
  header_bytes_ += n;
  if (header_bytes_ <= limits_.max_header_bytes) return true;
  fail(kind_ == Kind::request ? ParseError::header_too_large : ParseError::bad_response,
       "header block too large");
  return false;
}

void Parser::fail(ParseError e, const char* reason) {
  if (error_ != ParseError::none) return;
  error_ = e;
  error_reason_ = reason;
}

void Parser::Piece::add(const char* at, size_t n) {
  if (owned.empty() && span.empty()) {
    span = {at, n};
    return;
  }
  spill();
  owned.append(at, n);
}

void Parser::Piece::spill() {
  if (span.empty()) return;
  owned.append(span);
  span = {};
}

size_t Parser::feed(const char* data, size_t len) {
  body_ = {};
  if (error_ != ParseError::none) return 0;
  if (message_done_) return 0;  // caller must next_message() first
  llhttp_errno_t err = llhttp_execute(llhttp_.get(), data, len);
  // A name or value cut off by the end of `data` keeps its bytes.
  field_.spill();
  value_.spill();
  if (err == HPE_OK) return len;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    size_t used = llhttp_get_error_pos(llhttp_.get()) - data;
    if (err == HPE_PAUSED_UPGRADE)
      llhttp_resume_after_upgrade(llhttp_.get());
    else
      llhttp_resume(llhttp_.get());
    return used;
  }
  if (err == HPE_USER && error_ != ParseError::none) return 0;
  if (kind_ == Kind::response)
    fail(ParseError::bad_response, llhttp_get_error_reason(llhttp_.get()));
  else
    fail(ParseError::bad_request, llhttp_get_error_reason(llhttp_.get()));
  return 0;
}

bool Parser::finish() {
  if (message_done_) return true;
  llhttp_errno_t err = llhttp_finish(llhttp_.get());
  if (err == HPE_OK || err == HPE_PAUSED) return message_done_ || !started_;
  fail(kind_ == Kind::response ? ParseError::bad_response : ParseError::bad_request,
       llhttp_get_error_reason(llhttp_.get()));
  return false;
}

bool Parser::check_ahead(const char* data, size_t len) const {
  if (len == 0 || message_done_ || error_ != ParseError::none) return true;
  // A copy of the state with callbacks that only stop at the message's end:
  // nothing is recorded, and the bytes stay for the real feed().
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_message_complete = [](llhttp_t*) { return static_cast<int>(HPE_PAUSED); };
    return v;
  }();
  llhttp_t copy = *llhttp_;
  copy.settings = const_cast<llhttp_settings_t*>(&settings);
  copy.data = nullptr;
  llhttp_errno_t err = llhttp_execute(&copy, data, len);
  return err == HPE_OK || err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE;
}

bool Parser::keep_alive() const {
  return llhttp_should_keep_alive(llhttp_.get()) != 0;
}
bool Parser::chunked() const {
  return head_done_ ? head_chunked_ : (llhttp_->flags & F_CHUNKED) != 0;
}
bool Parser::has_content_length() const {
  return head_done_ ? head_sized_ : (llhttp_->flags & F_CONTENT_LENGTH) != 0;
}
uint64_t Parser::content_length() const {
  return has_content_length() ? content_length_ : 0;
}
bool Parser::upgrade() const {
  return llhttp_->upgrade != 0;
}

bool Parser::body_expected() const {
  if (message_done_) return false;
  if (chunked()) return true;
  if (has_content_length()) return content_length_ > 0;
  // Responses without framing run until close; requests have no body.
  return kind_ == Kind::response && !no_body_ && response_.status >= 200 &&
         response_.status != 204 && response_.status != 304;
}

void Parser::reset() {
  llhttp_reset(llhttp_.get());
  upgrade_ok_ = false;
  error_ = ParseError::none;
  error_reason_.clear();
  next_message();
}

void Parser::next_message() {
  // Clear rather than reassign, so strings and the header vector keep their
  // capacity from one message to the next.
  request_.method.clear();
  request_.target.clear();
  request_.authority.clear();
  request_.scheme = "http";
  request_.version_minor = 1;
  request_.headers.clear();
  request_.listener_port = 0;
  response_.status = 200;
  response_.reason.clear();
  response_.version_minor = 1;
  response_.headers.clear();
  field_.clear();
  value_.clear();
  header_bytes_ = 0;
  trailers_.clear();
  head_chunked_ = head_sized_ = false;
  head_connection_ = 0;
  started_ = false;
  head_done_ = false;
  message_done_ = false;
  no_body_ = false;
  body_ = {};
}

namespace {

bool has_bad_target_char(std::string_view t) {
  for (unsigned char c : t)
    if (c <= 0x20 || c == 0x7f || c == '#') return true;
  return false;
}

}  // namespace

std::string validate_request(RequestHead& head) {
  std::string_view target = head.target;
  if (has_bad_target_char(target)) return "invalid character or fragment in request target";
  if (head.method == "CONNECT") {
    // Only authority-form (RFC 9112 3.2.3): routed (and refused) as a tunnel.
    if (target.empty() || target.find('/') != std::string_view::npos)
      return "CONNECT needs an authority-form target";
  } else if (target.starts_with("http://") || target.starts_with("https://")) {
    // Absolute-form (a proxy request): its authority replaces Host (RFC 9112 3.2.2).
    size_t start = target.find("//") + 2;
    size_t slash = target.find_first_of("/?", start);
    std::string authority(target.substr(start, slash - start));
    if (authority.empty() || authority.find('@') != std::string::npos)
      return "invalid authority in absolute-form target";
    std::string rest = slash == std::string_view::npos ? "/" : std::string(target.substr(slash));
    if (rest.front() == '?') rest.insert(0, "/");
    head.headers.set("host", authority);
    head.target = std::move(rest);
  } else if (target == "*") {
    if (head.method != "OPTIONS") return "asterisk-form target is only valid for OPTIONS";
  } else if (target.empty() || target.front() != '/') {
    return "request target must be origin-form or absolute-form";
  }
  size_t hosts = head.headers.count("host");
  if (hosts > 1) return "repeated Host header";
  if (hosts == 0) {
    if (head.version_minor >= 1) return "missing Host header";
  } else {
    head.authority.assign(*head.headers.get("host"));
    for (unsigned char c : head.authority)
      if (c <= 0x20 || c == 0x7f || c == '/' || c == '@' || c == '\\') return "invalid Host header";
  }
  return {};
}

}  // namespace sluice::http
