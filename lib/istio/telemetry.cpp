// telemetry.istio.io Telemetry and the mesh config's telemetry settings ->
// GatewayConfig::telemetry (access logs and tracing). Istio's semantics:
// meshConfig accessLogFile enables the built-in "envoy" provider;
// defaultProviders apply where no Telemetry names providers; a Telemetry
// selecting the gateway overrides one for its namespace, which overrides
// the root namespace's, section by section.

#include <fmt/format.h>

#include <set>

#include "istio/istio.hpp"
#include "istio/model.hpp"
#include "istio/yaml_load.hpp"

namespace sluice::istio {

namespace {

void read_providers(Fields& f, const Meta& m, TelemetryProvidersIn& out) {
  YAML::Node list = f.get("providers");
  if (!list) return;
  if (!list.IsSequence()) fail(m, f.sub("providers"), "must be a list");
  for (size_t i = 0; i < list.size(); ++i) {
    Fields p(list[i], m, index(f.sub("providers"), i));
    out.providers.push_back(scalar(p.require("name"), m, p.sub("name")));
    out.provider_fields.push_back(p.sub("name"));
    p.finish();
  }
}

// match.mode: Istio counts a gateway's traffic as CLIENT (outbound), so an
// entry for SERVER alone does not apply to it.
void read_match(Fields& f, const Meta& m, TelemetryProvidersIn& out) {
  if (auto match = f.get("match")) {
    Fields mf(match, m, f.sub("match"));
    if (auto mode = mf.get("mode")) {
      std::string v = scalar(mode, m, mf.sub("mode"));
      if (v != "CLIENT_AND_SERVER" && v != "SERVER" && v != "CLIENT")
        fail(m, mf.sub("mode"),
             fmt::format("must be CLIENT_AND_SERVER, SERVER or CLIENT, got \"{}\"", v));
      out.server_only = v == "SERVER";
    }
    mf.finish();
  }
}

template <typename Each>
void each_entry(Fields& f, const Meta& m, const char* key, Each each) {
  YAML::Node list = f.get(key);
  if (!list) return;
  if (!list.IsSequence()) fail(m, f.sub(key), "must be a list");
  for (size_t i = 0; i < list.size(); ++i) {
    Fields e(list[i], m, index(f.sub(key), i));
    each(e);
    e.finish();
  }
}

}  // namespace

TelemetryRes parse_telemetry(const YAML::Node& spec, const Meta& meta) {
  TelemetryRes out;
  out.meta = meta;
  Fields f(spec, meta, "");
  out.scope = parse_scope(f, meta);
  each_entry(f, meta, "accessLogging", [&](Fields& e) {
    TelemetryProvidersIn a;
    a.field = e.path();
    read_providers(e, meta, a);
    if (auto v = e.get("disabled")) a.disabled = boolean(v, meta, e.sub("disabled"));
    if (auto filter = e.get("filter"))
      fail(meta, join(e.sub("filter"), "expression"),
           "access-log filters (CEL expressions) are not supported: sluice logs every request");
    read_match(e, meta, a);
    if (!a.server_only) out.access_logging.push_back(std::move(a));
  });
  each_entry(f, meta, "tracing", [&](Fields& e) {
    TelemetryProvidersIn t;
    t.field = e.path();
    read_providers(e, meta, t);
    if (auto v = e.get("randomSamplingPercentage")) {
      t.sampling = decimal(v, meta, e.sub("randomSamplingPercentage"));
      if (*t.sampling < 0 || *t.sampling > 100)
        fail(meta, e.sub("randomSamplingPercentage"), "must be in 0..100");
    }
    if (auto v = e.get("disableSpanReporting"))
      t.disable_span_reporting = boolean(v, meta, e.sub("disableSpanReporting"));
    e.ignore({"useRequestIdForTraceSampling"});
    e.not_implemented({"customTags", "enableIstioTags"});
    read_match(e, meta, t);
    if (!t.server_only) out.tracing.push_back(std::move(t));
  });
  // Istio's standard metrics are always reported in Prometheus format:
  // only a metrics section that asks for exactly that is accepted.
  each_entry(f, meta, "metrics", [&](Fields& e) {
    TelemetryProvidersIn p;
    read_providers(e, meta, p);
    for (size_t i = 0; i < p.providers.size(); ++i)
      if (p.providers[i] != "prometheus")
        fail(meta, p.provider_fields[i],
             fmt::format("metrics provider \"{}\": sluice reports Istio's standard metrics to "
                         "\"prometheus\" only",
                         p.providers[i]));
    if (auto o = e.get("overrides"); o && o.size() > 0)
      fail(meta, e.sub("overrides"),
           "metric overrides (disabled metrics, tag changes) are not supported: sluice reports "
           "Istio's standard metrics and labels");
    e.ignore({"reportingInterval"});
  });
  f.finish();
  return out;
}

namespace {

class TelemetryTranslator {
 public:
  TelemetryTranslator(const Resources& res, const TranslateOptions& options, LoadedConfig& out)
      : res_(res), options_(options), out_(out) {}

