#include "proxy/session.hpp"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <array>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>

#include "http/parser.hpp"
#include "http/path.hpp"
#include "http/serializer.hpp"
#include "http/tokens.hpp"
#include "policy/policy.hpp"
#include "proxy/fail_stream.hpp"
#include "runtime/worker.hpp"
#include "tls/server.hpp"
#include "upstream/cluster.hpp"
#include "upstream/connect.hpp"

namespace sluice {

namespace {

using asio::awaitable;
using Timeout = ConnectionSlot::Timeout;
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// A byte window [begin, end) over a recycled worker buffer.
struct Window {
  IoBuffer data;
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
constexpr auto kMirrorTimeout = std::chrono::seconds(10);

Response text_response(uint16_t status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response parse_error_response(http::ParseError e) {
  switch (e) {
    case http::ParseError::header_too_large:
      return text_response(431, "");
    case http::ParseError::not_implemented:
      return text_response(501, "");
    case http::ParseError::bad_version:
      return text_response(505, "");
    default:
      return text_response(400, "");
  }
}

// `Upgrade: h2c` alone: a client offering HTTP/2 that is happy with 1.1.
bool is_h2c_offer(const Headers& headers) {
  bool h2c = false, other = false;
  for (const auto& [name, value] : headers.entries())
    if (iequals(name, "upgrade"))
      http::for_each_list_item(value, [&](std::string_view p) {
        if (iequals(p, "h2c"))
          h2c = true;
        else
          other = true;
      });
  return h2c && !other;
}

// A TLS connection is routed only by the servers its SNI selected (Istio
// builds one route table per server): the Host must be one of theirs.
bool host_allowed_by_sni(const CompiledListener& listener, std::string_view sni,
                         std::string_view authority) {
  if (!listener.tls || !listener.tls->terminates()) return true;
  const tls::ListenerTls::Server* server = listener.tls->select(sni);
  if (!server) return false;
  std::string host(http::split_host_port(authority).host);
  for (char& c : host)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  for (const auto& pattern : server->config.sni_hosts)
    if (tls::host_match_rank(pattern, host) >= 0) return true;
  return false;
}

// Sends a mirrored request and discards the answer. Owns everything it uses
// (the snapshot keeps the upstream and its TLS context alive).
awaitable<void> run_mirror(Worker& worker, std::shared_ptr<const Snapshot> snap, uint32_t upstream,
                           int64_t endpoint, std::string wire) {
  // A connection slot bounds it with a deadline and lets drain and
  // force-close see it, like any downstream connection.
  ConnectionSlot slot(nullptr);
  worker.attach(&slot);
  ++worker.mirrors_in_flight;
  slot.idle = false;
  slot.set_cap(kMirrorTimeout);
  const CompiledUpstream& up = snap->upstreams[upstream];
  Lease lease = co_await open_connection(worker, slot, up, endpoint);
  if (lease.conn) {
    UpstreamConnection& c = *lease.conn;
    slot.upstream = &c.socket;
    auto [ec, n] = co_await write_upstream(c, asio::buffer(wire));
    // The request said `connection: close`: drain the answer until the
    // upstream closes, so it is not reset mid-response.
    std::array<char, 2048> sink;
    while (!ec) std::tie(ec, n) = co_await read_upstream(c, asio::buffer(sink));
    slot.upstream = nullptr;
  }
  lease.conn.reset();
  --worker.mirrors_in_flight;
  worker.detach(&slot);
}

void park(Worker& worker, asio::ip::tcp::socket socket, std::string listener, uint16_t port);

// Brackets one upstream attempt for least-request counts and outlier
// detection; an attempt abandoned early (client gone) counts as a reset.
struct AttemptGuard {
  Worker& worker;
  const CompiledUpstream& upstream;
  int64_t endpoint;
  bool done = false;

  AttemptGuard(Worker& w, const CompiledUpstream& up, int64_t ep)
      : worker(w), upstream(up), endpoint(ep) {
    attempt_started(worker, upstream, endpoint);
  }
  AttemptGuard(const AttemptGuard&) = delete;
  AttemptGuard& operator=(const AttemptGuard&) = delete;
  void finish(policy::AttemptOutcome outcome, uint16_t status) {
    if (done) return;
    done = true;
    attempt_finished(worker, upstream, endpoint, outcome, status);
  }
  ~AttemptGuard() { finish(policy::AttemptOutcome::reset, 0); }
};

// One downstream connection. Stream is asio::ip::tcp::socket or a TLS stream
// over one; everything below the HTTP layer goes through stream_.
template <typename Stream>
class Session {
 public:
  // Reads from an upstream connection, plain or TLS, into `w`.
  awaitable<bool> fill_up(Window& w, UpstreamConnection& c) {
    if (c.tls) co_return co_await fill(w, *c.tls, false);
    co_return co_await fill(w, c.socket, false);
  }

  Session(Worker& worker, Stream stream, std::string listener, uint16_t port, DownstreamTls tls)
      : worker_(worker),
        stream_(std::move(stream)),
        slot_(&stream_.lowest_layer()),
        tls_(std::move(tls)),
        listener_(std::move(listener)),
        port_(port),
        request_parser_(http::Parser::Kind::request),
        response_parser_(http::Parser::Kind::response) {
    slot_.parkable = kParkable;
  }

  awaitable<void> run();

 private:
  // Each returns whether the downstream connection stays open.
  awaitable<bool> serve_one(bool first);
  awaitable<bool> read_head(const Limits& limits, bool first);
  template <typename S>
  awaitable<bool> fill(Window& w, S& s, bool wait_first);
  awaitable<bool> write_down(std::span<const asio::const_buffer> bufs);
  awaitable<bool> write_down(std::string_view bytes) {
    std::array<asio::const_buffer, 1> one{asio::buffer(bytes)};
    co_return co_await write_down(std::span<const asio::const_buffer>(one));
  }
  awaitable<bool> send_local(RequestContext& ctx, Response response, std::string_view flags,
                             bool keep_alive, std::string_view details = {});
  awaitable<bool> proxy(RequestContext& ctx, const Snapshot& snap, const Route& route,
                        const ResolvedRoute& rr, const ResolvedDestination& dest, int64_t endpoint,
                        const policy::CorsDecision* cors, const std::string& set_cookie);
  awaitable<bool> wait_for(std::chrono::milliseconds d);
  // The answer to a request whose wait ended on a timeout, by which one fired
  // (Envoy's codes and flags); none when no timeout fired.
  struct TimeoutReply {
    uint16_t status;
    std::string_view body, flags, details;
  };
  std::optional<TimeoutReply> timeout_reply() const {
    switch (slot_.fired) {
      case Timeout::route:
        return TimeoutReply{504, "upstream request timeout", "UT", "upstream_timeout"};
      case Timeout::request:
        return TimeoutReply{408, "request timeout", "-", "request_overall_timeout"};
      case Timeout::stream:
        return TimeoutReply{408, "downstream duration timeout", "DT", "max_duration_timeout"};
      case Timeout::io:
        return TimeoutReply{408, "stream timeout", "SI", "stream_idle_timeout"};
      default:
        return std::nullopt;
    }
  }
  bool drive_request_to_end();
  void start_mirrors(const ResolvedRoute& rr, const RequestHead& head,
                     http::Forwarding fwd, const std::string& body);
  void log(RequestContext& ctx);
  bool request_fully_read() const { return request_parser_.message_done(); }

  Worker& worker_;
  Stream stream_;
  ConnectionSlot slot_;
  DownstreamTls tls_;
  static constexpr bool kTls =
      std::is_same_v<Stream, asio::ssl::stream<asio::ip::tcp::socket>>;
  // Only a plain socket can be parked (handed to park() without a session).
  static constexpr bool kParkable = std::is_same_v<Stream, asio::ip::tcp::socket>;
  static constexpr std::string_view kScheme = kTls ? "https" : "http";
  std::string listener_;
  uint16_t port_;
  std::string client_ip_;
  std::string client_address_;
  http::Parser request_parser_;
  http::Parser response_parser_;
  Window in_;
  bool park_ = false;  // leave run() handing the socket to park()
  // Serialised heads, kept across requests so their capacity is reused.
  std::string upstream_head_;
  std::string downstream_head_;
  Clock::time_point started_;
  const Limits* limits_ = nullptr;
  std::shared_ptr<const Snapshot> request_snapshot_;  // the one serve_one() started with
};

template <typename Stream>
awaitable<void> Session<Stream>::run() {
  worker_.attach(&slot_);
  asio::error_code ec;
  auto remote = stream_.lowest_layer().remote_endpoint(ec);
  if (!ec) {
    client_ip_ = remote.address().to_string();
    client_address_ = fmt::format("{}:{}", client_ip_, remote.port());
  }
  bool first = true;
  try {
    // An idle connection must not keep an old snapshot alive.
    while (co_await serve_one(first)) {
      first = false;
      request_snapshot_.reset();
    }
  } catch (const std::exception&) {
    // Allocation failure or a bug: drop this connection, keep the worker.
    park_ = false;
  }
  if (in_.data) worker_.give_buffer(std::move(in_.data));
  if constexpr (kParkable) {
    if (park_) {
      worker_.detach(&slot_);
      park(worker_, std::move(stream_), std::move(listener_), port_);
      co_return;
    }
  }
  stream_.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  stream_.lowest_layer().close(ec);
  worker_.detach(&slot_);
}

// Reads into `w` from `s`. `idle`: between requests, where the ticker may
// park the connection (see park()).
template <typename Stream>
template <typename S>
awaitable<bool> Session<Stream>::fill(Window& w, S& s, bool idle) {
  if (idle && slot_.parked && w.size() == 0) {
    park_ = true;
    co_return false;
  }
  if (!w.data) w.data = worker_.take_buffer();
  auto [ec, n] = co_await s.async_read_some(w.space(), nothrow);
  // The ticker cancelled an idle read: hand the connection to park().
  if (ec == asio::error::operation_aborted && idle && slot_.parked &&
      slot_.fired == Timeout::none && !worker_.draining() && w.size() == 0) {
    park_ = true;
    co_return false;
  }
  if (ec || n == 0) co_return false;
  w.end += n;
  co_return true;
}

template <typename Stream>
awaitable<bool> Session<Stream>::write_down(std::span<const asio::const_buffer> bufs) {
  slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
  auto [ec, n] = co_await asio::async_write(stream_, bufs, nothrow);
  slot_.clear_deadline();
  co_return !ec;
}

template <typename Stream>
awaitable<bool> Session<Stream>::wait_for(std::chrono::milliseconds d) {
  asio::steady_timer t(worker_.context(), d);
  auto [ec] = co_await t.async_wait(nothrow);
  co_return !ec;
}

template <typename Stream>
awaitable<bool> Session<Stream>::read_head(const Limits& limits, bool first) {
  auto& p = request_parser_;
  bool started = false;
  slot_.fired = Timeout::none;
  while (!p.head_done()) {
    if (in_.size() > 0) {
      if (!started) {
        started = true;
        started_ = worker_.refresh_now();
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
      slot_.idle_since = worker_.now();
      slot_.set_deadline(Timeout::idle, limits.idle_timeout);
    }
    if (!co_await fill(in_, stream_, !started)) co_return false;
  }
  slot_.clear_deadline();
  co_return true;
}

// Feeds the request parser until the message ends when no body follows the
// head (llhttp completes a message on the next call after the head).
template <typename Stream>
bool Session<Stream>::drive_request_to_end() {
  auto& p = request_parser_;
  if (p.message_done()) return true;
  if (p.body_expected()) return false;
  size_t n = p.feed(in_.ptr(), in_.size());
  in_.consume(n);
  return p.message_done();
}

template <typename Stream>
awaitable<bool> Session<Stream>::send_local(RequestContext& ctx, Response response,
                                            std::string_view flags, bool keep_alive,
                                            std::string_view details) {
  // A request body we did not read makes the connection unusable.
  keep_alive =
      keep_alive && request_fully_read() && !slot_.close_after_response && !worker_.draining();
  ResponseHead head;
  head.status = response.status;
  head.headers = std::move(response.headers);
  bool bodyless = response.status == 204 || response.status == 304;
  if (!response.body.empty() && !head.headers.contains("content-type"))
    head.headers.add("content-type", "text/plain");
  if (!bodyless) head.headers.set("content-length", std::to_string(response.body.size()));
  if (!keep_alive) head.headers.set("connection", "close");
  ctx.response_status = response.status;
  ctx.response_flags = flags;
  ctx.response_code_details = details;
  if (auto& hooks = worker_.shared().hooks) hooks->on_response_headers(ctx, head);
  std::string out;
  http::append_response_head(out, head);
  bool send_body = ctx.request.method != "HEAD" && !bodyless;
  if (send_body) out += response.body;
  ctx.bytes_sent = send_body ? response.body.size() : 0;
  bool ok = co_await write_down(std::string_view(out));
  co_return ok&& keep_alive;
}

template <typename Stream>
void Session<Stream>::log(RequestContext& ctx) {
  if (auto& hooks = worker_.shared().hooks) {
    ctx.duration = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_);
    hooks->on_log(ctx);
  }
}

template <typename Stream>
void Session<Stream>::start_mirrors(const ResolvedRoute& rr,
                                    const RequestHead& head, http::Forwarding fwd,
                                    const std::string& body) {
  // The same sanitised, rewritten head as the upstream gets (forwarding
  // headers replaced, trailers not folded in), with the shadow host, the
  // whole body and a close.
  std::string shadow = policy::shadow_authority(head.authority);
  fwd.host = shadow;
  if (fwd.chunked || fwd.content_length || !body.empty()) fwd.content_length = body.size();
  fwd.chunked = false;
  fwd.close = true;
  for (size_t i = 0; i < rr.mirrors.size(); ++i) {
    if (!policy::draw(rr.mirror_percentages[i], worker_.rng())) continue;
    if (worker_.mirrors_in_flight >= Worker::kMaxMirrors) return;  // shed, never queue
    const ResolvedDestination& m = rr.mirrors[i];
    const CompiledUpstream& up = request_snapshot_->upstreams[m.upstream];
    int64_t ep = pick_endpoint(worker_, up, *m.set, PickRequest{head, client_ip_}).endpoint;
    if (ep < 0) continue;
    std::string wire;
    http::append_forwarded_request_head(wire, head, fwd);
    wire += body;
    asio::co_spawn(worker_.context(),
                   run_mirror(worker_, request_snapshot_, m.upstream, ep, std::move(wire)),
                   asio::detached);
  }
}

template <typename Stream>
awaitable<bool> Session<Stream>::serve_one(bool first) {
  // The current snapshot's limits bound reading the head; the snapshot
  // current when the head has arrived serves all of the request (a reload
  // while a keep-alive connection waits applies to its next request).
  std::shared_ptr<const Snapshot> snap = worker_.snapshot();
  if (!snap) co_return false;
  limits_ = &snap->limits;
  slot_.clear_caps();
  auto& p = request_parser_;
  p.next_message();
  p.set_limits({snap->limits.max_request_header_bytes, snap->limits.max_request_headers});
  bool got_head = co_await read_head(snap->limits, first);
  if (const auto& current = worker_.snapshot(); current && current != snap) {
    snap = current;
    limits_ = &snap->limits;
  }
  request_snapshot_ = snap;
  RequestHead& head = p.request();
  RequestContext ctx{.request = head};
  ctx.client_address = client_address_;
  ctx.listener = listener_;
  ctx.sni = tls_.sni;
  ctx.peer_identity = tls_.peer_identity;
  if (!got_head) {
    if (p.error() != http::ParseError::none) {
      co_await send_local(ctx, parse_error_response(p.error()), "-", false, "http1.codec_error");
    } else if (slot_.fired == Timeout::header) {
      co_await send_local(ctx, text_response(408, ""), "-", false, "request_header_timeout");
    }
    co_return false;
  }
  // From here the request is bounded as a whole, not only per read.
  if (limits_->request_timeout.count() > 0)
    slot_.set_cap_at(ConnectionSlot::request_cap, started_ + limits_->request_timeout);
  if (limits_->max_stream_duration.count() > 0)
    slot_.set_cap_at(ConnectionSlot::stream_cap, started_ + limits_->max_stream_duration);
  std::string why = http::validate_request(head);
  if (!why.empty()) {
    co_await send_local(ctx, text_response(400, ""), "-", false, "http1.codec_error");
    log(ctx);
    co_return false;
  }
  // No tunnels yet: CONNECT and protocol upgrades are refused before
  // anything is forwarded, and the connection closes because the bytes after
  // the head belong to the tunnel, not to HTTP/1. An h2c upgrade offer is
  // only an offer: it is dropped with the other hop-by-hop headers.
  if (head.method == "CONNECT") {
    co_await send_local(ctx, text_response(404, ""), "NR", false, "route_not_found");
    log(ctx);
    co_return false;
  }
  if (p.upgrade() && !is_h2c_offer(head.headers)) {
    co_await send_local(ctx, text_response(403, ""), "-", false, "upgrade_failed");
    log(ctx);
    co_return false;
  }
  // Routing, policies and the forwarded request all see one normalised path.
  if (head.target != "*")
    why = http::normalize_target(head.target, snap->source.path_normalization);
  if (!why.empty()) {
    co_await send_local(ctx, text_response(400, ""), "-", false, "http1.codec_error");
    log(ctx);
    co_return false;
  }
  head.scheme = kScheme;
  head.listener_port = port_;
  bool keep_alive = p.keep_alive();
  // Names listed in Connection go now, before hooks, routing and header
  // operations see the request (they can never name Host or Content-Length).
  http::strip_hop_by_hop(head.headers);
  drive_request_to_end();
  // A body whose framing is already known to be broken is refused before
  // the head goes anywhere.
  if (!p.message_done() && !p.check_ahead(in_.ptr(), in_.size())) {
    co_await send_local(ctx, text_response(400, ""), "-", false, "http1.codec_error");
    log(ctx);
    co_return false;
  }

  auto& hooks = worker_.shared().hooks;
  if (hooks) {
    if (auto r = hooks->on_request(ctx)) {
      bool ok = co_await send_local(ctx, std::move(*r), "-", keep_alive, "hook");
      log(ctx);
      co_return ok;
    }
  }

  const CompiledListener* listener = snap->listener(listener_);
  std::optional<Router::Selection> sel;
  if (listener && host_allowed_by_sni(*listener, tls_.sni, head.authority))
    sel = snap->routers[listener->router].match(head);
  if (!sel) {
    bool ok = co_await send_local(ctx, text_response(404, ""), "NR", keep_alive, "route_not_found");
    log(ctx);
    co_return ok;
  }
  const Route& route = *sel->route;
  const ResolvedRoute& rr =
      snap->routes[listener->router][sel->virtual_host_index][sel->route_index];
  ctx.virtual_host = sel->virtual_host->name;
  ctx.route = route.name;
  if (!kTls && sel->virtual_host->https_redirect) {
    Redirect to_https{.scheme = "https",
                      .derive_port = Redirect::DerivePort::from_protocol_default};
    Response r;
    r.status = 301;
    r.headers.add("location", policy::redirect_location(to_https, head));
    bool ok = co_await send_local(ctx, std::move(r), "-", keep_alive, "https_redirect");
    log(ctx);
    co_return ok;
  }

  // Fixed order: CORS preflight, fault, redirect / direct response, rewrite,
  // header edits, then the upstream.
  std::optional<policy::CorsDecision> cors;
  if (rr.policy.cors) {
    cors = policy::evaluate_cors(*rr.policy.cors, head);
    if (cors->preflight) {
      bool ok =
          co_await send_local(ctx, std::move(*cors->preflight), "-", keep_alive, "cors_response");
      log(ctx);
      co_return ok;
    }
  }
  if (route.fault) {
    auto fault = policy::decide_fault(*route.fault, worker_.rng());
    if (fault.delay.count() > 0) {
      ctx.response_flags = "DI";
      if (!co_await wait_for(fault.delay)) co_return false;
    }
    if (fault.abort) {
      bool ok =
          co_await send_local(ctx, std::move(*fault.abort), "FI", keep_alive, "fault_filter_abort");
      log(ctx);
      co_return ok;
    }
  }
  if (route.redirect) {
    Response r;
    r.status = route.redirect->code;
    r.headers.add("location", policy::redirect_location(*route.redirect, head));
    bool ok = co_await send_local(ctx, std::move(r), "-", keep_alive, "direct_response");
    log(ctx);
    co_return ok;
  }
  if (const auto& dr = route.direct_response) {
    bool ok = co_await send_local(ctx, text_response(dr->status, dr->body), "-", keep_alive,
                                  "direct_response");
    log(ctx);
    co_return ok;
  }
  if (route.rewrite) policy::apply_rewrite(rr.policy, sel->matched, head);
  policy::apply_headers(route.request_headers, head);

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
  std::string set_cookie;
  if (dest) {
    const CompiledUpstream& up = snap->upstreams[dest->upstream];
    ctx.upstream = up.config.name;
    auto pick = pick_endpoint(worker_, up, *dest->set, PickRequest{head, client_ip_});
    endpoint = pick.endpoint;
    set_cookie = std::move(pick.set_cookie);
    if (endpoint >= 0) ctx.endpoint = up.endpoints[endpoint].key;
  }
  if (endpoint < 0) {
    bool ok = co_await send_local(ctx, text_response(503, "no healthy upstream"), "UH", keep_alive,
                                  "no_healthy_upstream");
    log(ctx);
    co_return ok;
  }
  if (hooks) {
    if (auto r = hooks->on_upstream_chosen(ctx)) {
      bool ok = co_await send_local(ctx, std::move(*r), "-", keep_alive, "hook");
      log(ctx);
      co_return ok;
    }
  }
  bool ok =
      co_await proxy(ctx, *snap, route, rr, *dest, endpoint, cors ? &*cors : nullptr, set_cookie);
  log(ctx);
  co_return ok&& keep_alive && !slot_.close_after_response && !worker_.draining();
}

template <typename Stream>
awaitable<bool> Session<Stream>::proxy(RequestContext& ctx, const Snapshot& snap,
                                       const Route& route, const ResolvedRoute& rr,
                                       const ResolvedDestination& dest, int64_t endpoint,
                                       const policy::CorsDecision* cors,
                                       const std::string& set_cookie) {
  auto& p = request_parser_;
  RequestHead& head = ctx.request;
  const CompiledUpstream& up = snap.upstreams[dest.upstream];
  const policy::CompiledRetry& retry = rr.policy.retry;
  const Destination& dest_cfg =
      route.destinations[static_cast<size_t>(&dest - rr.destinations.data())];

  // The upstream request head: hop-by-hop headers go, forwarding headers come.
  policy::apply_headers(dest_cfg.request_headers, head);
  char request_id[36];
  worker_.make_request_id(request_id);
  bool chunked_up = p.chunked();
  std::string& out_head = upstream_head_;
  out_head.clear();
  // We answer 100-continue ourselves (Envoy's default), so the upstream must not wait.
  http::Forwarding fwd{.client_ip = client_ip_,
                       .proto = head.scheme,
                       .xfcc = tls_.xfcc,
                       .request_id = std::string_view(request_id, sizeof(request_id)),
                       .default_host = up.endpoints[endpoint].key,
                       .chunked = chunked_up};
  // Framing from the parsed message, whatever the headers now say.
  if (!chunked_up && p.has_content_length()) fwd.content_length = p.content_length();
  bool expect_continue = http::append_forwarded_request_head(out_head, head, fwd);

  // The body is kept for replay (retries, mirrors) while it fits.
  bool has_body = !p.message_done();
  bool want_replay = retry.attempts > 0 || !rr.mirrors.empty();
  size_t replay_limit = route.retries.max_replay_bytes;
  std::string replay;
  bool replay_ok = true;
  bool body_sent_once = !has_body;
  bool body_consumed = false;  // some body bytes were taken from the client
  bool mirrors_started = false;
  worker_.refresh_now();
  slot_.set_cap(rr.policy.timeout);

  std::unique_ptr<UpstreamConnection> conn;
  Window uin;
  http::Parser& resp = response_parser_;
  bool is_head = head.method == "HEAD";
  auto cleanup = [&] {
    slot_.upstream = nullptr;
    slot_.clear_cap();
    if (uin.data) worker_.give_buffer(std::move(uin.data));
  };
  auto fail = [&](uint16_t status, std::string body, std::string_view flags,
                  std::string_view details) -> awaitable<bool> {
    cleanup();
    co_return co_await send_local(ctx, text_response(status, std::move(body)), flags, false,
                                  details);
  };

  // Retries in flight count against the upstream's max_retries while they run.
  struct RetryToken {
    Worker& worker;
    const CompiledUpstream& upstream;
    bool held = false;
    void release() {
      if (held) retry_finished(worker, upstream);
      held = false;
    }
    ~RetryToken() { release(); }
  } retry_token{worker_, up};
  std::array<int64_t, 8> tried{};
  size_t tried_count = 0;
  bool stale_retry_used = false;
  for (uint32_t attempt = 0;; ++attempt) {
    if (attempt > 0) {
      // Pick again, avoiding endpoints already tried when asked to.
      auto pick = pick_endpoint(
          worker_, up, *dest.set,
          PickRequest{head, client_ip_, std::span<const int64_t>(tried.data(), tried_count),
                      retry.ignore_previous_hosts});
      if (pick.endpoint < 0)
        co_return co_await fail(503, "no healthy upstream", "UH", "no_healthy_upstream");
      endpoint = pick.endpoint;
      ctx.endpoint = up.endpoints[endpoint].key;
    }
    if (tried_count < tried.size()) tried[tried_count++] = endpoint;
    ctx.attempts = attempt + 1;

    policy::AttemptOutcome outcome = policy::AttemptOutcome::response;
    AttemptGuard guard{worker_, up, endpoint};
    Lease lease = co_await lease_connection(worker_, slot_, up, endpoint);
    bool reused = lease.reused;
    conn = std::move(lease.conn);
    switch (lease.status) {
      case Lease::Status::ok:
        break;
      case Lease::Status::overflow: {
        cleanup();
        Response r = text_response(503,
                                   "upstream connect error or disconnect/reset before headers. "
                                   "reset reason: overflow");
        r.headers.add("x-envoy-overloaded", "true");
        co_return co_await send_local(ctx, std::move(r), "UO", false, "upstream_overflow");
      }
      case Lease::Status::cancelled:
        if (auto t = timeout_reply()) co_return co_await fail(t->status, std::string(t->body), t->flags, t->details);
        guard.finish(policy::AttemptOutcome::downstream_cancelled, 0);
        co_return co_await fail(503, "", "DC", "downstream_cancelled");
      case Lease::Status::connect_failure:
      case Lease::Status::connect_timeout:
        outcome = policy::AttemptOutcome::connect_failure;
        break;
    }

    bool got_any = false;
    bool protocol_error = false;
    if (conn) {
      ++conn->requests;
      slot_.upstream = &conn->socket;
      if (expect_continue && !body_sent_once && attempt == 0) {
        if (!co_await write_down(kContinue)) {
          guard.finish(policy::AttemptOutcome::downstream_cancelled, 0);
          cleanup();
          ctx.response_flags = "DC";
          co_return false;
        }
      }
      // Head, then the body: streamed from the client the first time (kept
      // for replay while it fits), from the replay buffer after that.
      bool sent = true;
      bool head_unsent = false;  // the write failed before any byte left
      slot_.fired = Timeout::none;
      slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
      {
        auto [ec, n] = co_await write_upstream(*conn, asio::buffer(out_head));
        if (ec) sent = false;
        head_unsent = ec && n == 0;
      }
      auto send_body = [&](std::string_view body) -> awaitable<bool> {
        slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
        asio::error_code ec;
        if (chunked_up) {
          std::string chunk_head;
          http::append_chunk_header(chunk_head, body.size());
          std::array<asio::const_buffer, 3> bufs = {asio::buffer(chunk_head), asio::buffer(body),
                                                    asio::buffer(http::kChunkEnd)};
          std::tie(ec, std::ignore) = co_await write_upstream(*conn, bufs);
        } else {
          std::tie(ec, std::ignore) = co_await write_upstream(*conn, asio::buffer(body));
        }
        co_return !ec;
      };
      if (sent && body_sent_once && has_body && !replay.empty()) sent = co_await send_body(replay);
      while (sent && !body_sent_once) {
        size_t n = p.feed(in_.ptr(), in_.size());
        in_.consume(n);
        if (p.error() != http::ParseError::none)
          co_return co_await fail(400, "", "-", "http1.codec_error");
        if (p.message_done()) {
          body_sent_once = true;
          slot_.clear_cap(ConnectionSlot::request_cap);
          break;
        }
        std::string_view body = p.body();
        if (body.empty()) {
          if (n > 0) continue;
          slot_.fired = Timeout::none;
          slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
          if (!co_await fill(in_, stream_, false)) {
            // The client stopped sending: a timeout is answered; a client
            // that went away says nothing about the upstream (no outlier
            // strike), and there is nobody to answer.
            guard.finish(policy::AttemptOutcome::downstream_cancelled, 0);
            if (auto t = timeout_reply()) co_return co_await fail(t->status, std::string(t->body), t->flags, t->details);
            cleanup();
            ctx.response_flags = "DC";
            co_return false;
          }
          continue;
        }
        body_consumed = true;
        ctx.bytes_received += body.size();
        if (want_replay && replay_ok) {
          if (replay.size() + body.size() <= replay_limit) {
            replay.append(body);
          } else {
            replay_ok = false;
            std::string().swap(replay);
          }
        }
        if (!co_await send_body(body)) sent = false;
      }
      if (sent && has_body && chunked_up) {
        auto [ec, n] = co_await write_upstream(*conn, asio::buffer(http::kLastChunk));
        if (ec) sent = false;
      }
      if (sent && !mirrors_started && !rr.mirrors.empty()) {
        mirrors_started = true;
        if (replay_ok) start_mirrors(rr, head, fwd, replay);
      }

      // Response head (skipping 1xx interim responses).
      resp.reset();
      resp.set_limits({limits_->max_response_header_bytes, limits_->max_response_headers});
      resp.expect_no_body(is_head);
      if (uin.data) uin.begin = uin.end = 0;
      slot_.fired = Timeout::none;
      auto response_wait = retry.per_try_timeout.count() > 0 ? retry.per_try_timeout
                                                             : limits_->upstream_response_timeout;
      if (response_wait.count() > 0)
        slot_.set_deadline(Timeout::upstream_response, response_wait);
      else
        slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
      bool failed = !sent;
      while (!failed && !(resp.head_done() && resp.response().status >= 200)) {
        if (resp.head_done()) {  // a 1xx: finish it and expect the real one
          if (!resp.message_done()) uin.consume(resp.feed(uin.ptr(), uin.size()));
          resp.next_message();
          resp.expect_no_body(is_head);
          continue;
        }
        if (uin.size() == 0 && !co_await fill_up(uin, *conn)) {
          failed = true;
          break;
        }
        got_any = true;
        uin.consume(resp.feed(uin.ptr(), uin.size()));
        if (resp.error() != http::ParseError::none) failed = protocol_error = true;
      }
      slot_.upstream = nullptr;
      slot_.clear_deadline();
      if (failed) {
        conn.reset();
        if (auto t = timeout_reply()) co_return co_await fail(t->status, std::string(t->body), t->flags, t->details);
        if (slot_.fired == Timeout::upstream_response) {
          outcome = policy::AttemptOutcome::timeout;
        } else {
          outcome = policy::AttemptOutcome::reset;
          // A pooled connection the upstream closed as we picked it: one
          // free retry on a fresh connection. Only when the whole request
          // can be sent again (nothing of the body taken from the client,
          // or all of it replayable), and, with retries off, only when
          // provably nothing reached the upstream.
          bool resendable =
              !has_body || !body_consumed || (body_sent_once && want_replay && replay_ok);
          bool allowed = head_unsent || retry.attempts > 0;
          if (!got_any && reused && !stale_retry_used && resendable && allowed) {
            stale_retry_used = true;
            --attempt;
            --tried_count;
            continue;
          }
        }
      }
    }

    uint16_t status = outcome == policy::AttemptOutcome::response ? resp.response().status : 0;
    guard.finish(outcome, status);
    if (protocol_error)
      co_return co_await fail(
          502, fmt::format("{}protocol error", kResetBody), "UPE",
          "upstream_reset_before_response_started{protocol_error}");
    retry_token.release();
    bool can_retry =
        attempt < retry.attempts && (!has_body || (body_sent_once && want_replay && replay_ok));
    if (can_retry && retry.retriable(outcome, status)) {
      if (admit_retry(worker_, up)) {
        retry_token.held = true;
        conn.reset();  // an unread response: the connection is not reusable
        if (!co_await wait_for(retry.backoff(attempt + 1, worker_.rng()))) co_return false;
        continue;
      }
      // Envoy: over the retry budget, this attempt's result stands.
      ctx.response_code_details = "retry_overflow";
    }
    if (retry.attempts > attempt && has_body && !replay_ok && retry.retriable(outcome, status))
      ctx.response_code_details = "retry_skipped_body_over_replay_buffer";
    switch (outcome) {
      case policy::AttemptOutcome::connect_failure:
        co_return co_await fail(503, fmt::format("{}connection failure", kResetBody),
                                attempt > 0 ? "URX,UF" : "UF", "upstream_connect_failure");
      case policy::AttemptOutcome::timeout:
        co_return co_await fail(504, "upstream request timeout", "UT", "upstream_per_try_timeout");
      case policy::AttemptOutcome::reset:
        co_return co_await fail(
            502,
            fmt::format("{}{}", kResetBody, got_any ? "protocol error" : "connection termination"),
            "UC", "upstream_reset_before_response_started");
      case policy::AttemptOutcome::response:
        break;
    }
    break;
  }

  // Response head downstream.
  // Edited in place: the parser keeps the vector's capacity for the next one.
  ResponseHead& rh = resp.response();
  uint16_t status = rh.status;
  bool upstream_keep_alive = resp.keep_alive();
  http::strip_hop_by_hop(rh.headers);
  policy::apply_headers(dest_cfg.response_headers, rh.headers);
  policy::apply_headers(route.response_headers, rh.headers);
  if (cors)
    for (const auto& [name, value] : cors->response_headers) rh.headers.set(name, value);
  if (!set_cookie.empty()) rh.headers.add("set-cookie", set_cookie);
  // Framing comes from the parsed response, never from what the headers say
  // after filtering and header operations.
  rh.headers.remove("content-length");
  if (resp.has_content_length() && status != 204)
    rh.headers.add("content-length", std::to_string(resp.content_length()));
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
  if (auto& hooks = worker_.shared().hooks) hooks->on_response_headers(ctx, rh);
  std::string& out = downstream_head_;
  out.clear();
  http::append_response_head(out, rh);

  // The first body span usually came with the head: send them together.
  bool ok = true;
  bool first_write = true;
  std::string chunk_head;
  slot_.upstream = &conn->socket;
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
        slot_.fired = Timeout::none;
        slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
        if (!co_await fill_up(uin, *conn)) {
          if (slot_.fired == Timeout::none && resp.finish()) continue;  // close-delimited end
          ok = false;  // truncated or timed out: the client must see the close
          if (auto t = timeout_reply()) ctx.response_flags = t->flags;
          upstream_keep_alive = false;
          break;
        }
        continue;
      }
    }
    bool done = resp.message_done();
    std::array<asio::const_buffer, 5> bufs;
    size_t nbufs = 0;
    if (first_write) bufs[nbufs++] = asio::buffer(out);
    if (!body.empty()) {
      ctx.bytes_sent += body.size();
      if (chunked_down) {
        chunk_head.clear();
        http::append_chunk_header(chunk_head, body.size());
        bufs[nbufs++] = asio::buffer(chunk_head);
        bufs[nbufs++] = asio::buffer(body);
        bufs[nbufs++] = asio::buffer(http::kChunkEnd);
      } else {
        bufs[nbufs++] = asio::buffer(body);
      }
    }
    if (done && chunked_down) bufs[nbufs++] = asio::buffer(http::kLastChunk);
    if (nbufs > 0 &&
        !co_await write_down(std::span<const asio::const_buffer>(bufs.data(), nbufs))) {
      ok = false;
      ctx.response_flags = "DC";
      upstream_keep_alive = false;
      break;
    }
    first_write = false;
    if (done) break;
  }

