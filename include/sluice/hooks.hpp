#pragma once
// Extension hooks for host programs, one per phase of a request (the model is
// Pingora's ProxyHttp). Every hook has a no-op default; override what you
// need.
//
// Threads. Every hook of a request runs on the worker thread that owns its
// connection (on a host io_context: the thread running it), one hook at a
// time for that request. A Hooks given as GatewayOptions::hooks is shared by
// all workers: its hooks run on several threads at once and must be
// thread-safe. One made per worker by GatewayOptions::hooks_factory is only
// ever called from that worker's thread, so it needs no locks.
//
// Order for a proxied request: on_request, upstream_peer (before each
// attempt, retries included), on_request_body (per chunk, as the body
// streams upstream), on_response_headers, on_response_body (per chunk, as
// the response streams down), on_log. When the gateway answers itself
// instead (no route, no healthy upstream, connect failure, timeout, ...),
// fail_to_proxy runs before that answer's on_response_headers.

#include <any>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sluice/request.hpp"
#include "sluice/response_flags.hpp"

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
  ResponseFlags response_flags;            // Envoy's: to_string gives "UF", "URX,UF", "-"
  std::string_view response_code_details;  // why, when the gateway decided (Envoy's details)
  uint32_t attempts = 0;                   // upstream requests made (retries + 1)
  uint64_t bytes_received = 0;             // request body bytes from downstream
  uint64_t bytes_sent = 0;                 // response body bytes to downstream
  std::chrono::microseconds duration{0};
  std::any user;  // free for host code
};

class Snapshot;  // compiled GatewayConfig (gateway.hpp)

// The upstream and endpoint one attempt is about to use: the load
// balancer's pick, which upstream_peer may keep or change. Every choice is
// then served by the one upstream-connection layer (that upstream's
// connection limits, TLS origination and pool); none bypasses it.
class PeerChoice {
 public:
  // Made by the gateway; `upstream` indexes GatewayConfig::upstreams and
  // `endpoint` that upstream's endpoints (-1: none).
  PeerChoice(const Snapshot& snapshot, size_t upstream, int64_t endpoint)
      : snapshot_(&snapshot), upstream_(upstream), endpoint_(endpoint) {}

  std::string_view upstream() const;                   // its name
  size_t upstream_index() const { return upstream_; }  // into GatewayConfig::upstreams
  // Index of the endpoint among upstream()'s endpoints; -1 when the load
  // balancer found none available (all ejected or unhealthy).
  int64_t endpoint() const { return endpoint_; }
  std::string_view endpoint_key() const;  // "ip:port"; empty when none

  // The chosen upstream's endpoints, for picking one by index.
  size_t endpoint_count() const;
  std::string_view endpoint_key(size_t index) const;

  // Another endpoint of the chosen upstream, by index or by "ip:port" key
  // (IPv6 in brackets). Health and ejections do not veto a host's choice.
  // False, and nothing changes, when there is no such endpoint.
  bool use_endpoint(size_t index);
  bool use_endpoint(std::string_view key);
  // Another configured upstream (by name): its load balancer picks the
  // endpoint once the hook returns, unless use_endpoint names one after
  // this call. False, and nothing changes, when there is no such upstream.
  bool use_upstream(std::string_view name);

 private:
  const Snapshot* snapshot_;
  size_t upstream_;
  int64_t endpoint_;
};

namespace detail {
struct BodyHookProbe;
}

// A piece of a streamed body as a body hook sees it. The hook may change
// `data` freely: its bytes are what goes on, and nothing else is buffered.
// While a body hook is installed, bodies in its direction are sent chunked
// (a Content-Length message included; a response to an HTTP/1.0 client ends
// at close instead), so a hook may change their length.
class BodyChunk {
 public:
  std::string data;
  // The last call for this body; `data` may still hold its last bytes, and
  // the hook may append some. Not made when the body ends in an error.
  bool end_of_stream = false;

 private:
  friend class Hooks;
  friend struct detail::BodyHookProbe;
  bool unhandled_ = false;  // set by Hooks' defaults: the worker stops calling
};

// An answer the gateway is about to make itself because proxying failed
// (Pingora's fail_to_proxy).
struct ProxyError {
  enum class Kind {
    no_route,                   // 404 NR
    no_healthy_upstream,        // 503 UH
    connect_failure,            // 503 UF (after retries)
    overflow,                   // 503 UO: circuit breaking, x-envoy-overloaded
    upstream_timeout,           // 504 UT: route or per-try timeout
    upstream_reset,             // 502 UC: reset before a response
    upstream_protocol_error,    // 502 UPE: a response that does not parse
    downstream_timeout,         // 408: request, stream idle or duration timeout
    downstream_cancelled,       // 503 DC: the client went away (it rarely sees this)
    downstream_protocol_error,  // 400: a request body that does not parse
  };
  enum class Source { downstream, upstream, internal };

  Kind kind;
  ResponseFlags flags;
  std::string_view details;  // Envoy's response code details, e.g. "upstream_connect_failure"
  const Response& response;  // what will be sent unless the hook replaces it

  // Which side failed (Pingora's ErrorSource).
  Source source() const;
};

class Hooks {
 public:
  virtual ~Hooks() = default;

  // After the request head is read, before routing. Return a response to
  // answer directly without routing.
  virtual std::optional<Response> on_request(RequestContext&) { return std::nullopt; }

  // After the load balancer's pick, before each attempt connects (a retry
  // asks again; RequestContext::attempts counts the earlier ones). Keep or
  // change `peer`; return a response to refuse: it is sent instead, and the
  // request goes nowhere. The request head is fixed after the first call:
  // edits a retry's call makes to it are not sent.
  virtual std::optional<Response> upstream_peer(RequestContext&, PeerChoice&) {
    return std::nullopt;
  }

  // Each chunk of a request body as it streams upstream, then once with
  // end_of_stream. Runs once per chunk even when the request is retried or
  // mirrored (those resend the bytes the hook left). Not made for a request
  // without a body. May be called once with an empty chunk that is not the
  // end: treat it as nothing. Do not call this default from an override.
  virtual void on_request_body(RequestContext&, BodyChunk& chunk) { chunk.unhandled_ = true; }

  // Before response headers go downstream (upstream's or the gateway's own).
  virtual void on_response_headers(RequestContext&, ResponseHead&) {}

  // Each chunk of an upstream's response body as it streams downstream,
  // then once with end_of_stream; not for the gateway's own answers nor
  // bodyless responses (HEAD, 204, 304). Same rules as on_request_body.
  virtual void on_response_body(RequestContext&, BodyChunk& chunk) { chunk.unhandled_ = true; }

  // The gateway is about to answer `error` itself. Return a response to
  // send instead (status, headers, body). The log keeps the error's flags.
  virtual std::optional<Response> fail_to_proxy(RequestContext&, const ProxyError&) {
    return std::nullopt;
  }

  // Once the exchange is over, successful or not.
  virtual void on_log(const RequestContext&) {}
};

}  // namespace sluice
