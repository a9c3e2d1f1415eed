// quantized_matrix (lmrl/quant/quantized_matrix.hpp): products equal those of
// the dequantized matrix for every format, the error against float32 grows as
// the bits shrink, bad shapes are errors, and quantizing a matrix gives the
// serial Quantizer path's bytes whatever the row quantizer, strides and number
// of threads, with the error of the lowest row that has a non-finite value.
#include "lmrl/quant/quantized_matrix.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "lmrl/quant/fp8_blocks.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/ternary.hpp"
#include "support/threads.hpp"

using namespace lmrl;

namespace {

struct product_errors {
  double vs_dequantized = 0;  // |Y - X dequant(W)^T|, relative to the largest |Y|
  double vs_float = 0;        // ||Y - X W^T||_F / ||X W^T||_F
};

template <Quantizer Q>
product_errors check_products(Q format = {}) {
  const index_t rows = 48, cols = 512, n = 3;
  std::mt19937 gen(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols)), x(static_cast<std::size_t>(n * cols));
  for (auto& v : w) v = 0.05f * normal(gen);
  for (auto& v : x) v = normal(gen);
  const quantized_matrix<Q> qw(matrix_view<const float>(w.data(), {rows, cols}), format);
  CHECK(qw.bytes().size() == static_cast<std::size_t>(rows * cols) / Q::block_size * Q::bytes_per_block);
  std::vector<float> dq(w.size()), y(static_cast<std::size_t>(n * rows));
  qw.dequantize_to(matrix_view<float>(dq.data(), {rows, cols}));
  matmul_transposed(matrix_view<const float>(x.data(), {n, cols}), qw, matrix_view<float>(y.data(), {n, rows}));
  product_errors e;
  double largest = 0, diff2 = 0, norm2 = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t r = 0; r < rows; ++r) {
      double with_dq = 0, with_w = 0;
      for (index_t k = 0; k < cols; ++k) {
        with_dq += static_cast<double>(x[static_cast<std::size_t>(i * cols + k)]) * dq[static_cast<std::size_t>(r * cols + k)];
        with_w += static_cast<double>(x[static_cast<std::size_t>(i * cols + k)]) * w[static_cast<std::size_t>(r * cols + k)];
      }
      const double got = y[static_cast<std::size_t>(i * rows + r)];
      e.vs_dequantized = std::max(e.vs_dequantized, std::fabs(got - with_dq));
      largest = std::max(largest, std::fabs(with_dq));
      diff2 += (got - with_w) * (got - with_w);
      norm2 += with_w * with_w;
    }
  e.vs_dequantized /= largest;
  e.vs_float = std::sqrt(diff2 / norm2);
  // matvec is the one-row product
  std::vector<float> y0(static_cast<std::size_t>(rows));
  matvec(qw, vector_view<const float>(x.data(), {cols}), vector_view<float>(y0.data(), {rows}));
  for (index_t r = 0; r < rows; ++r) CHECK(y0[static_cast<std::size_t>(r)] == y[static_cast<std::size_t>(r)]);
  return e;
}

}  // namespace

TEST_CASE("quantized_matrix: products equal the dequantized matrix's, and the error grows as bits shrink") {
  const product_errors e8 = check_products<q8_0>(), e4 = check_products<q4_0>(), efp8 = check_products<fp8_tile>();
  const product_errors t2 = check_products<tq2_0>(), t1 = check_products<tq1_0>(),
                       t2m = check_products<tq2_0>(tq2_0{ternary_rule::absmean});
  for (const auto* e : {&e8, &e4, &efp8, &t2, &t1, &t2m}) CHECK(e->vs_dequantized < 1e-5);
  // Gaussian weights: 8-bit blocks within 1%, FP8 (3 mantissa bits) a few percent, 4-bit blocks ~10%,
  // ternary far more (absmax zeroes most weights; absmean keeps about 2/3 of them at +-d)
  CHECK(e8.vs_float < 0.01);
  CHECK(efp8.vs_float < 0.05);
  CHECK(e4.vs_float < 0.15);
  CHECK(e8.vs_float < efp8.vs_float);
  CHECK(efp8.vs_float < e4.vs_float);
  CHECK(e4.vs_float < t2m.vs_float);
  CHECK(t2m.vs_float < t2.vs_float);   // BitNet's rule fits Gaussian weights better than ggml's absmax
  CHECK(t1.vs_float == t2.vs_float);   // the same ternary values, packed two ways
}

