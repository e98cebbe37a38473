#pragma once
// Extension hooks for host programs, one per phase of a request (the model is
// Pingora's ProxyHttp). Every hook has a no-op default. Hooks run on worker
// threads, possibly several at once: they must be thread-safe.

#include <any>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/request.hpp"

namespace sluice {

// Per-request state handed to every hook of one request. The string views
// stay valid until on_log returns; copy what must outlive the request.
struct RequestContext {
  RequestHead& request;             // hooks may edit it before it goes upstream
  std::string_view client_address;  // "ip:port" of the downstream peer
  std::string_view listener;        // ListenerConfig::name
  std::string_view sni;             // TLS server name; empty on plain connections
  // Verified client certificate identity (mutual TLS): first URI SAN, else
  // first DNS SAN, else the subject. Empty without a client certificate.
  std::string_view peer_identity;
  std::string_view virtual_host;           // empty until routed
  std::string_view route;                  // route name, empty until routed
  std::string_view upstream;               // upstream name, empty until chosen
  std::string_view endpoint;               // "ip:port", empty until chosen
  uint16_t response_status = 0;            // final status sent downstream
  std::string_view response_flags = "-";   // Envoy-style: NR, UF, UH, UC, UT, DC; "-" none
  std::string_view response_code_details;  // why, when the gateway decided (Envoy's details)
  uint32_t attempts = 0;                   // upstream requests made (retries + 1)
  uint64_t bytes_received = 0;             // request body bytes from downstream
  uint64_t bytes_sent = 0;                 // response body bytes to downstream
  std::chrono::microseconds duration{0};
  std::any user;  // free for host code
};

class Hooks {
 public:
  virtual ~Hooks() = default;
  // After the request head is read, before routing. Return a response to
  // answer directly without routing.
  virtual std::optional<Response> on_request(RequestContext&) { return std::nullopt; }
  // After the route and endpoint are chosen, before the upstream request is sent.
  // Return a response to answer directly instead.
  virtual std::optional<Response> on_upstream_chosen(RequestContext&) { return std::nullopt; }
  // Before response headers go downstream (upstream's or the gateway's own).
  virtual void on_response_headers(RequestContext&, ResponseHead&) {}
  // Once the exchange is over, successful or not.
  virtual void on_log(const RequestContext&) {}
};

}  // namespace sluice
