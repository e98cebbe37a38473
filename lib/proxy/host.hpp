#pragma once
// What a downstream session needs of the worker it runs on: the loop, the
// upstream context, the current snapshot, the host's hooks and logger, and
// whether the worker is draining. The runtime's Worker is a SessionHost; proxy/ never
// sees the Worker.

#include <fmt/format.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "config/snapshot.hpp"
#include "net/loop.hpp"
#include "proxy/tracing.hpp"
#include "security/redis.hpp"
#include "sluice/hooks.hpp"
#include "sluice/log.hpp"
#include "telemetry/metrics.hpp"
#include "upstream/context.hpp"

namespace sluice {

namespace detail {
// Whether a body hook is overridden, learnt from the first call on a worker:
// Hooks' defaults mark the chunk, and the worker stops calling them.
struct BodyHookProbe {
  static bool unhandled(const BodyChunk& chunk) { return chunk.unhandled_; }
};
}  // namespace detail

class ParkedConnections;

class SessionHost : public Loop {
 public:
  // `hooks`: this worker's (shared or its own); `logger` may be null.
  SessionHost(asio::io_context& ctx, const std::function<TimePoint()>& clock, uint64_t seed,
              std::shared_ptr<Hooks> hooks, std::shared_ptr<Logger> logger,
              size_t max_series = 10000, bool metrics = true)
      : Loop(ctx, clock, seed),
        request_metrics_(telemetry::process_labels().unknown(), max_series),
        tcp_metrics_(telemetry::process_labels().unknown(), max_series),
        metrics_on_(metrics),
        hooks_(std::move(hooks)),
        logger_(std::move(logger)),
        trace_rng_(seed ^ 0x7472616365ULL) {}
  ~SessionHost() override;

  UpstreamContext& upstream() { return upstream_; }
  // The snapshot new requests are served by.
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  // The host program's hooks; null when it has none.
  Hooks* hooks() const { return hooks_.get(); }

  // Whether this worker's hooks override on_request_body / on_response_body.
  // Asked before a body's framing is chosen; the first time, the hook is
  // called once with an empty chunk to find out (its default marks it).
  enum class Body { request, response };
  bool body_hook(Body which, RequestContext& ctx);

  // The library's messages go to the host's Logger, never to stderr; the
  // text is formatted only when there is a logger.
  template <typename... Args>
  void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
    if (logger_) log_formatted(level, format, fmt::make_format_args(args...));
  }
  bool draining() const { return draining_; }
  // A UUID v4 (36 characters) from the loop's seedable RNG.
  void make_request_id(char (&out)[36]);

  // Wall-clock time for JWT exp/nbf and rate-limit windows
  // (GatewayOptions::wall_clock, else system_clock).
  std::chrono::system_clock::time_point wall_now() const {
    return wall_clock_ ? wall_clock_() : std::chrono::system_clock::now();
  }
  // This worker's Redis client for the global rate limit (null without
  // one), on this worker's loop. A reload naming another address gets a new
  // client; requests in flight keep theirs by holding the pointer.
  std::shared_ptr<security::RedisClient> redis(const CompiledRateLimits& rate_limits);

  // The counters of the listener named `listener` (null when not kept).
  virtual ConnectionCounters* listener_counters(std::string_view listener) { return nullptr; }

  // This worker's istio_* series: recorded here without a lock, read by
  // Gateway::stats() from any thread.
  telemetry::RequestMetrics& request_metrics() { return request_metrics_; }
  const telemetry::RequestMetrics& request_metrics() const { return request_metrics_; }
  telemetry::TcpMetrics& tcp_metrics() { return tcp_metrics_; }
  const telemetry::TcpMetrics& tcp_metrics() const { return tcp_metrics_; }
  bool metrics_on() const { return metrics_on_; }

  // Trace ids and the sampling draw: a generator of their own, seeded from
  // the worker's seed, so tracing leaves the draws of weights, faults and
  // mirrors (rng()) as they were and a fixed seed still gives one run.
  std::mt19937_64& trace_rng() { return trace_rng_; }
  // This worker's span exporter (proxy/tracing.hpp).
  TraceExporter& tracer() { return tracer_; }

  // Mirrored requests in flight on this worker; more are dropped.
  static constexpr size_t kMaxMirrors = 256;
  size_t mirrors_in_flight = 0;

  // This worker's parked connections (proxy/park.hpp).
  ParkedConnections& parked();

  // Access logs: this worker's shard in every writer, and its line buffer.
  size_t log_shard() const { return log_shard_; }
  std::string access_log_line;

 protected:
  std::shared_ptr<const Snapshot> snapshot_;
  void log_formatted(LogLevel level, fmt::string_view format, fmt::format_args args);

  telemetry::RequestMetrics request_metrics_;
  telemetry::TcpMetrics tcp_metrics_;
  bool metrics_on_;
  std::shared_ptr<Hooks> hooks_;
  std::shared_ptr<Logger> logger_;
  std::function<std::chrono::system_clock::time_point()> wall_clock_;
  std::shared_ptr<security::RedisClient> redis_;
  enum class Known : uint8_t { unknown, yes, no };
  Known body_hooks_[2] = {Known::unknown, Known::unknown};
  bool draining_ = false;
  size_t log_shard_ = 0;  // the Worker's index
  UpstreamContext upstream_{*this};
  std::mt19937_64 trace_rng_;
  TraceExporter tracer_{*this};  // after upstream_, which its exports use
  // Shared with its pending wait, which may outlive the worker on a host's
  // io_context.
  std::shared_ptr<ParkedConnections> parked_;
};

}  // namespace sluice
