// model/ops/rope.hpp: rotary embeddings, rotate_half convention.
#include "lmrl/model/ops/rope.hpp"

#include <cmath>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl;
using testing::fill_uniform;

TEST_CASE("rope rotates the halves (not interleaved pairs) by p * theta^(-2i/hd)") {
  // hd = 4, theta = 100: inv_freq = [1, 100^(-2/4)] = [1, 0.1]. At position 1 the angles are [1, 0.1].
  // x = e0 -> y[0] = cos 1, y[2] = sin 1 (e0 pairs with e2, the other half); x = e1 -> y[1] = cos .1, y[3] = sin .1
  ops::rope_table<double> table(4, 8, 100.0);
  double x[] = {1, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
  std::vector<index_t> pos = {1, 1, 0};
  ops::rope_forward<double>(table, matrix_view<double>(x, {3, 4}), pos, 1);
  CHECK(x[0] == doctest::Approx(std::cos(1.0)).epsilon(1e-15));
  CHECK(x[1] == 0);
  CHECK(x[2] == doctest::Approx(std::sin(1.0)).epsilon(1e-15));
  CHECK(x[3] == 0);
  CHECK(x[5] == doctest::Approx(std::cos(0.1)).epsilon(1e-15));
  CHECK(x[7] == doctest::Approx(std::sin(0.1)).epsilon(1e-15));
  CHECK(x[8] == 1);  // position 0: identity
  CHECK(x[11] == 4);
}

TEST_CASE("rope on several heads, negative positions (padding) are untouched, backward inverts forward") {
  ops::rope_table<double> table(4, 16, 10000.0);
  dense<double, 2> x({3, 8});
  fill_uniform(x.view(), 1);
  dense<double, 2> y = x;
  std::vector<index_t> pos = {5, -1, 15};
  ops::rope_forward<double>(table, y.view(), pos, 2);
  for (index_t j = 0; j < 8; ++j) CHECK(y(1, j) == x(1, j));
  // head 1 of row 0 is rotated like head 0 (same position)
  double h1[4] = {x(0, 4), x(0, 5), x(0, 6), x(0, 7)};
  std::vector<index_t> p5 = {5};
  ops::rope_forward<double>(table, matrix_view<double>(h1, {1, 4}), p5, 1);
  for (index_t j = 0; j < 4; ++j) CHECK(y(0, 4 + j) == h1[j]);
  ops::rope_backward<double>(table, y.view(), pos, 2);  // a rotation's transpose is its inverse
  for (index_t k = 0; k < x.size(); ++k) CHECK(y.data()[k] == doctest::Approx(x.data()[k]).epsilon(1e-14));
}

TEST_CASE("rope backward matches finite differences") {
  ops::rope_table<double> table(6, 10, 500.0);
  dense<double, 2> x({2, 12}), g({2, 12});
  fill_uniform(x.view(), 2);
  fill_uniform(g.view(), 3);
  std::vector<index_t> pos = {3, 9};
  auto loss = [&](const dense<double, 2>& v) {
    dense<double, 2> y = v;
    ops::rope_forward<double>(table, y.view(), pos, 2);
    double s = 0;
    for (index_t k = 0; k < y.size(); ++k) s += y.data()[k] * g.data()[k];
    return s;
  };
  dense<double, 2> dx = g;
  ops::rope_backward<double>(table, dx.view(), pos, 2);
  testing::check_gradient(loss, x, dx);
}

TEST_CASE("the float table is computed in float, as transformers does") {
  ops::rope_table<float> table(64, 200, 10000.0);
  const float inv = 1.0f / std::pow(10000.0f, 2.0f * 5 / 64.0f);
  CHECK(table.cos(123)[5] == std::cos(inv * 123.0f));
  CHECK(table.sin(123)[5] == std::sin(inv * 123.0f));
}

TEST_CASE("rope checks its arguments") {
  CHECK_THROWS_WITH_AS(ops::rope_table<double>(3, 8, 1e4), doctest::Contains("head_dim = 3"), error);
  ops::rope_table<double> table(4, 8, 100.0);
  dense<double, 2> x({2, 8});
  std::vector<index_t> pos = {1, 8};
  CHECK_THROWS_WITH_AS(ops::rope_forward<double>(table, x.view(), pos, 2),
                       doctest::Contains("positions[1] = 8 is beyond the table's max_positions = 8"), error);
  std::vector<index_t> one = {1};
  CHECK_THROWS_WITH_AS(ops::rope_forward<double>(table, x.view(), one, 2), doctest::Contains("positions has 1"),
                       error);
  CHECK_THROWS_WITH_AS(ops::rope_forward<double>(table, x.view(), pos, 3), doctest::Contains("3 heads"), error);
}
