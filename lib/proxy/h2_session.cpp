#include "proxy/h2_session.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/rand.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <array>
#include <memory>
#include <optional>
#include <unordered_map>

#include "http/grpc.hpp"
#include "http/parser.hpp"
#include "http/serializer.hpp"
#include "http/tokens.hpp"
#include "http2/codec.hpp"
#include "proxy/host.hpp"
#include "proxy/session.hpp"

namespace sluice {

namespace {

using asio::awaitable;
using asio::ip::tcp;
using Timeout = ConnectionSlot::Timeout;
constexpr auto kNothrow = asio::experimental::as_tuple(asio::use_awaitable);

// Response bytes a stream may have queued for the client's window before
// its pipe is read again.
constexpr size_t kMaxPendingResponse = 64 * 1024;
constexpr size_t kReadSize = 16 * 1024;

// A wait another coroutine ends: a timer that never fires, cancelled.
struct Signal {
  explicit Signal(const asio::any_io_executor& ex) : timer(ex) {}
  awaitable<void> wait() {
    timer.expires_at(asio::steady_timer::time_point::max());
    co_await timer.async_wait(kNothrow);
  }
  void notify() { timer.cancel(); }
  asio::steady_timer timer;
};

http2::Settings settings_from(const Snapshot& snap, const std::string& listener) {
  const Limits& limits = snap.limits;
  http2::Settings s;
  s.max_header_list_bytes = limits.max_request_header_bytes;
  s.max_headers = limits.max_request_headers;
  if (const CompiledListener* l = snap.listener(listener))
    s.enable_connect_protocol = l->config.http2_extended_connect;
  return s;
}

// RFC 6455's handshake nonce: 16 random bytes in base64. An HTTP/1.1
// upstream needs one; a WebSocket over HTTP/2 has none (RFC 8441 §5).
std::string websocket_key() {
  uint8_t raw[16];
  RAND_bytes(raw, sizeof raw);
  uint8_t out[25];
  size_t n = EVP_EncodeBlock(out, raw, sizeof raw);
  return std::string(reinterpret_cast<const char*>(out), n);
}

// One HTTP/2 stream: its end of the socket pair and the request bytes on
// their way to the session.
struct H2Stream {
  H2Stream(int32_t id, tcp::socket pipe)
      : id(id),
        pipe(std::move(pipe)),
        writer(this->pipe.get_executor()),
        reader(this->pipe.get_executor()) {}
  int32_t id;
  tcp::socket pipe;
  Signal writer;  // request bytes queued or the stream ended
  Signal reader;  // the client's window drained some response
  std::string to_pipe;
  size_t credit = 0;  // body bytes in to_pipe, credited to the client once written
  bool chunked = false;
  Headers trailers;  // the request's, sent in the last chunk
  bool request_closed = false;
  bool head_request = false;
  // An extended CONNECT (RFC 8441): once the session's 101 came back, bytes
  // flow raw both ways as DATA, and the client's END_STREAM half-closes.
  bool tunnel = false;
  bool tunnel_open = false;
  bool synthetic_key = false;  // the Sec-WebSocket-Key is ours, not the client's
  bool dead = false;           // reset, or the response is complete
  int live = 2;                // writer and reader coroutines still running
};

template <typename Stream>
class H2Connection {
 public:
  H2Connection(SessionHost& worker, Stream stream, std::string listener, uint16_t port,
               tls::DownstreamTls tls, std::string preread)
      : worker_(worker),
        stream_(std::move(stream)),
        slot_(&stream_.lowest_layer()),
        listener_(std::move(listener)),
        port_(port),
        tls_(std::move(tls)),
        preread_(std::move(preread)),
        codec_(settings_from(*worker.snapshot(), listener_)),
        streams_done_(stream_.get_executor()) {}

  awaitable<void> run();

