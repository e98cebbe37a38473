#pragma once
// Tracing on the request path and the per-worker span exporter.
//
// A session calls propagate_trace() where it prepares the upstream head
// (beside x-request-id) and finish_trace() when it logs the request. Trace
// headers are always propagated (Istio does so with or without a
// collector); a span is built only when it is sampled and a collector is
// configured.
//
// The exporter: finished spans wait in a bounded per-worker queue; one
// coroutine on the worker's loop POSTs them in batches as OTLP/HTTP JSON
// through the upstream-connection layer (HttpGet), one request at a time.
// A full queue drops the new span and a failed POST drops its batch, each
// counted: a collector that is down or slow costs counters, never a
// request's latency. Spans queued before a reload go to the collector of
// the snapshot current when they are sent.

#include <array>
#include <asio/awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "net/loop.hpp"
#include "sluice/hooks.hpp"
#include "sluice/telemetry.hpp"
#include "telemetry/trace.hpp"

namespace sluice {

class SessionHost;
class HttpGet;
struct CompiledTracing;

// One request's trace state, kept by the session from propagation to log.
struct RequestTrace {
  bool started = false;
  telemetry::SpanContext span;
  // The x-request-id the gateway would add (a copy: the exchange that made
  // it is gone by the time the request is logged); size 0 when none.
  std::array<char, 36> request_id{};
  size_t request_id_size = 0;
};

// Reads the incoming context from `head`, decides sampling, gives the
// gateway's span an id and rewrites the trace headers of `head` for the
// upstream. `generated_request_id`: x-request-id sent when the request has
// none (a span attribute).
void propagate_trace(SessionHost& host, RequestHead& head, RequestTrace& trace,
                     std::string_view generated_request_id);

// Builds the request's span and queues it, when sampled and a collector is
// configured; a request that never reached propagate_trace (a local reply)
// gets its context from its headers here. The span ends now on the wall
// clock and lasts ctx.duration (the session measured it on the gateway's
// clock). Leaves `trace` reset.
void finish_trace(SessionHost& host, const RequestContext& ctx, RequestTrace& trace);

class TraceExporter {
 public:
  explicit TraceExporter(SessionHost& host);
  ~TraceExporter();
  TraceExporter(const TraceExporter&) = delete;
  TraceExporter& operator=(const TraceExporter&) = delete;

  // On the worker's thread.
  void add(telemetry::Span span, const CompiledTracing& tracing);
  // The worker drains: what is queued is sent now, without waiting for the
  // flush interval, and later spans likewise.
  void drain();

  // Any thread.
  TraceExportStats stats() const;

 private:
  asio::awaitable<void> run();

  SessionHost& host_;
  std::vector<telemetry::Span> queue_;
  TimePoint first_queued_{};
  ClockTimer timer_;
  std::shared_ptr<HttpGet> get_;
  bool running_ = false;
  bool waiting_ = false;
  bool draining_ = false;
  std::atomic<uint64_t> sampled_{0}, exported_{0}, dropped_{0}, requests_{0}, failures_{0};
};

}  // namespace sluice
