#pragma once
// The gateway's JWKS fetcher: fills the key slots of the JWT providers whose
// key set is remote (jwksUri, or OpenID discovery from the issuer). One loop
// per distinct URL, run on one worker's event loop through the upstream-
// connection layer (upstream/http_get): fetch, store the set in every slot
// that names the URL, wait refresh_interval (or a backoff after a failure),
// again. A failed fetch keeps the last good set. The cache is by URL across
// reloads: a configuration that keeps a URL gets its current keys at once
// and no new fetch. Timers follow the gateway's clock.

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "sluice/security.hpp"

namespace sluice {

struct CompiledSecurity;
class UpstreamContext;

class JwksFetcher {
 public:
  // Fetches run on `ctx`'s loop (a worker that outlives this fetcher);
  // `on_fetch` (may be empty) is called there after each fetch.
  JwksFetcher(UpstreamContext& ctx, JwksFetchOptions options,
              std::function<void(const JwksFetchStatus&)> on_fetch);
  ~JwksFetcher();
  JwksFetcher(const JwksFetcher&) = delete;
  JwksFetcher& operator=(const JwksFetcher&) = delete;

  // Control side, before `security`'s snapshot reaches a worker: slots of
  // URLs already fetched get the current set now; new URLs start fetching;
  // URLs no longer named stop (their fetch is cancelled). Null: none.
  void update(const CompiledSecurity* security);
  // Cancels every fetch and wait; later updates do nothing.
  void stop();

  std::vector<JwksFetchStatus> status() const;
  // True once no URL of the latest update is pending (at once if none).
  bool wait_fetched(std::chrono::milliseconds timeout) const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace sluice
