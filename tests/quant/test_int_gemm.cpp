// Integer products (lmrl/quant/int_gemm.hpp) for q8_0, q4_0, q4_k, tq2_0 and
// int8_rows weights: every path gives the same bits; each equals the double-precision
// product of the dequantized weights and the dequantized (Q8_0) activations
// to float rounding; the error against the float product of the unquantized
// matrices stays within the bound the block scales give; strides, accumulate,
// matvec, X quantized once for several weights, threads, and bad shapes;
// integer_linear by name.
#include "lmrl/quant/int_gemm.hpp"

#include <string>
#include <type_traits>

#include "lmrl/quant/integer_linear.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "support/threads.hpp"

using namespace lmrl;

namespace {

constexpr double u = 0x1p-24;  // float's unit roundoff

std::vector<float> gaussian(std::size_t n, float sd, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(gen);
  return v;
}

// The weights the kernels multiply, in double ([rows x cols]; the padding is zero), and how far
// each is from w: half a step (q8_0, int8_rows) or a whole one (q4_0's missing 16th level), plus
// the rounding of the half scale (2^-11 of the block's largest code) or of 1 / s.
// error empty: no bound is checked (q4_k). term: the size of what the kernels multiply x by
// (q4_k: |d sc_j q| + |dmin m_j|, which may cancel in the value); empty: |value|.
struct weights_as_double {
  std::vector<double> value, error, term;
};

// The dequantized matrix of a block format whose error bound follows from the
// largest |w| of each block: error = bound(amax of the value's block).
template <class Q, class Bound>
weights_as_double with_block_bound(const quantized_matrix<Q>& q, const std::vector<float>& w, Bound bound) {
  const index_t rows = q.rows(), cols = q.cols(), block = static_cast<index_t>(Q::block_size);
  std::vector<float> f(static_cast<std::size_t>(rows * cols));
  q.dequantize_to(matrix_view<float>(f.data(), {rows, cols}));  // exact: a code times a half
  weights_as_double out{{f.begin(), f.end()}, std::vector<double>(f.size()), {}};
  for (index_t r = 0; r < rows; ++r)
    for (index_t b = 0; b * block < cols; ++b) {
      double amax = 0;
      for (index_t c = b * block; c < std::min(cols, b * block + block); ++c)
        amax = std::max(amax, std::fabs(double(w[static_cast<std::size_t>(r * cols + c)])));
      for (index_t c = b * block; c < std::min(cols, b * block + block); ++c)
        out.error[static_cast<std::size_t>(r * cols + c)] = bound(amax);
    }
  return out;
}
weights_as_double dequantized(const quantized_matrix<q8_0>& q, const std::vector<float>& w) {
  return with_block_bound(q, w, [](double amax) { return amax / 127 * (0.5 + 128 * 0x1p-11); });
}
weights_as_double dequantized(const quantized_matrix<q4_0>& q, const std::vector<float>& w) {
  return with_block_bound(q, w, [](double amax) { return amax / 8 * (1 + 16 * 0x1p-11); });
}
weights_as_double dequantized(const quantized_matrix<q4_k>& q, const std::vector<float>&) {
  const index_t rows = q.rows(), cols = q.cols();
  std::vector<float> f(static_cast<std::size_t>(rows * cols));
  q.dequantize_to(matrix_view<float>(f.data(), {rows, cols}));  // d sc q - dmin m, rounded to float once
  weights_as_double out{{f.begin(), f.end()}, {}, std::vector<double>(f.size())};
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) {
      const std::uint8_t* block = q.row_bytes_of(r).data() + c / 256 * q4_k::bytes_per_block;
      const int j = static_cast<int>(c % 256 / 32);
      int sc, m;
      detail::k_quants::scale_min(j, block + 4, sc, m);
      const int code = (block[16 + 32 * (j / 2) + c % 32] >> (4 * (j % 2))) & 15;
      out.term[static_cast<std::size_t>(r * cols + c)] =
          std::fabs(double(detail::load_half(block)) * sc * code) + std::fabs(double(detail::load_half(block + 2)) * m);
    }
  return out;
}
weights_as_double dequantized(const quantized_matrix<tq2_0>& q, const std::vector<float>& w) {
  // absmax: d = max|w| of the block of 256 (then a half); each w is within d / 2 of 0 or of +-d
  return with_block_bound(q, w, [](double amax) { return amax * (0.5 + 0x1p-11); });
}
weights_as_double dequantized(const int8_rows& q, const std::vector<float>&) {
  const index_t rows = q.rows(), cols = q.cols();
  weights_as_double out{std::vector<double>(static_cast<std::size_t>(rows * cols)),
                        std::vector<double>(static_cast<std::size_t>(rows * cols)), {}};
  for (index_t r = 0; r < rows; ++r) {
    const double s = q.scales()[static_cast<std::size_t>(r)];
    for (index_t c = 0; c < cols; ++c) {
      out.value[static_cast<std::size_t>(r * cols + c)] = q.row_codes(r)[c] * s;  // exact in double
      out.error[static_cast<std::size_t>(r * cols + c)] = s * (0.5 + 0x1p-15);
    }
  }
  return out;
}

