// libFuzzer target: the whole downstream session. A real sluice::Gateway
// runs on this process's io_context with one listener on 127.0.0.1; its only
// upstream is a scripted server on the same io_context. Each input is
//
//   byte 0   flags: bits 0-1 path normalisation, bit 2 the client half-closes
//            after its bytes, bit 3 the upstream closes after its reply,
//            bit 4 the upstream answers on accept instead of after a read,
//            bits 5-7 how the client's bytes are split into writes
//   byte 1   how the upstream's reply is split into writes
//   rest     client bytes, then "@@UPSTREAM@@", then the upstream's reply
//            (sent whole to every connection the gateway opens)
//
// The loop runs until nothing happens for a few milliseconds (bounded), then
// both sides close and the loop runs dry again so the session ends. Beyond
// sanitizer reports, the edge invariant "framing is derived from the parsed
// message" is checked on the wire: what reached the upstream parses as
// HTTP/1 requests and what reached the client as HTTP/1 responses, without
// error (a prefix is fine: the input may stop anywhere). SLUICE_FUZZ_TRACE=1
// prints both sides' bytes for each input.

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "http/parser.hpp"
#include "sluice/gateway.hpp"

namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;
using sluice::fuzz::Fragmenter;

constexpr std::string_view kSeparator = "@@UPSTREAM@@";
constexpr auto kQuiet = 4ms;       // no event for this long: the exchange is over
constexpr auto kMaxInput = 300ms;  // per phase, whatever happens

// Handlers own their state (shared_ptr), so one still pending when an input
// ends never points into a later input's data.
struct UpstreamConn {
  explicit UpstreamConn(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::string script;  // this connection's copy of the reply
  Fragmenter frag{0};
  bool close_after = false;
  std::string received;
  bool replied = false;
  char buf[4096];
};

struct Client {
  explicit Client(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::string out;  // what the client sends
  bool writing = false;
  std::string received;
  bool eof = false;
  char buf[8192];
};

void read_client(const std::shared_ptr<Client>& c) {
  c->socket.async_read_some(asio::buffer(c->buf), [c](asio::error_code ec, size_t n) {
    if (ec) {
      c->eof = true;
      return;
    }
    c->received.append(c->buf, n);
    read_client(c);
  });
}

struct Harness {
  asio::io_context io;
  tcp::acceptor upstream{io};
  sluice::Gateway* gateway = nullptr;  // never destroyed: see the note in init()
  uint16_t gateway_port = 0;
  int mode = -1;  // PathNormalization currently applied

  // Per input.
  std::string reply;
  Fragmenter reply_frag{0};
  bool close_after_reply = false;
  bool reply_on_accept = false;
  std::vector<std::shared_ptr<UpstreamConn>> conns;

  sluice::GatewayConfig config(sluice::PathNormalization normalization) {
    using namespace sluice;
    GatewayConfig c;
    c.path_normalization = normalization;
    c.limits.max_request_header_bytes = 4096;
    c.limits.max_request_headers = 30;
    c.limits.max_response_header_bytes = 4096;
    c.limits.max_response_headers = 30;
    c.limits.stream_idle_timeout = 2s;
    c.limits.request_header_timeout = 2s;
    c.listeners.push_back({.name = "main", .address = "127.0.0.1", .port = 0, .router = "main"});
    UpstreamConfig up{.name = "backend"};
    up.endpoints.push_back({.address = "127.0.0.1", .port = upstream.local_endpoint().port()});
    up.pool.connect_timeout = 200ms;
    c.upstreams.push_back(up);

    Destination backend{.upstream = "backend"};
    std::vector<Route> routes;
    routes.push_back({.name = "direct",
                      .matches = {Matcher{}.path_prefix("/direct")},
                      .direct_response = DirectResponse{200, "direct\n"}});
    routes.push_back({.name = "redirect",
                      .matches = {Matcher{}.path_prefix("/redirect")},
                      .redirect = Redirect{.uri = "/moved", .code = 302}});
    Route mirror{
        .name = "mirror", .matches = {Matcher{}.path_prefix("/mirror")}, .destinations = {backend}};
    mirror.mirrors.push_back({.upstream = "backend", .percentage = 100});
    routes.push_back(mirror);
    Route retry{
        .name = "retry", .matches = {Matcher{}.path_prefix("/retry")}, .destinations = {backend}};
    retry.retries.attempts = 2;
    retry.retries.retry_on = "5xx,reset,connect-failure";
    retry.retries.backoff_base = 1ms;
    retry.timeout = 250ms;
    routes.push_back(retry);
    Route rewrite{.name = "rewrite",
                  .matches = {Matcher{}.path_regex("/re/(.*)")},
                  .destinations = {backend}};
    rewrite.rewrite = Rewrite{.uri_regex = std::make_pair("/re/(.*)", "/\\1")};
    routes.push_back(rewrite);
    Route all{.name = "all", .destinations = {backend}};
    all.request_headers.set = {{"x-fuzz", "1"}};
    all.request_headers.remove = {"x-remove"};
    all.response_headers.add = {{"x-fuzz-response", "1"}};
    routes.push_back(all);
    c.routers.push_back(
        {.name = "main",
         .virtual_hosts = {{.name = "all", .domains = {"*"}, .routes = std::move(routes)}}});
    return c;
  }

