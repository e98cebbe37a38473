#include "upstream/health.hpp"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <array>
#include <optional>

#include "http/parser.hpp"
#include "upstream/cluster.hpp"
#include "upstream/connect.hpp"
#include "upstream/context.hpp"

namespace sluice {

namespace {
// A health answer's head is small; a longer one fails the probe.
constexpr size_t kMaxProbeHeadBytes = 8 * 1024;
constexpr size_t kMaxProbeHeaders = 64;
}  // namespace

// What one probe loop owns; stop() reaches it through Control.
struct ProbeIo {
  explicit ProbeIo(Loop& loop) : timer(loop) {}
  ClockTimer timer;  // between probes, on the gateway's clock
  // The probe's deadline and cancellation, seen by the worker like a mirror.
  ConnectionSlot slot{nullptr};
};

struct HealthChecker::Control {
  bool stopped = false;
  std::vector<std::shared_ptr<ProbeIo>> probes;
};

namespace {

// One probe: true when the endpoint answered 200 within the timeout. It
// connects through the upstream-connection layer (TLS origination included)
// but outside the connection limits: traffic filling the pool must not make
// its endpoints look dead.
asio::awaitable<bool> probe_once(UpstreamContext& ctx, std::shared_ptr<ProbeIo> io,
                                 const CompiledUpstream& up, int64_t endpoint, std::string request,
                                 std::chrono::milliseconds timeout) {
  ConnectionSlot& slot = io->slot;
  ctx.loop().attach(&slot);
  slot.idle = false;
  slot.set_cap(timeout);  // bounds the connect and handshake too
  Lease lease = co_await open_connection(ctx, slot, up, endpoint, {.limited = false});
  bool ok = false;
  if (lease.conn) {
    UpstreamConnection& c = *lease.conn;
    slot.upstream = &c.socket;
    auto [ec, n] = co_await write_upstream(c, asio::buffer(request));
    // The status comes from the project's response parser; anything it
    // refuses (or a head over the bound, or a close before the head ends)
    // is a failed probe. Only the head is read: connection: close was asked.
    http::Parser parser(http::Parser::Kind::response,
                        http::ParserLimits{.max_header_bytes = kMaxProbeHeadBytes,
                                           .max_headers = kMaxProbeHeaders});
    std::array<char, 1024> buf;
    size_t total = 0;
    while (!ec && !parser.head_done() && parser.error() == http::ParseError::none) {
      std::tie(ec, n) = co_await read_upstream(c, asio::buffer(buf));
      if (ec || n == 0) break;
      total += n;
      // Bytes past the final head (body, or whatever follows) are not needed.
      for (size_t off = 0; off < n;) {
        size_t used = parser.feed(buf.data() + off, n - off);
        if (parser.head_done() && parser.response().status < 200) {
          parser.next_message();  // 1xx: the final answer follows
        } else if (used == 0 || parser.head_done()) {
          break;
        }
        off += used;
      }
      if (total > kMaxProbeHeadBytes && !parser.head_done()) break;
    }
    ok = parser.head_done() && parser.error() == http::ParseError::none &&
         parser.response().status == 200;
    slot.upstream = nullptr;
  }
  lease.conn.reset();
  slot.clear_caps();
  ctx.loop().detach(&slot);
  co_return ok;
}

asio::awaitable<void> probe_loop(UpstreamContext& ctx,
                                 std::shared_ptr<HealthChecker::Control> control,
                                 std::shared_ptr<ProbeIo> io, UpstreamList keep,
                                 const CompiledUpstream& up, int64_t endpoint,
                                 std::shared_ptr<EndpointState> ep) {
  const HealthCheck& hc = *up.config.health_check;
  std::string host = hc.host.empty() ? ep->key : hc.host;
  std::string request = fmt::format(
      "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: sluice-health-check\r\nconnection: close\r\n\r\n",
      hc.path, host);
  while (!control->stopped) {
    bool ok = co_await probe_once(ctx, io, up, endpoint, request, hc.timeout);
    if (control->stopped) break;
    if (ok) {
      ep->check_failures = 0;
      if (++ep->check_successes >= hc.healthy_threshold) {
        ep->healthy.store(true, std::memory_order_relaxed);
        ep->ejected_until.store(EndpointState::kNever, std::memory_order_relaxed);
      }
    } else {
      ep->check_successes = 0;
      if (++ep->check_failures >= hc.unhealthy_threshold)
        ep->healthy.store(false, std::memory_order_relaxed);
    }
    co_await io->timer.sleep_for(hc.interval);
  }
}

}  // namespace

HealthChecker::HealthChecker(UpstreamContext& ctx, UpstreamList upstreams)
    : control_(std::make_shared<Control>()) {
  for (const auto& up : *upstreams) {
    if (!up.config.health_check) continue;
    auto cluster = up.state ? up.state : std::make_shared<ClusterState>(up.config.name);
    auto states = cluster->resolve(up);
    for (size_t i = 0; i < up.endpoints.size(); ++i) {
      auto io = std::make_shared<ProbeIo>(ctx.loop());
      control_->probes.push_back(io);
      asio::co_spawn(
          ctx.context(),
          probe_loop(ctx, control_, io, upstreams, up, static_cast<int64_t>(i), states[i]),
          asio::detached);
    }
  }
}

HealthChecker::~HealthChecker() {
  stop();
}

void HealthChecker::stop() {
  control_->stopped = true;
  for (auto& io : control_->probes) {
    io->timer.cancel();
    io->slot.interrupt();
  }
  control_->probes.clear();
}

}  // namespace sluice