// A product, checked. Y is a column-major view (strides {1, n}), X has rows `x_stride` apart.
template <class W>
void check_product(index_t rows, index_t cols, index_t n, unsigned seed) {
  constexpr bool with_min = std::is_same_v<W, quantized_matrix<q4_k>>;  // two terms a block
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.05f, seed);
  const index_t x_stride = cols + 5;
  const auto x = gaussian(static_cast<std::size_t>(n * x_stride), 1.0f, seed + 1);
  const matrix_view<const float> xv(x.data(), {n, cols}, {x_stride, 1});
  const W q(matrix_view<const float>(w.data(), {rows, cols}));
  const auto wd = dequantized(q, w);
  const std::size_t nb = static_cast<std::size_t>((cols + 31) / 32);
  const auto y_before = gaussian(static_cast<std::size_t>(n * rows), 3.0f, seed + 2);

  std::vector<float> first, first_acc;  // the scalar path's outputs
  for (int_dot_path path : supported_int_dot_paths()) {
    INFO(detail::int_kernels::name_of(q), " [", rows, " x ", cols, "], n = ", n, ", path ", to_string(path));
    q8_0_rows xq;
    quantize_rows_q8_0(xv, xq, path);
    std::vector<float> y(static_cast<std::size_t>(n * rows), -7.0f), y_acc = y_before;
    int_matmul_transposed(xv, q, matrix_view<float>(y.data(), {n, rows}, {1, n}), false, path);
    int_matmul_transposed(xv, q, matrix_view<float>(y_acc.data(), {n, rows}, {1, n}), true, path);
    if (first.empty()) {
      first = y;
      first_acc = y_acc;
    }
    CHECK(std::equal(y.begin(), y.end(), first.begin(), first.end(), [](float a, float b) {
      return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
    }));
    CHECK(std::equal(y_acc.begin(), y_acc.end(), first_acc.begin(), first_acc.end(), [](float a, float b) {
      return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
    }));

    double worst_rounding = 0, worst_quantization = 0;
    for (index_t i = 0; i < n; ++i) {
      std::vector<float> xd(static_cast<std::size_t>(xq.padded_cols()));
      dequantize(q8_0{}, xq.row_bytes_of(i), std::span<float>(xd));  // exact: 8-bit code times an 11-bit half
      for (index_t r = 0; r < rows; ++r) {
        double ref = 0, magnitude = 0, exact = 0, bound = 0, dequant = 0;
        for (index_t c = 0; c < cols; ++c) {
          const auto k = static_cast<std::size_t>(r * cols + c);
          const double xh = xd[static_cast<std::size_t>(c)], xf = xv(i, c);
          ref += wd.value[k] * xh;
          magnitude += (wd.term.empty() ? std::fabs(wd.value[k]) : wd.term[k]) * std::fabs(xh);
          if (with_min) dequant += std::fabs(wd.value[k] * xh) * u;  // the float that dequantize_to rounded
          exact += double(w[k]) * xf;
          if (wd.error.empty()) continue;
          // activation error: half a step of its block plus the half scale's rounding (as the weights')
          double xmax = 0;
          for (index_t e = c / 32 * 32; e < std::min(cols, c / 32 * 32 + 32); ++e)
            xmax = std::max(xmax, std::fabs(double(xv(i, e))));
          bound += wd.error[k] * std::fabs(xh) + std::fabs(double(w[k])) * xmax / 127 * (0.5 + 128 * 0x1p-11);
        }
        const double got = y[static_cast<std::size_t>(r * n + i)], got_acc = y_acc[static_cast<std::size_t>(r * n + i)];
        const double before = y_before[static_cast<std::size_t>(r * n + i)];
        // Rounding: each term d_w d_x lane goes through the rounding of d_w d_x, at most ceil(nb / 2)
        // fused multiply-adds on its parity's chain, even + odd, the 3 additions of the lane tree, and
        // the row scale (int8_rows): each a factor (1 + delta), |delta| <= u, so the sum is off by at
        // most about (ceil(nb / 2) + 6) u times the sum of the terms' magnitudes (<= magnitude).
        // (q4_k: two fused multiply-adds a block, d sc_j d_x lane and dmin m_j d_x times minus x's sums)
        const double chain = static_cast<double>((nb + 1) / 2) * (with_min ? 2 : 1);
        const double tolerance = (chain + 7) * u * magnitude + dequant;
        CHECK(std::fabs(got - ref) <= tolerance);
        CHECK(std::fabs(got_acc - (before + ref)) <= tolerance + u * (std::fabs(before) + std::fabs(ref)));
        worst_rounding = std::max(worst_rounding, std::fabs(got - ref) / (magnitude + 1e-300));
        // Quantization: |W^ X^ - W X| <= sum |W^ - W| |X^| + |W| |X^ - X|, each error within its block's bound
        if (wd.error.empty()) continue;
        CHECK(std::fabs(got - exact) <= bound + tolerance);
        worst_quantization = std::max(worst_quantization, std::fabs(got - exact) / bound);
      }
    }
    if (!wd.error.empty()) CHECK(worst_quantization < 1.0);
  }
}

}  // namespace

