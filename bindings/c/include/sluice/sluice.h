/* sluice C API: an in-process HTTP gateway configured from Istio YAML.
 *
 * Conventions:
 *   - Handles are opaque; every sluice_*_new has a matching sluice_*_free.
 *   - A function that can fail returns an error as an owned string (NULL on
 *     success): release it with sluice_string_free. Strings returned as
 *     results (explain's JSON, URLs) are owned the same way.
 *   - A gateway is thread-safe: any thread may call any function on it,
 *     except free, which must be the last call.
 */
#ifndef SLUICE_SLUICE_H
#define SLUICE_SLUICE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SLUICE_API __attribute__((visibility("default")))
#else
#define SLUICE_API
#endif

#define SLUICE_VERSION_MAJOR 0
#define SLUICE_VERSION_MINOR 1
#define SLUICE_VERSION_PATCH 0
#define SLUICE_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sluice_config sluice_config;
typedef struct sluice_gateway sluice_gateway;
/* A manual clock, shared by the gateways given it. */
typedef struct sluice_clock sluice_clock;
/* One request as a hook sees it; valid only during the hook call. */
typedef struct sluice_request sluice_request;

/* The library's version, "MAJOR.MINOR.PATCH" (SLUICE_VERSION at build time). */
SLUICE_API const char* sluice_version(void);

SLUICE_API void sluice_string_free(char* s);

/* ---- options -------------------------------------------------------- */

/* Options for a gateway: 1 worker, seed 0 (random), bind 127.0.0.1. */
SLUICE_API sluice_config* sluice_config_new(void);
SLUICE_API void sluice_config_free(sluice_config* config);
SLUICE_API void sluice_config_set_workers(sluice_config* config, unsigned workers);
/* A fixed seed makes weighted splits, fault percentages and load balancing
 * draw the same sequence on every run; 0 draws a random one. */
SLUICE_API void sluice_config_set_seed(sluice_config* config, uint64_t seed);
/* The address Istio Gateway servers listen on (their ports are OS-chosen). */
SLUICE_API void sluice_config_set_bind(sluice_config* config, const char* address);
/* Gateways made with this config read time from `clock` (NULL: the real
 * clocks): timeouts, fault delays, outlier ejections, health checks, JWT
 * expiry. The config and each gateway hold a reference to the clock, so
 * sluice_clock_free may come first. */
SLUICE_API void sluice_config_set_clock(sluice_config* config, sluice_clock* clock);

/* ---- a manual clock --------------------------------------------------- */

/* Time that moves only by sluice_clock_advance; it starts at the real time. */
SLUICE_API sluice_clock* sluice_clock_new_manual(void);
/* Moves the clock forward by `nanoseconds` and returns once every gateway
 * on it has run what is now due. Returns 0 (and moves nothing) for a
 * negative step. Not from inside a hook. */
SLUICE_API int sluice_clock_advance(sluice_clock* clock, int64_t nanoseconds);
/* Nanoseconds advanced so far. */
SLUICE_API int64_t sluice_clock_elapsed(const sluice_clock* clock);
/* Drops this handle's reference. */
SLUICE_API void sluice_clock_free(sluice_clock* clock);

/* Hooks. Each runs on a gateway worker thread, possibly several at once:
 * they must be thread-safe. A request hook returning nonzero answers the
 * request itself with the response set by sluice_request_respond. */
typedef int (*sluice_request_hook)(sluice_request* request, void* user);
typedef void (*sluice_log_hook)(const sluice_request* request, void* user);
/* Before routing; may edit headers and answer. */
SLUICE_API void sluice_config_on_request(sluice_config* config, sluice_request_hook hook,
                                         void* user);
/* After the load balancer's pick, before each attempt; may answer. */
SLUICE_API void sluice_config_on_upstream_chosen(sluice_config* config, sluice_request_hook hook,
                                                 void* user);
/* Before the response head goes down; response headers are editable. */
SLUICE_API void sluice_config_on_response_headers(sluice_config* config, sluice_log_hook hook,
                                                  void* user);
/* Once the exchange is over. */
SLUICE_API void sluice_config_on_log(sluice_config* config, sluice_log_hook hook, void* user);

/* ---- the gateway ---------------------------------------------------- */

