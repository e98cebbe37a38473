#include "upstream/balancer.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "http/random.hpp"
#include "http/tokens.hpp"
#include "upstream/hash.hpp"
#include "upstream/health.hpp"

namespace sluice {

namespace {

using http::trim;

std::optional<std::string_view> find_cookie(const Headers& headers, std::string_view name) {
  for (const auto& [h, value] : headers.entries()) {
    if (!http::iequals(h, "cookie")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = trim(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq != std::string_view::npos && trim(pair.substr(0, eq)) == name)
        return trim(pair.substr(eq + 1));
    }
  }
  return std::nullopt;
}

using http::draw_below;

}  // namespace

Balancer::Balancer() = default;
Balancer::~Balancer() = default;

Balancer::UpstreamRuntime& Balancer::runtime(const CompiledUpstream& upstream) {
  auto it = upstreams_.find(&upstream);
  if (it != upstreams_.end()) return it->second;
  UpstreamRuntime rt;
  // Without attached state (a snapshot compiled outside a Gateway) the
  // worker keeps a private one, so the algorithms still work.
  rt.cluster =
      upstream.state ? upstream.state : std::make_shared<ClusterState>(upstream.config.name);
  rt.endpoints = rt.cluster->resolve(upstream);
  return upstreams_.emplace(&upstream, std::move(rt)).first->second;
}

const std::shared_ptr<EndpointState>& Balancer::endpoint_state(const CompiledUpstream& upstream,
                                                               int64_t index) {
  return runtime(upstream).endpoints[static_cast<size_t>(index)];
}

double Balancer::weight_of(const CompiledUpstream& up, UpstreamRuntime& rt, uint32_t index,
                           TimePoint now) const {
  double w = up.endpoints[index].weight;
  auto lb = up.config.load_balancer;
  if (up.config.warmup.count() <= 0 ||
      (lb != LoadBalancer::round_robin && lb != LoadBalancer::least_request))
    return w;
  int64_t added = rt.endpoints[index]->added_at.load(std::memory_order_relaxed);
  if (added == EndpointState::kNever) return w;
  // Envoy's slow start: weight x max(minimum 10%, (elapsed / window)^(1 / aggression)),
  // aggression 1.0.
  int64_t window = std::chrono::duration_cast<TimePoint::duration>(up.config.warmup).count();
  int64_t elapsed = now.time_since_epoch().count() - added;
  if (elapsed >= window) return w;
  double f = elapsed <= 0 ? 0.0 : double(elapsed) / double(window);
  return w * std::max(0.1, f);
}

namespace {
// Clears the eligibility marks on the way out of pick (one pass each way).
struct Unmark {
  std::vector<uint8_t>& mark;
  const std::vector<uint32_t>& list;
  ~Unmark() {
    for (uint32_t i : list) mark[i] = 0;
  }
};
}  // namespace

void Balancer::collect_eligible(const CompiledUpstream& up, UpstreamRuntime& rt,
                                const EndpointSet& set, const PickRequest& in, TimePoint now) {
  const auto& m = set.members;
  // Eligible: healthy and not ejected. With none left (or fewer than
  // min_health_percent), Envoy's panic mode: every member is eligible.
  eligible_.clear();
  for (uint32_t i : m) {
    const EndpointState& e = *rt.endpoints[i];
    if (e.healthy.load(std::memory_order_relaxed) && !e.ejected(now)) eligible_.push_back(i);
  }
  const auto& od = up.config.outlier_detection;
  bool panic =
      eligible_.empty() || (od && od->min_health_percent > 0 &&
                            eligible_.size() * 100 < uint64_t(od->min_health_percent) * m.size());
  if (panic) eligible_.assign(m.begin(), m.end());
  // A retry avoids endpoints already tried while others remain.
  if (in.avoid_tried && !in.tried.empty() && eligible_.size() > 1) {
    auto tried = [&](uint32_t i) {
      return std::find(in.tried.begin(), in.tried.end(), int64_t(i)) != in.tried.end();
    };
    if (!std::all_of(eligible_.begin(), eligible_.end(), tried)) std::erase_if(eligible_, tried);
  }
}

template <typename Weight>
int64_t Balancer::weighted_random(std::mt19937_64& rng, Weight&& weight) const {
  double total = 0;
  for (uint32_t i : eligible_) total += weight(i);
  if (total <= 0) return eligible_[draw_below(rng, eligible_.size())];
  double x = total * http::draw_unit(rng);  // from the raw bits: any stdlib, same pick
  for (uint32_t i : eligible_) {
    x -= weight(i);
    if (x < 0) return i;
  }
  return eligible_.back();
}

bool Balancer::warming(const CompiledUpstream& up, UpstreamRuntime& rt, TimePoint now) const {
  if (up.config.warmup.count() <= 0) return false;
  for (uint32_t i : eligible_)
    if (weight_of(up, rt, i, now) != double(up.endpoints[i].weight)) return true;
  return false;
}

int64_t Balancer::pick_round_robin(const CompiledUpstream& up, UpstreamRuntime& rt,
                                   const EndpointSet& set, SetState& st, TimePoint now) {
  const auto& m = set.members;
  if (set.equal_weights && !warming(up, rt, now)) {
    for (size_t k = 0; k < m.size(); ++k) {
      uint32_t i = m[st.cursor++ % m.size()];
      if (mark_[i]) return i;
    }
    return eligible_.front();
  }
  // Smooth weighted round robin: every eligible member gains its weight,
  // the richest is picked and pays the total. Spreads picks in time.
  if (st.current.size() != m.size()) st.current.assign(m.size(), 0);
  double total = 0;
  size_t best = m.size();
  for (size_t k = 0; k < m.size(); ++k) {
    if (!mark_[m[k]]) continue;
    double w = weight_of(up, rt, m[k], now);
    st.current[k] += w;
    total += w;
    if (best == m.size() || st.current[k] > st.current[best]) best = k;
  }
  st.current[best] -= total;
  return m[best];
}

int64_t Balancer::pick_least_request(const CompiledUpstream& up, UpstreamRuntime& rt,
                                     const EndpointSet& set, TimePoint now, std::mt19937_64& rng) {
  auto active = [&](uint32_t i) {
    return rt.endpoints[i]->active_requests.load(std::memory_order_relaxed);
  };
  if (set.equal_weights && !warming(up, rt, now)) {
    // Power of two choices: two distinct random members, the less busy wins.
    size_t a = draw_below(rng, eligible_.size());
    size_t b = draw_below(rng, eligible_.size() - 1);
    if (b >= a) ++b;
    uint32_t ea = eligible_[a], eb = eligible_[b];
    return active(eb) < active(ea) ? eb : ea;
  }
  // Unequal weights: Envoy scales each weight by 1 / (active + 1).
  return weighted_random(
      rng, [&](uint32_t i) { return weight_of(up, rt, i, now) / double(active(i) + 1); });
}

std::optional<std::string_view> Balancer::hash_key(const ConsistentHash& ch, const PickRequest& in,
                                                   std::mt19937_64& rng, PickResult& r,
                                                   std::string& generated) {
  if (!in.request) return std::nullopt;
  switch (ch.source) {
    case ConsistentHash::Source::header:
      return in.request->headers.get(ch.name);
    case ConsistentHash::Source::cookie:
      if (auto key = find_cookie(in.request->headers, ch.name)) return key;
      // Envoy generates the cookie when absent and sends it back, so the
      // next request of this client hashes the same way.
      generated = fmt::format("{:016x}", rng());
      r.set_cookie = fmt::format("{}={}", ch.name, generated);
      if (ch.cookie_ttl.count() > 0)
        r.set_cookie += fmt::format("; Max-Age={}", ch.cookie_ttl.count());
      if (!ch.cookie_path.empty()) r.set_cookie += fmt::format("; Path={}", ch.cookie_path);
      r.set_cookie += "; HttpOnly";
      return std::string_view(generated);
    case ConsistentHash::Source::source_ip:
      if (in.client_ip.empty()) return std::nullopt;
      return in.client_ip;
    case ConsistentHash::Source::query_parameter:
      return http::find_query_param(in.request->query(), ch.name);
  }
  return std::nullopt;
}

void Balancer::pick_hashed(const CompiledUpstream& up, UpstreamRuntime& rt, const EndpointSet& set,
                           SetState& st, const PickRequest& in, std::mt19937_64& rng,
                           PickResult& r) {
  std::string generated;
  std::optional<std::string_view> key;
  if (up.config.consistent_hash) key = hash_key(*up.config.consistent_hash, in, rng, r, generated);
  if (r.endpoint >= 0) return;  // a single eligible member
  if (!key) {
    // No hash key in the request: Envoy falls back to a random pick.
    r.endpoint = eligible_[draw_below(rng, eligible_.size())];
    return;
  }
  if (!st.table) st.table = rt.cluster->hash_table(up, set);
  const HashTable& table = *st.table;
  uint64_t h = sluice::hash_key(*key);
  // The first eligible entry from the key's place on: endpoints that are
  // ejected or tried only move their own keys.
  for (uint64_t probe = 0; probe < table.size(); ++probe) {
    uint32_t i = set.members[table.at(h, probe)];
    if (mark_[i]) {
      r.endpoint = i;
      return;
    }
  }
  r.endpoint = eligible_[draw_below(rng, eligible_.size())];
}

PickResult Balancer::pick(const CompiledUpstream& up, const EndpointSet& set, const PickRequest& in,
                          TimePoint now, std::mt19937_64& rng) {
  PickResult r;
  if (set.members.empty()) return r;
  UpstreamRuntime& rt = runtime(up);
  collect_eligible(up, rt, set, in, now);
  if (eligible_.size() == 1) {
    r.endpoint = eligible_[0];
    // A cookie-hashed request without its cookie still gets one.
    if (up.config.load_balancer != LoadBalancer::consistent_hash) return r;
  }
  mark_.resize(up.endpoints.size(), 0);
  for (uint32_t i : eligible_) mark_[i] = 1;
  Unmark unmark{mark_, eligible_};
  SetState& st = rt.sets[&set];
  switch (up.config.load_balancer) {
    case LoadBalancer::passthrough:
      // No original destination in an ingress: the first eligible endpoint,
      // in configuration order (failover order).
      r.endpoint = eligible_.front();
      return r;
    case LoadBalancer::random:
      r.endpoint = weighted_random(rng, [&](uint32_t i) { return double(up.endpoints[i].weight); });
      return r;
    case LoadBalancer::round_robin:
      r.endpoint = pick_round_robin(up, rt, set, st, now);
      return r;
    case LoadBalancer::least_request:
      r.endpoint = pick_least_request(up, rt, set, now, rng);
      return r;
    case LoadBalancer::consistent_hash:
      break;
  }
  pick_hashed(up, rt, set, st, in, rng, r);
  return r;
}
void Balancer::remove_waiter(ClockTimer* t) {
  auto it = std::find(waiters_.begin(), waiters_.end(), t);
  if (it != waiters_.end()) waiters_.erase(it);
}

void Balancer::wake_one() {
  if (waiters_.empty()) return;
  ClockTimer* t = waiters_.front();
  waiters_.pop_front();
  t->cancel();
}

}  // namespace sluice
