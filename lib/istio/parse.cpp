// YAML -> Resources. Every field of the four kinds is either understood,
// accepted and ignored (documented as irrelevant at an ingress), rejected as
// "not implemented yet", or an unknown-field error: nothing is dropped silently.
//
// Exceptions are used inside the loader (config path only) and converted to
// Result at the API boundary.

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "istio/istio.hpp"
#include "istio/model.hpp"

namespace sluice::istio {
namespace {

struct LoadError {
  Error error;
};

[[noreturn]] void fail(const Meta& meta, std::string path, std::string message) {
  throw LoadError{Error{meta.object(), std::move(path), std::move(message)}};
}

std::string join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return fmt::format("{}.{}", path, key);
}
std::string index(std::string_view path, size_t i) {
  return fmt::format("{}[{}]", path, i);
}

std::string scalar(const YAML::Node& node, const Meta& meta, const std::string& path) {
  if (!node.IsScalar()) fail(meta, path, "must be a string");
  return node.Scalar();
}

int64_t integer(const YAML::Node& node, const Meta& meta, const std::string& path) {
  std::string text = node.IsScalar() ? node.Scalar() : std::string();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    fail(meta, path, fmt::format("must be an integer, got \"{}\"", text));
  return value;
}

uint16_t port_number(const YAML::Node& node, const Meta& meta, const std::string& path) {
  int64_t v = integer(node, meta, path);
  if (v < 1 || v > 65535) fail(meta, path, fmt::format("port {} is out of range 1-65535", v));
  return static_cast<uint16_t>(v);
}

bool boolean(const YAML::Node& node, const Meta& meta, const std::string& path) {
  std::string s = node.IsScalar() ? node.Scalar() : std::string();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  fail(meta, path, fmt::format("must be true or false, got \"{}\"", s));
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// A YAML mapping whose keys must all be accounted for.
class Fields {
 public:
  Fields(const YAML::Node& node, const Meta& meta, std::string path)
      : node_(node), meta_(meta), path_(std::move(path)) {
    if (node_.IsNull() || !node_.IsDefined()) return;
    if (!node_.IsMap()) fail(meta_, path_.empty() ? "spec" : path_, "must be a mapping");
  }

  // The value of `key` (undefined when absent); marks the key as known.
  YAML::Node get(const char* key) {
    known_.insert(key);
    if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node v = node_[key];
    if (v && v.IsNull()) return YAML::Node(YAML::NodeType::Undefined);  // `key:` = absent
    return v;
  }
  YAML::Node require(const char* key) {
    YAML::Node v = get(key);
    if (!v) fail(meta_, sub(key), "required field is missing");
    return v;
  }
  // Istio fields sluice does not implement yet: present -> error.
  void not_implemented(std::initializer_list<const char*> keys) {
    for (const char* k : keys)
      if (get(k)) fail(meta_, sub(k), fmt::format("{} is not implemented yet", k));
  }
  // Fields with no meaning at an ingress gateway without Kubernetes.
  void ignore(std::initializer_list<const char*> keys) {
    for (const char* k : keys) known_.insert(k);
  }
  void finish() const {
    if (!node_.IsMap()) return;
    for (const auto& kv : node_) {
      std::string k = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
      if (!known_.count(k)) fail(meta_, sub(k), fmt::format("unknown field \"{}\"", k));
    }
  }
  std::string sub(std::string_view key) const { return join(path_, key); }

 private:
  YAML::Node node_;
  const Meta& meta_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

void require_seq(const YAML::Node& n, const Meta& meta, const std::string& path) {
  if (!n.IsSequence()) fail(meta, path, "must be a list");
}

std::vector<std::string> string_list(const YAML::Node& n, const Meta& meta,
                                     const std::string& path) {
  std::vector<std::string> out;
  if (!n) return out;
  require_seq(n, meta, path);
  for (size_t i = 0; i < n.size(); ++i) out.push_back(scalar(n[i], meta, index(path, i)));
  return out;
}

Labels label_map(const YAML::Node& n, const Meta& meta, const std::string& path) {
  Labels out;
  if (!n) return out;
  if (!n.IsMap()) fail(meta, path, "must be a mapping");
  for (const auto& kv : n) {
    std::string k = scalar(kv.first, meta, path);
    out[k] = scalar(kv.second, meta, join(path, k));
  }
  return out;
}

// Istio StringMatch: exactly one of exact / prefix / regex. `allow_empty`: `{}`
// means "present" (headers, queryParams).
StringMatch string_match(const YAML::Node& n, const Meta& meta, const std::string& path,
                         bool allow_empty) {
  Fields f(n, meta, path);
  YAML::Node exact = f.get("exact"), prefix = f.get("prefix"), regex = f.get("regex");
  f.finish();
  int count = !!exact + !!prefix + !!regex;
  if (count > 1) fail(meta, path, "exactly one of exact, prefix or regex may be set");
  if (exact) return StringMatch::exact(scalar(exact, meta, join(path, "exact")));
  if (prefix) return StringMatch::prefix(scalar(prefix, meta, join(path, "prefix")));
  if (regex) return StringMatch::regex(scalar(regex, meta, join(path, "regex")));
  if (!allow_empty) fail(meta, path, "one of exact, prefix or regex is required");
  return StringMatch::present();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

HttpMatchIn parse_match(const YAML::Node& n, const Meta& meta, const std::string& path) {
  HttpMatchIn out;
  Fields f(n, meta, path);
  Matcher& m = out.matcher;
  if (auto v = f.get("uri")) m.uri = string_match(v, meta, f.sub("uri"), false);
  if (auto v = f.get("scheme")) m.scheme = string_match(v, meta, f.sub("scheme"), false);
  if (auto v = f.get("method")) m.method = string_match(v, meta, f.sub("method"), false);
  if (auto v = f.get("authority")) m.authority = string_match(v, meta, f.sub("authority"), false);
  for (const char* key : {"headers", "withoutHeaders"}) {
    auto v = f.get(key);
    if (!v) continue;
    std::string p = f.sub(key);
    if (!v.IsMap()) fail(meta, p, "must be a mapping of header name to match");
    for (const auto& kv : v) {
      std::string name = scalar(kv.first, meta, p);
      // Istio matches header names in lower case (Envoy lower-cases them).
      StringMatch sm = string_match(kv.second, meta, join(p, name), true);
      m.headers.push_back({lower(name), std::move(sm), std::string_view(key) == "withoutHeaders"});
    }
  }
  if (auto v = f.get("queryParams")) {
    std::string p = f.sub("queryParams");
    if (!v.IsMap()) fail(meta, p, "must be a mapping of parameter name to match");
    for (const auto& kv : v) {
      std::string name = scalar(kv.first, meta, p);
      m.query_params.push_back({name, string_match(kv.second, meta, join(p, name), true)});
    }
  }
  if (auto v = f.get("port")) m.port = port_number(v, meta, f.sub("port"));
  if (auto v = f.get("ignoreUriCase")) m.ignore_uri_case = boolean(v, meta, f.sub("ignoreUriCase"));
  if (auto v = f.get("gateways")) out.gateways = string_list(v, meta, f.sub("gateways"));
  // Conditions on the calling workload exist only inside the mesh.
  if (f.get("sourceLabels") || f.get("sourceNamespace")) out.source_labels = true;
  f.ignore({"name", "statPrefix"});
  f.finish();
  return out;
}

DestinationIn parse_route_destination(const YAML::Node& n, const Meta& meta,
                                      const std::string& path) {
  DestinationIn out;
  Fields f(n, meta, path);
  {
    std::string dp = f.sub("destination");
    Fields d(f.require("destination"), meta, dp);
    out.host = scalar(d.require("host"), meta, d.sub("host"));
    if (auto v = d.get("subset")) out.subset = scalar(v, meta, d.sub("subset"));
    if (auto v = d.get("port")) {
      Fields p(v, meta, d.sub("port"));
      if (auto num = p.get("number")) out.port = port_number(num, meta, p.sub("number"));
      p.finish();
    }
    d.finish();
  }
  if (auto v = f.get("weight")) {
    out.weight = integer(v, meta, f.sub("weight"));
    if (*out.weight < 0)
      fail(meta, f.sub("weight"), fmt::format("must be >= 0, got {}", *out.weight));
  }
  f.not_implemented({"headers"});
  f.finish();
  return out;
}

std::string decode_base64(std::string_view in, const Meta& meta, const std::string& path) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    int v = value(c);
    if (v < 0) fail(meta, path, "is not valid base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

HttpRuleIn parse_http_rule(const YAML::Node& n, const Meta& meta, const std::string& path) {
  HttpRuleIn out;
  Fields f(n, meta, path);
  if (auto v = f.get("name")) out.name = scalar(v, meta, f.sub("name"));
  if (auto v = f.get("match")) {
    std::string p = f.sub("match");
    require_seq(v, meta, p);
    for (size_t i = 0; i < v.size(); ++i)
      out.matches.push_back(parse_match(v[i], meta, index(p, i)));
  }
  if (auto v = f.get("route")) {
    std::string p = f.sub("route");
    require_seq(v, meta, p);
    for (size_t i = 0; i < v.size(); ++i)
      out.route.push_back(parse_route_destination(v[i], meta, index(p, i)));
  }
  if (auto v = f.get("directResponse")) {
    Fields d(v, meta, f.sub("directResponse"));
    int64_t status = integer(d.require("status"), meta, d.sub("status"));
    if (status < 200 || status > 599)
      fail(meta, d.sub("status"), fmt::format("status {} is out of range 200-599", status));
    DirectResponse dr;
    dr.status = static_cast<uint16_t>(status);
    if (auto b = d.get("body")) {
      Fields body(b, meta, d.sub("body"));
      auto s = body.get("string");
      auto bytes = body.get("bytes");
      if (s && bytes) fail(meta, body.sub("string"), "string and bytes are mutually exclusive");
      if (s) dr.body = scalar(s, meta, body.sub("string"));
      if (bytes)
        dr.body = decode_base64(scalar(bytes, meta, body.sub("bytes")), meta, body.sub("bytes"));
      body.finish();
    }
    d.finish();
    out.direct_response = std::move(dr);
  }
  f.not_implemented({"redirect", "rewrite", "timeout", "retries", "fault", "mirror", "mirrors",
                     "mirrorPercentage", "mirrorPercent", "mirror_percent", "corsPolicy", "headers",
                     "delegate"});
  f.finish();
  if (!out.route.empty() && out.direct_response)
    fail(meta, f.sub("directResponse"), "route and directResponse are mutually exclusive");
  if (out.route.empty() && !out.direct_response)
    fail(meta, f.sub("route"), "a rule needs route or directResponse");
  return out;
}

VirtualServiceRes parse_virtual_service(const YAML::Node& spec, Meta meta) {
  VirtualServiceRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  out.hosts = string_list(f.require("hosts"), m, "hosts");
  if (out.hosts.empty()) fail(m, "hosts", "at least one host is required");
  out.gateways = string_list(f.get("gateways"), m, "gateways");
  if (auto v = f.get("http")) {
    require_seq(v, m, "http");
    for (size_t i = 0; i < v.size(); ++i)
      out.http.push_back(parse_http_rule(v[i], m, index("http", i)));
  }
  f.not_implemented({"tls", "tcp"});
  f.ignore({"exportTo"});
  f.finish();
  return out;
}

void parse_traffic_policy(const YAML::Node& n, const Meta& m, const std::string& path) {
  Fields f(n, m, path);
  if (auto lb = f.get("loadBalancer")) {
    Fields l(lb, m, f.sub("loadBalancer"));
    if (auto s = l.get("simple")) {
      std::string v = upper(scalar(s, m, l.sub("simple")));
      static const std::set<std::string> known = {"UNSPECIFIED", "LEAST_CONN",  "RANDOM",
                                                  "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"};
      if (!known.count(v)) fail(m, l.sub("simple"), fmt::format("unknown load balancer \"{}\"", v));
      if (v != "ROUND_ROBIN")
        fail(m, l.sub("simple"), fmt::format("load balancer {} is not implemented yet", v));
    }
    l.not_implemented({"consistentHash", "localityLbSetting", "warmupDurationSecs", "warmup"});
    l.finish();
  }
  f.not_implemented({"connectionPool", "outlierDetection", "tls", "portLevelSettings", "tunnel",
                     "proxyProtocol", "retryBudget"});
  f.finish();
}

DestinationRuleRes parse_destination_rule(const YAML::Node& spec, Meta meta) {
  DestinationRuleRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  out.host = scalar(f.require("host"), m, "host");
  if (auto v = f.get("subsets")) {
    require_seq(v, m, "subsets");
    std::set<std::string> seen;
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = index("subsets", i);
      Fields s(v[i], m, p);
      SubsetIn sub;
      sub.name = scalar(s.require("name"), m, s.sub("name"));
      if (!seen.insert(sub.name).second)
        fail(m, s.sub("name"), fmt::format("duplicate subset \"{}\"", sub.name));
      sub.labels = label_map(s.get("labels"), m, s.sub("labels"));
      if (auto tp = s.get("trafficPolicy")) parse_traffic_policy(tp, m, s.sub("trafficPolicy"));
      s.finish();
      out.subsets.push_back(std::move(sub));
    }
  }
  if (auto tp = f.get("trafficPolicy")) parse_traffic_policy(tp, m, "trafficPolicy");
  f.not_implemented({"workloadSelector"});
  f.ignore({"exportTo"});
  f.finish();
  return out;
}

ServiceEntryRes parse_service_entry(const YAML::Node& spec, Meta meta) {
  ServiceEntryRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  out.hosts = string_list(f.require("hosts"), m, "hosts");
  if (out.hosts.empty()) fail(m, "hosts", "at least one host is required");
  if (auto v = f.get("ports")) {
    require_seq(v, m, "ports");
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = index("ports", i);
      Fields pf(v[i], m, p);
      ServicePort sp;
      sp.number = port_number(pf.require("number"), m, pf.sub("number"));
      if (auto n = pf.get("name")) sp.name = scalar(n, m, pf.sub("name"));
      if (auto n = pf.get("protocol")) sp.protocol = upper(scalar(n, m, pf.sub("protocol")));
      if (auto n = pf.get("targetPort")) sp.target_port = port_number(n, m, pf.sub("targetPort"));
      pf.finish();
      for (const auto& other : out.ports)
        if (other.number == sp.number)
          fail(m, pf.sub("number"), fmt::format("port {} is declared twice", sp.number));
      out.ports.push_back(std::move(sp));
    }
  }
  out.resolution = "NONE";
  if (auto v = f.get("resolution")) {
    out.resolution = upper(scalar(v, m, "resolution"));
    static const std::set<std::string> known = {"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN",
                                                "DYNAMIC_DNS"};
    if (!known.count(out.resolution))
      fail(m, "resolution", fmt::format("unknown resolution \"{}\"", out.resolution));
  }
  if (auto v = f.get("endpoints")) {
    require_seq(v, m, "endpoints");
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = index("endpoints", i);
      Fields ef(v[i], m, p);
      WorkloadEndpoint ep;
      ep.address = scalar(ef.require("address"), m, ef.sub("address"));
      if (auto ports = ef.get("ports")) {
        std::string pp = ef.sub("ports");
        if (!ports.IsMap()) fail(m, pp, "must be a mapping of port name to number");
        for (const auto& kv : ports) {
          std::string name = scalar(kv.first, m, pp);
          ep.ports[name] = port_number(kv.second, m, join(pp, name));
        }
      }
      ep.labels = label_map(ef.get("labels"), m, ef.sub("labels"));
      if (auto w = ef.get("weight")) {
        int64_t wv = integer(w, m, ef.sub("weight"));
        if (wv < 0) fail(m, ef.sub("weight"), fmt::format("must be >= 0, got {}", wv));
        // Istio: an unset (zero) endpoint weight counts as 1.
        ep.weight = wv == 0 ? 1 : static_cast<uint32_t>(std::min<int64_t>(wv, UINT32_MAX));
      }
      ef.ignore({"network", "locality", "serviceAccount"});
      ef.finish();
      out.endpoints.push_back(std::move(ep));
    }
  }
  f.not_implemented({"workloadSelector"});
  f.ignore({"addresses", "location", "exportTo", "subjectAltNames"});
  f.finish();
  return out;
}

GatewayRes parse_gateway(const YAML::Node& spec, Meta meta) {
  GatewayRes out;
  out.meta = std::move(meta);
  const Meta& m = out.meta;
  Fields f(spec, m, "");
  YAML::Node servers = f.get("servers");
  f.ignore({"selector"});
  f.finish();
  if (!servers || servers.size() == 0) fail(m, "servers", "a Gateway needs at least one server");
  require_seq(servers, m, "servers");
  for (size_t i = 0; i < servers.size(); ++i) {
    std::string p = index("servers", i);
    Fields s(servers[i], m, p);
    GatewayServer srv;
    {
      Fields pf(s.require("port"), m, s.sub("port"));
      srv.port = port_number(pf.require("number"), m, pf.sub("number"));
      if (auto v = pf.get("name")) srv.port_name = scalar(v, m, pf.sub("name"));
      srv.protocol = upper(scalar(pf.require("protocol"), m, pf.sub("protocol")));
      pf.ignore({"targetPort"});
      pf.finish();
    }
    srv.hosts = string_list(s.require("hosts"), m, s.sub("hosts"));
    if (srv.hosts.empty()) fail(m, s.sub("hosts"), "at least one host is required");
    if (auto v = s.get("name")) srv.name = scalar(v, m, s.sub("name"));
    s.not_implemented({"tls", "bind", "defaultEndpoint"});
    s.finish();
    out.servers.push_back(std::move(srv));
  }
  return out;
}

struct Parser {
  Resources res;
  std::vector<std::string> warnings;
  std::set<std::string> seen;  // kind/ns/name

  void document(const YAML::Node& doc, const std::string& origin) {
    if (!doc || doc.IsNull()) return;
    Meta file_meta;
    file_meta.kind = origin;
    if (!doc.IsMap()) throw LoadError{Error{origin, "", "a document must be a mapping"}};
    std::string kind = doc["kind"] && doc["kind"].IsScalar() ? doc["kind"].Scalar() : "";
    std::string api =
        doc["apiVersion"] && doc["apiVersion"].IsScalar() ? doc["apiVersion"].Scalar() : "";
    if (kind.empty()) throw LoadError{Error{origin, "kind", "required field is missing"}};
    // `kubectl get -o yaml` wraps objects in a List (or <Kind>List).
    if (kind.size() >= 4 && kind.ends_with("List") && doc["items"]) {
      YAML::Node items = doc["items"];
      if (!items.IsSequence()) throw LoadError{Error{origin, "items", "must be a list"}};
      for (const auto& item : items) document(item, origin);
      return;
    }
    Meta meta;
    meta.kind = kind;
    meta.file = origin;
    YAML::Node md = doc["metadata"];
    if (md && md.IsMap()) {
      if (md["name"] && md["name"].IsScalar()) meta.name = md["name"].Scalar();
      if (md["namespace"] && md["namespace"].IsScalar()) meta.namespace_ = md["namespace"].Scalar();
    }
    static const std::set<std::string> versions = {
        "networking.istio.io/v1alpha3", "networking.istio.io/v1beta1", "networking.istio.io/v1"};
    static const std::set<std::string> kinds = {"Gateway", "VirtualService", "DestinationRule",
                                                "ServiceEntry"};
    if (!versions.count(api) || !kinds.count(kind)) {
      warnings.push_back(fmt::format("{}: ignoring {} {} ({}): kind not supported", origin, kind,
                                     meta.display().empty() ? "?" : meta.display(), api));
      return;
    }
    if (meta.name.empty()) fail(meta, "metadata.name", "required field is missing");
    for (const auto& kv : doc) {
      std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
      if (k != "apiVersion" && k != "kind" && k != "metadata" && k != "spec" && k != "status")
        fail(meta, k, fmt::format("unknown field \"{}\"", k));
    }
    if (!seen.insert(kind + "/" + meta.key()).second)
      fail(meta, "metadata.name", "defined more than once");
    YAML::Node spec = doc["spec"];
    if (!spec) fail(meta, "spec", "required field is missing");
    if (kind == "Gateway") res.gateways.push_back(parse_gateway(spec, meta));
    if (kind == "VirtualService") res.virtual_services.push_back(parse_virtual_service(spec, meta));
    if (kind == "DestinationRule")
      res.destination_rules.push_back(parse_destination_rule(spec, meta));
    if (kind == "ServiceEntry") res.service_entries.push_back(parse_service_entry(spec, meta));
  }

  void stream(std::string_view text, const std::string& origin) {
    std::vector<YAML::Node> docs;
    try {
      std::string copy(text);
      docs = YAML::LoadAll(copy);
    } catch (const YAML::Exception& e) {
      throw LoadError{Error{origin,
                            fmt::format("line {}, column {}", e.mark.line + 1, e.mark.column + 1),
                            "malformed YAML: " + e.msg}};
    }
    try {
      for (const auto& d : docs) document(d, origin);
    } catch (const YAML::Exception& e) {
      // Type errors yaml-cpp reports while we walk the tree.
      throw LoadError{Error{
          origin, fmt::format("line {}, column {}", e.mark.line + 1, e.mark.column + 1), e.msg}};
    }
  }

  void file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw LoadError{Error{path, "", "cannot read file"}};
    std::stringstream ss;
    ss << in.rdbuf();
    stream(ss.str(), path);
  }

  void path(const std::string& p) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> files;
      for (const auto& entry : fs::directory_iterator(p, ec)) {
        auto ext = entry.path().extension().string();
        if (entry.is_regular_file(ec) && (ext == ".yaml" || ext == ".yml"))
          files.push_back(entry.path().string());
      }
      if (ec) throw LoadError{Error{p, "", "cannot list directory: " + ec.message()}};
      std::sort(files.begin(), files.end());
      for (const auto& f : files) file(f);
      return;
    }
    if (!fs::exists(p, ec)) throw LoadError{Error{p, "", "no such file or directory"}};
    file(p);
  }

  Parsed done() {
    return Parsed{std::make_shared<const Resources>(std::move(res)), std::move(warnings)};
  }
};

}  // namespace

Result<Parsed> parse_files(const std::vector<std::string>& paths) {
  Parser parser;
  try {
    for (const auto& p : paths) parser.path(p);
  } catch (const LoadError& e) {
    return e.error;
  }
  return parser.done();
}

Result<Parsed> parse_string(std::string_view yaml, std::string origin) {
  Parser parser;
  try {
    parser.stream(yaml, origin);
  } catch (const LoadError& e) {
    return e.error;
  }
  return parser.done();
}

}  // namespace sluice::istio
