#include "support/exposition.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <regex>
#include <sstream>

namespace sluice::test {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string sample(const std::string& text, const std::string& prefix,
                   const std::vector<std::string>& parts) {
  std::vector<std::string> found;
  for (const auto& line : lines_of(text)) {
    if (!line.starts_with(prefix)) continue;
    bool all = true;
    for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
    if (all) found.push_back(line.substr(line.rfind(' ') + 1));
  }
  REQUIRE_MESSAGE(found.size() == 1, prefix);
  return found.front();
}

void check_exposition(const std::string& text) {
  static const std::regex kSample(
      R"re(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\["\\n])*")*\})? (-?[0-9.e+]+|\+Inf|NaN)$)re");
  static const std::regex kComment(R"(^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  std::map<std::string, std::string> types;
  std::map<std::string, uint64_t> last_bucket;
  for (const auto& line : lines_of(text)) {
    std::smatch m;
    if (line.starts_with("#")) {
      REQUIRE_MESSAGE(std::regex_match(line, m, kComment), line);
      if (m[1] == "TYPE") types[m[2]] = line.substr(line.rfind(' ') + 1);
      continue;
    }
    REQUIRE_MESSAGE(std::regex_match(line, m, kSample), line);
    std::string name = m[1];
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (name.ends_with(suffix) && types.count(name.substr(0, name.size() - strlen(suffix))))
        family = name.substr(0, name.size() - strlen(suffix));
    REQUIRE_MESSAGE(types.count(family), "no TYPE before " << line);
    if (name.ends_with("_bucket")) {
      std::string series = line.substr(0, line.find(",le="));
      uint64_t v = std::stoull(line.substr(line.rfind(' ') + 1));
      CHECK_MESSAGE(v >= last_bucket[series], line);
      last_bucket[series] = v;
      if (line.find("le=\"+Inf\"") != std::string::npos) last_bucket[series] = 0;
    }
  }
}

}  // namespace sluice::test
