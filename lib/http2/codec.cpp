#include "http2/codec.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "http/tokens.hpp"
#include "http2/nghttp2_util.hpp"

namespace sluice::http2 {

namespace {

bool is_connection_specific(std::string_view lower_name) {
  return lower_name == "connection" || lower_name == "keep-alive" ||
         lower_name == "proxy-connection" || lower_name == "transfer-encoding" ||
         lower_name == "upgrade" || lower_name == "te";
}

using detail::as_view;
using detail::make_nv;

}  // namespace

Headers h2_fields_from_h1(const Headers& headers) {
  // Fields a Connection header names are hop-by-hop too (RFC 9110 §7.6.1).
  std::vector<std::string> named;
  for (const auto& [name, value] : headers.entries())
    if (http::iequals(name, "connection"))
      http::for_each_list_item(
          value, [&](std::string_view item) { named.push_back(http::to_lower(item)); });
  Headers out;
  out.reserve(headers.size());
  for (const auto& [name, value] : headers.entries()) {
    std::string lower = http::to_lower(name);
    if (is_connection_specific(lower) || lower == "host") continue;
    if (std::find(named.begin(), named.end(), lower) != named.end()) continue;
    out.add(std::move(lower), value);
  }
  return out;
}

struct ServerSession::Impl {
  // One client stream: its request as it is decoded, and its response body
  // queue (bounded by the caller through pending_data()).
  struct StreamState {
    RequestHead head;
    std::string protocol;  // :protocol
    std::vector<std::string> cookies;
    Headers trailers;
    bool in_trailers = false;
    size_t header_bytes = 0;
    bool request_done = false;
    bool response_started = false;
    bool response_deferred = false;  // the data provider returned DEFERRED
    std::string out;
    size_t out_begin = 0;
    bool out_eof = false;
    std::optional<Headers> out_trailers;
  };

  Settings settings;
  nghttp2_session* session = nullptr;
  std::unordered_map<int32_t, StreamState> streams;
  std::vector<Event> events;
  CloseReason reason = CloseReason::none;
  bool failed = false;  // a fatal error: nothing more is read
  uint64_t streams_opened = 0;
  uint64_t premature_resets = 0;
  uint32_t empty_frames = 0;
  bool graceful_goaway = false;

  StreamState* find(int32_t id) {
    auto it = streams.find(id);
    return it == streams.end() ? nullptr : &it->second;
  }

  void terminate(CloseReason why, ErrorCode code) {
    if (reason == CloseReason::none) reason = why;
    nghttp2_session_terminate_session(session, static_cast<uint32_t>(code));
  }

