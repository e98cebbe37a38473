#include "security/redis.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <deque>
#include <optional>

#include "http/tokens.hpp"

namespace sluice::security {

using SteadyClock = std::chrono::steady_clock;

struct RedisClient::Call {
  std::string payload;
  size_t expected = 0;
  std::vector<RedisReply> replies;
  Callback done;
  SteadyClock::time_point deadline;
};

struct RedisClient::Connection {
  explicit Connection(asio::io_context& context)
      : socket(context), timer(context), resolver(context), reader(redisReaderCreate()) {}
  ~Connection() {
    if (reader != nullptr) redisReaderFree(reader);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  asio::ip::tcp::socket socket;
  asio::steady_timer timer;
  asio::ip::tcp::resolver resolver;
  redisReader* reader;
  // Null once the client is gone: handlers still queued then do nothing.
  RedisClient* client = nullptr;
  bool ready = false;    // connected
  bool closed = false;   // failed or shut; never reused
  bool writing = false;  // an async_write is in flight
  // The deadline the timer waits for, when a wait is in place.
  std::optional<SteadyClock::time_point> armed;
  std::string out;  // payloads waiting for the write in flight
  std::string in_flight;
  // Calls whose replies are due, oldest first: Redis answers in order.
  std::deque<std::unique_ptr<Call>> calls;
  std::array<char, 16 * 1024> in;
};

namespace {

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::nil;
      break;
  }
  return out;
}

// RESP encoding of one command, appended to `out`.
bool append_command(std::string& out, const RedisCommand& command) {
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  argv.reserve(command.size());
  lengths.reserve(command.size());
  for (const std::string& arg : command) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  char* formatted = nullptr;
  int n = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(),
                                 lengths.data());
  if (n < 0 || formatted == nullptr) return false;
  out.append(formatted, static_cast<size_t>(n));
  redisFreeCommand(formatted);
  return true;
}

}  // namespace

RedisClient::RedisClient(asio::io_context& context, RedisOptions options)
    : context_(context), options_(std::move(options)) {
  if (options_.max_connections == 0) options_.max_connections = 1;
}

RedisClient::~RedisClient() {
  for (auto& c : connections_) {
    c->client = nullptr;
    c->closed = true;
    asio::error_code ignored;
    c->socket.close(ignored);
    c->timer.cancel();
    c->resolver.cancel();
    for (auto& call : c->calls) {
      Callback done = std::move(call->done);
      RedisReplies result = make_error("client closed");
      asio::post(context_, [done = std::move(done), result = std::move(result)]() mutable {
        done(std::move(result));
      });
    }
    c->calls.clear();
  }
}

Error RedisClient::make_error(std::string message) const {
  return Error{"Redis " + http::join_host_port(options_.host, options_.port), "",
               std::move(message)};
}

RedisStats RedisClient::stats() const {
  RedisStats s = stats_;
  s.open_connections = connections_.size();
  return s;
}

void RedisClient::complete(std::unique_ptr<Call> call, RedisReplies result) {
  ++stats_.calls;
  if (!result.ok()) ++stats_.failed;
  // Posted: a callback never runs inside execute() or in the middle of
  // parsing a read.
  asio::post(context_, [done = std::move(call->done), result = std::move(result)]() mutable {
    done(std::move(result));
  });
}

void RedisClient::execute(std::vector<RedisCommand> commands, std::chrono::milliseconds timeout,
                          Callback done) {
  auto call = std::make_unique<Call>();
  call->done = std::move(done);
  call->expected = commands.size();
  call->deadline = SteadyClock::now() + timeout;
  for (const RedisCommand& command : commands) {
    if (command.empty() || !append_command(call->payload, command)) {
      complete(std::move(call), make_error("cannot encode command"));
      return;
    }
  }
  if (call->expected == 0) {
    complete(std::move(call), std::vector<RedisReply>{});
    return;
  }
  if (pending_ >= options_.max_pending) {
    complete(std::move(call), make_error("too many calls in flight"));
    return;
  }
  dispatch(std::move(call));
}

void RedisClient::dispatch(std::unique_ptr<Call> call) {
  std::shared_ptr<Connection> best;
  for (const auto& c : connections_)
    if (!best || c->calls.size() < best->calls.size()) best = c;
  // A new connection when every one is busy and the bound allows: otherwise
  // pipeline behind the least busy.
  if (!best || (!best->calls.empty() && connections_.size() < options_.max_connections)) {
    best = std::make_shared<Connection>(context_);
    best->client = this;
    connections_.push_back(best);
    start_connect(best);
  }
  ++pending_;
  best->out += call->payload;
  best->calls.push_back(std::move(call));
  arm_timer(best);
  flush(best);
}

