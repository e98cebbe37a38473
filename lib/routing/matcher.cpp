// Evaluation of compiled match conditions, and the reasons explain() gives
// when one fails.

#include <fmt/format.h>

#include "http/tokens.hpp"
#include "routing/compiled_router.hpp"
#include "routing/text.hpp"

namespace sluice::detail {

namespace {

// Envoy matches a repeated header against its values joined with ",". The
// common single-value case returns a view and allocates nothing.
struct HeaderValue {
  bool present = false;
  std::string_view value;
  std::string joined;  // storage when the header repeats
};

// Pseudo-headers Istio users write in matches (":authority" etc.) live in
// RequestHead fields, not in the header list.
const std::string* pseudo_header(const RequestHead& request, std::string_view name) {
  if (name == ":authority") return &request.authority;
  if (name == ":method") return &request.method;
  if (name == ":path") return &request.target;
  if (name == ":scheme") return &request.scheme;
  return nullptr;
}

void find_header(const RequestHead& request, std::string_view name, HeaderValue& out) {
  if (!name.empty() && name[0] == ':') {
    if (const std::string* v = pseudo_header(request, name)) {
      out.present = true;
      out.value = *v;
    }
    return;
  }
  for (const auto& [n, v] : request.headers.entries()) {
    if (!http::iequals(n, name)) continue;
    if (!out.present) {
      out.present = true;
      out.value = v;
      continue;
    }
    if (out.joined.empty()) out.joined.assign(out.value);
    out.joined += ',';
    out.joined += v;
    out.value = out.joined;
  }
}

bool header_holds(const CompiledHeaderMatch& h, const RequestHead& request) {
  HeaderValue hv;
  find_header(request, h.name, hv);
  bool positive = hv.present && h.match.matches(hv.value);
  return positive != h.invert;
}

bool query_holds(const CompiledQueryMatch& q, std::string_view query) {
  auto value = http::find_query_param(query, q.name);
  return value && q.match.matches(*value);
}

// `is not exact "GET"`, `does not match prefix "/reviews"`.
std::string mismatch(const http::CompiledStringMatch& m) {
  std::string out = m.kind == StringMatch::Kind::exact
                        ? fmt::format("is not exact \"{}\"", m.value)
                        : fmt::format("does not match {} \"{}\"", kind_name(m.kind), m.value);
  if (m.ignore_case) out += " (ignoring case)";
  return out;
}

std::string positive_form(const http::CompiledStringMatch& m) {
  if (m.kind == StringMatch::Kind::exact) return fmt::format("is exact \"{}\"", m.value);
  return fmt::format("matches {} \"{}\"", kind_name(m.kind), m.value);
}

}  // namespace

bool CompiledMatcher::matches(const RequestHead& request) const {
  if (port && *port != request.listener_port) return false;
  if (method && !method->matches(request.method)) return false;
  if (uri && !uri->matches(request.path())) return false;
  if (scheme && !scheme->matches(request.scheme)) return false;
  if (authority && !authority->matches(request.authority)) return false;
  for (const auto& h : headers)
    if (!header_holds(h, request)) return false;
  if (!query_params.empty()) {
    std::string_view query = request.query();
    for (const auto& q : query_params)
      if (!query_holds(q, query)) return false;
  }
  return true;
}

std::string CompiledMatcher::failure(const RequestHead& request) const {
  if (uri && !uri->matches(request.path()))
    return fmt::format("uri \"{}\" {}", request.path(), mismatch(*uri));
  if (method && !method->matches(request.method))
    return fmt::format("method \"{}\" {}", request.method, mismatch(*method));
  if (authority && !authority->matches(request.authority))
    return fmt::format("authority \"{}\" {}", request.authority, mismatch(*authority));
  if (scheme && !scheme->matches(request.scheme))
    return fmt::format("scheme \"{}\" {}", request.scheme, mismatch(*scheme));
  if (port && *port != request.listener_port)
    return fmt::format("port {} is not {}", request.listener_port, *port);
  for (const auto& h : headers) {
    if (header_holds(h, request)) continue;
    HeaderValue hv;
    find_header(request, h.name, hv);
    if (!h.invert) {
      if (!hv.present) return fmt::format("header \"{}\" is absent", h.name);
      return fmt::format("header \"{}\" value \"{}\" {}", h.name, hv.value, mismatch(h.match));
    }
    if (h.match.kind == StringMatch::Kind::present)
      return fmt::format("header \"{}\" is present (withoutHeaders)", h.name);
    return fmt::format("header \"{}\" value \"{}\" {} (withoutHeaders)", h.name, hv.value,
                       positive_form(h.match));
  }
  std::string_view query = request.query();
  for (const auto& q : query_params) {
    auto value = http::find_query_param(query, q.name);
    if (!value) return fmt::format("query parameter \"{}\" is absent", q.name);
    if (!q.match.matches(*value))
      return fmt::format("query parameter \"{}\" value \"{}\" {}", q.name, *value,
                         mismatch(q.match));
  }
  return {};
}

std::optional<size_t> CompiledRoute::matching_block(const RequestHead& request) const {
  if (matches.empty()) return kEveryRequest;
  for (size_t k = 0; k < matches.size(); ++k)
    if (matches[k].matches(request)) return k;
  return std::nullopt;
}

}  // namespace sluice::detail
