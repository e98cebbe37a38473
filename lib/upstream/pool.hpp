#pragma once
// Per-worker keep-alive pool of upstream connections, keyed by endpoint.
// Owned by one worker thread: no locks.

#include <asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice {

class ClusterState;

struct UpstreamConnection {
  explicit UpstreamConnection(asio::ip::tcp::socket s) : socket(std::move(s)) {}
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  asio::ip::tcp::socket socket;
  std::shared_ptr<ClusterState> cluster;  // counts open connections per upstream
  std::string endpoint_key;
  uint32_t requests = 0;  // requests sent on this connection
  std::chrono::steady_clock::time_point idle_since{};
};

class ConnectionPool {
 public:
  // An idle connection to `key` that is still usable, or null. Connections
  // idle longer than `idle_timeout`, closed by the peer, or with unexpected
  // bytes pending are discarded (the keep-alive race Envoy reports as UC).
  std::unique_ptr<UpstreamConnection> take(const std::string& key,
                                           std::chrono::milliseconds idle_timeout);
  void put(std::unique_ptr<UpstreamConnection> conn, size_t max_idle);
  void clear();
  size_t idle_count() const;

 private:
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConnection>>> idle_;
};

}  // namespace sluice
