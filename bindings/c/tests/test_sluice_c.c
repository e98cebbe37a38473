/* The C API end to end, compiled as C99: errors as owned strings, a gateway
 * from YAML, port, explain as JSON, apply (rejected and accepted), hooks that
 * rewrite a header and short-circuit a request, stop and free; then a manual
 * clock driving a route timeout, use_endpoint, upstream state and stats. */
#include <sluice/sluice.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

static const char* kYaml =
    "apiVersion: networking.istio.io/v1\n"
    "kind: Gateway\n"
    "metadata: {name: gw}\n"
    "spec:\n"
    "  selector: {istio: ingressgateway}\n"
    "  servers:\n"
    "  - port: {number: 8080, name: http, protocol: HTTP}\n"
    "    hosts: ['*']\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    "metadata: {name: hello}\n"
    "spec:\n"
    "  hosts: ['*']\n"
    "  gateways: [gw]\n"
    "  http:\n"
    "  - name: admin\n"
    "    match: [{uri: {prefix: /admin}}]\n"
    "    directResponse: {status: 403, body: {string: no}}\n"
    "  - name: hello\n"
    "    directResponse: {status: 200, body: {string: hello}}\n";

/* One HTTP/1.1 request with Connection: close; the whole answer in `out`. */
static int fetch(uint16_t port, const char* request, char* out, size_t size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) return -1;
  if (write(fd, request, strlen(request)) < 0) return -1;
  size_t got = 0;
  ssize_t n;
  while (got + 1 < size && (n = read(fd, out + got, size - 1 - got)) > 0) got += (size_t)n;
  out[got] = '\0';
  close(fd);
  return (int)got;
}

static int on_request(sluice_request* r, void* user) {
  ++*(int*)user;
  const char* v = sluice_request_header(r, "x-short-circuit");
  if (v && strcmp(v, "yes") == 0) {
    sluice_request_respond(r, 418, "short-circuited by C\n");
    return 1;
  }
  sluice_request_set_header(r, "x-rewritten", "by-c");
  return 0;
}

/* Shows the rewritten request header on the response. */
static void on_response_headers(const sluice_request* r, void* user) {
  (void)user;
  const char* v = sluice_request_header(r, "x-rewritten");
  sluice_request_set_header((sluice_request*)r, "x-seen", v ? v : "none");
}

/* A listening socket on 127.0.0.1 that never accepts by itself: an
 * upstream that takes connections (the backlog) and never answers. */
static int dead_upstream(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr*)&addr, &len) != 0)
    return -1;
  *port = ntohs(addr.sin_port);
  return fd;
}

/* Waits (bounded, 10 s of real time) for a connection to `fd`; the
 * accepted socket, or -1 if none came. */
static int connection_arrives(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 10000) != 1) return -1;
  return accept(fd, NULL, NULL);
}

static char g_forced[64];
static char g_logged_endpoint[64];

static int force_endpoint(sluice_request* r, void* user) {
  (void)user;
  CHECK(strlen(sluice_request_endpoint(r)) > 0); /* the load balancer's pick */
  CHECK(sluice_request_use_endpoint(r, "10.255.0.1:1") == 0);
  CHECK(sluice_request_use_endpoint(r, g_forced) == 1);
  return 0;
}

static void log_endpoint(const sluice_request* r, void* user) {
  (void)user;
  snprintf(g_logged_endpoint, sizeof g_logged_endpoint, "%s", sluice_request_endpoint(r));
}

/* A route with a 1 s timeout to an upstream that never answers: only the
 * manual clock's advance ends the request (504 UT). on_upstream_chosen sends
 * it to the second endpoint; the upstream state and the stats show it. */
