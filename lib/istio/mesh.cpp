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
#include "istio/yaml_load.hpp"

namespace sluice::istio {
namespace {

struct MeshError {
  Error error;
};

class MeshParser {
 public:
  explicit MeshParser(std::string origin) : object_("MeshConfig " + std::move(origin)) {}

  MeshSettings run(std::string_view text) {
    YAML::Node doc = load(text, "");
    MeshSettings out;
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
};

}  // namespace

Result<MeshSettings> parse_mesh_config(std::string_view yaml, std::string origin) {
  try {
    return MeshParser(origin).run(yaml);
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
}

}  // namespace sluice::istio
