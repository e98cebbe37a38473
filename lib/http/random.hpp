#pragma once
// Random draws from a worker's generator, the only source of randomness on
// the data path. Integer arithmetic on the generator's raw 64-bit output,
// never std:: distributions (their algorithms differ between standard
// libraries): one seed gives the same run with any of them. In http/ because
// it is the layer policy, upstream and proxy may all include.

#include <cstdint>
#include <random>

namespace sluice::http {

// Uniform in [0, n), n > 0. Modulo: the bias is at most n / 2^64.
inline uint64_t draw_below(std::mt19937_64& rng, uint64_t n) {
  return rng() % n;
}

// Uniform in [0, 1): the top 53 bits as the mantissa of a double.
inline double draw_unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// True with probability parts_per_million / 1'000'000 (Envoy's
// FractionalPercent with denominator MILLION).
inline bool draw_per_million(std::mt19937_64& rng, uint64_t parts_per_million) {
  return draw_below(rng, 1'000'000) < parts_per_million;
}

}  // namespace sluice::http
