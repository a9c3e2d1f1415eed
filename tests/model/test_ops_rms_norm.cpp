// model/ops/rms_norm.hpp: Hugging Face's RMSNorm and its backward.
#include "lmrl/model/ops/rms_norm.hpp"

#include <cmath>

#include "support/testing.hpp"

using namespace lmrl;
using testing::fill_uniform;

TEST_CASE("rms_norm on a hand-computed row") {
  // x = [3, 4], w = [1, 2], eps = 0: mean x^2 = (9 + 16) / 2 = 12.5, r = 1/sqrt(12.5)
  // y = [3 r * 1, 4 r * 2] = [0.848528..., 2.262741...]
  double x[] = {3, 4}, w[] = {1, 2}, y[2], r[1];
  ops::rms_norm_forward<double>(matrix_view<const double>(x, {1, 2}), vector_view<const double>(w, {2}), 0.0,
                                matrix_view<double>(y, {1, 2}), vector_view<double>(r, {1}));
  CHECK(r[0] == doctest::Approx(1 / std::sqrt(12.5)).epsilon(1e-15));
  CHECK(y[0] == doctest::Approx(0.8485281374238571).epsilon(1e-14));
  CHECK(y[1] == doctest::Approx(2.2627416997969522).epsilon(1e-14));
  // eps enters under the root: x = [0, 0] gives r = 1/sqrt(eps)
  double z[] = {0, 0};
  ops::rms_norm_forward<double>(matrix_view<const double>(z, {1, 2}), vector_view<const double>(w, {2}), 0.25,
                                matrix_view<double>(y, {1, 2}), vector_view<double>(r, {1}));
  CHECK(r[0] == 2);
  CHECK(y[0] == 0);
}

TEST_CASE("rms_norm backward matches finite differences for x and the weight, grad_x accumulates") {
  const index_t n = 3, d = 5;
  dense<double, 2> x({n, d}), w({1, d}), g({n, d});
  fill_uniform(x.view(), 1);
  fill_uniform(w.view(), 2, 0.5, 1.5);
  fill_uniform(g.view(), 3);
  const double eps = 1e-3;
  auto loss = [&](const dense<double, 2>& xx, const dense<double, 2>& ww) {
    dense<double, 2> y({n, d});
    ops::rms_norm_forward<double>(xx.view(), ww.view().row(0), eps, y.view(), {});
    double s = 0;
    for (index_t k = 0; k < y.size(); ++k) s += y.data()[k] * g.data()[k];
    return s;
  };
  dense<double, 2> y({n, d}), r({1, n}), dx({n, d}), dw({1, d});
  ops::rms_norm_forward<double>(x.view(), w.view().row(0), eps, y.view(), r.view().row(0));
  dx(0, 0) = 7;  // accumulation: the result is 7 + dL/dx
  ops::rms_norm_backward<double>(x.view(), w.view().row(0), r.view().row(0), g.view(), dx.view(), dw.view().row(0));
  dx(0, 0) -= 7;
  testing::check_gradient([&](const dense<double, 2>& v) { return loss(v, w); }, x, dx);
  testing::check_gradient([&](const dense<double, 2>& v) { return loss(x, v); }, w, dw);
}

TEST_CASE("rms_norm works in place and checks shapes") {
  double x[] = {3, 4}, w[] = {1, 1};
  ops::rms_norm_forward<double>(matrix_view<const double>(x, {1, 2}), vector_view<const double>(w, {2}), 0.0,
                                matrix_view<double>(x, {1, 2}), {});
  CHECK(x[0] == doctest::Approx(3 / std::sqrt(12.5)));
  double y[3];
  CHECK_THROWS_WITH_AS(ops::rms_norm_forward<double>(matrix_view<const double>(x, {1, 2}),
                                                     vector_view<const double>(w, {2}), 0.0,
                                                     matrix_view<double>(y, {1, 3}), {}),
                       doctest::Contains("y has shape [1 x 3]"), error);
  CHECK_THROWS_WITH_AS(ops::rms_norm_forward<double>(matrix_view<const double>(y, {1, 3}),
                                                     vector_view<const double>(w, {2}), 0.0,
                                                     matrix_view<double>(y, {1, 3}), {}),
                       doctest::Contains("weight has 2 elements"), error);
}
