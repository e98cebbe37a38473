// Istio MeshConfig (the `mesh` key of the `istio` ConfigMap) -> the mesh-wide
// settings sluice applies. Only fields sluice implements are read; every
// other MeshConfig field is valid Istio and ignored, but a field that is read
// must have the right type and value.

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "istio/istio.hpp"
#include "istio/model.hpp"
#include "istio/yaml_load.hpp"
#include "telemetry/access_log.hpp"

namespace sluice::istio {
namespace {

struct MeshError {
  Error error;
};

class MeshParser {
 public:
  explicit MeshParser(std::string origin) : object_("MeshConfig " + origin), origin_(origin) {}

  MeshSettings run(std::string_view text) {
    YAML::Node doc = load(text, "");
    MeshSettings out;
    out.origin = origin_;
    if (!doc || doc.IsNull()) return out;
    if (!doc.IsMap()) fail("", "a MeshConfig must be a mapping");
    // `kubectl get configmap istio -o yaml`: MeshConfig is the YAML text in
    // data.mesh. A bare MeshConfig has no `kind`.
    if (YAML::Node kind = doc["kind"]; kind && kind.IsScalar()) {
      if (kind.Scalar() != "ConfigMap")
        fail("kind", fmt::format("expected a MeshConfig or the istio ConfigMap, got kind {}",
                                 kind.Scalar()));
      YAML::Node data = doc["data"];
      if (!data || data.IsNull()) return out;
      if (!data.IsMap()) fail("data", "must be a mapping");
      YAML::Node mesh = data["mesh"];
      if (!mesh || mesh.IsNull()) return out;
      if (!mesh.IsScalar()) fail("data.mesh", "must be a string holding MeshConfig YAML");
      doc = load(mesh.Scalar(), "data.mesh: ");
      if (!doc || doc.IsNull()) return out;
      if (!doc.IsMap()) fail("data.mesh", "a MeshConfig must be a mapping");
    }
    read(doc, out);
    return out;
  }

 private:
  [[noreturn]] void fail(std::string field, std::string message) const {
    throw MeshError{Error{object_, std::move(field), std::move(message)}};
  }

  YAML::Node load(std::string_view text, std::string_view where) const {
    try {
      std::vector<YAML::Node> docs = load_all_documents(std::string(text));
      // A default YAML::Node is a defined null, so count documents instead.
      const YAML::Node* found = nullptr;
      for (const auto& d : docs) {
        if (!d || d.IsNull()) continue;
        if (found) fail("", fmt::format("{}expected one YAML document, found several", where));
        found = &d;
      }
      return found ? *found : YAML::Node();
    } catch (const YAML::Exception& e) {
      fail(fmt::format("{}line {}, column {}", where, e.mark.line + 1, e.mark.column + 1),
           "malformed YAML: " + e.msg);
    }
  }

  void read(const YAML::Node& mesh, MeshSettings& out) const {
    if (YAML::Node rn = mesh["rootNamespace"]; rn && !rn.IsNull()) {
      if (!rn.IsScalar() || rn.Scalar().empty())
        fail("rootNamespace", "must be a non-empty string");
      out.root_namespace = rn.Scalar();
    }
    read_topology(mesh, out);
    read_normalization(mesh, out);
    read_providers(mesh, out);
    read_access_log(mesh, out);
    read_default_providers(mesh, out);
  }

  // ---- telemetry: accessLogFile, accessLogEncoding, accessLogFormat ----

  // A format is compiled here too, so that a bad operator is reported
  // against the field it was written in (compile() would name only
  // AccessLogConfig::source).
  void check_format(const AccessLogConfig& log, const std::string& field) const {
    Result<telemetry::LogFormat> f =
        log.encoding == AccessLogConfig::Encoding::json
            ? telemetry::LogFormat::json(log.json_fields, object_ + ": " + field)
            : telemetry::LogFormat::text(log.format, object_ + ": " + field);
    if (!f) throw MeshError{f.error()};
  }

