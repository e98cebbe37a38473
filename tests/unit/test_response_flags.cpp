// Response flags (include/sluice/response_flags.hpp): Envoy's text, in the
// order set, each once; and which side a ProxyError blames.

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "sluice/hooks.hpp"
#include "sluice/response_flags.hpp"

namespace test_response_flags {

using namespace sluice;

TEST_CASE("response flags: none is \"-\", several join with ',' in the order set") {
  ResponseFlags flags;
  CHECK(flags.empty());
  CHECK(to_string(flags) == "-");
  flags.add(ResponseFlag::upstream_retry_limit_exceeded);
  flags.add(ResponseFlag::upstream_connection_failure);
  CHECK(to_string(flags) == "URX,UF");                     // Envoy: the retry verdict comes first
  flags.add(ResponseFlag::upstream_retry_limit_exceeded);  // already there
  CHECK(flags.size() == 2);
  CHECK(to_string(flags) == "URX,UF");
  CHECK(flags.has(ResponseFlag::upstream_connection_failure));
  CHECK_FALSE(flags.has(ResponseFlag::no_route_found));
  CHECK(to_string(ResponseFlags{ResponseFlag::upstream_overflow,
                                ResponseFlag::upstream_request_timeout}) == "UO,UT");
  ResponseFlags merged{ResponseFlag::delay_injected};
  merged.add(ResponseFlags{ResponseFlag::fault_injected, ResponseFlag::delay_injected});
  CHECK(to_string(merged) == "DI,FI");
  CHECK(merged == ResponseFlags{ResponseFlag::delay_injected, ResponseFlag::fault_injected});
  CHECK_FALSE(merged == ResponseFlags{ResponseFlag::fault_injected, ResponseFlag::delay_injected});
}

TEST_CASE("response flags: every flag has Envoy's short name, all distinct") {
  CHECK(to_string(ResponseFlag::no_healthy_upstream) == "UH");
  CHECK(to_string(ResponseFlag::upstream_request_timeout) == "UT");
  CHECK(to_string(ResponseFlag::local_reset) == "LR");
  CHECK(to_string(ResponseFlag::upstream_remote_reset) == "UR");
  CHECK(to_string(ResponseFlag::upstream_connection_failure) == "UF");
  CHECK(to_string(ResponseFlag::upstream_connection_termination) == "UC");
  CHECK(to_string(ResponseFlag::upstream_overflow) == "UO");
  CHECK(to_string(ResponseFlag::no_route_found) == "NR");
  CHECK(to_string(ResponseFlag::delay_injected) == "DI");
  CHECK(to_string(ResponseFlag::fault_injected) == "FI");
  CHECK(to_string(ResponseFlag::rate_limited) == "RL");
  CHECK(to_string(ResponseFlag::unauthorized_external_service) == "UAEX");
  CHECK(to_string(ResponseFlag::downstream_connection_termination) == "DC");
  CHECK(to_string(ResponseFlag::upstream_retry_limit_exceeded) == "URX");
  CHECK(to_string(ResponseFlag::stream_idle_timeout) == "SI");
  CHECK(to_string(ResponseFlag::downstream_protocol_error) == "DPE");
  CHECK(to_string(ResponseFlag::upstream_max_stream_duration) == "UMSDR");
  CHECK(to_string(ResponseFlag::duration_timeout) == "DT");
  CHECK(to_string(ResponseFlag::upstream_protocol_error) == "UPE");
  CHECK(to_string(ResponseFlag::no_cluster_found) == "NC");
  CHECK(to_string(ResponseFlag::rate_limit_service_error) == "RLSE");
  std::set<std::string> names;
  ResponseFlags all;
  for (size_t i = 0; i < kResponseFlagCount; ++i) {
    auto f = static_cast<ResponseFlag>(i);
    names.insert(std::string(to_string(f)));
    all.add(f);
  }
  CHECK(names.size() == kResponseFlagCount);
  CHECK(all.size() == kResponseFlagCount);  // every flag fits at once
}

TEST_CASE("ProxyError: which side failed") {
  Response r;
  auto source = [&](ProxyError::Kind k) { return ProxyError{k, {}, {}, r}.source(); };
  CHECK(source(ProxyError::Kind::connect_failure) == ProxyError::Source::upstream);
  CHECK(source(ProxyError::Kind::overflow) == ProxyError::Source::upstream);
  CHECK(source(ProxyError::Kind::upstream_protocol_error) == ProxyError::Source::upstream);
  CHECK(source(ProxyError::Kind::no_route) == ProxyError::Source::downstream);
  CHECK(source(ProxyError::Kind::downstream_timeout) == ProxyError::Source::downstream);
}

}  // namespace test_response_flags
