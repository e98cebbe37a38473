#pragma once
// Sockets on 127.0.0.1 port 0 for tests: one way to bind them.

#include <cstdint>
#include <optional>

namespace sluice::test {

// A TCP socket bound to 127.0.0.1 on a port the OS picks, listening with
// `backlog` when given. Returns the descriptor and sets `port`; fails the
// test when the OS refuses.
int bind_loopback(uint16_t& port, std::optional<int> backlog = std::nullopt);

// A bound 127.0.0.1 port held for the object's life: without a backlog
// nobody listens, so connects are refused; with one, it is taken (a bind
// by anyone else fails) and connects queue.
class LoopbackPort {
 public:
  explicit LoopbackPort(std::optional<int> backlog = std::nullopt);
  ~LoopbackPort();
  LoopbackPort(const LoopbackPort&) = delete;
  LoopbackPort& operator=(const LoopbackPort&) = delete;
  uint16_t port() const { return port_; }
  int fd() const { return fd_; }

 private:
  uint16_t port_ = 0;
  int fd_ = -1;
};

}  // namespace sluice::test