  // JSON accessLogFormat: Istio takes a JSON object of key -> format string.
  std::vector<std::pair<std::string, std::string>> json_format(const std::string& text,
                                                               const std::string& field) const {
    YAML::Node n;
    try {
      n = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      fail(field, "with JSON encoding, must be a JSON object of key -> format string: " + e.msg);
    }
    if (!n.IsMap())
      fail(field, "with JSON encoding, must be a JSON object of key -> format string");
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& kv : n) {
      std::string key = this->text(kv.first, field);
      out.emplace_back(key, this->text(kv.second, field + "." + key));
    }
    return out;
  }

  void read_access_log(const YAML::Node& mesh, MeshSettings& out) const {
    AccessLogConfig log;
    std::string format;
    if (YAML::Node n = mesh["accessLogFile"]; n && !n.IsNull()) log.path = text(n, "accessLogFile");
    if (YAML::Node n = mesh["accessLogEncoding"]; n && !n.IsNull()) {
      std::string v = text(n, "accessLogEncoding");
      if (v == "JSON")
        log.encoding = AccessLogConfig::Encoding::json;
      else if (v != "TEXT")
        fail("accessLogEncoding", fmt::format("must be TEXT or JSON, got \"{}\"", v));
    }
    if (YAML::Node n = mesh["accessLogFormat"]; n && !n.IsNull())
      format = text(n, "accessLogFormat");
    // Istio logs nothing while accessLogFile is empty, whatever the rest says.
    if (log.path.empty()) return;
    if (log.encoding == AccessLogConfig::Encoding::json) {
      if (!format.empty()) log.json_fields = json_format(format, "accessLogFormat");
    } else {
      log.format = format;
    }
    log.source = object_ + ": accessLogFormat";
    if (!format.empty()) check_format(log, "accessLogFormat");
    out.telemetry.access_log = std::move(log);
  }

  // defaultProviders: the providers used where no Telemetry resource names any.
  void read_default_providers(const YAML::Node& mesh, MeshSettings& out) const {
    YAML::Node dp = mesh["defaultProviders"];
    if (!dp || dp.IsNull()) return;
    Meta meta{"MeshConfig", origin_};
    Fields f(dp, meta, "defaultProviders");
    if (auto v = f.get("accessLogging"))
      out.telemetry.default_access_logging = names(v, f.sub("accessLogging"));
    if (auto v = f.get("tracing")) out.telemetry.default_tracing = names(v, f.sub("tracing"));
    // Istio's standard metrics are always reported: naming the provider
    // changes nothing.
    if (auto v = f.get("metrics"))
      for (const auto& name : names(v, f.sub("metrics")))
        if (name != "prometheus")
          fail(f.sub("metrics"),
               fmt::format("unknown metrics provider \"{}\" (sluice reports Istio's standard "
                           "metrics in Prometheus format: \"prometheus\")",
                           name));
    f.finish();
  }

  // envoyFileAccessLog: {path, logFormat: {text | labels}}.
  void read_file_access_log(const YAML::Node& n, const std::string& at,
                            AccessLogConfig& log) const {
    if (!n.IsMap()) fail(at, "must be a mapping");
    Meta meta{"MeshConfig", origin_};
    Fields f(n, meta, at);
    if (auto v = f.get("path")) log.path = text(v, f.sub("path"));
    std::string format_field;
    if (auto lf = f.get("logFormat")) {
      Fields l(lf, meta, f.sub("logFormat"));
      YAML::Node t = l.get("text"), labels = l.get("labels");
      l.ignore({"omitEmptyValues"});
      l.finish();
      if (t && labels) fail(l.path(), "only one of text or labels can be set");
      if (t) {
        log.format = text(t, l.sub("text"));
        format_field = l.sub("text");
      }
      if (labels) {
        format_field = l.sub("labels");
        if (!labels.IsMap()) fail(format_field, "must be a mapping of key -> format string");
        log.encoding = AccessLogConfig::Encoding::json;
        for (const auto& kv : labels) {
          std::string key = text(kv.first, format_field);
          log.json_fields.emplace_back(key, text(kv.second, format_field + "." + key));
        }
        // Istio: empty labels are its default JSON keys.
      }
    }
    f.finish();
    // Istio's default for the provider: standard output.
    if (log.path.empty()) log.path = "/dev/stdout";
    log.source = object_ + ": " + (format_field.empty() ? at : format_field);
    if (!format_field.empty()) check_format(log, format_field);
  }

