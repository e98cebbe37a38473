#pragma once
// Two tiny HTTP/1.1 origin servers for `sluice-ingress --demo`, on 127.0.0.1
// port 0, on their own thread. Each answers every request with its name.

#include <cstdint>
#include <memory>
#include <thread>

namespace sluice::demo {

class DemoUpstreams {
 public:
  DemoUpstreams();  // "reviews-v1" and "reviews-v2"
  ~DemoUpstreams();
  DemoUpstreams(const DemoUpstreams&) = delete;
  DemoUpstreams& operator=(const DemoUpstreams&) = delete;
  uint16_t port(int index) const { return ports_[index]; }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  uint16_t ports_[2] = {0, 0};
  std::thread thread_;
};

}  // namespace sluice::demo
