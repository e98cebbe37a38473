#pragma once
// RawClient: a blocking TCP client for 127.0.0.1 with send/receive timeouts,
// so a gateway that hangs fails the test instead of hanging the suite. Sends
// bytes as given (malformed input included) and parses responses with its own
// small parser, pipelined responses included.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "support/fake_upstream.hpp"

namespace sluice::test {

struct HttpResponse {
  int version_minor = 1;
  uint16_t status = 0;
  std::string reason;
  HeaderList headers;
  std::string body;  // empty when not stored (ReadOptions::store_body)
  uint64_t body_bytes = 0;
  uint64_t body_checksum = 0;  // Checksum (body_pattern.hpp) of the body
  bool chunked = false;
  bool close_delimited = false;  // the body ran until the connection closed

  std::optional<std::string> header(std::string_view name) const {
    return find_header(headers, name);
  }
  size_t header_count(std::string_view name) const { return count_header(headers, name); }
};

struct ReadOptions {
  bool head_request = false;  // the response to a HEAD has no body
  bool store_body = true;     // false: count and checksum only
};

class RawClient {
 public:
  explicit RawClient(uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0 && connected_; }
  // Local port of this connection (the gateway sees it as the client port).
  uint16_t local_port() const;

  bool send(std::string_view bytes);
  // Streams `n` pattern bytes (body_pattern.hpp), as is or as chunks of
  // `chunk` bytes with chunked framing (terminating 0-chunk included).
  bool send_pattern(uint64_t n);
  bool send_pattern_chunked(uint64_t n, size_t chunk);

  // Reads one full response (a 1xx is returned on its own: call again for
  // the final one). nullopt on timeout, close or garbage; see error().
  std::optional<HttpResponse> read_response(ReadOptions options = {});
  // Everything until the peer closes (or the timeout); what was buffered first.
  std::string read_all_until_close();
  // Exactly `n` bytes (what was buffered first), for tunnels that stay
  // open; fewer when the peer closes or the timeout comes first.
  std::string read_exactly(size_t n);
  // True if the peer closed (FIN or RST) within `timeout`. Data that arrives
  // first (an error response) is kept in buffered().
  bool is_closed(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Shuts down the sending side (half-close).
  void shutdown_send();
  void close();

  const std::string& error() const { return error_; }
  // Bytes received but not yet consumed by read_response.
  const std::string& buffered() const { return buf_; }

 private:
  // Appends what the socket gives; false on close, error or timeout.
  bool fill();
  bool read_line(std::string& line);

  int fd_ = -1;
  bool connected_ = false;
  bool peer_closed_ = false;
  std::string buf_;
  std::string error_;
  std::chrono::milliseconds timeout_;
};

// Bytes the kernel holds for the gateway's end of the connection from
// `client_port`, not yet read by the gateway (/proc/net/tcp rx_queue);
// nullopt when that socket is not listed.
std::optional<size_t> unread_by_gateway(uint16_t gateway_port, uint16_t client_port);
// Waits (bounded) until the gateway has accepted the connection from
// `client_port` (its socket has an inode in /proc/net/tcp).
bool gateway_accepted(uint16_t gateway_port, uint16_t client_port,
                      std::chrono::milliseconds timeout = std::chrono::seconds(5));
// Waits (bounded) until the gateway has read every byte the client sent.
bool gateway_read_everything(uint16_t gateway_port, uint16_t client_port,
                             std::chrono::milliseconds timeout = std::chrono::seconds(5));

// A TCP exchange: connects, sends `data`, half-closes, and returns all the
// peer sends until it closes (empty when the connection or send failed).
std::string exchange_until_close(uint16_t port, std::string_view data);

// A request in one string, for the common case.
std::string make_request(std::string_view method, std::string_view target,
                         std::string_view host = "example.com", const HeaderList& headers = {},
                         std::string_view body = {});

}  // namespace sluice::test
