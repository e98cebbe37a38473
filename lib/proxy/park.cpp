#include "proxy/park.hpp"

#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <asio/post.hpp>
#include <new>
#include <type_traits>

#include "proxy/session.hpp"
#include "tls/server.hpp"

namespace sluice {

// What a parked connection keeps: its descriptor and what the worker needs
// to time it out, drain it and start its next session.
struct ParkedConnections::Record {
  ConnectionSlot slot{nullptr};  // first: interrupt() finds the record from it
  Chunk* chunk = nullptr;
  Record* next_free = nullptr;
  SSL* ssl = nullptr;  // a TLS connection's state; null for plain
  int fd = -1;
  uint16_t port = 0;
  uint16_t listener = 0;  // index into listeners_
  bool v6 = false;
  bool doomed = false;  // out of the epoll set, closed at the next sweep
};
static_assert(std::is_standard_layout_v<ParkedConnections::Record>);

// Records come from mapped chunks of their own. A chunk's pages are touched
// only as its records are first used, and a chunk whose records are all
// free is unmapped (but the last), so a burst of parked connections leaves
// nothing behind.
struct ParkedConnections::Chunk {
  static constexpr size_t kBytes = 64 * 1024;

  ParkedConnections* set;
  Record* free = nullptr;  // released records
  size_t used = 0;         // records handed out at least once (a bump index)
  size_t live = 0;

  // Records follow the header.
  static constexpr size_t offset() {
    return (sizeof(Chunk) + alignof(Record) - 1) / alignof(Record) * alignof(Record);
  }
  static constexpr size_t capacity() { return (kBytes - offset()) / sizeof(Record); }
  Record* at(size_t i) {
    return reinterpret_cast<Record*>(reinterpret_cast<char*>(this) + offset()) + i;
  }
  bool full() const { return !free && used == capacity(); }
};

namespace {
constexpr int kEventsPerCall = 64;
}  // namespace

ParkedConnections::ParkedConnections(SessionHost& worker)
    : worker_(&worker), epfd_(::epoll_create1(EPOLL_CLOEXEC)), watch_(worker.context()) {
  if (epfd_ < 0) throw std::bad_alloc();
  watch_.assign(epfd_);  // owns it from here
}

ParkedConnections::~ParkedConnections() {
  shutdown();
  for (Chunk* c : chunks_) ::munmap(c, Chunk::kBytes);
}

ParkedConnections::Record* ParkedConnections::allocate() {
  Chunk* chunk = nullptr;
  // The oldest chunk with room: packing into few chunks lets the others
  // empty out and go.
  for (Chunk* c : chunks_)
    if (!c->full()) {
      chunk = c;
      break;
    }
  if (!chunk) {
    void* p =
        ::mmap(nullptr, Chunk::kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    chunk = new (p) Chunk{this};
    chunks_.push_back(chunk);
  }
  Record* slot_memory;
  if (chunk->free) {
    slot_memory = chunk->free;
    chunk->free = slot_memory->next_free;
  } else {
    slot_memory = chunk->at(chunk->used++);
  }
  ++chunk->live;
  ++live_;
  Record* r = new (slot_memory) Record{};
  r->chunk = chunk;
  return r;
}

void ParkedConnections::release(Record* r) {
  Chunk* chunk = r->chunk;
  r->~Record();
  r->next_free = chunk->free;
  chunk->free = r;
  --live_;
  if (--chunk->live == 0 && chunks_.size() > 1) {
    std::erase(chunks_, chunk);
    ::munmap(chunk, Chunk::kBytes);
  }
  // A wait left pending would keep a host's io_context from running dry.
  if (live_ == 0 && watching_) {
    asio::error_code ec;
    watch_.cancel(ec);
  }
}

void ParkedConnections::park(asio::ip::tcp::socket socket, SSL* ssl, std::string_view listener,
                             uint16_t port, TimePoint idle_since) {
  // What can throw comes first, while `ssl` is still only ours to free.
  Record* r;
  size_t index = 0;
  try {
    while (index < listeners_.size() && listeners_[index] != listener) ++index;
    if (index == listeners_.size()) listeners_.emplace_back(listener);
    r = allocate();
  } catch (...) {
    SSL_free(ssl);
    throw;
  }
  r->ssl = ssl;
  asio::error_code ec;
  r->v6 = socket.local_endpoint(ec).address().is_v6();
  // Out of Asio: its per-socket state goes back to its pool.
  int fd = ec ? -1 : socket.release(ec);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = r;
  if (ec || fd < 0 || ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    if (fd >= 0) ::close(fd);
    socket.close(ec);
    SSL_free(ssl);
    release(r);
    return;
  }
  r->fd = fd;
  r->port = port;
  r->listener = static_cast<uint16_t>(index);

  ConnectionSlot& slot = r->slot;
  slot.on_interrupt = [](ConnectionSlot& s) {
    auto* record = reinterpret_cast<Record*>(&s);
    record->chunk->set->doom(record);
  };
  slot.counters = worker_->listener_counters(listener);
  worker_->attach(&slot);
  if (slot.counters) slot.counters->parked.fetch_add(1, std::memory_order_relaxed);
  slot.idle = true;
  slot.parked = true;
  slot.idle_since = idle_since;
  // The idle timeout still counts from when the connection went idle.
  const auto& snap = worker_->snapshot();
  auto idle = snap ? snap->limits.idle_timeout : Limits{}.idle_timeout;
  slot.set_deadline(ConnectionSlot::Timeout::idle, idle_since, idle);
  if (worker_->draining()) doom(r);
  watch();
}

void ParkedConnections::watch() {
  if (watching_) return;
  watching_ = true;
  watch_.async_wait(asio::posix::stream_descriptor::wait_read,
                    [self = shared_from_this()](asio::error_code ec) {
                      self->watching_ = false;
                      if (!self->worker_) return;
                      if (!ec)
                        self->on_ready();
                      else if (self->live_ > 0)
                        self->watch();  // cancelled as the set emptied, then refilled
                    });
}

void ParkedConnections::on_ready() {
  // The wait is armed again first, on this thread: readiness that comes
  // while the set is read below then completes it, and none is lost.
  if (live_ > 0) watch();
  epoll_event events[kEventsPerCall];
  for (;;) {
    int n = ::epoll_wait(epfd_, events, kEventsPerCall, 0);
    for (int i = 0; i < n; ++i) {
      auto* r = static_cast<Record*>(events[i].data.ptr);
      if (r->doomed) continue;  // a sweep is coming for it
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, r->fd, nullptr);
      int fd = r->fd;
      SSL* ssl = r->ssl;
      TimePoint idle_since = r->slot.idle_since;
      bool v6 = r->v6;
      uint16_t port = r->port;
      const std::string& listener = listeners_[r->listener];
      unpark(r);
      asio::ip::tcp::socket socket(worker_->context());
      asio::error_code ec;
      if (!worker_->draining())
        socket.assign(v6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd, ec);
      if (worker_->draining() || ec) {
        ::close(fd);
        SSL_free(ssl);
        continue;
      }
      if (ssl) {
        auto stream = tls::resume_stream(std::move(socket), ssl);
        auto info = tls::downstream_info(stream);
        start_tls_session(*worker_, std::move(stream), listener, port, std::move(info), idle_since);
      } else {
        start_session(*worker_, std::move(socket), listener, port, idle_since);
      }
    }
    if (n < kEventsPerCall) break;
  }
}

void ParkedConnections::doom(Record* r) {
  if (r->doomed) return;
  r->doomed = true;
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, r->fd, nullptr);
  doomed_.push_back(r);
  // Closed later: the worker may be walking its connections right now.
  if (!sweep_posted_) {
    sweep_posted_ = true;
    asio::post(worker_->context(), [self = shared_from_this()] { self->sweep(); });
  }
}

