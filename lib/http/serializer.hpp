#pragma once
// HTTP/1.1 serialisation into a caller-owned string (no sockets).

#include <cstdint>
#include <string>
#include <string_view>

#include "sluice/request.hpp"

namespace sluice::http {

// Hop-by-hop headers (RFC 9110 7.6.1), plus any listed in Connection.
bool is_hop_by_hop(std::string_view name);
// Removes hop-by-hop headers and the ones `Connection` names.
void strip_hop_by_hop(Headers& headers);

void append_request_head(std::string& out, const RequestHead& head);
void append_response_head(std::string& out, const ResponseHead& head);
// "<hex>\r\n" before a chunk of `size` bytes.
void append_chunk_header(std::string& out, size_t size);
inline constexpr std::string_view kChunkEnd = "\r\n";
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// A complete response with Content-Length (gateway-made answers).
std::string serialize_response(const Response& response, bool head_request, bool close);

}  // namespace sluice::http
