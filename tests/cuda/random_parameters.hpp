// Random transformer parameters for the GPU tests that compare a model with
// the CPU's: seeded, the same on every run and machine.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

#include "lmrl/model/parameters.hpp"

namespace lmrl::testing {

// Weights uniform with standard deviation 1.5 / sqrt(fan_in) (sharp, far from
// uniform distributions), norms in [0.5, 1.5], biases in [-0.5, 0.5]: no tensor
// is 0 or 1, so a skipped bias or norm weight shows.
inline transformer_parameters<float> random_parameters(const transformer_config& c, std::uint64_t seed) {
  transformer_parameters<float> p(c);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  auto values = p.values();
  for (const auto& e : p.layout().entries())
    for (index_t k = 0; k < e.size; ++k) {
      const double x = u(rng);
      double v = 0;
      switch (e.role) {
        case parameter_entry::kind::norm: v = 1.0 + 0.5 * x; break;
        case parameter_entry::kind::bias: v = 0.5 * x; break;
        case parameter_entry::kind::weight:
          v = x * 1.5 * std::sqrt(3.0 / static_cast<double>(e.shape.back()));
          break;
      }
      values[static_cast<std::size_t>(e.offset + k)] = static_cast<float>(v);
    }
  return p;
}

}  // namespace lmrl::testing
