#include "net/loop.hpp"

#include <sys/mman.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>

#include <new>

namespace sluice {

void ConnectionSlot::interrupt() {
  if (on_interrupt) return on_interrupt(*this);
  asio::error_code ec;
  if (socket) socket->cancel(ec);
  if (upstream) upstream->cancel(ec);
}

void BufferUnmap::operator()(char* p) const {
  ::munmap(p, Loop::kBufferSize);
}

Loop::Loop(asio::io_context& ctx, const std::function<TimePoint()>& clock, uint64_t seed)
    : ctx_(ctx), clock_(clock), rng_(seed) {
  now_ = clock_now();
}

Loop::~Loop() {
  // Waits still suspended are destroyed with the io_context, after the loop.
  for (ClockTimer* t = timers_; t; t = t->next_) {
    t->linked_ = false;
    t->loop_ = nullptr;
  }
}

void Loop::link(ClockTimer* t) {
  t->prev_ = nullptr;
  t->next_ = timers_;
  if (timers_) timers_->prev_ = t;
  timers_ = t;
  t->linked_ = true;
  timer_waiting();
}

void Loop::unlink(ClockTimer* t) {
  if (!t->linked_) return;
  if (t->prev_) t->prev_->next_ = t->next_;
  if (t->next_) t->next_->prev_ = t->prev_;
  if (timers_ == t) timers_ = t->next_;
  t->prev_ = t->next_ = nullptr;
  t->linked_ = false;
}

void Loop::wake_due_timers(TimePoint now) {
  // Cancelling only queues the completion; the list changes when the
  // waiter resumes.
  for (ClockTimer* t = timers_; t; t = t->next_)
    if (!t->due_reached_ && t->due_ <= now) {
      t->due_reached_ = true;
      t->timer_.cancel();
    }
}

// ---- ClockTimer ----

ClockTimer::ClockTimer(Loop& loop) : loop_(&loop), timer_(loop.context()) {}

ClockTimer::~ClockTimer() {
  if (linked_ && loop_) loop_->unlink(this);
}

asio::awaitable<void> ClockTimer::wait_once(TimePoint due, Clock::duration sample) {
  if (!loop_) co_return;
  TimePoint now = loop_->clock_now();
  if (now >= due) co_return;
  due_ = due;
  due_reached_ = false;
  // The real clock gets an exact timer; an injected one is only sampled.
  Clock::duration real =
      loop_->clock_injected() || due == TimePoint::max() ? sample : std::min(sample, due - now);
  if (real == Clock::duration::max())
    timer_.expires_at(TimePoint::max());
  else
    timer_.expires_after(real);
  loop_->link(this);
  co_await timer_.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  if (loop_) loop_->unlink(this);
}

asio::awaitable<bool> ClockTimer::sleep_until(TimePoint due) {
  cancelled_ = false;
  for (;;) {
    if (!loop_ || cancelled_) co_return false;
    if (loop_->clock_now() >= due) co_return true;
    co_await wait_once(due, Clock::duration::max());
  }
}

asio::awaitable<bool> ClockTimer::sleep_for(Clock::duration d) {
  if (!loop_) co_return false;
  co_return co_await sleep_until(loop_->clock_now() + d);
}

void ClockTimer::cancel() {
  cancelled_ = true;
  timer_.cancel();
}

void Loop::attach(ConnectionSlot* slot) {
  slot->now = &now_;
  refresh_now();
  slot->next = head_;
  if (head_) head_->prev = slot;
  head_ = slot;
  ++connection_count_;
  if (slot->counters) slot->counters->active.fetch_add(1, std::memory_order_relaxed);
  attached();
}

void Loop::detach(ConnectionSlot* slot) {
  if (slot->prev) slot->prev->next = slot->next;
  if (slot->next) slot->next->prev = slot->prev;
  if (head_ == slot) head_ = slot->next;
  slot->prev = slot->next = nullptr;
  --connection_count_;
  // Release: what the connection recorded (its TCP series' close) is seen
  // by a scrape that reads it gone.
  if (slot->counters) slot->counters->active.fetch_sub(1, std::memory_order_release);
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