TEST_CASE("quantized_matrix: columns that are not whole blocks are padded with zeros, as round_through pads them") {
  std::mt19937 gen(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const index_t rows = 4, cols = 40;
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& v : w) v = normal(gen);
  const quantized_matrix<q4_0> qw(matrix_view<const float>(w.data(), {rows, cols}));
  CHECK(qw.cols() == cols);
  CHECK(qw.padded_cols() == 64);
  CHECK(qw.row_bytes() == 2 * q4_0::bytes_per_block);
  std::vector<float> dq(w.size()), rounded = w;
  qw.dequantize_to(matrix_view<float>(dq.data(), {rows, cols}));
  round_through(q4_0{}, matrix_view<float>(rounded.data(), {rows, cols}));
  CHECK(dq == rounded);
  // the float product uses the first cols values of each row
  std::vector<float> x(static_cast<std::size_t>(cols), 1.0f), y(static_cast<std::size_t>(rows));
  matvec(qw, vector_view<const float>(x.data(), {cols}), vector_view<float>(y.data(), {rows}));
  for (index_t r = 0; r < rows; ++r) {
    double s = 0;
    for (index_t c = 0; c < cols; ++c) s += dq[static_cast<std::size_t>(r * cols + c)];
    CHECK(std::fabs(y[static_cast<std::size_t>(r)] - s) <= 1e-5 * (1 + std::fabs(s)));
  }
}

TEST_CASE("quantized_matrix: bad shapes are errors naming the sizes") {
  std::vector<float> w(5 * 32, 0.5f);
  const quantized_matrix<q8_0> qw(matrix_view<const float>(w.data(), {5, 32}));
  std::vector<float> x(2 * 32), y(2 * 4);
  CHECK_THROWS_WITH_AS(matmul_transposed(matrix_view<const float>(x.data(), {2, 32}), qw,
                                         matrix_view<float>(y.data(), {2, 4})),
                       doctest::Contains("expected [2 x 5]"), lmrl::error);
  CHECK_THROWS_WITH_AS(matmul_transposed(matrix_view<const float>(x.data(), {4, 16}), qw,
                                         matrix_view<float>(y.data(), {4, 2})),
                       doctest::Contains("x has 16 columns, the matrix 32"), lmrl::error);
}

TEST_CASE("round_through rounds each row as quantize-then-dequantize, padding a short last block with zeros") {
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const index_t rows = 3, cols = 40;  // one whole block of 32 and 8 values padded to a block
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& v : w) v = normal(gen);
  std::vector<double> wd(w.begin(), w.end());
  round_through(q4_0{}, matrix_view<double>(wd.data(), {rows, cols}));
  for (index_t r = 0; r < rows; ++r) {
    std::vector<float> padded(64, 0.0f), back(64);
    for (index_t c = 0; c < cols; ++c) padded[static_cast<std::size_t>(c)] = w[static_cast<std::size_t>(r * cols + c)];
    std::vector<std::uint8_t> bytes(36);
    quantize(q4_0{}, padded, bytes);
    dequantize(q4_0{}, bytes, back);
    for (index_t c = 0; c < cols; ++c)
      CHECK(wd[static_cast<std::size_t>(r * cols + c)] == static_cast<double>(back[static_cast<std::size_t>(c)]));
  }
  // rounding twice changes nothing more (the rounded values are on the format's grid)
  std::vector<double> again = wd;
  round_through(q4_0{}, matrix_view<double>(again.data(), {rows, cols}));
  CHECK(again == wd);
}

namespace {

using testing::set_threads;
using testing::thread_counts;  // the matrices below are large enough to go parallel

// Gaussian values with the cases a row quantizer could round differently:
// a zero row, a row of one nonzero value, exact ties of q8_0 (max 127, so d = 1
// and x = k + 1/2), and large and small magnitudes.
std::vector<float> awkward_matrix(index_t rows, index_t cols, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& v : w) v = 0.02f * normal(gen);
  const auto at = [&](index_t r, index_t c) -> float& { return w[static_cast<std::size_t>(r * cols + c)]; };
  for (index_t c = 0; c < cols; ++c) {
    at(1, c) = 0.0f;
    at(2, c) = c == 5 ? -3.0f : 0.0f;
    at(3, c) = c % 32 == 0 ? 127.0f : static_cast<float>(c % 32) - 16.5f;
    at(4, c) *= 1e30f;
    at(5, c) *= 1e-30f;
  }
  return w;
}

