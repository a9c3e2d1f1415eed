// int8_rows: a weight matrix [rows x cols] in symmetric int8 with one float32
// scale per row (per output channel), the layout int_gemm.hpp multiplies with
// Q8_0-quantized activations.
//
//   s_r = max_c |w_rc| / 127                     (float32)
//   q_rc = clamp(nearbyint(w_rc * (1 / s_r)), -127, 127)   round half to even
//   w_rc ~ q_rc s_r
//
// This is torch.quantize_per_channel(w, scales, zero_points=0, axis=0,
// dtype=torch.qint8) with scales = w.abs().amax(1) / 127 (float32): torch's
// quantize_val computes nearbyint(value * (1.0f / scale)) and clamps to
// [-128, 127]; |w s_r^-1| never passes 127.5, so its codes lie in [-127, 127]
// as these do (torch multiplies by the float inverse rather than dividing, and
// so does this: they differ in the last bit now and then, and so at ties).
// An all-zero row has scale 0 and codes 0 (torch's scale 0 would divide by
// zero). When 1 / s_r overflows float (max|w_r| < 3.7e-37), q = nearbyint(w / s_r).
//
// Each row's codes are padded with zeros to a whole number of 32-value blocks
// (padded_cols()), the block of the activations it is multiplied with.
// The product with activations quantized to Q8_0 (int_dot.hpp's i8 dot) is,
// per row, s_r times the sum over blocks of d_x(block) sum_k q_rk q_xk.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/quant/parallel_rows.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

class int8_rows {
 public:
  static constexpr const char* name = "int8_rows";
  static constexpr std::size_t block_size = 32;  // rows are padded to whole blocks of this many codes

  int8_rows() = default;

  // Quantizes w (any strides); a non-finite value is an error naming it.
  explicit int8_rows(matrix_view<const float> w) { quantize(w); }

  // From codes and scales made elsewhere (torch's int_repr() and
  // q_per_channel_scales(), say): codes [rows x cols] row-major, any int8.
  int8_rows(index_t rows, index_t cols, std::span<const std::int8_t> codes, std::span<const float> scales) {
    detail::require(rows >= 0 && cols >= 0, "int8_rows: the shape [", rows, " x ", cols, "] is negative");
    detail::require(codes.size() == static_cast<std::size_t>(rows * cols), "int8_rows: [", rows, " x ", cols,
                    "] needs ", rows * cols, " codes, got ", codes.size());
    detail::require(scales.size() == static_cast<std::size_t>(rows), "int8_rows: ", rows, " rows need ", rows,
                    " scales, got ", scales.size());
    for (std::size_t r = 0; r < scales.size(); ++r)
      detail::require(std::isfinite(scales[r]) && scales[r] >= 0, "int8_rows: scale ", r, " is ", scales[r],
                      "; scales must be finite and >= 0");
    reshape(rows, cols);
    scales_.assign(scales.begin(), scales.end());
    for (index_t r = 0; r < rows; ++r) std::copy_n(codes.data() + r * cols, cols, codes_.data() + r * padded_cols());
  }

  index_t rows() const { return rows_; }
  index_t cols() const { return cols_; }
  index_t padded_cols() const {
    return (cols_ + static_cast<index_t>(block_size) - 1) / static_cast<index_t>(block_size) *
           static_cast<index_t>(block_size);
  }
  std::span<const float> scales() const { return scales_; }
  // rows() x padded_cols() codes, row after row, each row's tail zero.
  std::span<const std::int8_t> codes() const { return codes_; }
  const std::int8_t* row_codes(index_t r) const { return codes_.data() + r * padded_cols(); }
  // The bytes a product reads: the codes and the scales.
  std::size_t size_bytes() const { return codes_.size() + scales_.size() * sizeof(float); }

  // The float32 matrix this holds, q * s (for tests and for measuring the error).
  void dequantize_to(matrix_view<float> out) const {
    detail::require(out.shape[0] == rows_ && out.shape[1] == cols_, "int8_rows::dequantize_to: the output is ", out,
                    ", the matrix [", rows_, " x ", cols_, "]");
    for (index_t r = 0; r < rows_; ++r)
      for (index_t c = 0; c < cols_; ++c)
        out(r, c) = static_cast<float>(row_codes(r)[c]) * scales_[static_cast<std::size_t>(r)];
  }

 private:
  void reshape(index_t rows, index_t cols) {
    rows_ = rows;
    cols_ = cols;
    scales_.assign(static_cast<std::size_t>(rows), 0.0f);
    codes_.assign(static_cast<std::size_t>(rows * padded_cols()), 0);
  }

  // Rows over OpenMP threads when the matrix is large (parallel_rows.hpp); the
  // bytes and the error (the lowest row's) do not depend on the number of threads.
  void quantize(matrix_view<const float> w) {
    reshape(w.shape[0], w.shape[1]);
    detail::for_row_ranges(rows_, static_cast<std::size_t>(rows_ * cols_), [&](index_t first, index_t last) {
      std::vector<float> copy;  // a row with column strides
      for (index_t r = first; r < last; ++r) {
        const float* row = w.row_data(r);
        if (w.stride[1] != 1 && cols_ > 1) {
          copy.resize(static_cast<std::size_t>(cols_));
          for (index_t c = 0; c < cols_; ++c) copy[static_cast<std::size_t>(c)] = w(r, c);
          row = copy.data();
        }
        quantize_row(r, row);
      }
    });
  }

  // Row r from cols() contiguous floats.
  void quantize_row(index_t r, const float* w) {
    const auto cols = static_cast<std::size_t>(cols_);
    float amax = 0;
    bool finite = true;
    for (std::size_t c = 0; c < cols; ++c) {
      const float a = std::fabs(w[c]);
      finite &= a <= std::numeric_limits<float>::max();  // false for inf and NaN
      amax = std::max(amax, a);
    }
    if (!finite)
      for (std::size_t c = 0; c < cols; ++c)
        detail::require(std::isfinite(w[c]), "int8_rows: w(", r, ", ", c, ") is ", w[c], "; weights must be finite");
    const float s = amax / 127.0f;
    scales_[static_cast<std::size_t>(r)] = s;
    if (s == 0) return;  // codes stay 0
    const float inverse = 1.0f / s;
    const bool overflows = !(inverse <= std::numeric_limits<float>::max());
    std::int8_t* q = codes_.data() + r * padded_cols();
    for (std::size_t c = 0; c < cols; ++c) {
      const float code = std::nearbyint(overflows ? w[c] / s : w[c] * inverse);
      q[c] = static_cast<std::int8_t>(std::clamp(code, -127.0f, 127.0f));
    }
  }

  index_t rows_ = 0, cols_ = 0;
  std::vector<float> scales_;
  std::vector<std::int8_t> codes_;
};

}  // namespace lmrl
