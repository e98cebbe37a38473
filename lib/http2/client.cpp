#include "http2/client.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "http/grpc.hpp"
#include "http/tokens.hpp"
#include "http2/nghttp2_util.hpp"

namespace sluice::http2 {

namespace {

using detail::as_view;
using detail::make_nv;

// `te` is connection-specific except for "trailers" (RFC 9113 §8.2.2),
// which gRPC servers require.
bool asks_for_trailers(const Headers& headers) {
  bool found = false;
  for (const auto& [name, value] : headers.entries())
    if (http::iequals(name, "te"))
      http::for_each_list_item(value, [&](std::string_view item) {
        if (http::iequals(http::trim(item), "trailers")) found = true;
      });
  return found;
}

}  // namespace

bool takes_trailers(const Headers& request) {
  // A gRPC request's te was dropped downstream as hop-by-hop; gRPC servers
  // refuse a call without it (the gRPC HTTP/2 protocol requires it).
  auto ct = request.get("content-type");
  return asks_for_trailers(request) || (ct && http::grpc_kind(*ct) == http::GrpcKind::grpc);
}

struct ClientSession::Impl {
  struct StreamState {
    uint16_t status = 0;
    Headers headers;
    size_t header_bytes = 0;
    bool head_done = false;  // the final head was reported
    bool finished = false;   // end was reported
    bool headers_sent = false;
    // Request body queue, framed as the windows allow.
    std::string out;
    size_t out_begin = 0;
    bool out_eof = false;
    bool deferred = false;
  };

  ClientSettings settings;
  nghttp2_session* session = nullptr;
  std::unordered_map<int32_t, StreamState> streams;
  std::vector<ClientEvent> events;
  bool failed = false;
  bool goaway = false;
  int32_t goaway_last = 0x7fffffff;

  StreamState* find(int32_t id) {
    auto it = streams.find(id);
    return it == streams.end() ? nullptr : &it->second;
  }
  const StreamState* find(int32_t id) const {
    auto it = streams.find(id);
    return it == streams.end() ? nullptr : &it->second;
  }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    if (StreamState* s = self.find(frame->hd.stream_id)) {
      s->headers.clear();
      s->header_bytes = 0;
    }
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                       size_t namelen, const uint8_t* value, size_t valuelen, uint8_t, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    StreamState* s = self.find(frame->hd.stream_id);
    if (!s) return 0;
    // Counted as HTTP/1 would; past a bound nghttp2 resets the stream.
    s->header_bytes += namelen + valuelen + 4;
    if (s->header_bytes > self.settings.max_header_list_bytes ||
        s->headers.size() >= self.settings.max_headers)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    std::string_view n = as_view(name, namelen), v = as_view(value, valuelen);
    if (n == ":status") {
      // nghttp2's messaging checks made it three digits.
      s->status = static_cast<uint16_t>((v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0'));
      return 0;
    }
    if (!n.empty() && n[0] == ':') return 0;
    s->headers.add(std::string(n), std::string(v));
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    int32_t id = frame->hd.stream_id;
    bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      self.goaway = true;
      self.goaway_last = std::min(self.goaway_last, frame->goaway.last_stream_id);
      ClientEvent ev{ClientEvent::Kind::goaway};
      ev.last_stream = frame->goaway.last_stream_id;
      ev.error = static_cast<ErrorCode>(frame->goaway.error_code);
      self.events.push_back(std::move(ev));
      return 0;
    }
    StreamState* s = self.find(id);
    if (!s) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS) {
      if (!s->head_done) {
        if (s->status < 200) return 0;  // interim: the final head follows
        s->head_done = true;
        ClientEvent ev{ClientEvent::Kind::head, id, s->status};
        ev.headers = std::move(s->headers);
        ev.end_stream = end_stream;
        self.events.push_back(std::move(ev));
      } else {
        ClientEvent ev{ClientEvent::Kind::trailers, id};
        ev.headers = std::move(s->headers);
        self.events.push_back(std::move(ev));
      }
      s->headers = Headers{};
    }
    if (end_stream && (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        s->head_done && !s->finished) {
      s->finished = true;
      self.events.push_back(ClientEvent{ClientEvent::Kind::end, id});
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len,
                           void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    if (!self.find(id)) return 0;
    if (!self.events.empty() && self.events.back().kind == ClientEvent::Kind::data &&
        self.events.back().stream == id)
      self.events.back().data.append(as_view(data, len));
    else
      self.events.push_back(
          ClientEvent{ClientEvent::Kind::data, id, 0, {}, std::string(as_view(data, len))});
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    if (frame->hd.type == NGHTTP2_HEADERS)
      if (StreamState* s = self.find(frame->hd.stream_id)) s->headers_sent = true;
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* ud) {
    auto& self = *static_cast<Impl*>(ud);
    auto it = self.streams.find(id);
    if (it == self.streams.end()) return 0;
    if (!it->second.finished) {
      ClientEvent ev{ClientEvent::Kind::reset, id};
      ev.error = static_cast<ErrorCode>(error_code);
      // Never sent, refused, or past the GOAWAY's last stream: the server
      // did not act on it (RFC 9113 §8.7).
      ev.refused = !it->second.head_done &&
                   (!it->second.headers_sent || error_code == NGHTTP2_REFUSED_STREAM ||
                    (self.goaway && id > self.goaway_last));
      self.events.push_back(std::move(ev));
    }
    self.streams.erase(it);
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
    } else if (n == 0) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }
};

ClientSession::ClientSession(const ClientSettings& settings) : impl_(std::make_unique<Impl>()) {
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
  // The caller credits windows through consume(): backpressure to the server.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_outbound_ack(opt, settings.max_outbound_acks);
  nghttp2_option_set_max_settings(opt, settings.max_settings_entries);
  nghttp2_option_set_max_continuations(opt, settings.max_continuations);
  nghttp2_option_set_no_closed_streams(opt, 1);
  nghttp2_session_client_new2(&impl_->session, cbs, impl_.get(), opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);

  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings.initial_stream_window},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, settings.header_table_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(std::min<size_t>(settings.max_header_list_bytes, UINT32_MAX))},
  };
  nghttp2_submit_settings(impl_->session, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  if (settings.initial_connection_window > 65535)
    nghttp2_session_set_local_window_size(impl_->session, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(settings.initial_connection_window));
}

