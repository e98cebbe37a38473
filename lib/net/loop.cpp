#include "net/loop.hpp"

#include <sys/mman.h>

#include <new>

namespace sluice {

void ConnectionSlot::interrupt() {
  asio::error_code ec;
  if (socket) socket->cancel(ec);
  if (upstream) upstream->cancel(ec);
}

void BufferUnmap::operator()(char* p) const {
  ::munmap(p, Loop::kBufferSize);
}

Loop::Loop(asio::io_context& ctx, const std::function<TimePoint()>& clock, uint64_t seed)
    : ctx_(ctx), clock_(clock), rng_(seed) {}

Loop::~Loop() = default;

void Loop::attach(ConnectionSlot* slot) {
  slot->now = &now_;
  refresh_now();
  slot->next = head_;
  if (head_) head_->prev = slot;
  head_ = slot;
  ++connection_count_;
  attached();
}

void Loop::detach(ConnectionSlot* slot) {
  if (slot->prev) slot->prev->next = slot->next;
  if (slot->next) slot->next->prev = slot->prev;
  if (head_ == slot) head_ = slot->next;
  slot->prev = slot->next = nullptr;
  --connection_count_;
  detached();
}

IoBuffer Loop::take_buffer() {
  if (free_buffers_.empty()) {
    void* p =
        ::mmap(nullptr, kBufferSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return IoBuffer(static_cast<char*>(p));
  }
  auto b = std::move(free_buffers_.back());
  free_buffers_.pop_back();
  return b;
}

void Loop::give_buffer(IoBuffer b) {
  // A few spares cover a busy worker; the rest go back to the OS.
  constexpr size_t kSpareBuffers = 64;
  if (b && free_buffers_.size() < kSpareBuffers) free_buffers_.push_back(std::move(b));
}

}  // namespace sluice