  // opentelemetry: {service, port, http: {path, timeout, headers}, ...}: the
  // OTLP/HTTP collector spans are exported to.
  void read_opentelemetry(const YAML::Node& n, const std::string& at, std::string& endpoint) const {
    if (!n.IsMap()) fail(at, "must be a mapping");
    Meta meta{"MeshConfig", origin_};
    Fields f(n, meta, at);
    std::string service = text(f.require("service"), f.sub("service"));
    uint32_t port = number(f.require("port"), f.sub("port"), 1, 65535);
    std::string path = "/v1/traces";
    if (auto h = f.get("http")) {
      Fields hf(h, meta, f.sub("http"));
      if (auto v = hf.get("path")) {
        path = text(v, hf.sub("path"));
        if (path.empty() || path[0] != '/') path.insert(path.begin(), '/');
      }
      if (auto v = hf.get("timeout")) duration(v, meta, hf.sub("timeout"));
      hf.not_implemented({"headers"});
      hf.finish();
    }
    f.ignore({"maxTagLength"});
    f.not_implemented({"grpc", "resourceDetectors", "dynatraceSampler"});
    f.finish();
    if (service.empty()) fail(f.sub("service"), "must not be empty");
    // A Kubernetes service name may carry its namespace ("ns/name").
    if (auto slash = service.find('/'); slash != std::string::npos)
      service = service.substr(slash + 1);
    endpoint = fmt::format("http://{}:{}{}", service, port, path);
  }

  // ---- extensionProviders ----

  std::string text(const YAML::Node& n, const std::string& field) const {
    if (!n.IsScalar()) fail(field, "must be a string");
    return n.Scalar();
  }
  bool flag(const YAML::Node& n, const std::string& field) const {
    std::string v = n.IsScalar() ? n.Scalar() : std::string();
    if (v == "true") return true;
    if (v == "false") return false;
    fail(field, fmt::format("must be true or false, got \"{}\"", v));
  }
  // A number, written as one or as a string ("8000": Istio's task does both).
  uint32_t number(const YAML::Node& n, const std::string& field, uint32_t min, uint32_t max) const {
    std::string t = n.IsScalar() ? n.Scalar() : std::string();
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc() || end != t.data() + t.size() || v < min || v > max)
      fail(field, fmt::format("must be an integer in {}..{}, got \"{}\"", min, max, t));
    return v;
  }
  std::vector<std::string> names(const YAML::Node& n, const std::string& field) const {
    if (!n.IsSequence()) fail(field, "must be a list of strings");
    std::vector<std::string> out;
    for (size_t i = 0; i < n.size(); ++i)
      out.push_back(text(n[i], fmt::format("{}[{}]", field, i)));
    return out;
  }

