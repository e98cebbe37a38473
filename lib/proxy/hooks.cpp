// The out-of-line parts of include/sluice/hooks.hpp: PeerChoice resolves
// names and keys against the request's snapshot.

#include "sluice/hooks.hpp"
#include "config/snapshot.hpp"

namespace sluice {

namespace {
const CompiledUpstream& upstream_of(const Snapshot& snap, size_t index) {
  return snap.upstreams[index];
}
}  // namespace

std::string_view PeerChoice::upstream() const {
  return upstream_of(*snapshot_, upstream_).config.name;
}

std::string_view PeerChoice::endpoint_key() const {
  return endpoint_ < 0 ? std::string_view() : endpoint_key(static_cast<size_t>(endpoint_));
}

size_t PeerChoice::endpoint_count() const {
  return upstream_of(*snapshot_, upstream_).endpoints.size();
}

std::string_view PeerChoice::endpoint_key(size_t index) const {
  const auto& endpoints = upstream_of(*snapshot_, upstream_).endpoints;
  return index < endpoints.size() ? std::string_view(endpoints[index].key) : std::string_view();
}

bool PeerChoice::use_endpoint(size_t index) {
  if (index >= endpoint_count()) return false;
  endpoint_ = static_cast<int64_t>(index);
  return true;
}

bool PeerChoice::use_endpoint(std::string_view key) {
  const auto& endpoints = upstream_of(*snapshot_, upstream_).endpoints;
  for (size_t i = 0; i < endpoints.size(); ++i)
    if (endpoints[i].key == key) {
      endpoint_ = static_cast<int64_t>(i);
      return true;
    }
  return false;
}

bool PeerChoice::use_upstream(std::string_view name) {
  // Linear: only a hook that switches pays for it, and upstreams are few.
  for (size_t i = 0; i < snapshot_->upstreams.size(); ++i)
    if (snapshot_->upstreams[i].config.name == name) {
      if (i != upstream_) endpoint_ = -1;
      upstream_ = i;
      return true;
    }
  return false;
}

ProxyError::Source ProxyError::source() const {
  switch (kind) {
    case Kind::no_route:
    case Kind::downstream_timeout:
    case Kind::downstream_cancelled:
    case Kind::downstream_protocol_error:
      return Source::downstream;
    case Kind::no_healthy_upstream:
    case Kind::connect_failure:
    case Kind::overflow:
    case Kind::upstream_timeout:
    case Kind::upstream_reset:
    case Kind::upstream_protocol_error:
      return Source::upstream;
  }
  return Source::internal;
}

}  // namespace sluice
