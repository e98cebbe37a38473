#include "proxy/session.hpp"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <array>
#include <cstring>
#include <optional>
#include <span>

#include "http/parser.hpp"
#include "http/serializer.hpp"
#include "runtime/worker.hpp"

namespace sluice {

namespace {

using asio::awaitable;
using Timeout = ConnectionSlot::Timeout;
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// A byte window [begin, end) over a recycled worker buffer.
struct Window {
  std::unique_ptr<char[]> data;
  size_t begin = 0;
  size_t end = 0;

  size_t size() const { return end - begin; }
  const char* ptr() const { return data.get() + begin; }
  void consume(size_t n) {
    begin += n;
    if (begin == end) begin = end = 0;
  }
  asio::mutable_buffer space() {
    if (begin > 0 && end == Worker::kBufferSize) {
      std::memmove(data.get(), data.get() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    return asio::buffer(data.get() + end, Worker::kBufferSize - end);
  }
};

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kResetBody =
    "upstream connect error or disconnect/reset before headers. reset reason: ";

class Session {
 public:
  Session(Worker& worker, asio::ip::tcp::socket socket, std::string listener, uint16_t port)
      : worker_(worker),
        slot_(std::move(socket)),
        listener_(std::move(listener)),
        port_(port),
        request_parser_(http::Parser::Kind::request) {}

  awaitable<void> run();

 private:
  // Outcome of one exchange: keep the downstream connection open or not.
  awaitable<bool> serve_one(bool first);
  awaitable<bool> read_head(const Limits& limits, bool first);
  awaitable<bool> fill(Window& w, asio::ip::tcp::socket& s, bool wait_first);
  awaitable<bool> write_down(std::span<const asio::const_buffer> bufs);
  awaitable<bool> write_down(std::string_view bytes) {
    std::array<asio::const_buffer, 1> one{asio::buffer(bytes)};
    co_return co_await write_down(std::span<const asio::const_buffer>(one));
  }
  awaitable<bool> send_local(RequestContext& ctx, uint16_t status, std::string body,
                             const char* flags, bool keep_alive);
  awaitable<bool> forward(RequestContext& ctx, const Snapshot& snap, const CompiledUpstream& up,
                          int64_t endpoint);
  bool drive_request_to_end();
  void log(RequestContext& ctx);
  bool request_fully_read() const { return request_parser_.message_done(); }

  Worker& worker_;
  ConnectionSlot slot_;
  std::string listener_;
  uint16_t port_;
  std::string client_ip_;
  std::string client_address_;
  http::Parser request_parser_;
  Window in_;
  Clock::time_point started_;
  const Limits* limits_ = nullptr;
};

awaitable<void> Session::run() {
  worker_.attach(&slot_);
  asio::error_code ec;
  auto remote = slot_.socket.remote_endpoint(ec);
  if (!ec) {
    client_ip_ = remote.address().to_string();
    client_address_ = fmt::format("{}:{}", client_ip_, remote.port());
  }
  bool first = true;
  try {
    while (co_await serve_one(first)) first = false;
  } catch (const std::exception&) {
    // Allocation failure or a bug: drop this connection, keep the worker.
  }
  if (in_.data) worker_.give_buffer(std::move(in_.data));
  slot_.socket.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  slot_.socket.close(ec);
  worker_.detach(&slot_);
}

// Reads into `w` from `s`. With `wait_first`, waits for readability before
// taking a buffer, so an idle connection holds no buffer.
awaitable<bool> Session::fill(Window& w, asio::ip::tcp::socket& s, bool wait_first) {
  if (wait_first && w.size() == 0) {
    if (w.data) worker_.give_buffer(std::move(w.data));
    auto [ec] = co_await s.async_wait(asio::socket_base::wait_read, nothrow);
    if (ec) co_return false;
  }
  if (!w.data) w.data = worker_.take_buffer();
  auto [ec, n] = co_await s.async_read_some(w.space(), nothrow);
  if (ec || n == 0) co_return false;
  w.end += n;
  co_return true;
}

awaitable<bool> Session::write_down(std::span<const asio::const_buffer> bufs) {
  slot_.set_deadline(Timeout::io, limits_->idle_timeout);
  auto [ec, n] = co_await asio::async_write(slot_.socket, bufs, nothrow);
  slot_.clear_deadline();
  co_return !ec;
}

awaitable<bool> Session::read_head(const Limits& limits, bool first) {
  auto& p = request_parser_;
  bool started = false;
  slot_.fired = Timeout::none;
  while (!p.head_done()) {
    if (in_.size() > 0) {
      if (!started) {
        started = true;
        started_ = Clock::now();
        slot_.idle = false;
        slot_.set_deadline(Timeout::header, limits.request_header_timeout);
      }
      size_t n = p.feed(in_.ptr(), in_.size());
      in_.consume(n);
      if (p.error() != http::ParseError::none) co_return false;
      continue;
    }
    if (!started) {
      if (worker_.draining() || slot_.close_after_response) co_return false;
      slot_.idle = true;
      slot_.set_deadline(Timeout::idle, limits.idle_timeout);
    }
    if (!co_await fill(in_, slot_.socket, !started)) co_return false;
  }
  slot_.clear_deadline();
  co_return true;
}

// Feeds the request parser until the message ends when no body follows the
// head (llhttp completes a message on the next call after the head).
bool Session::drive_request_to_end() {
  auto& p = request_parser_;
  if (p.message_done()) return true;
  if (p.body_expected()) return false;
  size_t n = p.feed(in_.ptr(), in_.size());
  in_.consume(n);
  return p.message_done();
}

awaitable<bool> Session::send_local(RequestContext& ctx, uint16_t status, std::string body,
                                    const char* flags, bool keep_alive) {
  // A request body we did not read makes the connection unusable.
  keep_alive =
      keep_alive && request_fully_read() && !slot_.close_after_response && !worker_.draining();
  ResponseHead head;
  head.status = status;
  if (!body.empty()) head.headers.add("content-type", "text/plain");
  head.headers.add("content-length", std::to_string(body.size()));
  if (!keep_alive) head.headers.add("connection", "close");
  if (auto& hooks = worker_.shared().hooks) hooks->on_response_headers(ctx, head);
  std::string out;
  http::append_response_head(out, head);
  if (ctx.request.method != "HEAD") out += body;
  ctx.response_status = status;
  ctx.response_flags = flags;
  ctx.bytes_sent = ctx.request.method != "HEAD" ? body.size() : 0;
  bool ok = co_await write_down(std::string_view(out));
  co_return ok&& keep_alive;
}

void Session::log(RequestContext& ctx) {
  ctx.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
  if (auto& hooks = worker_.shared().hooks) hooks->on_log(ctx);
}

awaitable<bool> Session::serve_one(bool first) {
  // The snapshot at the start of the request serves all of it.
  std::shared_ptr<const Snapshot> snap = worker_.snapshot();
  if (!snap) co_return false;
  limits_ = &snap->limits;
  auto& p = request_parser_;
  p.next_message();
  bool got_head = co_await read_head(snap->limits, first);
  RequestHead& head = p.request();
  RequestContext ctx{.request = head};
  ctx.client_address = client_address_;
  ctx.listener = listener_;
  if (!got_head) {
    if (p.error() == http::ParseError::header_too_large) {
      co_await send_local(ctx, 431, "", "-", false);
    } else if (p.error() != http::ParseError::none) {
      co_await send_local(ctx, 400, "", "-", false);
    } else if (slot_.fired == Timeout::header) {
      co_await send_local(ctx, 408, "", "-", false);
    }
    co_return false;
  }
  if (std::string why = http::validate_request(head); !why.empty()) {
    bool ok = co_await send_local(ctx, 400, "", "-", false);
    log(ctx);
    co_return ok && false;
  }
  head.scheme = "http";
  head.listener_port = port_;
  bool keep_alive = p.keep_alive();
  drive_request_to_end();

  auto& hooks = worker_.shared().hooks;
  if (hooks) {
    if (auto r = hooks->on_request(ctx)) {
      bool ok = co_await send_local(ctx, r->status, std::move(r->body), "-", keep_alive);
      log(ctx);
      co_return ok;
    }
  }

  const CompiledListener* listener = snap->listener(listener_);
  std::optional<Router::Selection> sel;
  if (listener) sel = snap->routers[listener->router].match(head);
  if (!sel) {
    bool ok = co_await send_local(ctx, 404, "", "NR", keep_alive);
    log(ctx);
    co_return ok;
  }
  ctx.virtual_host = sel->virtual_host->name;
  ctx.route = sel->route->name;
  if (const auto& dr = sel->route->direct_response) {
    bool ok = co_await send_local(ctx, dr->status, dr->body, "-", keep_alive);
    log(ctx);
    co_return ok;
  }

  const ResolvedRoute& rr =
      snap->routes[listener->router][sel->virtual_host_index][sel->route_index];
  const ResolvedDestination* dest = nullptr;
  if (rr.total_weight > 0) {
    uint64_t r = std::uniform_int_distribution<uint64_t>(0, rr.total_weight - 1)(worker_.rng());
    for (const auto& d : rr.destinations) {
      if (r < d.weight) {
        dest = &d;
        break;
      }
      r -= d.weight;
    }
  }
  int64_t endpoint = -1;
  const CompiledUpstream* up = nullptr;
  if (dest) {
    up = &snap->upstreams[dest->upstream];
    ctx.upstream = up->config.name;
    endpoint = worker_.balancer().pick(*up, *dest->set, worker_.rng());
  }
  if (endpoint < 0) {
    bool ok = co_await send_local(ctx, 503, "no healthy upstream", "UH", keep_alive);
    log(ctx);
    co_return ok;
  }
  ctx.endpoint = up->endpoints[endpoint].key;
  if (hooks) {
    if (auto r = hooks->on_upstream_chosen(ctx)) {
      bool ok = co_await send_local(ctx, r->status, std::move(r->body), "-", keep_alive);
      log(ctx);
      co_return ok;
    }
  }
  bool ok = co_await forward(ctx, *snap, *up, endpoint);
  log(ctx);
  co_return ok&& keep_alive && !slot_.close_after_response && !worker_.draining();
}

awaitable<bool> Session::forward(RequestContext& ctx, const Snapshot& snap,
                                 const CompiledUpstream& up, int64_t endpoint_index) {
  auto& p = request_parser_;
  RequestHead& head = ctx.request;
  const CompiledEndpoint& ep = up.endpoints[endpoint_index];
  const auto& pool_cfg = up.config.pool;

  // The upstream request head: hop-by-hop headers go, forwarding headers come.
  bool expect_continue = false;
  if (auto e = head.headers.get("expect")) {
    expect_continue = iequals(*e, "100-continue");
    // We answer 100-continue ourselves (Envoy's default), so the upstream must not wait.
    if (expect_continue) head.headers.remove("expect");
  }
  http::strip_hop_by_hop(head.headers);
  if (auto xff = head.headers.get("x-forwarded-for"))
    head.headers.set("x-forwarded-for", fmt::format("{}, {}", *xff, client_ip_));
  else
    head.headers.add("x-forwarded-for", client_ip_);
  head.headers.set("x-forwarded-proto", head.scheme);
  if (!head.headers.contains("x-request-id"))
    head.headers.add("x-request-id", worker_.make_request_id());
  if (!head.headers.contains("host")) head.headers.add("host", ep.key);
  bool chunked_up = p.chunked();
  if (chunked_up) head.headers.add("transfer-encoding", "chunked");
  std::string out_head;
  out_head.reserve(512);
  http::append_request_head(out_head, head);

  std::unique_ptr<UpstreamConnection> conn;
  bool body_started = false;
  Window uin;
  http::Parser resp(http::Parser::Kind::response);
  bool is_head = head.method == "HEAD";
  auto cleanup = [&] {
    slot_.upstream = nullptr;
    slot_.clear_deadline();
    if (uin.data) worker_.give_buffer(std::move(uin.data));
  };

  // At most two attempts: a reused pooled connection may have been closed by
  // the upstream just as we picked it; retry once on a fresh connection when
  // nothing of the request body has been consumed yet.
  for (int attempt = 0;; ++attempt) {
    conn = worker_.pool().take(ep.key, pool_cfg.idle_timeout);
    bool reused = conn != nullptr;
    if (!conn) {
      asio::ip::tcp::socket s(worker_.context());
      slot_.upstream = &s;
      slot_.fired = Timeout::none;
      slot_.set_deadline(Timeout::upstream_connect, pool_cfg.connect_timeout);
      auto [ec] = co_await s.async_connect(ep.address, nothrow);
      slot_.upstream = nullptr;
      slot_.clear_deadline();
      if (ec) {
        const char* reason =
            slot_.fired == Timeout::upstream_connect ? "connection timeout" : "connection failure";
        cleanup();
        co_return co_await send_local(ctx, 503, fmt::format("{}{}", kResetBody, reason), "UF",
                                      true);
      }
      asio::error_code ignored;
      s.set_option(asio::ip::tcp::no_delay(true), ignored);
      conn = std::make_unique<UpstreamConnection>(std::move(s));
      conn->endpoint_key = ep.key;
    }
    ++conn->requests;
    slot_.upstream = &conn->socket;

    if (expect_continue && p.body_expected() && !body_started) {
      if (!co_await write_down(kContinue)) {
        cleanup();
        ctx.response_flags = "DC";
        co_return false;
      }
    }

    // Head, then the body as it arrives, re-framed when chunked.
    bool sent = true;
    {
      slot_.set_deadline(Timeout::io, limits_->idle_timeout);
      auto [ec, n] = co_await asio::async_write(conn->socket, asio::buffer(out_head), nothrow);
      if (ec) sent = false;
    }
    while (sent && !p.message_done()) {
      size_t n = p.feed(in_.ptr(), in_.size());
      in_.consume(n);
      if (p.error() != http::ParseError::none) {
        cleanup();
        co_return co_await send_local(ctx, 400, "", "-", false);
      }
      std::string_view body = p.body();
      if (body.empty()) {
        if (p.message_done() || n > 0) continue;
        // The parser needs more bytes.
        body_started = true;
        slot_.set_deadline(Timeout::io, limits_->idle_timeout);
        if (!co_await fill(in_, slot_.socket, false)) {
          // Client went away mid-body: nothing to answer.
          cleanup();
          ctx.response_flags = "DC";
          co_return false;
        }
        continue;
      }
      body_started = true;
      ctx.bytes_received += body.size();
      slot_.set_deadline(Timeout::io, limits_->idle_timeout);
      asio::error_code ec;
      if (chunked_up) {
        std::string chunk_head;
        http::append_chunk_header(chunk_head, body.size());
        std::array<asio::const_buffer, 3> bufs = {asio::buffer(chunk_head), asio::buffer(body),
                                                  asio::buffer(http::kChunkEnd)};
        std::tie(ec, std::ignore) = co_await asio::async_write(conn->socket, bufs, nothrow);
      } else {
        std::tie(ec, std::ignore) =
            co_await asio::async_write(conn->socket, asio::buffer(body), nothrow);
      }
      if (ec) sent = false;
    }
    if (sent && chunked_up) {
      auto [ec, n] =
          co_await asio::async_write(conn->socket, asio::buffer(http::kLastChunk), nothrow);
      if (ec) sent = false;
    }

    // Response head (skipping 1xx interim responses).
    resp.next_message();
    resp.expect_no_body(is_head);
    slot_.fired = Timeout::none;
    slot_.set_deadline(Timeout::upstream_response, limits_->upstream_response_timeout);
    bool got_any = false;
    bool failed = !sent;
    while (!failed && !(resp.head_done() && resp.response().status >= 200)) {
      if (resp.head_done()) {  // a 1xx: finish it and expect the real one
        if (!resp.message_done()) resp.feed(uin.ptr(), uin.size());
        resp.next_message();
        resp.expect_no_body(is_head);
        continue;
      }
      if (uin.size() == 0 && !co_await fill(uin, conn->socket, false)) {
        failed = true;
        break;
      }
      got_any = true;
      size_t n = resp.feed(uin.ptr(), uin.size());
      uin.consume(n);
      if (resp.error() != http::ParseError::none) failed = true;
    }
    if (failed) {
      bool timed_out = slot_.fired == Timeout::upstream_response;
      conn.reset();
      if (!got_any && !timed_out && reused && !body_started && attempt == 0) {
        if (uin.data) uin.begin = uin.end = 0;
        continue;
      }
      cleanup();
      if (timed_out)
        co_return co_await send_local(ctx, 504, "upstream request timeout", "UT", false);
      co_return co_await send_local(
          ctx, got_any ? 502 : 502,
          fmt::format("{}{}", kResetBody, got_any ? "protocol error" : "connection termination"),
          "UC", false);
    }
    break;
  }
  slot_.clear_deadline();

  // Response head downstream.
  ResponseHead rh = std::move(resp.response());
  uint16_t status = rh.status;
  bool upstream_keep_alive = resp.keep_alive();
  http::strip_hop_by_hop(rh.headers);
  bool bodyless = is_head || status == 204 || status == 304;
  bool down_keep_alive =
      p.keep_alive() && p.message_done() && !slot_.close_after_response && !worker_.draining();
  bool chunked_down = false;
  if (!bodyless && !resp.has_content_length()) {
    if (head.version_minor >= 1) {
      chunked_down = true;
      rh.headers.add("transfer-encoding", "chunked");
    } else {
      down_keep_alive = false;  // HTTP/1.0 client: the body ends at close
    }
  }
  if (!down_keep_alive) rh.headers.set("connection", "close");
  ctx.response_status = status;
  ctx.response_flags = "-";
  if (auto& hooks = worker_.shared().hooks) hooks->on_response_headers(ctx, rh);
  std::string out;
  out.reserve(512);
  http::append_response_head(out, rh);

  // The first body span usually came with the head: send them together.
  bool ok = true;
  bool first_write = true;
  std::string chunk_head;
  while (ok) {
    std::string_view body;
    if (!resp.message_done()) {
      size_t n = resp.feed(uin.ptr(), uin.size());
      uin.consume(n);
      if (resp.error() != http::ParseError::none) {
        ok = false;
        upstream_keep_alive = false;
        break;
      }
      body = resp.body();
      if (body.empty() && !resp.message_done() && !first_write) {
        if (n > 0) continue;
        slot_.set_deadline(Timeout::io, limits_->idle_timeout);
        if (!co_await fill(uin, conn->socket, false)) {
          if (slot_.fired == Timeout::none && resp.finish()) continue;  // close-delimited end
          ok = false;  // truncated: the client must see the connection close
          upstream_keep_alive = false;
          break;
        }
        continue;
      }
    }
    bool done = resp.message_done();
    std::vector<asio::const_buffer> bufs;
    if (first_write) bufs.push_back(asio::buffer(out));
    if (!body.empty()) {
      ctx.bytes_sent += body.size();
      if (chunked_down) {
        chunk_head.clear();
        http::append_chunk_header(chunk_head, body.size());
        bufs.push_back(asio::buffer(chunk_head));
        bufs.push_back(asio::buffer(body));
        bufs.push_back(asio::buffer(http::kChunkEnd));
      } else {
        bufs.push_back(asio::buffer(body));
      }
    }
    if (done && chunked_down) bufs.push_back(asio::buffer(http::kLastChunk));
    if (!bufs.empty() && !co_await write_down(std::span<const asio::const_buffer>(bufs))) {
      ok = false;
      ctx.response_flags = "DC";
      upstream_keep_alive = false;
      break;
    }
    first_write = false;
    if (done) break;
  }

  // Back to the pool only when both messages ended cleanly.
  bool reusable = ok && upstream_keep_alive && resp.message_done() && uin.size() == 0 &&
                  (pool_cfg.max_requests_per_connection == 0 ||
                   conn->requests < pool_cfg.max_requests_per_connection);
  slot_.upstream = nullptr;
  if (reusable) worker_.pool().put(std::move(conn), pool_cfg.max_idle_per_endpoint);
  cleanup();
  co_return ok&& down_keep_alive;
}

}  // namespace

void start_session(Worker& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port) {
  auto session = std::make_unique<Session>(worker, std::move(socket), listener, port);
  Session* raw = session.get();
  asio::co_spawn(worker.context(), raw->run(),
                 [s = std::move(session)](std::exception_ptr) mutable { s.reset(); });
}

}  // namespace sluice
