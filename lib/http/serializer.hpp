#pragma once
// HTTP/1.1 serialisation into a caller-owned string (no sockets).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/request.hpp"

namespace sluice::http {

// Hop-by-hop headers (RFC 9110 7.6.1): Connection, Keep-Alive,
// Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
// Proxy-Authenticate.
bool is_hop_by_hop(std::string_view name);
// Removes hop-by-hop headers and the ones `Connection` names, which never
// include Host or Content-Length.
void strip_hop_by_hop(Headers& headers);

void append_request_head(std::string& out, const RequestHead& head);
void append_response_head(std::string& out, const ResponseHead& head);
// "<hex>\r\n" before a chunk of `size` bytes.
void append_chunk_header(std::string& out, size_t size);
inline constexpr std::string_view kChunkEnd = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";
// Whether a trailer field may be forwarded: never a hop-by-hop or
// connection-specific name, nor one that frames, routes or authenticates a
// message (RFC 9110 6.5.1: content-length, host, authorization, cookies...),
// nor a pseudo-header.
bool is_forwardable_trailer(std::string_view name);
// The last chunk with the forwardable ones of `trailers`: "0\r\n" fields "\r\n".
void append_last_chunk(std::string& out, const Headers& trailers);

// What the gateway adds to a request it forwards.
struct Forwarding {
  std::string_view client_ip;     // appended to x-forwarded-for
  std::string_view proto;         // x-forwarded-proto (replaces any)
  std::string_view xfcc;          // x-forwarded-client-cert (any incoming one is dropped)
  std::string_view request_id;    // x-request-id when the request has none
  std::string_view default_host;  // Host when the request has none (HTTP/1.0)
  std::string_view host;          // replaces Host when set (mirrors: "-shadow")
  // Framing, from the parsed message; any Content-Length or
  // Transfer-Encoding among the headers is dropped.
  bool chunked = false;                    // body re-framed as chunked
  std::optional<uint64_t> content_length;  // when not chunked and the request had one
  bool close = false;                      // `connection: close` (mirrors)
  // An allowed upgrade (lower case, e.g. "websocket"): sent as
  // `connection: upgrade` and `upgrade: <it>`, the only hop-by-hop pair kept.
  std::string_view upgrade;
};

// Serialises the upstream request head in one pass over the headers: drops
// hop-by-hop headers (the caller has already removed those Connection names,
// see strip_hop_by_hop), Content-Length (re-derived), `Expect: 100-continue`
// (the gateway answers it) and incoming x-forwarded-client-cert; merges
// x-forwarded-for; adds the rest of `f`. Returns true when the request asked
// for 100-continue.
bool append_forwarded_request_head(std::string& out, const RequestHead& head, const Forwarding& f);

}  // namespace sluice::http
