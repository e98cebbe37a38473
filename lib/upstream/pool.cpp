#include "upstream/pool.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "upstream/cluster.hpp"

namespace sluice {

UpstreamConnection::~UpstreamConnection() {
  if (cluster) cluster->connections.fetch_sub(1, std::memory_order_relaxed);
  if (endpoint) endpoint->connections.fetch_sub(1, std::memory_order_relaxed);
}

namespace {
// Peeks without blocking: a usable idle connection has nothing to read
// (under TLS, session tickets may wait to be read: only a close counts).
bool still_usable(UpstreamConnection& c) {
  if (has_pending_input(c)) return false;
  char byte;
  ssize_t n = ::recv(c.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return c.tls != nullptr;
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
}  // namespace

bool has_pending_input(UpstreamConnection& c) {
  if (!c.tls) return false;
  SSL* ssl = c.tls->native_handle();
  return SSL_pending(ssl) > 0 || BIO_pending(SSL_get_rbio(ssl)) > 0;
}

std::unique_ptr<UpstreamConnection> ConnectionPool::take(
    const std::string& key, std::chrono::milliseconds idle_timeout,
    std::chrono::steady_clock::time_point now) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  while (!list.empty()) {
    auto conn = std::move(list.back());
    list.pop_back();
    if (now - conn->idle_since < idle_timeout && still_usable(*conn)) return conn;
  }
  return nullptr;
}

void ConnectionPool::put(std::unique_ptr<UpstreamConnection> conn, size_t max_idle,
                         std::chrono::steady_clock::time_point now) {
  auto& list = idle_[conn->endpoint_key];
  if (list.size() >= max_idle) return;  // dropping it closes the socket
  conn->idle_since = now;
  list.push_back(std::move(conn));
}

void ConnectionPool::sweep(std::chrono::milliseconds idle_timeout, const ClusterState* cluster,
                           std::chrono::steady_clock::time_point now) {
  for (auto& [key, list] : idle_)
    std::erase_if(list, [&](const std::unique_ptr<UpstreamConnection>& c) {
      return c->cluster.get() == cluster && now - c->idle_since >= idle_timeout;
    });
}

bool ConnectionPool::evict_one(const ClusterState* cluster) {
  for (auto& [key, list] : idle_) {
    for (auto it = list.begin(); it != list.end(); ++it) {
      if ((*it)->cluster.get() != cluster) continue;
      list.erase(it);  // oldest first would be nicer; any frees the place
      return true;
    }
  }
  return false;
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
