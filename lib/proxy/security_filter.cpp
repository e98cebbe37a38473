#include "proxy/security_filter.hpp"

#include <fmt/format.h>

#include <vector>

#include "security/authz_address.hpp"

namespace sluice {

namespace {

// Envoy's details for a JWT refusal: the status text with '_' for spaces.
std::string jwt_details(security::JwtStatus status) {
  std::string text(security::jwt_status_text(status));
  for (char& c : text)
    if (c == ' ') c = '_';
  return fmt::format("jwt_authn_access_denied{{{}}}", text);
}

// request.auth.claims as the authorization engine reads them: every string
// and string-list claim, flattened to its path.
struct JwtView {
  security::JwtIdentity identity;
  std::vector<security::JwtClaim> claims;
};

// Every claim under `node`, at `path`: strings and string lists become
// values, objects are walked (nested claims, request.auth.claims[a][b]).
void flatten(const security::Claims& claims, const security::Claims::Node& node,
             std::vector<std::string>& path, std::vector<security::JwtClaim>& out) {
  using Type = security::Claims::Type;
  for (const auto& child : claims.children(node)) {
    path.push_back(child.key);
    if (child.type == Type::kObject) {
      flatten(claims, child, path, out);
    } else if (child.type == Type::kString || child.type == Type::kArray) {
      security::JwtClaim claim{path, {}};
      if (child.type == Type::kString) claim.values.push_back(child.text);
      for (const auto& e : child.type == Type::kArray ? claims.children(child)
                                                      : std::span<const security::Claims::Node>())
        if (e.type == Type::kString) claim.values.push_back(e.text);
      out.push_back(std::move(claim));
    }
    path.pop_back();
  }
}

void fill_jwt_view(const security::VerifiedJwt& token, JwtView& view) {
  std::vector<std::string> path;
  if (token.claims.root().type == security::Claims::Type::kObject)
    flatten(token.claims, token.claims.root(), path, view.claims);
  view.identity.issuer = token.issuer;
  view.identity.subject = token.subject;
  view.identity.presenter = token.presenter;
  view.identity.audiences = token.audiences;
  view.identity.claims = view.claims;
}

}  // namespace

// The request's attributes as the authorization engine reads them. Views
// into the request, the peer's certificate and `authn` (the verified tokens),
// so it lives where it is made: on the stack, or on the heap when a CUSTOM
// policy may need it again after the ext_authz call.
struct SecurityState {
  security::AuthnResult authn;
  security::AuthzRequest request;
  security::PeerIdentity identity;
  JwtView jwt;
};

SecurityResult::SecurityResult() = default;
SecurityResult::SecurityResult(SecurityResult&&) noexcept = default;
SecurityResult& SecurityResult::operator=(SecurityResult&&) noexcept = default;
SecurityResult::~SecurityResult() = default;

namespace {

// The request's attributes for the authorization engine, into `st.request`
// (with views into `head`, `peer`'s certificate and `st`).
void describe_request(const CompiledSecurity& security, const RequestHead& head,
                      const SecurityPeer& peer, SecurityState& st) {
  security::AuthzRequest& request = st.request;
  request = security::authz_request(head);
  request.sni = peer.sni;
  if (auto ip = security::IpAddress::parse(peer.ip)) request.peer = ip->unmapped();
  request.remote =
      security::remote_address(request.peer, head.headers, security.num_trusted_proxies);
  if (peer.certificate && (!peer.certificate->uris.empty() || !peer.certificate->dns.empty() ||
                           !peer.certificate->subject.empty())) {
    st.identity.uri_sans = peer.certificate->uris;
    st.identity.dns_sans = peer.certificate->dns;
    st.identity.subject = peer.certificate->subject;
    request.peer_identity = &st.identity;
  }
  if (const auto* t = st.authn.principal()) {
    fill_jwt_view(*t, st.jwt);
    request.jwt = &st.jwt.identity;
  }
}

void refuse_if_denied(const security::AuthzDecision& decision, SecurityResult& out) {
  if (decision.denied())
    out.refused = SecurityRefusal{Response{.status = security::kAuthzDeniedStatus,
                                           .body = std::string(security::kAuthzDeniedBody)},
                                  std::string(decision.details())};
}

}  // namespace

SecurityResult check_security(const CompiledSecurity& security, RequestHead& head,
                              const SecurityPeer& peer, std::chrono::system_clock::time_point now) {
  SecurityResult out;
  // Only a gateway with a CUSTOM policy pays for keeping the state.
  std::optional<SecurityState> local;
  SecurityState* st;
  if (security.authz.custom_provider().empty()) {
    st = &local.emplace();
  } else {
    out.pending = std::make_unique<SecurityState>();
    st = out.pending.get();
  }
  security::AuthnResult& authn = st->authn;
  if (security.authn) {
    authn = security.authn->authenticate(head, now);
    if (authn.kind == security::AuthnResult::Kind::kRejected) {
      out.refused = SecurityRefusal{std::move(authn.response), jwt_details(authn.status)};
      out.pending.reset();
      return out;
    }
  }
  if (security.authz.empty()) {
    if (const auto* t = authn.principal()) out.principal = t->principal;
    out.pending.reset();
    return out;
  }
  describe_request(security, head, peer, *st);
  if (const auto* t = authn.principal()) out.principal = t->principal;
  security::AuthzDecision decision = security.authz.evaluate(st->request);
  if (decision.verdict == security::AuthzVerdict::ext_authz) {
    // compile() checked that every CUSTOM policy names a provider.
    out.ext_authz = security.find_ext_authz(decision.provider);
    if (!out.ext_authz) out.refused = SecurityRefusal{Response{.status = 403}, "ext_authz_error"};
    return out;
  }
  out.pending.reset();
  refuse_if_denied(decision, out);
  return out;
}

void finish_security(const CompiledSecurity& security, SecurityResult& result) {
  result.ext_authz = nullptr;
  if (!result.pending) return;
  // The provider may have changed headers a condition reads: views, so
  // the request's attributes see them.
  security::AuthzDecision decision =
      security.authz.evaluate(result.pending->request, security::AuthzStage::rbac);
  result.pending.reset();
  refuse_if_denied(decision, result);
}

SecurityExplanation explain_security(const CompiledSecurity& security, RequestHead& head,
                                     const SecurityPeer& peer,
                                     std::chrono::system_clock::time_point now) {
  SecurityExplanation out;
  SecurityState st;
  security::AuthnResult& authn = st.authn;
  if (!security.authn) {
    out.authentication = "no RequestAuthentication applies";
  } else {
    authn = security.authn->authenticate(head, now);
    switch (authn.kind) {
      case security::AuthnResult::Kind::kNoToken:
        out.authentication = "no token: no request principal";
        break;
      case security::AuthnResult::Kind::kVerified:
        out.principal = authn.principal()->principal;
        out.authentication = fmt::format("token verified (issuer \"{}\"): principal \"{}\"",
                                         authn.principal()->issuer, out.principal);
        break;
      case security::AuthnResult::Kind::kRejected:
        out.authentication =
            fmt::format("token rejected: {}", security::jwt_status_text(authn.status));
        out.decision = "not reached: RequestAuthentication refused the request";
        out.status = authn.response.status;
        out.details = jwt_details(authn.status);
        return out;
    }
  }
  if (security.authz.empty()) {
    out.decision = "allowed: no AuthorizationPolicy applies";
    return out;
  }
  describe_request(security, head, peer, st);
  const security::AuthzRequest& request = st.request;
  for (auto& t : security.authz.trace(request))
    out.rules.push_back({fmt::format("{}/{}", t.rule->ns, t.rule->name), t.rule->rule,
                         std::string(security::to_string(t.rule->action)), t.matched,
                         std::move(t.why)});
  security::AuthzDecision d = security.authz.evaluate(request);
  auto which = [](const security::AuthzRuleRef& r) {
    return fmt::format("{} policy {}/{} rules[{}]", security::to_string(r.action), r.ns, r.name,
                       r.rule);
  };
  switch (d.verdict) {
    case security::AuthzVerdict::ext_authz:
      out.decision =
          fmt::format("{} matched: the provider \"{}\" decides", which(*d.rule), d.provider);
      break;
    case security::AuthzVerdict::deny:
      out.status = security::kAuthzDeniedStatus;
      out.details = std::string(d.details());
      out.decision = d.rule ? "denied by " + which(*d.rule)
                            : std::string("denied: ALLOW policies exist and none matched");
      break;
    case security::AuthzVerdict::allow:
      out.decision =
          d.rule ? "allowed by " + which(*d.rule) : std::string("allowed: no policy denied it");
      break;
  }
  if (d.audit) out.decision += fmt::format(" (audited by {})", which(*d.audit));
  return out;
}

}  // namespace sluice
