#include "support/tunnel_upstream.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace sluice::test {

namespace {

bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Appends one read to `buf`; false on close, error or the 5 s timeout.
bool read_more(int fd, std::string& buf) {
  char tmp[4096];
  ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
  if (n <= 0) return false;
  buf.append(tmp, static_cast<size_t>(n));
  return true;
}

// Takes one request head off `buf`; false when the peer is gone first.
bool read_head(int fd, std::string& buf, std::string& head) {
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos)
    if (!read_more(fd, buf)) return false;
  head = buf.substr(0, end + 4);
  buf.erase(0, end + 4);
  return true;
}

constexpr std::string_view k101 =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

}  // namespace

std::string masked_frame(std::string_view payload, uint8_t opcode, uint32_t mask) {
  std::string out;
  out += static_cast<char>(0x80 | opcode);
  out += static_cast<char>(0x80 | payload.size());
  uint8_t key[4] = {uint8_t(mask >> 24), uint8_t(mask >> 16), uint8_t(mask >> 8), uint8_t(mask)};
  out.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < payload.size(); ++i) out += static_cast<char>(payload[i] ^ key[i % 4]);
  return out;
}

std::string unmasked_payload(std::string_view bytes) {
  if (bytes.size() < 2) return {};
  size_t len = static_cast<uint8_t>(bytes[1]) & 0x7f;
  if ((static_cast<uint8_t>(bytes[1]) & 0x80) || len >= 126 || bytes.size() < 2 + len) return {};
  return std::string(bytes.substr(2, len));
}

TunnelUpstream::TunnelUpstream(Mode mode, std::string tag) : mode_(mode), tag_(std::move(tag)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listen_fd_, 128);
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TunnelUpstream::~TunnelUpstream() {
  stop_ = true;
  acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
  for (int fd : fds_) ::close(fd);
  ::close(listen_fd_);
}

std::vector<std::string> TunnelUpstream::heads() const {
  std::lock_guard lock(mutex_);
  return heads_;
}

std::string TunnelUpstream::early() const {
  std::lock_guard lock(mutex_);
  return early_;
}

void TunnelUpstream::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;  // re-checks stop_ (bounded wait, not a sleep)
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ++connections_;
    std::lock_guard lock(mutex_);
    fds_.push_back(fd);
    threads_.emplace_back([this, fd] { serve(fd); });
  }
}

void TunnelUpstream::serve(int fd) {
  std::string buf;
  auto record = [&](const std::string& head) {
    std::lock_guard lock(mutex_);
    heads_.push_back(head);
    early_ += buf;
  };
  std::string head;
  switch (mode_) {
    case Mode::echo:
      while (true) {
        std::string data;
        if (!read_more(fd, data) || !send_all(fd, tag_ + data)) break;
      }
      break;
    case Mode::answer_200:
      while (read_head(fd, buf, head)) {
        record(head);
        if (!send_all(fd, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno")) break;
      }
      break;
    case Mode::upgrade_other:
      if (!read_head(fd, buf, head)) break;
      record(head);
      send_all(fd,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n");
      break;
    case Mode::always_101:
    case Mode::websocket:
      if (!read_head(fd, buf, head)) break;
      record(head);
      if (!send_all(fd, k101)) break;
      // Frames from the client, answered unmasked with the same opcode.
      while (true) {
        while (buf.size() >= 6) {
          size_t len = static_cast<uint8_t>(buf[1]) & 0x7f;
          if (buf.size() < 6 + len) break;
          std::string out;
          out += buf[0];
          out += static_cast<char>(len);
          for (size_t i = 0; i < len; ++i) out += static_cast<char>(buf[6 + i] ^ buf[2 + i % 4]);
          buf.erase(0, 6 + len);
          if (!send_all(fd, out)) return;
        }
        if (!read_more(fd, buf)) break;
      }
      break;
  }
  ::shutdown(fd, SHUT_WR);
}

}  // namespace sluice::test
