// tensor/fast_exp.hpp: the branch-free exp of the fused log-prob, the samplers
// and attention, against std::exp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "lmrl/tensor/fast_exp.hpp"
#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("double: within 2 ulp of std::exp from -708 to 0, the _or_zero form is exactly 0 below") {
  constexpr double inf = std::numeric_limits<double>::infinity();
  CHECK(detail::exp_nonpositive(0.0) == 1.0);
  CHECK(detail::exp_nonpositive_or_zero(0.0) == 1.0);
  CHECK(detail::exp_nonpositive_or_zero(-709.0) == 0.0);
  CHECK(detail::exp_nonpositive_or_zero(-inf) == 0.0);
  CHECK(detail::exp_nonpositive_or_zero(-1e300) == 0.0);
  // The clamped form gives a tiny normal number instead, never a denormal or NaN.
  const double tiny = detail::exp_nonpositive(-inf);
  CHECK(tiny > 0.0);
  CHECK(tiny < 1e-307);
  CHECK(std::isnormal(tiny));
  double worst = 0;
  for (int i = 0; i <= 100000; ++i) {
    const double x = -708.0 * i / 100000.0;
    const double e = std::exp(x);
    worst = std::max(worst, std::abs(detail::exp_nonpositive(x) - e) / e);
  }
  CHECK(worst < 4.5e-16);  // 2 ulp = 2 * 2^-53 relative
}

TEST_CASE("float: within a few ulp of std::exp from -87 to 0, clamped below") {
  CHECK(detail::exp_nonpositive(0.0f) == 1.0f);
  const float tiny = detail::exp_nonpositive(-std::numeric_limits<float>::infinity());
  CHECK(tiny > 0.0f);
  CHECK(std::isnormal(tiny));
  double worst = 0;
  for (int i = 0; i <= 100000; ++i) {
    const float x = -87.0f * static_cast<float>(i) / 100000.0f;
    const double e = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(static_cast<double>(detail::exp_nonpositive(x)) - e) / e);
  }
  CHECK(worst < 4.0 * 6e-8);  // 4 ulp of float
}
