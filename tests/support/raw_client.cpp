#include "support/raw_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "support/body_pattern.hpp"
#include "support/wait.hpp"

namespace sluice::test {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_chunked(std::string_view te) {
  // "chunked" as the last coding is what frames the body.
  size_t comma = te.rfind(',');
  std::string_view last = trim(comma == std::string_view::npos ? te : te.substr(comma + 1));
  if (last.size() != 7) return false;
  for (size_t i = 0; i < 7; ++i)
    if (std::tolower(static_cast<unsigned char>(last[i])) != "chunked"[i]) return false;
  return true;
}

}  // namespace

RawClient::RawClient(uint16_t port, std::chrono::milliseconds timeout) : timeout_(timeout) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = std::strerror(errno);
    return;
  }
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    error_ = std::string("connect: ") + std::strerror(errno);
    return;
  }
  connected_ = true;
}

RawClient::~RawClient() {
  close();
}

void RawClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  connected_ = false;
}

uint16_t RawClient::local_port() const {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  return ntohs(addr.sin_port);
}

bool RawClient::send(std::string_view bytes) {
  if (fd_ < 0) return false;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = std::string("send: ") + std::strerror(errno);
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawClient::send_pattern(uint64_t n) {
  std::string block(256 * 1024, '\0');
  for (uint64_t done = 0; done < n;) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(block.size(), n - done));
    fill_pattern(done, block.data(), k);
    if (!send(std::string_view(block.data(), k))) return false;
    done += k;
  }
  return true;
}

bool RawClient::send_pattern_chunked(uint64_t n, size_t chunk) {
  std::string block;
  for (uint64_t done = 0; done < n;) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(chunk, n - done));
    char size_line[32];
    std::snprintf(size_line, sizeof(size_line), "%zx\r\n", k);
    block = size_line;
    size_t at = block.size();
    block.resize(at + k);
    fill_pattern(done, block.data() + at, k);
    block += "\r\n";
    if (!send(block)) return false;
    done += k;
  }
  return send("0\r\n\r\n");
}

void RawClient::shutdown_send() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool RawClient::fill() {
  if (fd_ < 0 || peer_closed_) return false;
  char tmp[65536];
  for (;;) {
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n > 0) {
      buf_.append(tmp, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) {
      peer_closed_ = true;
      error_ = "closed by peer";
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      error_ = "receive timeout";
    } else {
      peer_closed_ = true;  // ECONNRESET and friends
      error_ = std::string("recv: ") + std::strerror(errno);
    }
    return false;
  }
}

bool RawClient::read_line(std::string& line) {
  for (;;) {
    size_t eol = buf_.find("\r\n");
    if (eol != std::string::npos) {
      line = buf_.substr(0, eol);
      buf_.erase(0, eol + 2);
      return true;
    }
    if (buf_.size() > 1024 * 1024) {
      error_ = "line too long";
      return false;
    }
    if (!fill()) return false;
  }
}

std::optional<HttpResponse> RawClient::read_response(ReadOptions options) {
  HttpResponse r;
  std::string line;
  if (!read_line(line)) return std::nullopt;
  // "HTTP/1.1 200 OK"
  if (line.size() < 12 || line.compare(0, 7, "HTTP/1.") != 0) {
    error_ = "bad status line: " + line;
    return std::nullopt;
  }
  r.version_minor = line[7] - '0';
  r.status = static_cast<uint16_t>(std::atoi(line.c_str() + 9));
  r.reason = line.size() > 13 ? line.substr(13) : "";
  for (;;) {
    if (!read_line(line)) return std::nullopt;
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == std::string::npos) {
      error_ = "bad header line: " + line;
      return std::nullopt;
    }
    std::string_view l = line;
    r.headers.emplace_back(std::string(l.substr(0, colon)), std::string(trim(l.substr(colon + 1))));
  }

  Checksum checksum;
  auto take = [&](size_t k) {
    std::string_view data(buf_.data(), k);
    checksum.update(data);
    if (options.store_body) r.body.append(data);
    buf_.erase(0, k);
  };
  auto finish = [&] {
    r.body_bytes = checksum.bytes();
    r.body_checksum = checksum.value();
  };
  bool no_body = options.head_request || r.status / 100 == 1 || r.status == 204 || r.status == 304;
  if (no_body) {
    finish();
    return r;
  }
  auto te = r.header("transfer-encoding");
  if (te && has_chunked(*te)) {
    r.chunked = true;
    for (;;) {
      if (!read_line(line)) return std::nullopt;
      char* end = nullptr;
      uint64_t size = std::strtoull(line.c_str(), &end, 16);
      if (end == line.c_str()) {
        error_ = "bad chunk size: " + line;
        return std::nullopt;
      }
      if (size == 0) {
        for (;;) {
          if (!read_line(line)) return std::nullopt;
          if (line.empty()) break;
        }
        break;
      }
      while (size > 0) {
        if (buf_.empty() && !fill()) return std::nullopt;
        size_t k = static_cast<size_t>(std::min<uint64_t>(size, buf_.size()));
        take(k);
        size -= k;
      }
      if (!read_line(line) || !line.empty()) {
        error_ = "missing CRLF after chunk";
        return std::nullopt;
      }
    }
  } else if (auto cl = r.header("content-length")) {
    uint64_t size = std::strtoull(cl->c_str(), nullptr, 10);
    while (size > 0) {
      if (buf_.empty() && !fill()) return std::nullopt;
      size_t k = static_cast<size_t>(std::min<uint64_t>(size, buf_.size()));
      take(k);
      size -= k;
    }
  } else {
    r.close_delimited = true;
    for (;;) {
      if (!buf_.empty()) take(buf_.size());
      if (!fill()) break;
    }
    if (!peer_closed_) return std::nullopt;  // timed out before the close
  }
  finish();
  return r;
}

