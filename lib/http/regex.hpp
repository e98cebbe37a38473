#pragma once
// The RE2 options of every pattern sluice compiles: route and policy matchers,
// URI rewrites, and the Istio loader's checks, so that the loader accepts
// exactly what the gateway compiles. In http/ because it is the layer
// routing, policy and istio may all include.

#include <re2/re2.h>

namespace sluice::http {

inline re2::RE2::Options regex_options() {
  re2::RE2::Options options;
  options.set_log_errors(false);  // the error goes back with the config, not to stderr
  return options;
}

}  // namespace sluice::http
