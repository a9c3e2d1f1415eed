// GDPO normalize-then-sum over reward components (TRL normalize_then_sum, verl GDPO).
#include <Eigen/Core>
#include <cmath>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/gdpo.hpp"
#include "lmrl/rl/advantages/grpo.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

static_assert(AdvantageEstimator<gdpo_advantage, float> && AdvantageEstimator<gdpo_advantage, double>);

TEST_CASE("gdpo: hand-computed per-component normalization, weighted sum, batch normalization") {
  // components (B = 4, K = 2, G = 2), weights {1, 0.5}, epsilon 0:
  //   col 0 {1, 0 | 1, 1}: group 0 mean 1/2, std sqrt(1/2) -> {+1/sqrt2, -1/sqrt2}; group 1 uniform -> 0
  //   col 1 {0, 2 | 1, 3}: means 1 and 2, std sqrt2 -> {-1/sqrt2, +1/sqrt2 | -1/sqrt2, +1/sqrt2}
  //   s = {1/sqrt2 - 1/(2 sqrt2), ...} = {a, -a, -a, a} with a = 1/(2 sqrt2)
  //   batch: mean 0, unbiased var 4a^2/3 -> A = +-a / (2a/sqrt3) = +-sqrt(3)/2
  Eigen::MatrixXd c(4, 2);
  c << 1, 0, 0, 2, 1, 1, 1, 3;
  const std::vector<double> w{1, 0.5};
  Eigen::VectorXd a(4);
  auto report = gdpo_sequence_advantages(c, w, 2, a, 0.0, gdpo_batch_norm::none);
  const double s = 1 / (2 * std::sqrt(2.0));
  CHECK(a(0) == Approx(s).epsilon(1e-14));
  CHECK(a(1) == Approx(-s).epsilon(1e-14));
  CHECK(a(2) == Approx(-s).epsilon(1e-14));
  CHECK(report.uniform_groups == 0);  // group 1 is uniform in col 0 only
  gdpo_sequence_advantages(c, w, 2, a, 0.0);
  CHECK(a(0) == Approx(std::sqrt(3.0) / 2).epsilon(1e-14));
  CHECK(a(1) == Approx(-std::sqrt(3.0) / 2).epsilon(1e-14));
  CHECK(a(3) == Approx(std::sqrt(3.0) / 2).epsilon(1e-14));
  // one component, no batch normalization: the GRPO advantage
  Eigen::MatrixXd one = c.col(1);
  Eigen::VectorXd g(4), r = c.col(1);
  gdpo_sequence_advantages(one, {}, 2, a, 1e-4, gdpo_batch_norm::none);
  grpo_sequence_advantages(r, 2, grpo_scale::group_std, g);
  for (index_t i = 0; i < 4; ++i) CHECK(a(i) == Approx(g(i)).epsilon(1e-15));
}

TEST_CASE("gdpo: missing components are left out (TRL nansum), unscorable sequences get 0, uniform groups") {
  const double nan = std::nan("");
  Eigen::MatrixXd c(4, 2);
  c << 1, nan, 0, 2, nan, nan, 5, 5;
  Eigen::VectorXd a(4);
  const auto report = gdpo_sequence_advantages(c, {}, 2, a, 0.0, gdpo_batch_norm::none);
  // group 0: col 0 {1, 0} -> {+1/sqrt2, -1/sqrt2}; col 1 {NaN, 2} one score: 0. group 1: nothing but row 3
  CHECK(a(0) == Approx(1 / std::sqrt(2.0)).epsilon(1e-14));
  CHECK(a(1) == Approx(-1 / std::sqrt(2.0)).epsilon(1e-14));
  CHECK(a(2) == 0.0);
  CHECK(a(3) == 0.0);
  CHECK(report.missing_scores == 3);
  CHECK(report.uniform_groups == 1);
  // batch normalization over the scored sequences {a, -a, 0}: mean 0, var a^2 -> {1, -1, 0 (unscorable), 0}
  gdpo_sequence_advantages(c, {}, 2, a, 0.0);
  CHECK(a(0) == Approx(1.0).epsilon(1e-14));
  CHECK(a(1) == Approx(-1.0).epsilon(1e-14));
  CHECK(a(2) == 0.0);
  CHECK(a(3) == 0.0);
}

TEST_CASE("gdpo struct: TRL (sequence) and verl (token whitening), backends, bad input") {
  Eigen::MatrixXd c(4, 2);
  c << 1, 0, 0, 2, 1, 1, 1, 3;
  dense<double, 2> m({4, 3}), out({4, 3});
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t <= i % 3; ++t) m(i, t) = 1;
  dense<double, 1> scores({4});
  advantage_inputs<double> in{scores.view(), m.view(), 2};
  in.reward_components = view<2>(c);
  gdpo_advantage{{1, 0.5}, 0.0}(in, out.view());
  CHECK(out(0, 0) == Approx(std::sqrt(3.0) / 2).epsilon(1e-14));
  CHECK(out(0, 1) == 0.0);
  // verl: s = {a, -a, -a, a} on lengths {1, 2, 3, 1}: token mean (a - 2a - 3a + a)/7 = -3a/7
  gdpo_advantage verl{{1, 0.5}, 0.0, gdpo_batch_norm::token};
  verl(in, out.view());
  const double s = 1 / (2 * std::sqrt(2.0)), mean = -3 * s / 7;
  const double var = ((s - mean) * (s - mean) * 2 + (-s - mean) * (-s - mean) * 5) / 6;
  CHECK(out(0, 0) == Approx((s - mean) / std::sqrt(var + 1e-8)).epsilon(1e-12));
  CHECK(out(2, 2) == Approx((-s - mean) / std::sqrt(var + 1e-8)).epsilon(1e-12));
  CHECK(out(3, 1) == 0.0);

  xt::xtensor<double, 2> xc = {{1, 0}, {0, 2}, {1, 1}, {1, 3}};
  Eigen::VectorXd ea(4);
  xt::xtensor<double, 1> xa = xt::zeros<double>({4});
  gdpo_sequence_advantages(c, {}, 2, ea);
  gdpo_sequence_advantages(xc, {}, 2, xa);
  for (index_t i = 0; i < 4; ++i) CHECK(ea(i) == xa(i));

  const std::vector<double> three{1, 1, 1};
  CHECK_THROWS_WITH_AS(gdpo_sequence_advantages(c, three, 2, ea), doctest::Contains("3 weights for 2 reward components"),
                       error);
  CHECK_THROWS_WITH_AS(gdpo_sequence_advantages(c, {}, 2, ea, 1e-4, gdpo_batch_norm::token),
                       doctest::Contains("needs the mask"), error);
  c(1, 1) = INFINITY;
  CHECK_THROWS_WITH_AS(gdpo_sequence_advantages(c, {}, 2, ea), doctest::Contains("reward_components(1, 1) = inf"),
                       error);
}
