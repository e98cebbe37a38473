#include "proxy/mirror.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <array>

#include "http/serializer.hpp"
#include "policy/policy.hpp"
#include "upstream/cluster.hpp"
#include "upstream/connect.hpp"

namespace sluice {

namespace {

using asio::awaitable;

// A mirror's whole exchange is bounded; its answer is not waited for.
constexpr auto kMirrorTimeout = std::chrono::seconds(10);

// Sends a mirrored request and discards the answer. Owns everything it uses
// (the snapshot keeps the upstream and its TLS context alive).
awaitable<void> run_mirror(SessionHost& worker, std::shared_ptr<const Snapshot> snap,
                           uint32_t upstream, int64_t endpoint, std::string wire) {
  // A connection slot bounds it with a deadline and lets drain and
  // force-close see it, like any downstream connection.
  ConnectionSlot slot(nullptr);
  worker.attach(&slot);
  ++worker.mirrors_in_flight;
  slot.idle = false;
  slot.set_cap(kMirrorTimeout);
  const CompiledUpstream& up = snap->upstreams[upstream];
  Lease lease = co_await open_connection(worker.upstream(), slot, up, endpoint);
  if (lease.conn) {
    UpstreamConnection& c = *lease.conn;
    slot.upstream = &c.socket;
    auto [ec, n] = co_await write_upstream(c, asio::buffer(wire));
    // The request said `connection: close`: drain the answer until the
    // upstream closes, so it is not reset mid-response.
    std::array<char, 2048> sink;
    while (!ec) std::tie(ec, n) = co_await read_upstream(c, asio::buffer(sink));
    slot.upstream = nullptr;
  }
  lease.conn.reset();
  --worker.mirrors_in_flight;
  worker.detach(&slot);
}

}  // namespace

void start_mirrors(SessionHost& worker, const std::shared_ptr<const Snapshot>& snap,
                   const ResolvedRoute& rr, const RequestHead& head, http::Forwarding fwd,
                   const std::string& body, std::string_view client_ip) {
  // The same sanitised, rewritten head as the upstream gets (forwarding
  // headers replaced, trailers not folded in), with the shadow host, the
  // whole body and a close.
  std::string shadow = policy::shadow_authority(head.authority);
  fwd.host = shadow;
  if (fwd.chunked || fwd.content_length || !body.empty()) fwd.content_length = body.size();
  fwd.chunked = false;
  fwd.close = true;
  std::string wire;  // the same bytes for every mirror, built on first use
  for (size_t i = 0; i < rr.mirrors.size(); ++i) {
    if (!policy::draw(rr.mirror_percentages[i], worker.rng())) continue;
    if (worker.mirrors_in_flight >= SessionHost::kMaxMirrors) return;  // shed, never queue
    const ResolvedDestination& m = rr.mirrors[i];
    const CompiledUpstream& up = snap->upstreams[m.upstream];
    int64_t ep = pick_endpoint(worker.upstream(), up, up.sets[m.set], PickRequest{&head, client_ip})
                     .endpoint;
    if (ep < 0) continue;
    if (wire.empty()) {
      http::append_forwarded_request_head(wire, head, fwd);
      wire += body;
    }
    asio::co_spawn(worker.context(), run_mirror(worker, snap, m.upstream, ep, wire),
                   asio::detached);
  }
}

}  // namespace sluice
