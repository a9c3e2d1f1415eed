// GPG (verl compute_gpg_outcome_advantage): alpha = B / #nonzero scores, f_norm.
#include <Eigen/Core>
#include <cmath>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/gpg.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

static_assert(AdvantageEstimator<gpg_advantage, float> && AdvantageEstimator<gpg_advantage, double>);

TEST_CASE("gpg: hand-computed alpha and f_norm") {
  // B = 8, 3 non-zero scores -> alpha = 8/3. {1,0,0,0}: mean 1/4 -> 8/3 * {3/4, -1/4, ...} = {2, -2/3, ...};
  // {1,1,0,0}: mean 1/2 -> 8/3 * {1/2, 1/2, -1/2, -1/2}. f_norm = 2 halves everything (verl: 1, -1/3, 2/3, -2/3).
  const std::vector<double> r{1, 0, 0, 0, 1, 1, 0, 0};
  std::vector<double> a(8);
  gpg_sequence_advantages(r, 4, a);
  CHECK(a[0] == Approx(2.0));
  CHECK(a[1] == Approx(-2.0 / 3));
  CHECK(a[4] == Approx(4.0 / 3));
  CHECK(a[7] == Approx(-4.0 / 3));
  gpg_sequence_advantages(r, 4, a, 2.0);
  CHECK(a[0] == Approx(1.0));
  CHECK(a[1] == Approx(-1.0 / 3));
  CHECK(a[5] == Approx(2.0 / 3));
  // all-zero batch: alpha = B / max(1, 0) = B, the group is uniform -> 0
  std::vector<double> z(4, 0.0), az(4, 1);
  CHECK(gpg_sequence_advantages(z, 2, az).uniform_groups == 2);
  CHECK(az == std::vector<double>{0, 0, 0, 0});
  // a missing score counts neither in M nor in the mean: {1, NaN, 0, 0}, M = 1, alpha = 4, mean 1/3
  std::vector<double> n{1, std::nan(""), 0, 0}, an(4);
  gpg_sequence_advantages(n, 4, an);
  CHECK(an[0] == Approx(4 * (2.0 / 3)));
  CHECK(an[1] == 0.0);
}

TEST_CASE("gpg: zero sum per group, struct, backends, bad input") {
  Eigen::VectorXd er(6);
  er << 0.5, 0, 1, 2, 0, 0;
  xt::xtensor<double, 1> xr = {0.5, 0, 1, 2, 0, 0};
  Eigen::VectorXd ea(6);
  xt::xtensor<double, 1> xa = xt::zeros<double>({6});
  gpg_sequence_advantages(er, 3, ea);
  gpg_sequence_advantages(xr, 3, xa);
  for (index_t i = 0; i < 6; ++i) CHECK(ea(i) == xa(i));
  CHECK(std::abs(ea(0) + ea(1) + ea(2)) < 1e-12);
  auto m = testing::random_padding_mask<double>(6, 5, 1);
  dense<double, 2> out({6, 5});
  gpg_advantage{}(advantage_inputs<double>{view<1>(er), m.view(), 3}, out.view());
  for (index_t i = 0; i < 6; ++i)
    for (index_t t = 0; t < 5; ++t) CHECK(out(i, t) == (m(i, t) != 0 ? ea(i) : 0.0));
  CHECK_THROWS_WITH_AS(gpg_sequence_advantages(er, 3, ea, 0.0), doctest::Contains("f_norm = 0"), error);
  CHECK_THROWS_WITH_AS(gpg_sequence_advantages(er, 4, ea), doctest::Contains("group_size = 4"), error);
}
