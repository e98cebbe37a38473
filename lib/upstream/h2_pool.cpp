#include "upstream/h2_pool.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <array>

#include "http/parser.hpp"
#include "http/serializer.hpp"
#include "http2/client.hpp"
#include "upstream/cluster.hpp"
#include "upstream/context.hpp"

namespace sluice {

namespace {

using asio::awaitable;
using asio::ip::tcp;

// Request body a stream may have queued in the codec, waiting for the
// upstream's window, before its pipe is read again.
constexpr size_t kMaxPendingRequest = 64 * 1024;
constexpr size_t kReadSize = 16 * 1024;
constexpr std::string_view kAlpnH2{"\x02h2", 3};

// A wait other coroutines end, for any number of waiters: a timer that
// never expires; notify() cancels the waits pending now.
struct Signal {
  explicit Signal(const asio::any_io_executor& ex) : timer(ex) {
    timer.expires_at(asio::steady_timer::time_point::max());
  }
  awaitable<void> wait() { co_await timer.async_wait(kNoThrow); }
  void notify() { timer.cancel(); }
  asio::steady_timer timer;
};

// Both ends of an AF_UNIX stream pair as sockets asio can read and write.
bool make_pair(asio::io_context& io, tcp::socket& ours, tcp::socket& theirs) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) return false;
  asio::error_code ec, ec2;
  ours = tcp::socket(io);
  theirs = tcp::socket(io);
  ours.assign(tcp::v4(), fds[0], ec);
  if (ec) ::close(fds[0]);
  theirs.assign(tcp::v4(), fds[1], ec2);
  if (ec2) ::close(fds[1]);
  return !ec && !ec2;
}

}  // namespace

// One request's stream: its end of the socket pair and the response bytes
// on their way to the session.
struct H2PoolStream {
  H2PoolStream(tcp::socket p, std::shared_ptr<ClusterState> c)
      : pipe(std::move(p)),
        response_ready(pipe.get_executor()),
        window(pipe.get_executor()),
        cluster(std::move(c)),
        report(std::make_shared<H2StreamReport>()) {}
  ~H2PoolStream() {
    if (cluster) cluster->h2_streams.fetch_sub(1, std::memory_order_relaxed);
  }
  tcp::socket pipe;
  Signal response_ready;                  // response bytes queued, or the stream ended
  Signal window;                          // request body left the codec: more may be queued
  std::shared_ptr<ClusterState> cluster;  // holds a place under max_requests
  std::shared_ptr<H2StreamReport> report;
  int32_t id = 0;  // 0 until submitted
  bool head_request = false;
  bool wants_trailers = false;  // sent with `te: trailers` (a gRPC call)
  bool close_after = false;     // the request said `connection: close`
  std::string to_pipe;
  size_t credit = 0;  // response body in to_pipe, credited to the upstream once written
  bool chunked = false;
  bool trailers_sent = false;
  bool response_done = false;
  bool dead = false;  // reset, cancelled or failed: the pipe is closed
  int live = 2;       // its two coroutines
};

struct H2Pool::Conn {
  Conn(H2Pool& p, UpstreamContext& c, std::string k, const CompiledUpstream& up)
      : pool(&p),
        ctx(c),
        key(std::move(k)),
        ready(c.context().get_executor()),
        stream_cap(up.config.pool.max_concurrent_streams),
        per_connection(up.config.pool.max_requests_per_connection),
        idle_timeout(up.config.pool.idle_timeout),
        tls(up.tls != nullptr) {}

  enum class State { connecting, ready, closed };

  H2Pool* pool;  // null once the pool is gone
  UpstreamContext& ctx;
  std::string key;
  http2::ClientSession codec;
  std::unique_ptr<UpstreamConnection> tcp;
  State state = State::connecting;
  Lease::Status failure = Lease::Status::connect_failure;
  Signal ready;  // connected or failed
  uint32_t stream_cap;
  uint32_t per_connection;
  std::chrono::milliseconds idle_timeout;
  bool tls;
  uint32_t reserved = 0;  // streams leased and not finished
  uint32_t started = 0;   // streams leased over its life
  bool draining = false;  // GOAWAY received (or writes failed): no new stream
  bool write_failed = false;
  TimePoint idle_since{};
  std::unordered_map<int32_t, std::shared_ptr<H2PoolStream>> streams;
  bool writing = false;
  std::string out;

