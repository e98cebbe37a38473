#pragma once
// The downstream HTTP/1.1 session: one coroutine per connection reads
// requests, routes them, relays them upstream and streams responses back.

#include <asio/ip/tcp.hpp>
#include <string>

namespace sluice {

class Worker;

void start_session(Worker& worker, asio::ip::tcp::socket socket, const std::string& listener,
                   uint16_t port);

}  // namespace sluice
