#pragma once
// Large bodies in tests are generated, never stored: byte i of a pattern body
// is pattern_byte(i), and both ends compare a running checksum instead.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::test {

// Not periodic over small spans, so a dropped, repeated or reordered block
// changes the checksum.
inline char pattern_byte(uint64_t i) {
  return static_cast<char>(((i ^ (i >> 8) ^ (i >> 17)) * 31 + 7) & 0xff);
}

// Fills `out[0..n)` with the pattern starting at `offset`.
inline void fill_pattern(uint64_t offset, char* out, size_t n) {
  for (size_t k = 0; k < n; ++k) out[k] = pattern_byte(offset + k);
}

inline std::string pattern_string(uint64_t n) {
  std::string s(n, '\0');
  fill_pattern(0, s.data(), n);
  return s;
}

// FNV-1a over bytes; independent of how the stream was split into chunks.
class Checksum {
 public:
  void update(std::string_view data) {
    for (unsigned char c : data) {
      hash_ ^= c;
      hash_ *= 0x100000001b3ull;
    }
    bytes_ += data.size();
  }
  uint64_t value() const { return hash_; }
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ull;
  uint64_t bytes_ = 0;
};

inline uint64_t checksum_of(std::string_view data) {
  Checksum c;
  c.update(data);
  return c.value();
}

// Checksum of the first `n` pattern bytes, computed in blocks.
inline uint64_t pattern_checksum(uint64_t n) {
  Checksum c;
  char block[16384];
  for (uint64_t done = 0; done < n;) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(sizeof(block), n - done));
    fill_pattern(done, block, k);
    c.update(std::string_view(block, k));
    done += k;
  }
  return c.value();
}

}  // namespace sluice::test
