#include "proxy/park.hpp"

#include "proxy/session.hpp"

namespace sluice {

namespace {

// An idle keep-alive connection without a session: no coroutine frames, no
// buffers, only the socket and what is needed to resume, time out and drain.
// This is what bounds the memory of idle connections.
struct Parked {
  Parked(asio::ip::tcp::socket s, std::string l, uint16_t p)
      : socket(std::move(s)), slot(&socket), listener(std::move(l)), port(p) {}
  asio::ip::tcp::socket socket;
  ConnectionSlot slot;
  std::string listener;
  uint16_t port;
};

}  // namespace

void park(SessionHost& worker, asio::ip::tcp::socket socket, std::string listener, uint16_t port,
          TimePoint idle_since) {
  auto parked = std::make_unique<Parked>(std::move(socket), std::move(listener), port);
  Parked& p = *parked;
  p.slot.counters = worker.listener_counters(p.listener);
  worker.attach(&p.slot);
  p.slot.idle = true;
  p.slot.parked = true;
  p.slot.idle_since = idle_since;
  // The idle timeout still counts from when the connection went idle.
  const auto& snap = worker.snapshot();
  auto idle = snap ? snap->limits.idle_timeout : Limits{}.idle_timeout;
  p.slot.set_deadline_at(ConnectionSlot::Timeout::idle,
                         idle.count() > 0 ? idle_since + idle : TimePoint::max());
  if (worker.draining()) p.slot.interrupt();
  p.socket.async_wait(asio::socket_base::wait_read, [&worker, parked = std::move(parked)](
                                                        asio::error_code ec) mutable {
    worker.detach(&parked->slot);
    if (ec || worker.draining()) {
      asio::error_code ignored;
      parked->socket.close(ignored);
      return;
    }
    start_session(worker, std::move(parked->socket), parked->listener, parked->port);
  });
}

}  // namespace sluice
