#pragma once
// What the proxy session asks of an upstream: pick an endpoint, lease a
// connection, report how an attempt went. Behind these calls sit the load
// balancers, connection limits (circuit breaking), outlier detection and
// health state. State shared by all workers lives in ClusterState, one per
// upstream name, carried across configuration reloads.

#include <asio/awaitable.hpp>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/policy.hpp"
#include "sluice/request.hpp"
#include "sluice/upstream.hpp"
#include "upstream/pool.hpp"

namespace sluice {

struct CompiledUpstream;
struct EndpointSet;
struct ConnectionSlot;
class Worker;

// Shared, thread-safe runtime state of one upstream.
class ClusterState {
 public:
  explicit ClusterState(std::string name) : name_(std::move(name)) {}

  // Aligns per-endpoint state with a new endpoint list (matched by "ip:port"
  // key, so counters and ejections survive reloads). Control thread only,
  // before the snapshot is published.
  void update(const CompiledUpstream& upstream);

  UpstreamView view() const;
  const std::string& name() const { return name_; }

  std::atomic<uint64_t> active_requests{0};
  std::atomic<uint64_t> pending_requests{0};
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> overflows{0};

 private:
  std::string name_;
  mutable std::mutex mutex_;  // guards keys_ (views and updates only)
  std::vector<std::string> keys_;
};

// All ClusterStates of one Gateway, by upstream name.
class ClusterRegistry {
 public:
  std::shared_ptr<ClusterState> get(const std::string& name);
  std::shared_ptr<ClusterState> find(std::string_view name) const;
  // Drops state of upstreams no longer configured.
  void retain(const std::vector<std::string>& names);

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<ClusterState>> states_;
};

struct PickRequest {
  const RequestHead& request;
  std::string_view client_ip;
  std::span<const int64_t> tried;  // endpoints already attempted for this request
  bool avoid_tried = false;
};

struct PickResult {
  int64_t endpoint = -1;   // index into CompiledUpstream::endpoints; -1: none available
  std::string set_cookie;  // Set-Cookie value to add to the response, if any
};

PickResult pick_endpoint(Worker& worker, const CompiledUpstream& upstream, const EndpointSet& set,
                         const PickRequest& request);

struct Lease {
  enum class Status { ok, connect_failure, connect_timeout, overflow, cancelled };
  Status status = Status::connect_failure;
  std::unique_ptr<UpstreamConnection> conn;
  bool reused = false;
};

// A pooled or new connection to `endpoint`, within the upstream's limits.
// Uses `slot` for the connect deadline (Timeout::upstream_connect).
asio::awaitable<Lease> lease_connection(Worker& worker, ConnectionSlot& slot,
                                        const CompiledUpstream& upstream, int64_t endpoint);
void release_connection(Worker& worker, const CompiledUpstream& upstream,
                        std::unique_ptr<UpstreamConnection> conn, bool reusable);

// Brackets one upstream attempt (least-request counts, outlier detection).
void attempt_started(Worker& worker, const CompiledUpstream& upstream, int64_t endpoint);
void attempt_finished(Worker& worker, const CompiledUpstream& upstream, int64_t endpoint,
                      policy::AttemptOutcome outcome, uint16_t status);

}  // namespace sluice
