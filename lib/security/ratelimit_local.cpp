#include "security/ratelimit_local.hpp"

#include <algorithm>

#include "http/random.hpp"

namespace sluice::security {

namespace {

uint64_t pack(uint32_t index, uint32_t tokens) {
  return (static_cast<uint64_t>(index) << 32) | tokens;
}
uint32_t index_of(uint64_t state) {
  return static_cast<uint32_t>(state >> 32);
}
uint32_t tokens_of(uint64_t state) {
  return static_cast<uint32_t>(state);
}

uint64_t denominator_of(FractionalPercent::Denominator d) {
  switch (d) {
    case FractionalPercent::Denominator::hundred:
      return 100;
    case FractionalPercent::Denominator::ten_thousand:
      return 10'000;
    case FractionalPercent::Denominator::million:
      return 1'000'000;
  }
  return 100;
}

}  // namespace

bool percent_enabled(const FractionalPercent& p, std::mt19937_64& rng) {
  uint64_t denominator = denominator_of(p.denominator);
  if (p.numerator == 0) return false;
  if (p.numerator >= denominator) return true;
  return http::draw_below(rng, denominator) < p.numerator;
}

AtomicTokenBucket::AtomicTokenBucket(const TokenBucket& config, SteadyTime start)
    : state_(pack(0, config.max_tokens)),
      start_(start),
      interval_(config.fill_interval),
      max_tokens_(config.max_tokens),
      tokens_per_fill_(config.tokens_per_fill) {}

uint32_t AtomicTokenBucket::fill_index(SteadyTime now) const {
  if (now <= start_ || interval_.count() <= 0) return 0;
  // Modulo 2^32 on purpose: refilled() compares indexes by their difference.
  return static_cast<uint32_t>((now - start_) / interval_);
}

uint64_t AtomicTokenBucket::refilled(uint64_t state, uint32_t index) const {
  uint32_t stored = index_of(state);
  uint32_t fills = index - stored;  // modular
  // A difference past half the range is an index behind the stored one: a
  // worker whose clock read earlier than the one that last refilled.
  if (fills == 0 || fills > (1u << 31)) return state;
  uint64_t tokens = tokens_of(state) + static_cast<uint64_t>(fills) * tokens_per_fill_;
  return pack(index, static_cast<uint32_t>(std::min<uint64_t>(tokens, max_tokens_)));
}

bool AtomicTokenBucket::try_consume(SteadyTime now) {
  uint32_t index = fill_index(now);
  uint64_t seen = state_.load(std::memory_order_acquire);
  for (;;) {
    uint64_t next = refilled(seen, index);
    if (tokens_of(next) == 0) {
      // Still record the refill point if it moved, so later calls do not
      // count the same fills twice; losing this race is harmless.
      if (next != seen)
        state_.compare_exchange_weak(seen, next, std::memory_order_acq_rel,
                                     std::memory_order_acquire);
      return false;
    }
    uint64_t taken = next - 1;  // one token fewer, same index
    if (state_.compare_exchange_weak(seen, taken, std::memory_order_acq_rel,
                                     std::memory_order_acquire))
      return true;
  }
}

uint32_t AtomicTokenBucket::available(SteadyTime now) const {
  return tokens_of(refilled(state_.load(std::memory_order_acquire), fill_index(now)));
}

double AtomicTokenBucket::fill_rate() const {
  double seconds = std::chrono::duration<double>(interval_).count();
  return seconds > 0 ? tokens_per_fill_ / seconds : 0;
}

LocalRateLimiter::LocalRateLimiter(const LocalRateLimit& config, SteadyTime start)
    : config_(config) {
  if (config_.status < 400) config_.status = 429;
  if (config_.token_bucket)
    default_bucket_ = std::make_unique<AtomicTokenBucket>(*config_.token_bucket, start);
  for (const auto& d : config_.descriptors)
    descriptors_.push_back({&d, std::make_unique<AtomicTokenBucket>(d.token_bucket, start)});
}

Result<std::shared_ptr<LocalRateLimiter>> LocalRateLimiter::create(const LocalRateLimit& config,
                                                                   std::string_view object,
                                                                   SteadyTime start,
                                                                   bool per_route) {
  if (Status s = validate(config, object, per_route); !s) return s.error();
  return std::shared_ptr<LocalRateLimiter>(new LocalRateLimiter(config, start));
}

bool LocalRateLimiter::request_allowed(std::span<const Descriptor> descriptors, SteadyTime now) {
  // Envoy matches each request descriptor against the local descriptors
  // verbatim (all entries, in order); a local descriptor counts once.
  AtomicTokenBucket* matched_small[8];
  std::vector<AtomicTokenBucket*> matched_large;
  size_t matched = 0;
  auto push = [&](AtomicTokenBucket* b) {
    if (matched < std::size(matched_small)) {
      matched_small[matched] = b;
    } else {
      if (matched_large.empty())
        matched_large.assign(std::begin(matched_small), std::end(matched_small));
      matched_large.push_back(b);
    }
    ++matched;
  };
  for (const DescriptorBucket& d : descriptors_) {
    for (const Descriptor& request : descriptors) {
      if (request == d.config->entries) {
        push(d.bucket.get());
        break;
      }
    }
  }
  AtomicTokenBucket** first = matched_large.empty() ? matched_small : matched_large.data();
  // Strictest first, so that a refusal there leaves the others' tokens alone.
  std::stable_sort(first, first + matched,
                   [](const AtomicTokenBucket* a, const AtomicTokenBucket* b) {
                     return a->fill_rate() < b->fill_rate();
                   });
  for (size_t i = 0; i < matched; ++i)
    if (!first[i]->try_consume(now)) return false;
  if (matched > 0 && !config_.always_consume_default_token_bucket) return true;
  return default_bucket_ == nullptr || default_bucket_->try_consume(now);
}

LocalDecision LocalRateLimiter::check(std::span<const Descriptor> descriptors, SteadyTime now,
                                      std::mt19937_64& rng) {
  LocalDecision d;
  if (!percent_enabled(config_.filter_enabled, rng)) {
    d.outcome = LocalDecision::Outcome::not_enabled;
    return d;
  }
  stats_.enabled.fetch_add(1, std::memory_order_relaxed);
  std::span<const Descriptor> used =
      config_.descriptors.empty() ? std::span<const Descriptor>() : descriptors;
  if (request_allowed(used, now)) {
    stats_.ok.fetch_add(1, std::memory_order_relaxed);
    d.outcome = LocalDecision::Outcome::allowed;
    return d;
  }
  stats_.rate_limited.fetch_add(1, std::memory_order_relaxed);
  if (!percent_enabled(config_.filter_enforced, rng)) {
    d.outcome = LocalDecision::Outcome::limited_not_enforced;
    return d;
  }
  stats_.enforced.fetch_add(1, std::memory_order_relaxed);
  d.outcome = LocalDecision::Outcome::limited;
  d.response = limited_response();
  return d;
}

Response LocalRateLimiter::limited_response() const {
  Response r;
  r.status = config_.status;
  r.body = "local_rate_limited";
  r.headers.add("content-type", "text/plain");
  // The filter's documentation: "then sets the x-envoy-ratelimited response
  // header" (so that an Envoy in front does not retry the 429).
  r.headers.add("x-envoy-ratelimited", "true");
  apply_header_options(r.headers, config_.response_headers_to_add);
  return r;
}

}  // namespace sluice::security
