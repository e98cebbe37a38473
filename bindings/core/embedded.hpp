#pragma once
// The part of the Python and C bindings that is neither Python nor C: a
// Gateway configured from Istio YAML or from GatewayConfig values, listeners
// found by name or by their declared (Istio server) port, and explain /
// upstream / stats as JSON values. Both bindings wrap this one class, so they
// answer the same questions the same way.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "istio/istio.hpp"
#include "sluice/gateway.hpp"

namespace sluice::embed {

class Embedded;

// Time that moves only when told, shared by any number of gateways: their
// steady clock (timeouts, delays, ejections) and wall clock (JWT exp, global
// rate-limit windows) both start at the real time when the clock is made.
class ManualClock {
 public:
  ManualClock();
  std::chrono::steady_clock::time_point now() const;
  std::chrono::system_clock::time_point wall_now() const;
  std::chrono::nanoseconds elapsed() const;
  // Moves time forward, then has every gateway on this clock run what is
  // now due before returning. A negative step is refused (false).
  bool advance(std::chrono::nanoseconds step);

 private:
  friend class Embedded;
  void attach(Embedded* g);
  void detach(Embedded* g);

  std::chrono::steady_clock::time_point steady_;
  std::chrono::system_clock::time_point wall_;
  std::atomic<int64_t> offset_{0};  // nanoseconds
  // Held while telling the gateways, so that none is destroyed meanwhile.
  std::mutex mutex_;
  std::set<Embedded*> gateways_;
};

struct Options {
  unsigned workers = 1;
  uint64_t seed = 0;  // 0: random, as GatewayOptions::seed
  // Address of every listener the configuration does not place itself:
  // Istio Gateway servers, and GatewayConfig listeners with an empty address.
  std::string bind = "127.0.0.1";
  std::function<std::chrono::steady_clock::time_point()> clock;
  std::function<std::chrono::system_clock::time_point()> wall_clock;
  // Sets clock and wall_clock, and is told of this gateway so that
  // advance() runs its due timers.
  std::shared_ptr<ManualClock> manual_clock;
  std::shared_ptr<Hooks> hooks;
};

class Embedded {
 public:
  explicit Embedded(Options options);
  ~Embedded();

  // Each validates everything first and changes nothing on error. Istio
  // YAML: every Gateway server listens on an OS-chosen port of `bind`
  // (port() maps the server's port number to it).
  Status apply_yaml(std::string_view yaml);
  Status apply_paths(const std::vector<std::string>& paths);
  // Listeners without an address get `bind`; port 0 is OS-chosen.
  Status apply_config(GatewayConfig config);

  void start();
  void stop();
  void clock_advanced();

  // A listener by name, or by the port it declares (the Istio server port,
  // or ListenerConfig::port) when `key` is a number. 0: unknown.
  uint16_t port(std::string_view key) const;
  // "http://bind:port" for the same key; empty when unknown.
  std::string url(std::string_view key) const;
  // Listener names, in configuration order.
  std::vector<std::string> listeners() const;

  // `url` is absolute ("http://host[:port]/path?q"); the port (or, without
  // one, the only listener) picks the listener. An error for a URL that does
  // not parse or names no listener. The result: matched, virtual_host,
  // route, reasons (per earlier rule), destination, and security.
  Result<nlohmann::json> explain(
      std::string_view method, std::string_view url,
      const std::vector<std::pair<std::string, std::string>>& headers) const;
  // The upstream's endpoints and counters; an error when there is none.
  Result<nlohmann::json> upstream(std::string_view name) const;
  nlohmann::json stats() const;
  std::string prometheus() const;
  // The running snapshot as the admin /config_dump shows it (JSON text).
  std::string config_dump() const;

  Gateway& gateway() { return *gateway_; }

 private:
  struct Current;
  Status apply_loaded(istio::LoadedConfig loaded);
  // The listener `key` names: by name, else by declared port. Null if none.
  const ListenerConfig* find_listener(const Current& c, std::string_view key) const;

  Options options_;
  std::unique_ptr<Gateway> gateway_;
  mutable std::mutex mutex_;  // current_: apply may race explain/port
  std::shared_ptr<const Current> current_;
};

// sluice's version, "MAJOR.MINOR.PATCH".
const char* version();

}  // namespace sluice::embed