  void init() {
    upstream.open(tcp::v4());
    upstream.set_option(tcp::acceptor::reuse_address(true));
    upstream.bind({asio::ip::address_v4::loopback(), 0});
    upstream.listen();
    accept();
    sluice::GatewayOptions options;
    options.seed = 1;
    // Leaked on purpose: destroying a Gateway on a host context that is not
    // running waits for a drain nobody runs. The process ends right after.
    gateway = new sluice::Gateway(io, options);
    apply(sluice::PathNormalization::base);
  }

  void apply(sluice::PathNormalization normalization) {
    if (mode == static_cast<int>(normalization)) return;
    sluice::Status s = gateway->apply(config(normalization));
    FUZZ_CHECK(s.ok(), "apply failed: %s", s.error().to_string().c_str());
    mode = static_cast<int>(normalization);
    gateway_port = gateway->port("main");
    run_until_quiet();
  }

  void accept() {
    auto conn = std::make_shared<UpstreamConn>(io);
    upstream.async_accept(conn->socket, [this, conn](asio::error_code ec) {
      if (ec) return;
      conn->script = reply;
      conn->frag = reply_frag;
      conn->close_after = close_after_reply;
      conns.push_back(conn);
      if (reply_on_accept) send_reply(conn);
      read_upstream(conn);
      accept();
    });
  }

  void read_upstream(const std::shared_ptr<UpstreamConn>& conn) {
    conn->socket.async_read_some(asio::buffer(conn->buf),
                                 [this, conn](asio::error_code ec, size_t n) {
                                   if (ec) return;
                                   conn->received.append(conn->buf, n);
                                   if (!conn->replied) send_reply(conn);
                                   read_upstream(conn);
                                 });
  }