  void read_providers(const YAML::Node& mesh, MeshSettings& out) const {
    YAML::Node list = mesh["extensionProviders"];
    if (!list || list.IsNull()) return;
    if (!list.IsSequence()) fail("extensionProviders", "must be a list");
    for (size_t i = 0; i < list.size(); ++i) {
      std::string field = fmt::format("extensionProviders[{}]", i);
      const YAML::Node& e = list[i];
      if (!e.IsMap()) fail(field, "must be a mapping");
      ExtensionProvider p;
      p.field = field;
      YAML::Node name = e["name"];
      if (!name || name.IsNull()) fail(field + ".name", "required field is missing");
      p.http.name = text(name, field + ".name");
      for (const auto& other : out.extension_providers)
        if (other.http.name == p.http.name)
          fail(field + ".name", fmt::format("duplicate provider name \"{}\"", p.http.name));
      if (YAML::Node h = e["envoyExtAuthzHttp"]; h && !h.IsNull()) {
        p.kind = ExtensionProvider::Kind::ext_authz_http;
        read_ext_authz_http(h, field + ".envoyExtAuthzHttp", p.http);
      } else if (YAML::Node g = e["envoyExtAuthzGrpc"]; g && !g.IsNull()) {
        p.kind = ExtensionProvider::Kind::ext_authz_grpc;
      } else if (YAML::Node a = e["envoyFileAccessLog"]; a && !a.IsNull()) {
        p.kind = ExtensionProvider::Kind::file_access_log;
        read_file_access_log(a, field + ".envoyFileAccessLog", p.access_log);
      } else if (YAML::Node o = e["opentelemetry"]; o && !o.IsNull()) {
        p.kind = ExtensionProvider::Kind::opentelemetry;
        read_opentelemetry(o, field + ".opentelemetry", p.otlp_endpoint);
      }
      out.extension_providers.push_back(std::move(p));
    }
  }

  void read_ext_authz_http(const YAML::Node& h, const std::string& at,
                           ExtAuthzHttpProvider& p) const {
    if (!h.IsMap()) fail(at, "must be a mapping");
    // Every field is read, so a misspelt one is an error, not a silent default.
    Meta meta{"MeshConfig", origin_};
    Fields f(h, meta, at);
    if (auto v = f.get("service")) p.service = text(v, f.sub("service"));
    if (auto v = f.get("port")) p.port = static_cast<uint16_t>(number(v, f.sub("port"), 1, 65535));
    if (auto v = f.get("timeout")) {
      p.timeout = duration(v, meta, f.sub("timeout"));
      if (p.timeout.count() == 0) fail(f.sub("timeout"), "must be > 0");
    }
    if (auto v = f.get("pathPrefix")) p.path_prefix = text(v, f.sub("pathPrefix"));
    if (auto v = f.get("failOpen")) p.fail_open = flag(v, f.sub("failOpen"));
    if (auto v = f.get("statusOnError"))
      p.status_on_error = static_cast<uint16_t>(number(v, f.sub("statusOnError"), 200, 599));
    // includeHeadersInCheck is the deprecated name of the same list.
    for (const char* key : {"includeRequestHeadersInCheck", "includeHeadersInCheck"})
      if (auto v = f.get(key)) {
        auto more = names(v, f.sub(key));
        p.include_request_headers_in_check.insert(p.include_request_headers_in_check.end(),
                                                  more.begin(), more.end());
      }
    if (auto v = f.get("includeAdditionalHeadersInCheck")) {
      std::string field = f.sub("includeAdditionalHeadersInCheck");
      if (!v.IsMap()) fail(field, "must be a mapping of header names to values");
      for (const auto& hv : v) {
        std::string name = text(hv.first, field);
        p.include_additional_headers_in_check.emplace_back(name,
                                                           text(hv.second, field + "." + name));
      }
    }
    if (auto v = f.get("headersToUpstreamOnAllow"))
      p.headers_to_upstream_on_allow = names(v, f.sub("headersToUpstreamOnAllow"));
    if (auto v = f.get("headersToDownstreamOnAllow"))
      p.headers_to_downstream_on_allow = names(v, f.sub("headersToDownstreamOnAllow"));
    if (auto v = f.get("headersToDownstreamOnDeny"))
      p.headers_to_downstream_on_deny = names(v, f.sub("headersToDownstreamOnDeny"));
    if (auto v = f.get("includeRequestBodyInCheck")) {
      Fields b(v, meta, f.sub("includeRequestBodyInCheck"));
      ExtAuthzRequestBody body;
      body.max_request_bytes =
          number(b.require("maxRequestBytes"), b.sub("maxRequestBytes"), 1, UINT32_MAX);
      if (auto a = b.get("allowPartialMessage"))
        body.allow_partial_message = flag(a, b.sub("allowPartialMessage"));
      if (auto k = b.get("packAsBytes")) body.pack_as_bytes = flag(k, b.sub("packAsBytes"));
      b.finish();
      p.include_request_body_in_check = body;
    }
    f.finish();
    if (p.service.empty()) fail(at + ".service", "required field is missing");
    if (p.port == 0) fail(at + ".port", "required field is missing");
  }