  bool takes_stream() const {
    if (state == State::closed || draining) return false;
    if (per_connection != 0 && started >= per_connection) return false;
    uint32_t cap = stream_cap;
    if (state == State::ready) cap = std::min(cap, codec.peer_max_concurrent_streams());
    return reserved < cap;
  }

  void close() {
    state = State::closed;
    asio::error_code ec;
    if (tcp) tcp->socket.close(ec);
  }

  void kill(H2PoolStream& st) {
    st.dead = true;
    asio::error_code ec;
    st.pipe.close(ec);  // the session sees its upstream go
    st.response_ready.notify();
    st.window.notify();
  }

  void stream_done(H2PoolStream& st) {
    if (--st.live > 0) return;
    asio::error_code ec;
    st.pipe.close(ec);
    if (st.id != 0) streams.erase(st.id);
    --reserved;
    if (reserved == 0) {
      idle_since = ctx.loop().now();
      if (draining) close();
    }
  }

  void write_head(H2PoolStream& st, http2::ClientEvent& e);
  void handle_events();
  static awaitable<void> flush(std::shared_ptr<Conn> c);
  static awaitable<void> run(std::shared_ptr<Conn> c);
  static awaitable<void> request_pump(std::shared_ptr<Conn> c, std::shared_ptr<H2PoolStream> st);
  static awaitable<void> response_pump(std::shared_ptr<Conn> c, std::shared_ptr<H2PoolStream> st);
};

void H2Pool::Conn::write_head(H2PoolStream& st, http2::ClientEvent& e) {
  ResponseHead rh;
  rh.status = e.status;
  rh.headers = std::move(e.headers);
  // HTTP/1 framing from the stream: a sized body stays sized (nghttp2
  // checks content-length against the DATA frames); otherwise chunked, so
  // trailers can follow. A client that takes trailers (gRPC's status lives
  // there) gets chunked even for a sized body, or they would be lost.
  bool bodyless = st.head_request || e.status == 204 || e.status == 304;
  if (!bodyless && st.wants_trailers && !e.end_stream) rh.headers.remove("content-length");
  if (!bodyless && !rh.headers.contains("content-length")) {
    if (e.end_stream) {
      rh.headers.add("content-length", "0");
    } else {
      rh.headers.add("transfer-encoding", "chunked");
      st.chunked = true;
    }
  }
  http::append_response_head(st.to_pipe, rh);
}

void H2Pool::Conn::handle_events() {
  using Kind = http2::ClientEvent::Kind;
  for (auto& e : codec.take_events()) {
    if (e.kind == Kind::goaway) {
      draining = true;
      continue;
    }
    auto it = streams.find(e.stream);
    if (it == streams.end() || it->second->dead) {
      if (e.kind == Kind::data) codec.consume(e.stream, e.data.size());  // keep the connection open
      continue;
    }
    H2PoolStream& st = *it->second;
    switch (e.kind) {
      case Kind::head:
        write_head(st, e);
        break;
      case Kind::data:
        if (st.chunked) {
          http::append_chunk_header(st.to_pipe, e.data.size());
          st.to_pipe += e.data;
          st.to_pipe += http::kChunkEnd;
        } else {
          st.to_pipe += e.data;
        }
        st.credit += e.data.size();
        break;
      case Kind::trailers:
        if (!st.chunked) break;  // a sized body has no place for them
        http::append_last_chunk(st.to_pipe, e.headers);
        st.trailers_sent = true;
        break;
      case Kind::end:
        if (st.chunked && !st.trailers_sent) st.to_pipe += http::kLastChunk;
        st.response_done = true;
        break;
      case Kind::reset:
        st.report->refused = e.refused;
        kill(st);
        break;
      case Kind::goaway:
        break;
    }
    st.response_ready.notify();
  }
}

// One writer at a time drains the codec; the others' frames go out with
// the active writer's next round.
awaitable<void> H2Pool::Conn::flush(std::shared_ptr<Conn> c) {
  if (c->writing) co_return;
  c->writing = true;
  while (c->state != State::closed && !c->write_failed) {
    c->out.clear();
    if (c->codec.produce(c->out) == 0) break;
    auto [ec, n] = co_await write_upstream(*c->tcp, asio::buffer(c->out));
    if (ec) {
      // The peer may have closed after its last frames: the reader still
      // takes what arrived before it ends the connection.
      c->draining = true;
      c->write_failed = true;
      break;
    }
    for (auto& [id, st] : c->streams) st->window.notify();
  }
  c->writing = false;
}

