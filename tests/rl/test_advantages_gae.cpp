// GAE with returns (verl compute_gae_advantage_return).
#include <Eigen/Core>
#include <cmath>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/advantages/gae.hpp"
#include "lmrl/tensor.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

static_assert(AdvantageEstimator<gae_advantage, float> && AdvantageEstimator<gae_advantage, double>);

namespace {
dense<double, 2> matrix(index_t rows, index_t cols, std::initializer_list<double> values) {
  dense<double, 2> m({rows, cols});
  index_t k = 0;
  for (double v : values) m.data()[k++] = v;
  return m;
}
}  // namespace

TEST_CASE("gae: hand-computed advantages and returns, a skipped token, whitening (verl gives the same)") {
  // gamma 1, lambda 0.5, V = 0.5 everywhere.
  // row 0 rewards {0, 0, 1}: delta_2 = 1 - 0.5 = 0.5, A_2 = 0.5; delta_1 = 0 + 0.5 - 0.5 = 0, A_1 = 0.25;
  //   A_0 = 0.125. returns = A + V = {0.625, 0.75, 1}.
  // row 1 rewards {0, 7, 1}, mask {1, 0, 1}, V_1 = NaN (never read): A_2 = 0.5, A_0 = 0 + 0.5 * 0.5 = 0.25.
  auto r = matrix(2, 3, {0, 0, 1, 0, 7, 1});
  auto v = matrix(2, 3, {0.5, 0.5, 0.5, 0.5, std::nan(""), 0.5});
  auto m = matrix(2, 3, {1, 1, 1, 1, 0, 1});
  dense<double, 2> a({2, 3}), g({2, 3});
  gae_advantages(r, v, m, 1.0, 0.5, a, g, false);
  CHECK(a(0, 0) == 0.125);
  CHECK(a(0, 1) == 0.25);
  CHECK(a(0, 2) == 0.5);
  CHECK(a(1, 0) == 0.25);
  CHECK(a(1, 1) == 0.0);
  CHECK(a(1, 2) == 0.5);
  CHECK(g(0, 0) == 0.625);
  CHECK(g(0, 2) == 1.0);
  CHECK(g(1, 0) == 0.75);
  CHECK(g(1, 1) == 0.0);
  // whitened: active A {0.125, 0.25, 0.5, 0.25, 0.5}: mean 0.325, squares sum 0.1125, var 0.028125
  gae_advantages(r, v, m, 1.0, 0.5, a, g);
  const double s = std::sqrt(0.028125 + 1e-8);
  CHECK(a(0, 0) == Approx(-0.2 / s).epsilon(1e-12));
  CHECK(a(0, 0) == Approx(-1.1925695).epsilon(1e-7));
  CHECK(a(1, 2) == Approx(0.175 / s).epsilon(1e-12));
  CHECK(g(0, 0) == 0.625);  // the returns are not whitened
}

TEST_CASE("gae: lambda 1 gives the discounted return minus V, lambda 0 the TD error") {
  dense<double, 2> r({1, 4}), v({1, 4}), m({1, 4}), a({1, 4}), g({1, 4});
  testing::fill_uniform(r.view(), 3);
  testing::fill_uniform(v.view(), 4);
  for (index_t t = 0; t < 4; ++t) m(0, t) = 1;
  const double gamma = 0.9;
  gae_advantages(r, v, m, gamma, 1.0, a, g, false);
  for (index_t t = 0; t < 4; ++t) {
    double ret = 0, discount = 1;
    for (index_t u = t; u < 4; ++u, discount *= gamma) ret += discount * r(0, u);
    CHECK(a(0, t) == Approx(ret - v(0, t)).epsilon(1e-12));
    CHECK(g(0, t) == Approx(ret).epsilon(1e-12));
  }
  gae_advantages(r, v, m, gamma, 0.0, a, g, false);
  for (index_t t = 0; t < 4; ++t) {
    const double next = t + 1 < 4 ? v(0, t + 1) : 0.0;
    CHECK(a(0, t) == Approx(r(0, t) + gamma * next - v(0, t)).epsilon(1e-12));
  }
}

TEST_CASE("gae struct: scores on the last token, returns, masked values change nothing, backends, bad input") {
  auto m = testing::random_padding_mask<double>(4, 5, 17, 2);
  dense<double, 1> s({4});
  testing::fill_uniform(s.view(), 1);
  dense<double, 2> v({4, 5}), tr({4, 5}), a({4, 5}), b({4, 5}), ga({4, 5}), gb({4, 5});
  testing::fill_uniform(v.view(), 2);
  scores_on_last_token(vector_view<const double>(s.view()), matrix_view<const double>(m.view()), tr.view());
  advantage_inputs<double> in{s.view(), m.view(), 2};
  in.values = v.view();
  const gae_advantage est{0.99, 0.95};
  est(in, a.view(), ga.view());
  gae_advantages(tr, v, m, 0.99, 0.95, b, gb);
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 5; ++t) {
      CHECK(a(i, t) == b(i, t));
      CHECK(ga(i, t) == gb(i, t));
    }
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 5; ++t)
      if (m(i, t) == 0) v(i, t) = 1e9;
  est(in, b.view());
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 5; ++t) CHECK(a(i, t) == b(i, t));

  Eigen::MatrixXd er(4, 5), ev(4, 5), em(4, 5), ea(4, 5), eg(4, 5);
  xt::xtensor<double, 2> xr = xt::zeros<double>({4, 5}), xv = xr, xm = xr, xa = xr, xg = xr;
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 5; ++t) {
      er(i, t) = xr(i, t) = tr(i, t);
      ev(i, t) = xv(i, t) = v(i, t);
      em(i, t) = xm(i, t) = m(i, t);
    }
  gae_advantages(er, ev, em, 0.9, 0.8, ea, eg);
  gae_advantages(xr, xv, xm, 0.9, 0.8, xa, xg);
  for (index_t i = 0; i < 4; ++i)
    for (index_t t = 0; t < 5; ++t) {
      CHECK(ea(i, t) == xa(i, t));
      CHECK(eg(i, t) == xg(i, t));
    }
  CHECK_THROWS_WITH_AS(gae_advantages(er, ev, em, 0.9, 1.2, ea, eg), doctest::Contains("lam = 1.2"), error);
  ev(0, 0) = INFINITY;
  CHECK_THROWS_WITH_AS(gae_advantages(er, ev, em, 0.9, 0.8, ea, eg), doctest::Contains("values(0, 0) = inf"), error);
  in.values = {};
  CHECK_THROWS_WITH_AS(est(in, a.view()), doctest::Contains("values (the critic's V) are not given"), error);
}
