#pragma once
// The one evaluator of StringMatch (include/sluice/matcher.hpp): route match
// conditions (routing/) and CORS allowed origins (policy/) both run it. In
// http/ because it is the layer routing and policy may both include. The
// regex is compiled once, with the configuration; matching allocates nothing.

#include <re2/re2.h>

#include <memory>
#include <string>
#include <string_view>

#include "sluice/matcher.hpp"
#include "sluice/result.hpp"

namespace sluice::http {

// A StringMatch ready to run: the value lowered when the match ignores case,
// the regex compiled.
struct CompiledStringMatch {
  StringMatch::Kind kind = StringMatch::Kind::present;
  std::string value;
  bool ignore_case = false;
  std::unique_ptr<const re2::RE2> regex;  // set for Kind::regex

  // Exact, prefix and suffix compare bytes (exact and prefix ASCII
  // case-insensitively when ignore_case); regex must match the whole input;
  // present matches any input (the caller found the value).
  bool matches(std::string_view input) const;
};

// Compiles `in`. `ignore_case` applies to exact and prefix only, as Istio's
// ignoreUriCase. An invalid regex is an error whose message is `invalid
// regex "<pattern>": <reason>`; the caller names the object and field.
Result<CompiledStringMatch> compile_string_match(const StringMatch& in, bool ignore_case = false);

}  // namespace sluice::http
