// Activations quantized to Q8_0, once per row, for the integer dot products
// (int_dot.hpp): each row becomes Q8_0 blocks (32 int8 codes and a half scale
// d_x), q8_0::quantize_block's bytes on every path (int_dot_paths.hpp: plain
// C++, or AVX2 eight floats at a time), and, where the CPU has a SIMD path,
// the same blocks laid out in pairs as its kernels read them.
//
// Activation codes must lie in [-127, 127], which quantize_rows_q8_0 and
// q8_0::quantize_block always give (the AVX2 sign trick of the kernels negates
// them).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/int_dot_paths.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

namespace detail {
// Two Q8_0 blocks as the SIMD kernels read them: both blocks' codes, each
// block's scale 8 times (as a float), and minus the sum of each group of 4
// codes (what the unsigned-code trick subtracts). An odd last block's partner is zeros.
struct alignas(64) q8_0_pair {
  std::int8_t codes[64];
  float scales[16];
  std::int32_t neg_sums[16];
};
static_assert(sizeof(q8_0_pair) == 192);
}  // namespace detail

// Rows of activations quantized to Q8_0: each row is padded_cols() / 32 blocks
// of q8_0's 34 bytes, a short last block padded with zeros (as
// quantized_matrix and int8_rows pad their weights); where the CPU has a SIMD
// path, also the same blocks laid out for its kernels, in pairs. Made by
// quantize_rows_q8_0 and reused from call to call: it allocates only when it grows.
class q8_0_rows {
 public:
  index_t rows() const { return rows_; }
  index_t cols() const { return cols_; }
  index_t padded_cols() const { return static_cast<index_t>(blocks_per_row() * q8_0::block_size); }
  std::size_t blocks_per_row() const {
    return (static_cast<std::size_t>(cols_) + q8_0::block_size - 1) / q8_0::block_size;
  }
  std::size_t row_bytes() const { return blocks_per_row() * q8_0::bytes_per_block; }
  const std::uint8_t* row_data(index_t i) const { return bytes_.data() + static_cast<std::size_t>(i) * row_bytes(); }
  std::span<const std::uint8_t> row_bytes_of(index_t i) const { return {row_data(i), row_bytes()}; }
  std::span<const std::uint8_t> bytes() const { return {bytes_.data(), static_cast<std::size_t>(rows_) * row_bytes()}; }

  // The SIMD kernels' layout of row i: blocks_per_row() / 2 pairs, rounded up.
  std::size_t pairs_per_row() const { return (blocks_per_row() + 1) / 2; }
  const detail::q8_0_pair* pairs_of(index_t i) const {
    return pairs_.data() + static_cast<std::size_t>(i) * pairs_per_row();
  }

  // quantize_rows_q8_0
  void quantize(matrix_view<const float> x, int_dot_path path);

 private:
  index_t rows_ = 0, cols_ = 0;
  std::vector<std::uint8_t> bytes_;
  std::vector<detail::q8_0_pair> pairs_;
  std::vector<float> staging_;  // a row with column strides, copied
};

namespace detail {

// q8_0::quantize_block on a row of `cols` contiguous floats, padded with zeros
// to whole blocks; the same bytes. One difference, where q8_0's result is
// undefined: when 1 / d overflows (max|x| < 3.7e-37, the half scale is 0 anyway)
// the codes are 0.
inline void quantize_row_q8_0_scalar(const float* x, std::size_t cols, std::uint8_t* out) {
  const std::size_t blocks = (cols + 31) / 32;
  for (std::size_t b = 0; b < blocks; ++b, out += q8_0::bytes_per_block) {
    float v[32] = {};
    std::copy(x + 32 * b, x + std::min(cols, 32 * b + 32), v);
    float amax = 0;
    for (float e : v) amax = std::max(amax, std::fabs(e));
    const float d = amax / 127.0f;
    float id = d != 0 ? 1.0f / d : 0.0f;
    if (!(id <= std::numeric_limits<float>::max())) id = 0;
    store_half(out, d);
    for (std::size_t i = 0; i < 32; ++i) {
      const auto q = static_cast<std::int8_t>(std::round(v[i] * id));
      std::memcpy(&out[2 + i], &q, 1);
    }
  }
}

#if LMRL_INT_DOT_X86

// The same bytes as quantize_row_q8_0_scalar, eight floats at a time. Returns
// false, having written part of the row, when a value is not finite.
LMRL_INT_DOT_AVX2 inline bool quantize_row_q8_0_avx2(const float* x, std::size_t cols, std::uint8_t* out) {
  const std::size_t blocks = (cols + 31) / 32;
  const __m256 sign_bit = _mm256_set1_ps(-0.0f), infinity = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  for (std::size_t b = 0; b < blocks; ++b, out += q8_0::bytes_per_block) {
    float padded[32];
    const float* p = x + 32 * b;
    if (32 * b + 32 > cols) {
      std::fill(std::copy(p, x + cols, padded), padded + 32, 0.0f);
      p = padded;
    }
    __m256 v[4], amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(p + 8 * k);
      const __m256 a = _mm256_andnot_ps(sign_bit, v[k]);
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, infinity, _CMP_NLT_UQ));  // inf or NaN
      amax = _mm256_max_ps(amax, a);
    }
    if (!_mm256_testz_ps(bad, bad)) return false;
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    const float d = _mm_cvtss_f32(m) / 127.0f;
    float id = d != 0 ? 1.0f / d : 0.0f;
    if (!(id <= std::numeric_limits<float>::max())) id = 0;
    store_half(out, d);
    const __m256 scale = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
      // round half away from zero, as std::round: truncate, then step away when the fraction is >= 1/2
      const __m256 s = _mm256_mul_ps(v[k], scale);
      const __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 away = _mm256_cmp_ps(_mm256_andnot_ps(sign_bit, _mm256_sub_ps(s, t)), half, _CMP_GE_OQ);
      const __m256 step = _mm256_and_ps(away, _mm256_or_ps(_mm256_and_ps(s, sign_bit), one));
      q[k] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
    }
    // int32 -> int8 (packs work within 128-bit lanes: put the dwords back in order)
    const __m256i q16 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    const __m256i q8 = _mm256_permutevar8x32_epi32(q16, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2), q8);
  }
  return true;
}

