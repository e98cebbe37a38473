#pragma once
// FakeUpstream: an HTTP/1.1 origin server on its own thread and io_context,
// bound to 127.0.0.1 port 0. It has its own small HTTP/1 parser (nothing from
// sluice), so it is an independent peer for the gateway under test.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sluice::test {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive look-ups over a header list.
std::optional<std::string> find_header(const HeaderList& headers, std::string_view name);
size_t count_header(const HeaderList& headers, std::string_view name);

// One request as the upstream received it.
struct Received {
  std::string method;
  std::string target;
  int version_minor = 1;
  HeaderList headers;  // in arrival order, names as sent
  std::string body;    // empty when larger than the store limit (see body_stored)
  bool body_stored = true;
  bool chunked = false;  // the body arrived chunked
  HeaderList trailers;   // of a chunked body, names as sent
  uint64_t body_bytes = 0;
  uint64_t body_checksum = 0;   // Checksum (body_pattern.hpp) of the body
  size_t connection_index = 0;  // 0-based, in accept order
  size_t index_on_connection = 0;

  std::optional<std::string> header(std::string_view name) const {
    return find_header(headers, name);
  }
  size_t header_count(std::string_view name) const { return count_header(headers, name); }
};

struct Reply {
  enum class Framing { content_length, chunked, close_delimited };

  uint16_t status = 200;
  std::string reason;  // empty: "OK" or a generic phrase
  HeaderList headers;
  std::string body;
  // > 0: the body is generated_bytes of the pattern (body_pattern.hpp),
  // streamed in blocks and never held whole; `body` is ignored.
  uint64_t generated_bytes = 0;
  Framing framing = Framing::content_length;
  size_t chunk_size = 16 * 1024;  // for chunked framing
  HeaderList trailers;            // sent in the last chunk (chunked framing)
  // The upstream being slow: an asio timer before the answer is written.
  std::chrono::milliseconds delay{0};
  // Wait until FakeUpstream::release() before answering.
  bool hold = false;
  // Close with RST instead of answering.
  bool reset_before_response = false;
  // Close after the response (close-delimited framing always closes).
  bool close_after_response = false;
  // Send only the head and this many body bytes, then reset.
  std::optional<uint64_t> reset_after_body_bytes;
};

using Handler = std::function<Reply(const Received&)>;

class FakeUpstream {
 public:
  // `name` is what the default handler answers with (200, body = name).
  explicit FakeUpstream(std::string name = "upstream");
  ~FakeUpstream();
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  uint16_t port() const { return port_; }
  const std::string& name() const { return name_; }

  // Thread-safe; applies to requests whose reply is computed afterwards.
  void set_handler(Handler handler);
  // Request bodies above this many bytes are counted and checksummed only.
  void set_store_body_limit(size_t bytes);
  // Answers every request currently held (Reply::hold) and later ones too
  // until hold is requested again by a handler.
  void release();

  std::vector<Received> requests() const;
  size_t request_count() const;
  std::optional<Received> last_request() const;
  // Blocks until at least `n` requests were received; false on timeout.
  bool wait_for_requests(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Request body bytes read so far, of complete requests and of one still
  // arriving (a stalled upload shows here before it is in requests()).
  uint64_t body_bytes_received() const { return body_bytes_.load(); }
  size_t connections_accepted() const { return accepted_.load(); }
  size_t open_connections() const { return open_.load(); }
  size_t max_concurrent_connections() const { return max_open_.load(); }
  bool wait_for_connections(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Number of sessions currently waiting on hold.
  size_t held() const { return held_.load(); }

  // Stops accepting and closes every connection; idempotent.
  void stop();

  struct Impl;  // the asio side, in fake_upstream.cpp

 private:
  friend struct Impl;
  void record(Received r);
  Reply reply_for(const Received& r);

  std::string name_;
  uint16_t port_ = 0;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Received> log_;
  Handler handler_;
  size_t store_body_limit_ = 1 << 20;

  std::atomic<size_t> accepted_{0};
  std::atomic<size_t> open_{0};
  std::atomic<size_t> max_open_{0};
  std::atomic<size_t> held_{0};
  std::atomic<uint64_t> body_bytes_{0};
};

}  // namespace sluice::test
