#include "tls/accept.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ssl.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include "config/snapshot.hpp"
#include "proxy/session.hpp"
#include "runtime/worker.hpp"
#include "tls/cert.hpp"
#include "tls/client_hello.hpp"
#include "tls/server.hpp"
#include "upstream/cluster.hpp"
#include "upstream/connect.hpp"

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
  constexpr size_t kLimit = kMaxClientHelloBytes + 64;
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
    out.info = parse_client_hello(std::span<const uint8_t>(out.bytes.data(), have));
    if (out.info.status != ClientHelloInfo::Status::need_more) break;
    if (have == kLimit) {
      out.info.status = ClientHelloInfo::Status::invalid;
      break;
    }
  }
  out.bytes.resize(have);
  co_return out;
}

// A read BIO that returns the bytes already taken off the socket first,
// then reads from the BIO it is pushed in front of (asio's BIO pair). This
// is how a terminated connection hands BoringSSL the ClientHello that
// read_client_hello consumed; asio's ssl::stream has no way to pre-feed it.
struct Prefix {
  std::vector<uint8_t> bytes;
  size_t pos = 0;
};

int prefix_read(BIO* b, char* out, int len) {
  BIO_clear_retry_flags(b);
  auto* p = static_cast<Prefix*>(BIO_get_data(b));
  if (p && p->pos < p->bytes.size() && len > 0) {
    size_t n = std::min(static_cast<size_t>(len), p->bytes.size() - p->pos);
    std::memcpy(out, p->bytes.data() + p->pos, n);
    p->pos += n;
    if (p->pos == p->bytes.size()) std::vector<uint8_t>().swap(p->bytes);
    return static_cast<int>(n);
  }
  BIO* next = BIO_next(b);
  if (!next) return 0;
  int n = BIO_read(next, out, len);
  BIO_copy_next_retry(b);
  return n;
}

int prefix_write(BIO* b, const char* in, int len) {
  BIO* next = BIO_next(b);
  if (!next) return 0;
  BIO_clear_retry_flags(b);
  int n = BIO_write(next, in, len);
  BIO_copy_next_retry(b);
  return n;
}

long prefix_ctrl(BIO* b, int cmd, long num, void* ptr) {
  auto* p = static_cast<Prefix*>(BIO_get_data(b));
  BIO* next = BIO_next(b);
  long rest = next ? BIO_ctrl(next, cmd, num, ptr) : 0;
  if (cmd == BIO_CTRL_PENDING && p) rest += static_cast<long>(p->bytes.size() - p->pos);
  return rest;
}

int prefix_destroy(BIO* b) {
  delete static_cast<Prefix*>(BIO_get_data(b));
  BIO_set_data(b, nullptr);
  return 1;
}

const BIO_METHOD* prefix_method() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "sluice prefix");
    BIO_meth_set_read(m, prefix_read);
    BIO_meth_set_write(m, prefix_write);
    BIO_meth_set_ctrl(m, prefix_ctrl);
    BIO_meth_set_destroy(m, prefix_destroy);
    return m;
  }();
  return method;
}

// Puts `bytes` in front of what the stream's SSL reads. False on allocation
// failure (the caller closes the connection).
bool prefeed(TlsStream& stream, std::vector<uint8_t> bytes) {
  SSL* ssl = stream.native_handle();
  BIO* inner = SSL_get_rbio(ssl);
  BIO* prefix = BIO_new(prefix_method());
  if (!inner || !prefix) {
    if (prefix) BIO_free(prefix);
    return false;
  }
  BIO_set_data(prefix, new Prefix{std::move(bytes), 0});
  BIO_set_init(prefix, 1);
  BIO_up_ref(inner);        // the chain's reference; SSL_set0_rbio drops the SSL's
  BIO_push(prefix, inner);  // prefix -> asio's BIO pair end
  SSL_set0_rbio(ssl, prefix);
  return true;
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
                      const PassthroughTarget& target, Hello hello, ConnectionSlot& slot,
                      const std::string& listener) {
  const std::string& sni = hello.info.sni;
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
  // The one upstream-connection layer, raw (the client's TLS goes through):
  // counted in the upstream's and endpoint's open connections within
  // max_connections, like a pooled one.
  Lease lease = co_await open_connection(worker, slot, up, pick.endpoint, {.originate_tls = false});
  if (!lease.conn) {
    fmt::print(stderr, "sluice: listener {}: passthrough for \"{}\": {} to {}\n", listener, sni,
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
  std::tie(ec, std::ignore) =
      co_await asio::async_write(upstream, asio::buffer(hello.bytes), nothrow);
  std::vector<uint8_t>().swap(hello.bytes);
  if (!ec) {
    slot.set_deadline(Timeout::idle, idle);
    co_await (pump(worker, down, upstream, slot, idle) && pump(worker, upstream, down, slot, idle));
  }
  slot.upstream = nullptr;
  close_socket(upstream);
  close_socket(down);
  conn.reset();
  // A place under max_connections is free for a waiting request.
  worker.balancer().wake_one();
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

  std::optional<Hello> hello;
  if (lt.has_passthrough()) {
    hello = co_await read_client_hello(socket, slot);
    if (hello->info.status != ClientHelloInfo::Status::ok) {
      log_failure(name, peer,
                  slot.fired != Timeout::none ? "timeout waiting for the ClientHello"
                                              : "no valid TLS ClientHello");
      close_socket(socket);
      co_return;
    }
    if (const PassthroughTarget* target = lt.find_passthrough(hello->info.sni)) {
      co_await relay(worker, socket, *snapshot, *target, std::move(*hello), slot, name);
      co_return;
    }
    if (!lt.terminates()) {
      log_failure(name, peer, fmt::format("no passthrough route for SNI \"{}\"", hello->info.sni));
      close_socket(socket);
      co_return;
    }
  }

  std::optional<TlsStream> stream;
  stream.emplace(std::move(socket), lt.context());
  slot.socket = &stream->lowest_layer();
  if (hello && !prefeed(*stream, std::move(hello->bytes))) {
    log_failure(name, peer, "out of memory");
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