  void run() {
    const TelemetryRes* logs = most_specific(&TelemetryRes::access_logging);
    const TelemetryRes* traces = most_specific(&TelemetryRes::tracing);
    access_logs(logs);
    tracing(traces);
  }

 private:
  // 3: selects the gateway (selector or targetRefs), 2: the gateway's
  // namespace, 1: the root namespace, 0: another workload.
  int level(const TelemetryRes& t) const {
    const std::string& ns = t.meta.namespace_;
    if (!t.scope.target_refs.empty()) {
      for (const auto& ref : t.scope.target_refs)
        for (const auto& g : res_.gateways)
          if (ref.kind == "Gateway" && g.meta.name == ref.name && g.meta.namespace_ == ns) return 3;
      return 0;
    }
    if (ns != options_.root_namespace && ns != options_.gateway_namespace) return 0;
    if (t.scope.selector && !t.scope.selector->empty()) {
      for (const auto& [k, v] : *t.scope.selector) {
        auto it = options_.gateway_labels.find(k);
        if (it == options_.gateway_labels.end() || it->second != v) return 0;
      }
      return 3;
    }
    return ns == options_.gateway_namespace && ns != options_.root_namespace ? 2 : 1;
  }

  // The Telemetry whose `section` applies: the most specific one that has
  // it. Two at one level: the first loaded wins, with a warning (Istio
  // leaves it undefined).
  const TelemetryRes* most_specific(std::vector<TelemetryProvidersIn> TelemetryRes::*section) {
    const TelemetryRes* best = nullptr;
    int best_level = 0;
    for (const auto& t : res_.telemetries) {
      if ((t.*section).empty()) continue;
      int l = level(t);
      if (l == 0) continue;
      if (l > best_level) {
        best = &t;
        best_level = l;
      } else if (l == best_level) {
        out_.warnings.push_back(fmt::format("{}: ignored: {} applies at the same level",
                                            t.meta.object(), best->meta.object()));
      }
    }
    return best;
  }

  const ExtensionProvider* provider(const std::string& name) const {
    for (const auto& p : options_.extension_providers)
      if (p.http.name == name) return &p;
    return nullptr;
  }

  // Istio's built-in "envoy" provider: the mesh's accessLogFile settings,
  // else standard output in the default TEXT format.
  AccessLogConfig envoy_log(const std::string& source) const {
    if (options_.mesh_telemetry.access_log) return *options_.mesh_telemetry.access_log;
    AccessLogConfig log;
    log.path = "/dev/stdout";
    log.source = source;
    return log;
  }

