#include "config/access_logs.hpp"

#include <fmt/format.h>

namespace sluice {

Result<std::shared_ptr<const CompiledAccessLogs>> compile_access_logs(const GatewayConfig& config) {
  const auto& logs = config.telemetry.access_logs;
  if (logs.empty()) return std::shared_ptr<const CompiledAccessLogs>();
  auto out = std::make_shared<CompiledAccessLogs>();
  if (config.telemetry.access_log_flush_interval.count() < 0)
    return Error{"GatewayConfig", "telemetry.access_log_flush_interval", "must be >= 0"};
  out->flush_interval = config.telemetry.access_log_flush_interval;
  for (size_t i = 0; i < logs.size(); ++i) {
    const AccessLogConfig& cfg = logs[i];
    // An error names where the log came from: the Istio resource the loader
    // recorded, else the GatewayConfig field.
    std::string object = cfg.source.empty() ? "GatewayConfig" : cfg.source;
    auto field = [&](std::string_view name) {
      return cfg.source.empty() ? fmt::format("telemetry.access_logs[{}].{}", i, name)
                                : std::string(name);
    };
    if (cfg.path.empty()) return Error{object, field("path"), "must not be empty"};
    if (cfg.path.find('\0') != std::string::npos)
      return Error{object, field("path"), "must not contain NUL"};
    Result<telemetry::LogFormat> format = telemetry::LogFormat::istio_text();
    switch (cfg.encoding) {
      case AccessLogConfig::Encoding::text:
        if (!cfg.json_fields.empty())
          return Error{object, field("json_fields"), "only with the JSON encoding"};
        if (!cfg.format.empty()) format = telemetry::LogFormat::text(cfg.format, object);
        break;
      case AccessLogConfig::Encoding::json:
        if (!cfg.format.empty())
          return Error{object, field("format"), "the JSON encoding takes json_fields"};
        format = cfg.json_fields.empty() ? telemetry::LogFormat::istio_json()
                                         : telemetry::LogFormat::json(cfg.json_fields, object);
        break;
    }
    if (!format) {
      // LogFormat names the object only (JSON: "object: key"); the field
      // is ours to add.
      Error e = format.error();
      if (cfg.encoding == AccessLogConfig::Encoding::json) {
        std::string key = e.object.size() > object.size() + 2 ? e.object.substr(object.size() + 2)
                                                              : std::string();
        e.field = field("json_fields") + "." + key;
      } else {
        e.field = field("format");
      }
      e.object = object;
      return e;
    }
    out->logs.push_back(CompiledAccessLog{cfg.path, std::move(format).value(), nullptr});
  }
  return std::shared_ptr<const CompiledAccessLogs>(std::move(out));
}

}  // namespace sluice