 private:
  awaitable<void> flush();
  void handle_events();
  void open_stream(http2::Event& e);
  awaitable<void> pipe_writer(std::shared_ptr<H2Stream> st);
  awaitable<void> pipe_reader(std::shared_ptr<H2Stream> st);
  bool relay_response(H2Stream& st, http::Parser& parser, const char* data, size_t n,
                      bool& head_sent);
  void end_stream(H2Stream& st) {
    st.dead = true;
    asio::error_code ec;
    st.pipe.close(ec);  // the session sees its client leave
    st.writer.notify();
    st.reader.notify();
  }
  void coroutine_done(H2Stream& st) {
    if (--st.live == 0) streams_.erase(st.id);
    if (--live_ == 0) streams_done_.notify();
  }

  SessionHost& worker_;
  Stream stream_;
  ConnectionSlot slot_;
  std::string listener_;
  uint16_t port_;
  tls::DownstreamTls tls_;
  std::string preread_;
  http2::ServerSession codec_;
  StreamOrigin origin_;
  std::unordered_map<int32_t, std::shared_ptr<H2Stream>> streams_;
  int live_ = 0;  // stream coroutines; the connection outlives them
  Signal streams_done_;
  bool writing_ = false;
  bool broken_ = false;  // a write failed
  std::string out_;
};

template <typename Stream>
awaitable<void> H2Connection<Stream>::run() {
  slot_.counters = worker_.listener_counters(listener_);
  worker_.attach(&slot_);
  asio::error_code ec;
  auto remote = stream_.lowest_layer().remote_endpoint(ec);
  if (!ec) {
    origin_.client_ip = remote.address().to_string();
    origin_.client_address = http::join_host_port(origin_.client_ip, remote.port());
  }
  auto local = stream_.lowest_layer().local_endpoint(ec);
  if (!ec) origin_.local_address = http::join_host_port(local.address().to_string(), local.port());
  origin_.tls = !std::is_same_v<Stream, tcp::socket>;

  const Limits& limits = worker_.snapshot()->limits;
  bool open = codec_.feed(preread_);
  preread_.clear();
  std::array<char, kReadSize> buf;
  while (open && !broken_) {
    handle_events();
    co_await flush();
    if (!codec_.alive() || broken_) break;
    // Idle (no stream open): the idle timeout and the drain apply.
    slot_.idle = streams_.empty();
    if (slot_.idle) {
      if (worker_.draining()) codec_.shutdown();
      slot_.idle_since = worker_.now();
      slot_.set_deadline(Timeout::idle, limits.idle_timeout);
    }
    slot_.fired = Timeout::none;
    auto [rec, n] = co_await stream_.async_read_some(asio::buffer(buf), kNothrow);
    slot_.clear_deadline();
    if (rec || n == 0) {
      if (!codec_.alive() || broken_) break;
      if (rec == asio::error::operation_aborted && slot_.fired == Timeout::none &&
          worker_.draining()) {
        codec_.shutdown();  // the drain: GOAWAY, open streams finish
        co_await flush();
        continue;
      }
      break;
    }
    open = codec_.feed(std::string_view(buf.data(), n));
  }
  handle_events();
  co_await flush();  // a GOAWAY the codec queued
  if (codec_.close_reason() != http2::CloseReason::none &&
      codec_.close_reason() != http2::CloseReason::stream_ids_used)
    worker_.log(LogLevel::info, "listener {}: HTTP/2 connection from {} closed: reason {}",
                listener_, origin_.client_address, static_cast<int>(codec_.close_reason()));
  for (auto& [id, st] : streams_) end_stream(*st);
  while (live_ > 0) co_await streams_done_.wait();
  stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ec);
  stream_.lowest_layer().close(ec);
  worker_.detach(&slot_);
}

// One writer at a time drains the codec; others return at once and their
// frames go out with the active writer's next round.
template <typename Stream>
awaitable<void> H2Connection<Stream>::flush() {
  if (writing_) co_return;
  writing_ = true;
  while (!broken_) {
    out_.clear();
    if (codec_.produce(out_) == 0) break;
    slot_.set_deadline(Timeout::io, worker_.snapshot()->limits.stream_idle_timeout);
    auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(out_), kNothrow);
    slot_.clear_deadline();
    if (ec) broken_ = true;
    // Windows moved: streams waiting to send more may read their pipes.
    for (auto& [id, st] : streams_) st->reader.notify();
  }
  writing_ = false;
  // Nothing left to say (a GOAWAY went out and the last stream ended): wake
  // the connection's read so it closes.
  if (!codec_.alive() || broken_) {
    asio::error_code ec;
    stream_.lowest_layer().cancel(ec);
  }
}

