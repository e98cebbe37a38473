#include "support/h2_upstream.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <array>
#include <map>
#include <thread>

namespace sluice::test {

namespace {
using asio::awaitable;
using asio::ip::tcp;
constexpr auto kNothrow = asio::experimental::as_tuple(asio::use_awaitable);

struct ConnBase {
  explicit ConnBase(const http2::Settings& s) : codec(s) {}
  virtual ~ConnBase() = default;
  virtual void kick() = 0;  // write what the codec has
  http2::ServerSession codec;
  size_t index = 0;
  size_t requests = 0;
  std::map<int32_t, H2Request> open;
};
}  // namespace

struct H2Upstream::Impl {
  H2Upstream& owner;
  asio::io_context io;
  std::optional<asio::ssl::context> ssl;
  tcp::acceptor acceptor{io};
  http2::Settings settings;
  std::thread thread;
  mutable std::mutex mutex;
  std::condition_variable cv;
  std::function<H2Reply(const H2Request&)> handler;
  std::vector<H2Request> received;
  size_t hold = 0;
  size_t goaway_after = 0;
  std::string alpn;
  struct Held {
    std::weak_ptr<ConnBase> conn;
    int32_t stream;
    H2Reply reply;
  };
  std::vector<Held> held;  // io thread only

  explicit Impl(H2Upstream& o) : owner(o) {}

  // Answers the held requests; `current` is written by its own loop.
  void release(ConnBase* current) {
    for (auto& h : held)
      if (auto other = h.conn.lock()) {
        answer(*other, h.stream, h.reply);
        if (other.get() != current) other->kick();
      }
    held.clear();
  }

  static void answer(ConnBase& c, int32_t stream, const H2Reply& r) {
    if (r.reset) {
      c.codec.reset(stream, *r.reset);
      return;
    }
    bool more = !r.body.empty() || r.trailers.has_value();
    c.codec.submit_response(stream, r.status, r.headers, !more);
    if (!r.body.empty()) c.codec.send_data(stream, r.body, !r.trailers);
    if (r.trailers) c.codec.submit_trailers(stream, *r.trailers);
  }

  void handle_events(const std::shared_ptr<ConnBase>& c) {
    using Kind = http2::Event::Kind;
    for (auto& e : c->codec.take_events()) {
      switch (e.kind) {
        case Kind::request: {
          H2Request& r = c->open[e.stream];
          r.head = std::move(e.head);
          r.connection = c->index;
          r.stream = e.stream;
          if (goaway_after != 0 && ++c->requests == goaway_after) c->codec.shutdown();
          break;
        }
        case Kind::data:
          c->open[e.stream].body += e.data;
          c->codec.consume(e.stream, e.data.size());
          break;
        case Kind::end: {
          auto it = c->open.find(e.stream);
          if (it == c->open.end()) break;
          H2Request req = std::move(it->second);
          c->open.erase(it);
          std::function<H2Reply(const H2Request&)> h;
          size_t count = 0, wait_for = 0;
          {
            std::lock_guard lock(mutex);
            received.push_back(req);
            count = received.size();
            wait_for = hold;
            h = handler;
          }
          cv.notify_all();
          H2Reply reply;
          if (h) {
            reply = h(req);
          } else {
            reply.body = "h2 " + req.head.target;
          }
          size_t open_now = c->codec.open_streams();
          size_t prev = owner.max_open_.load();
          while (open_now > prev && !owner.max_open_.compare_exchange_weak(prev, open_now)) {
          }
          if (count < wait_for) {
            held.push_back({c, e.stream, std::move(reply)});
            break;
          }
          answer(*c, e.stream, reply);
          release(c.get());
          break;
        }
        default:
          c->open.erase(e.stream);
          break;
      }
    }
  }
};

namespace {

template <typename Stream>
struct Conn : ConnBase, std::enable_shared_from_this<Conn<Stream>> {
  Conn(Stream s, const http2::Settings& settings) : ConnBase(settings), stream(std::move(s)) {}
  Stream stream;
  bool writing = false;
  std::string out;