void ParkedConnections::sweep() {
  sweep_posted_ = false;
  if (!worker_) return;
  auto doomed = std::move(doomed_);
  doomed_.clear();
  for (Record* r : doomed) close(r);
}

void ParkedConnections::close(Record* r) {
  ::close(r->fd);
  SSL_free(r->ssl);
  unpark(r);
}

void ParkedConnections::unpark(Record* r) {
  if (r->slot.counters) r->slot.counters->parked.fetch_sub(1, std::memory_order_relaxed);
  worker_->detach(&r->slot);
  release(r);
}

void ParkedConnections::shutdown() {
  if (!worker_) return;
  worker_ = nullptr;
  for (Chunk* c : chunks_) {
    // Live records are those handed out and not on the free list.
    std::vector<bool> free(c->used, false);
    for (Record* f = c->free; f; f = f->next_free) free[static_cast<size_t>(f - c->at(0))] = true;
    for (size_t i = 0; i < c->used; ++i)
      if (!free[i]) {
        ::close(c->at(i)->fd);
        SSL_free(c->at(i)->ssl);
      }
  }
  doomed_.clear();
  asio::error_code ec;
  watch_.close(ec);
}

void park(SessionHost& worker, asio::ip::tcp::socket socket, std::string listener, uint16_t port,
          TimePoint idle_since) {
  worker.parked().park(std::move(socket), nullptr, listener, port, idle_since);
}

void park(SessionHost& worker, asio::ssl::stream<asio::ip::tcp::socket>& stream,
          std::string listener, uint16_t port, TimePoint idle_since) {
  asio::ip::tcp::socket socket(worker.context());
  SSL* ssl = tls::release_ssl(stream, socket);
  if (!ssl) {
    asio::error_code ec;
    stream.lowest_layer().close(ec);
    return;
  }
  worker.parked().park(std::move(socket), ssl, listener, port, idle_since);
}

}  // namespace sluice
