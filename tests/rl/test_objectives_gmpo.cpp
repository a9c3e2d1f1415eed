// gmpo: verl geo_mean, per-token log-space clipping then a geometric mean.
#include <cmath>

#include "lmrl/rl/objectives/gmpo.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;
using doctest::Approx;

TEST_CASE("gmpo: hand-computed sequence loss, gradient and clip stats") {
  // row 0, A = 1: log-ratios 0.1, 0.5; clip to [-0.4, 0.4] on the A > 0 side: min(r, clip(r)) = 0.1, 0.4
  //   mean 0.25, ratio e^0.25 = 1.2840254, Abar = 1, L = -1.2840254 on both tokens
  //   g = 1: dL/dmean = 2 * -1 * 1.284 = -2.568; token 0: slope 1 / 2 -> -1.284; token 1: clipped -> 0
  // row 1, A = -1: log-ratios -0.6, 0.2 (third padding); max(r, clip(r)) = -0.4, 0.2
  //   mean -0.1, ratio e^-0.1 = 0.9048374, Abar = -1, L = 0.9048374
  //   g = 1: dL/dmean = 2 * 1 * 0.9048 = 1.8097; token 0 clipped -> 0; token 1 -> 0.9048374
  batch b = hand_batch(2, 3, {-1, -1, -1, -1, -1, -1}, {0.1, 0.5, 0, -0.6, 0.2, 0}, {1, 1, 0, -1, -1, 0},
                       {1, 1, 0, 1, 1, 0});
  objective_stats s;
  const auto l = loss_of(gmpo{}, b, &s);
  const dense<double, 2> g = ones_like(b);
  const auto d = backward_of(gmpo{}, b, g);
  const double e = 1e-7;  // verl divides by |o_i| + 1e-8
  CHECK(l(0, 0) == Approx(-std::exp(0.25)).epsilon(e));
  CHECK(l(0, 1) == Approx(-std::exp(0.25)).epsilon(e));
  CHECK(l(1, 0) == Approx(std::exp(-0.1)).epsilon(e));
  CHECK(l(0, 2) == 0.0);
  CHECK(d(0, 0) == Approx(-std::exp(0.25)).epsilon(e));
  CHECK(d(0, 1) == 0.0);
  CHECK(d(1, 0) == 0.0);
  CHECK(d(1, 1) == Approx(std::exp(-0.1)).epsilon(e));
  // verl stats: token (0,1) outside with A > 0 -> high; token (1,0) outside with A < 0 -> low
  CHECK(s.clip_fraction_high == Approx(0.25));
  CHECK(s.clip_fraction_low == Approx(0.25));
  CHECK(s.clip_fraction == Approx(0.5));
  CHECK(s.ratio_mean == Approx((2 * std::exp(0.25) + 2 * std::exp(-0.1)) / 4).epsilon(e));
  // A > 0 with r below -epsilon_low is not clipped (min keeps r): r = -0.6, 0 -> mean -0.3
  batch c = hand_batch(1, 2, {-1, -1}, {-0.6, 0}, {1, 1}, {1, 1});
  CHECK(loss_of(gmpo{}, c)(0, 0) == Approx(-std::exp(-0.3)).epsilon(e));
}

TEST_CASE("gmpo: finite differences, masked positions, backends, bad input") {
  check_backward_fd(gmpo{}, random_batch(4, 6, 71, 0.8, 1.0, true), 72);
  check_backward_fd(gmpo{0.2, 0.3}, random_batch(4, 6, 73, 0.8), 74);  // token-level advantages too
  check_masked_positions(gmpo{}, random_batch(4, 6, 75, 0.8), 76);
  check_backends_identical(gmpo{}, random_batch(3, 5, 77, 0.8), 78);
  check_bad_input(gmpo{}, "gmpo");
  batch b = random_batch(2, 3, 79);
  dense<double, 2> out({2, 3});
  CHECK_THROWS_WITH_AS(gmpo({0.4, -1}).loss(b.inputs(), out.view()), doctest::Contains("gmpo::loss: epsilon_high = -1"),
                       error);
}
