// entropy_bonus and top_entropy_mask (TRL top_entropy_quantile).
#include <Eigen/Core>
#include <xtensor/xtensor.hpp>

#include "lmrl/rl/objectives/entropy.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using doctest::Approx;

namespace {
dense<double, 2> matrix(index_t rows, index_t cols, std::initializer_list<double> values) {
  dense<double, 2> m({rows, cols});
  auto v = values.begin();
  for (index_t k = 0; k < m.size(); ++k) m.data()[k] = *v++;
  return m;
}
}  // namespace

TEST_CASE("entropy_bonus: l = -coeff H, dl/dH = -coeff, 0 where masked") {
  const auto h = matrix(2, 2, {0.5, 1.5, 2.0, 9.0});
  const auto m = matrix(2, 2, {1, 1, 1, 0});
  dense<double, 2> l({2, 2}), d({2, 2});
  // coeff 0.01: l = -0.005, -0.015, -0.02, 0; mean entropy (0.5 + 1.5 + 2) / 3 = 4/3
  const double mean = entropy_bonus(h.view(), m.view(), 0.01, l.view(), d.view());
  CHECK(mean == Approx(4.0 / 3));
  CHECK(l(0, 0) == Approx(-0.005));
  CHECK(l(1, 0) == Approx(-0.02));
  CHECK(l(1, 1) == 0.0);
  CHECK(d(0, 1) == Approx(-0.01));
  CHECK(d(1, 1) == 0.0);
  // the derivative against finite differences of sum g l
  dense<double, 2> x = h, g({2, 2});
  lmrl::testing::fill_uniform(g.view(), 1);
  dense<double, 2> analytic({2, 2});
  for (index_t k = 0; k < 4; ++k) analytic.data()[k] = g.data()[k] * d.data()[k];
  lmrl::testing::check_gradient(
      [&](const dense<double, 2>& e) {
        dense<double, 2> ll({2, 2}), dd({2, 2});
        entropy_bonus(e.view(), m.view(), 0.01, ll.view(), dd.view());
        double s = 0;
        for (index_t k = 0; k < 4; ++k) s += g.data()[k] * ll.data()[k];
        return s;
      },
      x, analytic);
  // missing entropy in a batch
  policy_inputs<double> in;
  in.mask = m.view();
  CHECK_THROWS_WITH_AS(entropy_bonus(in, 0.01, l.view(), d.view()),
                       doctest::Contains("entropy_bonus: entropy is not given (empty view) but mask has shape [2 x 2]"),
                       error);
  const auto nan_h = matrix(2, 2, {0.5, NAN, 2.0, NAN});
  CHECK_THROWS_WITH_AS(entropy_bonus(nan_h.view(), m.view(), 0.01, l.view(), d.view()),
                       doctest::Contains("entropy(0, 1) = nan is not finite"), error);
  // backends: Eigen and xtensor, bit-identical
  Eigen::MatrixXf he(2, 2), me(2, 2), le(2, 2), de(2, 2);
  xt::xtensor<float, 2> hx({2, 2}), mx({2, 2}), lx({2, 2}), dx({2, 2});
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 2; ++j) {
      he(i, j) = hx(i, j) = static_cast<float>(h(i, j));
      me(i, j) = mx(i, j) = static_cast<float>(m(i, j));
    }
  CHECK(entropy_bonus(he, me, 0.01, le, de) == entropy_bonus(hx, mx, 0.01, lx, dx));
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 2; ++j) {
      CHECK(le(i, j) == lx(i, j));
      CHECK(de(i, j) == dx(i, j));
    }
}

TEST_CASE("top_entropy_mask: torch.quantile threshold, ties kept, padding never kept") {
  // active entropies 0.1, 0.5, 0.9, 0.3, 0.7 (the 5.0 is padding); sorted 0.1 0.3 0.5 0.7 0.9
  const auto h = matrix(2, 3, {0.1, 0.5, 0.9, 0.3, 0.7, 5.0});
  const auto m = matrix(2, 3, {1, 1, 1, 1, 1, 0});
  dense<double, 2> out({2, 3});
  // top 20%: q = 0.8, position 0.8 * 4 = 3.2: 0.7 + 0.2 * (0.9 - 0.7) = 0.74 -> only 0.9
  CHECK(entropy_threshold(h.view(), m.view(), 0.2) == Approx(0.74));
  CHECK(top_entropy_mask(h.view(), m.view(), 0.2, out.view()) == 1);
  CHECK(out(0, 2) == 1.0);
  CHECK(out(1, 2) == 0.0);
  // top 50%: position 2 -> 0.5 exactly; 0.5 itself is kept (>=): 0.5, 0.9, 0.7
  CHECK(top_entropy_mask(h.view(), m.view(), 0.5, out.view()) == 3);
  CHECK(out(0, 1) == 1.0);
  CHECK(out(0, 0) == 0.0);
  // 1 keeps every active token; 0 only the maximum
  CHECK(top_entropy_mask(h.view(), m.view(), 1.0, out.view()) == 5);
  CHECK(out(1, 2) == 0.0);
  CHECK(top_entropy_mask(h.view(), m.view(), 0.0, out.view()) == 1);
  // ties at the maximum are all kept
  const auto ties = matrix(1, 4, {1, 1, 0.5, 1});
  const auto all = matrix(1, 4, {1, 1, 1, 1});
  dense<double, 2> o4({1, 4});
  CHECK(top_entropy_mask(ties.view(), all.view(), 0.0, o4.view()) == 3);
  // no active token: all-zero mask (TRL)
  const auto none = matrix(1, 4, {0, 0, 0, 0});
  CHECK(top_entropy_mask(ties.view(), none.view(), 0.2, o4.view()) == 0);
  // bad quantile, missing entropy
  CHECK_THROWS_WITH_AS(top_entropy_mask(h.view(), m.view(), 1.5, out.view()),
                       doctest::Contains("top_entropy_mask: top_entropy_quantile = 1.5 must be in [0, 1]"), error);
  policy_inputs<double> in;
  in.mask = m.view();
  CHECK_THROWS_WITH_AS(top_entropy_mask(in, 0.2, out.view()), doctest::Contains("entropy is not given"), error);
  // backends: convenience overload returns the caller's family, identical bits
  Eigen::MatrixXd he(2, 3), me(2, 3);
  xt::xtensor<double, 2> hx({2, 3}), mx({2, 3});
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) {
      he(i, j) = hx(i, j) = h(i, j);
      me(i, j) = mx(i, j) = m(i, j);
    }
  const Eigen::MatrixXd ke = top_entropy_mask(he, me, 0.5);
  const xt::xtensor<double, 2> kx = top_entropy_mask(hx, mx, 0.5);
  for (index_t i = 0; i < 2; ++i)
    for (index_t j = 0; j < 3; ++j) CHECK(ke(i, j) == kx(i, j));
  CHECK(ke.sum() == 3.0);
}
