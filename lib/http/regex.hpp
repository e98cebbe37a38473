#pragma once
// Every pattern sluice compiles goes through here: route and policy matchers,
// URI rewrites, and the Istio loader's checks, so that the loader accepts
// exactly what the gateway compiles and every error reads the same. In
// http/ because it is the layer routing, policy and istio may all include.

#include <fmt/format.h>
#include <re2/re2.h>

#include <memory>
#include <string_view>

#include "sluice/result.hpp"

namespace sluice::http {

inline re2::RE2::Options regex_options() {
  re2::RE2::Options options;
  options.set_log_errors(false);  // the error goes back with the config, not to stderr
  return options;
}

// `pattern` compiled, or an error whose message is `invalid regex
// "<pattern>": <RE2's reason>`; the caller names the object and field.
inline Result<std::unique_ptr<const re2::RE2>> compile_regex(std::string_view pattern) {
  auto re = std::make_unique<const re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()),
                                             regex_options());
  if (!re->ok())
    return Error{{}, {}, fmt::format("invalid regex \"{}\": {}", pattern, re->error())};
  return re;
}

}  // namespace sluice::http
