#include "support/fake_upstream.hpp"

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "support/body_pattern.hpp"

namespace sluice::test {

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
constexpr auto tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool contains_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (iequal(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

std::string_view generic_reason(uint16_t status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

// Read side of one connection: a buffer with a consumed prefix.
struct Reader {
  explicit Reader(tcp::socket& s) : socket(s) {}

  tcp::socket& socket;
  std::string buf;
  size_t pos = 0;
  std::array<char, 65536> scratch{};

  size_t available() const { return buf.size() - pos; }

  awaitable<bool> fill() {
    if (pos > 0) {
      buf.erase(0, pos);
      pos = 0;
    }
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(scratch), tuple_awaitable);
    if (ec) co_return false;
    buf.append(scratch.data(), n);
    co_return true;
  }

  // A CRLF-terminated line, without the CRLF; nullopt on close or overlong.
  awaitable<std::optional<std::string>> line() {
    for (;;) {
      size_t eol = buf.find("\r\n", pos);
      if (eol != std::string::npos) {
        std::string out = buf.substr(pos, eol - pos);
        pos = eol + 2;
        co_return out;
      }
      if (available() > 64 * 1024 || !co_await fill()) co_return std::nullopt;
    }
  }

  template <typename Sink>
  awaitable<bool> body(uint64_t n, Sink& sink) {
    while (n > 0) {
      if (available() == 0 && !co_await fill()) co_return false;
      size_t k = static_cast<size_t>(std::min<uint64_t>(n, available()));
      sink(std::string_view(buf.data() + pos, k));
      pos += k;
      n -= k;
    }
    co_return true;
  }
};

}  // namespace

std::optional<std::string> find_header(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers)
    if (iequal(n, name)) return v;
  return std::nullopt;
}

size_t count_header(const HeaderList& headers, std::string_view name) {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(),
                                           [&](const auto& h) { return iequal(h.first, name); }));
}

struct FakeUpstream::Impl {
  FakeUpstream* owner;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::vector<std::weak_ptr<tcp::socket>> sockets;
  std::vector<std::weak_ptr<asio::steady_timer>> holds;

  explicit Impl(FakeUpstream* o) : owner(o) {}

  awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
      if (ec) {
        if (!acceptor.is_open()) co_return;
        continue;
      }
      // Head and body go out as separate writes: without NODELAY a reused
      // connection waits a delayed ACK (~40 ms) per response.
      asio::error_code nodelay_ec;
      socket.set_option(tcp::no_delay(true), nodelay_ec);
      size_t index = owner->accepted_.fetch_add(1);
      size_t open = owner->open_.fetch_add(1) + 1;
      if (open > owner->max_open_.load()) owner->max_open_.store(open);
      auto shared = std::make_shared<tcp::socket>(std::move(socket));
      sockets.push_back(shared);
      asio::co_spawn(io, session(shared, index), asio::detached);
    }
  }

  awaitable<void> session(std::shared_ptr<tcp::socket> socket, size_t index) {
    co_await serve(*socket, index);
    asio::error_code ignored;
    socket->shutdown(tcp::socket::shutdown_send, ignored);
    socket->close(ignored);
    owner->open_.fetch_sub(1);
  }

  static void reset(tcp::socket& socket) {
    asio::error_code ignored;
    socket.set_option(asio::socket_base::linger(true, 0), ignored);
    socket.close(ignored);
  }

  awaitable<bool> write(tcp::socket& socket, std::string_view data) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(data), tuple_awaitable);
    co_return !ec;
  }

  awaitable<void> wait(asio::steady_timer& timer) {
    auto [ec] = co_await timer.async_wait(tuple_awaitable);
    (void)ec;
  }

  awaitable<void> serve(tcp::socket& socket, size_t index) {
    Reader in{socket};
    for (size_t k = 0;; ++k) {
      // Head.
      Received r;
      r.connection_index = index;
      r.index_on_connection = k;
      auto request_line = co_await in.line();
      if (!request_line) co_return;
      if (request_line->empty()) {  // tolerated stray CRLF between requests
        --k;
        continue;
      }
      {
        std::string_view rl = *request_line;
        size_t sp1 = rl.find(' ');
        size_t sp2 = rl.rfind(' ');
        if (sp1 == std::string_view::npos || sp2 == sp1) co_return;
        r.method = std::string(rl.substr(0, sp1));
        r.target = std::string(rl.substr(sp1 + 1, sp2 - sp1 - 1));
        r.version_minor = rl.substr(sp2 + 1) == "HTTP/1.0" ? 0 : 1;
      }
      for (;;) {
        auto header_line = co_await in.line();
        if (!header_line) co_return;
        if (header_line->empty()) break;
        size_t colon = header_line->find(':');
        if (colon == std::string::npos) co_return;
        std::string_view line = *header_line;
        r.headers.emplace_back(std::string(line.substr(0, colon)),
                               std::string(trim(line.substr(colon + 1))));
      }

      // Body: stored up to the limit, always counted and checksummed.
      size_t limit;
      {
        std::lock_guard lock(owner->mutex_);
        limit = owner->store_body_limit_;
      }
      Checksum checksum;
      auto sink = [&](std::string_view data) {
        owner->body_bytes_.fetch_add(data.size());
        checksum.update(data);
        if (r.body_stored && r.body.size() + data.size() <= limit) {
          r.body.append(data);
        } else {
          r.body_stored = false;
          r.body.clear();
        }
      };
      auto te = r.header("transfer-encoding");
      if (te && contains_token(*te, "chunked")) {
        r.chunked = true;
        for (;;) {
          auto size_line = co_await in.line();
          if (!size_line) co_return;
          char* end = nullptr;
          uint64_t size = std::strtoull(size_line->c_str(), &end, 16);
          if (end == size_line->c_str()) co_return;
          if (size == 0) {
            for (;;) {  // trailers until the empty line
              auto trailer = co_await in.line();
              if (!trailer) co_return;
              if (trailer->empty()) break;
              if (auto colon = trailer->find(':'); colon != std::string::npos) {
                size_t v = trailer->find_first_not_of(' ', colon + 1);
                r.trailers.emplace_back(trailer->substr(0, colon),
                                        v == std::string::npos ? "" : trailer->substr(v));
              }
            }
            break;
          }
          if (!co_await in.body(size, sink)) co_return;
          auto crlf = co_await in.line();
          if (!crlf || !crlf->empty()) co_return;
        }
      } else if (auto cl = r.header("content-length")) {
        uint64_t n = std::strtoull(cl->c_str(), nullptr, 10);
        if (!co_await in.body(n, sink)) co_return;
      }
      r.body_bytes = checksum.bytes();
      r.body_checksum = checksum.value();

      bool request_close = false;
      if (auto c = r.header("connection")) request_close = contains_token(*c, "close");
      if (r.version_minor == 0) {
        auto c = r.header("connection");
        request_close = !(c && contains_token(*c, "keep-alive"));
      }
      bool head_method = r.method == "HEAD";

      owner->record(r);
      Reply reply = owner->reply_for(r);

      if (reply.hold) {
        auto timer = std::make_shared<asio::steady_timer>(io);
        timer->expires_at(asio::steady_timer::time_point::max());
        holds.push_back(timer);
        owner->held_.fetch_add(1);
        co_await wait(*timer);
        owner->held_.fetch_sub(1);
      }
      if (reply.delay.count() > 0) {
        asio::steady_timer timer(io, reply.delay);
        co_await wait(timer);
      }
      if (!socket.is_open()) co_return;
      if (reply.reset_before_response) {
        reset(socket);
        co_return;
      }

      // Response head.
      bool no_body =
          head_method || reply.status / 100 == 1 || reply.status == 204 || reply.status == 304;
      uint64_t body_size = reply.generated_bytes > 0 ? reply.generated_bytes : reply.body.size();
      bool close_after = reply.close_after_response || request_close ||
                         reply.framing == Reply::Framing::close_delimited;
      std::string head =
          "HTTP/1.1 " + std::to_string(reply.status) + " " +
          (reply.reason.empty() ? std::string(generic_reason(reply.status)) : reply.reason) +
          "\r\n";
      for (const auto& [n, v] : reply.headers) head += n + ": " + v + "\r\n";
      bool framed_by_caller = count_header(reply.headers, "content-length") > 0 ||
                              count_header(reply.headers, "transfer-encoding") > 0;
      bool bodyless_status = reply.status / 100 == 1 || reply.status == 204 || reply.status == 304;
      if (!framed_by_caller && !bodyless_status) {
        if (reply.framing == Reply::Framing::content_length)
          head += "Content-Length: " + std::to_string(body_size) + "\r\n";
        else if (reply.framing == Reply::Framing::chunked)
          head += "Transfer-Encoding: chunked\r\n";
      }
      if (close_after) head += "Connection: close\r\n";
      head += "\r\n";
      if (!co_await write(socket, head)) co_return;

      // Response body, generated in blocks when large.
      if (!no_body) {
        uint64_t limit_bytes = reply.reset_after_body_bytes.value_or(body_size);
        bool chunked = reply.framing == Reply::Framing::chunked;
        size_t block_size = chunked ? std::max<size_t>(1, reply.chunk_size) : 64 * 1024;
        std::string block;
        for (uint64_t done = 0; done < std::min(limit_bytes, body_size);) {
          size_t n = static_cast<size_t>(
              std::min<uint64_t>(block_size, std::min(limit_bytes, body_size) - done));
          if (reply.generated_bytes > 0) {
            block.resize(n);
            fill_pattern(done, block.data(), n);
          } else {
            block.assign(reply.body, static_cast<size_t>(done), n);
          }
          if (chunked) {
            char size_hex[32];
            std::snprintf(size_hex, sizeof(size_hex), "%zx\r\n", n);
            block.insert(0, size_hex);
            block += "\r\n";
          }
          if (!co_await write(socket, block)) co_return;
          done += n;
        }
        if (reply.reset_after_body_bytes) {
          reset(socket);
          co_return;
        }
        std::string last = "0\r\n";
        for (const auto& [n, v] : reply.trailers) last += n + ": " + v + "\r\n";
        last += "\r\n";
        if (chunked && !co_await write(socket, last)) co_return;
      }
      if (close_after) co_return;
    }
  }
};

