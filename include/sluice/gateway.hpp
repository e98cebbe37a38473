#pragma once
// The Gateway: listeners, workers and the compiled configuration they serve.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/endpoints.hpp"
#include "sluice/hooks.hpp"
#include "sluice/log.hpp"
#include "sluice/ratelimit.hpp"
#include "sluice/result.hpp"
#include "sluice/router.hpp"
#include "sluice/security.hpp"
#include "sluice/stats.hpp"
#include "sluice/telemetry.hpp"
#include "sluice/upstream.hpp"

namespace asio {
class io_context;
}

namespace sluice {

// TLS termination for one set of server names on a listener (an Istio
// Gateway server with tls mode SIMPLE, MUTUAL or OPTIONAL_MUTUAL).
struct TlsServer {
  enum class Mode { simple, mutual, optional_mutual };
  enum class Version { tls_auto, tls1_0, tls1_1, tls1_2, tls1_3 };
  std::vector<std::string> sni_hosts;  // "a.example.com", "*.example.com", "*"
  Mode mode = Mode::simple;
  std::string certificate_chain;                     // PEM
  std::string private_key;                           // PEM
  std::string ca_certificates;                       // PEM; client CAs for mutual modes
  std::vector<std::string> subject_alt_names;        // accepted client SANs; empty: any
  std::vector<std::string> verify_certificate_spki;  // base64 SHA-256 of SPKI
  std::vector<std::string> verify_certificate_hash;  // hex SHA-256 of the certificate
  Version min_version = Version::tls1_2;
  Version max_version = Version::tls_auto;
  std::vector<std::string> cipher_suites;  // empty: library defaults
};

// A TLS connection whose SNI matches is relayed as raw TCP to the upstream,
// not terminated (Istio tls mode PASSTHROUGH with a VirtualService tls route).
struct TlsPassthroughRoute {
  std::vector<std::string> sni_hosts;
  std::string upstream;
  std::string subset;
};

// A TCP route (Istio VirtualService `tcp:`): a listener with any relays
// each connection as bytes (after TLS termination when it has tls_servers)
// to one weighted destination of the first route that matches the client.
struct TcpRoute {
  std::string name;
  // Client address ranges ("10.0.0.0/8", a bare address); empty: any.
  std::vector<std::string> source_subnets;
  // Weighted as in HTTP routes; header operations do not apply.
  std::vector<Destination> destinations;
};

struct ListenerConfig {
  std::string name;
  std::string address = "0.0.0.0";
  uint16_t port = 0;   // 0: the OS picks one; Gateway::port() tells which
  std::string router;  // RouterConfig::name
  // TLS: with servers or passthrough routes the listener speaks only TLS.
  std::vector<TlsServer> tls_servers;
  std::vector<TlsPassthroughRoute> passthrough;
  // Non-empty: the listener carries TCP, not HTTP (`router` is then unused).
  std::vector<TcpRoute> tcp_routes;
  std::chrono::milliseconds tls_handshake_timeout{10'000};
  // HTTP/2 besides HTTP/1.1, as Istio's gateway: h2c with prior knowledge on
  // a plain listener, "h2" offered by ALPN on a TLS one.
  bool http2 = true;
  // WebSocket (and the other upgrade_types) over HTTP/2 by extended CONNECT
  // (RFC 8441), tunnelled to the upstream as an HTTP/1.1 upgrade. Off by
  // default, as Envoy's allow_connect.
  bool http2_extended_connect = false;
};

// Limits and timeouts for downstream connections. Defaults follow Envoy's.
// A duration of 0 disables that bound.
struct Limits {
  size_t max_request_header_bytes = 60 * 1024;
  size_t max_request_headers = 100;
  // Upstream response heads (status line, reason and headers) are bounded the
  // same way; a larger one is answered 502 UPE.
  size_t max_response_header_bytes = 60 * 1024;
  size_t max_response_headers = 100;
  size_t max_connections = 100'000;  // per gateway; more are accepted and closed
  // Per client IP address, across workers; 0: unlimited. More are closed.
  size_t max_connections_per_client = 0;
  std::chrono::milliseconds request_header_timeout{10'000};  // slowloris bound
  std::chrono::milliseconds idle_timeout{3'600'000};         // keep-alive idle
  // No byte in either direction of a request for this long: 408 before the
  // response started, else reset (Envoy's stream_idle_timeout).
  std::chrono::milliseconds stream_idle_timeout{300'000};
  // Whole request received within this (Envoy's request_timeout): 408.
  std::chrono::milliseconds request_timeout{0};
  // A request and its response end within this (Envoy's max_stream_duration).
  std::chrono::milliseconds max_stream_duration{0};
  std::chrono::milliseconds upstream_response_timeout{0};  // 0: none (Istio)
  std::chrono::milliseconds drain_timeout{5'000};          // Istio's default
};

// How the request path is normalised before routing, policies and
// forwarding (Istio meshConfig pathNormalization; default BASE).
enum class PathNormalization {
  none,                      // forwarded as received
  base,                      // RFC 3986 dot segments, %XX of unreserved decoded
  merge_slashes,             // base, then "//" merged
  decode_and_merge_slashes,  // merge_slashes, and %2F / %5C decoded too
};

struct GatewayConfig {
  std::vector<ListenerConfig> listeners;
  std::vector<RouterConfig> routers;
  std::vector<UpstreamConfig> upstreams;
  Limits limits;
  PathNormalization path_normalization = PathNormalization::base;
  SecurityConfig security;      // JWT providers and authorization policies
  RateLimitConfig rate_limits;  // local buckets and global limits on Redis
  TelemetryConfig telemetry;    // access logs and tracing
  // Protocols a request may upgrade to (`Connection: upgrade`, `Upgrade:
  // <name>`), compared without case; the connection is tunnelled after the
  // upstream's 101. Others are refused (403). Istio allows websocket.
  std::vector<std::string> upgrade_types{"websocket"};
};

struct GatewayOptions {
  unsigned workers = 0;  // 0: one per hardware thread
  uint64_t seed = 0;     // 0: seeded from std::random_device
  // The one time source of every deadline, timeout, wait (retry backoff,
  // fault delay, connection-place wait, health interval), pool idle time,
  // parking, outlier ejection and warm-up. Tests and simulations inject one
  // to move time without sleeping, then call Gateway::clock_advanced().
  // Default (empty): std::chrono::steady_clock::now.
  std::function<std::chrono::steady_clock::time_point()> clock;
  // Wall-clock time, a clock of its own (calendar time; the steady clock
  // above has no epoch): JWT `exp` and `nbf`, and the windows of global rate
  // limits (aligned on the Unix epoch so that processes sharing a Redis
  // agree). Tests set it to move that time without sleeping. Default:
  // system_clock::now.
  std::function<std::chrono::system_clock::time_point()> wall_clock;
  // Remote key sets (JwtProvider::jwks_uri, OpenID discovery). on_jwks_fetch,
  // when set, is told after every fetch, on the worker that fetched.
  JwksFetchOptions jwks;
  std::function<void(const JwksFetchStatus&)> on_jwks_fetch;

  // Extension points (hooks.hpp, log.hpp). One Hooks shared by every worker
  // (it must be thread-safe), or, when hooks_factory is set, one per worker:
  // the factory is called once per worker (index 0..workers-1) from the
  // Gateway constructor, and `hooks` is then unused. A null result: none.
  std::shared_ptr<Hooks> hooks;
  std::function<std::shared_ptr<Hooks>(unsigned worker)> hooks_factory;
  // The library's own messages; null: dropped (it never writes to stderr).
  std::shared_ptr<Logger> logger;
  // Names in metrics; limits on their series (stats.hpp).
  TelemetryOptions telemetry;
};

class Snapshot;  // compiled GatewayConfig (lib/config)

// Validates and compiles without touching sockets. The result can be given
// to Gateway::apply, which then does not validate again.
Result<std::shared_ptr<const Snapshot>> compile(GatewayConfig config);

// What explain assumes about the connection a request arrives on.
struct ExplainInput {
  std::string client_ip;  // the downstream address (ipBlocks, source.ip); empty: unknown
  std::string sni;        // connection.sni
  // Wall-clock time for tokens' exp and nbf; unset: now (Gateway::explain:
  // GatewayOptions::wall_clock).
  std::optional<std::chrono::system_clock::time_point> now;
};

// Explains `request` on `listener` as the gateway would serve it: the path
// normalised, then the security policies (RequestAuthentication and
// AuthorizationPolicy: Explanation::security), then routing. An unknown
// listener explains nothing (host_matched false, host_match says why).
Explanation explain(const Snapshot& snapshot, std::string_view listener, const RequestHead& request,
                    const ExplainInput& input = {});

class Gateway {
 public:
  // Owns `options.workers` threads, started by start() or run().
  explicit Gateway(GatewayOptions options = {});
  // Runs on an io_context the host program owns and runs (one worker).
  Gateway(asio::io_context& host_context, GatewayOptions options = {});
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // compile(config), then apply() of the snapshot.
  Status apply(GatewayConfig config);
  // Swaps `snapshot` in whole, or changes nothing. First everything that can
  // fail: every new listener socket is bound (a taken port fails, naming the
  // listener and the port). Then the commit, which cannot fail: upstream
  // state (endpoints, ejections, counters, kept by upstream name) is aligned
  // with the new endpoints, new listeners open, removed ones close, and
  // requests in flight finish on the snapshot they started with.
  // A snapshot carries the runtime state of the gateway that first applied
  // it: applying it again to that gateway is fine (a rollback; its upstreams
  // get back that same state even if a later config had dropped them), to
  // another gateway is an error. A failed apply leaves it unclaimed.
  Status apply(std::shared_ptr<const Snapshot> snapshot);

  // Replaces the endpoints of one upstream of the current configuration,
  // compiling nothing else: the new snapshot shares routers, policies,
  // regexes and TLS contexts with the current one, and only this upstream's
  // endpoints and its subsets' members (by the endpoints' labels) change.
  // Validated as compile() validates endpoints; an error names the upstream
  // and field (`Upstream reviews: endpoints[1].address: ...`) and changes
  // nothing. Endpoints that stay (same ip:port) keep their state (ejections,
  // counters, health); new ones warm up as after a reload. Requests in
  // flight keep their snapshot. An unchanged list publishes nothing. A
  // later apply() replaces the endpoints with the ones it carries.
  // Thread-safe, also against apply().
  Status update_endpoints(std::string_view upstream, std::vector<Endpoint> endpoints);

  // Owns and starts `source`, whose updates go to update_endpoints; stop()
  // (and the destructor) stop it. An error when the gateway is stopping.
  Status add_endpoint_source(std::shared_ptr<EndpointSource> source);
  // Stops `source` and lets go of it (e.g. one replaced by a reload).
  void remove_endpoint_source(const std::shared_ptr<EndpointSource>& source);

  // Starts the worker threads and returns (no-op with a host io_context).
  void start();
  // start(), then blocks until stop() completes.
  void run();
  // Graceful: stop accepting, let requests in flight finish (bounded by
  // Limits::drain_timeout), close idle connections, stop the workers.
  // Thread-safe and idempotent. Blocks until done, except when called on a
  // host context's own thread: then the drain completes as that loop runs,
  // and the Gateway must outlive it.
  void stop();

  // After an injected GatewayOptions::clock moved: every worker runs what is
  // due at the new time now, instead of at its next tick (up to 50 ms of
  // real time later). Returns once they have (bounded; at once if the
  // workers are not running yet).
  void clock_advanced();

  // The remote key sets of the current configuration, one per URL, in the
  // order the providers name them.
  std::vector<JwksFetchStatus> jwks_status() const;
  // Blocks until every key set of the current configuration has finished
  // its first fetch (succeeded or failed), or `timeout` of real time ends
  // (false). Never returns true while one is pending. Runs no clock: with
  // an injected clock, a fetch that waits for a timeout needs it advanced.
  bool wait_jwks_fetched(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // Every worker's counters merged, with the gateway's and upstreams'
  // gauges (stats.hpp). Thread-safe; costs the workers nothing but the
  // merge's brief lock per worker.
  Stats stats() const;
  // For a host that refuses a configuration before it reaches apply() (a
  // YAML loader): counted as sluice_config_reloads_total{result="rejected"}.
  void count_rejected_config();
  // True while serving: a configuration applied and not stopping (the
  // admin /ready).
  bool ready() const;
  // Log rotation (SIGUSR1): the lines logged so far are written to every
  // access-log file of the current configuration (the call waits for that),
  // then each is closed and opened again by path, so a file renamed away is
  // left complete. Thread-safe.
  void reopen_access_logs();
  // Writes every access-log line logged so far, without waiting for the
  // flush interval (telemetry.hpp); returns when they are in the files.
  // Thread-safe.
  void flush_access_logs();
  // Span export counters (telemetry.hpp), every worker's summed.
  // Thread-safe; relaxed reads of per-worker counters.
  TraceExportStats trace_export_stats() const;

  // Bound port of a listener (after apply), 0 if unknown.
  uint16_t port(std::string_view listener) const;
  // The snapshot new requests are served by (null before the first apply):
  // for config dumps, and a rollback point to apply() again later.
  std::shared_ptr<const Snapshot> snapshot() const;
  // Runtime state of an upstream (empty name if unknown).
  UpstreamView upstream(std::string_view name) const;
  // sluice::explain against the current snapshot.
  Explanation explain(std::string_view listener, const RequestHead& request,
                      const ExplainInput& input = {}) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
