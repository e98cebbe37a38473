#include "runtime/jwks_fetcher.hpp"

#include <fmt/format.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <map>
#include <mutex>

#include "config/snapshot.hpp"
#include "http/tokens.hpp"
#include "security/jwks_fetch.hpp"
#include "security/jwt.hpp"
#include "tls/client.hpp"
#include "upstream/context.hpp"
#include "upstream/http_get.hpp"

namespace sluice {

namespace {

// One URL: its slots, the last good set and what the last fetch did.
struct Entry {
  std::string uri;
  bool discovery = false;
  // Guarded by State::mutex.
  std::chrono::milliseconds timeout{5'000};
  std::vector<std::shared_ptr<security::JwksSlot>> slots;  // the current snapshot's
  std::shared_ptr<const security::Jwks> jwks;              // last good set
  JwksFetchStatus status;
  uint32_t failures_in_a_row = 0;
  bool removed = false;
  // The worker's thread only.
  std::shared_ptr<HttpGet> get;
  std::unique_ptr<ClockTimer> timer;
};

std::string entry_key(const security::JwtRule& rule) {
  return (rule.openid_discovery ? "openid " : "jwks ") + rule.jwks_uri;
}

struct Outcome {
  std::shared_ptr<const security::Jwks> jwks;
  std::string error;
  std::string jwks_uri;  // discovery: what the document named
};

}  // namespace

struct JwksFetcher::State {
  State(UpstreamContext& c, JwksFetchOptions o, std::function<void(const JwksFetchStatus&)> f)
      : ctx(c), options(std::move(o)), on_fetch(std::move(f)) {}
  UpstreamContext& ctx;
  const JwksFetchOptions options;
  const std::function<void(const JwksFetchStatus&)> on_fetch;

