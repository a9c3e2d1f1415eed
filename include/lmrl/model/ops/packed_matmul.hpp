// Products with a weight matrix packed once, for the few-row products of
// decoding (one row per live sequence):
//
//   packed_matrix<T> w({wq, wk, wv});   // Linear weights as PyTorch stores them,
//                                       // [out x in] each, stacked along out
//   matmul_packed(x [m x in], w, y [m x out], accumulate)    y (+)= x . W^T
//
// Why: Eigen's GEMM packs both operands into panels on every call. In decoding
// the weights are the big operand and the rows few, so the packing is as dear
// as the multiply (perf record on a scratch program running generate() at
// bench_model_step's small shape: 24% of the time in gemm_pack_lhs, 35% in the
// kernel). Packing the weights once, when they
// change, removes it.
//
// Products of many rows (a prefill) go in chunks of rows that stay in cache
// while the panels pass by. (Training's products, thousands of rows with the
// weights packed per product, measured in a trial with scratch programs
// 0.94-1.56x Eigen's GEMM; a whole
// training step 5-8% faster at the small preset and 12% slower at the tiny
// one, so training stays on Eigen.)
//
// Layout: the outputs in panels of panel_width = 2 SIMD packets (32 floats with
// AVX-512, 16 with AVX2); panel p is [in x panel_width] row-major, the last one
// zero-padded. The kernel keeps an MR x panel_width block of y in registers
// (MR = 12 rows with 32 vector registers, 6 with 16), walks the panel's rows
// once, broadcasting x[i, k] and fused-multiply-adding row k of the panel,
// and prefetches the weights 8 KiB ahead. Panels run in parallel under OpenMP.
//
// Numerics: y[i, j] is one multiply-add chain over k in order, starting from 0
// (then added to y when accumulating): the same bits whatever m, the row's
// place in the batch, its address or the thread count, so decoding a batch
// gives each sequence the bits it gets decoded alone.
#pragma once

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::ops {

template <class T>
class packed_matrix {
 public:
  using packet = typename Eigen::internal::packet_traits<T>::type;
  static constexpr index_t packet_size = Eigen::internal::packet_traits<T>::size;
  static constexpr index_t panel_width = 2 * packet_size;

  packed_matrix() = default;
  explicit packed_matrix(std::initializer_list<matrix_view<const T>> parts) { assign(parts); }
  explicit packed_matrix(std::span<const matrix_view<const T>> parts) { assign(parts); }

  // Packs W^T of the [out x in] matrices `parts`, one after another along out.
  void assign(std::initializer_list<matrix_view<const T>> parts) {
    assign(std::span<const matrix_view<const T>>(parts.begin(), parts.size()));
  }
  void assign(std::span<const matrix_view<const T>> parts) {
    lmrl::detail::require(!parts.empty(), "packed_matrix: no matrices to pack");
    inputs_ = parts.front().shape[1];
    outputs_ = 0;
    for (const auto& m : parts) {
      lmrl::detail::require(m.shape[1] == inputs_, "packed_matrix: the matrices stacked have ", inputs_, " and ",
                            m.shape[1], " columns (inputs); they must agree");
      outputs_ += m.shape[0];
    }
    data_.resize(static_cast<std::size_t>(panels() * inputs_ * panel_width));
    index_t first = 0;  // the part's first output (column of W^T)
    for (const auto& m : parts) {
      const index_t rows = m.shape[0];
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (rows * inputs_ > 65536)
#endif
      for (index_t o = 0; o < rows; ++o) {
        const index_t j = first + o;
        T* dst = data_.data() + (j / panel_width) * inputs_ * panel_width + j % panel_width;
        for (index_t k = 0; k < inputs_; ++k) dst[k * panel_width] = m(o, k);
      }
      first += rows;
    }
    for (index_t j = outputs_; j < panels() * panel_width; ++j) {  // the last panel's padding
      T* dst = data_.data() + (j / panel_width) * inputs_ * panel_width + j % panel_width;
      for (index_t k = 0; k < inputs_; ++k) dst[k * panel_width] = T(0);
    }
  }

  index_t inputs() const { return inputs_; }
  index_t outputs() const { return outputs_; }
  index_t panels() const { return (outputs_ + panel_width - 1) / panel_width; }
  const T* panel(index_t p) const { return data_.data() + p * inputs_ * panel_width; }
  std::size_t bytes() const { return data_.size() * sizeof(T); }
  bool empty() const { return data_.empty(); }

 private:
  index_t inputs_ = 0, outputs_ = 0;
  std::vector<T> data_;
};

namespace detail {

// Rows of y the kernel keeps in registers: 2 MR accumulators, the panel's two
// packets and the broadcast must fit the vector registers.
constexpr index_t packed_rows = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32 ? 12 : 6;

// Rows per chunk: the product walks the panels once per chunk of rows, so a
// chunk's rows (96 x 512 floats = 192 KiB at 12 rows a block) stay in cache
// while every panel passes by; for few-row products it is one chunk.
constexpr index_t packed_chunk_rows = 8 * packed_rows;

// How far ahead of the row it multiplies the kernel asks for the weights. In
// decoding they come from memory, not cache, and the hardware prefetcher alone
// leaves the kernel waiting. A scratch program timing the products of one
// small-preset decode step at 32 rows (best of 30) with the distance compiled
// in: none 11.0 ms, 1 KiB 9.1, 4 KiB 7.0, 8 KiB 5.9, 16 KiB 6.4, 32 KiB 6.4.
constexpr std::size_t prefetch_bytes = 8192;

// y[0..MR) x [0, cols) (+)= x[0..MR) . panel, cols <= panel_width. With `end`
// set (the first block of rows of a panel, which reads it from memory) it
// prefetches, on past the panel into the next one (the same thread's next,
// under a static schedule), never past `end`; later blocks find the panel in cache.
template <index_t MR, class T>
void packed_block(const T* x, index_t x_stride, const T* panel, index_t k, T* y, index_t y_stride, index_t cols,
                  bool accumulate, const T* end) {
  using namespace Eigen::internal;
  using P = typename packed_matrix<T>::packet;
  constexpr index_t S = packed_matrix<T>::packet_size, W = 2 * S;
  constexpr index_t ahead = static_cast<index_t>(prefetch_bytes / sizeof(T));
  constexpr index_t line = static_cast<index_t>(64 / sizeof(T));
  P lo[MR], hi[MR];
#pragma GCC unroll 16
  for (index_t i = 0; i < MR; ++i) lo[i] = hi[i] = pset1<P>(T(0));
  for (index_t kk = 0; kk < k; ++kk) {
    if (end != nullptr) {
      const std::ptrdiff_t last = end - panel - 1;  // the last element of the packed data, from the panel
      for (index_t c = 0; c < W; c += line) prefetch(panel + std::min<std::ptrdiff_t>(kk * W + ahead + c, last));
    }
    const P b_lo = ploadu<P>(panel + kk * W), b_hi = ploadu<P>(panel + kk * W + S);
#pragma GCC unroll 16
    for (index_t i = 0; i < MR; ++i) {
      const P a = pset1<P>(x[i * x_stride + kk]);
      lo[i] = pmadd(a, b_lo, lo[i]);
      hi[i] = pmadd(a, b_hi, hi[i]);
    }
  }
#pragma GCC unroll 16
  for (index_t i = 0; i < MR; ++i) {
    T* row = y + i * y_stride;
    if (cols == 2 * S) {
      pstoreu(row, accumulate ? padd(ploadu<P>(row), lo[i]) : lo[i]);
      pstoreu(row + S, accumulate ? padd(ploadu<P>(row + S), hi[i]) : hi[i]);
    } else {  // the last, partial panel
      T sums[2 * S];
      pstoreu(sums, lo[i]);
      pstoreu(sums + S, hi[i]);
      for (index_t j = 0; j < cols; ++j) row[j] = accumulate ? row[j] + sums[j] : sums[j];
    }
  }
}

// The last m % packed_rows rows: the kernel instantiated for exactly that many.
template <class T, index_t... R>
void packed_tail(index_t rows, std::integer_sequence<index_t, R...>, const T* x, index_t x_stride, const T* panel,
                 index_t k, T* y, index_t y_stride, index_t cols, bool accumulate, const T* end) {
  ((rows == R + 1 ? packed_block<R + 1>(x, x_stride, panel, k, y, y_stride, cols, accumulate, end) : void()), ...);
}

}  // namespace detail

// y (+)= x . W^T: x [m x w.inputs()], y [m x w.outputs()], rows contiguous.
template <class T>
void matmul_packed(matrix_view<const std::type_identity_t<T>> x, const packed_matrix<T>& w, matrix_view<T> y,
                   bool accumulate = false) {
  const char* f = "matmul_packed";
  lmrl::detail::require(x.shape[1] == w.inputs() && y.shape[0] == x.shape[0] && y.shape[1] == w.outputs(), f, ": x ",
                        x, " . W^T with W^T [", w.inputs(), " x ", w.outputs(), "] does not fit y ", y);
  lmrl::detail::require((x.shape[1] <= 1 || x.stride[1] == 1) && (y.shape[1] <= 1 || y.stride[1] == 1), f,
                        ": x and y must have contiguous rows");
  const index_t m = x.shape[0], k = w.inputs(), n = w.outputs(), panels = w.panels();
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate)
      for (index_t i = 0; i < m; ++i) std::fill_n(y.row_data(i), n, T(0));
    return;
  }
  constexpr index_t MR = detail::packed_rows, W = packed_matrix<T>::panel_width;
  const T* end = w.panel(panels);  // one past the packed data
  // Threads only when there is work for them (a product of ~0.1 MFLOP takes microseconds).
  [[maybe_unused]] const bool parallel = static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n) > 5e4;
#if defined(_OPENMP)
#pragma omp parallel if (parallel)
#endif
  for (index_t c0 = 0; c0 < m; c0 += detail::packed_chunk_rows) {
    const index_t c1 = std::min(m, c0 + detail::packed_chunk_rows), full = c0 + (c1 - c0) / MR * MR;
    // Each thread takes the same panels in every chunk (a static schedule), so
    // needs no barrier between chunks: a chunk's rows stay in its cache.
#if defined(_OPENMP)
#pragma omp for schedule(static) nowait
#endif
    for (index_t p = 0; p < panels; ++p) {
      const index_t j0 = p * W, cols = std::min(W, n - j0);
      for (index_t i = c0; i < full; i += MR)
        detail::packed_block<MR>(x.row_data(i), x.stride[0], w.panel(p), k, y.row_data(i) + j0, y.stride[0], cols,
                                 accumulate, i == c0 ? end : nullptr);
      if (full < c1)
        detail::packed_tail(c1 - full, std::make_integer_sequence<index_t, MR - 1>{}, x.row_data(full), x.stride[0],
                            w.panel(p), k, y.row_data(full) + j0, y.stride[0], cols, accumulate,
                            full == c0 ? end : nullptr);
    }
  }
}

}  // namespace lmrl::ops
