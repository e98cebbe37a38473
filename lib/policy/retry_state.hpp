#pragma once
// What happens after one upstream attempt of a request: answer, retry, or
// resend for free on a fresh connection. Pure (no I/O, no clock, no
// counters), so every rule is unit-tested without sockets; the session does
// the I/O and the retry budget (connectionPool.http.maxRetries).

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "policy/policy.hpp"

namespace sluice::policy {

// The request body, as far as sending it again goes.
struct BodyState {
  bool present = false;     // the request has a body
  bool consumed = false;    // some of it was taken from the client already
  bool complete = false;    // all of it was read from the client
  bool replayable = false;  // and all of it is in the replay buffer
  // The whole request can go out again from its first byte: nothing of the
  // body was taken yet, or all of it is buffered.
  bool resendable() const { return !present || !consumed || (complete && replayable); }
};

// How an attempt ended, beyond its outcome.
struct AttemptEnd {
  AttemptOutcome outcome = AttemptOutcome::response;
  uint16_t status = 0;
  bool reused = false;        // on a pooled connection
  bool got_response = false;  // some response byte arrived
  bool nothing_sent = false;  // the first write failed before any byte left
  // A grpc-status in the response head (a trailers-only response): Envoy
  // retries on gRPC codes seen there only, never on trailers.
  std::optional<uint32_t> grpc_status;
  // An HTTP/2 upstream refused the stream unprocessed (REFUSED_STREAM or
  // past a GOAWAY): retried under retryOn refused-stream.
  bool refused_stream = false;
};

class RetryState {
 public:
  enum class Next {
    respond,      // the attempt's result is the answer
    retry,        // another attempt, if the retry budget admits it
    free_resend,  // the same attempt again on a fresh connection
  };
  struct Verdict {
    Next next = Next::respond;
    // Why a retry the policy wanted did not happen, for the logs.
    std::string_view details;
    // The policy would retry this outcome but its attempts are used up
    // (Envoy's URX).
    bool exhausted = false;
  };

  explicit RetryState(const CompiledRetry& policy) : policy_(policy) {}

  // After attempt `attempt` (0 for the first request) ended as `end`.
  Verdict after(uint32_t attempt, const AttemptEnd& end, const BodyState& body);

  // Endpoints tried so far (the first few; enough to avoid them).
  void record(int64_t endpoint) {
    if (tried_count_ < tried_.size()) tried_[tried_count_++] = endpoint;
  }
  void forget_last() {
    if (tried_count_ > 0) --tried_count_;
  }
  std::span<const int64_t> tried() const { return {tried_.data(), tried_count_}; }
  const CompiledRetry& policy() const { return policy_; }

 private:
  const CompiledRetry& policy_;
  std::array<int64_t, 8> tried_{};
  size_t tried_count_ = 0;
  bool free_resend_used_ = false;
};

}  // namespace sluice::policy
