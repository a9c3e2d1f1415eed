// A weight matrix [rows x cols] held in a block format: each row is
// padded_cols() / block_size blocks, rows one after another (ggml's layout of
// a 2-D tensor). A row whose length is not a whole number of blocks gets a
// last block padded with zeros, as round_through pads it (ggml refuses such
// rows); cols() stays the logical number. The products here dequantize one row
// at a time into a buffer and never make the float32 matrix (int_gemm.hpp has
// integer products for q8_0 and q4_0):
//
//   y = W x        matvec(W, x, y)          (generation: one token per sequence)
//   Y = X W^T      matmul_transposed(X, W, Y)  (X [n x cols], Y [n x rows]; nn.Linear's layout)
//
// Sums run in float (dot.hpp's vectorized order); tests compare them with the
// product of the dequantized matrix.
//
// Quantizing a matrix (what a trainer does to its rollout weights after every
// optimizer step) runs its rows over OpenMP threads (parallel_rows.hpp), each
// row through quantize_matrix_row: the Quantizer's blocks one by one, or a
// format's own faster row quantizer that gives the same bytes (q8_0: the
// vectorized one of q8_0_rows.hpp). The bytes do not depend on the path or on
// the number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/quant/dot.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/int_dot_paths.hpp"
#include "lmrl/quant/parallel_rows.hpp"
#include "lmrl/quant/q8_0_rows.hpp"
#include "lmrl/quant/quantizer.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

namespace detail {
// A row of a quantized_matrix, whole blocks of contiguous floats, into its
// bytes: the Quantizer's blocks one by one. A format with a faster row
// quantizer overloads this; an overload gives the same bytes, and for a value
// the format cannot hold the same error.
template <Quantizer Q>
void quantize_matrix_row(const Q& format, std::span<const float> row, std::span<std::uint8_t> bytes) {
  quantize(format, row, bytes);
}
// q8_0: the AVX2 row quantizer where the CPU has it (q8_0::quantize_block's
// bytes); a row with a non-finite value goes the blocks' way, which names it.
inline void quantize_matrix_row(const q8_0& format, std::span<const float> row, std::span<std::uint8_t> bytes) {
  const int_dot_path path = best_int_dot_path();
  if (path != int_dot_path::scalar && bytes.size() == quantized_bytes<q8_0>(row.size()) &&
      quantize_row_q8_0(row.data(), row.size(), bytes.data(), path))
    return;
  quantize(format, row, bytes);
}
}  // namespace detail

template <Quantizer Q>
class quantized_matrix {
 public:
  quantized_matrix() = default;
  // Quantizes w (any strides), each row padded with zeros to whole blocks. A
  // value the format cannot hold (NaN, infinity) is an error naming the first
  // one of the lowest row that has one.
  explicit quantized_matrix(matrix_view<const float> w, Q format = {})
      : format_(format), rows_(w.shape[0]), cols_(w.shape[1]) {
    bytes_.resize(static_cast<std::size_t>(rows_) * row_bytes());
    detail::for_row_ranges(rows_, static_cast<std::size_t>(rows_ * cols_), [&](index_t first, index_t last) {
      std::vector<float> copy;  // a row with column strides or a short last block, padded with zeros
      for (index_t r = first; r < last; ++r) quantize_row(w, r, copy);
    });
  }

  index_t rows() const { return rows_; }
  index_t cols() const { return cols_; }
  // cols() rounded up to whole blocks: the values each row's bytes hold.
  index_t padded_cols() const {
    const auto block = static_cast<index_t>(Q::block_size);
    return (cols_ + block - 1) / block * block;
  }
  const Q& format() const { return format_; }
  std::size_t row_bytes() const { return static_cast<std::size_t>(padded_cols()) / Q::block_size * Q::bytes_per_block; }
  std::span<const std::uint8_t> bytes() const { return bytes_; }
  std::span<const std::uint8_t> row_bytes_of(index_t r) const {
    return std::span<const std::uint8_t>(bytes_).subspan(static_cast<std::size_t>(r) * row_bytes(), row_bytes());
  }

  // The float32 matrix this holds (for tests and for measuring the error).
  void dequantize_to(matrix_view<float> out) const {
    detail::require(out.shape[0] == rows_ && out.shape[1] == cols_, "quantized_matrix<", Q::name,
                    ">::dequantize_to: the output is ", out, ", the matrix [", rows_, " x ", cols_, "]");
    std::vector<float> row(static_cast<std::size_t>(padded_cols()));
    for (index_t r = 0; r < rows_; ++r) {
      dequantize(format_, row_bytes_of(r), std::span<float>(row));
      for (index_t c = 0; c < cols_; ++c) out(r, c) = row[static_cast<std::size_t>(c)];
    }
  }

 private:
  std::span<std::uint8_t> row_span(index_t r) {
    return std::span<std::uint8_t>(bytes_).subspan(static_cast<std::size_t>(r) * row_bytes(), row_bytes());
  }

