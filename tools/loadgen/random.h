// Portable random numbers for the load generator.
//
// std::mt19937_64 is specified bit for bit by the standard, but the std::
// distributions are not (libstdc++ and libc++ give different streams, and
// either may change between releases). Every distribution the generator uses
// is therefore implemented here on top of the raw 64-bit engine output, so
// that the same seed gives byte-identical traffic everywhere.
#ifndef TALLY_TOOLS_LOADGEN_RANDOM_H_
#define TALLY_TOOLS_LOADGEN_RANDOM_H_

#include <cstdint>
#include <random>
#include <vector>

namespace tally::loadgen {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  uint64_t Next() { return engine_(); }
  // Uniform in [0, n). n > 0. Multiply-shift (Lemire) without the rejection
  // step: the bias is below n / 2^64, irrelevant for traffic shaping, and it
  // keeps exactly one engine call per draw (simpler to reason about).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }
  // Uniform in [lo, hi] (inclusive). lo <= hi.
  int64_t Between(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
  }
  // Uniform in [0, 1) with 53 random bits.
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return Unit() < p; }
  // Exponential with the given mean.
  double Exponential(double mean);
  // exp(uniform(log lo, log hi)): as many draws per decade at every scale.
  double LogUniform(double lo, double hi);

 private:
  std::mt19937_64 engine_;
};

// Zipf(s) over ranks 1..n by inverse CDF over a precomputed table:
// P(rank k) is proportional to 1 / k^s.
class ZipfTable {
 public:
  ZipfTable(uint64_t n, double exponent);
  // Rank in [1, n].
  uint64_t Sample(Rng& rng) const;
  uint64_t size() const { return cdf_.size(); }

 private:
  std::vector<double> cdf_;  // cdf_[k-1] = P(rank <= k); last element 1.0
};

// SplitMix64 finaliser: a bijection on 64-bit values. Used to derive stable
// per-entity attributes (a user's IP, device) from its index without storing
// them, and to make unique ids look random.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace tally::loadgen

#endif  // TALLY_TOOLS_LOADGEN_RANDOM_H_
