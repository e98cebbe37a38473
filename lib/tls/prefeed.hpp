#pragma once
// Hands BoringSSL bytes already read off a socket (a ClientHello read to
// find the SNI) before anything else the socket delivers.

#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>
#include <cstdint>
#include <vector>

namespace sluice::tls {

// Puts `bytes` in front of what the stream's SSL reads. False on allocation
// failure (the caller closes the connection).
bool prefeed(asio::ssl::stream<asio::ip::tcp::socket>& stream, std::vector<uint8_t> bytes);

}  // namespace sluice::tls
