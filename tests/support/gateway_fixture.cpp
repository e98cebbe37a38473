#include "support/gateway_fixture.hpp"

#include <doctest/doctest.h>

#include "support/manual_clock.hpp"

namespace sluice::test {

UpstreamConfig loopback_upstream(std::string name, const std::vector<uint16_t>& ports) {
  UpstreamConfig upstream;
  upstream.name = std::move(name);
  for (uint16_t port : ports) {
    Endpoint endpoint;
    endpoint.address = "127.0.0.1";
    endpoint.port = port;
    upstream.endpoints.push_back(std::move(endpoint));
  }
  return upstream;
}

GatewayConfig tcp_config(std::vector<TcpRoute> routes, std::vector<UpstreamConfig> upstreams) {
  GatewayConfig config = make_config({}, std::move(upstreams));
  ListenerConfig l;
  l.name = "tcp";
  l.address = "127.0.0.1";
  l.tcp_routes = std::move(routes);
  config.listeners.push_back(std::move(l));
  return config;
}

Destination destination(std::string upstream, uint32_t weight) {
  Destination d;
  d.upstream = std::move(upstream);
  d.weight = weight;
  return d;
}

Route forward_all(std::string upstream, std::string name) {
  Route route;
  route.name = std::move(name);
  route.destinations.push_back(destination(std::move(upstream), 1));
  return route;
}

GatewayConfig make_config(std::vector<Route> routes, std::vector<UpstreamConfig> upstreams) {
  GatewayConfig config;
  ListenerConfig listener;
  listener.name = "main";
  listener.address = "127.0.0.1";
  listener.port = 0;
  listener.router = "main";
  config.listeners.push_back(std::move(listener));
  RouterConfig router;
  router.name = "main";
  VirtualHost host;
  host.name = "all";
  host.domains = {"*"};
  host.routes = std::move(routes);
  router.virtual_hosts.push_back(std::move(host));
  config.routers.push_back(std::move(router));
  config.upstreams = std::move(upstreams);
  return config;
}

GatewayConfig single_upstream_config(uint16_t port) {
  return make_config({forward_all("backend")}, {loopback_upstream("backend", {port})});
}

void RecordingHooks::on_log(const RequestContext& context) {
  LogEntry entry;
  entry.status = context.response_status;
  entry.flags = to_string(context.response_flags);
  entry.listener = context.listener;
  entry.route = context.route;
  entry.upstream = context.upstream;
  entry.endpoint = context.endpoint;
  entry.client_address = context.client_address;
  entry.bytes_received = context.bytes_received;
  entry.bytes_sent = context.bytes_sent;
  entry.duration = context.duration;
  {
    std::lock_guard lock(mutex_);
    logs_.push_back(std::move(entry));
  }
  cv_.notify_all();
}

std::vector<LogEntry> RecordingHooks::logs() const {
  std::lock_guard lock(mutex_);
  return logs_;
}

bool RecordingHooks::wait_for_logs(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return logs_.size() >= n; });
}

namespace {
GatewayOptions fixture_options(unsigned workers, std::shared_ptr<Hooks> hooks) {
  GatewayOptions options;
  options.workers = workers;
  options.seed = 42;
  options.hooks = std::move(hooks);
  return options;
}
}  // namespace

TestGateway::TestGateway(GatewayConfig config, unsigned workers, std::shared_ptr<Hooks> hooks,
                         ManualClock* clock)
    : TestGateway(std::move(config), fixture_options(workers, std::move(hooks)), clock) {}

TestGateway::TestGateway(GatewayConfig config, GatewayOptions options, ManualClock* clock) {
  if (clock) options.clock = clock->fn();
  gateway_ = std::make_unique<Gateway>(std::move(options));
  clock_ = clock;
  if (clock) clock->drive(*gateway_);
  Status status = gateway_->apply(std::move(config));
  REQUIRE_MESSAGE(status.ok(), status.error().to_string());
  gateway_->start();
  REQUIRE(gateway_->port("main") != 0);
}

TestGateway::~TestGateway() {
  stop();
  if (clock_) clock_->forget(*gateway_);
}

double TestGateway::metric(std::string_view name) const {
  double sum = 0;
  for (const auto& m : gateway_->stats().metrics)
    if (m.name == name) sum += m.value;
  return sum;
}

void TestGateway::stop() {
  if (stopped_ || !gateway_) return;
  stopped_ = true;
  gateway_->stop();
}

}  // namespace sluice::test
