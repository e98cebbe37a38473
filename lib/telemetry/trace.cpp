#include "telemetry/trace.hpp"

#include <fmt/format.h>

#include "http/random.hpp"
#include "http/tokens.hpp"

namespace sluice::telemetry {

namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_hex(std::string& out, uint64_t v, int digits) {
  // Into a buffer first: one append instead of a capacity check per digit
  // (every request's traceparent holds 48 digits).
  char buf[16];
  for (int i = digits - 1; i >= 0; --i, v >>= 4) buf[i] = kHex[v & 0xf];
  out.append(buf, static_cast<size_t>(digits));
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// A non-zero id: zero means "none" in both formats.
uint64_t draw_id(std::mt19937_64& rng) {
  for (;;)
    if (uint64_t v = rng()) return v;
}

// B3's sampling state: "1" / "0", the legacy "true" / "false", "d" (debug,
// which implies sampled).
std::optional<bool> b3_sampled(std::string_view v) {
  if (v == "1" || v == "d" || http::iequals(v, "true")) return true;
  if (v == "0" || http::iequals(v, "false")) return false;
  return std::nullopt;
}

std::optional<ParentContext> parse_b3_multi(const Headers& h, std::optional<bool>& sampled) {
  if (auto flags = h.get("x-b3-flags"); flags && http::trim(*flags) == "1") {
    sampled = true;  // debug
  } else if (auto s = h.get("x-b3-sampled")) {
    sampled = b3_sampled(http::trim(*s));
  }
  auto trace = h.get("x-b3-traceid");
  auto span = h.get("x-b3-spanid");
  if (!trace || !span) return std::nullopt;
  auto trace_id = parse_trace_id(http::trim(*trace));
  auto span_id = parse_hex64(http::trim(*span));
  if (!trace_id || !span_id || !trace_id->valid() || *span_id == 0) return std::nullopt;
  return ParentContext{*trace_id, *span_id, sampled, http::trim(*trace).size() == 16};
}

// JSON string contents: quotes, backslashes and control characters escaped;
// bytes above 0x7f are taken as Latin-1, so any header value yields valid
// JSON (UTF-8 input is not preserved byte for byte, which only matters for
// non-ASCII header values).
void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    } else {
      out += ch;
    }
  }
  out += '"';
}

void append_attribute(std::string& out, std::string_view key, std::string_view value) {
  out += "{\"key\":";
  append_json_string(out, key);
  out += ",\"value\":{\"stringValue\":";
  append_json_string(out, value);
  out += "}}";
}

}  // namespace

std::string to_hex(const TraceId& id) {
  std::string out;
  out.reserve(32);
  append_hex(out, id.high, 16);
  append_hex(out, id.low, 16);
  return out;
}

std::string to_hex(uint64_t span_id) {
  std::string out;
  out.reserve(16);
  append_hex(out, span_id, 16);
  return out;
}

