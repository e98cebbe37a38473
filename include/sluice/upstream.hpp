#pragma once
// Upstream clusters: endpoints, subsets, load balancing, connection pooling.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sluice {

using Labels = std::map<std::string, std::string>;

struct Endpoint {
  std::string address;  // IPv4 or IPv6 literal (DNS is resolved by the loader)
  uint16_t port = 0;
  Labels labels;
  uint32_t weight = 1;
};

struct Subset {
  std::string name;
  Labels labels;  // an endpoint belongs when it carries all of these
};

enum class LoadBalancer { round_robin, least_request, random };

struct ConnectionPoolSettings {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds idle_timeout{3'600'000};
  uint32_t max_requests_per_connection = 0;  // 0: unlimited; 1: no keep-alive
  uint32_t max_idle_per_endpoint = 64;       // per worker
};

struct UpstreamConfig {
  std::string name;
  std::vector<Endpoint> endpoints;
  std::vector<Subset> subsets;
  LoadBalancer load_balancer = LoadBalancer::round_robin;
  ConnectionPoolSettings pool;
};

}  // namespace sluice
