// GatewayConfig::telemetry.tracing -> CompiledTracing: the sampling share
// in parts per million, and the collector's address split once so that an
// export only formats its request.

#include <fmt/format.h>

#include <charconv>
#include <cmath>

#include "config/snapshot.hpp"
#include "http/tokens.hpp"
#include "http/wire_check.hpp"

namespace sluice {

namespace {

Error tracing_error(std::string_view field, std::string message) {
  return Error{"GatewayConfig", fmt::format("telemetry.tracing.{}", field), std::move(message)};
}

// "http://host:port/path", "host:port/path" or "host:port"; the path
// defaults to OTLP/HTTP's /v1/traces and the port to 4318.
Status parse_endpoint(std::string_view url, CompiledTracing& out) {
  constexpr std::string_view kField = "otlp_endpoint";
  if (url.starts_with("https://"))
    return tracing_error(kField, "https is not supported: give an http:// collector address");
  if (url.starts_with("http://")) url.remove_prefix(7);
  if (url.find("://") != std::string_view::npos)
    return tracing_error(kField, fmt::format("{}: only http:// is supported", http::quote(url)));
  size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos) out.target = std::string(url.substr(slash));
  if (authority.empty()) return tracing_error(kField, "has no host");
  if (std::string why = http::check_authority(authority); !why.empty())
    return tracing_error(kField, std::move(why));
  if (std::string why = http::check_path(out.target); !why.empty())
    return tracing_error(kField, std::move(why));
  http::HostPort hp = http::split_host_port(authority);
  if (hp.host.empty()) return tracing_error(kField, "has no host");
  if (!hp.port.empty()) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(hp.port.data(), hp.port.data() + hp.port.size(), port);
    if (ec != std::errc() || end != hp.port.data() + hp.port.size() || port == 0 || port > 65535)
      return tracing_error(kField, fmt::format("port {} is not 1..65535", http::quote(hp.port)));
    out.port = static_cast<uint16_t>(port);
  }
  std::string_view host = hp.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);  // HttpGet takes the bare literal
  out.host = std::string(host);
  out.authority = std::string(authority);
  out.export_spans = true;
  return {};
}

}  // namespace

Result<std::shared_ptr<const CompiledTracing>> compile_tracing(const TracingConfig& config) {
  auto out = std::make_shared<CompiledTracing>();
  double pct = config.sampling_percentage;
  if (!(pct >= 0 && pct <= 100))  // NaN fails too
    return tracing_error("sampling_percentage", "must be between 0 and 100");
  out->sampling_per_million = static_cast<uint32_t>(std::llround(pct * 10'000));
  if (config.service_name.empty()) return tracing_error("service_name", "must not be empty");
  if (std::string why = http::check_header_value(config.service_name); !why.empty())
    return tracing_error("service_name", std::move(why));
  if (config.max_batch_spans < 1) return tracing_error("max_batch_spans", "must be >= 1");
  if (config.max_queued_spans < config.max_batch_spans)
    return tracing_error("max_queued_spans", "must be >= max_batch_spans");
  if (config.flush_interval.count() < 0) return tracing_error("flush_interval", "must be >= 0");
  if (config.export_timeout.count() <= 0) return tracing_error("export_timeout", "must be > 0");
  if (!config.otlp_endpoint.empty())
    if (Status st = parse_endpoint(config.otlp_endpoint, *out); !st.ok()) return st.error();
  out->config = config;
  return std::shared_ptr<const CompiledTracing>(std::move(out));
}

}  // namespace sluice
