#pragma once
// A worker: one io_context on one thread, its own acceptors (SO_REUSEPORT),
// upstream pools, LB cursors and RNG. Everything here is touched only from the
// worker's thread; the control side talks to it by posting.

#include <array>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/snapshot.hpp"
#include "net/loop.hpp"
#include "proxy/host.hpp"
#include "sluice/hooks.hpp"
#include "upstream/cluster.hpp"

namespace sluice {

// Open downstream connections per client IP (Limits::max_connections_per_client),
// across workers. A connection is known by its socket (descriptor plus
// inode), which it keeps wherever it goes (TLS stream, session, parked and
// resumed): it ends when that socket is closed, whichever path closes it, so
// no close path needs a hook. Ended entries are dropped when their IP is at
// the limit (so decisions count exactly) and in amortised sweeps (so memory
// stays bounded by the open connections).
class ClientConnections {
 public:
  // Counts `fd` for `ip` unless `limit` connections from it are open.
  bool try_add(const asio::ip::address& ip, int fd, size_t limit);
  size_t open(const asio::ip::address& ip);  // for tests

 private:
  struct Entry {
    int fd;
    uint64_t dev, ino;
  };
  static bool alive(const Entry& e);
  static void prune(std::vector<Entry>& entries);

  std::mutex mutex_;
  std::unordered_map<asio::ip::address, std::vector<Entry>> by_ip_;
  size_t entries_ = 0;
  size_t sweep_at_ = 1024;
};

// Each listener's connection counters, by name, for the gateway's life
// (a listener removed and added again keeps counting).
class ListenerCounterRegistry {
 public:
  ConnectionCounters* get(std::string_view listener);
  // Every listener's, sorted by name.
  std::vector<std::pair<std::string, const ConnectionCounters*>> all() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::unique_ptr<ConnectionCounters>, std::less<>> by_name_;
};

// State shared by all workers of one Gateway. Read-mostly.
struct GatewayShared {
  std::shared_ptr<Logger> logger;  // may be null
  size_t max_series = 10000;       // TelemetryOptions::max_series_per_worker
  bool metrics = true;             // TelemetryOptions::metrics
  std::atomic<size_t> connections{0};
  ClientConnections per_client;
  ClusterRegistry clusters;
  ListenerCounterRegistry listeners;
  // GatewayOptions::clock; empty: steady_clock.
  std::function<Clock::time_point()> clock;
  // GatewayOptions::wall_clock (JWT exp/nbf, rate-limit windows); empty:
  // system_clock.
  std::function<std::chrono::system_clock::time_point()> wall_clock;
};

struct AcceptorEntry {
  std::string listener;  // ListenerConfig::name
  uint16_t port = 0;     // bound port
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor;
};

class Worker : public SessionHost {
 public:
  // `hooks`: the gateway's shared Hooks or this worker's own (may be null).
  Worker(size_t index, asio::io_context& ctx, GatewayShared& shared, uint64_t seed,
         std::shared_ptr<Hooks> hooks = nullptr);
  ~Worker() override;

  size_t index() const { return index_; }

  // All below run on the worker thread (post to it).
  void install(std::shared_ptr<const Snapshot> snapshot);
  void add_acceptor(std::string listener, int native_fd, uint16_t port);
  void remove_acceptors_except(const std::vector<std::string>& keep);
  void begin_drain();
  void force_close();
  // One tick now: deadlines, parking and ClockTimer waits due by the clock
  // fire (Gateway::clock_advanced after an injected clock moved).
  void tick();
  void on_drained(std::function<void()> cb) { drained_cb_ = std::move(cb); }
  GatewayShared& shared() { return shared_; }
  ConnectionCounters* listener_counters(std::string_view listener) override;

 private:
  void attached() override;
  void detached() override;
  void timer_waiting() override;
  void accept_next(std::shared_ptr<AcceptorEntry> entry);
  void start_ticker();
  bool ticker_needed() const;
  void maybe_drained();

  size_t index_;
  GatewayShared& shared_;
  std::vector<std::shared_ptr<AcceptorEntry>> acceptors_;
  // This worker's look-ups of shared_.listeners (few: one per listener).
  std::vector<std::pair<std::string, ConnectionCounters*>> counters_cache_;
  bool ticker_running_ = false;
  asio::steady_timer ticker_;
  std::function<void()> drained_cb_;
  size_t closed_since_trim_ = 0;  // slots detached (sessions ended or parked)
  // Heap trimming is about real memory, so it follows steady_clock.
  Clock::time_point last_trim_{};
  Clock::time_point last_close_{};
};

}  // namespace sluice
