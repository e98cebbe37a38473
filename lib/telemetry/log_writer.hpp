#pragma once
// An access-log file and the thread that writes it. Workers never wait on
// the file: each appends its lines to its own bounded buffer, and the writer
// thread takes every buffer's batch and writes them with one write(). When
// the writer falls behind (slow disk, held back), a full buffer drops the
// line and counts it. reopen() is log rotation (SIGUSR1): what was logged
// before it goes to the old file, then the writer opens the path again.
//
// With a flush interval (Envoy's file flush: Istio runs it at 1 s and
// 64 KiB), a line costs its worker an append under an uncontended lock:
// the writer wakes when the interval ends or a buffer passes flush_bytes,
// not per line, so the file sees one write() per batch.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sluice/result.hpp"

namespace sluice::telemetry {

struct LogWriterOptions {
  size_t shards = 1;                 // one per worker: LogWriter::append's `shard`
  size_t shard_bytes = 1024 * 1024;  // bound of one shard's pending lines
  // Called by the writer thread before each batch's write (tests hold the
  // writer back with it, to make it fall behind without sleeping).
  std::function<void()> before_write;
  // 0: the writer wakes for every batch (a line is written at once).
  std::chrono::milliseconds flush_interval{0};
  size_t flush_bytes = 64 * 1024;  // with an interval: a buffer this full wakes the writer
};

class LogWriter {
 public:
  // Opens `path` for appending ("-" and "/dev/stdout": standard output,
  // which reopen() leaves alone) and starts the writer thread. An error
  // names `object` and the path when the file cannot be opened.
  static Result<std::shared_ptr<LogWriter>> open(std::string path, LogWriterOptions options,
                                                 std::string_view object);
  ~LogWriter();  // writes what is pending, then stops the thread
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // One or more whole lines from the thread that owns `shard` (any thread
  // may call it; shards only keep threads apart). Never waits on I/O.
  void append(size_t shard, std::string_view lines);
  // Rotation: lines appended before the call go to the file as it was
  // (the call waits for that write); the file is then closed and opened
  // again by path before the next batch, even when no line is pending.
  void reopen();
  // Blocks until every line appended before the call is written or dropped
  // (tests, shutdown).
  void flush();

  const std::string& path() const { return path_; }
  uint64_t lines_written() const { return written_.load(std::memory_order_relaxed); }
  // Lines lost: a full shard buffer, or a failed write.
  uint64_t lines_dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t reopens() const { return reopens_.load(std::memory_order_relaxed); }

 private:
  struct Shard {
    std::mutex mutex;
    std::string pending;
    uint64_t lines = 0;
  };
  LogWriter(std::string path, int fd, LogWriterOptions options);
  void run();
  bool take_batch();  // moves pending lines into batch_; false when none
  void write_batch();
  void do_reopen();

  std::string path_;
  int fd_;
  bool stdout_;
  LogWriterOptions options_;
  std::vector<std::unique_ptr<Shard>> shards_;

  std::mutex mutex_;  // guards the wake-up state below
  std::condition_variable wake_;
  std::condition_variable done_;
  bool work_ = false;
  bool reopen_ = false;
  bool stop_ = false;
  uint64_t requested_ = 0;  // flush tickets handed out
  uint64_t finished_ = 0;   // batches completed since

  std::string batch_;  // writer thread only
  std::string spare_;  // swapped with a shard's buffer, so both keep capacity
  uint64_t batch_lines_ = 0;
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> reopens_{0};
  std::thread thread_;
};

}  // namespace sluice::telemetry
