#pragma once
// The per-worker event-loop services every layer above uses: the io_context,
// the connections whose deadlines the worker enforces (ConnectionSlot), the
// clock (the gateway's injectable one, cached per request and per tick),
// waits on that clock (ClockTimer), the seedable RNG and recycled I/O
// buffers. The runtime's Worker is a Loop; upstream/ and proxy/ see only
// this, never the Worker.

#include <array>
#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

namespace sluice {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// One listener's downstream connections across workers, for telemetry.
// `active` counts attached slots, so a connection moving between slots
// (parked, resumed, handed from the TLS handshake to its session) stays one.
struct ConnectionCounters {
  std::atomic<int64_t> active{0};
  std::atomic<uint64_t> total{0};
  std::atomic<uint64_t> tls_handshakes{0};
  std::atomic<uint64_t> tls_failures{0};
  std::atomic<int64_t> parked{0};  // of `active`, those parked (proxy/park.hpp)
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
  ConnectionCounters* counters = nullptr;  // its listener's; null: not counted
  ConnectionSlot* prev = nullptr;
  ConnectionSlot* next = nullptr;
  // For a connection without a socket object while it waits (a parked
  // one): what interrupt() does instead of cancelling.
  void (*on_interrupt)(ConnectionSlot&) = nullptr;

  std::array<Clock::time_point, cap_count> caps{Clock::time_point::max(), Clock::time_point::max(),
                                                Clock::time_point::max()};

  void set_deadline(Timeout kind, std::chrono::milliseconds after) {
    set_deadline(kind, *now, after);
  }
  // `after` counted from `from` (a parked connection's idle start); 0: none.
  void set_deadline(Timeout kind, Clock::time_point from, std::chrono::milliseconds after) {
    set_deadline_at(kind, after.count() > 0 ? from + after : Clock::time_point::max());
  }
  // max(): none.
  void set_deadline_at(Timeout kind, Clock::time_point at) {
    deadline = at;
    deadline_kind = at != Clock::time_point::max() ? kind : Timeout::none;
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

// An I/O buffer of Loop::kBufferSize bytes, mapped on its own so that
// memory freed after a burst goes back to the OS instead of fragmenting the
// heap (idle connections hold none).
struct BufferUnmap {
  void operator()(char* p) const;
};
using IoBuffer = std::unique_ptr<char, BufferUnmap>;

class Loop;

// A wait for the loop's clock to reach a time: retry backoff, fault delay,
// the wait for a connection place, the pause between health probes. With
// the real clock it is an asio timer at that time. With an injected clock
// real timers only sample: the wait ends when the loop, at a tick or when
// told the clock moved (Gateway::clock_advanced), reads a time at or past
// it. One wait at a time.
class ClockTimer {
 public:
  explicit ClockTimer(Loop& loop);
  ~ClockTimer();
  ClockTimer(const ClockTimer&) = delete;
  ClockTimer& operator=(const ClockTimer&) = delete;

  // True once the loop's clock reads `due` (at once if it already does);
  // false when cancel() comes first.
  asio::awaitable<bool> sleep_until(TimePoint due);
  asio::awaitable<bool> sleep_for(Clock::duration d);
  // Returns at the first of: the loop's clock reaching `due`, cancel(), or
  // `sample` of real time (for what no clock announces, such as a place
  // freed on another worker).
  asio::awaitable<void> wait_once(TimePoint due, Clock::duration sample);
  // Ends the current wait early (sleep_until then returns false).
  void cancel();

 private:
  friend class Loop;
  Loop* loop_;
  asio::steady_timer timer_;
  TimePoint due_{};
  bool due_reached_ = false;  // the loop woke it because its time came
  bool cancelled_ = false;
  bool linked_ = false;  // in the loop's list while waiting
  ClockTimer* prev_ = nullptr;
  ClockTimer* next_ = nullptr;
};

class Loop {
 public:
  // `clock` is the gateway's injected clock; empty: steady_clock. The
  // pointee must outlive the loop.
  Loop(asio::io_context& ctx, const std::function<TimePoint()>& clock, uint64_t seed);
  virtual ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  asio::io_context& context() { return ctx_; }

  // Connections (and the gateway's own upstream exchanges) whose deadlines
  // the loop enforces; attach when one starts, detach when it ends.
  void attach(ConnectionSlot* slot);
  void detach(ConnectionSlot* slot);
  size_t connection_count() const { return connection_count_; }

  // The clock, cached: deadlines and pool idle times read this; it is
  // refreshed per request and per tick. refresh_now() before starting a wait.
  const TimePoint& now() const { return now_; }
  const TimePoint& refresh_now() { return now_ = clock_now(); }
  // The clock itself: the gateway's injected one, else steady_clock.
  TimePoint clock_now() const { return clock_ ? clock_() : Clock::now(); }
  bool clock_injected() const { return static_cast<bool>(clock_); }
  // For state shared across workers that reads the same clock (views).
  const std::function<TimePoint()>& clock() const { return clock_; }

  // Ends the ClockTimer waits whose time has come by `now` (the loop's
  // clock); the ticker and Gateway::clock_advanced call it.
  void wake_due_timers(TimePoint now);
  bool has_timers() const { return timers_ != nullptr; }

  // The worker's seedable RNG: every random draw of a request uses it.
  std::mt19937_64& rng() { return rng_; }

  // I/O buffers of kBufferSize, recycled per loop so idle connections hold none.
  static constexpr size_t kBufferSize = 16 * 1024;
  IoBuffer take_buffer();
  void give_buffer(IoBuffer b);

 protected:
  // Called after a slot joins or leaves (the worker counts, ticks and drains).
  virtual void attached() {}
  virtual void detached() {}
  // Called when a ClockTimer starts waiting (with an injected clock the
  // worker's ticker samples for it).
  virtual void timer_waiting() {}
  ConnectionSlot* head_ = nullptr;  // intrusive list of live slots
  TimePoint now_{};

 private:
  friend class ClockTimer;
  void link(ClockTimer* t);
  void unlink(ClockTimer* t);

  asio::io_context& ctx_;
  const std::function<TimePoint()>& clock_;
  std::mt19937_64 rng_;
  size_t connection_count_ = 0;
  ClockTimer* timers_ = nullptr;  // intrusive list of waiting ClockTimers
  std::vector<IoBuffer> free_buffers_;
};

}  // namespace sluice