TEST_CASE(
    "int GEMM: every path gives the same bits and the double product of the dequantized operands to float rounding") {
  struct shape {
    index_t rows, cols, n;
  };
  // cols: not a multiple of 32 (40, 344 = 10.75 x 32 as the teacher's FFN), under one block (8), whole blocks;
  // rows: not a multiple of the kernels' 4; n: 1, and more than the kernels' 4 activation rows
  for (const shape s : {shape{7, 40, 1}, shape{13, 344, 5}, shape{9, 96, 3}, shape{6, 8, 9}, shape{4, 64, 2}}) {
    check_product<quantized_matrix<q8_0>>(s.rows, s.cols, s.n, 101);
    check_product<quantized_matrix<q4_0>>(s.rows, s.cols, s.n, 202);
    check_product<int8_rows>(s.rows, s.cols, s.n, 303);
  }
}

TEST_CASE("int GEMM with q4_k and tq2_0 weights: rows of 256, 344 and 896 values, padded to whole blocks of 256") {
  // 344 = 1.34 blocks of 256 (11 activation blocks of 32 against 16 weight sub-blocks), 896 = 3.5 blocks
  for (const index_t cols : {256, 344, 896})
    for (const index_t n : {1, 5}) {
      check_product<quantized_matrix<q4_k>>(7, cols, n, 404);
      check_product<quantized_matrix<tq2_0>>(6, cols, n, 505);
    }
}

TEST_CASE("int_matvec is the one-row product, with strides and accumulate") {
  const index_t rows = 11, cols = 72;
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.05f, 5),
             x = gaussian(static_cast<std::size_t>(2 * cols), 1.0f, 6);
  const quantized_matrix<q4_0> q(matrix_view<const float>(w.data(), {rows, cols}));
  const vector_view<const float> xv(x.data(), {cols}, {2});  // every other float
  std::vector<float> dense(static_cast<std::size_t>(cols));
  for (index_t c = 0; c < cols; ++c) dense[static_cast<std::size_t>(c)] = xv(c);
  for (int_dot_path path : supported_int_dot_paths()) {
    INFO("path ", to_string(path));
    std::vector<float> y(static_cast<std::size_t>(rows)), y_strided(static_cast<std::size_t>(3 * rows), 1.0f);
    int_matmul_transposed(matrix_view<const float>(dense.data(), {1, cols}), q, matrix_view<float>(y.data(), {1, rows}),
                          false, path);
    int_matvec(q, xv, vector_view<float>(y_strided.data(), {rows}, {3}), true, path);
    for (index_t r = 0; r < rows; ++r) {
      CHECK(y_strided[static_cast<std::size_t>(3 * r)] == 1.0f + y[static_cast<std::size_t>(r)]);
      CHECK(y_strided[static_cast<std::size_t>(3 * r + 1)] == 1.0f);  // between the strides: untouched
    }
  }
}

