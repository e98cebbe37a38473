#include "proxy/tracing.hpp"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <algorithm>
#include <iterator>

#include "config/snapshot.hpp"
#include "proxy/host.hpp"
#include "upstream/http_get.hpp"

namespace sluice {

namespace {

// Istio names a gateway span after the route's decorator,
// "<service host>:<port>/*"; its upstreams are named
// "outbound|<port>|<subset>|<host>". Other upstreams give "<name>/*", and
// a request that reached none (no route, a local reply) "ingress", Envoy's
// operation name without a decorator.
std::string span_name(std::string_view upstream) {
  if (upstream.empty()) return "ingress";
  if (upstream.starts_with("outbound|")) {
    std::string_view rest = upstream.substr(9);
    size_t bar1 = rest.find('|');
    size_t bar2 = bar1 == std::string_view::npos ? bar1 : rest.find('|', bar1 + 1);
    if (bar2 != std::string_view::npos)
      return fmt::format("{}:{}/*", rest.substr(bar2 + 1), rest.substr(0, bar1));
  }
  return fmt::format("{}/*", upstream);
}

std::string_view or_dash(std::string_view v) {
  return v.empty() ? std::string_view("-") : v;
}

// Envoy's span tags for a downstream request (their names, string values).
telemetry::Span build_span(const RequestContext& ctx, const RequestTrace& trace,
                           std::chrono::microseconds duration,
                           std::chrono::system_clock::time_point end) {
  const RequestHead& head = ctx.request;
  telemetry::Span s;
  s.context = trace.span;
  s.name = span_name(ctx.upstream);
  if (auto state = head.headers.get("tracestate")) s.trace_state = std::string(*state);
  s.end_unix_nanos = telemetry::unix_nanos(end);
  uint64_t nanos = static_cast<uint64_t>(std::max<int64_t>(0, duration.count())) * 1000;
  s.start_unix_nanos = s.end_unix_nanos > nanos ? s.end_unix_nanos - nanos : 0;
  std::string_view request_id(trace.request_id.data(), trace.request_id_size);
  if (auto id = head.headers.get("x-request-id")) request_id = *id;
  auto add = [&s](std::string_view k, std::string v) {
    s.attributes.emplace_back(k, std::move(v));
  };
  add("component", "proxy");
  add("http.method", head.method);
  add("http.url", fmt::format("{}://{}{}", head.scheme, head.authority, head.target));
  add("url.path", std::string(head.path()));
  add("http.protocol", head.version_minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
  add("http.status_code", std::to_string(ctx.response_status));
  add("response_flags", to_string(ctx.response_flags));
  add("upstream_cluster", std::string(or_dash(ctx.upstream)));
  add("upstream_address", std::string(or_dash(ctx.endpoint)));
  add("guid:x-request-id", std::string(or_dash(request_id)));
  add("user_agent", std::string(or_dash(head.headers.get("user-agent").value_or(""))));
  add("request_size", std::to_string(ctx.bytes_received));
  add("response_size", std::to_string(ctx.bytes_sent));
  if (!ctx.route.empty()) add("route_name", std::string(ctx.route));
  s.error = ctx.response_status >= 500;
  if (s.error) add("error", "true");
  return s;
}

}  // namespace

void propagate_trace(SessionHost& host, RequestHead& head, RequestTrace& trace,
                     std::string_view generated_request_id) {
  const auto& snap = host.snapshot();
  uint32_t per_million = snap && snap->tracing ? snap->tracing->sampling_per_million : 0;
  telemetry::Extracted in = telemetry::extract(head.headers);
  trace.span = telemetry::start_span(in, per_million, host.trace_rng());
  trace.started = true;
  trace.request_id_size = std::min(generated_request_id.size(), trace.request_id.size());
  std::copy_n(generated_request_id.data(), trace.request_id_size, trace.request_id.data());
  telemetry::inject(trace.span, in, head.headers);
}

void finish_trace(SessionHost& host, const RequestContext& ctx, RequestTrace& trace) {
  const auto& snap = host.snapshot();
  const CompiledTracing* tracing = snap ? snap->tracing.get() : nullptr;
  if (tracing && tracing->export_spans) {
    if (!trace.started)
      trace.span = telemetry::start_span(telemetry::extract(ctx.request.headers),
                                         tracing->sampling_per_million, host.trace_rng());
    if (trace.span.sampled)
      host.tracer().add(build_span(ctx, trace, ctx.duration, host.wall_now()), *tracing);
  }
  trace = RequestTrace{};
}

TraceExporter::TraceExporter(SessionHost& host) : host_(host), timer_(host) {}

TraceExporter::~TraceExporter() = default;

TraceExportStats TraceExporter::stats() const {
  constexpr auto r = std::memory_order_relaxed;
  return TraceExportStats{sampled_.load(r), exported_.load(r), dropped_.load(r), requests_.load(r),
                          failures_.load(r)};
}

void TraceExporter::add(telemetry::Span span, const CompiledTracing& tracing) {
  sampled_.fetch_add(1, std::memory_order_relaxed);
  if (queue_.size() >= tracing.config.max_queued_spans) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (queue_.empty()) first_queued_ = host_.refresh_now();
  queue_.push_back(std::move(span));
  if (!running_) {
    running_ = true;
    asio::co_spawn(host_.context(), run(), asio::detached);
  } else if (waiting_ && queue_.size() >= tracing.config.max_batch_spans) {
    timer_.cancel();  // a full batch goes now
  }
}

void TraceExporter::drain() {
  draining_ = true;
  if (waiting_) timer_.cancel();
}

asio::awaitable<void> TraceExporter::run() {
  bool due = false;
  while (!queue_.empty()) {
    std::shared_ptr<const Snapshot> snap = host_.snapshot();
    const CompiledTracing* tracing = snap ? snap->tracing.get() : nullptr;
    if (!tracing || !tracing->export_spans) {
      // A reload removed the collector.
      dropped_.fetch_add(queue_.size(), std::memory_order_relaxed);
      queue_.clear();
      break;
    }
    const TracingConfig& cfg = tracing->config;
    if (!due && !draining_ && queue_.size() < cfg.max_batch_spans &&
        cfg.flush_interval.count() > 0) {
      waiting_ = true;
      due = co_await timer_.sleep_until(first_queued_ + cfg.flush_interval);
      waiting_ = false;
      continue;
    }
    due = false;
    size_t n = std::min(queue_.size(), cfg.max_batch_spans);
    HttpGetRequest request;
    request.host = tracing->host;
    request.port = tracing->port;
    request.authority = tracing->authority;
    request.target = tracing->target;
    request.timeout = cfg.export_timeout;
    request.content_type = "application/json";
    request.max_body_bytes = 64 * 1024;  // the collector's answer: partialSuccess at most
    telemetry::append_otlp_json(request.body, cfg.service_name,
                                std::span<const telemetry::Span>(queue_.data(), n));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    // The spans left (and those added meanwhile) wait at most one more interval.
    first_queued_ = host_.refresh_now();
    if (!get_) get_ = std::make_shared<HttpGet>(host_.upstream());
    requests_.fetch_add(1, std::memory_order_relaxed);
    HttpGetResult result = co_await HttpGet::run(get_, std::move(request));
    if (result.ok && result.status >= 200 && result.status < 300) {
      exported_.fetch_add(n, std::memory_order_relaxed);
    } else {
      failures_.fetch_add(1, std::memory_order_relaxed);
      dropped_.fetch_add(n, std::memory_order_relaxed);
      if (result.ok)
        host_.log(LogLevel::warning, "trace export: collector answered {}", result.status);
      else
        host_.log(LogLevel::warning, "trace export failed: {}", result.error);
    }
  }
  running_ = false;
}

}  // namespace sluice
