// model/ops/packed_matmul.hpp: the packed product against a hand-computed case
// and against matmul_nt over shapes that hit every kernel path (full and
// partial row blocks, full and partial panels, several chunks of rows), its
// bits independent of the batch, and its errors.
#include "lmrl/model/ops/packed_matmul.hpp"

#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "lmrl/model/ops/matmul.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using testing::fill_uniform;

TEST_CASE("matmul_packed on a hand-computed case: two matrices stacked along the outputs") {
  // W = [wq; wk] = [1 2 3; 4 5 6; 7 8 9], x = [1 0 -1; 2 1 0]: y = x W^T
  const double wq[] = {1, 2, 3, 4, 5, 6}, wk[] = {7, 8, 9}, x[] = {1, 0, -1, 2, 1, 0};
  const ops::packed_matrix<double> w({matrix_view<const double>(wq, {2, 3}), matrix_view<const double>(wk, {1, 3})});
  CHECK(w.inputs() == 3);
  CHECK(w.outputs() == 3);
  double y[6];
  ops::matmul_packed<double>(matrix_view<const double>(x, {2, 3}), w, matrix_view<double>(y, {2, 3}));
  // row 0: [1-3, 4-6, 7-9] = [-2 -2 -2]; row 1: [2+2, 8+5, 14+8] = [4 13 22]
  CHECK(y[0] == -2);
  CHECK(y[1] == -2);
  CHECK(y[2] == -2);
  CHECK(y[3] == 4);
  CHECK(y[4] == 13);
  CHECK(y[5] == 22);
  ops::matmul_packed<double>(matrix_view<const double>(x, {2, 3}), w, matrix_view<double>(y, {2, 3}), true);
  CHECK(y[0] == -4);
  CHECK(y[5] == 44);
}

TEST_CASE("matmul_packed equals matmul_nt for every row-block and panel remainder, overwriting and accumulating") {
  const index_t panel = ops::packed_matrix<double>::panel_width, rows = ops::detail::packed_rows;
  const index_t chunk = ops::detail::packed_chunk_rows;
  for (const index_t m : {index_t(1), rows - 1, rows, rows + 1, 2 * rows + 5, 2 * chunk + rows + 3})
    for (const index_t k : {index_t(1), index_t(7), index_t(64)})
      for (const index_t n : {index_t(1), panel - 1, panel, 2 * panel + 3}) {
        CAPTURE(m);
        CAPTURE(k);
        CAPTURE(n);
        // x and y are column blocks of wider matrices (row strides k + 3 and n + 2).
        dense<double, 2> xs({m, k + 3}), w({n, k}), ys({m, n + 2}), expect({m, n});
        fill_uniform(xs.view(), 11);
        fill_uniform(w.view(), 12);
        fill_uniform(ys.view(), 13);
        const dense<double, 2> before = ys;
        const matrix_view<const double> x(xs.data() + 1, {m, k}, {k + 3, 1});
        const matrix_view<double> y(ys.data() + 1, {m, n}, {n + 2, 1});
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < n; ++j) expect(i, j) = y(i, j);
        const ops::packed_matrix<double> pw({w.view()});
        ops::matmul_nt<double>(x, w.view(), expect.view(), true);
        ops::matmul_packed<double>(x, pw, y, true);
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < n; ++j) CHECK(y(i, j) == doctest::Approx(expect(i, j)).epsilon(1e-13));
        for (index_t i = 0; i < m; ++i) {  // the columns beside y are untouched
          CHECK(ys(i, 0) == before(i, 0));
          CHECK(ys(i, n + 1) == before(i, n + 1));
        }
        ops::matmul_nt<double>(x, w.view(), expect.view());
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < n; ++j) y(i, j) = std::numeric_limits<double>::quiet_NaN();
        ops::matmul_packed<double>(x, pw, y);
        for (index_t i = 0; i < m; ++i)
          for (index_t j = 0; j < n; ++j) CHECK(y(i, j) == doctest::Approx(expect(i, j)).epsilon(1e-13));
      }
}

