#pragma once
// Upstream clusters: endpoints, subsets, load balancing, connection pooling.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/result.hpp"

namespace sluice {

using Labels = std::map<std::string, std::string>;

struct Endpoint {
  std::string address;  // IPv4 or IPv6 literal (DNS is resolved by the loader)
  uint16_t port = 0;
  Labels labels;
  uint32_t weight = 1;

  bool operator==(const Endpoint&) const = default;
};

struct Subset {
  std::string name;
  Labels labels;  // an endpoint belongs when it carries all of these
};

// Istio's loadBalancer.simple plus consistent hashing. Istio's default when a
// DestinationRule says nothing is least_request; the C++ default is the same.
enum class LoadBalancer { round_robin, least_request, random, passthrough, consistent_hash };

struct ConsistentHash {
  enum class Source { header, cookie, source_ip, query_parameter };
  enum class Algorithm { ring_hash, maglev };
  Source source = Source::header;
  std::string name;  // header, cookie or query parameter name
  // Cookie hashing: when the request lacks the cookie, the gateway generates
  // one and sets it on the response with this ttl and path.
  std::chrono::seconds cookie_ttl{0};
  std::string cookie_path;
  Algorithm algorithm = Algorithm::ring_hash;
  uint64_t minimum_ring_size = 1024;
  uint64_t maglev_table_size = 65537;  // must be prime
};

struct TcpKeepalive {
  uint32_t probes = 9;
  std::chrono::seconds time{7200};
  std::chrono::seconds interval{75};
};

// Istio connectionPool. The limits apply per upstream across all workers.
struct ConnectionPoolSettings {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds idle_timeout{3'600'000};
  uint32_t max_requests_per_connection = 0;  // 0: unlimited; 1: no keep-alive
  uint32_t max_idle_per_endpoint = 64;       // per worker
  uint32_t max_connections = 0xffffffffu;
  uint32_t max_pending_requests = 0xffffffffu;  // http1MaxPendingRequests
  uint32_t max_retries = 0xffffffffu;           // retries in flight at once
  // HTTP/2 upstreams only. max_requests: requests in flight across workers
  // (Istio http2MaxRequests, Envoy's max_requests); beyond it a request
  // overflows (503, UO) at once. max_concurrent_streams: streams per
  // connection (Istio maxConcurrentStreams), also capped by the upstream's
  // SETTINGS; when every connection is full a new one opens.
  uint32_t max_requests = 0xffffffffu;
  uint32_t max_concurrent_streams = 0xffffffffu;
  std::optional<TcpKeepalive> tcp_keepalive;
};

// Istio outlierDetection: passive ejection of misbehaving endpoints.
struct OutlierDetection {
  uint32_t consecutive_5xx = 5;             // 0: off
  uint32_t consecutive_gateway_errors = 0;  // 502/503/504 and connect failures; 0: off
  std::chrono::milliseconds interval{10'000};
  std::chrono::milliseconds base_ejection_time{30'000};  // times the number of ejections
  uint32_t max_ejection_percent = 10;
  uint32_t min_health_percent = 0;
};

// Active HTTP health checks (off unless set).
struct HealthCheck {
  std::string path = "/";
  std::string host;  // Host header; empty: the endpoint address
  std::chrono::milliseconds interval{10'000};
  std::chrono::milliseconds timeout{1'000};
  uint32_t healthy_threshold = 1;
  uint32_t unhealthy_threshold = 3;
};

// TLS origination to the upstream (Istio DestinationRule trafficPolicy.tls,
// modes SIMPLE and MUTUAL).
struct UpstreamTls {
  enum class Mode { simple, mutual };
  Mode mode = Mode::simple;
  std::string sni;                 // server name sent; empty: none (the loader sets the host)
  std::string ca_certificates;     // PEM; empty: the system trust store
  std::string client_certificate;  // PEM chain, leaf first; MUTUAL only
  std::string private_key;         // PEM; MUTUAL only
  // Accepted server SANs (exact). Empty: the certificate must be valid for sni.
  std::vector<std::string> subject_alt_names;
  bool insecure_skip_verify = false;  // no chain or name checks at all
  // Istio mesh mTLS (ISTIO_MUTUAL; the Istio loader fills this and the
  // certificate fields from --mesh-certs). Set: the server must present a
  // SPIFFE identity, a URI SAN spiffe://<spiffe_trust_domain>/ns/<ns>/sa/<sa>,
  // equal to one of subject_alt_names when that is not empty, else any in
  // the trust domain; the name in sni is not checked against the
  // certificate, and ALPN offers "istio" before "http/1.1".
  std::string spiffe_trust_domain;
};

// The trust domain of the first certificate of a PEM chain: the authority of
// its spiffe:// URI SAN ("cluster.local" for spiffe://cluster.local/ns/a/sa/b);
// empty when it has no SPIFFE URI. An error when no certificate parses.
Result<std::string> spiffe_trust_domain_of(std::string_view certificate_pem);

// The service an upstream stands for, as telemetry names it
// (destination_service, destination_service_name and
// destination_service_namespace). Empty host: the upstream's name, with an
// "unknown" namespace. The Istio loader fills it from the ServiceEntry.
struct ServiceIdentity {
  std::string host;  // FQDN, e.g. reviews.default.svc.cluster.local
  std::string name;  // e.g. reviews; empty: host
  std::string namespace_;
  bool operator==(const ServiceIdentity&) const = default;
};

// What the gateway speaks to the endpoints. http2: h2c with prior knowledge,
// or h2 by ALPN when `tls` is set. Requests are multiplexed as streams over
// few connections per worker and endpoint (pool.max_concurrent_streams,
// pool.max_requests); max_requests_per_connection counts streams and
// idle_timeout applies to a connection with no stream open.
enum class UpstreamProtocol { http1, http2 };

struct UpstreamConfig {
  std::string name;
  ServiceIdentity service;
  std::vector<Endpoint> endpoints;
  std::vector<Subset> subsets;
  LoadBalancer load_balancer = LoadBalancer::least_request;
  std::optional<ConsistentHash> consistent_hash;  // with LoadBalancer::consistent_hash
  std::chrono::seconds warmup{0};                 // slow start for new endpoints (RR, LR)
  ConnectionPoolSettings pool;
  std::optional<OutlierDetection> outlier_detection;
  std::optional<HealthCheck> health_check;
  std::optional<UpstreamTls> tls;  // pooled and reused like plain connections
  UpstreamProtocol protocol = UpstreamProtocol::http1;
};

// A point-in-time view of one upstream, for tests and admin pages.
struct UpstreamView {
  struct EndpointView {
    std::string address;   // "ip:port"
    bool healthy = true;   // active health checks
    bool ejected = false;  // outlier detection
    uint32_t ejections = 0;
    uint64_t active_requests = 0;
    uint64_t connections = 0;  // open, across workers
  };
  std::string name;
  std::vector<EndpointView> endpoints;
  uint64_t active_requests = 0;
  uint64_t pending_requests = 0;
  uint64_t connections = 0;
  uint64_t overflows = 0;        // requests refused by circuit breaking (UO)
  uint64_t retry_overflows = 0;  // retries refused by max_retries
  uint64_t requests = 0;         // attempts sent (retries included)
  uint64_t connect_failures = 0;
  uint64_t retries = 0;
};

}  // namespace sluice
