#pragma once
// Every YAML text the loader reads goes through here.

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::istio {

// YAML::LoadAll, except that input on which yaml-cpp 0.7 makes no progress
// (a document starting where the previous one did, e.g. the text ",") is
// refused with a YAML::ParserException instead of looping forever
// (yaml-cpp issue 1040, fixed after 0.7).
std::vector<YAML::Node> load_all_documents(const std::string& text);

struct Meta;  // istio/model.hpp
// A Go / protobuf duration ("0.5s", "100ms", "1m30s"), to the millisecond;
// a bad one throws LoadError naming `meta` and `path`.
std::chrono::milliseconds duration(const YAML::Node& node, const Meta& meta,
                                   const std::string& path);

// Field paths in errors: "a.b", "a[3]".
std::string join(std::string_view path, std::string_view key);
std::string index(std::string_view path, size_t i);
// A scalar's text; anything else throws LoadError ("must be a string").
std::string scalar(const YAML::Node& node, const Meta& meta, const std::string& path);
// true / false, and a finite number; anything else throws LoadError.
bool boolean(const YAML::Node& node, const Meta& meta, const std::string& path);
double decimal(const YAML::Node& node, const Meta& meta, const std::string& path);
int64_t integer(const YAML::Node& node, const Meta& meta, const std::string& path);
uint16_t port_number(const YAML::Node& node, const Meta& meta, const std::string& path);
// Throws LoadError ("must be a list") unless `n` is a sequence.
void require_list(const YAML::Node& n, const Meta& meta, const std::string& path);
// A mapping of string to string (labels, selectors).
std::map<std::string, std::string> label_map(const YAML::Node& n, const Meta& meta,
                                             const std::string& path);

// A YAML mapping whose keys must all be accounted for: every reader of an
// Istio or Envoy object walks it with one of these, so an unknown (or
// misspelt) field is an error naming its path.
class Fields {
 public:
  Fields(const YAML::Node& node, const Meta& meta, std::string path);

  // The value of `key` (undefined when absent or null); marks it known.
  YAML::Node get(const char* key);
  YAML::Node require(const char* key);
  // Fields sluice does not implement yet: present -> error.
  void not_implemented(std::initializer_list<const char*> keys);
  // Fields accepted without meaning here.
  void ignore(std::initializer_list<const char*> keys);
  // Throws for the first field no one asked for.
  void finish() const;
  std::string sub(std::string_view key) const { return join(path_, key); }
  const std::string& path() const { return path_; }
  const Meta& meta() const { return meta_; }

 private:
  YAML::Node node_;
  const Meta& meta_;
  std::string path_;
  std::set<std::string, std::less<>> known_;
};

}  // namespace sluice::istio
