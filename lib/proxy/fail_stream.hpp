#pragma once
// A downstream stream over a TCP socket that fails its n-th read or write
// (Beast's test::fail_count): tests run one exchange with n = 1, 2, ... so
// every error path of the session runs once, under the sanitizers.

#include <asio/async_result.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>

#include <cstddef>
#include <string>
#include <utility>

namespace sluice {

class SessionHost;

class FailCountStream {
 public:
  using executor_type = asio::ip::tcp::socket::executor_type;
  using lowest_layer_type = asio::ip::tcp::socket::lowest_layer_type;

  // `fail_at`: the 1-based operation (reads and writes counted together)
  // that fails with `error` instead of touching the socket; 0: none.
  // `operations`, when given, counts them where the test can read it.
  FailCountStream(asio::ip::tcp::socket socket, size_t fail_at, size_t* operations = nullptr,
                  asio::error_code error = asio::error::connection_reset)
      : socket_(std::move(socket)),
        fail_at_(fail_at),
        error_(error),
        operations_(operations ? operations : &own_count_) {}
  FailCountStream(FailCountStream&& o) noexcept
      : socket_(std::move(o.socket_)),
        fail_at_(o.fail_at_),
        error_(o.error_),
        own_count_(o.own_count_),
        operations_(o.operations_ == &o.own_count_ ? &own_count_ : o.operations_) {}

  executor_type get_executor() { return socket_.get_executor(); }
  lowest_layer_type& lowest_layer() { return socket_.lowest_layer(); }
  size_t operations() const { return *operations_; }

  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return start(std::forward<Token>(token), [this, buffers](auto handler) {
      socket_.async_read_some(buffers, std::move(handler));
    });
  }
  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return start(std::forward<Token>(token), [this, buffers](auto handler) {
      socket_.async_write_some(buffers, std::move(handler));
    });
  }

 private:
  template <typename Token, typename Real>
  auto start(Token&& token, Real real) {
    return asio::async_initiate<Token, void(asio::error_code, size_t)>(
        [this, real](auto handler) mutable {
          if (++*operations_ == fail_at_) {
            // Completes like a failed socket operation: later, never inline.
            asio::post(socket_.get_executor(), [h = std::move(handler), e = error_]() mutable {
              std::move(h)(e, size_t{0});
            });
            return;
          }
          real(std::move(handler));
        },
        token);
  }

  asio::ip::tcp::socket socket_;
  size_t fail_at_;
  asio::error_code error_;
  size_t own_count_ = 0;
  size_t* operations_;
};

// Serves HTTP on `stream` as start_session() does on a plain socket.
void start_fail_count_session(SessionHost& worker, FailCountStream stream,
                              const std::string& listener, uint16_t port);

}  // namespace sluice
