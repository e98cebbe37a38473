#pragma once
// HTTP/2 upstreams: the downstream adapter (lib/proxy/h2_session) mirrored.
// A lease for an HTTP/2 upstream returns one end of a socket pair; the
// session writes its request there as HTTP/1.1 and reads an HTTP/1.1
// response back, as from any upstream, so retries, timeouts, outlier
// detection and response flags work unchanged. Behind the pair, this
// per-worker multiplexer carries the request as one stream of a shared h2c
// or h2 (TLS, ALPN "h2") connection per endpoint pool key, and writes the
// response back chunked, trailers as chunked trailers.
//
// Limits: a connection takes at most min(max_concurrent_streams, the
// peer's SETTINGS) streams at once and max_requests_per_connection over its
// life, then a new one opens (within max_connections); max_requests bounds
// the upstream's streams across workers (beyond it: overflow, UO). After a
// GOAWAY a connection takes no new stream; those it had finish. A
// connection with no stream closes after idle_timeout (the gateway's clock).
//
// Failures read as HTTP/1 ones: a failed connect is a failed lease; a stream
// reset or a connection lost before the response head closes the pair with
// nothing written (a reset before the response); a stream the upstream
// refused unprocessed is also marked so in UpstreamConnection::h2.
// Buffering: a stream's response is read from the upstream only as far as
// its flow-control window (64 KiB), credited back once written to the pair;
// its request body waits in the codec at most kMaxPendingRequest bytes.

#include <asio/awaitable.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "upstream/connect.hpp"

namespace sluice {

struct CompiledUpstream;
struct ConnectionSlot;
class UpstreamContext;

class H2Pool {
 public:
  H2Pool();
  ~H2Pool();
  H2Pool(const H2Pool&) = delete;
  H2Pool& operator=(const H2Pool&) = delete;

  // A stream to `endpoint` (see above). `slot` bounds a connect this lease
  // starts (Timeout::upstream_connect). Not `limited` (health probes): the
  // stream takes no max_requests place and rides connections kept apart
  // from traffic's, opened outside max_connections, so a full pool cannot
  // make its endpoints look dead and probes never take traffic's places.
  asio::awaitable<Lease> lease(UpstreamContext& ctx, ConnectionSlot& slot,
                               const CompiledUpstream& upstream, int64_t endpoint,
                               bool limited = true);

  // Connections open or opening (tests and views).
  size_t connection_count() const;

  struct Conn;

 private:
  std::unordered_map<std::string, std::vector<std::shared_ptr<Conn>>> conns_;
};

}  // namespace sluice
