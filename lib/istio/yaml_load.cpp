#include "istio/yaml_load.hpp"

#include <yaml-cpp/eventhandler.h>

#include <sstream>

namespace sluice::istio {

namespace {

// Notes where each document starts; everything else is ignored.
class DocumentStarts : public YAML::EventHandler {
 public:
  YAML::Mark start;
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

std::vector<YAML::Node> load_all_documents(const std::string& text) {
  {
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentStarts events;
    int previous = -1;
    while (parser.HandleNextDocument(events)) {
      if (events.start.pos == previous)
        throw YAML::ParserException(events.start, "no document can be read here");
      previous = events.start.pos;
    }
  }
  return YAML::LoadAll(text);
}

}  // namespace sluice::istio
