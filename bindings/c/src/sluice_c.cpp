// The C API (include/sluice/sluice.h) over bindings/core. Nothing here may
// throw across the C boundary: every entry point catches.

#include "sluice/sluice.h"

#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "embedded.hpp"

static_assert(
    std::string_view(SLUICE_VERSION) == SLUICE_PROJECT_VERSION,
    "bindings/c/include/sluice/sluice.h: SLUICE_VERSION differs from the project's version");

struct sluice_clock {
  std::shared_ptr<sluice::embed::ManualClock> clock;
};

struct sluice_config {
  std::shared_ptr<sluice::embed::ManualClock> clock;
  unsigned workers = 1;
  uint64_t seed = 0;
  std::string bind = "127.0.0.1";
  sluice_request_hook on_request = nullptr;
  void* on_request_user = nullptr;
  sluice_request_hook on_upstream = nullptr;
  void* on_upstream_user = nullptr;
  sluice_log_hook on_response_headers = nullptr;
  void* on_response_headers_user = nullptr;
  sluice_log_hook on_log = nullptr;
  void* on_log_user = nullptr;
};

struct sluice_gateway {
  std::unique_ptr<sluice::embed::Embedded> embedded;
};

struct sluice_request {
  sluice::RequestContext* ctx;
  sluice::ResponseHead* response;  // on_response_headers only
  sluice::PeerChoice* peer;        // on_upstream_chosen only
  bool writable;
  std::optional<sluice::Response> answer;
  // Backs every string returned during the hook (valid until it returns).
  std::deque<std::string> strings;

  const char* keep(std::string_view s) { return strings.emplace_back(s).c_str(); }
};

namespace {

char* owned(std::string_view s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (!out) return nullptr;
  std::memcpy(out, s.data(), s.size());
  out[s.size()] = '\0';
  return out;
}

void set_error(char** error, std::string_view message) {
  if (error) *error = owned(message);
}

class CHooks final : public sluice::Hooks {
 public:
  explicit CHooks(const sluice_config& c) : c_(c) {}

  std::optional<sluice::Response> on_request(sluice::RequestContext& ctx) override {
    if (!c_.on_request) return std::nullopt;
    sluice_request r{&ctx, nullptr, nullptr, true, {}, {}};
    if (c_.on_request(&r, c_.on_request_user) && r.answer) return std::move(r.answer);
    return std::nullopt;
  }
  std::optional<sluice::Response> upstream_peer(sluice::RequestContext& ctx,
                                                sluice::PeerChoice& peer) override {
    if (!c_.on_upstream) return std::nullopt;
    sluice_request r{&ctx, nullptr, &peer, true, {}, {}};
    if (c_.on_upstream(&r, c_.on_upstream_user) && r.answer) return std::move(r.answer);
    return std::nullopt;
  }
  void on_response_headers(sluice::RequestContext& ctx, sluice::ResponseHead& head) override {
    if (!c_.on_response_headers) return;
    sluice_request r{&ctx, &head, nullptr, false, {}, {}};
    c_.on_response_headers(&r, c_.on_response_headers_user);
  }
  void on_log(const sluice::RequestContext& ctx) override {
    if (!c_.on_log) return;
    // const_cast: writable is false, so nothing edits it.
    sluice_request r{const_cast<sluice::RequestContext*>(&ctx), nullptr, nullptr, false, {}, {}};
    c_.on_log(&r, c_.on_log_user);
  }

 private:
  sluice_config c_;
};

sluice::embed::Options options_of(const sluice_config* config) {
  sluice_config c = config ? *config : sluice_config{};
  sluice::embed::Options o;
  o.workers = c.workers ? c.workers : 1;
  o.seed = c.seed;
  o.bind = c.bind;
  o.manual_clock = c.clock;
  if (c.on_request || c.on_upstream || c.on_response_headers || c.on_log)
    o.hooks = std::make_shared<CHooks>(c);
  return o;
}

template <typename Apply>
sluice_gateway* make_gateway(const sluice_config* config, char** error, Apply apply) {
  try {
    auto g = std::make_unique<sluice_gateway>();
    g->embedded = std::make_unique<sluice::embed::Embedded>(options_of(config));
    if (sluice::Status s = apply(*g->embedded); !s) {
      set_error(error, s.error().to_string());
      return nullptr;
    }
    if (error) *error = nullptr;
    return g.release();
  } catch (const std::exception& e) {
    set_error(error, e.what());
    return nullptr;
  }
}

}  // namespace

