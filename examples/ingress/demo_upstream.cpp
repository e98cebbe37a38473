// The demo's upstreams: read a request head (and skip a Content-Length body),
// answer with a fixed body, keep the connection alive. Enough for curl and the
// gateway's pool; not a general HTTP server.

#include "demo_upstream.hpp"

#include "http/tokens.hpp"

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <charconv>
#include <string>

namespace sluice::demo {
namespace {

asio::awaitable<void> session(asio::ip::tcp::socket socket, std::string name) {
  std::string buffer;
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read_until(socket, asio::dynamic_buffer(buffer), "\r\n\r\n",
                                        asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    std::string head = buffer.substr(0, n);
    buffer.erase(0, n);
    std::string lower = http::to_lower(head);
    size_t body = 0;
    if (auto at = lower.find("\r\ncontent-length:"); at != std::string::npos) {
      size_t start = lower.find_first_not_of(' ', at + 17);
      std::from_chars(lower.data() + start, lower.data() + lower.size(), body);
    }
    bool close = lower.find("\r\nconnection: close") != std::string::npos;
    while (buffer.size() < body) {
      char chunk[4096];
      auto [rec, got] = co_await socket.async_read_some(
          asio::buffer(chunk), asio::experimental::as_tuple(asio::use_awaitable));
      if (rec) co_return;
      buffer.append(chunk, got);
    }
    buffer.erase(0, body);
    std::string text = name + "\n";
    std::string response = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-upstream: " + name +
                           "\r\ncontent-length: " + std::to_string(text.size()) + "\r\n" +
                           (close ? "connection: close\r\n" : "") + "\r\n" + text;
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(response),
                                                asio::experimental::as_tuple(asio::use_awaitable));
    if (wec || close) co_return;
  }
}

asio::awaitable<void> listen(asio::ip::tcp::acceptor& acceptor, std::string name) {
  for (;;) {
    auto [ec, socket] =
        co_await acceptor.async_accept(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    asio::co_spawn(acceptor.get_executor(), session(std::move(socket), name), asio::detached);
  }
}

}  // namespace

struct DemoUpstreams::Impl {
  asio::io_context io;
  asio::ip::tcp::acceptor a{io, {asio::ip::make_address("127.0.0.1"), 0}};
  asio::ip::tcp::acceptor b{io, {asio::ip::make_address("127.0.0.1"), 0}};
};

DemoUpstreams::DemoUpstreams() : impl_(std::make_unique<Impl>()) {
  ports_[0] = impl_->a.local_endpoint().port();
  ports_[1] = impl_->b.local_endpoint().port();
  asio::co_spawn(impl_->io, listen(impl_->a, "reviews-v1"), asio::detached);
  asio::co_spawn(impl_->io, listen(impl_->b, "reviews-v2"), asio::detached);
  thread_ = std::thread([this] { impl_->io.run(); });
}

DemoUpstreams::~DemoUpstreams() {
  impl_->io.stop();
  thread_.join();
}

}  // namespace sluice::demo