TEST_CASE("a row's product has the same bits alone and anywhere in a batch (float)") {
  const index_t m = ops::detail::packed_chunk_rows + 29, k = 100, n = 70;  // two chunks of rows
  dense<float, 2> x({m, k}), w({n, k}), batch({m, n});
  fill_uniform(x.view(), 21);
  fill_uniform(w.view(), 22);
  const ops::packed_matrix<float> pw({w.view()});
  ops::matmul_packed<float>(x.view(), pw, batch.view());
  std::vector<float> alone(static_cast<std::size_t>(n + 1));
  for (index_t i = 0; i < m; ++i) {
    // one row, at an odd offset so its address differs from the batch's rows
    ops::matmul_packed<float>(matrix_view<const float>(&x(i, 0), {1, k}), pw,
                              matrix_view<float>(alone.data() + 1, {1, n}));
    for (index_t j = 0; j < n; ++j) CHECK(alone[static_cast<std::size_t>(j + 1)] == batch(i, j));
  }
}

TEST_CASE("float products agree with double to float rounding") {
  const index_t m = 17, k = 300, n = 45;
  dense<double, 2> x({m, k}), w({n, k}), y({m, n});
  fill_uniform(x.view(), 31);
  fill_uniform(w.view(), 32);
  dense<float, 2> xf({m, k}), wf({n, k}), yf({m, n});
  for (index_t i = 0; i < x.size(); ++i) x.data()[i] = xf.data()[i] = static_cast<float>(x.data()[i]);
  for (index_t i = 0; i < w.size(); ++i) w.data()[i] = wf.data()[i] = static_cast<float>(w.data()[i]);
  ops::matmul_nt<double>(x.view(), w.view(), y.view());
  ops::matmul_packed<float>(xf.view(), ops::packed_matrix<float>({wf.view()}), yf.view());
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double magnitude = 0;  // sum |x w|: k roundings of at most 2^-24 of it each
      for (index_t l = 0; l < k; ++l) magnitude += std::abs(x(i, l) * w(j, l));
      CHECK(std::abs(static_cast<double>(yf(i, j)) - y(i, j)) <= 1e-7 * static_cast<double>(k) * magnitude);
    }
}

TEST_CASE("no inputs gives zeros, and bad shapes, mismatched matrices and strided rows are lmrl::error") {
  dense<double, 2> empty({3, 0}), x0({2, 0}), y({2, 3});
  fill_uniform(y.view(), 41);
  ops::matmul_packed<double>(x0.view(), ops::packed_matrix<double>({empty.view()}), y.view());
  for (index_t i = 0; i < y.size(); ++i) CHECK(y.data()[i] == 0);

  dense<double, 2> a({2, 3}), b({4, 3}), c({1, 2});
  CHECK_THROWS_WITH_AS(ops::packed_matrix<double>({a.view(), c.view()}), doctest::Contains("must agree"), error);
  const ops::packed_matrix<double> w({a.view(), b.view()});  // W^T [3 x 6]
  dense<double, 2> x({2, 3}), out({2, 5}), wide({2, 6});
  CHECK_THROWS_WITH_AS(ops::matmul_packed<double>(x.view(), w, out.view()), doctest::Contains("does not fit"), error);
  CHECK_THROWS_WITH_AS(ops::matmul_packed<double>(b.view(), w, wide.view()), doctest::Contains("does not fit"), error);
  const matrix_view<const double> columns(b.data(), {2, 3}, {1, 2});
  CHECK_THROWS_WITH_AS(ops::matmul_packed<double>(columns, w, wide.view()), doctest::Contains("contiguous rows"), error);
  const std::span<const matrix_view<const double>> none{};
  CHECK_THROWS_WITH_AS(ops::packed_matrix<double>{none}, doctest::Contains("no matrices"), error);
}
