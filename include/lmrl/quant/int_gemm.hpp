// Integer products of quantized weights with float activations, as llama.cpp
// runs them on a CPU: the activations are quantized to Q8_0 once per call
// (quantize_rows_q8_0), then every output is int_dot.hpp's block dot of a
// weight row with an activation row (integer sums per block, float scales per
// block, in one fixed order, so every path gives the same bits).
//
//   Y [n x rows] (+)= X [n x cols] W^T    int_matmul_transposed(x, w, y, accumulate)
//   y [rows]     (+)= W x                  int_matvec(w, x, y, accumulate)
//
// for W a quantized_matrix of q8_0, q4_0, q4_k or tq2_0, or an int8_rows
// (nn.Linear's layout: W's rows are the outputs). X and Y may have any
// strides; `accumulate` adds the product to Y (a residual) instead of
// overwriting it. Columns need not be a multiple of the block size: X's last
// block of 32 is padded with zeros as the weights' is; q4_k's and tq2_0's rows
// are padded to whole blocks of 256, and their blocks past X's last one are
// not read (int_dot.hpp).
//
// When several weights multiply the same X (q, k and v; gate and up), quantize
// X once with quantize_rows_q8_0 and pass the q8_0_rows. The overloads that take
// a float X quantize it into a caller's q8_0_rows or into a thread_local one.
//
// Work: weight rows in tiles of 4, each tile against 1, 2 or 4 activation rows
// at a time (as the path's registers allow) while its blocks are in L1, tiles
// spread over OpenMP threads when the build has OpenMP and the product is
// large enough to pay for them. Each output is computed by one thread in one
// order: the bits do not depend on the number of threads.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include "lmrl/error.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/int8_rows.hpp"
#include "lmrl/quant/int_dot.hpp"
#include "lmrl/quant/k_quants.hpp"
#include "lmrl/quant/quantized_matrix.hpp"
#include "lmrl/quant/ternary.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

template <class W>
concept integer_weights = std::same_as<W, quantized_matrix<q8_0>> || std::same_as<W, quantized_matrix<q4_0>> ||
                          std::same_as<W, quantized_matrix<q4_k>> || std::same_as<W, quantized_matrix<tq2_0>> ||
                          std::same_as<W, int8_rows>;

namespace detail::int_kernels {

// A weight matrix as the kernels see it: row r's blocks start at data + r * stride.
struct weight_rows {
  const std::uint8_t* data;
  std::size_t stride;
  const float* row_scales;  // int8_rows' s_r, else null
};

template <class Q>
weight_rows rows_of(const quantized_matrix<Q>& w) {
  return {w.bytes().data(), w.row_bytes(), nullptr};
}
inline weight_rows rows_of(const int8_rows& w) {
  return {reinterpret_cast<const std::uint8_t*>(w.codes().data()), static_cast<std::size_t>(w.padded_cols()),
          w.scales().data()};
}

// The kernels' view of each weight type's blocks, and its name for errors.
template <class W>
struct format_of;
template <>
struct format_of<quantized_matrix<q8_0>> {
  using type = q8_0_weights;
};
template <>
struct format_of<quantized_matrix<q4_0>> {
  using type = q4_0_weights;
};
template <>
struct format_of<quantized_matrix<q4_k>> {
  using type = q4_k_weights;
};
template <>
struct format_of<quantized_matrix<tq2_0>> {
  using type = tq2_0_weights;
};
template <>
struct format_of<int8_rows> {
  using type = i8_weights;
};
template <class Q>
const char* name_of(const quantized_matrix<Q>&) {
  return Q::name;
}
inline const char* name_of(const int8_rows&) { return int8_rows::name; }

// Below this many block products (some 10-30 us on one core) one thread does it all.
inline constexpr std::size_t parallel_threshold = 1 << 14;

// Kernel: one of int_dot.hpp's *_kernel types; F: the weight format.
template <class Kernel, class F>
void int_gemm(const q8_0_rows& x, weight_rows w, index_t rows, matrix_view<float> y, bool accumulate) {
  const index_t n = x.rows();
  const std::size_t nb = x.blocks_per_row();
  const index_t tiles = (rows + 3) / 4;
  [[maybe_unused]] const bool parallel =
      static_cast<std::size_t>(rows) * static_cast<std::size_t>(n) * nb >= parallel_threshold;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (parallel)
#endif
  for (index_t t = 0; t < tiles; ++t) {
    const index_t r0 = 4 * t, nw = std::min<index_t>(4, rows - r0);
    const std::uint8_t* w_rows[4];
    for (index_t r = 0; r < nw; ++r) w_rows[r] = w.data + static_cast<std::size_t>(r0 + r) * w.stride;
    for (index_t i0 = 0; i0 < n;) {
      const index_t left = n - i0;
      const int nx = left >= 4 && Kernel::max_nx >= 4 ? 4 : left >= 2 && Kernel::max_nx >= 2 ? 2 : 1;
      const std::uint8_t* x_rows[4];
      for (int i = 0; i < nx; ++i)
        x_rows[i] =
            Kernel::reads_pairs ? reinterpret_cast<const std::uint8_t*>(x.pairs_of(i0 + i)) : x.row_data(i0 + i);
      float out[16];  // out[r * nx + i]: weight row r0 + r, activation row i0 + i
      const auto run = [&]<int NW>(const std::uint8_t* const* tile_rows, float* tile_out) {
        if (nx == 4) {
          if constexpr (Kernel::max_nx >= 4) Kernel::template tile<F, NW, 4>(tile_rows, x_rows, nb, tile_out);
        } else if (nx == 2) {
          if constexpr (Kernel::max_nx >= 2) Kernel::template tile<F, NW, 2>(tile_rows, x_rows, nb, tile_out);
        } else {
          Kernel::template tile<F, NW, 1>(tile_rows, x_rows, nb, tile_out);
        }
      };
      if (nw == 4)
        run.template operator()<4>(w_rows, out);
      else  // the last rows, one at a time
        for (index_t r = 0; r < nw; ++r) run.template operator()<1>(w_rows + r, out + r * nx);
      for (index_t r = 0; r < nw; ++r) {
        const float s = w.row_scales ? w.row_scales[r0 + r] : 1.0f;
        for (int i = 0; i < nx; ++i) {
          const float v = w.row_scales ? out[r * nx + i] * s : out[r * nx + i];
          float& target = y(i0 + i, r0 + r);
          target = accumulate ? target + v : v;
        }
      }
      i0 += nx;
    }
  }
}

}  // namespace detail::int_kernels