  void kick() override {
    asio::co_spawn(stream.get_executor(), flush(this->shared_from_this()), asio::detached);
  }
  static awaitable<void> flush(std::shared_ptr<Conn> c) {
    if (c->writing) co_return;
    c->writing = true;
    for (;;) {
      c->out.clear();
      if (c->codec.produce(c->out) == 0) break;
      auto [ec, n] = co_await asio::async_write(c->stream, asio::buffer(c->out), kNothrow);
      if (ec) break;
    }
    c->writing = false;
  }
};

template <typename Stream>
awaitable<void> serve(H2Upstream::Impl& impl, std::shared_ptr<Conn<Stream>> c) {
  std::array<char, 16384> buf;
  for (;;) {
    auto [ec, n] = co_await c->stream.async_read_some(asio::buffer(buf), kNothrow);
    if (ec || n == 0) break;
    bool ok = c->codec.feed(std::string_view(buf.data(), n));
    impl.handle_events(c);
    co_await Conn<Stream>::flush(c);
    if (!ok || !c->codec.alive()) break;
  }
  asio::error_code ignored;
  c->stream.lowest_layer().close(ignored);
}

awaitable<void> accept_loop(H2Upstream::Impl& impl, std::atomic<size_t>& count) {
  for (;;) {
    auto [ec, socket] = co_await impl.acceptor.async_accept(kNothrow);
    if (ec) co_return;
    size_t index = ++count;
    if (impl.ssl) {
      asio::ssl::stream<tcp::socket> tls(std::move(socket), *impl.ssl);
      auto [hs] = co_await tls.async_handshake(asio::ssl::stream_base::server, kNothrow);
      if (hs) continue;
      const unsigned char* proto = nullptr;
      unsigned len = 0;
      SSL_get0_alpn_selected(tls.native_handle(), &proto, &len);
      {
        std::lock_guard lock(impl.mutex);
        impl.alpn.assign(reinterpret_cast<const char*>(proto), len);
      }
      auto c =
          std::make_shared<Conn<asio::ssl::stream<tcp::socket>>>(std::move(tls), impl.settings);
      c->index = index;
      asio::co_spawn(impl.io, serve(impl, c), asio::detached);
    } else {
      auto c = std::make_shared<Conn<tcp::socket>>(std::move(socket), impl.settings);
      c->index = index;
      asio::co_spawn(impl.io, serve(impl, c), asio::detached);
    }
  }
}

int select_h2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned inlen, void*) {
  for (unsigned i = 0; i + 1 <= inlen; i += 1 + in[i])
    if (in[i] == 2 && i + 3 <= inlen && in[i + 1] == 'h' && in[i + 2] == '2') {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

}  // namespace

H2Upstream::H2Upstream(std::optional<H2TlsFiles> tls, http2::Settings settings)
    : impl_(std::make_unique<Impl>(*this)) {
  impl_->settings = settings;
  if (tls) {
    impl_->ssl.emplace(asio::ssl::context::tls_server);
    impl_->ssl->use_certificate_chain_file(tls->cert_path);
    impl_->ssl->use_private_key_file(tls->key_path, asio::ssl::context::pem);
    SSL_CTX_set_alpn_select_cb(impl_->ssl->native_handle(), &select_h2, nullptr);
  }
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  port_ = impl_->acceptor.local_endpoint().port();
  asio::co_spawn(impl_->io, accept_loop(*impl_, connections_), asio::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

H2Upstream::~H2Upstream() {
  impl_->io.stop();
  impl_->thread.join();
}

void H2Upstream::set_handler(std::function<H2Reply(const H2Request&)> handler) {
  std::lock_guard lock(impl_->mutex);
  impl_->handler = std::move(handler);
}

void H2Upstream::hold_until(size_t n) {
  std::lock_guard lock(impl_->mutex);
  impl_->hold = n;
}

void H2Upstream::release_held() {
  asio::post(impl_->io, [this] {
    {
      std::lock_guard lock(impl_->mutex);
      impl_->hold = 0;
    }
    impl_->release(nullptr);
  });
}

void H2Upstream::goaway_after(size_t n) {
  asio::post(impl_->io, [this, n] { impl_->goaway_after = n; });
}

size_t H2Upstream::requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->received.size();
}

std::vector<H2Request> H2Upstream::received() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->received;
}

bool H2Upstream::wait_for_requests(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->received.size() >= n; });
}

std::string H2Upstream::last_alpn() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->alpn;
}

}  // namespace sluice::test
