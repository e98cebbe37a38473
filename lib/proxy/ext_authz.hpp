#pragma once
// The ext_authz call of a CUSTOM policy: the check request goes through the
// one upstream-connection layer to an endpoint of the provider's upstream
// (pooled, with that upstream's TLS settings and connection limits), and
// the answer is read with the response parser's limits and a capped body.
// The whole call is bounded by the provider's timeout on the gateway's
// clock, as the session's route timeout would be.

#include <asio/awaitable.hpp>

#include <string>
#include <string_view>

#include "config/snapshot.hpp"
#include "net/loop.hpp"
#include "proxy/host.hpp"
#include "security/ext_authz.hpp"

namespace sluice {

// Sends `wire` (security::append_check_request) for `head`, from the
// session owning `slot`, and reads the answer. Anything short of a whole
// answer (no endpoint, connect failure, a provider that closes early or
// sends too much, the timeout) is ExtAuthzVerdict::error. The slot's
// route cap is used for the timeout and cleared after; `slot.fired` says
// which deadline, if any, cut the call.
asio::awaitable<security::ExtAuthzOutcome> call_ext_authz(
    SessionHost& worker, ConnectionSlot& slot, const Snapshot& snap,
    const security::CompiledExtAuthz& provider, const RequestHead& head, std::string_view client_ip,
    std::string wire);

}  // namespace sluice