TEST_CASE("int GEMM: X quantized once serves several weights, as quantizing it each time does") {
  const index_t cols = 100, n = 6;
  const auto x = gaussian(static_cast<std::size_t>(n * cols), 1.0f, 8);
  const auto wa = gaussian(static_cast<std::size_t>(9 * cols), 0.05f, 9),
             wb = gaussian(static_cast<std::size_t>(5 * cols), 0.05f, 10);
  const quantized_matrix<q8_0> a(matrix_view<const float>(wa.data(), {9, cols}));
  const int8_rows b(matrix_view<const float>(wb.data(), {5, cols}));
  const matrix_view<const float> xv(x.data(), {n, cols});
  q8_0_rows xq;
  quantize_rows_q8_0(xv, xq);
  std::vector<float> ya(static_cast<std::size_t>(n * 9)), yb(static_cast<std::size_t>(n * 5)), ya2 = ya, yb2 = yb;
  int_matmul_transposed(xq, a, matrix_view<float>(ya.data(), {n, 9}));
  int_matmul_transposed(xq, b, matrix_view<float>(yb.data(), {n, 5}));
  int_matmul_transposed(xv, a, matrix_view<float>(ya2.data(), {n, 9}));
  q8_0_rows scratch;
  int_matmul_transposed(xv, b, matrix_view<float>(yb2.data(), {n, 5}), scratch);
  CHECK(ya == ya2);
  CHECK(yb == yb2);
}

TEST_CASE("int GEMM: the bits do not depend on the number of threads") {
  // large enough to run in parallel: 64 rows x 8 activation rows x 32 blocks
  const index_t rows = 64, cols = 1024, n = 8;
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.05f, 12),
             x = gaussian(static_cast<std::size_t>(n * cols), 1.0f, 13);
  const quantized_matrix<q8_0> q(matrix_view<const float>(w.data(), {rows, cols}));
  std::vector<std::vector<float>> results;
  const testing::restore_threads restore;
  for (const int threads : testing::thread_counts()) {
    testing::set_threads(threads);
    results.emplace_back(static_cast<std::size_t>(n * rows));
    int_matmul_transposed(matrix_view<const float>(x.data(), {n, cols}), q,
                          matrix_view<float>(results.back().data(), {n, rows}));
  }
  for (const auto& r : results) CHECK(r == results[0]);
}

TEST_CASE("int GEMM: bad shapes are errors naming what was expected") {
  const auto w = gaussian(7 * 48, 0.05f, 14);
  const quantized_matrix<q8_0> q(matrix_view<const float>(w.data(), {7, 48}));
  const int8_rows qi(matrix_view<const float>(w.data(), {7, 48}));
  std::vector<float> x(3 * 48), y(3 * 7);
  CHECK_THROWS_WITH_AS(
      int_matmul_transposed(matrix_view<const float>(x.data(), {3, 40}), q, matrix_view<float>(y.data(), {3, 7})),
      doctest::Contains("int_matmul_transposed<q8_0>: x has 40 columns, the matrix 48"), lmrl::error);
  CHECK_THROWS_WITH_AS(
      int_matmul_transposed(matrix_view<const float>(x.data(), {3, 48}), qi, matrix_view<float>(y.data(), {7, 3})),
      doctest::Contains("int_matmul_transposed<int8_rows>: y is [7 x 3], expected [3 x 7]"), lmrl::error);
  q8_0_rows xq;
  quantize_rows_q8_0(matrix_view<const float>(x.data(), {2, 64}), xq);
  CHECK_THROWS_WITH_AS(int_matmul_transposed(xq, q, matrix_view<float>(y.data(), {2, 7})),
                       doctest::Contains("x has 64 columns, the matrix 48"), lmrl::error);
  quantize_rows_q8_0(matrix_view<const float>(x.data(), {2, 48}), xq);
  CHECK_THROWS_WITH_AS(int_matmul_transposed(xq, q, matrix_view<float>(y.data(), {3, 7})),
                       doctest::Contains("y is [3 x 7], expected [2 x 7]"), lmrl::error);
  CHECK_THROWS_WITH_AS(int_matvec(q, vector_view<const float>(x.data(), {48}), vector_view<float>(y.data(), {6})),
                       doctest::Contains("y is [1 x 6], expected [1 x 7]"), lmrl::error);
}

