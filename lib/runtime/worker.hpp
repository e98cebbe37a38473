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
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "config/snapshot.hpp"
#include "sluice/hooks.hpp"
#include "upstream/balancer.hpp"
#include "upstream/cluster.hpp"
#include "upstream/pool.hpp"

namespace sluice {

using Clock = std::chrono::steady_clock;

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

// State shared by all workers of one Gateway. Read-mostly.
struct GatewayShared {
  std::shared_ptr<Hooks> hooks;
  std::atomic<size_t> connections{0};
  ClientConnections per_client;
  ClusterRegistry clusters;
  std::function<Clock::time_point()> clock;  // injectable; never empty
  Clock::time_point now() const { return clock(); }
};

// A downstream connection as the worker sees it: enough to enforce deadlines
// and drain. The session coroutine owns the rest.
struct ConnectionSlot {
  // io: no progress on a read or write of a request in flight (the stream
  // idle timeout); request, stream: the caps below.
  enum class Timeout {
    none,
    header,
    idle,
    upstream_connect,
    upstream_response,
    route,
    io,
    request,
    stream
  };
  // Caps bound every deadline set while they are active: the route timeout,
  // the request timeout (until the request is read) and the max stream
  // duration. Each is an absolute time; max() when off.
  enum Cap { route_cap, request_cap, stream_cap, cap_count };

  explicit ConnectionSlot(asio::ip::tcp::socket::lowest_layer_type* s) : socket(s) {}

  // Downstream TCP, under TLS if any; null for the gateway's own upstream
  // exchanges (mirrors, health probes), which only have `upstream`.
  asio::ip::tcp::socket::lowest_layer_type* socket;
  asio::ip::tcp::socket* upstream = nullptr;  // set while an upstream op is pending
  Clock::time_point deadline = Clock::time_point::max();
  Timeout deadline_kind = Timeout::none;
  Timeout fired = Timeout::none;
  bool idle = true;  // waiting for a new request with nothing buffered
  Clock::time_point idle_since{};
  // Plain connections idle for a while give their read buffer back: the
  // ticker sets `parked` and cancels the read, the session then waits for
  // readability without a buffer. Busy keep-alive connections keep theirs
  // (waiting for readability costs an epoll_ctl per request).
  bool parkable = false;
  bool parked = false;
  // The worker's cached time, refreshed per request and per tick; deadlines
  // are coarse anyway.
  const Clock::time_point* now = nullptr;
  bool close_after_response = false;
  ConnectionSlot* prev = nullptr;
  ConnectionSlot* next = nullptr;

  std::array<Clock::time_point, cap_count> caps{Clock::time_point::max(), Clock::time_point::max(),
                                                Clock::time_point::max()};

  void set_deadline(Timeout kind, std::chrono::milliseconds after) {
    deadline = after.count() > 0 ? *now + after : Clock::time_point::max();
    deadline_kind = after.count() > 0 ? kind : Timeout::none;
    apply_caps();
  }
  void clear_deadline() {
    deadline = Clock::time_point::max();
    deadline_kind = Timeout::none;
    apply_caps();
  }
  // The route timeout, from now.
  void set_cap(std::chrono::milliseconds after) {
    set_cap_at(route_cap, after.count() > 0 ? *now + after : Clock::time_point::max());
  }
  void set_cap_at(Cap which, Clock::time_point at) {
    caps[which] = at;
    clear_deadline();
  }
  void clear_cap(Cap which = route_cap) { set_cap_at(which, Clock::time_point::max()); }
  void clear_caps() {
    caps.fill(Clock::time_point::max());
    clear_deadline();
  }
  // Cancels pending I/O so the session sees operation_aborted.
  void interrupt();

 private:
  void apply_caps() {
    static constexpr Timeout kinds[cap_count] = {Timeout::route, Timeout::request, Timeout::stream};
    for (size_t i = 0; i < cap_count; ++i)
      if (caps[i] < deadline) {
        deadline = caps[i];
        deadline_kind = kinds[i];
      }
  }
};

struct AcceptorEntry {
  std::string listener;  // ListenerConfig::name
  uint16_t port = 0;     // bound port
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor;
};

// An I/O buffer of Worker::kBufferSize bytes, mapped on its own so that
// memory freed after a burst goes back to the OS instead of fragmenting the
// heap (idle connections hold none).
struct BufferUnmap {
  void operator()(char* p) const;
};
using IoBuffer = std::unique_ptr<char, BufferUnmap>;

class Worker {
 public:
  Worker(size_t index, asio::io_context& ctx, GatewayShared& shared, uint64_t seed);
  ~Worker();

  asio::io_context& context() { return ctx_; }
  size_t index() const { return index_; }

  // All below run on the worker thread (post to it).
  void install(std::shared_ptr<const Snapshot> snapshot);
  void add_acceptor(std::string listener, int native_fd, uint16_t port);
  void remove_acceptors_except(const std::vector<std::string>& keep);
  void begin_drain();
  void force_close();
  size_t connection_count() const { return connection_count_; }
  void on_drained(std::function<void()> cb) { drained_cb_ = std::move(cb); }

  // Used by sessions.
  const std::shared_ptr<const Snapshot>& snapshot() const { return snapshot_; }
  GatewayShared& shared() { return shared_; }
  ConnectionPool& pool() { return pool_; }
  Balancer& balancer() { return balancer_; }
  std::mt19937_64& rng() { return rng_; }
  bool draining() const { return draining_; }
  void attach(ConnectionSlot* slot);
  void detach(ConnectionSlot* slot);
  // A UUID v4 (36 characters) from the worker's seedable RNG.
  void make_request_id(char (&out)[36]);
  // Cached steady time for deadlines; refresh() before starting a wait.
  const Clock::time_point& now() const { return now_; }
  const Clock::time_point& refresh_now() { return now_ = Clock::now(); }
  // I/O buffers of kBufferSize, recycled per worker so idle connections hold none.
  static constexpr size_t kBufferSize = 16 * 1024;
  // Mirrored requests in flight on this worker; more are dropped.
  static constexpr size_t kMaxMirrors = 256;
  size_t mirrors_in_flight = 0;
  IoBuffer take_buffer();
  void give_buffer(IoBuffer b);

 private:
  void accept_next(std::shared_ptr<AcceptorEntry> entry);
  void start_ticker();
  void tick();
  void maybe_drained();

  size_t index_;
  asio::io_context& ctx_;
  GatewayShared& shared_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<std::shared_ptr<AcceptorEntry>> acceptors_;
  ConnectionPool pool_;
  Balancer balancer_;
  std::mt19937_64 rng_;
  ConnectionSlot* head_ = nullptr;  // intrusive list of live connections
  size_t connection_count_ = 0;
  bool draining_ = false;
  bool ticker_running_ = false;
  asio::steady_timer ticker_;
  std::function<void()> drained_cb_;
  std::vector<IoBuffer> free_buffers_;
  Clock::time_point now_ = Clock::now();
  size_t closed_since_trim_ = 0;  // slots detached (sessions ended or parked)
  Clock::time_point last_trim_{};
  Clock::time_point last_close_{};
};

}  // namespace sluice
