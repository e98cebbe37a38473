#pragma once
// An in-process HTTP/2 upstream on 127.0.0.1 port 0, on its own thread,
// built on the server side of lib/http2: h2c with prior knowledge, or h2
// over TLS (ALPN "h2") with a certificate. Counts connections and the most
// streams open at once on one connection; can hold responses until enough
// requests arrived (to make streams concurrent), send GOAWAY after a number
// of requests, reset streams, and answer with trailers.

#include <sluice/request.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http2/codec.hpp"

namespace sluice::test {

struct H2Request {
  RequestHead head;
  std::string body;
  size_t connection = 0;  // 1-based, in accept order
  int32_t stream = 0;
};

struct H2Reply {
  uint16_t status = 200;
  Headers headers;
  std::string body;
  std::optional<Headers> trailers;
  // Reset the stream with this code instead of answering.
  std::optional<http2::ErrorCode> reset;
};

struct H2TlsFiles {
  std::string cert_path;
  std::string key_path;
};

class H2Upstream {
 public:
  explicit H2Upstream(std::optional<H2TlsFiles> tls = std::nullopt, http2::Settings settings = {});
  ~H2Upstream();
  H2Upstream(const H2Upstream&) = delete;
  H2Upstream& operator=(const H2Upstream&) = delete;

  uint16_t port() const { return port_; }
  // Default: 200 with body "h2 <target>".
  void set_handler(std::function<H2Reply(const H2Request&)> handler);
  // Responses wait until `n` requests arrived in all (0: answer at once).
  void hold_until(size_t n);
  // Answers the held requests now.
  void release_held();
  // After its n-th request a connection sends GOAWAY (last stream: that
  // request's), answers what it took, then closes.
  void goaway_after(size_t n);

  size_t connections() const { return connections_.load(); }
  size_t requests() const;
  size_t max_open_streams() const { return max_open_.load(); }
  std::vector<H2Request> received() const;
  bool wait_for_requests(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // ALPN the last TLS connection chose ("" for h2c).
  std::string last_alpn() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
  std::atomic<size_t> connections_{0};
  std::atomic<size_t> max_open_{0};
};

}  // namespace sluice::test
