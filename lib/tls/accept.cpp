#include "tls/accept.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <cstdio>
#include <optional>
#include <vector>

#include "config/snapshot.hpp"
#include "proxy/session.hpp"
#include "runtime/worker.hpp"
#include "tls/cert.hpp"
#include "tls/client_hello.hpp"
#include "tls/server.hpp"
#include "upstream/cluster.hpp"

namespace sluice::tls {

namespace {

using asio::awaitable;
using asio::ip::tcp;
using Timeout = ConnectionSlot::Timeout;
using TlsStream = asio::ssl::stream<tcp::socket>;
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

std::string peer_of(const tcp::socket& s) {
  asio::error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().is_v6() ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                              : fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

void log_failure(const std::string& listener, const std::string& peer, std::string_view reason) {
  count_handshake_failure();
  fmt::print(stderr, "sluice: listener {}: TLS handshake with {} failed: {}\n", listener, peer,
             reason);
}

void close_socket(tcp::socket& s) {
  asio::error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}

// Keeps the connection known to the worker (limits, drain, deadlines)
// before the HTTP session takes it over.
class Attached {
 public:
  Attached(Worker& worker, ConnectionSlot& slot) : worker_(worker), slot_(&slot) {
    worker_.attach(slot_);
  }
  ~Attached() { release(); }
  Attached(const Attached&) = delete;
  Attached& operator=(const Attached&) = delete;
  void release() {
    if (slot_) worker_.detach(std::exchange(slot_, nullptr));
  }

 private:
  Worker& worker_;
  ConnectionSlot* slot_;
};

// Looks at the ClientHello without consuming it (MSG_PEEK), so a connection
// that is terminated after all hands BoringSSL untouched bytes.
awaitable<ClientHelloInfo> peek_client_hello(tcp::socket& socket, ConnectionSlot& slot) {
  std::vector<uint8_t> buf(kMaxClientHelloBytes + 64);
  asio::steady_timer pause(socket.get_executor());
  asio::error_code ec;
  socket.non_blocking(true, ec);
  size_t last = 0;
  ClientHelloInfo invalid{ClientHelloInfo::Status::invalid, {}};
  for (;;) {
    auto [wec] = co_await socket.async_wait(tcp::socket::wait_read, nothrow);
    if (wec || slot.fired != Timeout::none) co_return invalid;
    size_t n = socket.receive(asio::buffer(buf), tcp::socket::message_peek, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
    if (ec || n == 0) co_return invalid;
    auto info = parse_client_hello(std::span<const uint8_t>(buf.data(), n));
    if (info.status != ClientHelloInfo::Status::need_more) co_return info;
    if (n == buf.size()) co_return invalid;
    if (n == last) {
      // A partial hello stays readable, so wait_read would return at once:
      // poll gently until more arrives (rare; the handshake deadline bounds it).
      pause.expires_after(std::chrono::milliseconds(2));
      co_await pause.async_wait(nothrow);
      if (slot.fired != Timeout::none) co_return invalid;
    }
    last = n;
  }
}

// Copies one direction until EOF (propagated as a half-close) or an error
// (which closes both sides, ending the other direction too).
awaitable<void> pump(Worker& worker, tcp::socket& from, tcp::socket& to, ConnectionSlot& slot,
                     std::chrono::milliseconds idle) {
  auto buf = worker.take_buffer();
  for (;;) {
    auto [ec, n] =
        co_await from.async_read_some(asio::buffer(buf.get(), Worker::kBufferSize), nothrow);
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

awaitable<void> relay(Worker& worker, tcp::socket& down, const Snapshot& snap,
                      const PassthroughTarget& target, const std::string& sni, ConnectionSlot& slot,
                      const std::string& listener) {
  using namespace asio::experimental::awaitable_operators;
  const CompiledUpstream& up = snap.upstreams[target.upstream];
  asio::error_code ec;
  auto remote = down.remote_endpoint(ec);
  std::string client_ip = ec ? std::string() : remote.address().to_string();
  RequestHead head;
  head.authority = sni;
  PickRequest request{head, client_ip, {}, false};
  PickResult pick = pick_endpoint(worker, up, *target.set, request);
  if (pick.endpoint < 0) {
    fmt::print(stderr, "sluice: listener {}: passthrough for \"{}\": no healthy endpoint in {}\n",
               listener, sni, up.config.name);
    close_socket(down);
    co_return;
  }
  tcp::socket upstream(down.get_executor());
  slot.upstream = &upstream;
  slot.set_deadline(Timeout::upstream_connect, up.config.pool.connect_timeout);
  auto [cec] = co_await upstream.async_connect(up.endpoints[pick.endpoint].address, nothrow);
  if (cec) {
    fmt::print(stderr, "sluice: listener {}: passthrough for \"{}\": connect to {} failed: {}\n",
               listener, sni, up.endpoints[pick.endpoint].key,
               slot.fired != Timeout::none ? "timeout" : cec.message());
    slot.upstream = nullptr;
    close_socket(down);
    co_return;
  }
  upstream.set_option(tcp::no_delay(true), ec);
  down.non_blocking(false, ec);
  slot.idle = false;  // draining waits for it (bounded by the drain timeout)
  auto idle = snap.limits.idle_timeout;
  slot.set_deadline(Timeout::idle, idle);
  co_await (pump(worker, down, upstream, slot, idle) && pump(worker, upstream, down, slot, idle));
  slot.upstream = nullptr;
  close_socket(upstream);
  close_socket(down);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

awaitable<void> run(Worker& worker, tcp::socket socket, std::shared_ptr<const Snapshot> snapshot,
                    const CompiledListener* listener, uint16_t port) {
  const ListenerTls& lt = *listener->tls;
  const std::string& name = listener->config.name;
  std::string peer = peer_of(socket);
  ConnectionSlot slot(&socket);
  Attached attached(worker, slot);
  slot.set_deadline(Timeout::io, lt.handshake_timeout());

  if (lt.has_passthrough()) {
    ClientHelloInfo hello = co_await peek_client_hello(socket, slot);
    if (hello.status != ClientHelloInfo::Status::ok) {
      log_failure(name, peer,
                  slot.fired != Timeout::none ? "timeout waiting for the ClientHello"
                                              : "no valid TLS ClientHello");
      close_socket(socket);
      co_return;
    }
    if (const PassthroughTarget* target = lt.find_passthrough(hello.sni)) {
      co_await relay(worker, socket, *snapshot, *target, hello.sni, slot, name);
      co_return;
    }
    if (!lt.terminates()) {
      log_failure(name, peer, fmt::format("no passthrough route for SNI \"{}\"", hello.sni));
      close_socket(socket);
      co_return;
    }
    asio::error_code ec;
    socket.non_blocking(false, ec);
  }

  std::optional<TlsStream> stream;
  stream.emplace(std::move(socket), lt.context());
  slot.socket = &stream->lowest_layer();
  auto [ec] = co_await stream->async_handshake(asio::ssl::stream_base::server, nothrow);
  if (ec || slot.fired != Timeout::none) {
    std::string reason;
    if (slot.fired != Timeout::none) {
      reason = fmt::format("timeout after {} ms", lt.handshake_timeout().count());
    } else {
      SSL* ssl = stream->native_handle();
      bool rejected = ec.category() == asio::error::get_ssl_category() &&
                      ERR_GET_LIB(ec.value()) == ERR_LIB_SSL &&
                      ERR_GET_REASON(ec.value()) == SSL_R_CONNECTION_REJECTED;
      reason = rejected ? "no server certificate for this SNI" : ec.message();
      long verify = SSL_get_verify_result(ssl);
      if (verify != X509_V_OK && verify != X509_V_ERR_INVALID_CALL)
        reason += fmt::format(" (client certificate: {})", X509_verify_cert_error_string(verify));
      const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
      reason += fmt::format(" [SNI \"{}\"]", sni ? lower(sni) : "");
    }
    log_failure(name, peer, reason);
    close_socket(stream->next_layer());
    co_return;
  }
  slot.clear_deadline();
  DownstreamTls info = downstream_info(*stream);
  attached.release();
  start_tls_session(worker, std::move(*stream), name, port, std::move(info));
}

}  // namespace

DownstreamTls downstream_info(TlsStream& stream) {
  SSL* ssl = stream.native_handle();
  DownstreamTls out;
  if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) out.sni = lower(sni);
  if (X509* peer = SSL_get_peer_certificate(ssl)) {
    out.peer_identity = peer_identity(certificate_names(peer));
    out.xfcc = xfcc_value(peer, SSL_get_certificate(ssl));
    X509_free(peer);
  }
  return out;
}

void accept(Worker& worker, tcp::socket socket, std::shared_ptr<const Snapshot> snapshot,
            const CompiledListener& listener, uint16_t port) {
  asio::co_spawn(worker.context(),
                 run(worker, std::move(socket), std::move(snapshot), &listener, port),
                 [](std::exception_ptr) {});
}

}  // namespace sluice::tls
