// model/ops/swiglu.hpp: silu(gate) * up and its backward.
#include "lmrl/model/ops/swiglu.hpp"

#include <cmath>
#include <vector>

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

TEST_CASE("swiglu in float: the vectorized chunks match the formula, and a row's bits do not depend on its address") {
  const index_t m = 40;  // two chunks of 16 and a scalar tail of 8
  std::vector<float> buf(3 * m + 1);
  dense<double, 2> src({3, m});
  fill_uniform(src.view(), 7, -9, 9);
  // Row 0 of `at0` and row 0 of `at1` hold the same numbers, one float apart in memory.
  const auto fill = [&](float* p) {
    for (index_t k = 0; k < 3 * m; ++k) p[k] = static_cast<float>(src.data()[k]);
  };
  std::vector<float> at0(3 * m), up(3 * m), go(3 * m);
  fill(at0.data());
  fill(buf.data() + 1);
  for (index_t k = 0; k < 3 * m; ++k) {
    up[static_cast<std::size_t>(k)] = 0.5f + 0.01f * static_cast<float>(k);
    go[static_cast<std::size_t>(k)] = 1.0f - 0.02f * static_cast<float>(k);
  }
  const auto view = [&](const float* p, index_t rows) { return matrix_view<const float>(p, {rows, m}); };
  std::vector<float> out0(3 * m), out1(m), gg0(3 * m), gu0(3 * m), gg1(m), gu1(m);
  ops::swiglu_forward<float>(view(at0.data(), 3), view(up.data(), 3), matrix_view<float>(out0.data(), {3, m}));
  ops::swiglu_forward<float>(view(buf.data() + 1, 1), view(up.data(), 1), matrix_view<float>(out1.data(), {1, m}));
  ops::swiglu_backward<float>(view(at0.data(), 3), view(up.data(), 3), view(go.data(), 3),
                              matrix_view<float>(gg0.data(), {3, m}), matrix_view<float>(gu0.data(), {3, m}));
  ops::swiglu_backward<float>(view(buf.data() + 1, 1), view(up.data(), 1), view(go.data(), 1),
                              matrix_view<float>(gg1.data(), {1, m}), matrix_view<float>(gu1.data(), {1, m}));
  for (index_t j = 0; j < m; ++j) {
    const auto k = static_cast<std::size_t>(j);
    CHECK(out1[k] == out0[k]);  // bit for bit, batched or alone, aligned or not
    CHECK(gg1[k] == gg0[k]);
    CHECK(gu1[k] == gu0[k]);
  }
  for (index_t k = 0; k < 3 * m; ++k) {
    const auto i = static_cast<std::size_t>(k);
    const double g = at0[i], u = up[i], dy = go[i], s = 1 / (1 + std::exp(-g));
    CHECK(out0[i] == doctest::Approx(g * s * u).epsilon(1e-6));
    CHECK(gu0[i] == doctest::Approx(dy * g * s).epsilon(1e-6));
    // grad_gate sums 1 and g (1 - s), which cancel near g = -1.28: bound the error by the terms' size.
    const double scale = std::abs(dy * u * s) * (1 + std::abs(g));
    CHECK(std::abs(gg0[i] - dy * u * s * (1 + g * (1 - s))) <= 1e-6 * scale);
  }
}

TEST_CASE("swiglu checks shapes") {
  dense<double, 2> a({2, 3}), b({3, 2});
  CHECK_THROWS_WITH_AS(ops::swiglu_forward<double>(a.view(), b.view(), a.view()),
                       doctest::Contains("up has shape [3 x 2]"), error);
  CHECK_THROWS_AS(ops::swiglu_backward<double>(a.view(), a.view(), a.view(), a.view(), b.view()), error);
}
