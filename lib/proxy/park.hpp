#pragma once
// Parking: an idle keep-alive connection gives up its session, coroutine
// frames and buffers and waits for readability as a small record; the next
// request starts a new session on the same connection.

#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <string>

#include "proxy/host.hpp"

namespace sluice {

// Parks `socket`, idle since `idle_since` (its idle timeout still counts
// from then). Drain closes it; readability resumes it.
void park(SessionHost& worker, asio::ip::tcp::socket socket, std::string listener, uint16_t port,
          TimePoint idle_since);

}  // namespace sluice