/* A gateway serving `yaml` (Istio resources); `config` may be NULL and is
 * copied. On error returns NULL and sets *error (if error is not NULL). */
SLUICE_API sluice_gateway* sluice_gateway_new_yaml(const sluice_config* config, const char* yaml,
                                                   char** error);
/* The same from files or directories (every *.yaml / *.yml inside). */
SLUICE_API sluice_gateway* sluice_gateway_new_files(const sluice_config* config,
                                                    const char* const* paths, size_t count,
                                                    char** error);
/* Starts the worker threads. */
SLUICE_API void sluice_gateway_start(sluice_gateway* gateway);
/* The bound port of a listener, by name or by its declared (Istio server)
 * port written as a number ("8080"); 0 when there is none. */
SLUICE_API uint16_t sluice_gateway_port(const sluice_gateway* gateway, const char* listener);
/* Replaces the configuration whole; an error changes nothing. */
SLUICE_API char* sluice_gateway_apply_yaml(sluice_gateway* gateway, const char* yaml);
/* Why a request would go where it goes, as a JSON object (matched,
 * virtual_host, route, reasons, destination, ...). `headers` holds
 * `header_count` name/value pairs (name0, value0, name1, ...). Returns the
 * JSON, or NULL and sets *error. */
SLUICE_API char* sluice_gateway_explain(const sluice_gateway* gateway, const char* method,
                                        const char* url, const char* const* headers,
                                        size_t header_count, char** error);
/* The gateway's metrics in Prometheus' text format (Istio's names): an
 * owned string, never NULL except when out of memory. */
SLUICE_API char* sluice_gateway_stats(const sluice_gateway* gateway);
/* An upstream's state as a JSON object: name, endpoints (address, healthy,
 * ejected, ejections, active_requests, connections), active_requests,
 * pending_requests, connections, overflows. For Istio YAML the name is
 * Envoy's ("outbound|9080||reviews") or the host alone when it has one
 * port. Returns the JSON, or NULL and sets *error for an unknown upstream. */
SLUICE_API char* sluice_gateway_upstream(const sluice_gateway* gateway, const char* name,
                                         char** error);
/* Drains and stops; idempotent. */
SLUICE_API void sluice_gateway_stop(sluice_gateway* gateway);
/* Stops (if running) and frees. */
SLUICE_API void sluice_gateway_free(sluice_gateway* gateway);

/* ---- a request, inside a hook ----------------------------------------- */

/* Strings returned are valid until the hook returns. */
SLUICE_API const char* sluice_request_method(const sluice_request* request);
SLUICE_API const char* sluice_request_path(const sluice_request* request);
SLUICE_API const char* sluice_request_route(const sluice_request* request);
SLUICE_API const char* sluice_request_upstream(const sluice_request* request);
/* The response status (on_response_headers, on_log); 0 before. */
SLUICE_API uint16_t sluice_request_status(const sluice_request* request);
/* First value of a request header, or NULL. */
SLUICE_API const char* sluice_request_header(const sluice_request* request, const char* name);
/* Replaces a request header (on_request, on_upstream_chosen); in
 * on_response_headers, a response header. Returns 0 where not allowed. */
SLUICE_API int sluice_request_set_header(sluice_request* request, const char* name,
                                         const char* value);
/* on_upstream_chosen: send this attempt to the upstream's endpoint
 * "ip:port" instead of the load balancer's pick; 0 when the upstream has no
 * such endpoint (the pick stands) or outside on_upstream_chosen. */
SLUICE_API int sluice_request_use_endpoint(sluice_request* request, const char* endpoint);
/* on_upstream_chosen: send to another configured upstream (its load
 * balancer picks the endpoint); 0 when unknown or outside that hook. */
SLUICE_API int sluice_request_use_upstream(sluice_request* request, const char* upstream);
/* The endpoint ("ip:port") of the attempt: the pick in on_upstream_chosen,
 * the last attempt's in on_log; "" when none. */
SLUICE_API const char* sluice_request_endpoint(const sluice_request* request);
/* The answer a request hook gives when it returns nonzero. */
SLUICE_API void sluice_request_respond(sluice_request* request, uint16_t status, const char* body);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_SLUICE_H */