std::optional<uint64_t> parse_hex64(std::string_view hex) {
  if (hex.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : hex) {
    int d = hex_digit(c);
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

std::optional<TraceId> parse_trace_id(std::string_view hex) {
  if (hex.size() == 16) {
    auto low = parse_hex64(hex);
    if (!low) return std::nullopt;
    return TraceId{0, *low};
  }
  if (hex.size() != 32) return std::nullopt;
  auto high = parse_hex64(hex.substr(0, 16));
  auto low = parse_hex64(hex.substr(16));
  if (!high || !low) return std::nullopt;
  return TraceId{*high, *low};
}

std::optional<ParentContext> parse_traceparent(std::string_view v) {
  v = http::trim(v);
  // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55.
  constexpr size_t kLength = 55;
  if (v.size() < kLength || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  int v1 = hex_digit(v[0]), v0 = hex_digit(v[1]);
  if (v1 < 0 || v0 < 0 || (v1 == 15 && v0 == 15)) return std::nullopt;  // ff is invalid
  bool version_00 = v1 == 0 && v0 == 0;
  // Version 00 is exactly 55 characters; a later version may append fields
  // after a '-'.
  if (v.size() > kLength && (version_00 || v[kLength] != '-')) return std::nullopt;
  auto trace = parse_trace_id(v.substr(3, 32));
  auto span = parse_hex64(v.substr(36, 16));
  int f1 = hex_digit(v[53]), f0 = hex_digit(v[54]);
  if (!trace || !span || f1 < 0 || f0 < 0 || !trace->valid() || *span == 0) return std::nullopt;
  return ParentContext{*trace, *span, (f0 & 1) != 0, false};
}

std::optional<ParentContext> parse_b3_single(std::string_view v, bool& decision_only) {
  decision_only = false;
  v = http::trim(v);
  if (v.size() == 1) {
    auto s = b3_sampled(v);
    if (!s) return std::nullopt;
    decision_only = true;
    return ParentContext{{}, 0, s, false};
  }
  std::string_view parts[4];
  size_t n = 0;
  for (;;) {
    size_t dash = v.find('-');
    if (n == 4) return std::nullopt;  // a fifth field
    parts[n++] = v.substr(0, dash);
    if (dash == std::string_view::npos) break;
    v.remove_prefix(dash + 1);
  }
  if (n < 2) return std::nullopt;
  auto trace = parse_trace_id(parts[0]);
  auto span = parse_hex64(parts[1]);
  if (!trace || !span || !trace->valid() || *span == 0) return std::nullopt;
  ParentContext p{*trace, *span, std::nullopt, parts[0].size() == 16};
  if (n >= 3) {
    p.sampled = b3_sampled(parts[2]);
    if (!p.sampled || parts[2].size() != 1) return std::nullopt;
  }
  if (n == 4 && !parse_hex64(parts[3])) return std::nullopt;
  return p;
}

Extracted extract(const Headers& headers) {
  Extracted e;
  std::optional<ParentContext> b3_single;
  bool b3_single_decision_only = false;
  if (auto v = headers.get("b3")) {
    e.had_b3_single = true;
    b3_single = parse_b3_single(*v, b3_single_decision_only);
  }
  std::optional<bool> multi_sampled;
  std::optional<ParentContext> b3_multi;
  for (const auto& [name, value] : headers.entries())
    if (name.size() > 5 && http::iequals(name.substr(0, 5), "x-b3-")) {
      e.had_b3_multi = true;
      break;
    }
  if (e.had_b3_multi) b3_multi = parse_b3_multi(headers, multi_sampled);

  if (auto tp = headers.get("traceparent")) {
    if (auto parent = parse_traceparent(*tp)) {
      e.format = TraceFormat::w3c;
      e.parent = parent;
      e.sampled = parent->sampled;
      return e;
    }
  }
  if (b3_single && !b3_single_decision_only) {
    e.format = TraceFormat::b3_single;
    e.parent = b3_single;
    e.sampled = b3_single->sampled;
    return e;
  }
  if (b3_multi) {
    e.format = TraceFormat::b3_multi;
    e.parent = b3_multi;
    e.sampled = b3_multi->sampled;
    return e;
  }
  // No context, perhaps a decision alone ("b3: 0", a lone x-b3-sampled).
  e.sampled = b3_single ? b3_single->sampled : multi_sampled;
  return e;
}

SpanContext start_span(const Extracted& in, uint32_t parts_per_million, std::mt19937_64& rng) {
  SpanContext s;
  if (in.sampled)
    s.sampled = *in.sampled;
  else if (parts_per_million >= 1'000'000)
    s.sampled = true;
  else
    s.sampled = parts_per_million > 0 && http::draw_per_million(rng, parts_per_million);
  if (in.parent) {
    s.trace_id = in.parent->trace_id;
    s.parent_span_id = in.parent->span_id;
    s.trace_id_64 = in.parent->trace_id_64;
  } else {
    s.trace_id = TraceId{rng(), draw_id(rng)};
  }
  s.span_id = draw_id(rng);
  return s;
}

void inject(const SpanContext& span, const Extracted& in, Headers& headers) {
  std::string tp;
  tp.reserve(55);
  tp += "00-";
  append_hex(tp, span.trace_id.high, 16);
  append_hex(tp, span.trace_id.low, 16);
  tp += '-';
  append_hex(tp, span.span_id, 16);
  tp += span.sampled ? "-01" : "-00";
  headers.set("traceparent", std::move(tp));
  if (!in.had_b3_single && !in.had_b3_multi) return;
  std::string trace = span.trace_id_64 ? to_hex(span.trace_id.low) : to_hex(span.trace_id);
  std::string id = to_hex(span.span_id);
  if (in.had_b3_multi) {
    headers.set("x-b3-traceid", trace);
    headers.set("x-b3-spanid", id);
    if (span.parent_span_id != 0)
      headers.set("x-b3-parentspanid", to_hex(span.parent_span_id));
    else
      headers.remove("x-b3-parentspanid");
    headers.set("x-b3-sampled", span.sampled ? "1" : "0");
  }
  if (in.had_b3_single) {
    std::string b3 = fmt::format("{}-{}-{}", trace, id, span.sampled ? '1' : '0');
    if (span.parent_span_id != 0) b3 += "-" + to_hex(span.parent_span_id);
    headers.set("b3", std::move(b3));
  }
}

void append_otlp_json(std::string& out, std::string_view service_name,
                      std::span<const Span> spans) {
  out += R"({"resourceSpans":[{"resource":{"attributes":[)";
  append_attribute(out, "service.name", service_name);
  out += R"(]},"scopeSpans":[{"scope":{"name":"sluice"},"spans":[)";
  bool first = true;
  for (const Span& s : spans) {
    if (!first) out += ',';
    first = false;
    out += R"({"traceId":")";
    append_hex(out, s.context.trace_id.high, 16);
    append_hex(out, s.context.trace_id.low, 16);
    out += R"(","spanId":")";
    append_hex(out, s.context.span_id, 16);
    out += '"';
    if (s.context.parent_span_id != 0) {
      out += R"(,"parentSpanId":")";
      append_hex(out, s.context.parent_span_id, 16);
      out += '"';
    }
    if (!s.trace_state.empty()) {
      out += R"(,"traceState":)";
      append_json_string(out, s.trace_state);
    }
    out += R"(,"name":)";
    append_json_string(out, s.name);
    // SPAN_KIND_SERVER: the gateway receives the request.
    fmt::format_to(std::back_inserter(out),
                   R"(,"kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","attributes":[)",
                   s.start_unix_nanos, s.end_unix_nanos);
    for (size_t i = 0; i < s.attributes.size(); ++i) {
      if (i > 0) out += ',';
      append_attribute(out, s.attributes[i].first, s.attributes[i].second);
    }
    // STATUS_CODE_ERROR = 2; unset (0) otherwise, as OpenTelemetry wants of
    // servers for 4xx.
    out += s.error ? R"(],"status":{"code":2}})" : R"(],"status":{}})";
  }
  out += "]}]}]}";
}

}  // namespace sluice::telemetry