void RedisClient::start_connect(const std::shared_ptr<Connection>& c) {
  auto on_connect = [c](const asio::error_code& ec) {
    if (c->client == nullptr || c->closed) return;
    if (ec) {
      ++c->client->stats_.connect_failures;
      c->client->fail_connection(c, "connect: " + ec.message());
      return;
    }
    c->client->connected(c);
  };
  asio::error_code parse_error;
  auto address = asio::ip::make_address(options_.host, parse_error);
  if (!parse_error) {
    c->socket.async_connect(asio::ip::tcp::endpoint(address, options_.port), on_connect);
    return;
  }
  c->resolver.async_resolve(
      options_.host, std::to_string(options_.port),
      [c, on_connect](const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) {
        if (c->client == nullptr || c->closed) return;
        if (ec) {
          on_connect(ec);
          return;
        }
        asio::async_connect(c->socket, results,
                            [on_connect](const asio::error_code& ec2,
                                         const asio::ip::tcp::endpoint&) { on_connect(ec2); });
      });
}

void RedisClient::connected(const std::shared_ptr<Connection>& c) {
  ++stats_.connects;
  c->ready = true;
  asio::error_code ignored;
  c->socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  flush(c);
  read(c);
}

void RedisClient::flush(const std::shared_ptr<Connection>& c) {
  if (!c->ready || c->closed || c->writing || c->out.empty()) return;
  c->writing = true;
  c->in_flight.swap(c->out);
  c->out.clear();
  asio::async_write(c->socket, asio::buffer(c->in_flight), [c](const asio::error_code& ec, size_t) {
    if (c->client == nullptr || c->closed) return;
    c->writing = false;
    c->in_flight.clear();
    if (ec) {
      c->client->fail_connection(c, "write: " + ec.message());
      return;
    }
    c->client->flush(c);
  });
}

void RedisClient::read(const std::shared_ptr<Connection>& c) {
  c->socket.async_read_some(asio::buffer(c->in), [c](const asio::error_code& ec, size_t n) {
    RedisClient* self = c->client;
    if (self == nullptr || c->closed) return;
    if (ec) {
      self->fail_connection(c, ec == asio::error::eof ? std::string("connection closed by server")
                                                      : "read: " + ec.message());
      return;
    }
    if (redisReaderFeed(c->reader, c->in.data(), n) != REDIS_OK) {
      self->fail_connection(c, "protocol error");
      return;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(c->reader, &raw) != REDIS_OK) {
        self->fail_connection(c, std::string("protocol error: ") + c->reader->errstr);
        return;
      }
      if (raw == nullptr) break;
      RedisReply reply = convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      if (c->calls.empty()) {
        self->fail_connection(c, "reply without a request");
        return;
      }
      Call& front = *c->calls.front();
      front.replies.push_back(std::move(reply));
      if (front.replies.size() == front.expected) {
        std::unique_ptr<Call> done = std::move(c->calls.front());
        c->calls.pop_front();
        --self->pending_;
        std::vector<RedisReply> replies = std::move(done->replies);
        self->complete(std::move(done), std::move(replies));
        self->arm_timer(c);
      }
    }
    self->read(c);
  });
}

void RedisClient::arm_timer(const std::shared_ptr<Connection>& c) {
  if (c->calls.empty()) {
    c->armed.reset();
    c->timer.cancel();
    return;
  }
  SteadyClock::time_point first = SteadyClock::time_point::max();
  for (const auto& call : c->calls) first = std::min(first, call->deadline);
  if (c->armed == first) return;  // the wait in place already covers it
  c->armed = first;
  c->timer.expires_at(first);
  c->timer.async_wait([c](const asio::error_code& ec) {
    if (ec || c->client == nullptr || c->closed) return;
    c->armed.reset();
    auto now = SteadyClock::now();
    bool expired = std::any_of(c->calls.begin(), c->calls.end(),
                               [&](const auto& call) { return call->deadline <= now; });
    if (expired)
      c->client->fail_connection(c, "timeout", true);
    else
      c->client->arm_timer(c);
  });
}

void RedisClient::fail_connection(const std::shared_ptr<Connection>& c, const std::string& why,
                                  bool timed_out) {
  if (c->closed) return;
  c->closed = true;
  c->ready = false;
  asio::error_code ignored;
  c->socket.close(ignored);
  c->timer.cancel();
  c->resolver.cancel();
  connections_.erase(std::remove(connections_.begin(), connections_.end(), c), connections_.end());
  auto now = SteadyClock::now();
  std::deque<std::unique_ptr<Call>> calls = std::move(c->calls);
  c->calls.clear();
  for (auto& call : calls) {
    --pending_;
    if (timed_out && call->deadline <= now) ++stats_.timeouts;
    complete(std::move(call), make_error(why));
  }
}

asio::awaitable<RedisReplies> RedisClient::execute(std::vector<RedisCommand> commands,
                                                   std::chrono::milliseconds timeout) {
  // The callback wakes the coroutine by cancelling a timer that would
  // otherwise never fire.
  struct Wait {
    explicit Wait(asio::io_context& context) : timer(context, SteadyClock::time_point::max()) {}
    asio::steady_timer timer;
    std::optional<RedisReplies> result;
  };
  auto wait = std::make_shared<Wait>(context_);
  execute(std::move(commands), timeout, [wait](RedisReplies result) {
    wait->result.emplace(std::move(result));
    wait->timer.cancel();
  });
  auto token = asio::experimental::as_tuple(asio::use_awaitable);
  while (!wait->result) co_await wait->timer.async_wait(token);
  co_return std::move(*wait->result);
}

}  // namespace sluice::security
