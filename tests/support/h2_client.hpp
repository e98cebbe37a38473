#pragma once
// HTTP/2 on the client side for tests: raw frames written by hand (for the
// attacks, which a well-behaved library refuses to send) and a small client
// over nghttp2 that reads a server's frames back into responses.

#include <sluice/request.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::test::h2 {

// Frame types and flags (RFC 9113 §6).
enum : uint8_t {
  kData = 0x0,
  kHeaders = 0x1,
  kRstStream = 0x3,
  kSettings = 0x4,
  kPing = 0x6,
  kGoaway = 0x7,
  kWindowUpdate = 0x8,
  kContinuation = 0x9,
};
enum : uint8_t { kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4 };

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload);
// An HPACK field as a literal without indexing, no Huffman (RFC 7541 §6.2.2).
std::string literal(std::string_view name, std::string_view value);
// An HPACK literal with incremental indexing: enters the dynamic table.
std::string literal_indexed(std::string_view name, std::string_view value);
// An HPACK indexed field (static 1..61, dynamic from 62).
std::string indexed(uint32_t index);
// A request header block: :method, :scheme, :path, :authority, then extras.
std::string request_block(std::string_view method, std::string_view path,
                          std::string_view authority,
                          const std::vector<std::pair<std::string, std::string>>& extra = {});
// Preface and an empty SETTINGS: what a client says first.
std::string client_start();

// A server's bytes read back as frames, for checking what a raw client sees.
struct Frame {
  uint8_t type;
  uint8_t flags;
  uint32_t stream;
  std::string payload;
};
std::vector<Frame> frames_of(std::string_view bytes);
// The first GOAWAY's error code, if any.
std::optional<uint32_t> goaway_code(std::string_view bytes);
// The error code of `stream`'s RST_STREAM, if any.
std::optional<uint32_t> rst_code(std::string_view bytes, uint32_t stream);

struct Response {
  int status = 0;
  Headers headers;
  std::string body;
  Headers trailers;
  bool done = false;              // END_STREAM seen
  std::optional<uint32_t> reset;  // RST_STREAM error code
};

// Reads a server's bytes with an nghttp2 client session; sends requests.
class Client {
 public:
  Client();
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Returns the new stream id. Without body, END_STREAM is on HEADERS. A
  // CONNECT with an empty path is a plain one (:authority only).
  int32_t request(std::string_view method, std::string_view path, std::string_view authority,
                  const std::vector<std::pair<std::string, std::string>>& headers = {},
                  std::optional<std::string> body = std::nullopt);
  // A request whose body is sent piece by piece with send() (a tunnel's
  // bytes after an extended CONNECT: pass ":protocol" first in `headers`).
  int32_t open(std::string_view method, std::string_view path, std::string_view authority,
               const std::vector<std::pair<std::string, std::string>>& headers = {});
  // More of an open() stream's body; `end` sends END_STREAM after it.
  void send(int32_t stream, std::string_view bytes, bool end = false);
  // A SETTINGS value the server sent (0 when it sent none).
  uint32_t server_setting(int32_t id) const;
  bool settings_received() const { return settings_received_; }
  // Bytes to send to the server.
  std::string take_output();
  // Bytes from the server; false on a protocol error.
  bool feed(std::string_view bytes);
  const std::map<int32_t, Response>& responses() const { return responses_; }
  std::optional<uint32_t> goaway() const { return goaway_; }
  // Window credit is given back automatically as the client reads.

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::map<int32_t, Response> responses_;
  std::optional<uint32_t> goaway_;
  bool settings_received_ = false;
};

// RFC 8441: the setting, and what a WebSocket's extended CONNECT adds.
constexpr int32_t kEnableConnectProtocol = 0x8;  // RFC 8441 §3
inline const std::vector<std::pair<std::string, std::string>> kH2WebSocket = {
    {":protocol", "websocket"}, {"sec-websocket-version", "13"}};

// A blocking TCP connection to 127.0.0.1 with a receive timeout, for raw
// frames and for driving a Client over a real socket.
class Socket {
 public:
  explicit Socket(uint16_t port);
  ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  bool connected() const { return fd_ >= 0; }
  bool send(std::string_view bytes);
  // What arrives within `timeout_ms` (empty on timeout); closed() after EOF.
  std::string read_some(int timeout_ms = 5000);
  // Everything until the peer closes, or the timeout passes without a byte.
  std::string read_until_close(int timeout_ms = 5000);
  bool closed() const { return closed_; }
  // Sends the client's output and feeds it the server's until `done` holds
  // or nothing arrives within the timeout.
  bool exchange(Client& client, const std::function<bool()>& done, int timeout_ms = 5000);

 private:
  int fd_ = -1;
  bool closed_ = false;
};

// A client and its connection, once the server's SETTINGS arrived (a
// client may use extended CONNECT only after it saw the setting).
struct Peer {
  explicit Peer(uint16_t port);
  bool ready() const { return sock.connected() && client.settings_received(); }
  // Waits for `id`'s response head (or its end or reset).
  const Response& head_of(int32_t id);
  // Waits until `id`'s response body holds `n` bytes or the stream ends.
  const Response& body_of(int32_t id, size_t n);
  // `id`'s response so far (an empty one before anything arrived).
  const Response& response(int32_t id) const;
  Socket sock;
  Client client;
};

}  // namespace sluice::test::h2
