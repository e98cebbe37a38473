#pragma once
// Every YAML text the loader reads goes through here.

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <string>
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

}  // namespace sluice::istio