ClientSession::~ClientSession() {
  nghttp2_session_del(impl_->session);
}

bool ClientSession::feed(std::span<const uint8_t> bytes) {
  if (impl_->failed) return false;
  ssize_t rv = nghttp2_session_mem_recv(impl_->session, bytes.data(), bytes.size());
  if (rv < 0) {
    impl_->failed = true;
    nghttp2_session_terminate_session(impl_->session, rv == NGHTTP2_ERR_FLOODED
                                                          ? NGHTTP2_ENHANCE_YOUR_CALM
                                                          : NGHTTP2_PROTOCOL_ERROR);
    return false;
  }
  return alive();
}

size_t ClientSession::produce(std::string& out) {
  return detail::drain_output(impl_->session, out);
}

std::vector<ClientEvent> ClientSession::take_events() {
  return std::exchange(impl_->events, {});
}

int32_t ClientSession::submit_request(const RequestHead& head, bool end_stream) {
  if (impl_->failed || impl_->goaway || head.method == "CONNECT") return 0;
  std::string authority = head.authority;
  if (authority.empty())
    if (auto host = head.headers.get("host")) authority = *host;
  Headers fields = h2_fields_from_h1(head.headers);
  if (takes_trailers(head.headers)) fields.add("te", "trailers");
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size() + 4);
  nva.push_back(make_nv(":method", head.method));
  nva.push_back(make_nv(":scheme", head.scheme));
  if (!authority.empty()) nva.push_back(make_nv(":authority", authority));
  nva.push_back(make_nv(":path", head.target));
  for (const auto& [n, v] : fields.entries()) nva.push_back(make_nv(n, v));
  nghttp2_data_provider provider{};
  provider.read_callback = &Impl::read_body;
  int32_t id = nghttp2_submit_request(impl_->session, nullptr, nva.data(), nva.size(),
                                      end_stream ? nullptr : &provider, nullptr);
  if (id <= 0) return 0;
  Impl::StreamState& s = impl_->streams[id];
  s.out_eof = end_stream;
  return id;
}

bool ClientSession::send_data(int32_t stream, std::string_view bytes, bool end_stream) {
  Impl::StreamState* s = impl_->find(stream);
  if (!s || s->out_eof) return false;
  s->out.append(bytes);
  s->out_eof = end_stream;
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(impl_->session, stream);
  }
  return true;
}

size_t ClientSession::pending_data(int32_t stream) const {
  const Impl::StreamState* s = impl_->find(stream);
  return s ? s->out.size() - s->out_begin : 0;
}

void ClientSession::consume(int32_t stream, size_t n) {
  if (n == 0) return;
  if (nghttp2_session_consume(impl_->session, stream, n) != 0)
    nghttp2_session_consume_connection(impl_->session, n);
}

void ClientSession::reset(int32_t stream, ErrorCode code) {
  nghttp2_submit_rst_stream(impl_->session, NGHTTP2_FLAG_NONE, stream, static_cast<uint32_t>(code));
}

void ClientSession::shutdown() {
  nghttp2_session_terminate_session(impl_->session, NGHTTP2_NO_ERROR);
}

bool ClientSession::alive() const {
  return nghttp2_session_want_read(impl_->session) || nghttp2_session_want_write(impl_->session);
}

bool ClientSession::unprocessed(int32_t stream) const {
  const Impl::StreamState* s = impl_->find(stream);
  if (!s || s->head_done) return false;
  return !s->headers_sent || (impl_->goaway && stream > impl_->goaway_last);
}

bool ClientSession::goaway_received() const {
  return impl_->goaway;
}

uint32_t ClientSession::peer_max_concurrent_streams() const {
  return nghttp2_session_get_remote_settings(impl_->session,
                                             NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

size_t ClientSession::open_streams() const {
  return impl_->streams.size();
}

}  // namespace sluice::http2
