#pragma once
// A child process (sluice-ingress) whose stdout lines and stderr the test
// reads while it runs; killed on destruction if still alive.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/wait.hpp"

namespace sluice::test {

class Child {
 public:
  explicit Child(std::vector<std::string> args) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_reader_ = std::thread([this, fd = out[0]] { pump(fd, true); });
    err_reader_ = std::thread([this, fd = err[0]] { pump(fd, false); });
  }

  ~Child() {
    if (pid_ > 0 && !exit_code_) {
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
    }
    if (out_reader_.joinable()) out_reader_.join();
    if (err_reader_.joinable()) err_reader_.join();
  }

  bool started() const { return pid_ > 0; }
  void signal(int sig) const { kill(pid_, sig); }

  // The first stdout line at or after `from` that starts with `prefix`.
  std::optional<std::string> wait_line(
      const std::string& prefix, size_t from = 0,
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex_);
    std::optional<std::string> found;
    cv_.wait_for(lock, timeout, [&] {
      for (size_t i = from; i < lines_.size(); ++i)
        if (lines_[i].starts_with(prefix)) {
          found = lines_[i];
          return true;
        }
      return closed_out_;
    });
    return found;
  }
  size_t line_count() const {
    std::lock_guard lock(mutex_);
    return lines_.size();
  }
  std::string err() const {
    std::lock_guard lock(mutex_);
    return err_;
  }
  // Waits until stderr contains `text` (stdout and stderr are read apart, so
  // a stdout line can arrive before the stderr text printed before it).
  bool wait_err(const std::string& text,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return err_.find(text) != std::string::npos; });
  }
  std::string out() const {
    std::lock_guard lock(mutex_);
    std::string all;
    for (const auto& l : lines_) all += l + "\n";
    return all;
  }

  // The exit code, or nullopt if it did not exit in time (or died by a signal: -signal).
  // Once it has exited, what it wrote has been read too: out() and err() are
  // whole (the readers see the pipes' end).
  std::optional<int> wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    wait_until(
        [&] {
          int st;
          if (exit_code_) return true;
          if (waitpid(pid_, &st, WNOHANG) == pid_)
            exit_code_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
          return exit_code_.has_value();
        },
        timeout);
    if (exit_code_) {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, timeout, [&] { return closed_out_ && closed_err_; });
    }
    return exit_code_;
  }

 private:
  void pump(int fd, bool is_out) {
    char buf[4096];
    std::string partial;
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      std::lock_guard lock(mutex_);
      if (!is_out) {
        err_.append(buf, static_cast<size_t>(n));
        cv_.notify_all();
        continue;
      }
      partial.append(buf, static_cast<size_t>(n));
      for (size_t nl; (nl = partial.find('\n')) != std::string::npos;) {
        lines_.push_back(partial.substr(0, nl));
        partial.erase(0, nl + 1);
      }
      cv_.notify_all();
    }
    close(fd);
    std::lock_guard lock(mutex_);
    (is_out ? closed_out_ : closed_err_) = true;
    cv_.notify_all();
  }

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::thread out_reader_, err_reader_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  std::string err_;
  bool closed_out_ = false;
  bool closed_err_ = false;
};

}  // namespace sluice::test