static void test_manual_clock_timeout_endpoint_and_stats(void) {
  uint16_t pa = 0, pb = 0;
  int a = dead_upstream(&pa), b = dead_upstream(&pb);
  CHECK(a >= 0 && b >= 0);
  char yaml[2048];
  snprintf(
      yaml, sizeof yaml,
      "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
      "spec:\n  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ['*']}]\n"
      "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: slow}\n"
      "spec:\n  hosts: [slow]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
      "  resolution: STATIC\n  endpoints:\n"
      "  - {address: 127.0.0.1, ports: {http: %u}}\n  - {address: 127.0.0.1, ports: {http: %u}}\n"
      "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: slow}\n"
      "spec:\n  hosts: ['*']\n  gateways: [gw]\n"
      "  http: [{timeout: 1s, route: [{destination: {host: slow}}]}]\n",
      (unsigned)pa, (unsigned)pb);
  snprintf(g_forced, sizeof g_forced, "127.0.0.1:%u", (unsigned)pb);

  sluice_clock* clock = sluice_clock_new_manual();
  sluice_config* config = sluice_config_new();
  sluice_config_set_clock(config, clock);
  sluice_config_on_upstream_chosen(config, force_endpoint, NULL);
  sluice_config_on_log(config, log_endpoint, NULL);
  char* error = NULL;
  sluice_gateway* g = sluice_gateway_new_yaml(config, yaml, &error);
  sluice_config_free(config);
  CHECK(g != NULL);
  if (!g) {
    fprintf(stderr, "error: %s\n", error ? error : "?");
    sluice_string_free(error);
    sluice_clock_free(clock);
    return;
  }
  sluice_gateway_start(g);
  uint16_t port = sluice_gateway_port(g, "8080");

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(fd, (struct sockaddr*)&addr, sizeof addr) == 0);
  const char* req = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
  /* The request is at the forced endpoint, its timeout armed. */
  int held = connection_arrives(b);
  CHECK(held >= 0);

  char* state = sluice_gateway_upstream(g, "slow", &error);
  CHECK(state != NULL && error == NULL);
  CHECK(state && strstr(state, "\"name\":\"outbound|80||slow\"") != NULL);
  CHECK(state && strstr(state, g_forced) != NULL);
  sluice_string_free(state);
  CHECK(sluice_gateway_upstream(g, "nothing", &error) == NULL && error != NULL);
  sluice_string_free(error);

  CHECK(sluice_clock_advance(clock, -1) == 0);
  CHECK(sluice_clock_elapsed(clock) == 0);
  CHECK(sluice_clock_advance(clock, 2000000000LL) == 1); /* 2 s > the route's 1 s */
  CHECK(sluice_clock_elapsed(clock) == 2000000000LL);
  char answer[4096];
  size_t got = 0;
  ssize_t n;
  struct pollfd p = {fd, POLLIN, 0};
  while (got + 1 < sizeof answer && poll(&p, 1, 10000) == 1 &&
         (n = read(fd, answer + got, sizeof answer - 1 - got)) > 0)
    got += (size_t)n;
  answer[got] = '\0';
  close(fd);
  if (held >= 0) close(held);
  CHECK(strncmp(answer, "HTTP/1.1 504", 12) == 0);
  if (strncmp(answer, "HTTP/1.1 504", 12) != 0) fprintf(stderr, "got: %s\n", answer);

  sluice_gateway_stop(g); /* on_log has run once stop returns */
  CHECK(strcmp(g_logged_endpoint, g_forced) == 0);
  char* stats = sluice_gateway_stats(g);
  CHECK(stats != NULL);
  CHECK(stats && strstr(stats, "istio_requests_total{") != NULL);
  CHECK(stats && strstr(stats, "response_code=\"504\"") != NULL);
  CHECK(stats && strstr(stats, "response_flags=\"UT\"") != NULL);
  sluice_string_free(stats);
  sluice_clock_free(clock); /* before the gateway: it holds its own reference */
  sluice_gateway_free(g);
  close(a);
  close(b);
}

int main(void) {
  CHECK(strcmp(sluice_version(), SLUICE_VERSION) == 0);

  char* error = NULL;
  sluice_gateway* bad =
      sluice_gateway_new_yaml(NULL,
                              "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: "
                              "{name: x}\nspec: {http: 3}\n",
                              &error);
  CHECK(bad == NULL);
  CHECK(error != NULL && strlen(error) > 0);
  if (error) fprintf(stderr, "expected error: %s\n", error);
  sluice_string_free(error);

  int calls = 0;
  sluice_config* config = sluice_config_new();
  sluice_config_set_seed(config, 42);
  sluice_config_on_request(config, on_request, &calls);
  sluice_config_on_response_headers(config, on_response_headers, NULL);
  sluice_gateway* g = sluice_gateway_new_yaml(config, kYaml, &error);
  sluice_config_free(config);
  CHECK(g != NULL && error == NULL);
  if (!g) return 1;
  sluice_gateway_start(g);
  uint16_t port = sluice_gateway_port(g, "8080");
  CHECK(port != 0 && port != 8080);
  CHECK(sluice_gateway_port(g, "9999") == 0);

  char* why = sluice_gateway_explain(g, "GET", "http://example.com:8080/admin/x", NULL, 0, &error);
  CHECK(why != NULL && strstr(why, "\"rule_name\":\"admin\"") != NULL);
  sluice_string_free(why);
  why = sluice_gateway_explain(g, "GET", "http://example.com:8080/", NULL, 0, &error);
  CHECK(why != NULL && strstr(why, "\"rule_name\":\"hello\"") != NULL &&
        strstr(why, "\"reasons\":[{") != NULL);
  sluice_string_free(why);
  why = sluice_gateway_explain(g, "GET", "not a url", NULL, 0, &error);
  CHECK(why == NULL && error != NULL);
  sluice_string_free(error);

  char answer[4096];
  CHECK(fetch(port, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", answer,
              sizeof answer) > 0);
  CHECK(strncmp(answer, "HTTP/1.1 200", 12) == 0);
  CHECK(strstr(answer, "x-seen: by-c\r\n") != NULL);
  CHECK(fetch(port,
              "GET / HTTP/1.1\r\nHost: a\r\nx-short-circuit: yes\r\nConnection: close\r\n\r\n",
              answer, sizeof answer) > 0);
  CHECK(strncmp(answer, "HTTP/1.1 418", 12) == 0);
  CHECK(strstr(answer, "short-circuited by C") != NULL);
  CHECK(calls == 2);

  /* A rejected apply names the field and changes nothing. */
  char* rejected = sluice_gateway_apply_yaml(
      g,
      "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: broken}\n"
      "spec: {hosts: ['*'], gateways: [gw], http: [{match: [{uri: {regex: '('}}], directResponse: "
      "{status: 200}}]}\n");
  CHECK(rejected != NULL && strstr(rejected, "broken") != NULL);
  if (rejected) fprintf(stderr, "expected error: %s\n", rejected);
  sluice_string_free(rejected);
  CHECK(sluice_gateway_port(g, "8080") == port);
  CHECK(fetch(port, "GET /admin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", answer,
              sizeof answer) > 0);
  CHECK(strncmp(answer, "HTTP/1.1 403", 12) == 0);

  sluice_gateway_stop(g);
  sluice_gateway_stop(g); /* idempotent */
  sluice_gateway_free(g);

  test_manual_clock_timeout_endpoint_and_stats();
  if (failures)
    fprintf(stderr, "%d check(s) failed\n", failures);
  else
    printf("PASS: C API\n");
  return failures ? 1 : 0;
}
