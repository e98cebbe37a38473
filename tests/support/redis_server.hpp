#pragma once
// A redis-server child process owned by a test (Debian's redis-server,
// installed by scripts/install-deps.sh): a free 127.0.0.1 port, a temporary
// directory, no persistence; killed and removed by the destructor or stop().

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "support/ports.hpp"
#include "support/wait.hpp"

extern char** environ;

namespace sluice::test {

// Sends PING on a fresh connection and expects +PONG (blocking, bounded by
// a receive timeout): the readiness probe for a starting server.
inline bool redis_ping(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::write(fd, "PING\r\n", 6) == 6) {
    char buf[16] = {};
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ok = n >= 5 && std::string_view(buf, 5) == "+PONG";
  }
  ::close(fd);
  return ok;
}

// A redis-server child process owned by the test.
class RedisServer {
 public:
  RedisServer() {
    char templ[] = "/tmp/sluice-redis-XXXXXX";
    REQUIRE(::mkdtemp(templ) != nullptr);
    dir_ = templ;
    // Redis cannot listen on port 0: take a free port from the OS, release
    // it and hand it to redis-server. Another process may grab it in
    // between, so a failed start tries again with a new port.
    for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) {
      uint16_t port = 0;
      {
        test::LoopbackPort probe;
        port = probe.port();
      }
      if (start(port)) port_ = port;
    }
    REQUIRE_MESSAGE(pid_ > 0, "could not start redis-server (scripts/install-deps.sh installs it)");
  }
  ~RedisServer() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  uint16_t port() const { return port_; }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

 private:
  bool start(uint16_t port) {
    std::vector<std::string> args{
        "redis-server", "--port",    std::to_string(port), "--bind",      "127.0.0.1",
        "--save",       "",          "--appendonly",       "no",          "--dir",
        dir_,           "--logfile", dir_ + "/redis.log",  "--daemonize", "no"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int rc = ::posix_spawnp(&pid, "redis-server", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return false;
    pid_ = pid;
    bool exited = false;
    bool up = test::wait_until(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            exited = true;  // e.g. the port was taken meanwhile
            return true;
          }
          return redis_ping(port);
        },
        std::chrono::seconds(10));
    if (up && !exited) return true;
    if (!exited) stop();
    pid_ = -1;
    return false;
  }

  std::string dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

}  // namespace sluice::test
