// The access-log writer (lib/telemetry/log_writer): lines reach a real
// file, rotation by rename + reopen, lines dropped and counted when the
// writer is held back, none lost when it keeps up.

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/temp_dir.hpp"
#include "support/wait.hpp"
#include "telemetry/log_writer.hpp"

namespace test_log_writer {

using namespace sluice;
using namespace sluice::telemetry;
using sluice::test::read_file;
using sluice::test::TempDir;
using sluice::test::wait_until;

namespace {

size_t count_lines(const std::string& text) {
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// Holds the writer thread in before_write until released.
struct Gate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  bool entered = false;
  void wait() {
    std::unique_lock lock(m);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
  }
  void wait_entered() {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return entered; });
  }
  void release() {
    std::lock_guard lock(m);
    open = true;
    cv.notify_all();
  }
};

}  // namespace

TEST_CASE("log writer: lines from several shards reach the file, none lost") {
  TempDir tmp;
  std::string path = tmp.file("access.log");
  auto w = LogWriter::open(path, {.shards = 4}, "test");
  REQUIRE(w.ok());
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) (*w)->append(t, "shard " + std::to_string(t) + " line\n");
    });
  for (auto& t : threads) t.join();
  (*w)->flush();
  std::string text = read_file(path);
  CHECK(count_lines(text) == 8000);
  CHECK((*w)->lines_written() == 8000);
  CHECK((*w)->lines_dropped() == 0);
  for (size_t t = 0; t < 4; ++t) {
    std::string needle = "shard " + std::to_string(t) + " line\n";
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
      ++n;
    CHECK(n == 2000);
  }
}

TEST_CASE("log writer: the destructor writes what is pending") {
  TempDir tmp;
  std::string path = tmp.file("a.log");
  {
    auto w = LogWriter::open(path, {}, "test");
    REQUIRE(w.ok());
    for (int i = 0; i < 100; ++i) (*w)->append(0, "x\n");
  }
  CHECK(count_lines(read_file(path)) == 100);
}

TEST_CASE("log writer: rotation by rename and reopen") {
  TempDir tmp;
  std::string path = tmp.file("access.log");
  auto w = LogWriter::open(path, {}, "test");
  REQUIRE(w.ok());
  (*w)->append(0, "before\n");
  (*w)->flush();
  std::filesystem::rename(path, tmp.file("access.log.1"));
  (*w)->append(0, "still old\n");  // written before the reopen: the renamed file
  (*w)->flush();
  (*w)->reopen();
  (*w)->append(0, "after\n");
  (*w)->flush();
  CHECK(read_file(tmp.file("access.log.1")) == "before\nstill old\n");
  CHECK(read_file(path) == "after\n");
  CHECK((*w)->reopens() == 1);
}

// Buffered as Envoy and Istio do (a flush interval, 64 KiB): a worker's
// line costs an append, and the file sees one write() per batch. An hour
// is an interval no test outlives, so only the size bound and flush()
// can write here.
TEST_CASE("log writer: with a flush interval, lines wait for the size bound or flush()") {
  TempDir tmp;
  std::string path = tmp.file("access.log");
  std::atomic<int> batches{0};
  auto w = LogWriter::open(path,
                           {.before_write = [&] { ++batches; },
                            .flush_interval = std::chrono::hours(1),
                            .flush_bytes = 250},
                           "test");
  REQUIRE(w.ok());
  std::string line(100, 'b');
  line.back() = '\n';
  (*w)->append(0, line);
  (*w)->append(0, line);  // 200 bytes: under the bound, nothing wakes the writer
  CHECK(batches.load() == 0);
  CHECK(read_file(path).empty());
  (*w)->append(0, line);  // 300: the writer wakes without anyone flushing
  CHECK(wait_until([&] { return (*w)->lines_written() == 3; }));
  CHECK(batches.load() == 1);
  (*w)->append(0, "tail\n");
  (*w)->flush();
  CHECK((*w)->lines_written() == 4);
  CHECK(count_lines(read_file(path)) == 4);
}

TEST_CASE("log writer: a pending batch goes out when the flush interval ends") {
  TempDir tmp;
  std::string path = tmp.file("access.log");
  auto w = LogWriter::open(path, {.flush_interval = std::chrono::milliseconds(5)}, "test");
  REQUIRE(w.ok());
  (*w)->append(0, "one\n");  // far below 64 KiB: only the interval writes it
  CHECK(wait_until([&] { return read_file(path) == "one\n"; }));
}

TEST_CASE("log writer: buffered lines logged before a reopen stay in the renamed file") {
  TempDir tmp;
  std::string path = tmp.file("access.log");
  auto w = LogWriter::open(path, {.flush_interval = std::chrono::hours(1)}, "test");
  REQUIRE(w.ok());
  (*w)->append(0, "old\n");
  std::filesystem::rename(path, tmp.file("access.log.1"));
  (*w)->reopen();
  (*w)->flush();
  (*w)->append(0, "new\n");
  (*w)->flush();
  CHECK(read_file(tmp.file("access.log.1")) == "old\n");
  CHECK(read_file(path) == "new\n");
}

TEST_CASE("log writer: the destructor writes buffered lines") {
  TempDir tmp;
  std::string path = tmp.file("a.log");
  {
    auto w = LogWriter::open(path, {.flush_interval = std::chrono::hours(1)}, "test");
    REQUIRE(w.ok());
    (*w)->append(0, "kept\n");
  }
  CHECK(read_file(path) == "kept\n");
}

TEST_CASE("log writer: a reopen with no line pending still creates the new file") {
  TempDir tmp;
  std::string path = tmp.file("access.log");
  auto w = LogWriter::open(path, {}, "test");
  REQUIRE(w.ok());
  std::filesystem::rename(path, tmp.file("old.log"));
  CHECK_FALSE(std::filesystem::exists(path));
  (*w)->reopen();
  (*w)->flush();
  CHECK(std::filesystem::exists(path));
}

TEST_CASE("log writer: a held-back writer drops and counts lines past the bound") {
  TempDir tmp;
  std::string path = tmp.file("access.log");
  Gate gate;
  std::string line(100, 'a');
  line.back() = '\n';
  auto w = LogWriter::open(
      path, {.shards = 2, .shard_bytes = 1000, .before_write = [&] { gate.wait(); }}, "test");
  REQUIRE(w.ok());
  // The first line wakes the writer, which takes it and stops at the gate.
  (*w)->append(0, line);
  gate.wait_entered();
  // Now the shards fill: 10 lines of 100 bytes fit in each, the rest drop.
  for (int i = 0; i < 25; ++i) (*w)->append(0, line);
  for (int i = 0; i < 12; ++i) (*w)->append(1, line);
  CHECK((*w)->lines_dropped() == 15 + 2);
  gate.release();
  (*w)->flush();
  CHECK((*w)->lines_written() == 1 + 10 + 10);
  CHECK(count_lines(read_file(path)) == 21);
}

TEST_CASE("log writer: a path that cannot be opened is an error naming it") {
  auto w = LogWriter::open("/nonexistent-dir/x/access.log", {}, "GatewayConfig");
  REQUIRE_FALSE(w.ok());
  CHECK(w.error().to_string().find("/nonexistent-dir/x/access.log") != std::string::npos);
  CHECK(w.error().object == "GatewayConfig");
}

TEST_CASE("log writer: - writes to standard output") {
  auto w = LogWriter::open("-", {}, "test");
  REQUIRE(w.ok());
  CHECK((*w)->path() == "-");
  (*w)->reopen();  // standard output is never reopened
  (*w)->flush();
  CHECK((*w)->reopens() == 0);
}

}  // namespace test_log_writer