// Y [n x rows] (+)= X W^T with X already quantized (quantize_rows_q8_0).
template <integer_weights W>
void int_matmul_transposed(const q8_0_rows& x, const W& w, matrix_view<float> y, bool accumulate = false,
                           int_dot_path path = best_int_dot_path()) {
  detail::require_int_dot_path("int_matmul_transposed", path);
  detail::require(x.cols() == w.cols(), "int_matmul_transposed<", detail::int_kernels::name_of(w), ">: x has ",
                  x.cols(), " columns, the matrix ", w.cols());
  detail::require(y.shape[0] == x.rows() && y.shape[1] == w.rows(), "int_matmul_transposed<",
                  detail::int_kernels::name_of(w), ">: y is ", y, ", expected [", x.rows(), " x ", w.rows(), "]");
  using F = typename detail::int_kernels::format_of<W>::type;
  detail::int_kernels::with_kernel(path, [&](auto kernel) {
    detail::int_kernels::int_gemm<decltype(kernel), F>(x, detail::int_kernels::rows_of(w), w.rows(), y, accumulate);
  });
}

// Y [n x rows] (+)= X W^T, X quantized into `scratch` (reused from call to call).
template <integer_weights W>
void int_matmul_transposed(matrix_view<const float> x, const W& w, matrix_view<float> y, q8_0_rows& scratch,
                           bool accumulate = false, int_dot_path path = best_int_dot_path()) {
  detail::require(x.shape[1] == w.cols(), "int_matmul_transposed<", detail::int_kernels::name_of(w), ">: x has ",
                  x.shape[1], " columns, the matrix ", w.cols());
  detail::require(y.shape[0] == x.shape[0] && y.shape[1] == w.rows(), "int_matmul_transposed<",
                  detail::int_kernels::name_of(w), ">: y is ", y, ", expected [", x.shape[0], " x ", w.rows(), "]");
  quantize_rows_q8_0(x, scratch, path);
  int_matmul_transposed(scratch, w, y, accumulate, path);
}

namespace detail {
inline q8_0_rows& int_gemm_scratch() {
  thread_local q8_0_rows scratch;
  return scratch;
}
}  // namespace detail

// Y [n x rows] (+)= X W^T, X quantized into a thread_local buffer.
template <integer_weights W>
void int_matmul_transposed(matrix_view<const float> x, const W& w, matrix_view<float> y, bool accumulate = false,
                           int_dot_path path = best_int_dot_path()) {
  int_matmul_transposed(x, w, y, detail::int_gemm_scratch(), accumulate, path);
}

// y [rows] (+)= W x.
template <integer_weights W>
void int_matvec(const W& w, vector_view<const float> x, vector_view<float> y, bool accumulate = false,
                int_dot_path path = best_int_dot_path()) {
  int_matmul_transposed(matrix_view<const float>(x.data, {1, x.shape[0]}, {0, x.stride[0]}), w,
                        matrix_view<float>(y.data, {1, y.shape[0]}, {0, y.stride[0]}), accumulate, path);
}

}  // namespace lmrl
