// DNS for ServiceEntries with resolution DNS. Runs on the caller's (control)
// thread, never on a worker: the resulting config holds IP literals only.

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <memory>
#include <set>

#include "istio/istio.hpp"

namespace sluice::istio {

DnsTable resolve(const std::vector<std::string>& names, std::chrono::milliseconds timeout) {
  DnsTable table;
  if (names.empty()) return table;
  asio::io_context io;
  asio::steady_timer deadline(io, timeout);
  size_t pending = names.size();
  std::vector<std::unique_ptr<asio::ip::tcp::resolver>> resolvers;
  for (const auto& name : names) {
    table[name];  // unresolved names stay as empty lists
    auto& r = resolvers.emplace_back(std::make_unique<asio::ip::tcp::resolver>(io));
    // Istio's default lookup family for DNS clusters is V4_ONLY.
    r->async_resolve(
        asio::ip::tcp::v4(), name, "",
        [&table, &pending, &deadline, name](const asio::error_code& ec,
                                            asio::ip::tcp::resolver::results_type results) {
          if (--pending == 0) deadline.cancel();
          if (ec) return;
          std::set<std::string> ips;
          for (const auto& entry : results) ips.insert(entry.endpoint().address().to_string());
          table[name].assign(ips.begin(), ips.end());
        });
  }
  deadline.async_wait([&](const asio::error_code& ec) {
    if (ec) return;
    for (auto& r : resolvers) r->cancel();
  });
  // Ends when every lookup answered, or soon after the deadline cancelled them.
  io.run_for(timeout + std::chrono::milliseconds(500));
  return table;
}

}  // namespace sluice::istio