template <typename Stream>
void H2Connection<Stream>::handle_events() {
  using Kind = http2::Event::Kind;
  for (auto& e : codec_.take_events()) {
    auto it = streams_.find(e.stream);
    H2Stream* st = it == streams_.end() ? nullptr : it->second.get();
    switch (e.kind) {
      case Kind::request:
        open_stream(e);
        break;
      case Kind::data:
        if (!st || st->dead) {
          codec_.consume(e.stream, e.data.size());  // keep the connection window open
          break;
        }
        if (st->chunked) {
          http::append_chunk_header(st->to_pipe, e.data.size());
          st->to_pipe += e.data;
          st->to_pipe += http::kChunkEnd;
        } else {
          st->to_pipe += e.data;
        }
        st->credit += e.data.size();
        st->writer.notify();
        break;
      case Kind::trailers:
        // Only a chunked body can carry them to the session (a request
        // with content-length has no place for trailers in HTTP/1.1).
        if (st && !st->dead) st->trailers = std::move(e.trailers);
        break;
      case Kind::end:
        if (!st) break;
        if (st->chunked) http::append_last_chunk(st->to_pipe, st->trailers);
        st->request_closed = true;
        st->writer.notify();
        break;
      case Kind::reset:
        if (st) end_stream(*st);
        break;
    }
  }
}

template <typename Stream>
void H2Connection<Stream>::open_stream(http2::Event& e) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    codec_.reset(e.stream, http2::ErrorCode::refused_stream);
    return;
  }
  asio::error_code ec;
  tcp::socket ours(stream_.get_executor()), theirs(stream_.get_executor());
  ours.assign(tcp::v4(), fds[0], ec);
  if (ec) ::close(fds[0]);
  asio::error_code ec2;
  theirs.assign(tcp::v4(), fds[1], ec2);
  if (ec2) ::close(fds[1]);
  if (ec || ec2) {
    codec_.reset(e.stream, http2::ErrorCode::refused_stream);
    return;
  }
  auto st = std::make_shared<H2Stream>(e.stream, std::move(ours));
  RequestHead& head = e.head;
  // The HTTP/1 framing comes from the HTTP/2 stream, never from fields:
  // nghttp2 checked content-length against the DATA frames.
  head.headers.remove("expect");
  if (!e.protocol.empty()) {
    // An extended CONNECT is HTTP/1.1's upgrade handshake (RFC 8441 §5):
    // the session routes it, checks the upgrade type and splices after the
    // upstream's 101. What the client sends meanwhile is tunnel bytes.
    st->tunnel = true;
    head.method = "GET";
    head.headers.add("connection", "upgrade");
    head.headers.add("upgrade", e.protocol);
    if (e.protocol == "websocket" && !head.headers.contains("sec-websocket-key")) {
      head.headers.add("sec-websocket-key", websocket_key());
      st->synthetic_key = true;
    }
  } else {
    if (!e.end_stream && !head.headers.contains("content-length")) {
      st->chunked = true;
      head.headers.add("transfer-encoding", "chunked");
    }
    head.headers.add("connection", "close");  // one request per pair
  }
  st->head_request = head.method == "HEAD";
  http::append_request_head(st->to_pipe, head);
  st->request_closed = e.end_stream;
  streams_.emplace(e.stream, st);
  live_ += 2;
  start_stream_session(worker_, std::move(theirs), listener_, port_, tls_, origin_);
  asio::co_spawn(stream_.get_executor(), pipe_writer(st), asio::detached);
  asio::co_spawn(stream_.get_executor(), pipe_reader(st), asio::detached);
}

