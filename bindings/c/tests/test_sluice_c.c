/* The C API end to end, compiled as C99: errors as owned strings, a gateway
 * from YAML, port, explain as JSON, apply (rejected and accepted), hooks that
 * rewrite a header and short-circuit a request, stop and free. */
#include <sluice/sluice.h>

#include <arpa/inet.h>
#include <netinet/in.h>
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
  if (failures)
    fprintf(stderr, "%d check(s) failed\n", failures);
  else
    printf("PASS: C API\n");
  return failures ? 1 : 0;
}
