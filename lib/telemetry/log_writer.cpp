#include "telemetry/log_writer.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sluice::telemetry {

namespace {

bool is_stdout(std::string_view path) {
  return path == "-" || path == "/dev/stdout";
}

int open_file(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

// memchr per line, not a byte loop: a worker pays this for every line.
uint64_t count_lines(std::string_view lines) {
  uint64_t n = 0;
  const char* p = lines.data();
  const char* end = p + lines.size();
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<size_t>(end - p));
    if (!nl) break;
    ++n;
    p = static_cast<const char*>(nl) + 1;
  }
  return n == 0 ? 1 : n;
}

}  // namespace

Result<std::shared_ptr<LogWriter>> LogWriter::open(std::string path, LogWriterOptions options,
                                                   std::string_view object) {
  if (path.empty()) return Error{std::string(object), "path", "must not be empty"};
  int fd = 1;
  if (!is_stdout(path)) {
    fd = open_file(path);
    if (fd < 0)
      return Error{std::string(object), "path",
                   fmt::format("cannot open \"{}\": {}", path, std::strerror(errno))};
  }
  return std::shared_ptr<LogWriter>(new LogWriter(std::move(path), fd, std::move(options)));
}

LogWriter::LogWriter(std::string path, int fd, LogWriterOptions options)
    : path_(std::move(path)), fd_(fd), stdout_(is_stdout(path_)), options_(std::move(options)) {
  for (size_t i = 0; i < std::max<size_t>(options_.shards, 1); ++i)
    shards_.push_back(std::make_unique<Shard>());
  thread_ = std::thread([this] { run(); });
}

LogWriter::~LogWriter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
  if (!stdout_) ::close(fd_);
}

void LogWriter::append(size_t shard, std::string_view lines) {
  Shard& s = *shards_[shard % shards_.size()];
  bool wake;
  {
    std::lock_guard lock(s.mutex);
    if (s.pending.size() + lines.size() > options_.shard_bytes) {
      dropped_.fetch_add(count_lines(lines), std::memory_order_relaxed);
      return;
    }
    // One wake-up per batch, not per line: later lines find the shard
    // busy. With an interval, the writer wakes on its own until a buffer
    // fills past flush_bytes.
    if (options_.flush_interval.count() == 0)
      wake = s.pending.empty();
    else
      wake = s.pending.size() < options_.flush_bytes &&
             s.pending.size() + lines.size() >= options_.flush_bytes;
    s.pending.append(lines);
    s.lines += count_lines(lines);
  }
  if (wake) {
    {
      std::lock_guard lock(mutex_);
      work_ = true;
    }
    wake_.notify_one();
  }
}

void LogWriter::reopen() {
  // Lines logged before the call belong to the file as it was named then
  // (renamed away by rotation): written first, through the old descriptor.
  flush();
  {
    std::lock_guard lock(mutex_);
    reopen_ = true;
  }
  wake_.notify_one();
}

void LogWriter::flush() {
  std::unique_lock lock(mutex_);
  uint64_t ticket = ++requested_;
  work_ = true;
  wake_.notify_one();
  done_.wait(lock, [&] { return finished_ >= ticket || stop_; });
}

void LogWriter::run() {
  for (;;) {
    uint64_t target;
    bool reopen;
    bool stop;
    {
      std::unique_lock lock(mutex_);
      auto due = [&] { return work_ || reopen_ || stop_; };
      // The interval's end is a batch like any other wake-up.
      if (options_.flush_interval.count() == 0)
        wake_.wait(lock, due);
      else
        wake_.wait_for(lock, options_.flush_interval, due);
      target = requested_;
      reopen = reopen_;
      stop = stop_;
      work_ = false;
      reopen_ = false;
    }
    if (reopen) do_reopen();
    // Lines that arrive while a batch is written wait for the next one.
    if (take_batch()) write_batch();
    {
      std::lock_guard lock(mutex_);
      finished_ = std::max(finished_, target);
    }
    done_.notify_all();
    if (stop) return;
  }
}

bool LogWriter::take_batch() {
  batch_.clear();
  batch_lines_ = 0;
  for (auto& shard : shards_) {
    {
      std::lock_guard lock(shard->mutex);
      if (shard->pending.empty()) continue;
      // The shard keeps the spare buffer's capacity for its next lines.
      spare_.swap(shard->pending);
      batch_lines_ += shard->lines;
      shard->lines = 0;
    }
    batch_.append(spare_);
    spare_.clear();
  }
  return !batch_.empty();
}

void LogWriter::write_batch() {
  if (options_.before_write) options_.before_write();
  size_t off = 0;
  while (off < batch_.size()) {
    ssize_t n = ::write(fd_, batch_.data() + off, batch_.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      dropped_.fetch_add(batch_lines_, std::memory_order_relaxed);
      return;
    }
    off += static_cast<size_t>(n);
  }
  written_.fetch_add(batch_lines_, std::memory_order_relaxed);
}

void LogWriter::do_reopen() {
  if (stdout_) return;
  int fd = open_file(path_);
  // A path that cannot be opened again keeps the old file: lines go on
  // somewhere rather than nowhere.
  if (fd < 0) return;
  ::close(fd_);
  fd_ = fd;
  reopens_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace sluice::telemetry