// A row of nb q8_0 blocks into the SIMD kernels' pairs.
LMRL_INT_DOT_AVX2 inline void pair_up_q8_0(const std::uint8_t* row, std::size_t nb, q8_0_pair* pairs) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  for (std::size_t b = 0; b < (nb + 1) / 2 * 2; ++b) {
    q8_0_pair& p = pairs[b / 2];
    const std::size_t h = b % 2;
    __m256i codes = _mm256_setzero_si256(), neg_sums = _mm256_setzero_si256();
    __m256 scale = _mm256_setzero_ps();
    if (b < nb) {
      const std::uint8_t* block = row + b * q8_0::bytes_per_block;
      std::uint16_t d;
      std::memcpy(&d, block, 2);
      codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
      scale = _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(d)));
      neg_sums =
          _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, codes), ones16));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p.codes + 32 * h), codes);
    _mm256_storeu_ps(p.scales + 8 * h, scale);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p.neg_sums + 8 * h), neg_sums);
  }
}
#endif

// A row of `cols` contiguous floats into q8_0 blocks, padded with zeros to
// whole blocks, on `path` (every SIMD path quantizes with AVX2): the same
// bytes on every path. Returns false, having written part of the row or none
// of it, when a value is not finite.
inline bool quantize_row_q8_0(const float* x, std::size_t cols, std::uint8_t* out, [[maybe_unused]] int_dot_path path) {
#if LMRL_INT_DOT_X86
  if (path != int_dot_path::scalar) return quantize_row_q8_0_avx2(x, cols, out);
#endif
  for (std::size_t k = 0; k < cols; ++k)
    if (!std::isfinite(x[k])) return false;
  quantize_row_q8_0_scalar(x, cols, out);
  return true;
}

}  // namespace detail

inline void q8_0_rows::quantize(matrix_view<const float> x, int_dot_path path) {
  detail::require_int_dot_path("quantize_rows_q8_0", path);
  rows_ = x.shape[0];
  cols_ = x.shape[1];
  const auto cols = static_cast<std::size_t>(cols_);
  bytes_.resize(static_cast<std::size_t>(rows_) * row_bytes());
  [[maybe_unused]] const bool simd = supported_int_dot_paths().size() > 1;  // then the kernels read pairs
  if (simd) pairs_.resize(static_cast<std::size_t>(rows_) * pairs_per_row());
  for (index_t i = 0; i < rows_; ++i) {
    const float* row = x.row_data(i);
    if (x.stride[1] != 1 && cols > 1) {
      staging_.resize(cols);
      for (index_t k = 0; k < cols_; ++k) staging_[static_cast<std::size_t>(k)] = x(i, k);
      row = staging_.data();
    }
    std::uint8_t* out = bytes_.data() + static_cast<std::size_t>(i) * row_bytes();
    if (!detail::quantize_row_q8_0(row, cols, out, path))
      for (index_t k = 0; k < cols_; ++k)
        detail::require(std::isfinite(row[k]), "quantize_rows_q8_0: x(", i, ", ", k, ") is ", row[k],
                        "; activations must be finite");
#if LMRL_INT_DOT_X86
    if (simd)
      detail::pair_up_q8_0(out, blocks_per_row(), pairs_.data() + static_cast<std::size_t>(i) * pairs_per_row());
#endif
  }
}

// Quantizes each row of x (any strides) into `out`, q8_0::quantize_block's
// bytes on every path; a non-finite value is an error naming it.
inline void quantize_rows_q8_0(matrix_view<const float> x, q8_0_rows& out, int_dot_path path = best_int_dot_path()) {
  out.quantize(x, path);
}
}  // namespace lmrl
