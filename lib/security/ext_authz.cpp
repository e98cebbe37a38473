#include "security/ext_authz.hpp"

#include <fmt/format.h>

#include "http/serializer.hpp"
#include "http/tokens.hpp"
#include "http/wire_check.hpp"

namespace sluice::security {

HeaderPatterns::HeaderPatterns(const std::vector<std::string>& patterns) {
  patterns_.reserve(patterns.size());
  for (const auto& p : patterns) patterns_.push_back(http::to_lower(p));
}

bool HeaderPatterns::matches(std::string_view name) const {
  std::string lower = http::to_lower(name);
  std::string_view n = lower;
  for (const std::string& p : patterns_) {
    if (p.size() > 1 && p.back() == '*') {
      if (n.starts_with(std::string_view(p).substr(0, p.size() - 1))) return true;
    } else if (p.size() > 1 && p.front() == '*') {
      if (n.ends_with(std::string_view(p).substr(1))) return true;
    } else if (p == n) {
      return true;
    }
  }
  return false;
}

namespace {

Error provider_error(const ExtAuthzHttpProvider& p, std::string field, std::string message) {
  return Error{"ExtAuthzHttpProvider " + p.name, std::move(field), std::move(message)};
}

Status check_names(const ExtAuthzHttpProvider& p, const std::vector<std::string>& names,
                   const char* field) {
  for (size_t i = 0; i < names.size(); ++i) {
    // A pattern's '*' is not a header character: check what is around it.
    std::string_view n = names[i];
    if (n.size() > 1 && n.back() == '*') n.remove_suffix(1);
    if (n.size() > 1 && n.front() == '*') n.remove_prefix(1);
    if (std::string why = http::check_header_name(n); !why.empty())
      return provider_error(p, fmt::format("{}[{}]", field, i), why);
  }
  return {};
}

// Framing is ours on every message: a provider's or a client's framing
// headers are never copied.
bool is_framing(std::string_view name) {
  return http::iequals(name, "content-length") || http::is_hop_by_hop(name) ||
         http::iequals(name, "host") || http::iequals(name, "expect");
}

void copy_matching(const Headers& from, const HeaderPatterns& patterns, Headers& to) {
  for (const auto& [name, value] : from.entries())
    if (!is_framing(name) && patterns.matches(name)) to.set(name, value);
}

}  // namespace

Result<CompiledExtAuthz> compile_ext_authz(const ExtAuthzHttpProvider& p, uint32_t upstream) {
  if (!p.path_prefix.empty())
    if (std::string why = http::check_path(p.path_prefix); !why.empty())
      return provider_error(p, "path_prefix", why);
  if (p.timeout.count() <= 0) return provider_error(p, "timeout", "must be > 0");
  if (p.status_on_error < 200 || p.status_on_error > 599)
    return provider_error(
        p, "status_on_error",
        fmt::format("{} is not a final HTTP status (200..599)", p.status_on_error));
  if (p.include_request_body_in_check && p.include_request_body_in_check->max_request_bytes == 0)
    return provider_error(p, "include_request_body_in_check.max_request_bytes", "must be > 0");
  for (size_t i = 0; i < p.include_additional_headers_in_check.size(); ++i) {
    const auto& [name, value] = p.include_additional_headers_in_check[i];
    std::string field = fmt::format("include_additional_headers_in_check[{}]", i);
    if (std::string why = http::check_header_name(name); !why.empty())
      return provider_error(p, field + ".name", why);
    if (std::string why = http::check_header_value(value); !why.empty())
      return provider_error(p, field + ".value", why);
  }
  if (Status st =
          check_names(p, p.include_request_headers_in_check, "include_request_headers_in_check");
      !st)
    return st.error();
  if (Status st = check_names(p, p.headers_to_upstream_on_allow, "headers_to_upstream_on_allow");
      !st)
    return st.error();
  if (Status st =
          check_names(p, p.headers_to_downstream_on_allow, "headers_to_downstream_on_allow");
      !st)
    return st.error();
  if (Status st = check_names(p, p.headers_to_downstream_on_deny, "headers_to_downstream_on_deny");
      !st)
    return st.error();
  CompiledExtAuthz out;
  out.config = p;
  out.upstream = upstream;
  out.request_headers = HeaderPatterns(p.include_request_headers_in_check);
  out.upstream_on_allow = HeaderPatterns(p.headers_to_upstream_on_allow);
  out.downstream_on_allow = HeaderPatterns(p.headers_to_downstream_on_allow);
  out.downstream_on_deny = HeaderPatterns(p.headers_to_downstream_on_deny);
  return out;
}

void append_check_request(std::string& out, const CompiledExtAuthz& provider,
                          const RequestHead& head, std::string_view body, bool partial) {
  const ExtAuthzHttpProvider& cfg = provider.config;
  // Envoy's CheckRequest carries one value per header name (repeated ones
  // joined with ','); the HTTP client copies the allowed ones from it.
  Headers sent;
  // Host is the client's, as Envoy sends it; HTTP/1.0 without one gets the service.
  sent.add("host", head.authority.empty() ? cfg.service : head.authority);
  for (const auto& [name, value] : head.headers.entries()) {
    if (is_framing(name)) continue;
    if (!http::iequals(name, "authorization") && !provider.request_headers.matches(name)) continue;
    bool joined = false;
    for (auto& [n, v] : sent.entries())
      if (http::iequals(n, name)) {
        v += ',';
        v += value;
        joined = true;
        break;
      }
    if (!joined) sent.add(http::to_lower(name), value);
  }
  for (const auto& [name, value] : cfg.include_additional_headers_in_check) sent.set(name, value);
  if (cfg.include_request_body_in_check)
    sent.set("x-envoy-auth-partial-body", partial ? "true" : "false");
  RequestHead check;
  check.method = head.method;
  check.target = cfg.path_prefix + head.target;
  check.headers = std::move(sent);
  check.headers.add("content-length", std::to_string(body.size()));
  http::append_request_head(out, check);
  out.append(body);
}

ExtAuthzOutcome interpret_check_response(const CompiledExtAuthz& provider, const ResponseHead& head,
                                         std::string body) {
  ExtAuthzOutcome out;
  if (head.status == 200) {
    out.verdict = ExtAuthzVerdict::ok;
    copy_matching(head.headers, provider.upstream_on_allow, out.upstream);
    copy_matching(head.headers, provider.downstream_on_allow, out.downstream);
    return out;
  }
  // A provider failing is not a denial: status_on_error or fail_open decide.
  if (head.status >= 500) return out;
  out.verdict = ExtAuthzVerdict::denied;
  out.status = head.status;
  out.body = std::move(body);
  const HeaderPatterns& deny = provider.downstream_on_deny;
  for (const auto& [name, value] : head.headers.entries()) {
    if (is_framing(name)) continue;
    // With a list, Envoy adds WWW-Authenticate and Location to it.
    bool wanted = deny.empty() || deny.matches(name) || http::iequals(name, "www-authenticate") ||
                  http::iequals(name, "location");
    if (wanted) out.downstream.add(name, value);
  }
  return out;
}

}  // namespace sluice::security
