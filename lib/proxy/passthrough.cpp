#include "proxy/passthrough.hpp"

#include <fmt/format.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "tls/server.hpp"
#include "upstream/cluster.hpp"
#include "upstream/connect.hpp"

namespace sluice {

namespace {

using asio::awaitable;
using asio::ip::tcp;
using Timeout = ConnectionSlot::Timeout;
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

void close_socket(tcp::socket& s) {
  asio::error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}

// Copies one direction until EOF (propagated as a half-close) or an error
// (which closes both sides, ending the other direction too).
awaitable<void> pump(SessionHost& worker, tcp::socket& from, tcp::socket& to, ConnectionSlot& slot,
                     std::chrono::milliseconds idle) {
  auto buf = worker.take_buffer();
  for (;;) {
    auto [ec, n] =
        co_await from.async_read_some(asio::buffer(buf.get(), Loop::kBufferSize), nothrow);
    if (ec == asio::error::eof) {
      asio::error_code ignored;
      to.shutdown(tcp::socket::shutdown_send, ignored);
      break;
    }
    if (!ec) {
      slot.set_deadline(Timeout::idle, idle);
      std::tie(ec, std::ignore) =
          co_await asio::async_write(to, asio::buffer(buf.get(), n), nothrow);
      slot.set_deadline(Timeout::idle, idle);
    }
    if (ec) {
      close_socket(from);
      close_socket(to);
      break;
    }
  }
  worker.give_buffer(std::move(buf));
}

}  // namespace

awaitable<void> relay(SessionHost& worker, tcp::socket& down, const Snapshot& snap,
                      const tls::PassthroughTarget& target, std::string_view sni,
                      std::vector<uint8_t> hello, ConnectionSlot& slot,
                      const std::string& listener) {
  using namespace asio::experimental::awaitable_operators;
  const CompiledUpstream& up = snap.upstreams[target.upstream];
  asio::error_code ec;
  auto remote = down.remote_endpoint(ec);
  std::string client_ip = ec ? std::string() : remote.address().to_string();
  RequestHead head;
  head.authority = std::string(sni);
  PickRequest request{&head, client_ip, {}, false};
  PickResult pick = pick_endpoint(worker.upstream(), up, up.sets[target.set], request);
  if (pick.endpoint < 0) {
    worker.log(LogLevel::warning, "listener {}: passthrough for \"{}\": no healthy endpoint in {}",
               listener, sni, up.config.name);
    close_socket(down);
    co_return;
  }
  // The one upstream-connection layer, raw (the client's TLS goes through):
  // counted in the upstream's and endpoint's open connections within
  // max_connections, like a pooled one.
  Lease lease = co_await open_connection(worker.upstream(), slot, up, pick.endpoint,
                                         {.originate_tls = false});
  if (!lease.conn) {
    worker.log(LogLevel::warning, "listener {}: passthrough for \"{}\": {} to {}", listener, sni,
               lease.status == Lease::Status::overflow ? "at max_connections" : "connect failed",
               up.endpoints[pick.endpoint].key);
    close_socket(down);
    co_return;
  }
  std::unique_ptr<UpstreamConnection> conn = std::move(lease.conn);
  tcp::socket& upstream = conn->socket;
  slot.upstream = &upstream;
  slot.idle = false;  // draining waits for it (bounded by the drain timeout)
  auto idle = snap.limits.idle_timeout;
  slot.set_deadline(Timeout::idle, idle);
  // What read_client_hello took off the socket goes first.
  std::tie(ec, std::ignore) = co_await asio::async_write(upstream, asio::buffer(hello), nothrow);
  std::vector<uint8_t>().swap(hello);
  if (!ec) {
    slot.set_deadline(Timeout::idle, idle);
    co_await (pump(worker, down, upstream, slot, idle) && pump(worker, upstream, down, slot, idle));
  }
  slot.upstream = nullptr;
  close_socket(upstream);
  close_socket(down);
  conn.reset();
  // A place under max_connections is free for a waiting request.
  worker.upstream().balancer().wake_one();
}

}  // namespace sluice
