// RLOO leave-one-out advantages (verl compute_rloo_outcome_advantage).
#include <Eigen/Core>
#include <cmath>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/rloo.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

static_assert(AdvantageEstimator<rloo_advantage, float> && AdvantageEstimator<rloo_advantage, double>);

TEST_CASE("rloo: hand-computed, missing scores, group_size 1, uniform group") {
  // {1, 2, 6}: 1 - (2+6)/2 = -3, 2 - (1+6)/2 = -1.5, 6 - (1+2)/2 = 4.5 (verl gives the same); {4, 4, 4}: 0
  const std::vector<double> r{1, 2, 6, 4, 4, 4};
  std::vector<double> a(6, 9);
  auto report = rloo_sequence_advantages(r, 3, a);
  CHECK(a == std::vector<double>{-3, -1.5, 4.5, 0, 0, 0});
  CHECK(report.uniform_groups == 1);
  // {1, NaN, 3, 4}: scored {1, 3, 4}: 1 - 3.5 = -2.5, 3 - 2.5 = 0.5, 4 - 2 = 2
  const std::vector<double> n{1, std::nan(""), 3, 4};
  std::vector<double> b(4);
  report = rloo_sequence_advantages(n, 4, b);
  CHECK(b == std::vector<double>{-2.5, 0, 0.5, 2});
  CHECK(report.missing_scores == 1);
  // group_size 1: verl keeps the score (no baseline)
  std::vector<double> c(4);
  rloo_sequence_advantages(std::vector<double>{1, 2, 6, -1}, 1, c);
  CHECK(c == std::vector<double>{1, 2, 6, -1});
}

TEST_CASE("rloo: zero sum per group, permutation, equal to G/(G-1) times the GRPO centring") {
  dense<double, 1> r({20});
  testing::fill_uniform(r.view(), 4, 0, 1);
  auto a = rloo_sequence_advantages(r.view(), 5);
  for (int g = 0; g < 4; ++g) {
    double sum = 0, mean = 0;
    for (int i = 0; i < 5; ++i) mean += r(g * 5 + i) / 5;
    for (int i = 0; i < 5; ++i) {
      sum += a(g * 5 + i);
      CHECK(a(g * 5 + i) == doctest::Approx(5.0 / 4 * (r(g * 5 + i) - mean)).epsilon(1e-12));
    }
    CHECK(std::abs(sum) < 1e-12);
  }
  dense<double, 1> p = r;
  std::swap(p(10), p(13));
  auto b = rloo_sequence_advantages(p.view(), 5);
  CHECK(b(10) == a(13));
  CHECK(b(13) == a(10));
  CHECK(b(11) == a(11));
}

TEST_CASE("rloo: struct broadcasts, masked positions 0, Eigen and xtensor bit-identical, bad input") {
  Eigen::VectorXd er(4);
  er << 1, 3, 0, 2;
  xt::xtensor<double, 1> xr = {1, 3, 0, 2};
  Eigen::VectorXd ea(4);
  xt::xtensor<double, 1> xa = xt::zeros<double>({4});
  rloo_sequence_advantages(er, 2, ea);
  rloo_sequence_advantages(xr, 2, xa);
  for (index_t i = 0; i < 4; ++i) CHECK(ea(i) == xa(i));
  CHECK(ea(0) == -2.0);  // 1 - 3
  auto m = testing::random_padding_mask<double>(4, 6, 2);
  dense<double, 2> out({4, 6});
  rloo_advantage{}(advantage_inputs<double>{view<1>(er), m.view(), 2}, out.view());
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 6; ++t) CHECK(out(i, t) == (m(i, t) != 0 ? ea(i) : 0.0));
  CHECK_THROWS_WITH_AS(rloo_sequence_advantages(er, 3, ea), doctest::Contains("group_size = 3"), error);
  er(2) = INFINITY;
  CHECK_THROWS_WITH_AS(rloo_sequence_advantages(er, 2, ea), doctest::Contains("rewards(2) = inf"), error);
}