std::string RawClient::read_all_until_close() {
  while (fill()) {
  }
  std::string out = std::move(buf_);
  buf_.clear();
  return out;
}

std::string RawClient::read_exactly(size_t n) {
  while (buf_.size() < n && fill()) {
  }
  std::string out = buf_.substr(0, n);
  buf_.erase(0, out.size());
  return out;
}

bool RawClient::is_closed(std::chrono::milliseconds timeout) {
  if (peer_closed_) return true;
  if (fd_ < 0) return true;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;
    char tmp[4096];
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n == 0) {
      peer_closed_ = true;
      return true;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      peer_closed_ = true;
      return true;
    }
    // Data (e.g. an error response) before the close: keep it, keep waiting.
    buf_.append(tmp, static_cast<size_t>(n));
  }
}

std::string make_request(std::string_view method, std::string_view target, std::string_view host,
                         const HeaderList& headers, std::string_view body) {
  std::string out;
  out.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  if (!host.empty()) out.append("Host: ").append(host).append("\r\n");
  bool framed = false;
  for (const auto& [n, v] : headers) {
    out.append(n).append(": ").append(v).append("\r\n");
    if (count_header({{n, v}}, "content-length") || count_header({{n, v}}, "transfer-encoding"))
      framed = true;
  }
  if (!framed && !body.empty())
    out.append("Content-Length: " + std::to_string(body.size()) + "\r\n");
  out.append("\r\n").append(body);
  return out;
}

namespace {

// The gateway's end of the connection from `client_port` in /proc/net/tcp:
// its rx_queue and inode (0 until the gateway has accepted the connection).
struct GatewayEnd {
  size_t rx_queue = 0;
  uint64_t inode = 0;
};

std::optional<GatewayEnd> gateway_end(uint16_t gateway_port, uint16_t client_port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout;
    uint64_t inode = 0;
    fields >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
        inode;
    auto port_of = [](const std::string& a) {
      return static_cast<uint16_t>(std::stoul(a.substr(a.find(':') + 1), nullptr, 16));
    };
    if (local.empty() || remote.empty() || queues.empty()) continue;
    if (port_of(local) != gateway_port || port_of(remote) != client_port) continue;
    return GatewayEnd{
        static_cast<size_t>(std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16)), inode};
  }
  return std::nullopt;
}

}  // namespace

std::string exchange_until_close(uint16_t port, std::string_view data) {
  RawClient c(port);
  if (!c.connected() || !c.send(data)) return {};
  c.shutdown_send();
  return c.read_all_until_close();
}

std::optional<size_t> unread_by_gateway(uint16_t gateway_port, uint16_t client_port) {
  auto end = gateway_end(gateway_port, client_port);
  if (!end) return std::nullopt;
  return end->rx_queue;
}

bool gateway_accepted(uint16_t gateway_port, uint16_t client_port,
                      std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        auto end = gateway_end(gateway_port, client_port);
        return end && end->inode != 0;
      },
      timeout);
}

bool gateway_read_everything(uint16_t gateway_port, uint16_t client_port,
                             std::chrono::milliseconds timeout) {
  return wait_until([&] { return unread_by_gateway(gateway_port, client_port) == size_t{0}; },
                    timeout);
}

}  // namespace sluice::test