template <typename Stream>
awaitable<void> H2Connection<Stream>::pipe_writer(std::shared_ptr<H2Stream> st) {
  while (!st->dead) {
    if (st->to_pipe.empty()) {
      if (st->request_closed) {
        // A tunnel's END_STREAM is the client's half-close.
        asio::error_code ignored;
        if (st->tunnel) st->pipe.shutdown(tcp::socket::shutdown_send, ignored);
        break;
      }
      co_await st->writer.wait();
      continue;
    }
    std::string bytes = std::move(st->to_pipe);
    st->to_pipe.clear();
    size_t credit = std::exchange(st->credit, 0);
    auto [ec, n] = co_await asio::async_write(st->pipe, asio::buffer(bytes), kNothrow);
    if (ec || st->dead) break;
    // Written to the session: the client may send as much again.
    codec_.consume(st->id, credit);
    co_await flush();
  }
  coroutine_done(*st);
}

template <typename Stream>
awaitable<void> H2Connection<Stream>::pipe_reader(std::shared_ptr<H2Stream> st) {
  http::Parser parser(
      http::Parser::Kind::response,
      http::ParserLimits{SIZE_MAX / 2, SIZE_MAX / 2});  // the session's own response
  parser.expect_no_body(st->head_request);
  parser.expect_upgrade(st->tunnel);
  std::array<char, kReadSize> buf;
  bool head_sent = false, complete = false;
  while (!st->dead && !complete) {
    while (!st->dead && codec_.pending_data(st->id) >= kMaxPendingResponse)
      co_await st->reader.wait();
    if (st->dead) break;
    auto [ec, n] = co_await st->pipe.async_read_some(asio::buffer(buf), kNothrow);
    if (st->dead) break;
    if (ec || n == 0) {
      if (st->tunnel_open) {
        codec_.send_data(st->id, {}, true);  // the upstream closed the tunnel
      } else if (parser.finish() && head_sent) {
        codec_.send_data(st->id, {}, true);
      } else {
        codec_.reset(st->id, http2::ErrorCode::internal_error);
      }
      complete = true;
    } else if (st->tunnel_open) {
      codec_.send_data(st->id, std::string_view(buf.data(), n), false);
    } else if (!relay_response(*st, parser, buf.data(), n, head_sent)) {
      complete = true;
    } else {
      complete = !st->tunnel_open && parser.message_done();
    }
    co_await flush();
  }
  if (!st->dead) end_stream(*st);
  coroutine_done(*st);
}

