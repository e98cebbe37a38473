#include "proxy/ext_authz.hpp"

#include "http/parser.hpp"
#include "upstream/cluster.hpp"
#include "upstream/connect.hpp"

namespace sluice {

namespace {

using security::ExtAuthzOutcome;

// Reads one whole response from `conn` into `parser` and `body`; false when
// the connection ended or failed first, or the answer broke a limit.
asio::awaitable<bool> read_check_response(UpstreamConnection& conn, http::Parser& parser,
                                          IoBuffer& buffer, size_t& left, std::string& body,
                                          bool head_request) {
  const char* data = buffer.get();
  size_t begin = 0, end = 0;
  for (;;) {
    if (parser.message_done()) {
      if (parser.response().status >= 200) break;
      parser.next_message();  // a 1xx: the real answer follows
      parser.expect_no_body(head_request);
      continue;
    }
    // One event per feed; a head or the end may come with no new byte.
    size_t used = parser.feed(data + begin, end - begin);
    begin += used;
    if (parser.error() != http::ParseError::none) co_return false;
    if (std::string_view b = parser.body(); !b.empty()) {
      body.append(b);
      if (body.size() > security::kMaxCheckResponseBody) co_return false;
      continue;
    }
    if (parser.message_done() || used > 0) continue;
    auto [ec, n] = co_await read_upstream(conn, asio::buffer(buffer.get(), Loop::kBufferSize));
    if (ec || n == 0) {
      // Only a close-delimited body may end at the close.
      bool closed = !ec || ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
      if (!closed || !parser.head_done() || !parser.finish()) co_return false;
      continue;
    }
    begin = 0;
    end = n;
  }
  left = end - begin;
  co_return true;
}

}  // namespace

asio::awaitable<ExtAuthzOutcome> call_ext_authz(SessionHost& worker, ConnectionSlot& slot,
                                                const Snapshot& snap,
                                                const security::CompiledExtAuthz& provider,
                                                const RequestHead& head, std::string_view client_ip,
                                                std::string wire) {
  ExtAuthzOutcome failed;  // verdict error
  const CompiledUpstream& up = snap.upstreams[provider.upstream];
  int64_t endpoint =
      pick_endpoint(worker.upstream(), up, up.sets[0], PickRequest{&head, client_ip}).endpoint;
  if (endpoint < 0) co_return failed;
  worker.refresh_now();
  slot.fired = ConnectionSlot::Timeout::none;
  // One bound for connecting, sending and reading the answer.
  slot.set_cap(provider.config.timeout);
  http::Parser parser(http::Parser::Kind::response,
                      {snap.limits.max_response_header_bytes, snap.limits.max_response_headers});
  bool head_request = head.method == "HEAD";
  std::string body;
  bool ok = false;
  // A pooled connection the provider closed while idle fails before any
  // answer byte: the check is sent again on another (a bounded number of
  // times), as the session resends a stale pooled connection's request.
  for (int tries = 0; !ok && tries < 3; ++tries) {
    Lease lease = co_await lease_connection(worker.upstream(), slot, up, endpoint);
    if (!lease.conn) break;
    std::unique_ptr<UpstreamConnection> conn = std::move(lease.conn);
    ++conn->requests;
    slot.upstream = &conn->socket;
    size_t left = 0;
    parser.reset();
    parser.expect_no_body(head_request);
    body.clear();
    auto [ec, n] = co_await write_upstream(*conn, asio::buffer(wire));
    if (!ec) {
      IoBuffer buffer = worker.take_buffer();
      ok = co_await read_check_response(*conn, parser, buffer, left, body, head_request);
      worker.give_buffer(std::move(buffer));
    }
    slot.upstream = nullptr;
    // Pooled again only after a clean, whole exchange with nothing after it.
    bool reusable = ok && parser.keep_alive() && left == 0 && !has_pending_input(*conn);
    release_connection(worker.upstream(), up, std::move(conn), reusable);
    bool stale = lease.reused && parser.idle() && slot.fired == ConnectionSlot::Timeout::none;
    if (!ok && !stale) break;
  }
  slot.clear_cap();
  if (!ok) co_return failed;
  co_return security::interpret_check_response(provider, parser.response(), std::move(body));
}

}  // namespace sluice
