#include "runtime/tls_listener.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "http/tokens.hpp"
#include "proxy/h2_session.hpp"
#include "proxy/passthrough.hpp"
#include "proxy/session.hpp"
#include "runtime/worker.hpp"
#include "tls/client_hello.hpp"
#include "tls/prefeed.hpp"
#include "tls/server.hpp"

namespace sluice {

using tls::ClientHelloInfo;
using tls::ListenerTls;
using tls::PassthroughTarget;

namespace {

using asio::awaitable;
using asio::ip::tcp;
using Timeout = ConnectionSlot::Timeout;
using TlsStream = asio::ssl::stream<tcp::socket>;
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

std::string peer_of(const tcp::socket& s) {
  asio::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? "?" : http::join_host_port(ep.address().to_string(), ep.port());
}

void log_failure(Worker& worker, const std::string& listener, const std::string& peer,
                 std::string_view reason) {
  tls::count_handshake_failure();
  if (auto* counters = worker.listener_counters(listener))
    counters->tls_failures.fetch_add(1, std::memory_order_relaxed);
  worker.log(LogLevel::info, "listener {}: TLS handshake with {} failed: {}", listener, peer,
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

// What was read off a passthrough listener's connection to find the SNI:
// the bytes go on to the upstream (passthrough) or to BoringSSL
// (termination) before anything else from the socket.
struct Hello {
  ClientHelloInfo info{ClientHelloInfo::Status::invalid, {}};
  std::vector<uint8_t> bytes;
};

// Reads (consumes) bytes as they arrive until they hold a whole
// ClientHello. Each wait is one pending read, so a client that sends part of
// a hello and stops costs nothing until the handshake deadline interrupts the
// read (peeking instead would leave the socket readable and the wait spinning).
awaitable<Hello> read_client_hello(tcp::socket& socket, ConnectionSlot& slot) {
  Hello out;
  constexpr size_t kLimit = tls::kMaxClientHelloBytes + 64;
  out.bytes.resize(2048);  // most hellos fit; grown up to kLimit
  size_t have = 0;
  for (;;) {
    if (have == out.bytes.size()) out.bytes.resize(std::min(kLimit, out.bytes.size() * 2));
    auto [ec, n] = co_await socket.async_read_some(
        asio::buffer(out.bytes.data() + have, out.bytes.size() - have), nothrow);
    if (ec || n == 0 || slot.fired != Timeout::none) {
      out.info.status = ClientHelloInfo::Status::invalid;
      break;
    }
    have += n;
    out.info = tls::parse_client_hello(std::span<const uint8_t>(out.bytes.data(), have));
    if (out.info.status != ClientHelloInfo::Status::need_more) break;
    if (have == kLimit) {
      out.info.status = ClientHelloInfo::Status::invalid;
      break;
    }
  }
  out.bytes.resize(have);
  co_return out;
}

awaitable<void> run(Worker& worker, tcp::socket socket, std::shared_ptr<const Snapshot> snapshot,
                    const CompiledListener* listener, uint16_t port) {
  const ListenerTls& lt = *listener->tls;
  const std::string& name = listener->config.name;
  std::string peer = peer_of(socket);
  ConnectionSlot slot(&socket);
  slot.counters = worker.listener_counters(name);
  Attached attached(worker, slot);
  slot.set_deadline(Timeout::io, lt.handshake_timeout());

  std::optional<Hello> hello;
  if (lt.has_passthrough()) {
    hello = co_await read_client_hello(socket, slot);
    if (hello->info.status != ClientHelloInfo::Status::ok) {
      log_failure(worker, name, peer,
                  slot.fired != Timeout::none ? "timeout waiting for the ClientHello"
                                              : "no valid TLS ClientHello");
      close_socket(socket);
      co_return;
    }
    if (const PassthroughTarget* target = lt.find_passthrough(hello->info.sni)) {
      co_await relay(worker, socket, *snapshot, *target, hello->info.sni, std::move(hello->bytes),
                     slot, name);
      co_return;
    }
    if (!lt.terminates()) {
      log_failure(worker, name, peer,
                  fmt::format("no passthrough route for SNI \"{}\"", hello->info.sni));
      close_socket(socket);
      co_return;
    }
  }

  std::optional<TlsStream> stream;
  stream.emplace(std::move(socket), lt.context());
  slot.socket = &stream->lowest_layer();
  if (hello && !tls::prefeed(*stream, std::move(hello->bytes))) {
    log_failure(worker, name, peer, "out of memory");
    close_socket(stream->next_layer());
    co_return;
  }
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
      reason += fmt::format(" [SNI \"{}\"]", sni ? http::to_lower(sni) : "");
    }
    log_failure(worker, name, peer, reason);
    close_socket(stream->next_layer());
    co_return;
  }
  slot.clear_deadline();
  // The client's Finished is the last thing it sent, and BoringSSL has
  // nothing to answer it with (its tickets went out in the first flight), so
  // the kernel would delay the ACK. A client that leaves Nagle on then holds
  // its first request for that ACK, about 40 ms. Asking for a quick ACK now
  // sends the pending one.
  int one = 1;
  ::setsockopt(stream->lowest_layer().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
  if (slot.counters) slot.counters->tls_handshakes.fetch_add(1, std::memory_order_relaxed);
  tls::DownstreamTls info = tls::downstream_info(*stream);
  attached.release();
  const uint8_t* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(stream->native_handle(), &alpn, &alpn_len);
  if (!listener->tcp.empty())  // TCP routes after termination
    start_tcp_session(worker, std::move(*stream), name, port, std::move(info));
  else if (std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) == "h2")
    start_h2_tls_session(worker, std::move(*stream), name, port, std::move(info));
  else
    start_tls_session(worker, std::move(*stream), name, port, std::move(info));
}

}  // namespace

void accept_tls(Worker& worker, tcp::socket socket, std::shared_ptr<const Snapshot> snapshot,
                const CompiledListener& listener, uint16_t port) {
  asio::co_spawn(worker.context(),
                 run(worker, std::move(socket), std::move(snapshot), &listener, port),
                 [](std::exception_ptr) {});
}

}  // namespace sluice
