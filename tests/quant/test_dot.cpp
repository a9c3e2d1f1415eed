// dot (lmrl/quant/dot.hpp): the vectorized dot product against the plain loop
// at every length through the vector width and its tails.
#include "lmrl/quant/dot.hpp"

#include <cmath>
#include <random>
#include <vector>

#include "doctest/doctest.h"

using namespace lmrl;

TEST_CASE("dot equals the plain loop at every length from 0 to 200 (exactly on small integers)") {
  std::mt19937 gen(3);
  std::uniform_int_distribution<int> small(-8, 8);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::size_t n = 0; n <= 200; ++n) {
    std::vector<float> a(n), b(n), u(n), v(n);
    double magnitude = 0;
    for (std::size_t i = 0; i < n; ++i) {
      a[i] = static_cast<float>(small(gen));
      b[i] = static_cast<float>(small(gen));
      u[i] = normal(gen);
      v[i] = normal(gen);
      magnitude += std::fabs(static_cast<double>(u[i]) * v[i]);
    }
    INFO("n = ", n);
    CHECK(dot(a.data(), b.data(), n) == dot_reference(a.data(), b.data(), n));  // integers: every order is exact
    CHECK(std::fabs(dot(u.data(), v.data(), n) - dot_reference(u.data(), v.data(), n)) <= 1e-6 * (magnitude + 1));
  }
}