  // Back to the pool only when both messages ended cleanly and nothing more
  // was sent: bytes past the response (a HEAD, 204 or 304 with a body, or
  // extra data) mean the upstream's framing is not ours, on the socket or
  // inside the TLS engine alike.
  bool reusable = ok && upstream_keep_alive && resp.message_done() && uin.size() == 0 &&
                  !has_pending_input(*conn);
  slot_.upstream = nullptr;
  release_connection(worker_, up, std::move(conn), reusable);
  cleanup();
  co_return ok&& down_keep_alive;
}

}  // namespace

namespace {

// An idle keep-alive connection without a session: no coroutine frames, no
// buffers, only the socket and what is needed to resume, time out and drain.
// This is what bounds the memory of idle connections.
struct Parked {
  Parked(asio::ip::tcp::socket s, std::string l, uint16_t p)
      : socket(std::move(s)), slot(&socket), listener(std::move(l)), port(p) {}
  asio::ip::tcp::socket socket;
  ConnectionSlot slot;
  std::string listener;
  uint16_t port;
};

void park(Worker& worker, asio::ip::tcp::socket socket, std::string listener, uint16_t port) {
  auto parked = std::make_unique<Parked>(std::move(socket), std::move(listener), port);
  Parked& p = *parked;
  worker.attach(&p.slot);
  p.slot.idle = true;
  p.slot.parked = true;
  const auto& snap = worker.snapshot();
  p.slot.set_deadline(ConnectionSlot::Timeout::idle,
                      snap ? snap->limits.idle_timeout : Limits{}.idle_timeout);
  if (worker.draining()) p.slot.interrupt();
  p.socket.async_wait(asio::socket_base::wait_read, [&worker, parked = std::move(parked)](
                                                        asio::error_code ec) mutable {
    worker.detach(&parked->slot);
    if (ec || worker.draining()) {
      asio::error_code ignored;
      parked->socket.close(ignored);
      return;
    }
    start_session(worker, std::move(parked->socket), parked->listener, parked->port);
  });
}

}  // namespace

namespace {
// The session owns itself for the life of its coroutine.
template <typename Stream>
void spawn_session(Worker& worker, Stream stream, const std::string& listener, uint16_t port,
                   DownstreamTls tls) {
  using S = Session<Stream>;
  auto session = std::make_unique<S>(worker, std::move(stream), listener, port, std::move(tls));
  S* raw = session.get();
  asio::co_spawn(worker.context(), raw->run(),
                 [s = std::move(session)](std::exception_ptr) mutable { s.reset(); });
}
}  // namespace

void start_session(Worker& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port) {
  spawn_session(worker, std::move(socket), listener, port, DownstreamTls{});
}

void start_fail_count_session(Worker& worker, FailCountStream stream, const std::string& listener,
                              uint16_t port) {
  spawn_session(worker, std::move(stream), listener, port, DownstreamTls{});
}

void start_tls_session(Worker& worker, asio::ssl::stream<asio::ip::tcp::socket> stream,
                       const std::string& listener, uint16_t port, DownstreamTls tls) {
  spawn_session(worker, std::move(stream), listener, port, std::move(tls));
}

}  // namespace sluice
