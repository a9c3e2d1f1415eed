// Pass@k best-of-group advantage (verl compute_grpo_passk_outcome_advantage).
#include <Eigen/Core>
#include <cmath>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/passk.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

static_assert(AdvantageEstimator<passk_advantage, float> && AdvantageEstimator<passk_advantage, double>);

TEST_CASE("passk: only the best gets r_max - r_second, optionally over the group std") {
  // {0, 3, 1}: best 3, runner-up 1 -> margin 2. mean 4/3; squares 16/9 + 25/9 + 1/9 = 42/9; / 2 = 7/3
  // -> 2 / sqrt(7/3) = 1.3093073 (verl: 1.3093)
  const std::vector<double> r{0, 3, 1};
  std::vector<double> a(3, 9);
  passk_sequence_advantages(r, 3, a, false);
  CHECK(a == std::vector<double>{0, 2, 0});
  passk_sequence_advantages(r, 3, a, true, 0.0);
  CHECK(a[1] == Approx(2 / std::sqrt(7.0 / 3)).epsilon(1e-14));
  CHECK(a[1] == Approx(1.3093073414159542).epsilon(1e-12));
  CHECK(a[0] == 0.0);
  // a tie for the best: margin 0; uniform group: 0 and reported
  std::vector<double> t{2, 1, 2, 5, 5, 5}, at(6, 9);
  const auto report = passk_sequence_advantages(t, 3, at);
  CHECK(at == std::vector<double>{0, 0, 0, 0, 0, 0});
  CHECK(report.uniform_groups == 1);
  // a missing best is skipped: {NaN, 1, 4} -> best 4 by 3
  std::vector<double> n{std::nan(""), 1, 4}, an(3);
  passk_sequence_advantages(n, 3, an, false);
  CHECK(an == std::vector<double>{0, 0, 3});
}

TEST_CASE("passk: permutation, struct, backends, bad input") {
  Eigen::VectorXd er(4);
  er << 0.2, 0.9, 0.4, 0.1;
  xt::xtensor<double, 1> xr = {0.2, 0.9, 0.4, 0.1};
  Eigen::VectorXd ea(4);
  xt::xtensor<double, 1> xa = xt::zeros<double>({4});
  passk_sequence_advantages(er, 4, ea);
  passk_sequence_advantages(xr, 4, xa);
  for (index_t i = 0; i < 4; ++i) CHECK(ea(i) == xa(i));
  CHECK(ea(1) > 0);
  Eigen::VectorXd ep(4), eb(4);
  ep << 0.9, 0.2, 0.1, 0.4;
  passk_sequence_advantages(ep, 4, eb);
  CHECK(eb(0) == ea(1));
  auto m = testing::random_padding_mask<double>(4, 3, 6);
  dense<double, 2> out({4, 3});
  passk_advantage{}(advantage_inputs<double>{view<1>(er), m.view(), 4}, out.view());
  for (index_t t = 0; t < 3; ++t) CHECK(out(1, t) == (m(1, t) != 0 ? ea(1) : 0.0));
  CHECK_THROWS_WITH_AS(passk_sequence_advantages(er, 1, ea), doctest::Contains("at least 2 samples"), error);
  CHECK_THROWS_WITH_AS(passk_sequence_advantages(er, 4, ea, true, -1.0), doctest::Contains("epsilon = -1"), error);
}