  // --- nghttp2 callbacks (user_data is the Impl) ---

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    int32_t id = frame->hd.stream_id;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      self.streams.try_emplace(id);
      ++self.streams_opened;
      if (id > self.settings.stream_id_goaway_threshold && !self.graceful_goaway) {
        // Serve this stream, refuse later ones: the client reconnects.
        self.graceful_goaway = true;
        if (self.reason == CloseReason::none) self.reason = CloseReason::stream_ids_used;
        nghttp2_submit_goaway(self.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, nullptr, 0);
      }
    } else if (StreamState* s = self.find(id)) {
      s->in_trailers = true;
    }
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    StreamState* s = self.find(frame->hd.stream_id);
    if (!s) return 0;
    // Counted as HTTP/1 would ("name: value\r\n"); past a bound the stream
    // is reset and nghttp2 stops calling back for the rest of the block.
    s->header_bytes += namelen + valuelen + 4;
    size_t count = s->head.headers.size() + s->cookies.size() + s->trailers.size();
    if (s->header_bytes > self.settings.max_header_list_bytes || count >= self.settings.max_headers)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    std::string_view n = as_view(name, namelen), v = as_view(value, valuelen);
    if (s->in_trailers) {
      if (!n.empty() && n[0] != ':') s->trailers.add(std::string(n), std::string(v));
      return 0;
    }
    if (n == ":method") {
      s->head.method = v;
    } else if (n == ":path") {
      s->head.target = v;
    } else if (n == ":scheme") {
      s->head.scheme = v;
    } else if (n == ":authority") {
      s->head.authority = v;
    } else if (n == ":protocol") {
      // nghttp2 accepts it only on a CONNECT, and only once the setting
      // was sent.
      s->protocol = http::to_lower(v);
    } else if (n == "cookie") {
      s->cookies.emplace_back(v);
    } else if (n == "host") {
      // :authority wins when both are present (RFC 9113 §8.3.1).
      if (s->head.authority.empty()) s->head.authority = v;
    } else {
      s->head.headers.add(std::string(n), std::string(v));
    }
    return 0;
  }

  void request_head_done(int32_t id, StreamState& s, bool end_stream) {
    if (s.head.authority.empty()) {
      // HTTP/1 needs a Host; a request without one cannot be routed.
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
      return;
    }
    Headers headers;
    headers.reserve(s.head.headers.size() + 2);
    headers.add("host", s.head.authority);
    if (!s.cookies.empty()) {
      std::string joined;
      for (const auto& c : s.cookies) {
        if (!joined.empty()) joined += "; ";
        joined += c;
      }
      headers.add("cookie", std::move(joined));
    }
    for (auto& e : s.head.headers.entries()) headers.add(std::move(e.first), std::move(e.second));
    s.head.headers = std::move(headers);
    s.cookies.clear();
    // A plain CONNECT names its target in :authority (RFC 9113 §8.5), as
    // HTTP/1.1's authority-form does.
    if (s.head.method == "CONNECT" && s.protocol.empty()) s.head.target = s.head.authority;
    Event ev{Event::Kind::request, id};
    ev.head = std::move(s.head);
    ev.end_stream = end_stream;
    ev.protocol = std::move(s.protocol);
    events.push_back(std::move(ev));
    s.head = RequestHead{};
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    int32_t id = frame->hd.stream_id;
    bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    switch (frame->hd.type) {
      case NGHTTP2_DATA:
        if (frame->hd.length == 0 && !end_stream) {
          if (++self.empty_frames > self.settings.max_consecutive_empty_frames)
            self.terminate(CloseReason::flood, ErrorCode::enhance_your_calm);
        } else {
          self.empty_frames = 0;
        }
        break;
      case NGHTTP2_HEADERS: {
        self.empty_frames = 0;
        StreamState* s = self.find(id);
        if (!s) break;
        if (!s->in_trailers) {
          self.request_head_done(id, *s, end_stream);
        } else {
          Event ev{Event::Kind::trailers, id};
          ev.trailers = std::move(s->trailers);
          self.events.push_back(std::move(ev));
          s->trailers = Headers{};
        }
        break;
      }
      case NGHTTP2_RST_STREAM:
        if (StreamState* s = self.find(id); s && !s->response_started) {
          ++self.premature_resets;
          if (self.streams_opened >= self.settings.premature_reset_min_streams &&
              self.premature_resets * 2 > self.streams_opened)
            self.terminate(CloseReason::rapid_reset, ErrorCode::enhance_your_calm);
        }
        break;
      default:
        break;
    }
    if (end_stream && (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS))
      if (StreamState* s = self.find(id); s && !s->request_done) {
        s->request_done = true;
        self.events.push_back(Event{Event::Kind::end, id});
      }
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    if (!self.find(id)) return 0;
    // Consecutive chunks of one stream become one event.
    if (!self.events.empty() && self.events.back().kind == Event::Kind::data &&
        self.events.back().stream == id)
      self.events.back().data.append(as_view(data, len));
    else
      self.events.push_back(Event{Event::Kind::data, id, {}, {}, std::string(as_view(data, len))});
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    auto it = self.streams.find(id);
    if (it == self.streams.end()) return 0;
    bool finished = it->second.request_done && it->second.out_eof && error_code == NGHTTP2_NO_ERROR;
    if (!finished) {
      Event ev{Event::Kind::reset, id};
      ev.error = static_cast<ErrorCode>(error_code);
      self.events.push_back(std::move(ev));
    }
    self.streams.erase(it);
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    // GOAWAYs nghttp2 sends on its own (reset rate, bad frames) name a reason.
    if (frame->hd.type == NGHTTP2_GOAWAY && self.reason == CloseReason::none) {
      switch (frame->goaway.error_code) {
        case NGHTTP2_NO_ERROR:
          break;
        case NGHTTP2_ENHANCE_YOUR_CALM:
          self.reason = CloseReason::flood;
          break;
        case NGHTTP2_INTERNAL_ERROR:
          self.reason = CloseReason::internal;
          break;
        default:
          self.reason = CloseReason::protocol_error;
      }
    }
    return 0;
  }

  static ssize_t read_body(nghttp2_session*, int32_t id, uint8_t* buf, size_t length,
                           uint32_t* flags, nghttp2_data_source*, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    StreamState* s = self.find(id);
    if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = std::min(length, s->out.size() - s->out_begin);
    std::memcpy(buf, s->out.data() + s->out_begin, n);
    s->out_begin += n;
    if (s->out_begin == s->out.size()) {
      s->out.clear();
      s->out_begin = 0;
    }
    if (s->out.empty() && s->out_eof) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s->out_trailers) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        self.submit_trailer_frame(id, *s->out_trailers);
      }
    } else if (n == 0) {
      s->response_deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }

  bool submit_trailer_frame(int32_t id, const Headers& trailers) {
    Headers fields = h2_fields_from_h1(trailers);
    std::vector<nghttp2_nv> nva;
    nva.reserve(fields.size());
    for (const auto& [n, v] : fields.entries()) nva.push_back(make_nv(n, v));
    return nghttp2_submit_trailer(session, id, nva.data(), nva.size()) == 0;
  }
};

