#pragma once
// Request mirroring (Istio's mirror / mirrors): a copy of the request, sent
// and forgotten. Each mirror goes through the one upstream-connection layer
// with a connection of its own, bounded in time and in number per worker
// (SessionHost::kMaxMirrors; more are shed, never queued).

#include <memory>
#include <string>
#include <string_view>

#include "config/snapshot.hpp"
#include "http/serializer.hpp"
#include "proxy/host.hpp"
#include "sluice/request.hpp"

namespace sluice {

// Sends `head` and `body` (all of it, already read) to each of the route's
// mirrors its percentage draws: the head as the upstream gets it (`fwd`),
// with the shadow host and a close.
void start_mirrors(SessionHost& worker, const std::shared_ptr<const Snapshot>& snap,
                   const ResolvedRoute& rr, const RequestHead& head, http::Forwarding fwd,
                   const std::string& body, std::string_view client_ip);

}  // namespace sluice