extern "C" {

const char* sluice_version(void) {
  return sluice::embed::version();
}
void sluice_string_free(char* s) {
  std::free(s);
}

sluice_config* sluice_config_new(void) {
  return new (std::nothrow) sluice_config();
}
void sluice_config_free(sluice_config* config) {
  delete config;
}
void sluice_config_set_workers(sluice_config* config, unsigned workers) {
  config->workers = workers;
}
void sluice_config_set_seed(sluice_config* config, uint64_t seed) {
  config->seed = seed;
}
void sluice_config_set_bind(sluice_config* config, const char* address) {
  config->bind = address ? address : "";
}
void sluice_config_set_clock(sluice_config* config, sluice_clock* clock) {
  config->clock = clock ? clock->clock : nullptr;
}

sluice_clock* sluice_clock_new_manual(void) {
  try {
    return new sluice_clock{std::make_shared<sluice::embed::ManualClock>()};
  } catch (...) {
    return nullptr;
  }
}
int sluice_clock_advance(sluice_clock* clock, int64_t nanoseconds) {
  try {
    return clock->clock->advance(std::chrono::nanoseconds(nanoseconds)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}
int64_t sluice_clock_elapsed(const sluice_clock* clock) {
  return clock->clock->elapsed().count();
}
void sluice_clock_free(sluice_clock* clock) {
  delete clock;
}

void sluice_config_on_request(sluice_config* config, sluice_request_hook hook, void* user) {
  config->on_request = hook;
  config->on_request_user = user;
}
void sluice_config_on_upstream_chosen(sluice_config* config, sluice_request_hook hook, void* user) {
  config->on_upstream = hook;
  config->on_upstream_user = user;
}
void sluice_config_on_response_headers(sluice_config* config, sluice_log_hook hook, void* user) {
  config->on_response_headers = hook;
  config->on_response_headers_user = user;
}
void sluice_config_on_log(sluice_config* config, sluice_log_hook hook, void* user) {
  config->on_log = hook;
  config->on_log_user = user;
}

sluice_gateway* sluice_gateway_new_yaml(const sluice_config* config, const char* yaml,
                                        char** error) {
  std::string text = yaml ? yaml : "";
  return make_gateway(config, error,
                      [&](sluice::embed::Embedded& e) { return e.apply_yaml(text); });
}

sluice_gateway* sluice_gateway_new_files(const sluice_config* config, const char* const* paths,
                                         size_t count, char** error) {
  std::vector<std::string> list(paths, paths + count);
  return make_gateway(config, error,
                      [&](sluice::embed::Embedded& e) { return e.apply_paths(list); });
}

void sluice_gateway_start(sluice_gateway* gateway) {
  gateway->embedded->start();
}

uint16_t sluice_gateway_port(const sluice_gateway* gateway, const char* listener) {
  try {
    return gateway->embedded->port(listener ? listener : "");
  } catch (...) {
    return 0;
  }
}

char* sluice_gateway_apply_yaml(sluice_gateway* gateway, const char* yaml) {
  try {
    sluice::Status s = gateway->embedded->apply_yaml(yaml ? yaml : "");
    return s ? nullptr : owned(s.error().to_string());
  } catch (const std::exception& e) {
    return owned(e.what());
  }
}

char* sluice_gateway_explain(const sluice_gateway* gateway, const char* method, const char* url,
                             const char* const* headers, size_t header_count, char** error) {
  try {
    std::vector<std::pair<std::string, std::string>> hs;
    for (size_t i = 0; i < header_count; ++i) hs.emplace_back(headers[2 * i], headers[2 * i + 1]);
    auto r = gateway->embedded->explain(method ? method : "GET", url ? url : "", hs);
    if (!r) {
      set_error(error, r.error().to_string());
      return nullptr;
    }
    if (error) *error = nullptr;
    return owned(r.value().dump());
  } catch (const std::exception& e) {
    set_error(error, e.what());
    return nullptr;
  }
}

char* sluice_gateway_stats(const sluice_gateway* gateway) {
  try {
    return owned(gateway->embedded->prometheus());
  } catch (...) {
    return nullptr;
  }
}

char* sluice_gateway_upstream(const sluice_gateway* gateway, const char* name, char** error) {
  try {
    auto r = gateway->embedded->upstream(name ? name : "");
    if (!r) {
      set_error(error, r.error().to_string());
      return nullptr;
    }
    if (error) *error = nullptr;
    return owned(r.value().dump());
  } catch (const std::exception& e) {
    set_error(error, e.what());
    return nullptr;
  }
}

void sluice_gateway_stop(sluice_gateway* gateway) {
  gateway->embedded->stop();
}

void sluice_gateway_free(sluice_gateway* gateway) {
  delete gateway;
}

const char* sluice_request_method(const sluice_request* r) {
  return r->ctx->request.method.c_str();
}

const char* sluice_request_path(const sluice_request* r) {
  return const_cast<sluice_request*>(r)->keep(r->ctx->request.path());
}

const char* sluice_request_route(const sluice_request* r) {
  return const_cast<sluice_request*>(r)->keep(r->ctx->route);
}

const char* sluice_request_upstream(const sluice_request* r) {
  return const_cast<sluice_request*>(r)->keep(r->peer ? r->peer->upstream() : r->ctx->upstream);
}

uint16_t sluice_request_status(const sluice_request* r) {
  return r->response ? r->response->status : r->ctx->response_status;
}

const char* sluice_request_header(const sluice_request* r, const char* name) {
  auto v = r->ctx->request.headers.get(name ? name : "");
  if (!v) return nullptr;
  return const_cast<sluice_request*>(r)->keep(*v);
}

int sluice_request_set_header(sluice_request* r, const char* name, const char* value) {
  if (!name || !value) return 0;
  try {
    if (r->response) {
      r->response->headers.set(name, value);
      return 1;
    }
    if (!r->writable) return 0;
    r->ctx->request.headers.set(name, value);
    return 1;
  } catch (...) {
    return 0;
  }
}

int sluice_request_use_endpoint(sluice_request* r, const char* endpoint) {
  if (!r->peer || !endpoint) return 0;
  try {
    return r->peer->use_endpoint(std::string_view(endpoint)) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int sluice_request_use_upstream(sluice_request* r, const char* upstream) {
  if (!r->peer || !upstream) return 0;
  try {
    return r->peer->use_upstream(upstream) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

const char* sluice_request_endpoint(const sluice_request* r) {
  return const_cast<sluice_request*>(r)->keep(r->peer ? r->peer->endpoint_key() : r->ctx->endpoint);
}

void sluice_request_respond(sluice_request* r, uint16_t status, const char* body) {
  sluice::Response resp;
  resp.status = status;
  resp.body = body ? body : "";
  r->answer = std::move(resp);
}

}  // extern "C"
