#pragma once
// Request match conditions (Istio HTTPMatchRequest). Plain values; compiled by
// Router::compile into RE2 programs and lowered strings.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

struct StringMatch {
  enum class Kind { exact, prefix, suffix, regex, present };
  Kind kind = Kind::present;
  std::string value;

  static StringMatch exact(std::string v) { return {Kind::exact, std::move(v)}; }
  static StringMatch prefix(std::string v) { return {Kind::prefix, std::move(v)}; }
  static StringMatch suffix(std::string v) { return {Kind::suffix, std::move(v)}; }
  // RE2 syntax; must match the whole value.
  static StringMatch regex(std::string v) { return {Kind::regex, std::move(v)}; }
  static StringMatch present() { return {Kind::present, {}}; }
};

struct HeaderMatch {
  std::string name;  // matched case-insensitively
  StringMatch match;
  bool invert = false;  // true: the header must NOT match (withoutHeaders, absent)
};

struct QueryParamMatch {
  std::string name;
  StringMatch match;  // exact, prefix, regex or present
};

// All set conditions must hold (AND). An empty Matcher matches every request.
struct Matcher {
  std::optional<StringMatch> uri;  // path only (no query); exact, prefix or regex
  bool ignore_uri_case = false;    // exact and prefix only, as Istio
  std::optional<StringMatch> method;
  std::optional<StringMatch> authority;  // Host with its port, as sent
  std::optional<StringMatch> scheme;
  std::vector<HeaderMatch> headers;
  std::vector<QueryParamMatch> query_params;
  std::optional<uint16_t> port;  // listener port

  // Fluent helpers for host code.
  Matcher& path_exact(std::string v) {
    uri = StringMatch::exact(std::move(v));
    return *this;
  }
  Matcher& path_prefix(std::string v) {
    uri = StringMatch::prefix(std::move(v));
    return *this;
  }
  Matcher& path_regex(std::string v) {
    uri = StringMatch::regex(std::move(v));
    return *this;
  }
  Matcher& header(std::string name, StringMatch m) {
    headers.push_back({std::move(name), std::move(m), false});
    return *this;
  }
  Matcher& without_header(std::string name, StringMatch m = StringMatch::present()) {
    headers.push_back({std::move(name), std::move(m), true});
    return *this;
  }
  Matcher& query(std::string name, StringMatch m) {
    query_params.push_back({std::move(name), std::move(m)});
    return *this;
  }
};

}  // namespace sluice
