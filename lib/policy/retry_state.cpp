#include "policy/retry_state.hpp"

namespace sluice::policy {

RetryState::Verdict RetryState::after(uint32_t attempt, const AttemptEnd& end,
                                      const BodyState& body) {
  // A pooled connection the upstream closed as we picked it: one free
  // resend on a fresh connection, outside the retry policy. Only when the
  // whole request can go out again, and, with retries off, only when
  // provably nothing reached the upstream (it may have acted on it).
  if (end.outcome == AttemptOutcome::reset && end.reused && !end.got_response &&
      !free_resend_used_ && body.resendable() && (end.nothing_sent || policy_.attempts > 0)) {
    free_resend_used_ = true;
    return {Next::free_resend, {}};
  }
  bool retriable = policy_.retriable(end.outcome, end.status, end.grpc_status) ||
                   (end.refused_stream && policy_.on.refused_stream);
  if (!retriable) return {};
  if (attempt >= policy_.attempts) return {Next::respond, {}, policy_.attempts > 0};
  // A retry resends all of the body, so all of it must have been read and
  // buffered.
  if (body.present && !body.replayable)
    return {Next::respond, "retry_skipped_body_over_replay_buffer"};
  if (body.present && !body.complete) return {};
  return {Next::retry, {}};
}

}  // namespace sluice::policy