  // Row r of w into its bytes: read in place when its values are contiguous
  // and whole blocks, else through `copy`.
  void quantize_row(matrix_view<const float> w, index_t r, std::vector<float>& copy) {
    const auto cols = static_cast<std::size_t>(cols_), padded = static_cast<std::size_t>(padded_cols());
    const float* row = w.row_data(r);
    if ((w.stride[1] != 1 && cols > 1) || cols != padded) {
      copy.assign(padded, 0.0f);
      for (index_t c = 0; c < cols_; ++c) copy[static_cast<std::size_t>(c)] = w(r, c);
      row = copy.data();
    }
    try {
      detail::quantize_matrix_row(format_, std::span<const float>(row, padded), row_span(r));
    } catch (const error& e) {
      for (index_t c = 0; c < cols_; ++c)
        detail::require(std::isfinite(w(r, c)), "quantized_matrix<", Q::name, ">: w(", r, ", ", c, ") is ", w(r, c),
                        "; ", Q::name, " holds finite values only");
      detail::fail("quantized_matrix<", Q::name, ">: row ", r, ": ", e.what());
    }
  }

  Q format_{};
  index_t rows_ = 0, cols_ = 0;
  std::vector<std::uint8_t> bytes_;
};

// Rounds each row of w through the format in place (quantize, then dequantize):
// the matrix a quantized copy of w multiplies by. For cached_decoder's
// set_weight_rounding: [](matrix_view<float> w) { round_through(q4_0{}, w); }.
// A row whose length is not a whole number of blocks gets a last block padded
// with zeros (ggml refuses such rows; zeros add nothing to a dot product, but
// they do lower an absmean scale).
template <Quantizer Q, Real T>
void round_through(const Q& format, matrix_view<T> w) {
  const auto cols = static_cast<std::size_t>(w.shape[1]);
  const std::size_t padded = (cols + Q::block_size - 1) / Q::block_size * Q::block_size;
  std::vector<float> row(padded, 0.0f);
  std::vector<std::uint8_t> bytes(quantized_bytes<Q>(padded));
  for (index_t r = 0; r < w.shape[0]; ++r) {
    for (std::size_t c = 0; c < cols; ++c) row[c] = static_cast<float>(w(r, static_cast<index_t>(c)));
    std::fill(row.begin() + static_cast<std::ptrdiff_t>(cols), row.end(), 0.0f);
    quantize(format, std::span<const float>(row), std::span<std::uint8_t>(bytes));
    dequantize(format, std::span<const std::uint8_t>(bytes), std::span<float>(row));
    for (std::size_t c = 0; c < cols; ++c) w(r, static_cast<index_t>(c)) = static_cast<T>(row[c]);
  }
}

// Y [n x rows] = X [n x cols] W^T: each row of W is dequantized once into a
// buffer of padded_cols floats and its first cols dotted with every row of X (dot.hpp).
template <Quantizer Q>
void matmul_transposed(matrix_view<const float> x, const quantized_matrix<Q>& w, matrix_view<float> y) {
  const index_t n = x.shape[0], cols = w.cols();
  detail::require(x.shape[1] == cols, "matmul_transposed<", Q::name, ">: x has ", x.shape[1], " columns, the matrix ",
                  cols);
  detail::require(y.shape[0] == n && y.shape[1] == w.rows(), "matmul_transposed<", Q::name, ">: y is ", y,
                  ", expected [", n, " x ", w.rows(), "]");
  // X's rows as contiguous floats (copied only when X has column strides)
  const bool contiguous_rows = x.stride[1] == 1 || cols == 1;
  std::vector<float> x_copy;
  if (!contiguous_rows) {
    x_copy.resize(static_cast<std::size_t>(n * cols));
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < cols; ++k) x_copy[static_cast<std::size_t>(i * cols + k)] = x(i, k);
  }
  const auto x_row = [&](index_t i) {
    return contiguous_rows ? x.row_data(i) : x_copy.data() + static_cast<std::size_t>(i * cols);
  };
  std::vector<float> w_row(static_cast<std::size_t>(w.padded_cols()));
  for (index_t r = 0; r < w.rows(); ++r) {
    dequantize(w.format(), w.row_bytes_of(r), std::span<float>(w_row));
    for (index_t i = 0; i < n; ++i) y(i, r) = dot(w_row.data(), x_row(i), static_cast<std::size_t>(cols));
  }
}

// y [rows] = W x [cols].
template <Quantizer Q>
void matvec(const quantized_matrix<Q>& w, vector_view<const float> x, vector_view<float> y) {
  matmul_transposed(matrix_view<const float>(x.data, {1, x.shape[0]}, {0, x.stride[0]}), w,
                    matrix_view<float>(y.data, {1, y.shape[0]}, {0, y.stride[0]}));
}

}  // namespace lmrl
