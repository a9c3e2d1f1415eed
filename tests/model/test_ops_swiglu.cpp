// model/ops/swiglu.hpp: silu(gate) * up and its backward.
#include "lmrl/model/ops/swiglu.hpp"

#include <cmath>

#include "support/testing.hpp"

using namespace lmrl;
using testing::fill_uniform;

TEST_CASE("swiglu on hand-computed values") {
  // silu(0) = 0; silu(1) = 1 / (1 + e^-1) = 0.7310585786300049; silu(-2) = -2 / (1 + e^2) = -0.23840584404423515
  double gate[] = {0, 1, -2}, up[] = {5, 2, 3}, out[3];
  ops::swiglu_forward<double>(matrix_view<const double>(gate, {1, 3}), matrix_view<const double>(up, {1, 3}),
                              matrix_view<double>(out, {1, 3}));
  CHECK(out[0] == 0);
  CHECK(out[1] == doctest::Approx(2 * 0.7310585786300049).epsilon(1e-15));
  CHECK(out[2] == doctest::Approx(3 * -0.23840584404423515).epsilon(1e-15));
  // d silu/dg at 0 = s (1 + 0) = 1/2: grad_gate = 1 * up * 1/2 = 2.5; grad_up = silu(0) = 0
  double go[] = {1, 1, 1}, gg[3], gu[3];
  ops::swiglu_backward<double>(matrix_view<const double>(gate, {1, 3}), matrix_view<const double>(up, {1, 3}),
                               matrix_view<const double>(go, {1, 3}), matrix_view<double>(gg, {1, 3}),
                               matrix_view<double>(gu, {1, 3}));
  CHECK(gg[0] == 2.5);
  CHECK(gu[0] == 0);
  CHECK(gu[1] == doctest::Approx(0.7310585786300049).epsilon(1e-15));
}

TEST_CASE("swiglu backward matches finite differences") {
  dense<double, 2> gate({3, 4}), up({3, 4}), g({3, 4});
  fill_uniform(gate.view(), 1, -3, 3);
  fill_uniform(up.view(), 2);
  fill_uniform(g.view(), 3);
  auto loss = [&](const dense<double, 2>& a, const dense<double, 2>& b) {
    dense<double, 2> y({3, 4});
    ops::swiglu_forward<double>(a.view(), b.view(), y.view());
    double s = 0;
    for (index_t k = 0; k < y.size(); ++k) s += y.data()[k] * g.data()[k];
    return s;
  };
  dense<double, 2> dg({3, 4}), du({3, 4});
  ops::swiglu_backward<double>(gate.view(), up.view(), g.view(), dg.view(), du.view());
  testing::check_gradient([&](const dense<double, 2>& v) { return loss(v, up); }, gate, dg);
  testing::check_gradient([&](const dense<double, 2>& v) { return loss(gate, v); }, up, du);
}

TEST_CASE("swiglu checks shapes") {
  dense<double, 2> a({2, 3}), b({3, 2});
  CHECK_THROWS_WITH_AS(ops::swiglu_forward<double>(a.view(), b.view(), a.view()),
                       doctest::Contains("up has shape [3 x 2]"), error);
  CHECK_THROWS_AS(ops::swiglu_backward<double>(a.view(), a.view(), a.view(), a.view(), b.view()), error);
}
