// The retry decision after each upstream attempt, without sockets.

#include <doctest/doctest.h>

#include "policy/retry_state.hpp"

namespace test_retry_state {

using sluice::AttemptOutcome;
using sluice::policy::AttemptEnd;
using sluice::policy::BodyState;
using sluice::policy::CompiledRetry;
using sluice::policy::RetryState;
using Next = RetryState::Next;

namespace {

CompiledRetry policy(uint32_t attempts, std::string_view retry_on = "5xx") {
  CompiledRetry r;
  r.attempts = attempts;
  auto on = sluice::policy::parse_retry_on(retry_on);
  REQUIRE(on.ok());
  r.on = *on;
  return r;
}

AttemptEnd response(uint16_t status) {
  return {.outcome = AttemptOutcome::response, .status = status};
}

AttemptEnd stale_reset(bool nothing_sent = false) {
  return {.outcome = AttemptOutcome::reset, .reused = true, .nothing_sent = nothing_sent};
}

constexpr BodyState kNoBody{};
constexpr BodyState kBuffered{
    .present = true, .consumed = true, .complete = true, .replayable = true};
constexpr BodyState kOverLimit{
    .present = true, .consumed = true, .complete = true, .replayable = false};
constexpr BodyState kHalfSent{
    .present = true, .consumed = true, .complete = false, .replayable = true};
constexpr BodyState kUntouched{
    .present = true, .consumed = false, .complete = false, .replayable = true};

}  // namespace

TEST_CASE("retry: a retriable answer is retried while attempts remain") {
  CompiledRetry p = policy(2);
  RetryState s(p);
  CHECK(s.after(0, response(503), kNoBody).next == Next::retry);
  CHECK(s.after(1, response(503), kNoBody).next == Next::retry);
  auto used_up = s.after(2, response(503), kNoBody);  // 1 + 2 attempts used
  CHECK(used_up.next == Next::respond);
  CHECK(used_up.exhausted);  // Envoy's URX
  CHECK_FALSE(s.after(0, response(404), kNoBody).exhausted);
  CompiledRetry off = policy(0);
  CHECK_FALSE(RetryState(off).after(0, response(503), kNoBody).exhausted);
  CHECK(s.after(0, response(200), kNoBody).next == Next::respond);
  CHECK(s.after(0, response(404), kNoBody).next == Next::respond);
}

TEST_CASE("retry: a body is retried only when all of it is buffered") {
  CompiledRetry p = policy(1);
  RetryState s(p);
  CHECK(s.after(0, response(503), kBuffered).next == Next::retry);
  auto v = s.after(0, response(503), kOverLimit);
  CHECK(v.next == Next::respond);
  CHECK(v.details == "retry_skipped_body_over_replay_buffer");
  // A write that failed mid-body never resends only the rest.
  CHECK(s.after(0, {.outcome = AttemptOutcome::reset}, kHalfSent).next == Next::respond);
}

TEST_CASE("retry: the free resend on a stale pooled connection, once, for whole requests") {
  CompiledRetry p = policy(1, "connect-failure");  // resets are not retriable here
  RetryState s(p);
  CHECK(s.after(0, stale_reset(), kNoBody).next == Next::free_resend);
  CHECK(s.after(0, stale_reset(), kNoBody).next == Next::respond);  // used up

  RetryState t(p);
  CHECK(t.after(0, stale_reset(), kHalfSent).next == Next::respond);
  CHECK(t.after(0, stale_reset(), kUntouched).next == Next::free_resend);

  RetryState u(p);
  AttemptEnd answered = stale_reset();
  answered.got_response = true;  // the upstream had started answering
  CHECK(u.after(0, answered, kNoBody).next == Next::respond);
  AttemptEnd fresh = stale_reset();
  fresh.reused = false;  // a new connection that failed is no stale pool entry
  CHECK(u.after(0, fresh, kNoBody).next == Next::respond);
}

TEST_CASE("retry: with retries off only a request that provably never left is resent") {
  CompiledRetry p = policy(0);
  RetryState s(p);
  CHECK(s.after(0, stale_reset(false), kNoBody).next == Next::respond);
  RetryState t(p);
  CHECK(t.after(0, stale_reset(true), kNoBody).next == Next::free_resend);
}

TEST_CASE("retry: a downstream cancel is never retried") {
  CompiledRetry p = policy(3, "5xx,reset,connect-failure");
  RetryState s(p);
  CHECK(s.after(0, {.outcome = AttemptOutcome::downstream_cancelled}, kNoBody).next ==
        Next::respond);
}

TEST_CASE("retry: tried endpoints are remembered, the free resend's is forgotten") {
  CompiledRetry p = policy(2);
  RetryState s(p);
  s.record(4);
  s.record(7);
  CHECK(s.tried().size() == 2);
  s.forget_last();
  REQUIRE(s.tried().size() == 1);
  CHECK(s.tried()[0] == 4);
  for (int i = 0; i < 20; ++i) s.record(i);  // bounded
  CHECK(s.tried().size() == 8);
}

TEST_CASE(
    "retry: a refused HTTP/2 stream is resent free once, then retried under refused-stream only") {
  AttemptEnd refused{.outcome = AttemptOutcome::reset,
                     .reused = true,
                     .nothing_sent = true,
                     .refused_stream = true};
  CompiledRetry p = policy(2, "refused-stream");
  RetryState s(p);
  CHECK(s.after(0, refused, kNoBody).next == Next::free_resend);
  CHECK(s.after(0, refused, kNoBody).next == Next::retry);
  CompiledRetry other = policy(2, "connect-failure");
  RetryState t(other);
  CHECK(t.after(0, refused, kNoBody).next == Next::free_resend);
  CHECK(t.after(0, refused, kNoBody).next == Next::respond);
}

}  // namespace test_retry_state
