#pragma once
// TunnelUpstream: a raw TCP peer on 127.0.0.1 port 0 for tunnel tests
// (WebSocket after a 101, TCP echo), on threads of its own with blocking
// sockets bounded by receive timeouts. Nothing from sluice: an independent
// peer for the gateway under test.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sluice::test {

class TunnelUpstream {
 public:
  enum class Mode {
    websocket,     // reads a request head, answers 101, echoes WebSocket frames unmasked
    echo,          // echoes every read, `tag` first
    answer_200,    // answers every request head 200 "no" (keep-alive)
    always_101,    // answers 101 whatever the request asked, then echoes
    upgrade_other  // answers 101 switching to "h2c" instead of what was asked
  };
  explicit TunnelUpstream(Mode mode, std::string tag = "");
  ~TunnelUpstream();
  TunnelUpstream(const TunnelUpstream&) = delete;
  TunnelUpstream& operator=(const TunnelUpstream&) = delete;

  uint16_t port() const { return port_; }
  size_t connections() const { return connections_.load(); }
  // Request heads received, in order (HTTP modes).
  std::vector<std::string> heads() const;
  // Bytes that had arrived after a request head when it was answered: the
  // gateway must hold a client's early tunnel bytes until the 101.
  std::string early() const;

 private:
  void accept_loop();
  void serve(int fd);

  Mode mode_;
  std::string tag_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> connections_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> heads_;
  std::string early_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// A client's WebSocket frame: FIN, `opcode`, masked with `mask` (payload < 126).
std::string masked_frame(std::string_view payload, uint8_t opcode = 1, uint32_t mask = 0x37fa213d);
// The payload of the unmasked frame at the start of `bytes`; empty when
// `bytes` holds no whole frame.
std::string unmasked_payload(std::string_view bytes);

}  // namespace sluice::test
