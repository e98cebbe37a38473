// DNS endpoint discovery: the system resolver through asio, and the source
// that re-resolves on a thread of its own and feeds a Gateway. Nothing here
// runs on a worker or touches a snapshot: the sink (update_endpoints) does.

#include "sluice/dns.hpp"

#include <fmt/format.h>
#include <asio/io_context.hpp>
#include <asio/ip/address.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

namespace sluice {

namespace {

bool is_ip_literal(const std::string& name) {
  asio::error_code ec;
  asio::ip::make_address(name, ec);
  return !ec;
}

}  // namespace

DnsAnswers resolve_hostnames(const std::vector<std::string>& names,
                             std::chrono::milliseconds timeout) {
  DnsAnswers answers;
  if (names.empty()) return answers;
  // A private io_context: the lookups run on this thread (and asio's own
  // resolver thread), never on a gateway worker.
  asio::io_context io;
  asio::steady_timer deadline(io, timeout);
  size_t pending = names.size();
  std::vector<std::unique_ptr<asio::ip::tcp::resolver>> resolvers;
  for (const auto& name : names) {
    answers[name];  // a name that does not resolve stays an empty list
    auto& resolver = resolvers.emplace_back(std::make_unique<asio::ip::tcp::resolver>(io));
    // Istio's default lookup family for DNS clusters is V4_ONLY.
    resolver->async_resolve(
        asio::ip::tcp::v4(), name, "",
        [&answers, &pending, &deadline, name](const asio::error_code& ec,
                                              asio::ip::tcp::resolver::results_type results) {
          if (--pending == 0) deadline.cancel();
          if (ec) return;
          std::set<std::string> ips;
          for (const auto& entry : results) ips.insert(entry.endpoint().address().to_string());
          answers[name].assign(ips.begin(), ips.end());
        });
  }
  deadline.async_wait([&](const asio::error_code& ec) {
    if (ec) return;
    for (auto& r : resolvers) r->cancel();
  });
  // Ends when every lookup answered, or soon after the deadline cancelled them.
  io.run_for(timeout + std::chrono::milliseconds(500));
  return answers;
}

struct DnsEndpointSource::Impl {
  std::vector<DnsUpstream> upstreams;
  DnsSourceOptions options;
  std::vector<std::string> names;  // hostnames to look up: sorted, unique, no IP literals
  DnsAnswers good;                 // the last good answer per name (the source's thread)
  EndpointSink sink;

  std::mutex mutex;  // guards the members below
  std::condition_variable cv;
  bool started = false;
  bool stopping = false;
  uint64_t requested = 0;  // refresh() calls so far
  uint64_t completed = 0;  // requests answered by a finished round
  std::thread thread;

  void report(Error e) const {
    if (options.on_error) options.on_error(e);
  }

  // One lookup of every name, then every upstream handed to the sink.
  void round() {
    DnsAnswers fresh;
    if (!names.empty())
      fresh = options.resolve ? options.resolve(names) : resolve_hostnames(names, options.timeout);
    for (const auto& name : names) {
      auto it = fresh.find(name);
      if (it != fresh.end() && !it->second.empty()) {
        std::vector<std::string> ips = it->second;
        std::sort(ips.begin(), ips.end());
        ips.erase(std::unique(ips.begin(), ips.end()), ips.end());
        good[name] = std::move(ips);
        continue;
      }
      auto kept = good.find(name);
      report(Error{"DnsEndpointSource", name,
                   kept == good.end()
                       ? std::string("did not resolve")
                       : fmt::format("did not resolve; keeping its last {} address(es)",
                                     kept->second.size())});
    }
    for (const auto& up : upstreams) {
      std::vector<Endpoint> endpoints;
      bool known = false;
      for (const auto& host : up.hosts) {
        std::vector<std::string> literal;
        const std::vector<std::string>* ips = nullptr;
        if (is_ip_literal(host.hostname)) {
          literal.push_back(host.hostname);
          ips = &literal;
        } else if (auto it = good.find(host.hostname); it != good.end()) {
          ips = &it->second;
        }
        if (!ips) continue;
        known = true;
        for (const auto& ip : *ips) endpoints.push_back({ip, host.port, host.labels, host.weight});
      }
      // Nothing ever resolved: keep what the configuration gave it.
      if (!known) continue;
      if (Status st = sink(up.upstream, std::move(endpoints)); !st.ok()) report(st.error());
    }
  }

  void run() {
    std::unique_lock lock(mutex);
    while (!stopping) {
      uint64_t goal = requested;
      lock.unlock();
      round();
      lock.lock();
      completed = goal;
      cv.notify_all();
      auto wake = [&] { return stopping || requested > completed; };
      if (options.refresh_interval.count() > 0)
        cv.wait_for(lock, options.refresh_interval, wake);
      else
        cv.wait(lock, wake);
    }
  }
};

DnsEndpointSource::DnsEndpointSource(std::vector<DnsUpstream> upstreams, DnsSourceOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->upstreams = std::move(upstreams);
  impl_->options = std::move(options);
  std::set<std::string> names;
  for (const auto& up : impl_->upstreams)
    for (const auto& host : up.hosts)
      if (!is_ip_literal(host.hostname)) names.insert(host.hostname);
  impl_->names.assign(names.begin(), names.end());
  for (const auto& [name, ips] : impl_->options.known)
    if (names.contains(name) && !ips.empty()) impl_->good[name] = ips;
}

DnsEndpointSource::~DnsEndpointSource() {
  stop();
}

void DnsEndpointSource::start(EndpointSink sink) {
  Impl& m = *impl_;
  std::lock_guard lock(m.mutex);
  if (m.started || m.stopping) return;
  m.started = true;
  m.sink = std::move(sink);
  m.thread = std::thread([&m] { m.run(); });
}

void DnsEndpointSource::stop() {
  Impl& m = *impl_;
  std::thread thread;
  {
    std::lock_guard lock(m.mutex);
    m.stopping = true;
    m.cv.notify_all();
    thread = std::move(m.thread);
  }
  if (thread.joinable()) thread.join();
}

void DnsEndpointSource::refresh() {
  Impl& m = *impl_;
  std::unique_lock lock(m.mutex);
  if (!m.started || m.stopping) return;
  uint64_t want = ++m.requested;
  m.cv.notify_all();
  m.cv.wait(lock, [&] { return m.stopping || m.completed >= want; });
}

}  // namespace sluice