awaitable<void> H2Pool::Conn::run(std::shared_ptr<Conn> c) {
  std::array<char, kReadSize> buf;
  co_await flush(c);  // the preface and SETTINGS
  while (c->state == State::ready) {
    auto [ec, n] = co_await read_upstream(*c->tcp, asio::buffer(buf));
    if (ec || n == 0) break;
    bool ok = c->codec.feed(std::string_view(buf.data(), n));
    c->handle_events();
    co_await flush(c);
    if (!ok || !c->codec.alive()) break;
    if (c->draining && c->reserved == 0) break;
  }
  c->handle_events();
  c->close();
  if (c->pool) {
    auto& list = c->pool->conns_[c->key];
    std::erase(list, c);
  }
  // Streams still open lose their upstream: a reset, before or during the
  // response, as a lost HTTP/1 connection would be.
  for (auto& [id, st] : c->streams)
    if (!st->response_done && !st->dead) {
      st->report->refused = c->codec.unprocessed(id);
      c->kill(*st);
    }
}

awaitable<void> H2Pool::Conn::request_pump(std::shared_ptr<Conn> c,
                                           std::shared_ptr<H2PoolStream> st) {
  // The session's own request: its limits were applied downstream.
  http::Parser parser(http::Parser::Kind::request, http::ParserLimits{SIZE_MAX / 2, SIZE_MAX / 2});
  std::array<char, kReadSize> buf;
  bool submitted = false, request_done = false;
  while (!st->dead) {
    auto [ec, n] = co_await st->pipe.async_read_some(asio::buffer(buf), kNoThrow);
    if (st->dead) break;
    if (ec || n == 0) {
      // The session let go before the response ended: cancel the stream.
      if (!st->response_done) {
        if (st->id != 0) c->codec.reset(st->id, http2::ErrorCode::cancel);
        c->kill(*st);
        co_await flush(c);
      }
      break;
    }
    if (request_done) continue;  // nothing is expected after the request
    size_t off = 0;
    bool failed = false;
    for (;;) {
      size_t used = parser.feed(buf.data() + off, n - off);
      off += used;
      if (parser.error() != http::ParseError::none) {
        failed = true;
        break;
      }
      bool new_head = false;
      if (parser.head_done() && !submitted) {
        submitted = new_head = true;
        RequestHead head = parser.request();
        head.scheme = c->tls ? "https" : "http";
        st->head_request = head.method == "HEAD";
        st->wants_trailers = http2::takes_trailers(head.headers);
        st->close_after = !parser.keep_alive();
        bool end = !parser.body_expected();
        int32_t id = 0;
        if (c->state == State::ready && !c->draining) id = c->codec.submit_request(head, end);
        if (id == 0) {
          // Nothing reached the upstream: the session may send it again.
          st->report->refused = true;
          failed = true;
          break;
        }
        st->id = id;
        c->streams[id] = st;
        request_done = end;
      }
      if (!parser.body().empty()) c->codec.send_data(st->id, parser.body(), false);
      if (parser.message_done()) {
        if (!request_done) c->codec.send_data(st->id, {}, true);
        request_done = true;
        break;
      }
      // llhttp ends a message on the call after its last byte.
      if (used == 0 && parser.body().empty() && !new_head) break;
    }
    if (failed) {
      if (st->id != 0) c->codec.reset(st->id, http2::ErrorCode::cancel);
      c->kill(*st);
      co_await flush(c);
      break;
    }
    co_await flush(c);
    while (!st->dead && st->id != 0 && c->codec.pending_data(st->id) >= kMaxPendingRequest)
      co_await st->window.wait();
  }
  c->stream_done(*st);
}

awaitable<void> H2Pool::Conn::response_pump(std::shared_ptr<Conn> c,
                                            std::shared_ptr<H2PoolStream> st) {
  while (!st->dead) {
    if (st->to_pipe.empty()) {
      if (st->response_done) break;
      co_await st->response_ready.wait();
      continue;
    }
    std::string bytes = std::move(st->to_pipe);
    st->to_pipe.clear();
    size_t credit = std::exchange(st->credit, 0);
    auto [ec, n] = co_await asio::async_write(st->pipe, asio::buffer(bytes), kNoThrow);
    if (st->dead) break;
    if (ec) {
      if (!st->response_done && st->id != 0) c->codec.reset(st->id, http2::ErrorCode::cancel);
      c->kill(*st);
      co_await flush(c);
      break;
    }
    // Written to the session: the upstream may send as much again.
    if (credit > 0) c->codec.consume(st->id, credit);
    co_await flush(c);
  }
  // As an HTTP/1.1 server would, close after answering a request that asked
  // for it (mirrors and health probes read until then).
  if (st->close_after && st->response_done && !st->dead) {
    asio::error_code ec;
    st->pipe.shutdown(tcp::socket::shutdown_send, ec);
  }
  c->stream_done(*st);
}

