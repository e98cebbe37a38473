#include "upstream/pool.hpp"

#include "upstream/cluster.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace sluice {

UpstreamConnection::~UpstreamConnection() {
  if (cluster) cluster->connections.fetch_sub(1, std::memory_order_relaxed);
}

namespace {
// Peeks without blocking: a usable idle connection has nothing to read.
bool still_usable(asio::ip::tcp::socket& s) {
  char c;
  ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
}  // namespace

std::unique_ptr<UpstreamConnection> ConnectionPool::take(const std::string& key,
                                                         std::chrono::milliseconds idle_timeout) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  auto now = std::chrono::steady_clock::now();
  while (!list.empty()) {
    auto conn = std::move(list.back());
    list.pop_back();
    if (now - conn->idle_since < idle_timeout && still_usable(conn->socket)) return conn;
  }
  return nullptr;
}

void ConnectionPool::put(std::unique_ptr<UpstreamConnection> conn, size_t max_idle) {
  auto& list = idle_[conn->endpoint_key];
  if (list.size() >= max_idle) return;  // dropping it closes the socket
  conn->idle_since = std::chrono::steady_clock::now();
  list.push_back(std::move(conn));
}

void ConnectionPool::clear() {
  idle_.clear();
}

size_t ConnectionPool::idle_count() const {
  size_t n = 0;
  for (const auto& [k, v] : idle_) n += v.size();
  return n;
}

}  // namespace sluice
