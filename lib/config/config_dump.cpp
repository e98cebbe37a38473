// The running snapshot as JSON (admin /config_dump) and its upstreams as
// plain values. Load-time style code: runs on the admin thread, never on a
// worker.

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "config/snapshot.hpp"
#include "sluice/config_dump.hpp"

namespace sluice {

namespace {

using nlohmann::json;

const char* balancer_name(LoadBalancer lb) {
  switch (lb) {
    case LoadBalancer::round_robin:
      return "ROUND_ROBIN";
    case LoadBalancer::least_request:
      return "LEAST_REQUEST";
    case LoadBalancer::random:
      return "RANDOM";
    case LoadBalancer::passthrough:
      return "PASSTHROUGH";
    case LoadBalancer::consistent_hash:
      return "CONSISTENT_HASH";
  }
  return "?";
}

// notAfter of the first certificate in `pem` as Unix seconds; false when
// the PEM holds none (compile() has already refused a broken one).
bool leaf_not_after(const std::string& pem, int64_t& out) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), int(pem.size())),
                                                BIO_free);
  if (!bio) return false;
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
  if (!cert) return false;
  const ASN1_TIME* t = X509_get0_notAfter(cert.get());
  // Days and seconds from the epoch: ASN1_TIME_diff works on every
  // BoringSSL the Debian package has shipped.
  std::unique_ptr<ASN1_TIME, decltype(&ASN1_TIME_free)> epoch(ASN1_TIME_set(nullptr, 0),
                                                              ASN1_TIME_free);
  int days = 0, secs = 0;
  if (!epoch || !ASN1_TIME_diff(&days, &secs, epoch.get(), t)) return false;
  out = int64_t(days) * 86400 + secs;
  return true;
}

std::string rfc3339(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json listener_json(const ListenerConfig& l, std::chrono::system_clock::time_point now) {
  json servers = json::array();
  int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  for (const auto& s : l.tls_servers) {
    json j = {{"sni_hosts", s.sni_hosts}, {"mode", tls_mode_name(s.mode)}};
    if (int64_t expiry = 0; leaf_not_after(s.certificate_chain, expiry)) {
      j["certificate_expiry"] = rfc3339(expiry);
      j["expires_in_seconds"] = expiry - now_s;
    }
    servers.push_back(std::move(j));
  }
  json passthrough = json::array();
  for (const auto& p : l.passthrough)
    passthrough.push_back(
        {{"sni_hosts", p.sni_hosts}, {"upstream", p.upstream}, {"subset", p.subset}});
  return {{"name", l.name},     {"address", l.address},   {"port", l.port},
          {"router", l.router}, {"tls_servers", servers}, {"passthrough", passthrough}};
}

json route_json(const Route& r) {
  json j = {{"name", r.name}, {"origin", r.origin}};
  if (r.redirect) {
    j["action"] = "redirect";
  } else if (r.direct_response) {
    j["action"] = "direct_response";
    j["status"] = r.direct_response->status;
  } else {
    j["action"] = "forward";
    json d = json::array();
    for (const auto& dest : r.destinations)
      d.push_back({{"upstream", dest.upstream}, {"subset", dest.subset}, {"weight", dest.weight}});
    j["destinations"] = std::move(d);
  }
  if (r.timeout.count() > 0) j["timeout_ms"] = r.timeout.count();
  return j;
}

json router_json(const RouterConfig& r) {
  json hosts = json::array();
  for (const auto& vh : r.virtual_hosts) {
    json routes = json::array();
    for (const auto& route : vh.routes) routes.push_back(route_json(route));
    hosts.push_back({{"name", vh.name}, {"domains", vh.domains}, {"routes", std::move(routes)}});
  }
  return {{"name", r.name}, {"virtual_hosts", std::move(hosts)}};
}

json upstream_json(const UpstreamConfig& u) {
  json endpoints = json::array();
  for (const auto& e : u.endpoints)
    endpoints.push_back(
        {{"address", e.address}, {"port", e.port}, {"labels", e.labels}, {"weight", e.weight}});
  json subsets = json::array();
  for (const auto& s : u.subsets) subsets.push_back({{"name", s.name}, {"labels", s.labels}});
  const auto& p = u.pool;
  json j = {{"name", u.name},
            {"endpoints", std::move(endpoints)},
            {"subsets", std::move(subsets)},
            {"load_balancer", balancer_name(u.load_balancer)},
            {"protocol", u.protocol == UpstreamProtocol::http2 ? "HTTP2" : "HTTP1"},
            {"pool",
             {{"connect_timeout_ms", p.connect_timeout.count()},
              {"idle_timeout_ms", p.idle_timeout.count()},
              {"max_connections", p.max_connections},
              {"max_pending_requests", p.max_pending_requests},
              {"max_requests_per_connection", p.max_requests_per_connection},
              {"max_retries", p.max_retries},
              {"max_requests", p.max_requests},
              {"max_concurrent_streams", p.max_concurrent_streams}}}};
  if (u.outlier_detection) {
    const auto& od = *u.outlier_detection;
    j["outlier_detection"] = {{"consecutive_5xx", od.consecutive_5xx},
                              {"consecutive_gateway_errors", od.consecutive_gateway_errors},
                              {"interval_ms", od.interval.count()},
                              {"base_ejection_time_ms", od.base_ejection_time.count()},
                              {"max_ejection_percent", od.max_ejection_percent}};
  }
  if (u.health_check)
    j["health_check"] = {{"path", u.health_check->path},
                         {"interval_ms", u.health_check->interval.count()},
                         {"timeout_ms", u.health_check->timeout.count()}};
  if (u.tls)
    j["tls"] = {{"mode", u.tls->mode == UpstreamTls::Mode::simple ? "SIMPLE" : "MUTUAL"},
                {"sni", u.tls->sni}};
  return j;
}

}  // namespace

std::string config_dump_json(const Snapshot& snapshot, std::chrono::system_clock::time_point now) {
  json listeners = json::array();
  for (const auto& l : snapshot.listeners) listeners.push_back(listener_json(l.config, now));
  json routers = json::array();
  if (snapshot.source)
    for (const auto& r : snapshot.source->routers) routers.push_back(router_json(r));
  json upstreams = json::array();
  for (const auto& u : snapshot.upstreams) upstreams.push_back(upstream_json(u.config));
  json dump = {
      {"listeners", std::move(listeners)},
      {"routers", std::move(routers)},
      {"upstreams", std::move(upstreams)},
  };
  // Replacement, not an exception, for bytes that are not UTF-8.
  return dump.dump(2, ' ', false, json::error_handler_t::replace);
}

std::vector<UpstreamConfig> snapshot_upstreams(const Snapshot& snapshot) {
  std::vector<UpstreamConfig> out;
  out.reserve(snapshot.upstreams.size());
  for (const auto& u : snapshot.upstreams) out.push_back(u.config);
  return out;
}

const char* tls_mode_name(TlsServer::Mode m) {
  switch (m) {
    case TlsServer::Mode::simple:
      return "SIMPLE";
    case TlsServer::Mode::mutual:
      return "MUTUAL";
    case TlsServer::Mode::optional_mutual:
      return "OPTIONAL_MUTUAL";
  }
  return "?";
}

}  // namespace sluice