  // defaultConfig.gatewayTopology.numTrustedProxies: how many proxies in
  // front of the gateway append to X-Forwarded-For.
  void read_topology(const YAML::Node& mesh, MeshSettings& out) const {
    YAML::Node dc = mesh["defaultConfig"];
    if (!dc || dc.IsNull()) return;
    if (!dc.IsMap()) fail("defaultConfig", "must be a mapping");
    YAML::Node gt = dc["gatewayTopology"];
    if (!gt || gt.IsNull()) return;
    if (!gt.IsMap()) fail("defaultConfig.gatewayTopology", "must be a mapping");
    YAML::Node n = gt["numTrustedProxies"];
    if (!n || n.IsNull()) return;
    const char* field = "defaultConfig.gatewayTopology.numTrustedProxies";
    std::string text = n.IsScalar() ? n.Scalar() : std::string();
    uint32_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size())
      fail(field, fmt::format("must be a non-negative integer, got \"{}\"", text));
    out.num_trusted_proxies = v;
  }

  void read_normalization(const YAML::Node& mesh, MeshSettings& out) const {
    YAML::Node pn = mesh["pathNormalization"];
    if (!pn || pn.IsNull()) return;
    if (!pn.IsMap()) fail("pathNormalization", "must be a mapping");
    YAML::Node n = pn["normalization"];
    if (!n || n.IsNull()) return;  // absent: Istio's default, BASE
    if (!n.IsScalar()) fail("pathNormalization.normalization", "must be a string");
    const std::string& v = n.Scalar();
    if (v == "DEFAULT" || v == "BASE")
      out.path_normalization = PathNormalization::base;
    else if (v == "NONE")
      out.path_normalization = PathNormalization::none;
    else if (v == "MERGE_SLASHES")
      out.path_normalization = PathNormalization::merge_slashes;
    else if (v == "DECODE_AND_MERGE_SLASHES")
      out.path_normalization = PathNormalization::decode_and_merge_slashes;
    else
      fail("pathNormalization.normalization",
           fmt::format("unknown value \"{}\" (NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES)",
                       v));
  }

  std::string object_;
  std::string origin_;
};

}  // namespace

Result<MeshSettings> parse_mesh_config(std::string_view yaml, std::string origin) {
  try {
    return MeshParser(origin).run(yaml);
  } catch (const LoadError& e) {
    return e.error;
  } catch (const MeshError& e) {
    return e.error;
  } catch (const YAML::Exception& e) {
    // Type errors yaml-cpp reports while the tree is walked.
    return Error{"MeshConfig " + origin, "", e.msg};
  }
}

Result<MeshSettings> load_mesh_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"MeshConfig " + path, "", "cannot read file"};
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_mesh_config(ss.str(), path);
}

void apply_mesh(const MeshSettings& mesh, GatewayConfig& config) {
  config.path_normalization = mesh.path_normalization;
  config.security.root_namespace = mesh.root_namespace;
  config.security.num_trusted_proxies = mesh.num_trusted_proxies;
}

void apply_mesh(const MeshSettings& mesh, TranslateOptions& options) {
  options.root_namespace = mesh.root_namespace;
  options.extension_providers = mesh.extension_providers;
  options.mesh_origin = mesh.origin;
  options.mesh_telemetry = mesh.telemetry;
}

}  // namespace sluice::istio