// The serial Quantizer path: each row copied, padded with zeros, through quantize().
template <Quantizer Q>
std::vector<std::uint8_t> serial_bytes(const Q& format, const std::vector<float>& w, index_t rows, index_t cols) {
  const std::size_t padded = (static_cast<std::size_t>(cols) + Q::block_size - 1) / Q::block_size * Q::block_size;
  const std::size_t row_bytes = padded / Q::block_size * Q::bytes_per_block;
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(rows) * row_bytes);
  std::vector<float> row(padded, 0.0f);
  for (index_t r = 0; r < rows; ++r) {
    std::copy_n(w.begin() + r * cols, cols, row.begin());
    quantize(format, std::span<const float>(row), std::span<std::uint8_t>(bytes).subspan(static_cast<std::size_t>(r) * row_bytes, row_bytes));
  }
  return bytes;
}

template <Quantizer Q>
void check_same_bytes(Q format = {}) {
  const int threads = thread_counts().back();
  // 300 x 896 values go parallel; 300 x 200 (a short last block) are fewer than 1 << 16 and do not
  for (const index_t cols : {index_t{896}, index_t{200}}) {
    const index_t rows = 300;
    const auto w = awkward_matrix(rows, cols, 17);
    const auto expected = serial_bytes(format, w, rows, cols);
    std::vector<float> t(w.size());  // the transpose's view: column strides
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c)
        t[static_cast<std::size_t>(c * rows + r)] = w[static_cast<std::size_t>(r * cols + c)];
    for (const int n : thread_counts()) {
      set_threads(n);
      CAPTURE(n);
      CAPTURE(cols);
      const quantized_matrix<Q> q(matrix_view<const float>(w.data(), {rows, cols}), format);
      CHECK(std::equal(q.bytes().begin(), q.bytes().end(), expected.begin(), expected.end()));
      const quantized_matrix<Q> qt(matrix_view<const float>(t.data(), {rows, cols}, {1, rows}), format);
      CHECK(std::equal(qt.bytes().begin(), qt.bytes().end(), expected.begin(), expected.end()));
    }
    set_threads(threads);
  }
}

}  // namespace

TEST_CASE("quantized_matrix: the serial Quantizer path's bytes, whatever the row quantizer, strides and threads") {
  check_same_bytes<q8_0>();  // the AVX2 row quantizer where the CPU has it
  check_same_bytes<q4_0>();
  check_same_bytes<fp8_tile>();
  check_same_bytes<tq2_0>(tq2_0{ternary_rule::absmean});
}

TEST_CASE("quantized_matrix: a non-finite value is an error naming the first of the lowest row, whatever the threads") {
  const index_t rows = 300, cols = 512;  // 153600 values: parallel where the build has OpenMP
  auto w = awkward_matrix(rows, cols, 3);
  const auto at = [&](index_t r, index_t c) -> float& { return w[static_cast<std::size_t>(r * cols + c)]; };
  at(290, 1) = std::numeric_limits<float>::quiet_NaN();
  at(171, 400) = std::numeric_limits<float>::infinity();
  at(171, 7) = std::numeric_limits<float>::quiet_NaN();
  at(40, 300) = -std::numeric_limits<float>::infinity();
  const int threads = thread_counts().back();
  for (const int n : thread_counts()) {
    set_threads(n);
    CAPTURE(n);
    CHECK_THROWS_WITH_AS(quantized_matrix<q8_0>(matrix_view<const float>(w.data(), {rows, cols})),
                         "quantized_matrix<q8_0>: w(40, 300) is -inf; q8_0 holds finite values only", lmrl::error);
    CHECK_THROWS_WITH_AS(quantized_matrix<q4_0>(matrix_view<const float>(w.data(), {rows, cols})),
                         "quantized_matrix<q4_0>: w(40, 300) is -inf; q4_0 holds finite values only", lmrl::error);
    at(40, 300) = 0.0f;
    CHECK_THROWS_WITH_AS(quantized_matrix<q8_0>(matrix_view<const float>(w.data(), {rows, cols})),
                         "quantized_matrix<q8_0>: w(171, 7) is nan; q8_0 holds finite values only", lmrl::error);
    at(40, 300) = -std::numeric_limits<float>::infinity();
  }
  set_threads(threads);
}
