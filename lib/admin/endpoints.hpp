#pragma once
// What each admin path answers, apart from the server that carries it: a
// request head in, a complete response out (no sockets), so every path can
// be tested alone.

#include <string>
#include <vector>

#include "admin/graph.hpp"
#include "sluice/request.hpp"

namespace sluice {
class Gateway;
}

namespace sluice::admin {

struct AdminContext {
  const Gateway& gateway;
  TrafficSampler& sampler;
  const std::vector<std::string>& paths;  // served; empty: all
};

// The response to one request: 404 for an unknown or unserved path, 405 for
// a method other than GET (with `allow: GET`).
Response respond(const AdminContext& context, const RequestHead& request);

// /clusters: every upstream of the running snapshot with its endpoints'
// state, as JSON.
std::string clusters_json(const Gateway& gateway);

// The page of /graph (embedded at build time from graph_page.html).
extern const char* const kGraphPage;

}  // namespace sluice::admin
