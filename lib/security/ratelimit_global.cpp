#include "security/ratelimit_global.hpp"

#include <map>
#include <set>
#include <utility>

#include "security/ratelimit_local.hpp"

namespace sluice::security {

namespace {

// One level of a domain's descriptor tree, keyed as the service keys it:
// "key" or "key_value".
struct Node {
  std::optional<MatchedLimit> limit;
  bool detailed_metric = false;
  std::map<std::string, std::unique_ptr<Node>, std::less<>> children;
  std::vector<std::string> wildcards;  // children whose key ends in '*', in file order
};

void load(Node& level, const std::vector<RateLimitServiceConfig::DescriptorConfig>& list,
          const std::string& parent_key) {
  for (const auto& d : list) {
    std::string key = d.value.empty() ? d.key : d.key + "_" + d.value;
    auto node = std::make_unique<Node>();
    std::string full = parent_key + key;
    if (d.rate_limit) {
      MatchedLimit m;
      m.unit = d.rate_limit->unit;
      m.requests_per_unit = d.rate_limit->requests_per_unit;
      m.unlimited = d.rate_limit->unlimited;
      m.shadow_mode = d.shadow_mode;
      m.name = d.rate_limit->name;
      m.replaces = d.rate_limit->replaces;
      m.stat_key = full;
      node->limit = std::move(m);
    }
    node->detailed_metric = d.detailed_metric;
    load(*node, d.descriptors, full + ".");
    if (key.back() == '*') level.wildcards.push_back(key);
    level.children.emplace(std::move(key), std::move(node));
  }
}

}  // namespace

class CompiledServiceConfig {
 public:
  std::map<std::string, Node, std::less<>> domains;
};

RateLimitService::RateLimitService() : impl_(std::make_unique<CompiledServiceConfig>()) {}
RateLimitService::~RateLimitService() = default;
RateLimitService::RateLimitService(RateLimitService&&) noexcept = default;
RateLimitService& RateLimitService::operator=(RateLimitService&&) noexcept = default;

Result<RateLimitService> RateLimitService::compile(
    const std::vector<RateLimitServiceConfig>& configs, std::string_view object) {
  RateLimitService out;
  for (size_t i = 0; i < configs.size(); ++i) {
    const RateLimitServiceConfig& c = configs[i];
    if (Status s = validate(c, object); !s) return s.error();
    auto [it, inserted] = out.impl_->domains.try_emplace(c.domain);
    if (!inserted)
      return Error{std::string(object), "domain",
                   "duplicate domain '" + c.domain + "' in config file"};
    load(it->second, c.descriptors, c.domain + ".");
  }
  return out;
}

std::optional<MatchedLimit> RateLimitService::find(std::string_view domain,
                                                   const Descriptor& descriptor) const {
  auto d = impl_->domains.find(domain);
  if (d == impl_->domains.end()) return std::nullopt;
  const Node* level = &d->second;
  const Node* found = nullptr;  // the node whose limit applies
  std::string key;
  for (size_t i = 0; i < descriptor.size(); ++i) {
    const DescriptorEntry& entry = descriptor[i];
    key.assign(entry.key).append("_").append(entry.value);
    const Node* next = nullptr;
    if (auto it = level->children.find(key); it != level->children.end()) next = it->second.get();
    if (next == nullptr) {
      for (const std::string& w : level->wildcards) {
        if (std::string_view(key).starts_with(std::string_view(w).substr(0, w.size() - 1))) {
          next = level->children.find(w)->second.get();
          break;
        }
      }
    }
    if (next == nullptr) {
      if (auto it = level->children.find(entry.key); it != level->children.end())
        next = it->second.get();
    }
    // A limit counts only when the descriptor ends at its level.
    if (next != nullptr && next->limit && i + 1 == descriptor.size()) found = next;
    if (next != nullptr && !next->children.empty()) {
      level = next;
      continue;
    }
    if (found != nullptr) {
      MatchedLimit m = *found->limit;
      if (found->detailed_metric) m.stat_key += "_" + entry.value;
      return m;
    }
    return std::nullopt;
  }
  if (found != nullptr) return *found->limit;
  return std::nullopt;
}

std::string cache_key(std::string_view prefix, std::string_view domain,
                      const Descriptor& descriptor, RateLimitServiceConfig::Unit unit,
                      int64_t unix_seconds) {
  std::string key;
  key.reserve(prefix.size() + domain.size() + 32);
  key.append(prefix).append(domain).push_back('_');
  for (const DescriptorEntry& e : descriptor) {
    key.append(e.key).push_back('_');
    key.append(e.value).push_back('_');
  }
  int64_t window = unit_seconds(unit);
  int64_t start = window > 0 ? (unix_seconds / window) * window : unix_seconds;
  key.append(std::to_string(start));
  return key;
}

std::vector<RedisCommand> GlobalPlan::commands(uint32_t hits) const {
  std::vector<RedisCommand> out;
  out.reserve(counters.size() * 2);
  for (const Counter& c : counters) {
    out.push_back({"INCRBY", c.key, std::to_string(hits)});
    out.push_back({"EXPIRE", c.key, std::to_string(c.expire_seconds)});
  }
  return out;
}

Result<std::shared_ptr<GlobalRateLimiter>> GlobalRateLimiter::create(
    const GlobalRateLimit& config, const std::vector<RateLimitServiceConfig>& service,
    std::string_view object, std::string key_prefix) {
  if (Status s = validate(config, object); !s) return s.error();
  auto compiled = RateLimitService::compile(service, object);
  if (!compiled) return compiled.error();
  std::shared_ptr<GlobalRateLimiter> out(new GlobalRateLimiter());
  out->config_ = config;
  if (out->config_.rate_limited_status < 400) out->config_.rate_limited_status = 429;
  if (out->config_.status_on_error < 400) out->config_.status_on_error = 500;
  out->service_ = std::move(compiled).value();
  out->key_prefix_ = std::move(key_prefix);
  return out;
}

GlobalPlan GlobalRateLimiter::plan(std::span<const Descriptor> descriptors,
                                   std::chrono::system_clock::time_point now) const {
  GlobalPlan out;
  int64_t unix_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  std::vector<std::optional<MatchedLimit>> limits;
  limits.reserve(descriptors.size());
  std::set<std::string, std::less<>> replaced;
  for (const Descriptor& d : descriptors) {
    limits.push_back(service_.find(config_.domain, d));
    const auto& l = limits.back();
    if (l && !l->unlimited)
      for (const std::string& name : l->replaces) replaced.insert(name);
  }
  for (size_t i = 0; i < descriptors.size(); ++i) {
    const auto& l = limits[i];
    if (!l || l->unlimited) continue;  // unlimited: answered here, Redis never asked
    if (!l->name.empty() && replaced.contains(l->name)) continue;
    GlobalPlan::Counter c;
    c.key = cache_key(key_prefix_, config_.domain, descriptors[i], l->unit, unix_seconds);
    c.requests_per_unit = l->requests_per_unit;
    c.expire_seconds = unit_seconds(l->unit);
    c.shadow_mode = l->shadow_mode;
    c.stat_key = l->stat_key;
    out.counters.push_back(std::move(c));
  }
  return out;
}

Response GlobalRateLimiter::over_limit_response() const {
  Response r;
  r.status = config_.rate_limited_status;
  if (!config_.disable_x_envoy_ratelimited_header) r.headers.add("x-envoy-ratelimited", "true");
  return r;
}

GlobalDecision GlobalRateLimiter::judge(const GlobalPlan& plan, std::span<const int64_t> counts,
                                        std::mt19937_64& rng) const {
  GlobalDecision d;
  bool over = false;
  for (size_t i = 0; i < plan.counters.size() && i < counts.size(); ++i) {
    if (counts[i] <= static_cast<int64_t>(plan.counters[i].requests_per_unit)) continue;
    if (plan.counters[i].shadow_mode) {
      stats_.shadow_mode.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    over = true;
  }
  if (!over) {
    stats_.ok.fetch_add(1, std::memory_order_relaxed);
    d.outcome = GlobalDecision::Outcome::ok;
    return d;
  }
  stats_.over_limit.fetch_add(1, std::memory_order_relaxed);
  if (!percent_enabled(config_.filter_enforced, rng)) {
    d.outcome = GlobalDecision::Outcome::over_limit_not_enforced;
    return d;
  }
  d.outcome = GlobalDecision::Outcome::over_limit;
  d.response = over_limit_response();
  return d;
}

GlobalDecision GlobalRateLimiter::failed(std::string why) const {
  GlobalDecision d;
  d.error = std::move(why);
  stats_.error.fetch_add(1, std::memory_order_relaxed);
  if (!config_.failure_mode_deny) {
    stats_.failure_mode_allowed.fetch_add(1, std::memory_order_relaxed);
    d.outcome = GlobalDecision::Outcome::error_allowed;
    return d;
  }
  d.outcome = GlobalDecision::Outcome::error_denied;
  Response r;
  r.status = config_.status_on_error;
  d.response = std::move(r);
  return d;
}

asio::awaitable<GlobalDecision> GlobalRateLimiter::check(RedisClient& redis,
                                                         std::vector<Descriptor> descriptors,
                                                         std::chrono::system_clock::time_point now,
                                                         std::mt19937_64& rng) const {
  GlobalPlan p = plan(descriptors, now);
  if (p.counters.empty()) {
    GlobalDecision nothing_to_count;  // named: GCC 12 and braced temporaries in coroutines
    co_return nothing_to_count;
  }
  std::vector<RedisCommand> commands = p.commands();
  RedisReplies replies = co_await redis.execute(std::move(commands), config_.timeout);
  if (!replies) co_return failed(replies.error().to_string());
  const std::vector<RedisReply>& r = replies.value();
  if (r.size() != p.counters.size() * 2) co_return failed("Redis: wrong number of replies");
  std::vector<int64_t> counts;
  counts.reserve(p.counters.size());
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i].type == RedisReply::Type::error) co_return failed("Redis: " + r[i].str);
    if (r[i].type != RedisReply::Type::integer) co_return failed("Redis: unexpected reply type");
    if (i % 2 == 0) counts.push_back(r[i].integer);  // INCRBY's count; EXPIRE's 1 is not needed
  }
  co_return judge(p, counts, rng);
}

}  // namespace sluice::security
