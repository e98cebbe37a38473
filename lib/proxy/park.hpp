#pragma once
// Parking: an idle keep-alive connection gives up its session, coroutine
// frames, buffers and even its Asio socket, and waits for readability as a
// small record; the next request starts a new session on the same
// connection.

#include <openssl/base.h>

#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/ssl/stream.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/host.hpp"

namespace sluice {

// Parks `socket`, idle since `idle_since` (its idle timeout still counts
// from then). Drain closes it; readability resumes it.
void park(SessionHost& worker, asio::ip::tcp::socket socket, std::string listener, uint16_t port,
          TimePoint idle_since);
// The same for an established TLS stream, which keeps only its socket and
// SSL object while parked; one that cannot be split (tls::release_ssl) is
// closed, as an idle connection may be.
void park(SessionHost& worker, asio::ssl::stream<asio::ip::tcp::socket>& stream,
          std::string listener, uint16_t port, TimePoint idle_since);

// One worker's parked connections. Each is a descriptor in an epoll set of
// its own, which the worker's loop watches as one descriptor, and a record
// in pages that hold nothing else. So a parked connection costs neither
// Asio's per-socket state nor heap that interleaves with sessions' (which
// would keep freed session pages from going back to the OS).
class ParkedConnections : public std::enable_shared_from_this<ParkedConnections> {
 public:
  explicit ParkedConnections(SessionHost& worker);
  ~ParkedConnections();
  ParkedConnections(const ParkedConnections&) = delete;
  ParkedConnections& operator=(const ParkedConnections&) = delete;

  // `ssl`: the connection's TLS state (owned from here), or null.
  void park(asio::ip::tcp::socket socket, SSL* ssl, std::string_view listener, uint16_t port,
            TimePoint idle_since);
  // Closes every parked connection at once, without telling the worker:
  // it is going away.
  void shutdown();
  size_t size() const { return live_; }

  struct Record;
  struct Chunk;

 private:
  void watch();
  void on_ready();
  void doom(Record* r);
  void sweep();
  void close(Record* r);
  void unpark(Record* r);  // out of the worker's connections and the gauge, record freed
  Record* allocate();
  void release(Record* r);

  SessionHost* worker_;
  int epfd_ = -1;
  asio::posix::stream_descriptor watch_;
  std::vector<Chunk*> chunks_;
  std::vector<Record*> doomed_;  // to close at the next sweep
  std::vector<std::string> listeners_;
  size_t live_ = 0;
  bool sweep_posted_ = false;
  bool watching_ = false;  // a wait on the set is pending
};

}  // namespace sluice