H2Pool::H2Pool() = default;

H2Pool::~H2Pool() {
  for (auto& [key, list] : conns_)
    for (auto& c : list) {
      c->pool = nullptr;
      c->close();
    }
}

size_t H2Pool::connection_count() const {
  size_t n = 0;
  for (const auto& [key, list] : conns_) n += list.size();
  return n;
}

asio::awaitable<Lease> H2Pool::lease(UpstreamContext& ctx, ConnectionSlot& slot,
                                     const CompiledUpstream& upstream, int64_t endpoint,
                                     bool limited) {
  const CompiledEndpoint& ep = upstream.endpoints[endpoint];
  const ConnectionPoolSettings& pc = upstream.config.pool;
  Lease lease;
  slot.fired = ConnectionSlot::Timeout::none;
  // max_requests (http2MaxRequests): a place for the whole stream, across
  // workers; none left is an overflow at once, as in Envoy.
  std::shared_ptr<ClusterState> cluster = limited ? upstream.state : nullptr;
  if (cluster) {
    uint64_t cur = cluster->h2_streams.load(std::memory_order_relaxed);
    do {
      if (cur >= pc.max_requests) {
        cluster->overflows.fetch_add(1, std::memory_order_relaxed);
        lease.status = Lease::Status::overflow;
        co_return lease;
      }
    } while (!cluster->h2_streams.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  }
  auto give_back = [&] {
    if (cluster) cluster->h2_streams.fetch_sub(1, std::memory_order_relaxed);
  };

  // Connections idle past idle_timeout close when next looked at (as the
  // HTTP/1 pool's do: there is no timer).
  // Unlimited streams' connections are uncounted: traffic never shares them.
  std::string key = limited ? ep.pool_key : ep.pool_key + "\nunlimited";
  auto& list = conns_[key];
  TimePoint now = ctx.loop().now();
  for (auto& c : list)
    if (c->state == Conn::State::ready && c->reserved == 0 &&
        now - c->idle_since >= c->idle_timeout)
      c->close();
  std::shared_ptr<Conn> conn;
  for (auto& c : list)
    if (c->takes_stream()) {
      conn = c;
      break;
    }
  bool fresh = !conn;
  if (fresh) {
    conn = std::make_shared<Conn>(*this, ctx, key, upstream);
    list.push_back(conn);
  }
  ++conn->reserved;
  ++conn->started;
  if (fresh) {
    ConnectOptions options;
    options.alpn = kAlpnH2;
    options.limited = limited;
    options.raw = true;
    Lease made = co_await open_connection(ctx, slot, upstream, endpoint, options);
    if (made.status == Lease::Status::ok) {
      conn->tcp = std::move(made.conn);
      conn->state = Conn::State::ready;
      conn->idle_since = ctx.loop().now();
      asio::co_spawn(ctx.context(), Conn::run(conn), asio::detached);
    } else {
      conn->failure = made.status;
      conn->state = Conn::State::closed;
      if (conn->pool) std::erase(conns_[key], conn);
    }
    conn->ready.notify();
  } else {
    while (conn->state == Conn::State::connecting) co_await conn->ready.wait();
  }
  auto fail = [&](Lease::Status status) {
    --conn->reserved;
    give_back();
    lease.status = status;
    return std::move(lease);
  };
  if (conn->state != Conn::State::ready) co_return fail(conn->failure);
  tcp::socket ours(ctx.context()), theirs(ctx.context());
  if (!make_pair(ctx.context(), ours, theirs)) co_return fail(Lease::Status::connect_failure);
  // From here the stream holds the max_requests place.
  auto st = std::make_shared<H2PoolStream>(std::move(ours), std::move(cluster));
  auto pair = std::make_unique<UpstreamConnection>(std::move(theirs));
  pair->h2 = st->report;
  pair->endpoint_key = ep.pool_key;
  asio::co_spawn(ctx.context(), Conn::request_pump(conn, st), asio::detached);
  asio::co_spawn(ctx.context(), Conn::response_pump(conn, st), asio::detached);
  lease.conn = std::move(pair);
  lease.status = Lease::Status::ok;
  co_return lease;
}

}  // namespace sluice
