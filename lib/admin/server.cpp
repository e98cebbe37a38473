// AdminServer: one thread with its own io_context, one coroutine per
// connection, HTTP/1.1 through lib/http's parser. Bounded like the
// gateway's listeners: a connection cap, header limits, a header timeout
// and a keep-alive idle timeout. Request bodies are never read: a request
// that has one is answered and the connection closed.

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <list>
#include <mutex>
#include <thread>

#include "admin/endpoints.hpp"
#include "admin/graph.hpp"
#include "http/parser.hpp"
#include "http/serializer.hpp"
#include "sluice/admin.hpp"
#include "sluice/gateway.hpp"

namespace sluice {

namespace {

constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr size_t kReadChunk = 4096;

// A connection: its socket and the timer that closes it when a wait runs
// too long. Shared with the timer's handler, which may run after the
// session has moved on.
struct Conn {
  explicit Conn(asio::io_context& io) : socket(io), timer(io) {}
  asio::ip::tcp::socket socket;
  asio::steady_timer timer;

  void arm(std::chrono::milliseconds after, const std::shared_ptr<Conn>& self) {
    timer.expires_after(after);
    timer.async_wait([self](asio::error_code ec) {
      if (!ec) self->close();
    });
  }
  void close() {
    asio::error_code ignored;
    socket.close(ignored);
  }
};

// Closes the connection however its session ends, so neither the socket
// nor a pending timer outlives it.
struct CloseOnExit {
  std::shared_ptr<Conn> conn;
  ~CloseOnExit() {
    conn->timer.cancel();
    conn->close();
  }
};

Response plain(uint16_t status, std::string body) {
  Response r;
  r.status = status;
  r.headers.add("content-type", "text/plain");
  r.body = std::move(body);
  return r;
}

}  // namespace

struct AdminServer::Impl {
  Impl(const Gateway& g, AdminOptions o)
      : gateway(g),
        options(std::move(o)),
        acceptor(io),
        sample_timer(io),
        sampler(options.sample_interval, std::chrono::seconds(900)) {}

  const Gateway& gateway;
  AdminOptions options;
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor;
  asio::steady_timer sample_timer;
  admin::TrafficSampler sampler;
  std::thread thread;
  std::atomic<uint16_t> port{0};
  std::mutex mutex;  // guards started, stopped
  bool started = false;
  bool stopped = false;
  bool stopping = false;  // io thread only: set by close_all
  // Open connections (io thread only), so stop() can close them.
  std::list<std::weak_ptr<Conn>> conns;

  std::chrono::steady_clock::time_point now() const {
    return options.clock ? options.clock() : std::chrono::steady_clock::now();
  }

  void take_sample() {
    admin::GraphSample s = admin::make_sample(now(), gateway.stats());
    for (const auto& [key, e] : s.edges)
      for (const auto& name : e.upstreams) s.overflows[name] = gateway.upstream(name).overflows;
    sampler.add(std::move(s));
  }

  asio::awaitable<void> sample_loop() {
    for (;;) {
      sample_timer.expires_after(options.sample_interval);
      auto [ec] = co_await sample_timer.async_wait(kNoThrow);
      if (ec || stopping) co_return;
      take_sample();
    }
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto conn = std::make_shared<Conn>(io);
      auto [ec] = co_await acceptor.async_accept(conn->socket, kNoThrow);
      if (ec) {
        if (!acceptor.is_open()) co_return;
        continue;  // e.g. out of descriptors: the next accept may work
      }
      std::erase_if(conns, [](const std::weak_ptr<Conn>& w) { return w.expired(); });
      if (conns.size() >= options.max_connections) {
        conn->close();
        continue;
      }
      conns.push_back(conn);
      asio::co_spawn(io, session(std::move(conn)), asio::detached);
    }
  }

  asio::awaitable<bool> write(const std::shared_ptr<Conn>& c, const Response& r, bool keep_alive) {
    ResponseHead head;
    head.status = r.status;
    head.headers = r.headers;
    head.headers.add("content-length", std::to_string(r.body.size()));
    head.headers.add("cache-control", "no-cache");
    if (!keep_alive) head.headers.add("connection", "close");
    std::string out;
    http::append_response_head(out, head);
    out += r.body;
    auto [ec, n] = co_await asio::async_write(c->socket, asio::buffer(out), kNoThrow);
    co_return !ec;
  }