// Feeds response bytes; false when the stream is over (done or reset).
template <typename Stream>
bool H2Connection<Stream>::relay_response(H2Stream& st, http::Parser& parser, const char* data,
                                          size_t n, bool& head_sent) {
  size_t off = 0;
  for (;;) {
    size_t used = parser.feed(data + off, n - off);
    off += used;
    if (parser.error() != http::ParseError::none) {
      codec_.reset(st.id, http2::ErrorCode::internal_error);
      return false;
    }
    bool new_head = false;
    if (parser.head_done() && !head_sent) {
      const ResponseHead& head = parser.response();
      if (head.status == 101 && st.tunnel) {
        // The tunnel is open: a 200 to the extended CONNECT (RFC 8441 §5),
        // then whatever followed the 101 as DATA.
        Headers fields = head.headers;
        if (st.synthetic_key) fields.remove("sec-websocket-accept");
        codec_.submit_response(st.id, 200, fields, false);
        head_sent = st.tunnel_open = true;
        if (off < n) codec_.send_data(st.id, std::string_view(data + off, n - off), false);
        return true;
      }
      if (head.status < 200) {  // 1xx from the session: not forwarded
        if (parser.message_done())
          parser.next_message();
        else if (used == 0 && off == n)
          break;
        continue;
      }
      head_sent = new_head = true;
      // A gRPC trailers-only response is one HEADERS frame with END_STREAM,
      // as gRPC clients expect. Other bodyless responses keep an empty DATA
      // to end them: curl 7.88 sometimes waits forever after END_STREAM on
      // HEADERS while it is still uploading.
      auto ct = head.headers.get("content-type");
      if (!parser.body_expected() && ct && http::grpc_kind(*ct) != http::GrpcKind::none) {
        codec_.submit_response(st.id, head.status, head.headers, true);
        return false;
      }
      codec_.submit_response(st.id, head.status, head.headers, false);
    }
    if (!parser.body().empty()) codec_.send_data(st.id, parser.body(), false);
    if (parser.message_done()) {
      // The session's chunked trailers become an HTTP/2 trailers HEADERS frame.
      if (parser.trailers().empty())
        codec_.send_data(st.id, {}, true);
      else
        codec_.submit_trailers(st.id, parser.trailers());
      return false;
    }
    // llhttp ends a message on the call after its last byte: one more call
    // with nothing left, then wait for more bytes.
    if (used == 0 && parser.body().empty() && !new_head) break;
  }
  return true;
}

template <typename Stream>
void spawn(SessionHost& worker, Stream stream, const std::string& listener, uint16_t port,
           tls::DownstreamTls tls, std::string preread) {
  using C = H2Connection<Stream>;
  auto conn = std::make_unique<C>(worker, std::move(stream), listener, port, std::move(tls),
                                  std::move(preread));
  C* raw = conn.get();
  asio::co_spawn(worker.context(), raw->run(),
                 [c = std::move(conn)](std::exception_ptr) mutable { c.reset(); });
}

// Reads at most the preface's 24 bytes, as they match it, to tell h2c
// from HTTP/1; the idle timeout bounds the first byte, the header timeout
// the rest.
awaitable<void> detect(SessionHost& worker, tcp::socket socket, std::string listener,
                       uint16_t port) {
  ConnectionSlot slot(&socket);
  slot.counters = worker.listener_counters(listener);
  worker.attach(&slot);
  const Limits& limits = worker.snapshot()->limits;
  slot.set_deadline(Timeout::idle, limits.idle_timeout);
  constexpr std::string_view preface = http2::kClientPreface;
  std::array<char, preface.size()> buf;
  size_t have = 0;
  bool h2 = false;
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(
        asio::buffer(buf.data() + have, buf.size() - have), kNothrow);
    if (ec || n == 0) {
      worker.detach(&slot);
      socket.close(ec);
      co_return;
    }
    have += n;
    if (preface.substr(0, have) != std::string_view(buf.data(), have)) break;
    if (have == preface.size()) {
      h2 = true;
      break;
    }
    slot.set_deadline(Timeout::header, limits.request_header_timeout);
  }
  worker.detach(&slot);
  std::string bytes(buf.data(), have);
  if (h2)
    start_h2_session(worker, std::move(socket), listener, port, std::move(bytes));
  else
    start_session(worker, std::move(socket), listener, port, std::string_view(bytes));
}

}  // namespace

void start_http_session(SessionHost& worker, tcp::socket socket, const std::string& listener,
                        uint16_t port) {
  asio::co_spawn(worker.context(), detect(worker, std::move(socket), listener, port),
                 asio::detached);
}

void start_h2_session(SessionHost& worker, tcp::socket socket, const std::string& listener,
                      uint16_t port, std::string preread) {
  spawn(worker, std::move(socket), listener, port, tls::DownstreamTls{}, std::move(preread));
}

void start_h2_tls_session(SessionHost& worker, asio::ssl::stream<tcp::socket> stream,
                          const std::string& listener, uint16_t port, tls::DownstreamTls tls) {
  spawn(worker, std::move(stream), listener, port, std::move(tls), {});
}

}  // namespace sluice
