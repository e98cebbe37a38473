#pragma once
// The admin endpoints of a Gateway, on a port of their own (Envoy's admin
// interface, Istio's status ports): readiness, metrics, the running
// configuration, upstream state and the live traffic graph. Reads the
// gateway only through its public API; runs on its own thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sluice/result.hpp"

namespace sluice {

class Gateway;

struct AdminOptions {
  std::string address = "127.0.0.1";  // admin binds to localhost unless told otherwise
  uint16_t port = 15000;              // 0: the OS picks one; AdminServer::port() tells which
  // Paths served; empty: all of them (/ready, /healthz/ready,
  // /stats/prometheus, /stats, /config_dump, /clusters, /graph,
  // /graph.json). Istio's status ports serve one path each.
  std::vector<std::string> paths;
  // Bounds, like the gateway's own listeners.
  size_t max_connections = 64;  // more are accepted and closed at once
  size_t max_request_header_bytes = 16 * 1024;
  size_t max_request_headers = 64;
  std::chrono::milliseconds request_header_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};  // keep-alive idle
  // The traffic graph samples Gateway::stats() this often; windows of
  // 1, 5 and 15 minutes are computed from the samples kept.
  std::chrono::milliseconds sample_interval{2'000};
  // The sampler's time source. Empty: steady_clock, and a sample is taken
  // every sample_interval. Set (tests, simulations): samples are taken only
  // by sample(), at the time it reads, so a test moves time without
  // sleeping.
  std::function<std::chrono::steady_clock::time_point()> clock;
};

class AdminServer {
 public:
  // `gateway` must outlive the server.
  AdminServer(const Gateway& gateway, AdminOptions options = {});
  ~AdminServer();  // stop()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds and starts the server thread; a first graph sample is taken. An
  // error names the address when it cannot bind. Once only.
  Status start();
  // Closes the listener and every connection, joins the thread. Idempotent.
  void stop();
  // Bound port after start(), 0 before.
  uint16_t port() const;
  // Takes a graph sample now (at the clock's time). Thread-safe.
  void sample();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
