// Opens COUNT keep-alive connections to 127.0.0.1:PORT, sends one GET on each
// and reads its whole response, then holds them all open (idle) for HOLD
// seconds or until killed. Prints "ready <open>" once every connection has
// had its response, so the caller can read the proxy's RSS at that moment.
//
//   sluice_idle_conns PORT COUNT HOLD_SECONDS [PATH]

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

// Reads one response (head + Content-Length body); 0 on success.
static int read_response(int fd) {
  char buf[65536];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
    if (n <= 0) return -1;
    have += (size_t)n;
    buf[have] = '\0';
    char* end = strstr(buf, "\r\n\r\n");
    if (!end) {
      if (have == sizeof(buf) - 1) return -1;
      continue;
    }
    size_t head_len = (size_t)(end - buf) + 4;
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0) return -1;
    long length = -1;
    for (char* line = strstr(buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
      if (strncasecmp(line + 2, "content-length:", 15) == 0) length = strtol(line + 17, NULL, 10);
    }
    if (length < 0) return -1;  // the benchmark origin always sends one
    size_t want = head_len + (size_t)length;
    while (have < want) {
      // Bodies larger than the buffer: drain them in place.
      size_t room = sizeof(buf) - 1;
      n = read(fd, buf, room < want - have ? room : want - have);
      if (n <= 0) return -1;
      have += (size_t)n;
    }
    return 0;
  }
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s PORT COUNT HOLD_SECONDS [PATH]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]);
  int count = atoi(argv[2]);
  int hold = atoi(argv[3]);
  const char* path = argc > 4 ? argv[4] : "/";

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  char request[512];
  int request_len = snprintf(
      request, sizeof(request),
      "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: idle-conns\r\n\r\n", path, port);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int* fds = calloc((size_t)count, sizeof(int));
  if (!fds) return 1;
  int open_count = 0;
  for (int i = 0; i < count; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      fprintf(stderr, "socket %d: %s\n", i, strerror(errno));
      break;
    }
    // A bound on every step, so a stuck proxy cannot hang the harness.
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0 ||
        write(fd, request, (size_t)request_len) != request_len || read_response(fd) != 0) {
      fprintf(stderr, "connection %d failed: %s\n", i, strerror(errno));
      close(fd);
      break;
    }
    fds[open_count++] = fd;
  }
  printf("ready %d\n", open_count);
  fflush(stdout);
  if (open_count == count) sleep((unsigned)hold);
  for (int i = 0; i < open_count; ++i) close(fds[i]);
  free(fds);
  return open_count == count ? 0 : 1;
}