  // Writes the script in fragments, one after another.
  void send_reply(const std::shared_ptr<UpstreamConn>& conn) {
    conn->replied = true;
    write_from(conn, 0);
  }
  void write_from(const std::shared_ptr<UpstreamConn>& conn, size_t off) {
    if (off >= conn->script.size()) {
      asio::error_code ignored;
      if (conn->close_after) conn->socket.shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    size_t n = conn->frag.next(conn->script.size() - off);
    asio::async_write(conn->socket, asio::buffer(conn->script.data() + off, n),
                      [this, conn, off, n](asio::error_code ec, size_t) {
                        if (!ec) write_from(conn, off + n);
                      });
  }

  // Runs handlers until none arrives for kQuiet, or `budget` is spent.
  void run_until_quiet(std::chrono::milliseconds budget = kMaxInput) {
    auto deadline = std::chrono::steady_clock::now() + budget;
    io.restart();
    while (std::chrono::steady_clock::now() < deadline) {
      if (io.poll() > 0) continue;
      if (io.run_one_for(kQuiet) == 0) break;
    }
  }
};

Harness& harness() {
  static Harness* h = [] {
    auto* p = new Harness;
    p->init();
    return p;
  }();
  return *h;
}

// Parses what one side received; fails on a malformed message. Requests
// tell the response check which answers have no body (HEAD).
void check_stream(std::string_view wire, sluice::http::Parser::Kind kind, const char* what,
                  std::string_view input_client, std::string_view input_reply) {
  using sluice::http::ParseError;
  using sluice::http::Parser;
  Parser p(kind, {.max_header_bytes = 1 << 20, .max_headers = 10000});
  // A 101 to an upgrade request starts a tunnel (whether the request asked
  // for one is checked by the integration tests, not here).
  if (kind == Parser::Kind::response) p.expect_upgrade(true);
  size_t off = 0;
  while (off < wire.size()) {
    bool had_head = p.head_done();
    size_t n = p.feed(wire.data() + off, wire.size() - off);
    off += n;
    if (p.error() != ParseError::none) {
      std::fprintf(stderr, "\n%s (%s):\n", what, std::string(p.error_reason()).c_str());
      sluice::fuzz::print_escaped(wire, 3000);
      std::fprintf(stderr, "\nclient sent:\n");
      sluice::fuzz::print_escaped(input_client, 3000);
      std::fprintf(stderr, "\nupstream script:\n");
      sluice::fuzz::print_escaped(input_reply, 3000);
      FUZZ_CHECK(false, "%s is not valid HTTP/1", what);
    }
    if (p.message_done()) {
      if (p.upgrade()) return;  // a tunnel: the rest is not HTTP
      p.next_message();
    } else if (n == 0 && had_head == p.head_done()) {
      return;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > 64 * 1024) return 0;
  Harness& h = harness();
  uint8_t flags = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  size_t sep = rest.find(kSeparator);
  std::string_view client_bytes = rest.substr(0, sep);
  std::string_view reply =
      sep == std::string_view::npos ? std::string_view() : rest.substr(sep + kSeparator.size());

  h.apply(static_cast<sluice::PathNormalization>(flags & 3));
  h.reply.assign(reply);
  h.reply_frag = Fragmenter(data[1]);
  h.close_after_reply = flags & 8;
  h.reply_on_accept = flags & 16;
  h.conns.clear();

  // The client: connect, write the bytes in pieces, read whatever comes.
  auto client = std::make_shared<Client>(h.io);
  // Asynchronous: libFuzzer's SIGALRM would interrupt a blocking connect.
  asio::error_code ec;
  bool connected = false;
  client->socket.async_connect({asio::ip::address_v4::loopback(), h.gateway_port},
                               [&ec, &connected, client](asio::error_code e) {
                                 ec = e;
                                 connected = true;
                               });
  h.io.restart();
  auto connect_deadline = std::chrono::steady_clock::now() + 2s;
  while (!connected && std::chrono::steady_clock::now() < connect_deadline)
    if (h.io.poll() == 0) h.io.run_one_for(1ms);
  FUZZ_CHECK(connected && !ec, "connect to the gateway: %s",
             connected ? ec.message().c_str() : "timed out");
  client->socket.set_option(tcp::no_delay(true), ec);
  read_client(client);

  // Each piece is written asynchronously and the loop runs until it is out:
  // the gateway shares this thread, so a blocking write could wait forever
  // on a gateway that (rightly) stopped reading.
  client->out.assign(client_bytes);
  Fragmenter frag(static_cast<uint8_t>(flags >> 5));
  auto deadline = std::chrono::steady_clock::now() + kMaxInput;
  size_t off = 0;
  while (off < client->out.size() && !client->eof) {
    size_t n = frag.next(client->out.size() - off);
    client->writing = true;
    asio::async_write(client->socket, asio::buffer(client->out.data() + off, n),
                      [client](asio::error_code e, size_t) {
                        client->writing = false;
                        if (e) client->eof = true;
                      });
    h.io.restart();
    while (client->writing && std::chrono::steady_clock::now() < deadline)
      if (h.io.poll() == 0) h.io.run_one_for(1ms);
    if (client->writing) break;
    off += n;
  }
  if (flags & 4) client->socket.shutdown(tcp::socket::shutdown_send, ec);
  h.run_until_quiet();

  // Tear down both sides and let the session finish.
  client->socket.close(ec);
  for (auto& c : h.conns) c->socket.close(ec);
  h.run_until_quiet();

  static const bool trace = std::getenv("SLUICE_FUZZ_TRACE") != nullptr;
  if (trace) {
    for (auto& c : h.conns) {
      std::fprintf(stderr, "--- upstream connection received:\n");
      sluice::fuzz::print_escaped(c->received, 4000);
      std::fprintf(stderr, "\n");
    }
    std::fprintf(stderr, "--- client received:\n");
    sluice::fuzz::print_escaped(client->received, 4000);
    std::fprintf(stderr, "\n");
  }
  for (auto& c : h.conns)
    check_stream(c->received, sluice::http::Parser::Kind::request, "what the gateway sent upstream",
                 client_bytes, reply);
  // HEAD answers have no body whatever their headers say; without tracking
  // which answer is which, skip the client-side check when a HEAD was sent.
  if (client_bytes.find("HEAD") == std::string_view::npos)
    check_stream(client->received, sluice::http::Parser::Kind::response,
                 "what the gateway sent the client", client_bytes, reply);
  h.conns.clear();
  return 0;
}
