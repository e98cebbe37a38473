#pragma once
// Helpers shared by the fuzz targets: an invariant check that aborts (so
// libFuzzer saves the input), and a small deterministic byte-driven RNG for
// choosing fragment sizes.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

// Aborts with a message; libFuzzer reports it as a crash and keeps the input.
#define FUZZ_CHECK(cond, ...)                                                                  \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      std::fprintf(stderr, "\nFUZZ_CHECK failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                       \
      std::fprintf(stderr, "\n");                                                              \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)

namespace sluice::fuzz {

// Fragment sizes for a stream: seed 0 feeds one byte at a time (the hardest
// case for a resumable parser), otherwise sizes in [1, 2^(seed % 10 + 1)]
// from a xorshift sequence, so the same input always splits the same way.
class Fragmenter {
 public:
  explicit Fragmenter(uint8_t seed) : seed_(seed), state_(0x9E3779B97F4A7C15ULL ^ seed) {}
  size_t next(size_t remaining) {
    if (seed_ == 0) return remaining ? 1 : 0;
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    size_t cap = size_t{2} << (seed_ % 10);
    size_t n = 1 + state_ % cap;
    return n < remaining ? n : remaining;
  }

 private:
  uint8_t seed_;
  uint64_t state_;
};

// Printable form of bytes for failure messages (at most `max` bytes shown).
inline void print_escaped(std::string_view s, size_t max = 400) {
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\')
      std::fputc(c, stderr);
    else
      std::fprintf(stderr, "\\x%02x", c);
  }
  if (s.size() > max) std::fprintf(stderr, "...(%zu bytes)", s.size());
}

}  // namespace sluice::fuzz
