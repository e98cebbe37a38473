// libFuzzer target: the Istio YAML loader and compile (lib/istio/istio.hpp,
// sluice::compile). YAML -> parse_string -> translate (DNS answered from a
// table, never the network) -> compile, then the --check summary and, for
// every listener, routing and --explain text of a sample request. A loader
// or compile error is a fine outcome; a crash, a hang or an error without a
// message is not. Also feeds the input to the MeshConfig parser.
//
// Debian 12's yaml-cpp 0.7 never returns from YAML::LoadAll on some
// malformed streams (a lone ",": yaml-cpp issue #1040). This target found it;
// the loader now reads YAML through istio::load_all_documents, which refuses
// such input, and so does this target's own pre-pass.
//
// Certificate fields name files the loader reads. Inputs whose strings
// could name a device or a kernel file (/dev/zero never ends) are skipped:
// configuration paths are trusted, and reading them is not what this
// target is about.

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "istio/istio.hpp"
#include "istio/yaml_load.hpp"
#include "sluice/gateway.hpp"

namespace {

bool names_special_file(std::string_view s) {
  for (std::string_view bad : {"dev", "proc", "sys", "run", "fd", "tty", "stdin"})
    if (s.find(bad) != std::string_view::npos) return true;
  return false;
}

bool safe_node(const YAML::Node& n, int depth) {
  if (depth > 64) return false;
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      return !names_special_file(n.Scalar());
    case YAML::NodeType::Sequence:
      for (const auto& child : n)
        if (!safe_node(child, depth + 1)) return false;
      return true;
    case YAML::NodeType::Map:
      for (const auto& kv : n)
        if (!safe_node(kv.first, depth + 1) || !safe_node(kv.second, depth + 1)) return false;
      return true;
    default:
      return true;
  }
}

// Scalars as the loader will see them (after YAML escapes), or false when
// the text is not YAML at all (then the loader must just refuse it).
bool safe_yaml(const std::string& text) {
  try {
    for (const auto& doc : sluice::istio::load_all_documents(text))
      if (!safe_node(doc, 0)) return false;
  } catch (const std::exception&) {
  }
  return true;
}

// to_istio_error() is new; found by argument-dependent lookup when present.
template <typename L>
void restate(const L& loaded, const sluice::Error& e) {
  if constexpr (requires { to_istio_error(loaded, e); })
    FUZZ_CHECK(!to_istio_error(loaded, e).to_string().empty(), "empty restated error");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  if (names_special_file(text) || !safe_yaml(text)) return 0;
  if (auto mesh = sluice::istio::parse_mesh_config(text, "fuzz.yaml"); !mesh)
    FUZZ_CHECK(!mesh.error().message.empty(), "MeshConfig error without a message");

  auto parsed = sluice::istio::parse_string(text, "fuzz.yaml");
  if (!parsed) {
    FUZZ_CHECK(!parsed.error().message.empty(), "parse error without a message");
    return 0;
  }
  (void)sluice::istio::referenced_files(*parsed);
  // Odd names resolve to a loopback address, even ones to nothing.
  sluice::istio::DnsTable dns;
  for (const auto& name : sluice::istio::dns_names(*parsed))
    dns[name] =
        name.size() % 2 ? std::vector<std::string>{"127.0.0.1"} : std::vector<std::string>{};
  sluice::istio::TranslateOptions options{.bind_address = "127.0.0.1", .ephemeral_ports = true};
  auto loaded = sluice::istio::translate(*parsed, options, dns);
  if (!loaded) {
    FUZZ_CHECK(!loaded.error().message.empty(), "translate error without a message");
    return 0;
  }
  FUZZ_CHECK(loaded->listeners.size() == loaded->config.listeners.size(),
             "listener metadata is not parallel to listeners");
  (void)sluice::istio::summary(*loaded);

  auto snapshot = sluice::compile(loaded->config);
  if (!snapshot) {
    FUZZ_CHECK(!snapshot.error().message.empty(), "compile error without a message");
    restate(*loaded, snapshot.error());
    return 0;
  }
  for (const auto& router_config : loaded->config.routers) {
    auto router = sluice::Router::compile(router_config);
    FUZZ_CHECK(router.ok(), "compile() accepted a router Router::compile refuses: %s",
               router.error().to_string().c_str());
    for (const auto& info : loaded->listeners) {
      if (info.name != router_config.name) continue;
      sluice::RequestHead request;
      request.authority = "bookinfo.example.com";
      request.target = "/productpage?u=normal";
      request.listener_port = info.port;
      request.headers.add("end-user", "jason");
      auto why = router->explain(request);
      (void)sluice::istio::explain_text(*loaded, info, router->config(), why);
    }
  }
  return 0;
}