FakeUpstream::FakeUpstream(std::string name)
    : name_(std::move(name)), impl_(std::make_unique<Impl>(this)) {
  tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  port_ = impl_->acceptor.local_endpoint().port();
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  thread_ = std::thread([this] { impl_->io.run(); });
}

FakeUpstream::~FakeUpstream() {
  stop();
}

void FakeUpstream::stop() {
  if (!impl_) return;
  asio::post(impl_->io, [impl = impl_.get()] {
    asio::error_code ignored;
    impl->acceptor.close(ignored);
    for (auto& weak : impl->sockets)
      if (auto s = weak.lock()) s->close(ignored);
    for (auto& weak : impl->holds)
      if (auto t = weak.lock()) t->cancel();
    impl->io.stop();
  });
  if (thread_.joinable()) thread_.join();
  // Destroying the io_context destroys the suspended sessions, which use the
  // counters: do it while they still exist.
  impl_.reset();
}

void FakeUpstream::set_handler(Handler handler) {
  std::lock_guard lock(mutex_);
  handler_ = std::move(handler);
}

void FakeUpstream::set_store_body_limit(size_t bytes) {
  std::lock_guard lock(mutex_);
  store_body_limit_ = bytes;
}

void FakeUpstream::release() {
  if (!impl_) return;
  asio::post(impl_->io, [impl = impl_.get()] {
    for (auto& weak : impl->holds)
      if (auto t = weak.lock()) t->cancel();
    impl->holds.clear();
  });
}

void FakeUpstream::record(Received r) {
  {
    std::lock_guard lock(mutex_);
    log_.push_back(std::move(r));
  }
  cv_.notify_all();
}

Reply FakeUpstream::reply_for(const Received& r) {
  Handler handler;
  {
    std::lock_guard lock(mutex_);
    handler = handler_;
  }
  if (handler) return handler(r);
  Reply reply;
  reply.body = name_;
  reply.headers.emplace_back("x-upstream", name_);
  return reply;
}

std::vector<Received> FakeUpstream::requests() const {
  std::lock_guard lock(mutex_);
  return log_;
}

size_t FakeUpstream::request_count() const {
  std::lock_guard lock(mutex_);
  return log_.size();
}

std::optional<Received> FakeUpstream::last_request() const {
  std::lock_guard lock(mutex_);
  if (log_.empty()) return std::nullopt;
  return log_.back();
}

bool FakeUpstream::wait_for_requests(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return log_.size() >= n; });
}

bool FakeUpstream::wait_for_connections(size_t n, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (accepted_.load() < n) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace sluice::test
