#pragma once
// What the upstream layer needs of the worker it runs on: the loop (I/O,
// deadlines, clocks, RNG), the worker's connection pool and its load
// balancer. Never the worker itself: upstream/ sits below the runtime.

#include <asio/io_context.hpp>
#include <random>

#include "net/loop.hpp"
#include "upstream/balancer.hpp"
#include "upstream/h2_pool.hpp"
#include "upstream/pool.hpp"

namespace sluice {

class UpstreamContext {
 public:
  explicit UpstreamContext(Loop& loop) : loop_(loop) {}
  UpstreamContext(const UpstreamContext&) = delete;
  UpstreamContext& operator=(const UpstreamContext&) = delete;

  Loop& loop() { return loop_; }
  asio::io_context& context() { return loop_.context(); }
  ConnectionPool& pool() { return pool_; }
  Balancer& balancer() { return balancer_; }
  H2Pool& h2() { return h2_; }
  std::mt19937_64& rng() { return loop_.rng(); }
  // The gateway's injectable clock: ejections, warm-up, health.
  TimePoint now() const { return loop_.clock_now(); }

 private:
  Loop& loop_;
  ConnectionPool pool_;
  Balancer balancer_;
  H2Pool h2_;  // HTTP/2 upstream connections, multiplexed
};

}  // namespace sluice
