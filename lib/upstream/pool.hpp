#pragma once
// Per-worker keep-alive pool of upstream connections, keyed by endpoint.
// Owned by one worker thread: no locks. Idle times are measured on the
// worker's clock (Loop::now(), the gateway's injectable clock), passed in.

#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice {

class ClusterState;
struct EndpointState;

// What an HTTP/2 stream's multiplexer (h2_pool) tells the session holding
// its socket pair beyond the bytes.
struct H2StreamReport {
  // The upstream provably did not act on the stream (REFUSED_STREAM, or
  // past a GOAWAY's last stream id): it may go again on another connection.
  bool refused = false;
};

struct UpstreamConnection {
  explicit UpstreamConnection(asio::ip::tcp::socket s) : socket(std::move(s)) {}
  // Gives back the connection's place in the upstream's and the endpoint's
  // open-connection counts (max_connections).
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  asio::ip::tcp::socket socket;
  // TLS origination: the session runs over `socket`, which stays the place
  // to cancel, peek and close.
  std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket&>> tls;
  std::shared_ptr<ClusterState> cluster;    // counts open connections per upstream
  std::shared_ptr<EndpointState> endpoint;  // and per endpoint
  std::string endpoint_key;
  // Set on one end of an HTTP/2 stream's socket pair (h2_pool): closed,
  // never pooled, when released.
  std::shared_ptr<H2StreamReport> h2;
  uint32_t requests = 0;                               // requests sent on this connection
  std::chrono::steady_clock::time_point idle_since{};  // on the worker's clock
};

// Response bytes already inside the TLS engine (decrypted or not): a
// connection with any is not at a message boundary and must not be reused.
bool has_pending_input(UpstreamConnection& c);

class ConnectionPool {
 public:
  // An idle connection to `key` that is still usable, or null. Connections
  // idle longer than `idle_timeout`, closed by the peer, or with unexpected
  // bytes pending are discarded (the keep-alive race Envoy reports as UC).
  std::unique_ptr<UpstreamConnection> take(const std::string& key,
                                           std::chrono::milliseconds idle_timeout,
                                           std::chrono::steady_clock::time_point now);
  void put(std::unique_ptr<UpstreamConnection> conn, size_t max_idle,
           std::chrono::steady_clock::time_point now);
  // Closes `cluster`'s connections idle longer than `idle_timeout` (there is
  // no timer: called when a request finds max_connections reached).
  void sweep(std::chrono::milliseconds idle_timeout, const ClusterState* cluster,
             std::chrono::steady_clock::time_point now);
  // Closes one idle connection of `cluster` (any endpoint), freeing a place
  // under max_connections for a waiting request. False if there was none.
  bool evict_one(const ClusterState* cluster);
  void clear();
  size_t idle_count() const;

 private:
  std::unordered_map<std::string, std::vector<std::unique_ptr<UpstreamConnection>>> idle_;
};

}  // namespace sluice
