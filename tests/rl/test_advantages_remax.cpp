// ReMax: return-to-go minus the greedy completion's reward (verl compute_remax_outcome_advantage).
#include <Eigen/Core>
#include <cmath>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/remax.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

static_assert(AdvantageEstimator<remax_advantage, float> && AdvantageEstimator<remax_advantage, double>);

TEST_CASE("remax: hand-computed return-to-go minus baseline") {
  // row 0 rewards {1, 0, 2}, b = 1.5: returns {3, 2, 2}, A = {1.5, 0.5, 0.5} (verl: the same)
  // row 1 rewards {1, 9, 2}, mask {1, 0, 1}: returns {3, 0, 2}, A = {1.5, 0, 0.5} (verl leaves 2 at the hole)
  dense<double, 2> r({2, 3}), m({2, 3}), a({2, 3}), g({2, 3});
  const double rv[6] = {1, 0, 2, 1, 9, 2}, mv[6] = {1, 1, 1, 1, 0, 1};
  for (int k = 0; k < 6; ++k) {
    r.data()[k] = rv[k];
    m.data()[k] = mv[k];
  }
  dense<double, 1> b({2});
  b(0) = b(1) = 1.5;
  remax_advantages<double>(r.view(), b.view(), m.view(), a.view(), g.view());
  CHECK(g(0, 0) == 3.0);
  CHECK(g(0, 1) == 2.0);
  CHECK(g(1, 1) == 0.0);
  CHECK(a(0, 0) == 1.5);
  CHECK(a(0, 2) == 0.5);
  CHECK(a(1, 0) == 1.5);
  CHECK(a(1, 1) == 0.0);
  CHECK(a(1, 2) == 0.5);
  // sequence form and struct with scores: r - b broadcast
  std::vector<double> s{3, 1}, bb{1, 1.5}, out(2);
  remax_sequence_advantages(s, bb, out);
  CHECK(out == std::vector<double>{2, -0.5});
  dense<double, 2> o({2, 3});
  advantage_inputs<double> in{view<1>(s), m.view(), 1};
  in.baseline_scores = view<1>(bb);
  remax_advantage{}(in, o.view());
  CHECK(o(0, 1) == 2.0);
  CHECK(o(1, 1) == 0.0);
  CHECK(o(1, 2) == -0.5);
  // a missing score or baseline: 0
  s[0] = std::nan("");
  CHECK(remax_advantage{}(in, o.view()).missing_scores == 1);
  CHECK(o(0, 0) == 0.0);
}

TEST_CASE("remax: Eigen and xtensor bit-identical, bad input") {
  Eigen::MatrixXd er(2, 3), em = Eigen::MatrixXd::Ones(2, 3), ea(2, 3);
  er << 0.1, 0.2, 0.3, 0.4, 0.5, 0.6;
  Eigen::VectorXd eb(2);
  eb << 0.3, 0.7;
  xt::xtensor<double, 2> xr = {{0.1, 0.2, 0.3}, {0.4, 0.5, 0.6}}, xm = xt::ones<double>({2, 3}),
                         xa = xt::zeros<double>({2, 3});
  xt::xtensor<double, 1> xb = {0.3, 0.7};
  remax_advantages(er, eb, em, ea);
  remax_advantages(xr, xb, xm, xa);
  for (index_t i = 0; i < 2; ++i)
    for (index_t t = 0; t < 3; ++t) CHECK(ea(i, t) == xa(i, t));
  dense<double, 1> s({2});
  dense<double, 2> o({2, 3});
  CHECK_THROWS_WITH_AS(remax_advantage{}(advantage_inputs<double>{s.view(), view<2>(em), 1}, o.view()),
                       doctest::Contains("baseline_scores (the reward of the greedy completion) are not given"), error);
  eb(1) = -INFINITY;
  CHECK_THROWS_WITH_AS(remax_advantages(er, eb, em, ea), doctest::Contains("baseline_scores(1) = -inf"), error);
  Eigen::VectorXd b3(3);
  CHECK_THROWS_WITH_AS(remax_advantages(er, b3, em, ea), doctest::Contains("baseline_scores has extent 3"), error);
}