  mutable std::mutex mutex;
  mutable std::condition_variable cv;
  std::map<std::string, std::shared_ptr<Entry>> entries;
  std::vector<std::string> order;  // keys in the providers' order
  bool stopped = false;
};

namespace {

using State = JwksFetcher::State;

// One GET of `url`; the body when the answer is 200.
asio::awaitable<Result<std::string>> get_document(State& st, const std::shared_ptr<HttpGet>& get,
                                                  const std::string& text,
                                                  std::chrono::milliseconds timeout) {
  auto url = security::parse_http_url(text);
  if (!url) co_return Error{"", "", fmt::format("{}: {}", text, url.error().message)};
  HttpGetRequest request;
  request.host = url->host;
  request.port = url->port;
  request.authority = url->authority();
  request.target = url->target;
  request.timeout = timeout;
  request.max_body_bytes = st.options.max_response_bytes;
  if (auto it = st.options.resolve.find(http::join_host_port(url->host, url->port));
      it != st.options.resolve.end()) {
    auto [host, port_text] = http::split_host_port(it->second);
    if (host.starts_with('[')) host = host.substr(1, host.size() - 2);
    unsigned port = 0;
    auto [end, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    asio::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    if (ec || perr != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535)
      co_return Error{"", "",
                      fmt::format("{}: resolve entry \"{}\" is not ip:port", text, it->second)};
    request.connect_to = asio::ip::tcp::endpoint(address, static_cast<uint16_t>(port));
  }
  if (url->https) {
    // The server is checked against the URL's host (SNI and name).
    UpstreamTls settings;
    settings.sni = url->host;
    settings.ca_certificates = st.options.ca_certificates;
    auto tls = tls::ClientContext::compile(settings, "JWKS fetch");
    if (!tls) co_return tls.error();
    request.tls = std::move(tls).value();
  }
  HttpGetResult r = co_await HttpGet::run(get, std::move(request));
  if (!r.ok) co_return Error{"", "", fmt::format("{}: {}", text, r.error)};
  if (r.status != 200)
    co_return Error{
        "", "",
        fmt::format("{}: HTTP status {}{}", text, r.status,
                    r.status >= 300 && r.status < 400 ? " (redirects are not followed)" : "")};
  co_return std::move(r.body);
}

asio::awaitable<Outcome> fetch_once(State& st, Entry& e, std::chrono::milliseconds timeout) {
  Outcome out;
  std::string uri = e.uri;
  if (e.discovery) {
    auto doc = co_await get_document(st, e.get, uri, timeout);
    if (!doc) {
      out.error = "OpenID discovery: " + doc.error().to_string();
      co_return out;
    }
    auto named = security::openid_jwks_uri(*doc);
    if (!named) {
      out.error = fmt::format("OpenID discovery: {}: {}", uri, named.error().message);
      co_return out;
    }
    uri = out.jwks_uri = *named;
  }
  auto body = co_await get_document(st, e.get, uri, timeout);
  if (!body) {
    out.error = body.error().to_string();
    co_return out;
  }
  auto jwks = security::Jwks::parse(*body);
  if (!jwks) {
    out.error = fmt::format("{}: invalid JWKS: {}", uri, jwks.error().message);
    co_return out;
  }
  out.jwks = std::move(jwks).value();
  co_return out;
}

asio::awaitable<void> fetch_loop(std::shared_ptr<State> st, std::shared_ptr<Entry> e) {
  Loop& loop = st->ctx.loop();
  e->get = std::make_shared<HttpGet>(st->ctx);
  e->timer = std::make_unique<ClockTimer>(loop);
  const auto refresh =
      std::max(st->options.refresh_interval,
               std::chrono::duration_cast<std::chrono::milliseconds>(security::kMinJwksRetry));
  for (;;) {
    std::chrono::milliseconds timeout;
    {
      std::lock_guard lock(st->mutex);
      if (e->removed || st->stopped) break;
      timeout = e->timeout;
    }
    Outcome out = co_await fetch_once(*st, *e, timeout);
    JwksFetchStatus status;
    std::chrono::milliseconds delay;
    // The next attempt counts from the fetch's end, fixed before anyone is
    // told of it (a test that then moves the clock moves it past this).
    TimePoint now = loop.clock_now();
    {
      std::lock_guard lock(st->mutex);
      if (e->removed || st->stopped) break;
      JwksFetchStatus& s = e->status;
      if (!out.jwks_uri.empty()) s.jwks_uri = out.jwks_uri;
      if (out.jwks) {
        e->jwks = out.jwks;
        for (auto& slot : e->slots) slot->store(e->jwks);
        s.state = JwksFetchStatus::State::ok;
        s.error.clear();
        ++s.successes;
        e->failures_in_a_row = 0;
        delay = refresh;
      } else {
        // The last good set (if any) stays in the slots.
        s.state = JwksFetchStatus::State::failed;
        s.error = out.error;
        ++s.failures;
        delay = security::jwks_retry_delay(st->options, ++e->failures_in_a_row);
      }
      s.keys = e->jwks ? e->jwks->size() : 0;
      status = s;
      st->cv.notify_all();
    }
    if (st->on_fetch) st->on_fetch(status);
    co_await e->timer->sleep_until(now + delay);
  }
  e->get.reset();
  e->timer.reset();
}

}  // namespace

JwksFetcher::JwksFetcher(UpstreamContext& ctx, JwksFetchOptions options,
                         std::function<void(const JwksFetchStatus&)> on_fetch)
    : state_(std::make_shared<State>(ctx, std::move(options), std::move(on_fetch))) {}

JwksFetcher::~JwksFetcher() {
  // The gateway's threads are done (its destructor stopped them): the
  // worker-side parts go here, while the worker still exists.
  std::lock_guard lock(state_->mutex);
  state_->stopped = true;
  for (auto& [key, e] : state_->entries) {
    e->get.reset();
    e->timer.reset();
  }
  state_->entries.clear();
}

void JwksFetcher::update(const CompiledSecurity* security) {
  State& st = *state_;
  std::vector<std::shared_ptr<Entry>> start, cancel;
  {
    std::lock_guard lock(st.mutex);
    if (st.stopped) return;
    std::map<std::string, std::shared_ptr<Entry>> next;
    std::vector<std::string> order;
    if (security && security->authn) {
      for (const auto& rule : security->authn->rules()) {
        if (rule.jwks_uri.empty()) continue;
        std::string key = entry_key(rule);
        auto [it, added] = next.try_emplace(key);
        auto& e = it->second;
        if (added) {
          order.push_back(key);
          auto old = st.entries.find(key);
          if (old != st.entries.end()) {
            e = old->second;
          } else {
            e = std::make_shared<Entry>();
            e->uri = rule.jwks_uri;
            e->discovery = rule.openid_discovery;
            e->status.uri = rule.jwks_uri;
            start.push_back(e);
          }
          e->slots.clear();
          e->timeout = rule.fetch_timeout;
        }
        // Several providers may name one URL: the shortest timeout holds.
        e->timeout = std::min(e->timeout, rule.fetch_timeout);
        e->slots.push_back(rule.jwks);
        // Kept across the reload: no request on the new snapshot waits.
        if (e->jwks) rule.jwks->store(e->jwks);
      }
    }
    for (auto& [key, e] : st.entries)
      if (!next.count(key)) {
        e->removed = true;
        e->slots.clear();
        cancel.push_back(e);
      }
    st.entries = std::move(next);
    st.order = std::move(order);
    st.cv.notify_all();
  }
  if (start.empty() && cancel.empty()) return;
  auto s = state_;
  asio::post(st.ctx.context(), [s, start = std::move(start), cancel = std::move(cancel)] {
    for (auto& e : cancel) {
      if (e->get) e->get->cancel();
      if (e->timer) e->timer->cancel();
    }
    for (auto& e : start) asio::co_spawn(s->ctx.context(), fetch_loop(s, e), asio::detached);
  });
}

void JwksFetcher::stop() {
  State& st = *state_;
  std::vector<std::shared_ptr<Entry>> cancel;
  {
    std::lock_guard lock(st.mutex);
    if (st.stopped) return;
    st.stopped = true;
    for (auto& [key, e] : st.entries) cancel.push_back(e);
    st.cv.notify_all();
  }
  if (cancel.empty()) return;
  asio::post(st.ctx.context(), [cancel = std::move(cancel)] {
    for (auto& e : cancel) {
      if (e->get) e->get->cancel();
      if (e->timer) e->timer->cancel();
    }
  });
}

std::vector<JwksFetchStatus> JwksFetcher::status() const {
  std::lock_guard lock(state_->mutex);
  std::vector<JwksFetchStatus> out;
  for (const auto& key : state_->order) out.push_back(state_->entries.at(key)->status);
  return out;
}

bool JwksFetcher::wait_fetched(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->cv.wait_for(lock, timeout, [&] {
    for (const auto& [key, e] : state_->entries)
      if (e->status.state == JwksFetchStatus::State::pending) return false;
    return true;
  });
}

}  // namespace sluice
