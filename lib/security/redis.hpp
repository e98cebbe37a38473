#pragma once
// A small asynchronous Redis client for the global rate limit: commands go
// out pipelined on a bounded set of TCP connections owned by the client,
// replies are parsed with hiredis's RESP reader, every call has a deadline.
// It runs on one io_context (a worker's) and never blocks it; use one client
// per worker.
//
// The connection is a plain asio socket of its own for now: the design's
// upstream-connection layer (lib/upstream/connect.cpp) is meant to own every
// outgoing byte and will adopt this connection (limits, counters, TLS) once
// it can carry a non-HTTP protocol.

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sluice/result.hpp"

namespace sluice::security {

struct RedisOptions {
  std::string host = "127.0.0.1";  // an IP address or a name (resolved asynchronously)
  uint16_t port = 6379;
  // Connections opened at most; calls beyond them are pipelined on the
  // least busy one.
  size_t max_connections = 2;
  // Calls in flight or waiting at most; more fail at once.
  size_t max_pending = 1024;
};

struct RedisReply {
  enum class Type { string, array, integer, nil, status, error };
  Type type = Type::nil;
  int64_t integer = 0;
  std::string str;  // string, status and error
  std::vector<RedisReply> elements;
};

// One command: its arguments, e.g. {"INCRBY", key, "1"}.
using RedisCommand = std::vector<std::string>;
using RedisReplies = Result<std::vector<RedisReply>>;

struct RedisStats {
  uint64_t calls = 0;
  uint64_t failed = 0;    // calls that ended in an error (any cause)
  uint64_t timeouts = 0;  // calls whose deadline passed
  uint64_t connects = 0;  // connections established
  uint64_t connect_failures = 0;
  size_t open_connections = 0;  // connected or connecting now
};

class RedisClient {
 public:
  RedisClient(asio::io_context& context, RedisOptions options);
  // Closes the connections; calls still in flight complete with an error.
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  using Callback = std::function<void(RedisReplies)>;

  // Sends `commands` in one write on one connection and calls `done` (on
  // the io_context, never inside this call) with one reply per command, in
  // order, or with an error: no connection, connection lost, protocol
  // error, too many calls, or `timeout` passed (the connection is then
  // closed, since its later replies would be out of step).
  void execute(std::vector<RedisCommand> commands, std::chrono::milliseconds timeout,
               Callback done);

  // The same, for a coroutine on the client's io_context.
  asio::awaitable<RedisReplies> execute(std::vector<RedisCommand> commands,
                                        std::chrono::milliseconds timeout);

  RedisStats stats() const;
  const RedisOptions& options() const { return options_; }

 private:
  struct Call;
  struct Connection;
  void dispatch(std::unique_ptr<Call> call);
  void start_connect(const std::shared_ptr<Connection>& c);
  void connected(const std::shared_ptr<Connection>& c);
  void flush(const std::shared_ptr<Connection>& c);
  void read(const std::shared_ptr<Connection>& c);
  void arm_timer(const std::shared_ptr<Connection>& c);
  void fail_connection(const std::shared_ptr<Connection>& c, const std::string& why,
                       bool timed_out = false);
  void complete(std::unique_ptr<Call> call, RedisReplies result);
  Error make_error(std::string message) const;

  asio::io_context& context_;
  RedisOptions options_;
  std::vector<std::shared_ptr<Connection>> connections_;
  size_t pending_ = 0;
  RedisStats stats_;
};

}  // namespace sluice::security
