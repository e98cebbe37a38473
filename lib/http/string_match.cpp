#include "http/string_match.hpp"

#include "http/regex.hpp"
#include "http/tokens.hpp"

namespace sluice::http {

namespace {

// `input` starts with `lowered`, comparing `input` lowered (ASCII).
bool starts_with_lowered(std::string_view input, std::string_view lowered) {
  if (input.size() < lowered.size()) return false;
  for (size_t i = 0; i < lowered.size(); ++i)
    if (to_lower(input[i]) != lowered[i]) return false;
  return true;
}

}  // namespace

bool CompiledStringMatch::matches(std::string_view input) const {
  switch (kind) {
    case StringMatch::Kind::exact:
      if (input.size() != value.size()) return false;
      return ignore_case ? starts_with_lowered(input, value) : input == value;
    case StringMatch::Kind::prefix:
      if (input.size() < value.size()) return false;
      return ignore_case ? starts_with_lowered(input, value)
                         : input.compare(0, value.size(), value) == 0;
    case StringMatch::Kind::suffix:
      return input.size() >= value.size() &&
             input.compare(input.size() - value.size(), value.size(), value) == 0;
    case StringMatch::Kind::regex:
      return regex && re2::RE2::FullMatch(re2::StringPiece(input.data(), input.size()), *regex);
    case StringMatch::Kind::present:
      return true;
  }
  return false;
}

Result<CompiledStringMatch> compile_string_match(const StringMatch& in, bool ignore_case) {
  CompiledStringMatch out;
  out.kind = in.kind;
  out.ignore_case =
      ignore_case && (in.kind == StringMatch::Kind::exact || in.kind == StringMatch::Kind::prefix);
  out.value = out.ignore_case ? to_lower(in.value) : in.value;
  if (in.kind == StringMatch::Kind::regex) {
    auto re = compile_regex(in.value);
    if (!re) return re.error();
    out.regex = std::move(re).value();
  }
  return out;
}

}  // namespace sluice::http
