// OPO length-weighted baseline (verl compute_opo_outcome_advantage).
#include <Eigen/Core>
#include <cmath>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/opo.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

static_assert(AdvantageEstimator<opo_advantage, float> && AdvantageEstimator<opo_advantage, double>);

TEST_CASE("opo: hand-computed length-weighted baseline") {
  // rewards {1, 0}, lengths {3, 1}: b = (3*1 + 1*0) / 4 = 0.75 -> A = {0.25, -0.75} (verl: the same)
  std::vector<double> r{1, 0};
  dense<double, 2> m({2, 3});
  m(0, 0) = m(0, 1) = m(0, 2) = m(1, 0) = 1;
  std::vector<double> a(2);
  opo_sequence_advantages(r, m, 2, a);
  CHECK(a == std::vector<double>{0.25, -0.75});
  // the struct broadcasts over active tokens
  dense<double, 2> out({2, 3});
  opo_advantage{}(advantage_inputs<double>{view<1>(r), m.view(), 2}, out.view());
  CHECK(out(0, 2) == 0.25);
  CHECK(out(1, 0) == -0.75);
  CHECK(out(1, 1) == 0.0);
  // a missing score is out of both sums: {1, NaN, 0} with lengths {3, 3, 1} -> the same baseline 0.75
  std::vector<double> r3{1, std::nan(""), 0};
  dense<double, 2> m3({3, 3});
  for (index_t t = 0; t < 3; ++t) m3(0, t) = m3(1, t) = 1;
  m3(2, 0) = 1;
  std::vector<double> a3(3);
  const auto report = opo_sequence_advantages(r3, m3, 3, a3);
  CHECK(a3 == std::vector<double>{0.25, 0, -0.75});
  CHECK(report.missing_scores == 1);
}

TEST_CASE("opo: equal lengths reduce to the group mean, uniform groups, permutation, backends, bad input") {
  std::vector<double> r{1, 2, 6, 3, 3, 3};
  dense<double, 2> m({6, 4});
  for (index_t i = 0; i < 6; ++i)
    for (index_t t = 0; t < 2; ++t) m(i, t) = 1;
  std::vector<double> a(6);
  const auto report = opo_sequence_advantages(r, m, 3, a);
  CHECK(a == std::vector<double>{-2, -1, 3, 0, 0, 0});  // mean 3
  CHECK(report.uniform_groups == 1);
  Eigen::VectorXd er = Eigen::Map<Eigen::VectorXd>(r.data(), 6), ea(6);
  Eigen::MatrixXd em(6, 4);
  xt::xtensor<double, 2> xm = xt::zeros<double>({6, 4});
  for (index_t i = 0; i < 6; ++i)
    for (index_t t = 0; t < 4; ++t) em(i, t) = xm(i, t) = (t <= i % 4) ? 1 : 0;
  xt::xtensor<double, 1> xr = xt::zeros<double>({6}), xa = xt::zeros<double>({6});
  for (index_t i = 0; i < 6; ++i) xr(i) = r[i];
  opo_sequence_advantages(er, em, 3, ea);
  opo_sequence_advantages(xr, xm, 3, xa);
  for (index_t i = 0; i < 6; ++i) CHECK(ea(i) == xa(i));
  // swapping two sequences (score and length together) swaps their advantages
  std::swap(er(0), er(2));
  em.row(0).swap(em.row(2));
  Eigen::VectorXd eb(6);
  opo_sequence_advantages(er, em, 3, eb);
  CHECK(eb(0) == ea(2));
  CHECK(eb(2) == ea(0));
  m(0, 0) = 3;
  CHECK_THROWS_WITH_AS(opo_sequence_advantages(r, m, 3, a), doctest::Contains("mask(0, 0) = 3"), error);
  dense<double, 2> m5({5, 4});
  CHECK_THROWS_WITH_AS(opo_sequence_advantages(r, m5, 3, a), doctest::Contains("rewards has extent 6"), error);
}
