#include "proxy/session.hpp"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <array>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>

#include "http/grpc.hpp"
#include "http/parser.hpp"
#include "http/path.hpp"
#include "http/random.hpp"
#include "http/serializer.hpp"
#include "http/tokens.hpp"
#include "policy/policy.hpp"
#include "policy/retry_state.hpp"
#include "proxy/access_log.hpp"
#include "proxy/ext_authz.hpp"
#include "proxy/fail_stream.hpp"
#include "proxy/host.hpp"
#include "proxy/mirror.hpp"
#include "proxy/park.hpp"
#include "proxy/ratelimit_filter.hpp"
#include "proxy/security_filter.hpp"
#include "proxy/tunnel.hpp"
#include "tls/server.hpp"
#include "upstream/cluster.hpp"
#include "upstream/connect.hpp"

namespace sluice {

namespace {

using asio::awaitable;
using Timeout = ConnectionSlot::Timeout;

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
    if (begin > 0 && end == Loop::kBufferSize) {
      std::memmove(data.get(), data.get() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    return asio::buffer(data.get() + end, Loop::kBufferSize - end);
  }
};

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kResetBody =
    "upstream connect error or disconnect/reset before headers. reset reason: ";

Response text_response(uint16_t status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

using Flag = ResponseFlag;
using ErrorKind = ProxyError::Kind;

// An answer the gateway makes itself because proxying failed, with Envoy's
// flags and details; the host's fail_to_proxy may replace it.
struct LocalReply {
  uint16_t status = 0;
  ErrorKind kind = ErrorKind::upstream_reset;
  std::string body;
  ResponseFlags flags;
  std::string_view details;
  bool overloaded = false;  // x-envoy-overloaded: true (circuit breaking)
};

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
    if (http::iequals(name, "upgrade"))
      http::for_each_list_item(value, [&](std::string_view p) {
        if (http::iequals(p, "h2c"))
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
  std::string host = http::to_lower(http::split_host_port(authority).host);
  for (const auto& pattern : server->config.sni_hosts)
    if (tls::host_match_rank(pattern, host) >= 0) return true;
  return false;
}

// Brackets one upstream attempt for least-request counts and outlier
// detection; an attempt abandoned early (client gone) counts as a reset.
struct AttemptGuard {
  SessionHost& worker;
  const CompiledUpstream& upstream;
  int64_t endpoint;
  bool done = false;

  AttemptGuard(SessionHost& w, const CompiledUpstream& up, int64_t ep)
      : worker(w), upstream(up), endpoint(ep) {
    attempt_started(worker.upstream(), upstream, endpoint);
  }
  AttemptGuard(const AttemptGuard&) = delete;
  AttemptGuard& operator=(const AttemptGuard&) = delete;
  void finish(policy::AttemptOutcome outcome, uint16_t status) {
    if (done) return;
    done = true;
    attempt_finished(worker.upstream(), upstream, endpoint, outcome, status);
  }
  ~AttemptGuard() { finish(policy::AttemptOutcome::reset, 0); }
};

// One downstream connection. Stream is asio::ip::tcp::socket or a TLS stream
// over one; everything below the HTTP layer goes through stream_.
template <typename Stream>
class Session {
 public:
  // Reads from an upstream connection, plain or TLS, into `w`.
  // Not a coroutine of its own: fill's awaitable, one frame fewer per read.
  awaitable<bool> fill_up(Window& w, UpstreamConnection& c) {
    if (c.tls) return fill(w, *c.tls, false);
    return fill(w, c.socket, false);
  }

  Session(SessionHost& worker, Stream stream, std::string listener, uint16_t port,
          tls::DownstreamTls tls)
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
  // A request carried in from another protocol's stream (see StreamOrigin).
  void set_origin(StreamOrigin origin) {
    origin_ = std::move(origin);
    slot_.parkable = false;
    scheme_ = origin_->tls ? "https" : "http";
    local_address_ = origin_->local_address;
  }
  // A resumed connection's idle start (see start_session).
  void set_idle_since(TimePoint t) { resumed_idle_since_ = t; }
  // Bytes read before the session began (the h2c check), parsed first.
  void set_preread(std::string_view bytes) {
    if (bytes.empty()) return;
    in_.data = worker_.take_buffer();
    std::memcpy(in_.data.get(), bytes.data(), bytes.size());
    in_.end = bytes.size();
  }

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
  awaitable<bool> send_local(RequestContext& ctx, Response response, ResponseFlags flags,
                             bool keep_alive, std::string_view details = {});
  // A LocalReply, after the host's fail_to_proxy had its say.
  awaitable<bool> send_error(RequestContext& ctx, LocalReply reply, bool keep_alive);
  awaitable<bool> proxy(RequestContext& ctx, const std::shared_ptr<const Snapshot>& snap,
                        const Route& route, const ResolvedRoute& rr,
                        const ResolvedDestination& dest, const policy::CorsDecision* cors);
  awaitable<bool> wait_for(std::chrono::milliseconds d);
  // The answer to a request whose wait ended on a timeout, by which one fired
  // (Envoy's codes and flags); none when no timeout fired.
  std::optional<LocalReply> timeout_reply() const {
    switch (slot_.fired) {
      case Timeout::route:
        return LocalReply{504,
                          ErrorKind::upstream_timeout,
                          "upstream request timeout",
                          {Flag::upstream_request_timeout},
                          "upstream_timeout"};
      case Timeout::request:
        return LocalReply{
            408, ErrorKind::downstream_timeout, "request timeout", {}, "request_overall_timeout"};
      case Timeout::stream:
        return LocalReply{408,
                          ErrorKind::downstream_timeout,
                          "downstream duration timeout",
                          {Flag::duration_timeout},
                          "max_duration_timeout"};
      case Timeout::io:
        return LocalReply{408,
                          ErrorKind::downstream_timeout,
                          "stream timeout",
                          {Flag::stream_idle_timeout},
                          "stream_idle_timeout"};
      default:
        return std::nullopt;
    }
  }

  // A reply the session makes before any upstream is involved.
  struct Answer {
    Response response;
    ResponseFlags flags;
    std::string_view details;
    bool close = false;  // the connection cannot carry another request
  };
  awaitable<bool> answer(RequestContext& ctx, Answer a, bool keep_alive);
  // Checks and normalises a parsed head before anyone sees it; an answer
  // when the request is refused.
  std::optional<Answer> admit(const Snapshot& snap, RequestHead& head);
  // What Envoy's filters in front of the router do for the route: https
  // redirect, CORS preflight and fault; an answer ends the request. Only
  // for a route that has one of them (has_route_filters): most have none,
  // and they pay no coroutine frame.
  static bool has_route_filters(const Router::Selection& sel, const ResolvedRoute& rr) {
    return (!kTls && sel.virtual_host->https_redirect) || rr.policy.cors || sel.route->fault;
  }
  awaitable<std::optional<Answer>> route_filters(RequestContext& ctx, const Router::Selection& sel,
                                                 const ResolvedRoute& rr,
                                                 std::optional<policy::CorsDecision>& cors);
  // What Envoy's router does with the route itself, after the rate limits:
  // redirect or direct response (an answer), else rewrite and header edits.
  std::optional<Answer> route_actions(const Router::Selection& sel, const ResolvedRoute& rr,
                                      RequestHead& head);
  const ResolvedDestination* pick_destination(const ResolvedRoute& rr);
  // The CUSTOM policy's ext_authz call (with the body when the provider
  // wants it), then the other policies; an answer when the request is
  // refused.
  awaitable<std::optional<Answer>> ext_authz(RequestContext& ctx, const Snapshot& snap,
                                             SecurityResult& security);
  // Reads the request body into prebody_ for the check, up to the
  // provider's limit (413 past it unless a partial body will do).
  awaitable<std::optional<Answer>> read_body_for_check(RequestContext& ctx,
                                                       const ExtAuthzRequestBody& limit,
                                                       bool& partial);

  // One proxied request across its attempts (Envoy's router state).
  struct Exchange {
    RequestContext& ctx;
    // The request's snapshot, held by serve_one(); mirrors keep a copy.
    const std::shared_ptr<const Snapshot>& snap;
    const Route& route;
    const ResolvedRoute& rr;
    const ResolvedDestination& dest;
    const CompiledUpstream& up;  // the destination's: its balancer and retry budget
    const Destination& dest_cfg;
    const policy::CorsDecision* cors = nullptr;
    std::string set_cookie{};  // from the first pick (cookie hashing)
    // This attempt's upstream: the destination's unless upstream_peer chose another.
    const CompiledUpstream* peer = nullptr;
    bool head_ready = false;         // upstream_head_ holds this request's head
    bool hook_request_body = false;  // the host's on_request_body runs per chunk
    bool hook_response_body = false;
    http::Forwarding fwd{};
    char request_id[36]{};
    bool chunked_up = false;
    bool chunked_down = false;
    bool expect_continue = false;
    bool is_head = false;
    bool upgrade = false;  // an allowed upgrade: a 101 opens a tunnel
    policy::BodyState body{};
    bool want_replay = false;
    size_t replay_limit = 0;
    std::string replay{};
    bool mirrors_started = false;
    // When the whole request had reached the upstream (the first try's):
    // x-envoy-upstream-service-time counts from it, retries included.
    Clock::time_point request_sent_at{};
    std::unique_ptr<UpstreamConnection> conn{};
    Window uin{};
  };
  // How one attempt ended before its response body: for the retry decision,
  // or a reply that ends the request now, or a client that is gone.
  struct Attempt {
    policy::AttemptEnd end;
    bool protocol_error = false;
    std::optional<LocalReply> reply;
    bool client_gone = false;
  };
  struct SendResult {
    bool ok = true;
    bool nothing_sent = false;  // the head's write failed before any byte left
    std::optional<LocalReply> reply;
    bool client_gone = false;
  };
  // One attempt's upstream and endpoint: the balancer's pick, then the
  // host's upstream_peer, which may change it or answer instead.
  struct Peer {
    const CompiledUpstream* up = nullptr;
    int64_t endpoint = -1;  // -1: none available
    std::optional<Response> refused;
  };
  Peer choose_peer(Exchange& x, const PickRequest& request, bool first);
  // The route timeout as a gRPC request's deadline (see grpc-timeout), and
  // a gRPC-Web request made gRPC for the upstream.
  std::chrono::milliseconds prepare_grpc(RequestHead& head, const ResolvedRoute& rr);
  static void note_peer(RequestContext& ctx, const CompiledUpstream& up, int64_t endpoint);
  static LocalReply bad_web_text() {
    return LocalReply{400,
                      ErrorKind::downstream_protocol_error,
                      "Bad gRPC-web request, invalid base64 data.",
                      {},
                      "grpc_web_bad_base64"};
  }
  static LocalReply no_healthy_upstream() {
    return LocalReply{503,
                      ErrorKind::no_healthy_upstream,
                      "no healthy upstream",
                      {Flag::no_healthy_upstream},
                      "no_healthy_upstream"};
  }
  void prepare_upstream_head(Exchange& x, int64_t endpoint);
  awaitable<Attempt> run_attempt(Exchange& x, AttemptGuard& guard, int64_t endpoint,
                                 uint32_t attempt);
  awaitable<SendResult> send_request(Exchange& x, AttemptGuard& guard);
  // Appends to the replay buffer while the body fits, else gives it up.
  static void keep_for_replay(Exchange& x, std::string_view bytes) {
    if (!x.body.replayable) return;
    if (x.replay.size() + bytes.size() <= x.replay_limit) {
      x.replay.append(bytes);
    } else {
      x.body.replayable = false;
      std::string().swap(x.replay);
    }
  }
  awaitable<bool> read_response_head(Exchange& x, Attempt& a);
  // The reply for an attempt that failed, `retry_flags` (URX, UO) first.
  static std::optional<LocalReply> attempt_failure_reply(const policy::AttemptEnd& end,
                                                         ResponseFlags retry_flags);
  bool prepare_response_head(Exchange& x);
  awaitable<bool> relay_response(Exchange& x);
  // After the upstream's 101: relays it, then splices both ways until
  // either side closes. The connection ends with the tunnel.
  awaitable<bool> tunnel(Exchange& x);
  // A gRPC-Web response span: base64 in text mode; at the end, the
  // trailers as a frame. The result is in web_out_ or `bytes` itself.
  std::string_view encode_web(std::string_view bytes, bool done, const Headers& trailers) {
    if (!web_text_response_ && !done) return bytes;
    web_out_.clear();
    if (web_text_response_)
      web_encoder_.feed(bytes, web_out_);
    else
      web_out_.append(bytes);
    if (done) {
      if (!trailers.empty()) {
        std::string frame;
        http::append_grpc_web_trailers(frame, trailers);
        if (web_text_response_)
          web_encoder_.feed(frame, web_out_);
        else
          web_out_ += frame;
      }
      if (web_text_response_) web_encoder_.finish(web_out_);
    }
    return web_out_;
  }
  // Runs a body hook over `bytes`; what the hook left is in chunk_.data.
  std::string_view run_body_hook(SessionHost::Body which, RequestContext& ctx,
                                 std::string_view bytes, bool end_of_stream);
  void cleanup(Exchange& x);
  awaitable<bool> finish(Exchange& x, LocalReply reply);
  bool drive_request_to_end();
  void log(RequestContext& ctx);
  void write_access_log(const RequestContext& ctx);
  bool request_fully_read() const { return request_parser_.message_done(); }

  SessionHost& worker_;
  Stream stream_;
  ConnectionSlot slot_;
  tls::DownstreamTls tls_;
  static constexpr bool kTls = std::is_same_v<Stream, asio::ssl::stream<asio::ip::tcp::socket>>;
  // A plain socket or a TLS stream can be parked (handed to park() without
  // a session); a test's wrapped stream cannot.
  static constexpr bool kParkable = std::is_same_v<Stream, asio::ip::tcp::socket> || kTls;
  static constexpr std::string_view kScheme = kTls ? "https" : "http";
  std::string_view scheme_ = kScheme;
  std::optional<StreamOrigin> origin_;
  std::string listener_;
  uint16_t port_;
  std::string client_ip_;
  std::string client_address_;
  http::Parser request_parser_;
  http::Parser response_parser_;
  Window in_;
  std::string upgrade_;             // per request: the allowed upgrade asked for, or empty
  bool park_ = false;               // leave run() handing the socket to park()
  TimePoint resumed_idle_since_{};  // {}: none, the connection is idle from now
  // Serialised heads, kept across requests so their capacity is reused.
  std::string upstream_head_;
  std::string downstream_head_;
  BodyChunk chunk_;  // the body hooks' chunk, reused (its capacity too)
  // Per request: body bytes read for the ext_authz check, sent upstream as
  // the body's first span; headers the provider adds to the response; the
  // 100 Continue already sent while reading that body.
  std::string prebody_;
  bool prebody_pending_ = false;
  Headers downstream_on_allow_;
  bool continue_sent_ = false;
  Clock::time_point started_;
  // The request's route destination, for its metrics' destination_* labels;
  // null until one is picked (no route, a local answer).
  const telemetry::DestinationLabels* destination_labels_ = nullptr;
  const Limits* limits_ = nullptr;
  // Access logs of the request's snapshot (null: none, and no cost), and
  // the path and authority as received, before the route rewrote them.
  const CompiledAccessLogs* access_logs_ = nullptr;
  bool received_saved_ = false;
  std::string received_target_;
  std::string received_authority_;
  std::string local_address_;  // "ip:port", looked up at the first line
  RequestTrace trace_;         // per request: propagate_trace .. finish_trace
  // Per request: gRPC (from the request's content-type) and the status the
  // response carried (head, trailers or the gateway's reply; -1: none).
  http::GrpcKind grpc_ = http::GrpcKind::none;
  bool web_text_response_ = false;  // gRPC-Web: the response body goes base64
  bool web_response_ = false;       // gRPC-Web: this response is encoded for it
  int16_t grpc_status_ = -1;
  http::Base64Decoder web_decoder_;
  http::Base64Encoder web_encoder_;
  std::string web_in_;      // a request span after base64 decoding
  std::string web_out_;     // a response span after gRPC-Web encoding
  std::string last_chunk_;  // the last chunk with its trailers
  // Local replies to gRPC clients: trailers-only, status by Envoy's mapping.
  void to_grpc_reply(Response& r, ResponseFlags flags, std::string_view details);
  void note_grpc_status(const Headers& headers) {
    if (auto v = headers.get("grpc-status"))
      if (auto st = http::parse_grpc_status(*v); st && *st <= INT16_MAX)
        grpc_status_ = static_cast<int16_t>(*st);
  }
  bool web() const { return grpc_ == http::GrpcKind::web || grpc_ == http::GrpcKind::web_text; }
  std::string_view web_content_type() const {
    return web_text_response_ ? "application/grpc-web-text+proto" : "application/grpc-web+proto";
  }
};

template <typename Stream>
awaitable<void> Session<Stream>::run() {
  slot_.counters = worker_.listener_counters(listener_);
  worker_.attach(&slot_);
  asio::error_code ec;
  auto remote = stream_.lowest_layer().remote_endpoint(ec);
  if (origin_) {
    client_ip_ = origin_->client_ip;
    client_address_ = origin_->client_address;
  } else if (!ec) {
    client_ip_ = remote.address().to_string();
    client_address_ = http::join_host_port(client_ip_, remote.port());
  }
  bool first = true;
  try {
    while (co_await serve_one(first)) first = false;
  } catch (const std::exception&) {
    // Allocation failure or a bug: drop this connection, keep the worker.
    park_ = false;
  }
  if (in_.data) worker_.give_buffer(std::move(in_.data));
  if constexpr (kParkable) {
    if (park_) {
      worker_.detach(&slot_);
      if constexpr (kTls)
        park(worker_, stream_, std::move(listener_), port_, slot_.idle_since);
      else
        park(worker_, std::move(stream_), std::move(listener_), port_, slot_.idle_since);
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
    // A TLS stream may hold bytes it read but did not decrypt yet: it parks
    // only from a cancelled read (below), which waited on the socket itself.
    if constexpr (!kTls) {
      park_ = true;
      co_return false;
    }
    slot_.parked = false;  // the ticker parks it again, cancelling this read
  }
  if (!w.data) w.data = worker_.take_buffer();
  auto [ec, n] = co_await s.async_read_some(w.space(), kNoThrow);
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
  auto [ec, n] = co_await asio::async_write(stream_, bufs, kNoThrow);
  slot_.clear_deadline();
  co_return !ec;
}

template <typename Stream>
awaitable<bool> Session<Stream>::wait_for(std::chrono::milliseconds d) {
  ClockTimer t(worker_);  // on the gateway's clock
  co_return co_await t.sleep_for(d);
}

template <typename Stream>
awaitable<bool> Session<Stream>::read_head(const Limits& limits, bool first) {
  auto& p = request_parser_;
  bool started = false;
  slot_.fired = Timeout::none;
  grpc_ = http::GrpcKind::none;
  grpc_status_ = -1;
  while (!p.head_done()) {
    if (in_.size() > 0) {
      if (!started) {
        started = true;
        resumed_idle_since_ = {};
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
      slot_.idle_since = resumed_idle_since_ != TimePoint{} ? resumed_idle_since_ : worker_.now();
      slot_.set_deadline(Timeout::idle, slot_.idle_since, limits.idle_timeout);
    }
    if (!co_await fill(in_, stream_, !started)) co_return false;
  }
  slot_.clear_deadline();
  const Headers& h = p.request().headers;
  if (auto ct = h.get("content-type")) grpc_ = http::grpc_kind(*ct);
  // gRPC-Web answers in text mode to a text request or one that accepts it.
  web_text_response_ = grpc_ == http::GrpcKind::web_text;
  if (web())
    if (auto accept = h.get("accept"))
      web_text_response_ |= accept->find("application/grpc-web-text") != std::string_view::npos;
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
                                            ResponseFlags flags, bool keep_alive,
                                            std::string_view details) {
  // A request body we did not read makes the connection unusable.
  keep_alive =
      keep_alive && request_fully_read() && !slot_.close_after_response && !worker_.draining();
  if (grpc_ != http::GrpcKind::none) to_grpc_reply(response, flags, details);
  ResponseHead head;
  head.status = response.status;
  head.headers = std::move(response.headers);
  for (const auto& [name, value] : downstream_on_allow_.entries()) head.headers.set(name, value);
  bool bodyless = response.status == 204 || response.status == 304;
  if (!response.body.empty() && !head.headers.contains("content-type"))
    head.headers.add("content-type", "text/plain");
  if (!bodyless) head.headers.set("content-length", std::to_string(response.body.size()));
  if (!keep_alive) head.headers.set("connection", "close");
  ctx.response_status = response.status;
  ctx.response_flags.add(flags);
  ctx.response_code_details = details;
  if (auto* hooks = worker_.hooks()) hooks->on_response_headers(ctx, head);
  std::string out;
  http::append_response_head(out, head);
  bool send_body = ctx.request.method != "HEAD" && !bodyless;
  if (send_body) out += response.body;
  ctx.bytes_sent = send_body ? response.body.size() : 0;
  bool ok = co_await write_down(std::string_view(out));
  co_return ok&& keep_alive;
}

template <typename Stream>
void Session<Stream>::to_grpc_reply(Response& r, ResponseFlags flags, std::string_view details) {
  if (web()) r.headers.set("content-type", std::string(web_content_type()));
  // Already a gRPC reply (a fault abort with a gRPC status).
  if (r.headers.contains("grpc-status")) {
    note_grpc_status(r.headers);
    return;
  }
  // Envoy answers a deadline the gateway enforced (route timeout, per-try
  // timeout, grpc-timeout, max stream duration) with DEADLINE_EXCEEDED,
  // not the 504's UNAVAILABLE a client would retry.
  uint32_t status = flags.has(Flag::upstream_request_timeout) || flags.has(Flag::duration_timeout)
                        ? http::kGrpcDeadlineExceeded
                        : http::grpc_status_from_http(r.status);
  std::string message;
  http::append_grpc_message(message, r.body.empty() ? details : std::string_view(r.body));
  r.status = 200;
  r.body.clear();
  if (!web()) r.headers.set("content-type", "application/grpc");
  r.headers.set("grpc-status", std::to_string(status));
  if (!message.empty()) r.headers.set("grpc-message", std::move(message));
  grpc_status_ = static_cast<int16_t>(status);
}

template <typename Stream>
void Session<Stream>::log(RequestContext& ctx) {
  ctx.duration =
      std::chrono::duration_cast<std::chrono::microseconds>(worker_.clock_now() - started_);
  if (worker_.metrics_on()) {
    telemetry::RequestKey key{.destination = destination_labels_,
                              .response_code = ctx.response_status,
                              .response_flags = ctx.response_flags};
    if (grpc_ != http::GrpcKind::none) {
      key.protocol = telemetry::RequestProtocol::grpc;
      key.grpc_status = grpc_status_;
    }
    telemetry::RequestSample sample{
        .duration_ms = static_cast<uint64_t>(ctx.duration.count() / 1000),
        .request_bytes = ctx.bytes_received,
        .response_bytes = ctx.bytes_sent};
    worker_.request_metrics().record(key, sample);
  }
  if (access_logs_) write_access_log(ctx);
  // The request's span, when sampled and a collector is configured.
  finish_trace(worker_, ctx, trace_);
  if (auto* hooks = worker_.hooks()) hooks->on_log(ctx);
}

template <typename Stream>
void Session<Stream>::write_access_log(const RequestContext& ctx) {
  if (local_address_.empty()) {
    asio::error_code ec;
    auto local = stream_.lowest_layer().local_endpoint(ec);
    if (!ec) local_address_ = http::join_host_port(local.address().to_string(), local.port());
  }
  const RequestHead& head = request_parser_.request();
  // Envoy's X-Forwarded-For has the client appended before anything logs
  // it (Istio's gateways use the remote address); sluice appends it only
  // on the wire, so the line is told what to append.
  telemetry::LogRecord r;
  r.grpc_status = grpc_status_;
  r.forwarded_client = client_ip_;
  auto duration = ctx.duration;  // log() measured it
  r.start_time = worker_.wall_now() - duration;
  r.request = &head;
  // The line shows the request as received, before the route's rewrite.
  if (received_saved_) {
    r.received_target = received_target_;
    r.received_authority = received_authority_;
  }
  r.protocol = origin_ ? origin_->protocol : head.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  r.response_code = ctx.response_status;
  r.response_flags = ctx.response_flags;
  // Envoy's details for a response the upstream gave.
  r.response_code_details = ctx.response_code_details.empty() && ctx.attempts > 0
                                ? std::string_view("via_upstream")
                                : ctx.response_code_details;
  r.bytes_received = ctx.bytes_received;
  r.bytes_sent = ctx.bytes_sent;
  r.duration = duration;
  r.upstream_host = ctx.endpoint;
  r.upstream_cluster = ctx.upstream;
  r.downstream_local_address = local_address_;
  r.downstream_remote_address = client_address_;
  r.downstream_peer_uri_san = tls_.peer_identity;
  r.requested_server_name = tls_.sni;
  r.route_name = ctx.route;
  r.attempts = ctx.attempts;
  write_access_logs(worker_, *access_logs_, r);
}

template <typename Stream>
awaitable<bool> Session<Stream>::answer(RequestContext& ctx, Answer a, bool keep_alive) {
  bool ok =
      co_await send_local(ctx, std::move(a.response), a.flags, keep_alive && !a.close, a.details);
  log(ctx);
  co_return ok;
}

template <typename Stream>
std::optional<typename Session<Stream>::Answer> Session<Stream>::admit(const Snapshot& snap,
                                                                       RequestHead& head) {
  auto& p = request_parser_;
  auto refuse = [](uint16_t status, ResponseFlags flags, std::string_view details) {
    return Answer{text_response(status, ""), flags, details, true};
  };
  if (!http::validate_request(head).empty()) return refuse(400, {}, "http1.codec_error");
  // CONNECT is not proxied (no CONNECT route exists, as in Envoy without
  // one): refused before anything is forwarded, and the connection closes
  // because the bytes after the head belong to the tunnel. An h2c upgrade
  // offer is only an offer: it is dropped with the other hop-by-hop headers.
  if (head.method == "CONNECT") return refuse(404, {Flag::no_route_found}, "route_not_found");
  // An allowed upgrade is routed like any request and tunnelled after the
  // upstream's 101; its Upgrade header is re-added on the wire only.
  upgrade_.clear();
  if (p.upgrade() && !is_h2c_offer(head.headers)) {
    UpgradeDecision d =
        decide_upgrade(head.headers, true, p.body_expected(), snap.source->upgrade_types);
    if (d.verdict == UpgradeDecision::Verdict::has_body)
      return refuse(400, {}, "http1.codec_error");
    if (d.verdict != UpgradeDecision::Verdict::allowed) return refuse(403, {}, "upgrade_failed");
    upgrade_ = std::move(d.token);
  }
  // Routing, policies and the forwarded request all see one normalised path.
  if (head.target != "*" &&
      !http::normalize_target(head.target, snap.source->path_normalization).empty())
    return refuse(400, {}, "http1.codec_error");
  head.scheme = scheme_;
  head.listener_port = port_;
  // Names listed in Connection go now, before hooks, routing and header
  // operations see the request (they can never name Host or Content-Length).
  http::strip_hop_by_hop(head.headers);
  drive_request_to_end();
  // A body whose framing is already known to be broken is refused before
  // the head goes anywhere.
  if (!p.message_done() && !p.check_ahead(in_.ptr(), in_.size()))
    return refuse(400, {}, "http1.codec_error");
  return std::nullopt;
}

template <typename Stream>
awaitable<std::optional<typename Session<Stream>::Answer>> Session<Stream>::route_filters(
    RequestContext& ctx, const Router::Selection& sel, const ResolvedRoute& rr,
    std::optional<policy::CorsDecision>& cors) {
  const Route& route = *sel.route;
  RequestHead& head = ctx.request;
  if (!kTls && sel.virtual_host->https_redirect) {
    Redirect to_https{.scheme = "https",
                      .derive_port = Redirect::DerivePort::from_protocol_default};
    Answer a{text_response(301, ""), {}, "https_redirect"};
    a.response.headers.add("location", policy::redirect_location(to_https, head));
    co_return a;
  }
  // Fixed order: CORS preflight, fault, then (route_actions, after the
  // rate limits) redirect / direct response, rewrite, header edits.
  if (rr.policy.cors) {
    cors = policy::evaluate_cors(*rr.policy.cors, head);
    if (cors->preflight) co_return Answer{std::move(*cors->preflight), {}, "cors_response"};
  }
  if (route.fault) {
    auto fault = policy::decide_fault(*route.fault, worker_.rng());
    if (fault.delay.count() > 0) {
      ctx.response_flags.add(Flag::delay_injected);
      if (!co_await wait_for(fault.delay)) {
        Answer gone{text_response(503, ""),
                    {Flag::downstream_connection_termination},
                    "downstream_cancelled",
                    true};
        co_return gone;
      }
    }
    if (fault.abort) {
      Answer abort{std::move(*fault.abort), {Flag::fault_injected}, "fault_filter_abort"};
      co_return abort;
    }
  }
  co_return std::nullopt;
}

template <typename Stream>
std::optional<typename Session<Stream>::Answer> Session<Stream>::route_actions(
    const Router::Selection& sel, const ResolvedRoute& rr, RequestHead& head) {
  const Route& route = *sel.route;
  if (route.redirect) {
    Answer a{text_response(route.redirect->code, ""), {}, "direct_response"};
    a.response.headers.add("location", policy::redirect_location(*route.redirect, head));
    return a;
  }
  if (const auto& dr = route.direct_response)
    return Answer{text_response(dr->status, dr->body), {}, "direct_response"};
  if (route.rewrite) policy::apply_rewrite(rr.policy, sel.matched, head);
  policy::apply_headers(route.request_headers, head);
  return std::nullopt;
}

template <typename Stream>
const ResolvedDestination* Session<Stream>::pick_destination(const ResolvedRoute& rr) {
  if (rr.total_weight == 0) return nullptr;
  uint64_t r = http::draw_below(worker_.rng(), rr.total_weight);
  for (const auto& d : rr.destinations) {
    if (r < d.weight) return &d;
    r -= d.weight;
  }
  return nullptr;
}

template <typename Stream>
awaitable<std::optional<typename Session<Stream>::Answer>> Session<Stream>::read_body_for_check(
    RequestContext& ctx, const ExtAuthzRequestBody& limit, bool& partial) {
  auto& p = request_parser_;
  if (p.message_done()) co_return std::nullopt;  // no body
  prebody_pending_ = true;
  size_t max = limit.max_request_bytes;
  Answer too_large{text_response(413, "Payload Too Large"), {}, "request_payload_too_large", true};
  if (!limit.allow_partial_message && p.has_content_length() && p.content_length() > max)
    co_return too_large;
  // The client may wait for this before sending the body (we answer
  // 100-continue ourselves, as Envoy does).
  if (auto expect = ctx.request.headers.get("expect");
      expect && http::iequals(*expect, "100-continue") && !continue_sent_) {
    continue_sent_ = true;
    if (!co_await write_down(kContinue))
      co_return Answer{text_response(503, ""),
                       {Flag::downstream_connection_termination},
                       "downstream_cancelled",
                       true};
  }
  // Past max by at most one span: that much is needed to know the body is longer.
  while (!p.message_done() && prebody_.size() <= max) {
    size_t n = p.feed(in_.ptr(), in_.size());
    in_.consume(n);
    if (p.error() != http::ParseError::none)
      co_return Answer{text_response(400, ""), {}, "http1.codec_error", true};
    if (std::string_view body = p.body(); !body.empty()) {
      prebody_.append(body);
      continue;
    }
    if (p.message_done() || n > 0) continue;
    slot_.fired = Timeout::none;
    slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
    bool more = co_await fill(in_, stream_, false);
    slot_.clear_deadline();
    if (!more) {
      if (auto t = timeout_reply())
        co_return Answer{text_response(t->status, std::move(t->body)), t->flags, t->details, true};
      co_return Answer{text_response(503, ""),
                       {Flag::downstream_connection_termination},
                       "downstream_cancelled",
                       true};
    }
  }
  if (prebody_.size() > max || !p.message_done()) {
    if (!limit.allow_partial_message) co_return too_large;
    partial = true;
  }
  co_return std::nullopt;
}

template <typename Stream>
awaitable<std::optional<typename Session<Stream>::Answer>> Session<Stream>::ext_authz(
    RequestContext& ctx, const Snapshot& snap, SecurityResult& security) {
  const security::CompiledExtAuthz& provider = *security.ext_authz;
  const ExtAuthzHttpProvider& cfg = provider.config;
  RequestHead& head = ctx.request;
  bool partial = false;
  std::string_view body;
  if (const auto& limit = cfg.include_request_body_in_check) {
    if (auto refused = co_await read_body_for_check(ctx, *limit, partial)) co_return refused;
    body = std::string_view(prebody_).substr(0, limit->max_request_bytes);
  }
  std::string wire;
  security::append_check_request(wire, provider, head, body, partial);
  security::ExtAuthzOutcome outcome =
      co_await call_ext_authz(worker_, slot_, snap, provider, head, client_ip_, std::move(wire));
  // The request's own bounds (request timeout, max duration) end it as they would anywhere.
  if (slot_.fired == Timeout::request || slot_.fired == Timeout::stream)
    if (auto t = timeout_reply())
      co_return Answer{text_response(t->status, std::move(t->body)), t->flags, t->details, true};
  slot_.fired = Timeout::none;
  switch (outcome.verdict) {
    case security::ExtAuthzVerdict::denied: {
      // The provider's status, body and headers, as Envoy relays them.
      Response r{.status = outcome.status,
                 .headers = std::move(outcome.downstream),
                 .body = std::move(outcome.body)};
      co_return Answer{std::move(r), {Flag::unauthorized_external_service}, "ext_authz_denied"};
    }
    case security::ExtAuthzVerdict::error:
      if (!cfg.fail_open)
        co_return Answer{text_response(cfg.status_on_error, ""),
                         {Flag::unauthorized_external_service},
                         "ext_authz_error"};
      break;
    case security::ExtAuthzVerdict::ok:
      for (const auto& [name, value] : outcome.upstream.entries()) head.headers.set(name, value);
      downstream_on_allow_ = std::move(outcome.downstream);
      break;
  }
  finish_security(*snap.security, security);
  co_return std::nullopt;
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
  RequestHead& head = p.request();
  access_logs_ = snap->access_logs.get();
  received_saved_ = false;
  RequestContext ctx{.request = head};
  destination_labels_ = nullptr;
  ctx.client_address = client_address_;
  ctx.listener = listener_;
  ctx.sni = tls_.sni;
  ctx.peer_identity = tls_.peer_identity;
  if (!got_head) {
    if (p.error() != http::ParseError::none) {
      co_await send_local(ctx, parse_error_response(p.error()), ResponseFlags(), false,
                          "http1.codec_error");
      log(ctx);  // Envoy reports requests it refused unparsed too
    } else if (slot_.fired == Timeout::header) {
      co_await send_local(ctx, text_response(408, ""), ResponseFlags(), false,
                          "request_header_timeout");
      log(ctx);
    }
    co_return false;
  }
  // From here the request is bounded as a whole, not only per read.
  if (limits_->request_timeout.count() > 0)
    slot_.set_cap_at(ConnectionSlot::request_cap, started_ + limits_->request_timeout);
  if (limits_->max_stream_duration.count() > 0)
    slot_.set_cap_at(ConnectionSlot::stream_cap, started_ + limits_->max_stream_duration);
  if (auto refused = admit(*snap, head)) co_return co_await answer(ctx, std::move(*refused), false);
  if (access_logs_) {
    received_target_.assign(head.target);
    received_authority_.assign(head.authority);
    received_saved_ = true;
  }
  // A refused or failed upgrade closes: what follows its head is the
  // tunnel's, never a next request.
  bool keep_alive = p.keep_alive() && upgrade_.empty();
  prebody_.clear();
  prebody_pending_ = false;
  downstream_on_allow_.clear();
  continue_sent_ = false;
  if (snap->security) {
    SecurityPeer peer{client_ip_, tls_.sni, &tls_.peer_names};
    // Kept here: the answer's details view it until the request is logged.
    SecurityResult security = check_security(*snap->security, head, peer, worker_.wall_now());
    if (security.ext_authz && !security.refused)
      if (auto refused = co_await ext_authz(ctx, *snap, security))
        co_return co_await answer(ctx, std::move(*refused), keep_alive);
    if (security.refused) {
      Answer a{std::move(security.refused->response), {}, security.refused->details};
      co_return co_await answer(ctx, std::move(a), keep_alive);
    }
  }

  if (auto* hooks = worker_.hooks())
    if (auto r = hooks->on_request(ctx)) {
      Answer a{std::move(*r), {}, "hook"};
      co_return co_await answer(ctx, std::move(a), keep_alive);
    }
  const CompiledListener* listener = snap->listener(listener_);
  std::optional<Router::Selection> sel;
  if (listener && host_allowed_by_sni(*listener, tls_.sni, head.authority))
    sel = snap->routers[listener->router].match(head);
  if (!sel) {
    LocalReply nr{404, ErrorKind::no_route, "", {Flag::no_route_found}, "route_not_found"};
    bool ok = co_await send_error(ctx, std::move(nr), keep_alive);
    log(ctx);
    co_return ok;
  }
  const ResolvedRoute& rr =
      snap->route(listener->router, sel->virtual_host_index, sel->route_index);
  ctx.virtual_host = sel->virtual_host->name;
  ctx.route = sel->route->name;
  std::optional<policy::CorsDecision> cors;
  if (has_route_filters(*sel, rr))
    if (auto local = co_await route_filters(ctx, *sel, rr, cors))
      co_return co_await answer(ctx, std::move(*local), keep_alive);
  const ResolvedDestination* dest = pick_destination(rr);
  if (dest) destination_labels_ = dest->labels;
  if (snap->rate_limits) {
    // Envoy's local_ratelimit and ratelimit filters run before its router:
    // a limited request never counts against the upstream, redirects and
    // direct responses are limited too, and descriptors see the request
    // before the route's rewrite and header edits.
    RateLimitRequest limited_on{
        client_ip_, listener->config.router, sel->virtual_host->name, sel->route->name,
        dest ? std::string_view(snap->upstreams[dest->upstream].config.name) : std::string_view()};
    std::optional<RateLimitRefusal> limited =
        co_await check_rate_limits(worker_, snap->rate_limits, head, limited_on);
    if (limited) {
      Answer a{std::move(limited->response), limited->flags, limited->details};
      co_return co_await answer(ctx, std::move(a), keep_alive);
    }
  }
  if (auto local = route_actions(*sel, rr, head))
    co_return co_await answer(ctx, std::move(*local), keep_alive);
  if (!dest) {
    LocalReply uh = no_healthy_upstream();
    bool ok = co_await send_error(ctx, std::move(uh), keep_alive);
    log(ctx);
    co_return ok;
  }
  bool ok = co_await proxy(ctx, snap, *sel->route, rr, *dest, cors ? &*cors : nullptr);
  log(ctx);
  co_return ok&& keep_alive && !slot_.close_after_response && !worker_.draining();
}

template <typename Stream>
awaitable<bool> Session<Stream>::proxy(RequestContext& ctx,
                                       const std::shared_ptr<const Snapshot>& snap,
                                       const Route& route, const ResolvedRoute& rr,
                                       const ResolvedDestination& dest,
                                       const policy::CorsDecision* cors) {
  auto& p = request_parser_;
  RequestHead& head = ctx.request;
  Exchange x{ctx,
             snap,
             route,
             rr,
             dest,
             snap->upstreams[dest.upstream],
             route.destinations[static_cast<size_t>(&dest - rr.destinations.data())]};
  x.cors = cors;
  x.upgrade = !upgrade_.empty();
  // The body is kept for replay (retries, mirrors) while it fits.
  // A body read for the ext_authz check is still to be sent.
  x.body.present = !p.message_done() || prebody_pending_;
  x.body.complete = !x.body.present;
  x.want_replay = rr.policy.retry.attempts > 0 || !rr.mirrors.empty();
  x.body.replayable = x.want_replay;
  x.replay_limit = route.retries.max_replay_bytes;
  worker_.refresh_now();
  slot_.set_cap(prepare_grpc(head, rr));

  // Retries in flight count against the upstream's max_retries while they run.
  struct RetryToken {
    SessionHost& worker;
    const CompiledUpstream& upstream;
    bool held = false;
    void release() {
      if (held) retry_finished(worker.upstream(), upstream);
      held = false;
    }
    ~RetryToken() { release(); }
  } retry_token{worker_, x.up};
  policy::RetryState retry(rr.policy.retry);
  for (uint32_t attempt = 0;; ++attempt) {
    // The balancer's pick (a retry avoids endpoints already tried when
    // asked to), then the host's word on it.
    ctx.attempts = attempt;
    Peer peer = choose_peer(
        x, PickRequest{&head, client_ip_, retry.tried(), rr.policy.retry.ignore_previous_hosts},
        !x.head_ready);
    // The first attempt's answers may keep the connection: nothing was sent.
    bool keep = attempt == 0 && p.keep_alive() && !x.upgrade;
    if (peer.refused) {
      cleanup(x);
      ResponseFlags none;
      co_return co_await send_local(ctx, std::move(*peer.refused), none, keep, "hook");
    }
    if (peer.endpoint < 0) {
      cleanup(x);
      LocalReply uh = no_healthy_upstream();
      co_return co_await send_error(ctx, std::move(uh), keep);
    }
    int64_t endpoint = peer.endpoint;
    x.peer = peer.up;
    // Once: a retry or a free resend sends the same head.
    if (!x.head_ready) prepare_upstream_head(x, endpoint);
    retry.record(endpoint);
    ctx.attempts = attempt + 1;

    AttemptGuard guard{worker_, *x.peer, endpoint};
    Attempt a = co_await run_attempt(x, guard, endpoint, attempt);
    if (a.client_gone) {
      cleanup(x);
      ctx.response_flags.add(Flag::downstream_connection_termination);
      co_return false;
    }
    if (a.reply) co_return co_await finish(x, std::move(*a.reply));
    guard.finish(a.end.outcome, a.end.status);
    if (a.protocol_error) {
      LocalReply upe{502,
                     ErrorKind::upstream_protocol_error,
                     fmt::format("{}protocol error", kResetBody),
                     {Flag::upstream_protocol_error},
                     "upstream_reset_before_response_started{protocol_error}"};
      co_return co_await finish(x, std::move(upe));
    }
    retry_token.release();
    policy::RetryState::Verdict v = retry.after(attempt, a.end, x.body);
    if (v.next == policy::RetryState::Next::free_resend) {
      --attempt;
      retry.forget_last();
      continue;
    }
    // Envoy's flags for a retry that did not happen: UO over the retry
    // budget, URX when the policy's attempts are used up.
    ResponseFlags retry_flags;
    if (v.exhausted) retry_flags.add(Flag::upstream_retry_limit_exceeded);
    if (v.next == policy::RetryState::Next::retry) {
      if (admit_retry(worker_.upstream(), x.up)) {
        retry_token.held = true;
        x.conn.reset();  // an unread response: the connection is not reusable
        if (!co_await wait_for(rr.policy.retry.backoff(attempt + 1, worker_.rng())))
          co_return false;
        continue;
      }
      // Over the retry budget, this attempt's result stands.
      v.details = "retry_overflow";
      retry_flags = ResponseFlags{Flag::upstream_overflow};
    }
    if (!v.details.empty()) ctx.response_code_details = v.details;
    if (auto reply = attempt_failure_reply(a.end, retry_flags))
      co_return co_await finish(x, std::move(*reply));
    ctx.response_flags.add(retry_flags);
    break;
  }
  if (x.upgrade && response_parser_.response().status == 101) co_return co_await tunnel(x);
  co_return co_await relay_response(x);
}

template <typename Stream>
std::chrono::milliseconds Session<Stream>::prepare_grpc(RequestHead& head,
                                                        const ResolvedRoute& rr) {
  std::chrono::milliseconds timeout = rr.policy.timeout;
  if (grpc_ != http::GrpcKind::none) {
    // Istio sets Envoy's max_grpc_timeout to the route timeout (0 when the
    // route has none): the client's grpc-timeout is the deadline, capped by
    // the route timeout; "0" or an unparsable value counts as absent.
    if (auto v = head.headers.get("grpc-timeout"))
      if (auto t = http::parse_grpc_timeout(*v);
          t && t->count() > 0 && (timeout.count() == 0 || *t < timeout))
        timeout = *t;
    // The upstream is told the deadline it has, the per-try one when
    // shorter, as Envoy rewrites grpc-timeout.
    auto expected = timeout;
    auto per_try = rr.policy.retry.per_try_timeout;
    if (per_try.count() > 0 && (expected.count() == 0 || per_try < expected)) expected = per_try;
    if (expected.count() > 0) head.headers.set("grpc-timeout", http::format_grpc_timeout(expected));
  }
  if (web()) {
    // gRPC-Web goes upstream as gRPC (Envoy's grpc_web filter).
    std::string ct = http::grpc_content_type_from_web(*head.headers.get("content-type"));
    head.headers.set("content-type", std::move(ct));
    web_decoder_ = {};
    web_encoder_ = {};
  }
  return timeout;
}

template <typename Stream>
typename Session<Stream>::Peer Session<Stream>::choose_peer(Exchange& x, const PickRequest& request,
                                                            bool first) {
  Peer peer;
  size_t index = x.dest.upstream;
  PickResult pick = pick_endpoint(worker_.upstream(), x.up, x.up.sets[x.dest.set], request);
  if (first) x.set_cookie = std::move(pick.set_cookie);
  int64_t endpoint = pick.endpoint;
  if (auto* hooks = worker_.hooks()) {
    note_peer(x.ctx, x.up, endpoint);
    PeerChoice choice(*x.snap, index, endpoint);
    peer.refused = hooks->upstream_peer(x.ctx, choice);
    if (peer.refused) return peer;
    bool switched = choice.upstream_index() != index;
    index = choice.upstream_index();
    endpoint = choice.endpoint();
    if (endpoint < 0 && (switched || pick.endpoint >= 0)) {
      // Another upstream without an endpoint named: its own balancer picks,
      // over all of its endpoints (the route's subset is the route's).
      const CompiledUpstream& up = x.snap->upstreams[index];
      PickResult again =
          switched ? pick_endpoint(worker_.upstream(), up, up.sets[0],
                                   PickRequest{request.request, request.client_ip})
                   : pick_endpoint(worker_.upstream(), up, x.up.sets[x.dest.set], request);
      endpoint = again.endpoint;
      if (first) x.set_cookie = std::move(again.set_cookie);
    }
  }
  peer.up = &x.snap->upstreams[index];
  peer.endpoint = endpoint;
  note_peer(x.ctx, *peer.up, endpoint);
  return peer;
}

template <typename Stream>
void Session<Stream>::note_peer(RequestContext& ctx, const CompiledUpstream& up, int64_t endpoint) {
  ctx.upstream = up.config.name;
  ctx.endpoint = endpoint >= 0 ? std::string_view(up.endpoints[endpoint].key) : std::string_view();
}

template <typename Stream>
void Session<Stream>::prepare_upstream_head(Exchange& x, int64_t endpoint) {
  auto& p = request_parser_;
  RequestHead& head = x.ctx.request;
  // The upstream request head: hop-by-hop headers go, forwarding headers come.
  policy::apply_headers(x.dest_cfg.request_headers, head);
  worker_.make_request_id(x.request_id);
  // Trace headers (W3C, B3) with the gateway's span as the parent.
  propagate_trace(worker_, head, trace_, std::string_view(x.request_id, sizeof(x.request_id)));
  // A body hook may change the body's length: then it goes chunked.
  x.hook_request_body = x.body.present && worker_.body_hook(SessionHost::Body::request, x.ctx);
  // Base64 text decodes to another length: chunked too.
  x.chunked_up =
      p.chunked() || x.hook_request_body || (x.body.present && grpc_ == http::GrpcKind::web_text);
  x.is_head = head.method == "HEAD";
  x.fwd = http::Forwarding{.client_ip = client_ip_,
                           .proto = head.scheme,
                           .xfcc = tls_.xfcc,
                           .request_id = std::string_view(x.request_id, sizeof(x.request_id)),
                           .default_host = x.peer->endpoints[endpoint].key,
                           .chunked = x.chunked_up,
                           .upgrade = upgrade_};
  // Framing from the parsed message, whatever the headers now say.
  if (!x.chunked_up && p.has_content_length()) x.fwd.content_length = p.content_length();
  upstream_head_.clear();
  // We answer 100-continue ourselves (Envoy's default), so the upstream must not wait.
  x.expect_continue = http::append_forwarded_request_head(upstream_head_, head, x.fwd);
  x.head_ready = true;
}

template <typename Stream>
void Session<Stream>::cleanup(Exchange& x) {
  slot_.upstream = nullptr;
  slot_.clear_cap();
  if (x.uin.data) worker_.give_buffer(std::move(x.uin.data));
  // A body hook that grew a chunk a lot does not leave the connection holding it.
  if (chunk_.data.capacity() > 2 * Loop::kBufferSize) std::string().swap(chunk_.data);
}

template <typename Stream>
awaitable<bool> Session<Stream>::finish(Exchange& x, LocalReply reply) {
  cleanup(x);
  co_return co_await send_error(x.ctx, std::move(reply), false);
}

template <typename Stream>
awaitable<bool> Session<Stream>::send_error(RequestContext& ctx, LocalReply reply,
                                            bool keep_alive) {
  Response r = text_response(reply.status, std::move(reply.body));
  if (reply.overloaded) r.headers.add("x-envoy-overloaded", "true");
  if (auto* hooks = worker_.hooks()) {
    ProxyError error{reply.kind, reply.flags, reply.details, r};
    if (auto replaced = hooks->fail_to_proxy(ctx, error)) r = std::move(*replaced);
  }
  co_return co_await send_local(ctx, std::move(r), reply.flags, keep_alive, reply.details);
}

template <typename Stream>
std::optional<LocalReply> Session<Stream>::attempt_failure_reply(const policy::AttemptEnd& end,
                                                                 ResponseFlags flags) {
  // Envoy sets the retry flag (URX, UO) before the failure's own.
  switch (end.outcome) {
    case policy::AttemptOutcome::connect_failure:
      flags.add(Flag::upstream_connection_failure);
      return LocalReply{503, ErrorKind::connect_failure,
                        fmt::format("{}connection failure", kResetBody), flags,
                        "upstream_connect_failure"};
    case policy::AttemptOutcome::timeout:
      flags.add(Flag::upstream_request_timeout);
      return LocalReply{504, ErrorKind::upstream_timeout, "upstream request timeout", flags,
                        "upstream_per_try_timeout"};
    case policy::AttemptOutcome::reset:
      flags.add(Flag::upstream_connection_termination);
      return LocalReply{502, ErrorKind::upstream_reset,
                        fmt::format("{}{}", kResetBody,
                                    end.got_response ? "protocol error" : "connection termination"),
                        flags, "upstream_reset_before_response_started"};
    default:
      return std::nullopt;
  }
}

template <typename Stream>
awaitable<typename Session<Stream>::Attempt> Session<Stream>::run_attempt(Exchange& x,
                                                                          AttemptGuard& guard,
                                                                          int64_t endpoint,
                                                                          uint32_t attempt) {
  Attempt a;
  Lease lease;
  if (!lease_pooled(worker_.upstream(), slot_, *x.peer, endpoint, lease))
    lease = co_await lease_connection(worker_.upstream(), slot_, *x.peer, endpoint);
  a.end.reused = lease.reused;
  x.conn = std::move(lease.conn);
  switch (lease.status) {
    case Lease::Status::ok:
      break;
    case Lease::Status::overflow:
      a.reply = LocalReply{503,
                           ErrorKind::overflow,
                           std::string(kResetBody) + "overflow",
                           {Flag::upstream_overflow},
                           "upstream_overflow",
                           true};
      co_return a;
    case Lease::Status::cancelled:
      if (auto t = timeout_reply()) {
        a.reply = std::move(*t);
        co_return a;
      }
      guard.finish(policy::AttemptOutcome::downstream_cancelled, 0);
      a.reply = LocalReply{503,
                           ErrorKind::downstream_cancelled,
                           "",
                           {Flag::downstream_connection_termination},
                           "downstream_cancelled"};
      co_return a;
    case Lease::Status::connect_failure:
    case Lease::Status::connect_timeout:
      a.end.outcome = policy::AttemptOutcome::connect_failure;
      co_return a;
  }
  ++x.conn->requests;
  slot_.upstream = &x.conn->socket;
  if (x.expect_continue && !x.body.complete && attempt == 0 && !continue_sent_ &&
      !co_await write_down(kContinue)) {
    guard.finish(policy::AttemptOutcome::downstream_cancelled, 0);
    a.client_gone = true;
    co_return a;
  }
  SendResult sent = co_await send_request(x, guard);
  if (sent.client_gone || sent.reply) {
    a.client_gone = sent.client_gone;
    a.reply = std::move(sent.reply);
    co_return a;
  }
  a.end.nothing_sent = sent.nothing_sent;
  if (sent.ok && !x.mirrors_started && !x.rr.mirrors.empty() && !x.upgrade) {
    x.mirrors_started = true;
    if (x.body.replayable)
      start_mirrors(worker_, x.snap, x.rr, x.ctx.request, x.fwd, x.replay, client_ip_);
  }
  bool failed = !sent.ok || !co_await read_response_head(x, a);
  slot_.upstream = nullptr;
  slot_.clear_deadline();
  if (!failed) co_return a;
  // An HTTP/2 stream the upstream refused unprocessed goes again for free,
  // like a request that provably never left.
  if (x.conn->h2 && x.conn->h2->refused)
    a.end.reused = a.end.nothing_sent = a.end.refused_stream = true;
  x.conn.reset();
  if (auto t = timeout_reply()) {
    a.reply = std::move(*t);
    co_return a;
  }
  a.end.outcome = slot_.fired == Timeout::upstream_response ? policy::AttemptOutcome::timeout
                                                            : policy::AttemptOutcome::reset;
  co_return a;
}

template <typename Stream>
awaitable<typename Session<Stream>::SendResult> Session<Stream>::send_request(Exchange& x,
                                                                              AttemptGuard& guard) {
  auto& p = request_parser_;
  SendResult r;
  UpstreamConnection& conn = *x.conn;
  // Head, then the body: streamed from the client the first time (kept for
  // replay while it fits), from the replay buffer after that.
  slot_.fired = Timeout::none;
  slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
  {
    auto [ec, n] = co_await write_upstream(conn, asio::buffer(upstream_head_));
    r.ok = !ec;
    r.nothing_sent = ec && n == 0;
  }
  auto send_body = [&](std::string_view body) -> awaitable<bool> {
    slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
    asio::error_code ec;
    if (x.chunked_up) {
      std::string chunk_head;
      http::append_chunk_header(chunk_head, body.size());
      std::array<asio::const_buffer, 3> bufs = {asio::buffer(chunk_head), asio::buffer(body),
                                                asio::buffer(http::kChunkEnd)};
      std::tie(ec, std::ignore) = co_await write_upstream(conn, bufs);
    } else {
      std::tie(ec, std::ignore) = co_await write_upstream(conn, asio::buffer(body));
    }
    co_return !ec;
  };
  if (r.ok && x.body.present && x.body.complete && !x.replay.empty())
    r.ok = co_await send_body(x.replay);
  while (r.ok && !x.body.complete) {
    // What was read for the ext_authz check goes first, as one span.
    std::string_view body;
    if (prebody_pending_) {
      prebody_pending_ = false;
      body = prebody_;
    }
    size_t n = 0;
    if (body.empty()) {
      n = p.feed(in_.ptr(), in_.size());
      in_.consume(n);
      body = p.body();
    }
    if (p.error() != http::ParseError::none) {
      r.reply = LocalReply{400, ErrorKind::downstream_protocol_error, "", {}, "http1.codec_error"};
      co_return r;
    }
    if (body.empty() && p.message_done()) {
      if (grpc_ == http::GrpcKind::web_text && !web_decoder_.finish()) {
        r.reply = bad_web_text();
        co_return r;
      }
      x.body.complete = true;
      slot_.clear_cap(ConnectionSlot::request_cap);
      // The hook's last word: bytes it adds at the end go like any other.
      if (x.hook_request_body) {
        std::string_view tail = run_body_hook(SessionHost::Body::request, x.ctx, {}, true);
        keep_for_replay(x, tail);
        if (!tail.empty() && !co_await send_body(tail)) r.ok = false;
      }
      break;
    }
    if (body.empty()) {
      if (n > 0) continue;
      slot_.fired = Timeout::none;
      slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
      if (!co_await fill(in_, stream_, false)) {
        // The client stopped sending: a timeout is answered; a client that
        // went away says nothing about the upstream (no outlier strike),
        // and there is nobody to answer.
        guard.finish(policy::AttemptOutcome::downstream_cancelled, 0);
        if (auto t = timeout_reply())
          r.reply = std::move(*t);
        else
          r.client_gone = true;
        co_return r;
      }
      continue;
    }
    x.body.consumed = true;
    x.ctx.bytes_received += body.size();
    // Replays and mirrors resend what the hook made of the body.
    if (x.hook_request_body) body = run_body_hook(SessionHost::Body::request, x.ctx, body, false);
    if (grpc_ == http::GrpcKind::web_text) {
      web_in_.clear();
      if (!web_decoder_.feed(body, web_in_)) {
        r.reply = bad_web_text();
        co_return r;
      }
      body = web_in_;
    }
    keep_for_replay(x, body);
    // An empty chunk would end a chunked body.
    if (!body.empty() && !co_await send_body(body)) r.ok = false;
  }
  if (r.ok && x.body.present && x.chunked_up) {
    // The client's trailers (gRPC metadata) go on in the last chunk.
    last_chunk_.clear();
    http::append_last_chunk(last_chunk_, p.trailers());
    auto [ec, n] = co_await write_upstream(conn, asio::buffer(last_chunk_));
    r.ok = !ec;
  }
  if (r.ok && x.request_sent_at == Clock::time_point{}) x.request_sent_at = worker_.clock_now();
  co_return r;
}

template <typename Stream>
awaitable<bool> Session<Stream>::read_response_head(Exchange& x, Attempt& a) {
  // Skips 1xx interim responses; false when the attempt failed.
  http::Parser& resp = response_parser_;
  Window& uin = x.uin;
  resp.reset();
  resp.set_limits({limits_->max_response_header_bytes, limits_->max_response_headers});
  resp.expect_no_body(x.is_head);
  resp.expect_upgrade(x.upgrade);
  if (uin.data) uin.begin = uin.end = 0;
  slot_.fired = Timeout::none;
  const policy::CompiledRetry& retry = x.rr.policy.retry;
  auto wait = retry.per_try_timeout.count() > 0 ? retry.per_try_timeout
                                                : limits_->upstream_response_timeout;
  if (wait.count() > 0)
    slot_.set_deadline(Timeout::upstream_response, wait);
  else
    slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
  // A 101 ends the head only when an upgrade was asked for (else the parser refused it).
  while (!(resp.head_done() && (resp.response().status >= 200 || resp.response().status == 101))) {
    if (resp.head_done()) {  // a 1xx: finish it and expect the real one
      if (!resp.message_done()) uin.consume(resp.feed(uin.ptr(), uin.size()));
      resp.next_message();
      resp.expect_no_body(x.is_head);
      continue;
    }
    if (uin.size() == 0 && !co_await fill_up(uin, *x.conn)) co_return false;
    a.end.got_response = true;
    uin.consume(resp.feed(uin.ptr(), uin.size()));
    if (resp.error() != http::ParseError::none) {
      a.protocol_error = true;
      co_return false;
    }
  }
  a.end.status = resp.response().status;
  if (auto v = resp.response().headers.get("grpc-status"))
    a.end.grpc_status = http::parse_grpc_status(*v);
  co_return true;
}

template <typename Stream>
bool Session<Stream>::prepare_response_head(Exchange& x) {
  // Edited in place: the parser keeps the vector's capacity for the next one.
  http::Parser& resp = response_parser_;
  ResponseHead& rh = resp.response();
  uint16_t status = rh.status;
  http::strip_hop_by_hop(rh.headers);
  // Envoy's, replacing any from the upstream; before the route's header
  // edits, so a route can remove it.
  if (x.request_sent_at != Clock::time_point{}) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(worker_.clock_now() -
                                                                    x.request_sent_at);
    rh.headers.set("x-envoy-upstream-service-time", std::to_string(ms.count()));
  }
  policy::apply_headers(x.dest_cfg.response_headers, rh.headers);
  policy::apply_headers(x.route.response_headers, rh.headers);
  if (x.cors)
    for (const auto& [name, value] : x.cors->response_headers) rh.headers.set(name, value);
  if (!x.set_cookie.empty()) rh.headers.add("set-cookie", x.set_cookie);
  for (const auto& [name, value] : downstream_on_allow_.entries()) rh.headers.set(name, value);
  bool bodyless = x.is_head || status == 204 || status == 304;
  // A body hook may change the body's length: then it is not sent with one.
  x.hook_response_body = !bodyless && worker_.body_hook(SessionHost::Body::response, x.ctx);
  // gRPC-Web: a gRPC response gets its trailers as the body's last frame,
  // and maybe base64: another length.
  web_response_ = false;
  if (web() && !bodyless)
    if (auto ct = rh.headers.get("content-type");
        ct && http::grpc_kind(*ct) == http::GrpcKind::grpc) {
      web_response_ = true;
      rh.headers.set("content-type", std::string(web_content_type()));
    }
  if (grpc_ != http::GrpcKind::none) note_grpc_status(rh.headers);
  bool sized = resp.has_content_length() && !x.hook_response_body && !web_response_;
  // Framing comes from the parsed response, never from what the headers say
  // after filtering and header operations.
  if (sized && status != 204)
    rh.headers.set("content-length", std::to_string(resp.content_length()));
  else
    rh.headers.remove("content-length");
  // After an upgrade request that got no 101, the client's next bytes may
  // be the tunnel's it sent early, not a request: the connection closes.
  bool keep_alive = request_parser_.keep_alive() && request_parser_.message_done() &&
                    !slot_.close_after_response && !worker_.draining() && !x.upgrade;
  x.chunked_down = false;
  if (!bodyless && !sized) {
    if (x.ctx.request.version_minor >= 1) {
      x.chunked_down = true;
      rh.headers.add("transfer-encoding", "chunked");
    } else {
      keep_alive = false;  // HTTP/1.0 client: the body ends at close
    }
  }
  if (!keep_alive) rh.headers.set("connection", "close");
  x.ctx.response_status = status;
  if (auto* hooks = worker_.hooks()) hooks->on_response_headers(x.ctx, rh);
  downstream_head_.clear();
  http::append_response_head(downstream_head_, rh);
  return keep_alive;
}

template <typename Stream>
awaitable<bool> Session<Stream>::relay_response(Exchange& x) {
  http::Parser& resp = response_parser_;
  Window& uin = x.uin;
  RequestContext& ctx = x.ctx;
  bool upstream_keep_alive = resp.keep_alive();
  bool down_keep_alive = prepare_response_head(x);
  // The first body span usually came with the head: send them together.
  bool ok = true;
  bool first_write = true;
  std::string chunk_head;
  slot_.upstream = &x.conn->socket;
  while (ok) {
    std::string_view body;
    if (!resp.message_done()) {
      size_t n = resp.feed(uin.ptr(), uin.size());
      uin.consume(n);
      if (resp.error() != http::ParseError::none) {
        ok = false;
        break;
      }
      body = resp.body();
      if (body.empty() && !resp.message_done() && !first_write) {
        if (n > 0) continue;
        slot_.fired = Timeout::none;
        slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
        if (!co_await fill_up(uin, *x.conn)) {
          if (slot_.fired == Timeout::none && resp.finish()) continue;  // close-delimited end
          ok = false;  // truncated or timed out: the client must see the close
          if (auto t = timeout_reply()) ctx.response_flags.add(t->flags);
          break;
        }
        continue;
      }
    }
    bool done = resp.message_done();
    // The relay waits for the hook: backpressure holds, nothing piles up.
    if (x.hook_response_body && (!body.empty() || done))
      body = run_body_hook(SessionHost::Body::response, ctx, body, done);
    if (done && grpc_ != http::GrpcKind::none) note_grpc_status(resp.trailers());
    if (web_response_) body = encode_web(body, done, resp.trailers());
    std::array<asio::const_buffer, 5> bufs;
    size_t nbufs = 0;
    if (first_write) bufs[nbufs++] = asio::buffer(downstream_head_);
    if (!body.empty()) {
      ctx.bytes_sent += body.size();
      if (x.chunked_down) {
        chunk_head.clear();
        http::append_chunk_header(chunk_head, body.size());
        bufs[nbufs++] = asio::buffer(chunk_head);
        bufs[nbufs++] = asio::buffer(body);
        bufs[nbufs++] = asio::buffer(http::kChunkEnd);
      } else {
        bufs[nbufs++] = asio::buffer(body);
      }
    }
    if (done && x.chunked_down) {
      // Trailers (gRPC's status) go down in the last chunk, unless gRPC-Web
      // carried them in the body.
      last_chunk_.clear();
      if (web_response_)
        last_chunk_ = http::kLastChunk;
      else
        http::append_last_chunk(last_chunk_, resp.trailers());
      bufs[nbufs++] = asio::buffer(last_chunk_);
    }
    if (nbufs > 0 &&
        !co_await write_down(std::span<const asio::const_buffer>(bufs.data(), nbufs))) {
      ok = false;
      ctx.response_flags.add(Flag::downstream_connection_termination);
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
                  !has_pending_input(*x.conn);
  slot_.upstream = nullptr;
  release_connection(worker_.upstream(), *x.peer, std::move(x.conn), reusable);
  cleanup(x);
  co_return ok&& down_keep_alive;
}

template <typename Stream>
awaitable<bool> Session<Stream>::tunnel(Exchange& x) {
  ResponseHead& rh = response_parser_.response();
  RequestContext& ctx = x.ctx;
  Window& uin = x.uin;
  // The 101 must switch to the protocol asked for; any other answer leaves
  // the connection in no known state.
  std::string protocol;
  if (rh.headers.count("upgrade") == 1)
    protocol = http::to_lower(http::trim(*rh.headers.get("upgrade")));
  if (protocol != upgrade_) {
    release_connection(worker_.upstream(), *x.peer, std::move(x.conn), false);
    LocalReply upe{502,
                   ErrorKind::upstream_protocol_error,
                   fmt::format("{}protocol error", kResetBody),
                   {Flag::upstream_protocol_error},
                   "upstream_reset_before_response_started{protocol_error}"};
    co_return co_await finish(x, std::move(upe));
  }
  http::strip_hop_by_hop(rh.headers);
  rh.headers.remove("content-length");
  policy::apply_headers(x.dest_cfg.response_headers, rh.headers);
  policy::apply_headers(x.route.response_headers, rh.headers);
  for (const auto& [name, value] : downstream_on_allow_.entries()) rh.headers.set(name, value);
  rh.headers.set("connection", "upgrade");
  rh.headers.set("upgrade", protocol);
  // An HTTP/2 client got a 200 to its extended CONNECT (RFC 8441): logs and
  // metrics say what the client saw, as Envoy's do.
  ctx.response_status = origin_ ? 200 : 101;
  if (auto* hooks = worker_.hooks()) hooks->on_response_headers(ctx, rh);
  downstream_head_.clear();
  http::append_response_head(downstream_head_, rh);
  // The tunnel outlives the route timeout and the request timeout (Envoy
  // turns both off for upgrades); the max stream duration still bounds it.
  slot_.clear_cap(ConnectionSlot::route_cap);
  slot_.clear_cap(ConnectionSlot::request_cap);
  // What the upstream sent after its 101 goes down with it; what the client
  // sent early (held while the upgrade was undecided) goes up now.
  std::array<asio::const_buffer, 2> down{asio::buffer(downstream_head_),
                                         asio::buffer(uin.ptr(), uin.size())};
  bool ok = co_await write_down(std::span<const asio::const_buffer>(down));
  ctx.bytes_sent += uin.size();
  if (ok && in_.size() > 0) {
    slot_.set_deadline(Timeout::io, limits_->stream_idle_timeout);
    asio::const_buffer early(in_.ptr(), in_.size());
    asio::error_code ec;
    size_t n = 0;
    std::tie(ec, n) = co_await write_upstream(*x.conn, early);
    ok = !ec;
    ctx.bytes_received += n;
    in_.consume(in_.size());
  }
  if (ok) {
    slot_.fired = Timeout::none;
    slot_.upstream = &x.conn->socket;
    TunnelBytes bytes =
        co_await splice(worker_, stream_, *x.conn, slot_, limits_->stream_idle_timeout);
    ctx.bytes_received += bytes.received;
    ctx.bytes_sent += bytes.sent;
    if (auto t = timeout_reply()) {
      ctx.response_flags.add(t->flags);
      ctx.response_code_details = t->details;
    }
  }
  slot_.upstream = nullptr;
  // Never back to the pool: the connection spoke another protocol.
  release_connection(worker_.upstream(), *x.peer, std::move(x.conn), false);
  cleanup(x);
  co_return false;
}

template <typename Stream>
std::string_view Session<Stream>::run_body_hook(SessionHost::Body which, RequestContext& ctx,
                                                std::string_view bytes, bool end_of_stream) {
  chunk_.data.assign(bytes.data(), bytes.size());
  chunk_.end_of_stream = end_of_stream;
  Hooks& hooks = *worker_.hooks();
  if (which == SessionHost::Body::request)
    hooks.on_request_body(ctx, chunk_);
  else
    hooks.on_response_body(ctx, chunk_);
  return chunk_.data;
}

}  // namespace

namespace {
// The session owns itself for the life of its coroutine.
template <typename Stream>
void spawn_session(SessionHost& worker, Stream stream, const std::string& listener, uint16_t port,
                   tls::DownstreamTls tls, TimePoint idle_since = {}) {
  using S = Session<Stream>;
  auto session = std::make_unique<S>(worker, std::move(stream), listener, port, std::move(tls));
  session->set_idle_since(idle_since);
  S* raw = session.get();
  asio::co_spawn(worker.context(), raw->run(),
                 [s = std::move(session)](std::exception_ptr) mutable { s.reset(); });
}
}  // namespace

void start_session(SessionHost& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port, TimePoint idle_since) {
  spawn_session(worker, std::move(socket), listener, port, tls::DownstreamTls{}, idle_since);
}

void start_fail_count_session(SessionHost& worker, FailCountStream stream,
                              const std::string& listener, uint16_t port) {
  spawn_session(worker, std::move(stream), listener, port, tls::DownstreamTls{});
}

void start_tls_session(SessionHost& worker, asio::ssl::stream<asio::ip::tcp::socket> stream,
                       const std::string& listener, uint16_t port, tls::DownstreamTls tls,
                       TimePoint idle_since) {
  spawn_session(worker, std::move(stream), listener, port, std::move(tls), idle_since);
}

void start_session(SessionHost& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port, std::string_view preread) {
  using S = Session<asio::ip::tcp::socket>;
  auto session =
      std::make_unique<S>(worker, std::move(socket), listener, port, tls::DownstreamTls{});
  session->set_preread(preread);
  S* raw = session.get();
  asio::co_spawn(worker.context(), raw->run(),
                 [s = std::move(session)](std::exception_ptr) mutable { s.reset(); });
}

void start_stream_session(SessionHost& worker, asio::ip::tcp::socket pipe,
                          const std::string& listener, uint16_t port, tls::DownstreamTls tls,
                          StreamOrigin origin) {
  using S = Session<asio::ip::tcp::socket>;
  auto session = std::make_unique<S>(worker, std::move(pipe), listener, port, std::move(tls));
  session->set_origin(std::move(origin));
  S* raw = session.get();
  asio::co_spawn(worker.context(), raw->run(),
                 [s = std::move(session)](std::exception_ptr) mutable { s.reset(); });
}

}  // namespace sluice
