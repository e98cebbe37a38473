#include "proxy/host.hpp"

#include "proxy/park.hpp"

namespace sluice {

SessionHost::~SessionHost() {
  if (parked_) parked_->shutdown();
}

ParkedConnections& SessionHost::parked() {
  if (!parked_) parked_ = std::make_shared<ParkedConnections>(*this);
  return *parked_;
}

void SessionHost::make_request_id(char (&out)[36]) {
  // Version 4 and variant bits per RFC 9562; hex written by hand (hot path).
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = rng()(), b = rng()();
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  int pos = 0;
  auto put = [&](uint64_t v, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) out[pos++] = kHex[(v >> (4 * i)) & 0xf];
  };
  put(a >> 32, 8);
  out[pos++] = '-';
  put(a >> 16, 4);
  out[pos++] = '-';
  put(a, 4);
  out[pos++] = '-';
  put(b >> 48, 4);
  out[pos++] = '-';
  put(b, 12);
}

void SessionHost::log_formatted(LogLevel level, fmt::string_view format, fmt::format_args args) {
  logger_->log(level, fmt::vformat(format, args));
}

std::shared_ptr<security::RedisClient> SessionHost::redis(const CompiledRateLimits& rate_limits) {
  if (!rate_limits.global) return nullptr;
  const auto& o = redis_ ? redis_->options() : security::RedisOptions{};
  if (!redis_ || o.host != rate_limits.redis_host || o.port != rate_limits.redis_port) {
    security::RedisOptions options;
    options.host = rate_limits.redis_host;
    options.port = rate_limits.redis_port;
    redis_ = std::make_shared<security::RedisClient>(context(), std::move(options));
  }
  return redis_;
}

bool SessionHost::body_hook(Body which, RequestContext& ctx) {
  if (!hooks_) return false;
  Known& known = body_hooks_[which == Body::request ? 0 : 1];
  if (known == Known::unknown) {
    BodyChunk probe;
    if (which == Body::request)
      hooks_->on_request_body(ctx, probe);
    else
      hooks_->on_response_body(ctx, probe);
    known = detail::BodyHookProbe::unhandled(probe) ? Known::no : Known::yes;
  }
  return known == Known::yes;
}

}  // namespace sluice