  void add_log(const std::string& name, const Meta* meta, const std::string& field) {
    auto fail_at = [&](std::string message) {
      if (meta) fail(*meta, field, std::move(message));
      throw LoadError{
          Error{"MeshConfig " + options_.mesh_origin, "defaultProviders.accessLogging", message}};
    };
    const ExtensionProvider* p = provider(name);
    auto& logs = out_.config.telemetry.access_logs;
    if (!p && name == "envoy") {
      logs.push_back(envoy_log(meta ? meta->object() + ": " + field : "MeshConfig"));
      return;
    }
    if (!p)
      fail_at(fmt::format("no extensionProviders entry named \"{}\" in the mesh config", name));
    if (p->kind != ExtensionProvider::Kind::file_access_log)
      fail_at(
          fmt::format("provider \"{}\" is not an envoyFileAccessLog provider (the only access "
                      "log provider sluice has)",
                      name));
    logs.push_back(p->access_log);
  }

  void access_logs(const TelemetryRes* t) {
    const MeshTelemetry& mesh = options_.mesh_telemetry;
    if (!t) {
      for (const auto& name : mesh.default_access_logging) add_log(name, nullptr, "");
      if (mesh.default_access_logging.empty() && mesh.access_log)
        out_.config.telemetry.access_logs.push_back(*mesh.access_log);
      return;
    }
    std::set<std::string> added;
    for (const auto& entry : t->access_logging) {
      if (entry.disabled.value_or(false)) continue;
      if (entry.providers.empty()) {
        // No providers: the mesh's defaults, else Istio's "envoy".
        std::vector<std::string> names = mesh.default_access_logging;
        if (names.empty()) names.push_back("envoy");
        for (const auto& name : names)
          if (added.insert(name).second) add_log(name, &t->meta, entry.field);
        continue;
      }
      for (size_t i = 0; i < entry.providers.size(); ++i)
        if (added.insert(entry.providers[i]).second)
          add_log(entry.providers[i], &t->meta, entry.provider_fields[i]);
    }
  }

  void set_tracer(const std::string& name, const Meta* meta, const std::string& field) {
    auto fail_at = [&](std::string message) {
      if (meta) fail(*meta, field, std::move(message));
      throw LoadError{
          Error{"MeshConfig " + options_.mesh_origin, "defaultProviders.tracing", message}};
    };
    const ExtensionProvider* p = provider(name);
    if (!p)
      fail_at(fmt::format("no extensionProviders entry named \"{}\" in the mesh config", name));
    if (p->kind != ExtensionProvider::Kind::opentelemetry)
      fail_at(
          fmt::format("provider \"{}\" is not an opentelemetry provider (sluice exports spans "
                      "with OTLP/HTTP only)",
                      name));
    out_.config.telemetry.tracing.otlp_endpoint = p->otlp_endpoint;
  }

  void tracing(const TelemetryRes* t) {
    const MeshTelemetry& mesh = options_.mesh_telemetry;
    if (!t) {
      if (!mesh.default_tracing.empty()) set_tracer(mesh.default_tracing.front(), nullptr, "");
      return;
    }
    // Istio uses the first tracing entry that applies; one provider each.
    const TelemetryProvidersIn& entry = t->tracing.front();
    if (entry.providers.size() > 1)
      fail(t->meta, join(entry.field, "providers"), "only one tracing provider can be used");
    if (!entry.providers.empty())
      set_tracer(entry.providers.front(), &t->meta, entry.provider_fields.front());
    else if (!mesh.default_tracing.empty())
      set_tracer(mesh.default_tracing.front(), nullptr, "");
    if (entry.sampling) out_.config.telemetry.tracing.sampling_percentage = *entry.sampling;
    if (entry.disable_span_reporting) out_.config.telemetry.tracing.otlp_endpoint.clear();
  }

  const Resources& res_;
  const TranslateOptions& options_;
  LoadedConfig& out_;
};

}  // namespace

void apply_telemetry(const Resources& resources, const TranslateOptions& options,
                     LoadedConfig& out) {
  TelemetryTranslator(resources, options, out).run();
}

}  // namespace sluice::istio
