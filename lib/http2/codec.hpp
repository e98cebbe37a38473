#pragma once
// The server side of one HTTP/2 connection over nghttp2, apart from I/O
// (like lib/http's HTTP/1 codec): bytes in through feed(), bytes out through
// produce(), request events out through take_events(), responses in through
// submit_*(). No sockets, no clocks: unit-testable and fuzzable alone.
//
// Translation (RFC 9113 §8): nghttp2's HTTP messaging checks the
// pseudo-headers (:method, :scheme, :path, :authority), refuses
// connection-specific fields (connection, keep-alive, proxy-connection,
// transfer-encoding, upgrade) and `te` other than "trailers" with a stream
// PROTOCOL_ERROR; this layer joins cookie crumbs with "; " and turns
// :authority into the Host the rest of sluice routes on.

#include <sluice/request.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::http2 {

// The connection preface a client with prior knowledge sends first (h2c).
inline constexpr std::string_view kClientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// HTTP/2 error codes (RFC 9113 §7) this layer names.
enum class ErrorCode : uint32_t {
  no_error = 0x0,
  protocol_error = 0x1,
  internal_error = 0x2,
  flow_control_error = 0x3,
  refused_stream = 0x7,
  cancel = 0x8,
  enhance_your_calm = 0xb,
};

// Settable limits. Defaults: Envoy's HTTP/2 protocol options as Istio sets
// them on its gateway listeners (stream window 64 KiB - 1, connection window
// 1 MiB), 100 concurrent streams, and the header bounds of sluice's HTTP/1
// side (Limits::max_request_header_bytes / max_request_headers).
struct Settings {
  uint32_t max_concurrent_streams = 100;
  uint32_t initial_stream_window = 65535;
  uint32_t initial_connection_window = 1024 * 1024;
  uint32_t max_frame_size = 16384;
  uint32_t header_table_size = 4096;
  // Decoded header list (names + values, as counted for HTTP/1) and count:
  // a stream past either is reset (an HPACK bomb costs one stream).
  size_t max_header_list_bytes = 60 * 1024;
  size_t max_headers = 100;
  // CONTINUATION frames after one HEADERS (nghttp2 closes the session past it).
  size_t max_continuations = 8;
  // SETTINGS and PING acks queued unsent (Envoy's max_outbound_control_frames).
  size_t max_outbound_acks = 1000;
  // Entries in one SETTINGS frame.
  size_t max_settings_entries = 32;
  // RST_STREAM token bucket (nghttp2's own rate limit, CVE-2023-44487).
  uint64_t reset_burst = 1000;
  uint64_t reset_rate_per_second = 33;
  // Envoy's premature-reset rule: once this many streams were opened, a
  // connection whose client reset more than half of them before their
  // response began is closed with GOAWAY.
  uint64_t premature_reset_min_streams = 100;
  // Consecutive frames with an empty payload and no END_STREAM (Envoy's
  // max_consecutive_inbound_frames_with_empty_payload).
  uint32_t max_consecutive_empty_frames = 1;
  // A client stream id past this ends the connection gracefully (GOAWAY
  // NO_ERROR after it) so the client opens a fresh one before 2^31.
  int32_t stream_id_goaway_threshold = 0x7fffffff - 1000;
  // Extended CONNECT (RFC 8441): SETTINGS_ENABLE_CONNECT_PROTOCOL is sent
  // and a CONNECT may carry :protocol (WebSocket over HTTP/2). Off by
  // default, as Envoy's allow_connect.
  bool enable_connect_protocol = false;
};

struct Event {
  enum class Kind {
    request,   // head: a new stream's request head
    data,      // data: a chunk of the request body (consume() it when done)
    trailers,  // trailers: the request's trailers
    end,       // the request is complete (END_STREAM)
    reset,     // the stream closed before both sides finished; error
  };
  Kind kind;
  int32_t stream = 0;
  RequestHead head{};
  Headers trailers{};
  std::string data{};
  ErrorCode error = ErrorCode::no_error;
  bool end_stream = false;  // request: no body follows
  // request: an extended CONNECT's :protocol (lower-cased), else empty. The
  // head then has :path as its target; a plain CONNECT's target is its
  // :authority.
  std::string protocol{};
};

// Why a connection ended, for logs and counters.
enum class CloseReason {
  none,
  protocol_error,   // malformed frames, bad preface
  flood,            // PING/SETTINGS acks, empty frames, CONTINUATION
  rapid_reset,      // RST_STREAM rate or premature resets
  stream_ids_used,  // ids near 2^31: graceful GOAWAY
  internal,
};

class ServerSession {
 public:
  explicit ServerSession(const Settings& settings = {});
  ~ServerSession();
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  // Parses client bytes (preface first). Returns false when the connection
  // must end: the GOAWAY for it is queued in produce().
  bool feed(std::span<const uint8_t> bytes);
  bool feed(std::string_view bytes) {
    return feed(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  // Appends the frames ready to send to `out`; returns how many bytes.
  size_t produce(std::string& out);
  // Events since the last call, in order.
  std::vector<Event> take_events();

  // The caller is done with `n` bytes of a stream's request body: credit the
  // flow-control windows so the client may send more (backpressure).
  void consume(int32_t stream, size_t n);

  // A response head. `headers` may carry HTTP/1 fields: names are
  // lower-cased and connection-specific ones dropped. With end_stream no
  // body follows.
  bool submit_response(int32_t stream, uint16_t status, const Headers& headers, bool end_stream);
  // Queues body bytes; sent as the peer's windows allow. end_stream closes
  // the response (unless trailers follow via submit_trailers).
  bool send_data(int32_t stream, std::string_view bytes, bool end_stream);
  // Ends the response with trailers after any queued data.
  bool submit_trailers(int32_t stream, const Headers& trailers);
  // Response body bytes queued and not yet framed (the caller's bound).
  size_t pending_data(int32_t stream) const;
  void reset(int32_t stream, ErrorCode code);
  // Graceful end: GOAWAY with the last stream id seen; open streams finish.
  void shutdown();

  // False when neither side has anything left to say: close the socket
  // after writing what produce() gave.
  bool alive() const;
  CloseReason close_reason() const;
  size_t open_streams() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Drops HTTP/1 connection-specific fields (and those named in Connection)
// and lower-cases names: what may be forwarded as HTTP/2 fields.
Headers h2_fields_from_h1(const Headers& headers);

}  // namespace sluice::http2
