#include "upstream/http_get.hpp"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/ssl/error.hpp>

#include <array>

#include "http/parser.hpp"
#include "http/tokens.hpp"
#include "tls/client.hpp"
#include "upstream/compiled.hpp"
#include "upstream/connect.hpp"
#include "upstream/context.hpp"

namespace sluice {

namespace {

// A document server's head is small; anything longer fails the fetch.
constexpr size_t kMaxHeadBytes = 16 * 1024;
constexpr size_t kMaxHeaders = 64;

HttpGetResult failure(std::string error) {
  HttpGetResult r;
  r.error = std::move(error);
  return r;
}

}  // namespace

HttpGet::HttpGet(UpstreamContext& ctx) : ctx_(ctx), resolver_(ctx.context()) {}

HttpGet::~HttpGet() {
  // A frame destroyed while suspended (gateway teardown) leaves the loop's
  // list of slots consistent.
  if (attached_) ctx_.loop().detach(&slot_);
}

void HttpGet::cancel() {
  cancelled_ = true;
  resolver_.cancel();
  slot_.interrupt();
}

asio::awaitable<HttpGetResult> HttpGet::run(std::shared_ptr<HttpGet> self, HttpGetRequest request) {
  HttpGet* raw = self.get();
  co_return co_await raw->perform(std::move(self), std::move(request));
}

asio::awaitable<HttpGetResult> HttpGet::perform(std::shared_ptr<HttpGet> self,
                                                HttpGetRequest request) {
  if (cancelled_) co_return failure("cancelled");
  Loop& loop = ctx_.loop();
  // The slot makes the worker enforce the deadline (and see the exchange
  // when it drains or force-closes), as for mirrors and health probes.
  loop.attach(&slot_);
  attached_ = true;
  slot_.idle = false;
  TimePoint due = loop.refresh_now() + request.timeout;
  slot_.set_cap_at(ConnectionSlot::route_cap, due);

  std::vector<asio::ip::tcp::endpoint> addresses;
  asio::error_code ec;
  auto ip = asio::ip::make_address(request.host, ec);
  if (request.connect_to) {
    addresses.push_back(*request.connect_to);
  } else if (!ec) {
    addresses.emplace_back(ip, request.port);
  } else {
    // asio runs getaddrinfo on a thread of its own, so the loop never
    // blocks; the lookup is bounded by the system resolver's own timeouts
    // (resolv.conf), and one that ends past the deadline fails the fetch.
    // IPv4, Istio's default lookup family (as DnsEndpointSource).
    auto [rec, results] = co_await resolver_.async_resolve(asio::ip::tcp::v4(), request.host,
                                                           std::to_string(request.port), kNoThrow);
    ec = rec;
    for (const auto& r : results) addresses.push_back(r.endpoint());
  }
  HttpGetResult result;
  if (cancelled_) {
    result = failure("cancelled");
  } else if (loop.clock_now() >= due) {
    result = failure(
        fmt::format("timed out after {} ms looking up {}", request.timeout.count(), request.host));
  } else if (addresses.empty()) {
    result = failure(fmt::format("cannot resolve {}: {}", request.host, ec.message()));
  } else {
    // Each address in turn, all within the one deadline.
    for (const auto& address : addresses) {
      result = co_await exchange(request, address);
      if (result.ok || slot_.fired != ConnectionSlot::Timeout::none || cancelled_) break;
    }
    if (!result.ok && slot_.fired != ConnectionSlot::Timeout::none)
      result = failure(fmt::format("timed out after {} ms", request.timeout.count()));
    if (!result.ok && cancelled_) result = failure("cancelled");
  }
  slot_.clear_caps();
  slot_.fired = ConnectionSlot::Timeout::none;
  attached_ = false;
  loop.detach(&slot_);
  co_return result;
}

asio::awaitable<HttpGetResult> HttpGet::exchange(const HttpGetRequest& request,
                                                 const asio::ip::tcp::endpoint& address) {
  // An upstream of one endpoint, for the connection layer only (no pool, no
  // circuit-breaker state: the connection is not counted).
  CompiledUpstream upstream;
  upstream.config.name = "fetch " + request.authority;
  upstream.config.pool.connect_timeout = request.timeout;
  upstream.tls = request.tls;
  CompiledEndpoint endpoint;
  endpoint.address = address;
  endpoint.key = http::join_host_port(address.address().to_string(), address.port());
  endpoint.pool_key = upstream.config.name;
  upstream.endpoints.push_back(endpoint);

  Lease lease = co_await open_connection(ctx_, slot_, upstream, 0, {.limited = false});
  if (!lease.conn)
    co_return failure(fmt::format("cannot connect to {}{}", endpoint.key,
                                  request.tls ? " (TCP or TLS handshake failed)" : ""));
  UpstreamConnection& c = *lease.conn;
  slot_.upstream = &c.socket;
  std::string wire;
  if (request.content_type.empty()) {
    wire = fmt::format(
        "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: sluice\r\naccept: application/json\r\n"
        "connection: close\r\n\r\n",
        request.target, request.authority);
  } else {
    wire = fmt::format(
        "POST {} HTTP/1.1\r\nhost: {}\r\nuser-agent: sluice\r\ncontent-type: {}\r\n"
        "content-length: {}\r\nconnection: close\r\n\r\n",
        request.target, request.authority, request.content_type, request.body.size());
    wire += request.body;
  }
  auto [ec, n] = co_await write_upstream(c, asio::buffer(wire));
  http::Parser parser(
      http::Parser::Kind::response,
      http::ParserLimits{.max_header_bytes = kMaxHeadBytes, .max_headers = kMaxHeaders});
  HttpGetResult result;
  std::array<char, 4096> buf;
  bool closed = false;
  while (!ec && !parser.message_done() && result.error.empty()) {
    std::tie(ec, n) = co_await read_upstream(c, asio::buffer(buf));
    if (ec || n == 0) {
      // The peer's close completes a close-delimited body; a cancelled read
      // (the deadline) completes nothing.
      closed = !ec || ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
      break;
    }
    // One parser event per feed; a feed of nothing left still completes a
    // message whose last body byte came in the previous one. Bounded: each
    // round either consumes bytes or reports an event.
    size_t off = 0;
    for (size_t round = 0; result.error.empty() && !parser.message_done(); ++round) {
      size_t used = parser.feed(buf.data() + off, n - off);
      off += used;
      bool body = !parser.body().empty();
      if (parser.error() != http::ParseError::none) {
        result.error = fmt::format("invalid response: {}", parser.error_reason());
      } else if (parser.head_done() && parser.response().status < 200) {
        if (parser.message_done()) parser.next_message();  // 1xx: the final answer follows
      } else if (parser.head_done() && parser.has_content_length() &&
                 parser.content_length() > request.max_body_bytes) {
        result.error = fmt::format("response body of {} bytes is over the {} byte limit",
                                   parser.content_length(), request.max_body_bytes);
      } else if (result.body.size() + parser.body().size() > request.max_body_bytes) {
        result.error =
            fmt::format("response body is over the {} byte limit", request.max_body_bytes);
      } else {
        result.body.append(parser.body());
      }
      if (used == 0 && !body && !parser.message_done()) {
        if (off == n) break;                                   // needs more input
        if (round > n + 8) result.error = "invalid response";  // never loop on a stuck parser
      }
    }
  }
  slot_.upstream = nullptr;
  lease.conn.reset();
  if (!result.error.empty()) co_return result;
  if (!parser.message_done() && closed && parser.head_done()) parser.finish();
  if (!parser.message_done())
    co_return failure(parser.head_done() ? "response cut short"
                                         : "connection closed before a response");
  result.ok = true;
  result.status = parser.response().status;
  co_return result;
}

}  // namespace sluice
