// model/ops/matmul.hpp: the three GEMM shapes, bias, and a Linear layer's
// backward checked against finite differences.
#include "lmrl/model/ops/matmul.hpp"

#include "support/testing.hpp"

using namespace lmrl;
using testing::fill_uniform;

TEST_CASE("matmul_nt/nn/tn on a hand-computed 2x2 case") {
  // a = [1 2; 3 4], b = [5 6; 7 8]
  double a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, c[4];
  matrix_view<const double> A(a, {2, 2}), B(b, {2, 2});
  matrix_view<double> C(c, {2, 2});
  ops::matmul_nt<double>(A, B, C);  // a b^T = [1*5+2*6, 1*7+2*8; 3*5+4*6, 3*7+4*8] = [17 23; 39 53]
  CHECK(c[0] == 17);
  CHECK(c[1] == 23);
  CHECK(c[2] == 39);
  CHECK(c[3] == 53);
  ops::matmul_nn<double>(A, B, C);  // a b = [1*5+2*7, 1*6+2*8; 3*5+4*7, 3*6+4*8] = [19 22; 43 50]
  CHECK(c[0] == 19);
  CHECK(c[1] == 22);
  CHECK(c[2] == 43);
  CHECK(c[3] == 50);
  ops::matmul_tn<double>(A, B, C, true);  // += a^T b = [1*5+3*7, 1*6+3*8; 2*5+4*7, 2*6+4*8] = [26 30; 38 44]
  CHECK(c[0] == 19 + 26);
  CHECK(c[1] == 22 + 30);
  CHECK(c[2] == 43 + 38);
  CHECK(c[3] == 50 + 44);
  ops::add_bias<double>(C, vector_view<const double>(b, {2}));  // + [5 6] on each row
  CHECK(c[0] == 45 + 5);
  CHECK(c[3] == 94 + 6);
  double g[2] = {1, 1};
  ops::add_column_sums<double>(A, vector_view<double>(g, {2}));  // [1 + 1+3, 1 + 2+4]
  CHECK(g[0] == 5);
  CHECK(g[1] == 7);
}

TEST_CASE("matmul works on strided row blocks (a head's columns inside a wider matrix)") {
  dense<double, 2> big({3, 5}), w({2, 2});
  fill_uniform(big.view(), 1);
  fill_uniform(w.view(), 2);
  matrix_view<const double> block(big.data() + 1, {3, 2}, {5, 1});  // columns 1..2
  dense<double, 2> out({3, 2});
  ops::matmul_nt<double>(block, w.view(), out.view());
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 2; ++j) {
      const double expect = big(i, 1) * w(j, 0) + big(i, 2) * w(j, 1);
      CHECK(out(i, j) == doctest::Approx(expect).epsilon(1e-15));
    }
}

TEST_CASE("a Linear layer's backward (dx = dy W, dW += dy^T x, db += sum dy) matches finite differences") {
  const index_t n = 4, in = 3, out = 5;
  dense<double, 2> x({n, in}), w({out, in}), bias({1, out}), g({n, out});
  fill_uniform(x.view(), 3);
  fill_uniform(w.view(), 4);
  fill_uniform(bias.view(), 5);
  fill_uniform(g.view(), 6);
  auto loss = [&](const dense<double, 2>& xx, const dense<double, 2>& ww, const dense<double, 2>& bb) {
    dense<double, 2> y({n, out});
    ops::matmul_nt<double>(xx.view(), ww.view(), y.view());
    ops::add_bias<double>(y.view(), bb.view().row(0));
    double s = 0;
    for (index_t k = 0; k < y.size(); ++k) s += y.data()[k] * g.data()[k];
    return s;
  };
  dense<double, 2> dx({n, in}), dw({out, in}), db({1, out});
  ops::matmul_nn<double>(g.view(), w.view(), dx.view());
  ops::matmul_tn<double>(g.view(), x.view(), dw.view(), true);
  ops::add_column_sums<double>(g.view(), db.view().row(0));
  testing::check_gradient([&](const dense<double, 2>& v) { return loss(v, w, bias); }, x, dx);
  testing::check_gradient([&](const dense<double, 2>& v) { return loss(x, v, bias); }, w, dw);
  testing::check_gradient([&](const dense<double, 2>& v) { return loss(x, w, v); }, bias, db);
}

TEST_CASE("float and double give the same product to float precision") {
  dense<double, 2> a({7, 9}), b({6, 9}), c({7, 6});
  fill_uniform(a.view(), 7);
  fill_uniform(b.view(), 8);
  dense<float, 2> af({7, 9}), bf({6, 9}), cf({7, 6});
  for (index_t k = 0; k < a.size(); ++k) af.data()[k] = static_cast<float>(a.data()[k]);
  for (index_t k = 0; k < b.size(); ++k) bf.data()[k] = static_cast<float>(b.data()[k]);
  ops::matmul_nt<double>(a.view(), b.view(), c.view());
  ops::matmul_nt<float>(af.view(), bf.view(), cf.view());
  for (index_t k = 0; k < c.size(); ++k) CHECK(cf.data()[k] == doctest::Approx(c.data()[k]).epsilon(1e-5));
}

TEST_CASE("bad shapes and non-contiguous rows are lmrl::error") {
  dense<double, 2> a({2, 3}), b({4, 2}), c({2, 4});
  CHECK_THROWS_WITH_AS(ops::matmul_nt<double>(a.view(), b.view(), c.view()), doctest::Contains("matmul_nt"), error);
  CHECK_THROWS_WITH_AS(ops::matmul_nn<double>(a.view(), b.view(), c.view()), doctest::Contains("does not fit"), error);
  matrix_view<const double> column(a.data(), {2, 2}, {1, 3});
  dense<double, 2> sq({2, 2});
  CHECK_THROWS_WITH_AS(ops::matmul_nn<double>(column, sq.view(), sq.view()), doctest::Contains("contiguous rows"),
                       error);
  double bias[3] = {};
  CHECK_THROWS_WITH_AS(ops::add_bias<double>(c.view(), vector_view<const double>(bias, {3})),
                       doctest::Contains("bias has 3 elements"), error);
}