TEST_CASE("integer_linear by name: every format, its name back, and the product of the quantized_matrix it holds") {
  // the first three keep their values (flags and saved settings name them)
  static_assert(static_cast<int>(integer_format::q8_0) == 0 && static_cast<int>(integer_format::q4_0) == 1 &&
                static_cast<int>(integer_format::int8) == 2);
  const index_t rows = 5, cols = 344, n = 3;
  const auto w = gaussian(static_cast<std::size_t>(rows * cols), 0.05f, 31),
             x = gaussian(static_cast<std::size_t>(n * cols), 1.0f, 32);
  const matrix_view<const float> wv(w.data(), {rows, cols}), xv(x.data(), {n, cols});
  q8_0_rows xq;
  quantize_rows_q8_0(xv, xq);
  std::string names;
  for (const char* name : {"q8_0", "q4_0", "int8", "q4_k", "tq2_0", "tq2_0_absmean"}) {
    CAPTURE(name);
    const auto format = integer_format_by_name(name);
    REQUIRE(format.has_value());
    CHECK(std::string(integer_format_name(*format)) == name);
    names += (names.empty() ? "" : ", ") + std::string(name);
    const integer_linear q(*format, wv);
    CHECK(q.format() == *format);
    CHECK(q.rows() == rows);
    CHECK(q.cols() == cols);
    std::vector<float> y(static_cast<std::size_t>(n * rows)), want(y.size()), wq(w.size()), wq_want(w.size());
    q.multiply(xq, matrix_view<float>(y.data(), {n, rows}));
    q.dequantize_to(matrix_view<float>(wq.data(), {rows, cols}));
    const auto same_as = [&](const auto& m) {
      int_matmul_transposed(xq, m, matrix_view<float>(want.data(), {n, rows}));
      m.dequantize_to(matrix_view<float>(wq_want.data(), {rows, cols}));
      CHECK(q.bytes() == m.bytes().size());
    };
    switch (*format) {
      case integer_format::q8_0: same_as(quantized_matrix<q8_0>(wv)); break;
      case integer_format::q4_0: same_as(quantized_matrix<q4_0>(wv)); break;
      case integer_format::q4_k: same_as(quantized_matrix<q4_k>(wv)); break;
      case integer_format::tq2_0: same_as(quantized_matrix<tq2_0>(wv, tq2_0{ternary_rule::absmax})); break;
      case integer_format::tq2_0_absmean: same_as(quantized_matrix<tq2_0>(wv, tq2_0{ternary_rule::absmean})); break;
      case integer_format::int8: {
        const int8_rows m(wv);
        int_matmul_transposed(xq, m, matrix_view<float>(want.data(), {n, rows}));
        m.dequantize_to(matrix_view<float>(wq_want.data(), {rows, cols}));
        break;
      }
    }
    CHECK(y == want);
    CHECK(wq == wq_want);
  }
  CHECK(names == integer_format_names);
  CHECK_FALSE(integer_format_by_name("q5_k").has_value());
  CHECK_FALSE(integer_format_by_name("TQ2_0").has_value());
  // the two ternary rules hold different weights: absmean rounds fewer of a Gaussian's values to 0
  const integer_linear absmax(integer_format::tq2_0, wv), absmean(integer_format::tq2_0_absmean, wv);
  std::vector<float> a(w.size()), b(w.size());
  absmax.dequantize_to(matrix_view<float>(a.data(), {rows, cols}));
  absmean.dequantize_to(matrix_view<float>(b.data(), {rows, cols}));
  CHECK(std::count(a.begin(), a.end(), 0.0f) > std::count(b.begin(), b.end(), 0.0f));
}
