#include "tools/loadgen/random.h"

#include <algorithm>
#include <cmath>

namespace tally::loadgen {

double Rng::Exponential(double mean) {
  // 1 - Unit() lies in (0, 1], so the logarithm is finite.
  return -std::log(1.0 - Unit()) * mean;
}

double Rng::LogUniform(double lo, double hi) {
  const double a = std::log(lo);
  const double b = std::log(hi);
  return std::exp(a + (b - a) * Unit());
}

ZipfTable::ZipfTable(uint64_t n, double exponent) {
  if (n == 0) n = 1;
  cdf_.resize(n);
  double sum = 0;
  for (uint64_t k = 1; k <= n; ++k) {
    sum += 1.0 / std::pow(static_cast<double>(k), exponent);
    cdf_[k - 1] = sum;
  }
  for (double& c : cdf_) c /= sum;
  cdf_.back() = 1.0;
}

uint64_t ZipfTable::Sample(Rng& rng) const {
  const double u = rng.Unit();
  // First rank whose cumulative probability exceeds u.
  const auto it = std::upper_bound(cdf_.begin(), cdf_.end(), u);
  const auto index = static_cast<uint64_t>(it - cdf_.begin());
  return std::min<uint64_t>(index, cdf_.size() - 1) + 1;
}

}  // namespace tally::loadgen