  asio::awaitable<void> session(std::shared_ptr<Conn> c) {
    CloseOnExit guard{c};
    http::Parser parser(
        http::Parser::Kind::request,
        http::ParserLimits{options.max_request_header_bytes, options.max_request_headers});
    std::string buf(kReadChunk, '\0');
    size_t off = 0, have = 0;  // unparsed bytes: buf[off, off + have)
    admin::AdminContext context{gateway, sampler, options.paths};
    for (;;) {
      c->arm(have ? options.request_header_timeout : options.idle_timeout, c);
      while (!parser.head_done() && parser.error() == http::ParseError::none) {
        if (have == 0) {
          auto [ec, n] = co_await c->socket.async_read_some(asio::buffer(buf), kNoThrow);
          if (ec) co_return;  // closed, reset, or closed by the timer
          off = 0;
          have = n;
          // The first byte of a request: from now on the header timeout.
          if (parser.idle()) c->arm(options.request_header_timeout, c);
        }
        size_t used = parser.feed(buf.data() + off, have);
        off += used;
        have -= used;
      }
      c->timer.cancel();
      if (parser.error() != http::ParseError::none) {
        bool too_large = parser.error() == http::ParseError::header_too_large;
        Response r =
            plain(too_large ? 431 : 400, too_large ? "header too large\n" : "bad request\n");
        co_await write(c, r, false);
        co_return;
      }
      // A body is not read: answer, then close rather than skip it.
      bool body = parser.body_expected();
      if (!body) {
        size_t used = parser.feed(buf.data() + off, have);
        off += used;
        have -= used;
      }
      RequestHead& head = parser.request();
      std::string why = http::validate_request(head);
      Response r = why.empty() ? admin::respond(context, head) : plain(400, why + "\n");
      bool keep_alive = why.empty() && !body && parser.message_done() && parser.keep_alive();
      if (!co_await write(c, r, keep_alive) || !keep_alive) {
        c->close();
        co_return;
      }
      parser.next_message();
    }
  }

  void close_all() {
    stopping = true;
    asio::error_code ignored;
    acceptor.close(ignored);
    sample_timer.cancel();
    for (auto& w : conns)
      if (auto c = w.lock()) {
        c->timer.cancel();
        c->close();
      }
    conns.clear();
  }
};

AdminServer::AdminServer(const Gateway& gateway, AdminOptions options)
    : impl_(std::make_unique<Impl>(gateway, std::move(options))) {}

AdminServer::~AdminServer() {
  stop();
}

Status AdminServer::start() {
  std::lock_guard lock(impl_->mutex);
  auto& o = impl_->options;
  if (impl_->started) return Error{"AdminServer", "", "already started"};
  asio::error_code ec;
  auto address = asio::ip::make_address(o.address, ec);
  if (ec) return Error{"AdminServer", "address", "\"" + o.address + "\" is not an IP address"};
  asio::ip::tcp::endpoint endpoint(address, o.port);
  auto& a = impl_->acceptor;
  if (a.open(endpoint.protocol(), ec); !ec)
    a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    a.close(ec);
    return Error{
        "AdminServer", "port",
        "cannot listen on " + o.address + ":" + std::to_string(o.port) + ": " + ec.message()};
  }
  impl_->port = a.local_endpoint().port();
  impl_->started = true;
  impl_->take_sample();
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  if (!o.clock) asio::co_spawn(impl_->io, impl_->sample_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return {};
}

void AdminServer::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->started || impl_->stopped) return;
    impl_->stopped = true;
  }
  // Closing everything ends every coroutine; run() then returns.
  asio::post(impl_->io, [this] { impl_->close_all(); });
  impl_->thread.join();
}

uint16_t AdminServer::port() const {
  return impl_->port;
}

void AdminServer::sample() {
  impl_->take_sample();
}

}  // namespace sluice
