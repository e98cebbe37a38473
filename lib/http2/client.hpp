#pragma once
// The client side of one HTTP/2 connection over nghttp2, apart from I/O like
// ServerSession: requests in through submit_request()/send_data(), bytes
// out through produce(), bytes in through feed(), response events out
// through take_events(). The upstream multiplexer (lib/upstream/h2_pool)
// drives it over a TCP or TLS stream.
//
// Translation (RFC 9113 §8.3): an HTTP/1.1 request head becomes :method,
// :scheme, :authority (from Host), :path; connection-specific fields go,
// except `te: trailers`. The peer controls every frame that arrives, so the
// response header list is bounded (a stream past it is reset, which the
// caller sees as a reset before the response) and a stream's response body
// only flows as far as the window the caller credits with consume().

#include <sluice/request.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http2/codec.hpp"

namespace sluice::http2 {

struct ClientSettings {
  // Response body a stream (and the connection) may receive before the
  // caller credits it back: the bound on data buffered per stream.
  uint32_t initial_stream_window = 65535;
  uint32_t initial_connection_window = 1024 * 1024;
  uint32_t header_table_size = 4096;
  // Response header list (counted as HTTP/1 counts it) and count.
  size_t max_header_list_bytes = 60 * 1024;
  size_t max_headers = 100;
  size_t max_continuations = 8;
  size_t max_outbound_acks = 1000;
  size_t max_settings_entries = 32;
};

struct ClientEvent {
  enum class Kind {
    head,      // the final response head (1xx heads are not reported)
    data,      // response body bytes (consume() them when written on)
    trailers,  // the response's trailers; `end` follows
    end,       // the response is complete
    reset,     // the stream closed before the response completed
    goaway,    // the peer sends no more: streams past last_stream are reset
  };
  Kind kind;
  int32_t stream = 0;
  uint16_t status = 0;
  Headers headers{};  // head and trailers
  std::string data{};
  ErrorCode error = ErrorCode::no_error;
  // reset: the peer never processed the stream (refused, or past a
  // GOAWAY's last stream id): safe to send again elsewhere.
  bool refused = false;
  bool end_stream = false;  // head: no body follows
  int32_t last_stream = 0;  // goaway
};

// Whether a request goes upstream with `te: trailers`: it asked for them, or
// it is a gRPC call (whose te the session dropped as hop-by-hop).
bool takes_trailers(const Headers& request);

class ClientSession {
 public:
  explicit ClientSession(const ClientSettings& settings = {});
  ~ClientSession();
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;

  // Parses server bytes. False when the connection must end (a GOAWAY for
  // it may be queued in produce()).
  bool feed(std::span<const uint8_t> bytes);
  bool feed(std::string_view bytes) {
    return feed(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  // Appends the frames ready to send (the preface first) to `out`.
  size_t produce(std::string& out);
  std::vector<ClientEvent> take_events();

  // Starts a stream: the stream id, or 0 when no stream may start (GOAWAY
  // received, ids used up, a malformed head). `head.headers` may carry
  // HTTP/1 fields; Host becomes :authority. With end_stream no body follows.
  int32_t submit_request(const RequestHead& head, bool end_stream);
  // Queues request body bytes; sent as the peer's windows allow.
  bool send_data(int32_t stream, std::string_view bytes, bool end_stream);
  // Request body bytes queued and not yet framed (the caller's bound).
  size_t pending_data(int32_t stream) const;
  // The caller has passed on `n` bytes of a stream's response body: the
  // server may send as much again (backpressure).
  void consume(int32_t stream, size_t n);
  void reset(int32_t stream, ErrorCode code);
  // Ends the connection (an idle one): GOAWAY, then nothing more.
  void shutdown();

  bool alive() const;
  bool goaway_received() const;
  // The peer provably did not act on an open stream: its HEADERS never
  // left, or it is past a received GOAWAY's last stream id. For a
  // connection that ends with the stream still open.
  bool unprocessed(int32_t stream) const;
  // The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS come).
  uint32_t peer_max_concurrent_streams() const;
  size_t open_streams() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::http2
