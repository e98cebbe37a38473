#pragma once
// Trace context propagation and spans, without I/O: W3C `traceparent` /
// `tracestate` and B3 (the `x-b3-*` headers and the single `b3` header) are
// read from a request, a sampling decision is made, the gateway's span gets
// a fresh id, and the forwarded request carries that span as its parent.
// Finished spans are encoded as an OTLP/HTTP JSON ExportTraceServiceRequest.
//
// Precedence when several formats arrive (one context is continued, and
// every format that arrived is rewritten from it so they agree):
//   1. a valid `traceparent` (Envoy's OpenTelemetry tracer, which Istio's
//      `opentelemetry` provider configures, reads only W3C);
//   2. the single `b3` header, over the multi headers (the B3 spec and
//      Envoy's Zipkin extractor: single wins when both arrive);
//   3. `x-b3-traceid` / `x-b3-spanid` (with `x-b3-sampled`, `x-b3-flags`).
// An invalid header of the chosen format falls through to the next one.
// A sampling decision arrives with the context (traceparent's flag, B3's
// sampled state or debug flag, a lone `x-b3-sampled` or `b3: 0`); only
// without one does the configured percentage decide.

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/request.hpp"

namespace sluice::telemetry {

// 128-bit trace id; all-zero is invalid. A 64-bit B3 id has high == 0 and
// is kept 64-bit in the B3 headers it goes out in.
struct TraceId {
  uint64_t high = 0;
  uint64_t low = 0;
  bool valid() const { return high != 0 || low != 0; }
  bool operator==(const TraceId&) const = default;
};

// Lower-case hex, fixed width (32 and 16 characters).
std::string to_hex(const TraceId& id);
std::string to_hex(uint64_t span_id);
// Fixed-width lower-case hex (both W3C and B3 say lower-hex); none on a
// wrong length or any other character.
std::optional<uint64_t> parse_hex64(std::string_view hex);
std::optional<TraceId> parse_trace_id(std::string_view hex);  // 16 or 32 digits

// A parent context as it arrived.
struct ParentContext {
  TraceId trace_id;
  uint64_t span_id = 0;
  std::optional<bool> sampled;  // none: the sender deferred the decision
  bool trace_id_64 = false;     // B3 sent 16 hex digits
};

// traceparent version 00: "00-<32 hex>-<16 hex>-<2 hex>", ids non-zero.
// Version ff and other malformed values are rejected; a higher version is
// read by its first four fields, as W3C asks of parsers.
std::optional<ParentContext> parse_traceparent(std::string_view value);
// b3: "<trace>-<span>[-<sampling>[-<parent span>]]" or just "<sampling>"
// (0, 1 or d). `decision_only` is set for the lone sampling form.
std::optional<ParentContext> parse_b3_single(std::string_view value, bool& decision_only);

enum class TraceFormat : uint8_t { none, w3c, b3_single, b3_multi };

// What a request carried, after precedence.
struct Extracted {
  TraceFormat format = TraceFormat::none;  // where `parent` came from
  std::optional<ParentContext> parent;
  std::optional<bool> sampled;  // the decision that arrived, with or without ids
  bool had_b3_single = false;   // a `b3` header arrived (rewritten on the way out)
  bool had_b3_multi = false;    // an `x-b3-*` header arrived
};
Extracted extract(const Headers& headers);

// The gateway's span for one request.
struct SpanContext {
  TraceId trace_id;
  uint64_t span_id = 0;
  uint64_t parent_span_id = 0;  // 0: the gateway starts the trace
  bool sampled = false;
  bool trace_id_64 = false;
};

// The decision that arrived, else a draw of `parts_per_million` on `rng`;
// then new ids (trace id only without a parent) from `rng`.
SpanContext start_span(const Extracted& in, uint32_t parts_per_million, std::mt19937_64& rng);

// The forwarded request's trace headers: `traceparent` always (this span as
// the parent), B3 rewritten in each form that arrived; `tracestate` is left
// as it came.
void inject(const SpanContext& span, const Extracted& in, Headers& headers);

// One finished span, owning its text (it waits in the export queue).
struct Span {
  SpanContext context;
  std::string name;
  std::string trace_state;  // as received
  uint64_t start_unix_nanos = 0;
  uint64_t end_unix_nanos = 0;
  std::vector<std::pair<std::string, std::string>> attributes;  // string values
  bool error = false;                                           // status ERROR (5xx)
};

// Appends an ExportTraceServiceRequest (OTLP/HTTP JSON): one resourceSpans
// with service.name = `service_name`, one scopeSpans, the spans as SERVER
// spans. Ids are lower-case hex, times decimal strings of Unix nanoseconds.
void append_otlp_json(std::string& out, std::string_view service_name, std::span<const Span> spans);

// Nanoseconds since the Unix epoch.
inline uint64_t unix_nanos(std::chrono::system_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

}  // namespace sluice::telemetry
