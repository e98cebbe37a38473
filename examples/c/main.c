/* The C API in a few lines: load Istio YAML (the Bookinfo sample), serve it
 * on an OS-chosen port, and ask why `end-user: jason` goes to reviews v2.
 *
 *   cc main.c $(pkg-config --cflags --libs sluice_c)   # or find_package(sluice)
 *   ./a.out path/to/examples/ingress/bookinfo
 */
#include <sluice/sluice.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s ISTIO_YAML_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  char* error = NULL;
  sluice_gateway* gateway =
      sluice_gateway_new_files(NULL, (const char* const*)argv + 1, (size_t)(argc - 1), &error);
  if (!gateway) {
    fprintf(stderr, "invalid configuration: %s\n", error);
    sluice_string_free(error);
    return 1;
  }
  sluice_gateway_start(gateway);
  /* "8080": the port the Istio Gateway server declares. */
  printf("sluice %s serving Bookinfo on 127.0.0.1:%u\n", sluice_version(),
         sluice_gateway_port(gateway, "8080"));

  const char* headers[] = {"end-user", "jason"};
  char* why = sluice_gateway_explain(gateway, "GET", "http://bookinfo.example.com:8080/reviews/1",
                                     headers, 1, &error);
  int ok = why != NULL && strstr(why, "\"subset\":\"v2\"") != NULL;
  printf("%s\n", why ? why : error);
  sluice_string_free(why);
  sluice_string_free(error);
  sluice_gateway_free(gateway); /* stops first */
  return ok ? 0 : 1;
}
