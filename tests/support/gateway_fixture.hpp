#pragma once
// A Gateway running for one test: listener "main" on 127.0.0.1 port 0 with
// router "main", started on construction and stopped on destruction.

#include <sluice/sluice.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::test {

class ManualClock;

// An upstream with one 127.0.0.1 endpoint per port.
UpstreamConfig loopback_upstream(std::string name, const std::vector<uint16_t>& ports);

// Listener "main" (127.0.0.1:0) -> router "main" -> virtual host "*" with
// the given routes; upstreams as given.
GatewayConfig make_config(std::vector<Route> routes, std::vector<UpstreamConfig> upstreams);
// Listener "main" with no routes, and a TCP listener "tcp" (127.0.0.1:0)
// with `routes`; upstreams as given.
GatewayConfig tcp_config(std::vector<TcpRoute> routes, std::vector<UpstreamConfig> upstreams);
// The common case: every request to upstream "backend" at 127.0.0.1:`port`.
GatewayConfig single_upstream_config(uint16_t port);
// A destination with just an upstream and a weight.
Destination destination(std::string upstream, uint32_t weight = 1);
// A route matching everything that forwards to `upstream`.
Route forward_all(std::string upstream, std::string name = "default");

// What on_log saw, one entry per exchange.
struct LogEntry {
  uint16_t status = 0;
  std::string flags;
  std::string listener;
  std::string route;
  std::string upstream;
  std::string endpoint;
  std::string client_address;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  std::chrono::microseconds duration{0};  // on the gateway's clock
};

// Hooks that record on_log; tests derive from it to add behaviour.
class RecordingHooks : public Hooks {
 public:
  void on_log(const RequestContext& context) override;
  std::vector<LogEntry> logs() const;
  bool wait_for_logs(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<LogEntry> logs_;
};

class TestGateway {
 public:
  // Applies `config` and starts; a failure fails the current test. With
  // `clock`, the gateway runs on it and clock->advance() drives it.
  explicit TestGateway(GatewayConfig config, unsigned workers = 1,
                       std::shared_ptr<Hooks> hooks = nullptr, ManualClock* clock = nullptr);
  // The same with the gateway's own `options` (its seed as given).
  TestGateway(GatewayConfig config, GatewayOptions options, ManualClock* clock = nullptr);
  ~TestGateway();
  TestGateway(const TestGateway&) = delete;
  TestGateway& operator=(const TestGateway&) = delete;

  Gateway& gateway() { return *gateway_; }
  uint16_t port(std::string_view listener = "main") const { return gateway_->port(listener); }
  Status apply(GatewayConfig config) { return gateway_->apply(std::move(config)); }
  void stop();
  // The sum over every series named `name` in stats() (all labels).
  double metric(std::string_view name) const;

 private:
  std::unique_ptr<Gateway> gateway_;
  ManualClock* clock_ = nullptr;
  bool stopped_ = false;
};

}  // namespace sluice::test
