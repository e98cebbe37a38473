#pragma once
// What a downstream session needs of the worker it runs on: the loop, the
// upstream context, the current snapshot, the host's hooks and whether the
// worker is draining. The runtime's Worker is a SessionHost; proxy/ never
// sees the Worker.

#include <cstddef>
#include <memory>

#include "config/snapshot.hpp"
#include "net/loop.hpp"
#include "sluice/hooks.hpp"
#include "upstream/context.hpp"

namespace sluice {

class SessionHost : public Loop {
 public:
  SessionHost(asio::io_context& ctx, const std::function<TimePoint()>& clock, uint64_t seed,
              std::shared_ptr<Hooks> hooks)
      : Loop(ctx, clock, seed), hooks_(std::move(hooks)) {}

  UpstreamContext& upstream() { return upstream_; }
  // The snapshot new requests are served by.
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  // The host program's hooks; null when it has none.
  Hooks* hooks() const { return hooks_.get(); }
  bool draining() const { return draining_; }
  // A UUID v4 (36 characters) from the loop's seedable RNG.
  void make_request_id(char (&out)[36]);

  // Mirrored requests in flight on this worker; more are dropped.
  static constexpr size_t kMaxMirrors = 256;
  size_t mirrors_in_flight = 0;

 protected:
  std::shared_ptr<const Snapshot> snapshot_;
  std::shared_ptr<Hooks> hooks_;
  bool draining_ = false;
  UpstreamContext upstream_{*this};
};

}  // namespace sluice
