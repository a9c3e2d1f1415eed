// Seeded test inputs for the GPU tests: n values uniform in [lo, hi) (never
// exactly zero in practice), the same on every run and machine.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "lmrl/tensor/view.hpp"

namespace lmrl::testing {

template <class T = float>
std::vector<T> random_values(index_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = static_cast<T>(dist(rng));
  return v;
}

}  // namespace lmrl::testing
