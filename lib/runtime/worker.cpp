#include "runtime/worker.hpp"

#include <fmt/format.h>
#include <malloc.h>
#include <sys/stat.h>

#include <new>

#include "proxy/h2_session.hpp"
#include "proxy/passthrough.hpp"
#include "proxy/session.hpp"
#include "runtime/tls_listener.hpp"

namespace sluice {

namespace {
// Deadlines are checked by one coarse per-worker ticker instead of a timer per
// connection: setting a deadline is an assignment, and idle connections hold
// no timer. Timeouts are therefore late by up to one period. The period is
// real time, but the ticker only samples: what fires is decided by the
// gateway's clock (injected or not).
constexpr auto kTickPeriod = std::chrono::milliseconds(50);
// Sooner parks more connections that come back within a few ticks (each
// park and resume costs four epoll_ctl and a new session); later leaves more
// sessions alive at once after a burst of connections, and their freed
// memory then stays interleaved with what outlives them (measured: 100 ms
// left ~1,030 B of RSS per idle connection after 5,000, 50 ms ~790 B).
constexpr auto kParkAfter = std::chrono::milliseconds(50);
// After a burst of connections, give freed heap pages back (glibc keeps
// them otherwise), at most this often.
constexpr auto kTrimInterval = std::chrono::seconds(1);
constexpr size_t kTrimAfterClosed = 256;
}  // namespace

bool ClientConnections::alive(const Entry& e) {
  struct stat st;
  return ::fstat(e.fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == e.dev &&
         st.st_ino == e.ino;
}

void ClientConnections::prune(std::vector<Entry>& entries) {
  std::erase_if(entries, [](const Entry& e) { return !alive(e); });
}

bool ClientConnections::try_add(const asio::ip::address& ip, int fd, size_t limit) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return false;
  std::lock_guard lock(mutex_);
  auto& entries = by_ip_[ip];
  if (entries.size() >= limit) {
    entries_ -= entries.size();
    prune(entries);
    entries_ += entries.size();
    if (entries.size() >= limit) return false;
  }
  entries.push_back(Entry{fd, static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
  if (++entries_ >= sweep_at_) {
    // Clients that never come back at their limit: drop what has ended.
    entries_ = 0;
    for (auto it = by_ip_.begin(); it != by_ip_.end();) {
      prune(it->second);
      entries_ += it->second.size();
      it = it->second.empty() ? by_ip_.erase(it) : std::next(it);
    }
    sweep_at_ = std::max<size_t>(1024, 2 * entries_);
  }
  return true;
}

size_t ClientConnections::open(const asio::ip::address& ip) {
  std::lock_guard lock(mutex_);
  auto it = by_ip_.find(ip);
  if (it == by_ip_.end()) return 0;
  entries_ -= it->second.size();
  prune(it->second);
  entries_ += it->second.size();
  return it->second.size();
}

namespace {
// The client's address as a key: an IPv4 client on a dual-stack listener
// counts the same as on an IPv4 one.
asio::ip::address client_key(const asio::ip::tcp::socket& socket) {
  asio::error_code ec;
  auto address = socket.remote_endpoint(ec).address();
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  return address;
}

// Counts the connection for its client unless that client is at
// Limits::max_connections_per_client.
bool within_client_limit(GatewayShared& shared, const Snapshot* snap,
                         asio::ip::tcp::socket& socket) {
  size_t limit = snap ? snap->limits.max_connections_per_client : 0;
  if (limit == 0) return true;
  return shared.per_client.try_add(client_key(socket), socket.native_handle(), limit);
}
}  // namespace

Worker::Worker(size_t index, asio::io_context& ctx, GatewayShared& shared, uint64_t seed,
               std::shared_ptr<Hooks> hooks)
    : SessionHost(ctx, shared.clock, seed, std::move(hooks), shared.logger, shared.max_series,
                  shared.metrics),
      index_(index),
      shared_(shared),
      ticker_(ctx) {
  wall_clock_ = shared.wall_clock;
  log_shard_ = index;
}

Worker::~Worker() = default;

void Worker::install(std::shared_ptr<const Snapshot> snapshot) {
  snapshot_ = std::move(snapshot);
  upstream_.balancer().reset();
  // The Redis client is made now, on this worker's loop, not by a request.
  if (snapshot_ && snapshot_->rate_limits) redis(*snapshot_->rate_limits);
  // Active health checks run on one worker; their results are shared.
  if (index_ == 0 && snapshot_)
    install_health_checks(upstream_, UpstreamList(snapshot_, &snapshot_->upstreams));
}

void Worker::add_acceptor(std::string listener, int native_fd, uint16_t port) {
  auto entry = std::make_shared<AcceptorEntry>();
  entry->listener = std::move(listener);
  entry->port = port;
  asio::ip::tcp::endpoint local;
  entry->acceptor = std::make_unique<asio::ip::tcp::acceptor>(context());
  asio::error_code ec;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(native_fd, reinterpret_cast<sockaddr*>(&ss), &len);
  auto protocol = ss.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4();
  entry->acceptor->assign(protocol, native_fd, ec);
  if (ec) {
    ::close(native_fd);
    return;
  }
  acceptors_.push_back(entry);
  if (!draining_) accept_next(std::move(entry));
}

ConnectionCounters* ListenerCounterRegistry::get(std::string_view listener) {
  std::lock_guard lock(mutex_);
  auto it = by_name_.find(listener);
  if (it == by_name_.end())
    it = by_name_.emplace(std::string(listener), std::make_unique<ConnectionCounters>()).first;
  return it->second.get();
}

std::vector<std::pair<std::string, const ConnectionCounters*>> ListenerCounterRegistry::all()
    const {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, const ConnectionCounters*>> out;
  for (const auto& [name, counters] : by_name_) out.emplace_back(name, counters.get());
  return out;
}

ConnectionCounters* Worker::listener_counters(std::string_view listener) {
  for (const auto& [name, counters] : counters_cache_)
    if (name == listener) return counters;
  ConnectionCounters* counters = shared_.listeners.get(listener);
  counters_cache_.emplace_back(std::string(listener), counters);
  return counters;
}

void Worker::accept_next(std::shared_ptr<AcceptorEntry> entry) {
  auto* acceptor = entry->acceptor.get();
  acceptor->async_accept([this, entry = std::move(entry)](asio::error_code ec,
                                                          asio::ip::tcp::socket socket) mutable {
    if (ec == asio::error::operation_aborted || !entry->acceptor->is_open()) return;
    if (!ec) {
      const auto& snap = snapshot_;
      size_t limit = snap ? snap->limits.max_connections : 0;
      if (shared_.connections.load(std::memory_order_relaxed) >= limit || draining_ ||
          !within_client_limit(shared_, snap.get(), socket)) {
        asio::error_code ignored;
        socket.close(ignored);  // over a limit: accept and close at once
      } else {
        asio::error_code ignored;
        socket.set_option(asio::ip::tcp::no_delay(true), ignored);
        listener_counters(entry->listener)->total.fetch_add(1, std::memory_order_relaxed);
        const CompiledListener* listener = snap->listener(entry->listener);
        if (listener && listener->tls)
          accept_tls(*this, std::move(socket), snap, *listener, entry->port);
        else if (listener && !listener->tcp.empty())
          start_tcp_session(*this, std::move(socket), entry->listener, entry->port);
        else if (listener && listener->config.http2)
          start_http_session(*this, std::move(socket), entry->listener, entry->port);
        else
          start_session(*this, std::move(socket), entry->listener, entry->port);
      }
    } else if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
      // Out of file descriptors: back off briefly instead of spinning.
      auto timer = std::make_shared<asio::steady_timer>(context(), std::chrono::milliseconds(10));
      timer->async_wait([this, timer, entry](asio::error_code) mutable {
        if (entry->acceptor->is_open()) accept_next(std::move(entry));
      });
      return;
    }
    accept_next(std::move(entry));
  });
}

void Worker::remove_acceptors_except(const std::vector<std::string>& keep) {
  std::erase_if(acceptors_, [&](const std::shared_ptr<AcceptorEntry>& e) {
    for (const auto& k : keep)
      if (k == e->listener) return false;
    asio::error_code ec;
    e->acceptor->close(ec);
    return true;
  });
}

void Worker::attached() {
  shared_.connections.fetch_add(1, std::memory_order_relaxed);
  if (!ticker_running_) start_ticker();
}

void Worker::detached() {
  ++closed_since_trim_;
  last_close_ = clock_injected() ? Clock::now() : now_;
  shared_.connections.fetch_sub(1, std::memory_order_relaxed);
  maybe_drained();
}

void Worker::timer_waiting() {
  // With the real clock a ClockTimer has its own exact timer.
  if (clock_injected() && !ticker_running_) start_ticker();
}

bool Worker::ticker_needed() const {
  // Nothing to watch lets a host io_context run dry.
  return head_ || (clock_injected() && has_timers());
}

void Worker::start_ticker() {
  ticker_running_ = true;
  ticker_.expires_after(kTickPeriod);
  ticker_.async_wait([this](asio::error_code ec) {
    if (ec) {
      ticker_running_ = false;
      return;
    }
    tick();
    if (ticker_needed())
      start_ticker();
    else
      ticker_running_ = false;
  });
}

void Worker::tick() {
  auto now = refresh_now();
  wake_due_timers(now);
  // Trim during a long burst at most once per interval, and once more when
  // it has calmed down.
  auto real = clock_injected() ? Clock::now() : now;
  bool burst = closed_since_trim_ >= kTrimAfterClosed && real - last_trim_ >= kTrimInterval;
  bool calm = closed_since_trim_ > 0 && real - last_close_ >= kParkAfter * 2;
  if (burst || calm) {
    closed_since_trim_ = 0;
    last_trim_ = real;
    ::malloc_trim(0);
  }
  for (ConnectionSlot* s = head_; s; s = s->next) {
    if (s->deadline <= now) {
      s->fired = s->deadline_kind;
      s->clear_deadline();
      s->interrupt();
    } else if (draining_ && s->idle) {
      s->interrupt();
    } else if (s->idle && s->parkable && !s->parked && now - s->idle_since >= kParkAfter) {
      s->parked = true;
      asio::error_code ec;
      s->socket->cancel(ec);
    }
  }
}

void Worker::begin_drain() {
  // Probe timers would keep a host io_context from running dry.
  stop_health_checks(upstream_);
  // Queued spans go out now (a waiting flush timer would also keep a host
  // io_context from running dry).
  tracer_.drain();
  draining_ = true;
  for (auto& e : acceptors_) {
    asio::error_code ec;
    e->acceptor->close(ec);
  }
  acceptors_.clear();
  for (ConnectionSlot* s = head_; s; s = s->next) {
    s->close_after_response = true;
    if (s->idle) s->interrupt();
  }
  maybe_drained();
}

void Worker::force_close() {
  for (ConnectionSlot* s = head_; s; s = s->next) {
    asio::error_code ec;
    if (s->socket) s->socket->close(ec);
    if (s->upstream) s->upstream->close(ec);
    if (s->on_interrupt) s->interrupt();  // closes a parked connection
  }
  upstream_.pool().clear();
}

void Worker::maybe_drained() {
  if (draining_ && connection_count() == 0 && drained_cb_) {
    auto cb = std::move(drained_cb_);
    drained_cb_ = nullptr;
    upstream_.pool().clear();
    ticker_.cancel();
    cb();
  }
}

}  // namespace sluice