ServerSession::ServerSession(const Settings& settings) : impl_(std::make_unique<Impl>()) {
  impl_->settings = settings;
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &Impl::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, &Impl::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &Impl::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &Impl::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &Impl::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, &Impl::on_frame_send);

  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  // The caller credits windows through consume(): backpressure to the client.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_outbound_ack(opt, settings.max_outbound_acks);
  nghttp2_option_set_max_settings(opt, settings.max_settings_entries);
  nghttp2_option_set_max_continuations(opt, settings.max_continuations);
  nghttp2_option_set_stream_reset_rate_limit(opt, settings.reset_burst,
                                             settings.reset_rate_per_second);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_session_server_new2(&impl_->session, cbs, impl_.get(), opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);

  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, settings.max_frame_size},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, settings.header_table_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(std::min<size_t>(settings.max_header_list_bytes, UINT32_MAX))},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
  };
  // The last entry is sent only when extended CONNECT is on.
  size_t entries = std::size(iv) - (settings.enable_connect_protocol ? 0 : 1);
  nghttp2_submit_settings(impl_->session, NGHTTP2_FLAG_NONE, iv, entries);
  // The connection window beyond the 65535 every connection starts with.
  if (settings.initial_connection_window > 65535)
    nghttp2_session_set_local_window_size(impl_->session, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(settings.initial_connection_window));
}

ServerSession::~ServerSession() {
  nghttp2_session_del(impl_->session);
}

bool ServerSession::feed(std::span<const uint8_t> bytes) {
  if (impl_->failed) return false;
  ssize_t rv = nghttp2_session_mem_recv(impl_->session, bytes.data(), bytes.size());
  if (rv < 0) {
    impl_->failed = true;
    CloseReason why = CloseReason::protocol_error;
    if (rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
      why = CloseReason::flood;
    else if (rv == NGHTTP2_ERR_NOMEM || rv == NGHTTP2_ERR_CALLBACK_FAILURE)
      why = CloseReason::internal;
    impl_->terminate(
        why, why == CloseReason::flood ? ErrorCode::enhance_your_calm : ErrorCode::protocol_error);
    return false;
  }
  return alive();
}

size_t ServerSession::produce(std::string& out) {
  return detail::drain_output(impl_->session, out);
}

std::vector<Event> ServerSession::take_events() {
  return std::exchange(impl_->events, {});
}

void ServerSession::consume(int32_t stream, size_t n) {
  if (n == 0) return;
  if (nghttp2_session_consume(impl_->session, stream, n) != 0)
    nghttp2_session_consume_connection(impl_->session, n);
}

bool ServerSession::submit_response(int32_t stream, uint16_t status, const Headers& headers,
                                    bool end_stream) {
  Impl::StreamState* s = impl_->find(stream);
  if (!s || s->response_started || status < 100 || status > 999) return false;
  std::string code = std::to_string(status);
  Headers fields = h2_fields_from_h1(headers);
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size() + 1);
  nva.push_back(make_nv(":status", code));
  for (const auto& [n, v] : fields.entries()) nva.push_back(make_nv(n, v));
  if (status < 200)  // interim (100 Continue): the final head follows
    return nghttp2_submit_headers(impl_->session, NGHTTP2_FLAG_NONE, stream, nullptr, nva.data(),
                                  nva.size(), nullptr) == 0;
  s->response_started = true;
  if (end_stream) {
    s->out_eof = true;
    return nghttp2_submit_response(impl_->session, stream, nva.data(), nva.size(), nullptr) == 0;
  }
  nghttp2_data_provider provider{};
  provider.read_callback = &Impl::read_body;
  return nghttp2_submit_response(impl_->session, stream, nva.data(), nva.size(), &provider) == 0;
}

bool ServerSession::send_data(int32_t stream, std::string_view bytes, bool end_stream) {
  Impl::StreamState* s = impl_->find(stream);
  if (!s || !s->response_started || s->out_eof) return false;
  s->out.append(bytes);
  s->out_eof = end_stream;
  if (s->response_deferred) {
    s->response_deferred = false;
    nghttp2_session_resume_data(impl_->session, stream);
  }
  return true;
}

bool ServerSession::submit_trailers(int32_t stream, const Headers& trailers) {
  Impl::StreamState* s = impl_->find(stream);
  if (!s || !s->response_started || s->out_eof) return false;
  s->out_trailers = trailers;
  return send_data(stream, {}, true);
}

size_t ServerSession::pending_data(int32_t stream) const {
  const Impl::StreamState* s = impl_->find(stream);
  return s ? s->out.size() - s->out_begin : 0;
}

void ServerSession::reset(int32_t stream, ErrorCode code) {
  nghttp2_submit_rst_stream(impl_->session, NGHTTP2_FLAG_NONE, stream, static_cast<uint32_t>(code));
}

void ServerSession::shutdown() {
  if (impl_->graceful_goaway) return;
  impl_->graceful_goaway = true;
  nghttp2_submit_goaway(impl_->session, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(impl_->session), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

bool ServerSession::alive() const {
  return nghttp2_session_want_read(impl_->session) || nghttp2_session_want_write(impl_->session);
}

CloseReason ServerSession::close_reason() const {
  return impl_->reason;
}

size_t ServerSession::open_streams() const {
  return impl_->streams.size();
}

}  // namespace sluice::http2
