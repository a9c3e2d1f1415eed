// REINFORCE++ (discounted return-to-go, whitened) and REINFORCE++-baseline.
#include <Eigen/Core>
#include <cmath>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/reinforce_pp.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

static_assert(AdvantageEstimator<reinforce_pp_advantage, double> &&
              AdvantageEstimator<reinforce_pp_baseline_advantage, float>);

namespace {
dense<double, 2> matrix(index_t rows, index_t cols, std::initializer_list<double> values) {
  dense<double, 2> m({rows, cols});
  index_t k = 0;
  for (double v : values) m.data()[k++] = v;
  return m;
}
}  // namespace

TEST_CASE("reinforce++: hand-computed returns and whitening (verl gives the same)") {
  // gamma 0.5. row 0 rewards {0, 0, 1}: returns 0.25, 0.5, 1. row 1 {0, 2, 5} with the 5 masked:
  // returns 1, 2, 0 (the masked reward is ignored). Active returns {0.25, 0.5, 1, 1, 2}: mean 0.95;
  // deviations -0.7, -0.45, 0.05, 0.05, 1.05; squares sum 1.8; unbiased var 0.45.
  auto r = matrix(2, 3, {0, 0, 1, 0, 2, 5});
  auto m = matrix(2, 3, {1, 1, 1, 1, 1, 0});
  dense<double, 2> a({2, 3}), g({2, 3});
  reinforce_pp_advantages(r, m, 0.5, a, g);
  CHECK(g(0, 0) == 0.25);
  CHECK(g(0, 1) == 0.5);
  CHECK(g(1, 0) == 1.0);
  CHECK(g(1, 2) == 0.0);
  const double s = std::sqrt(0.45 + 1e-8);
  CHECK(a(0, 0) == Approx(-0.7 / s).epsilon(1e-13));
  CHECK(a(1, 1) == Approx(1.05 / s).epsilon(1e-13));
  CHECK(a(1, 1) == Approx(1.5652475).epsilon(1e-7));
  CHECK(a(1, 2) == 0.0);
  // whiten = false: the advantages are the returns
  reinforce_pp_advantages(r, m, 0.5, a, g, false);
  CHECK(a(0, 0) == 0.25);
  // a masked token inside a sequence is skipped: rewards {1, 5, 2}, mask {1, 0, 1}: returns {2, 0, 2}
  auto r1 = matrix(1, 3, {1, 5, 2});
  auto m1 = matrix(1, 3, {1, 0, 1});
  dense<double, 2> a1({1, 3}), g1({1, 3});
  reinforce_pp_advantages(r1, m1, 0.5, a1, g1);
  CHECK(g1(0, 0) == 2.0);
  CHECK(g1(0, 1) == 0.0);
  CHECK(g1(0, 2) == 2.0);
}

TEST_CASE("reinforce++ struct: scores on the last token equal explicit token rewards, missing rows are 0") {
  auto m = testing::random_padding_mask<double>(4, 6, 12, 2);
  dense<double, 1> s({4});
  s(0) = 1;
  s(1) = 0;
  s(2) = 0.5;
  s(3) = 1;
  dense<double, 2> tr({4, 6}), a({4, 6}), b({4, 6});
  scores_on_last_token(vector_view<const double>(s.view()), matrix_view<const double>(m.view()), tr.view());
  const reinforce_pp_advantage est{0.9};
  advantage_inputs<double> with_scores{s.view(), m.view(), 2};
  advantage_inputs<double> with_tokens = with_scores;
  with_tokens.token_rewards = tr.view();
  est(with_scores, a.view());
  est(with_tokens, b.view());
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 6; ++t) CHECK(a(i, t) == b(i, t));
  s(1) = std::nan("");
  const auto report = est(with_scores, a.view());
  CHECK(report.missing_scores == 1);
  for (index_t t = 0; t < 6; ++t) CHECK(a(1, t) == 0.0);
  // values under the mask change nothing
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 6; ++t)
      if (m(i, t) == 0) tr(i, t) = 1e9;
  est(with_tokens, a.view());
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 6; ++t) CHECK(a(i, t) == b(i, t));
}

TEST_CASE("reinforce++-baseline: hand-computed (verl gives the same), uniform group reported") {
  // scores {1, 3 | 0, 0}: centred {-1, 1 | 0, 0}; lengths {2, 1, 1, 2}: tokens -1, -1, 1, 0, 0, 0;
  // mean -1/6; deviations -5/6 (x2), 7/6, 1/6 (x3); squares 50/36 + 49/36 + 3/36 = 17/6; var (17/6)/5 = 17/30
  dense<double, 1> s({4});
  s(0) = 1;
  s(1) = 3;
  auto m = matrix(4, 2, {1, 1, 1, 0, 1, 0, 1, 1});
  dense<double, 2> a({4, 2});
  const auto report = reinforce_pp_baseline_advantages(s, m, 2, a);
  const double sd = std::sqrt(17.0 / 30 + 1e-8);
  CHECK(a(0, 0) == Approx(-5.0 / 6 / sd).epsilon(1e-13));
  CHECK(a(0, 0) == Approx(-1.1070186).epsilon(1e-7));
  CHECK(a(1, 0) == Approx(7.0 / 6 / sd).epsilon(1e-13));
  CHECK(a(1, 1) == 0.0);
  CHECK(a(2, 0) == Approx(1.0 / 6 / sd).epsilon(1e-13));  // a uniform group is not 0 after whitening (verl)
  CHECK(report.uniform_groups == 1);
  // struct form gives the same
  dense<double, 2> b({4, 2});
  reinforce_pp_baseline_advantage{}(advantage_inputs<double>{s.view(), m.view(), 2}, b.view());
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 2; ++t) CHECK(b(i, t) == a(i, t));
}

TEST_CASE("reinforce++: Eigen and xtensor bit-identical, bad input") {
  Eigen::MatrixXd er(3, 4), em(3, 4), ea(3, 4);
  xt::xtensor<double, 2> xr = xt::zeros<double>({3, 4}), xm = xt::zeros<double>({3, 4}), xa = xt::zeros<double>({3, 4});
  auto m = testing::random_padding_mask<double>(3, 4, 5, 2);
  dense<double, 2> r({3, 4});
  testing::fill_uniform(r.view(), 6);
  for (index_t i = 0; i < 3; ++i)
    for (index_t t = 0; t < 4; ++t) {
      er(i, t) = xr(i, t) = r(i, t);
      em(i, t) = xm(i, t) = m(i, t);
    }
  reinforce_pp_advantages(er, em, 0.99, ea);
  reinforce_pp_advantages(xr, xm, 0.99, xa);
  for (index_t i = 0; i < 3; ++i)
    for (index_t t = 0; t < 4; ++t) CHECK(ea(i, t) == xa(i, t));
  CHECK_THROWS_WITH_AS(reinforce_pp_advantages(er, em, 1.5, ea), doctest::Contains("gamma = 1.5"), error);
  er(0, 0) = NAN;
  CHECK_THROWS_WITH_AS(reinforce_pp_advantages(er, em, 0.9, ea), doctest::Contains("token_rewards(0, 0) = nan"),
                       error);
  Eigen::MatrixXd small(3, 3);
  CHECK_THROWS_WITH_AS(reinforce_pp_advantages(xr, xm, 0.9, small), doctest::Contains("advantages has shape [3 x 3]"),
                       error);
  Eigen::VectorXd s(3);
  s << 1, 2, 3;
  CHECK_THROWS_WITH_AS(reinforce_pp_baseline_advantages(s, em, 2, ea), doctest::Contains("group_size = 2"), error);
}
