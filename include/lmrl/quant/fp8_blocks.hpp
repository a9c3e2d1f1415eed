// FP8 with DeepSeek-V3's fine-grained scaling (DeepSeek-V3 report, section
// 3.3.2; its inference code's act_quant / weight_dequant / fp8_gemm):
//
//   activations  1 x 128 tiles:    s = max|x| / 448 per 128 consecutive values of a row, q = e4m3(x / s)
//   weights      128 x 128 blocks: s = max|w| / 448 per block,                           q = e4m3(w / s)
//   GEMM         y[i, j] = sum over K-blocks b of  s_x[i, b] s_w[j / 128, b] sum_{k in b} q_x[i, k] q_w[j, k]
//
// Scales are float32; the largest value of a tile or block lands on 448, the
// largest E4M3 value, so nothing saturates but rounding. The GEMM accumulates
// each K-block's products in float32 and promotes them, scaled, into a float32
// sum: DeepSeek-V3's "promotion to CUDA cores" every 128 values, without the
// tensor cores' reduced accumulator precision (this is the reference the GPU
// kernels are tested against). An all-zero tile gets scale 0 and codes 0
// (DeepSeek's 0/0 would be NaN). Weights are [out x in] (W y = x W^T), as
// nn.Linear and Hugging Face checkpoints store them.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

#include "lmrl/error.hpp"
#include "lmrl/quant/minifloat.hpp"
#include "lmrl/quant/quantizer.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

inline constexpr index_t fp8_block = 128;

namespace detail {
inline index_t blocks_of(index_t n) { return (n + fp8_block - 1) / fp8_block; }

// The scale of values whose largest magnitude is amax.
inline float fp8_scale(float amax) { return amax / static_cast<float>(fp8_e4m3::max_value()); }

// The 256 E4M3 values, decoded once (decode() itself is a few libm calls per value).
inline const float* fp8_e4m3_values() {
  static const auto table = [] {
    std::array<float, 256> t{};
    for (std::uint32_t c = 0; c < 256; ++c) t[c] = fp8_e4m3::decode(c);
    return t;
  }();
  return table.data();
}

inline std::uint8_t fp8_code(float x, float scale) {
  return static_cast<std::uint8_t>(scale == 0 ? 0u : fp8_e4m3::encode(x / scale, overflow::saturate));
}

inline void require_shape(const char* what, const char* name, index_t rows, index_t cols, index_t want_rows,
                          index_t want_cols) {
  require(rows == want_rows && cols == want_cols, what, ": ", name, " is [", rows, " x ", cols, "], expected [",
          want_rows, " x ", want_cols, "]");
}
}  // namespace detail

// One 1 x 128 activation tile as a block: 128 E4M3 codes, then the float32
// scale (little-endian). DeepSeek keeps the scales in a tensor of their own;
// this is the same numbers in one block, for the Quantizer concept.
struct fp8_tile {
  static constexpr std::size_t block_size = fp8_block;
  static constexpr std::size_t bytes_per_block = fp8_block + 4;
  static constexpr const char* name = "fp8_tile";

  void quantize_block(std::span<const float> x, std::span<std::uint8_t> out) const {
    detail::require_finite_block(name, x);
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const float scale = detail::fp8_scale(amax);
    for (std::size_t i = 0; i < block_size; ++i) out[i] = detail::fp8_code(x[i], scale);
    std::memcpy(&out[block_size], &scale, 4);
  }

  void dequantize_block(std::span<const std::uint8_t> in, std::span<float> x) const {
    float scale;
    std::memcpy(&scale, &in[block_size], 4);
    const float* value = detail::fp8_e4m3_values();
    for (std::size_t i = 0; i < block_size; ++i) x[i] = value[in[i]] * scale;
  }
};
static_assert(Quantizer<fp8_tile>);

namespace detail {
// x [R x K] -> codes [R x K], scales [ceil(R / tile_rows) x ceil(K / 128)]: one scale per tile of
// tile_rows x 128 values (edge tiles are smaller and scaled on their own).
inline void quantize_fp8_tiles(const char* what, const char* name, matrix_view<const float> x, index_t tile_rows,
                               matrix_view<std::uint8_t> codes, matrix_view<float> scales) {
  const index_t R = x.shape[0], K = x.shape[1], tiles = (R + tile_rows - 1) / tile_rows;
  require_shape(what, "codes", codes.shape[0], codes.shape[1], R, K);
  require_shape(what, "scales", scales.shape[0], scales.shape[1], tiles, blocks_of(K));
  for (index_t br = 0; br < tiles; ++br)
    for (index_t bk = 0; bk < blocks_of(K); ++bk) {
      const index_t r_end = std::min(R, (br + 1) * tile_rows), k_end = std::min(K, (bk + 1) * fp8_block);
      float amax = 0;
      for (index_t r = br * tile_rows; r < r_end; ++r)
        for (index_t k = bk * fp8_block; k < k_end; ++k) {
          require(std::isfinite(x(r, k)), what, ": ", name, "[", r, ", ", k, "] = ", x(r, k), " is not finite");
          amax = std::max(amax, std::fabs(x(r, k)));
        }
      const float s = scales(br, bk) = fp8_scale(amax);
      for (index_t r = br * tile_rows; r < r_end; ++r)
        for (index_t k = bk * fp8_block; k < k_end; ++k) codes(r, k) = fp8_code(x(r, k), s);
    }
}
}  // namespace detail

// Activations [M x K] -> codes [M x K], scales [M x ceil(K / 128)]: 1 x 128 tiles.
inline void quantize_fp8_activations(matrix_view<const float> x, matrix_view<std::uint8_t> codes,
                                     matrix_view<float> scales) {
  detail::quantize_fp8_tiles("quantize_fp8_activations", "x", x, 1, codes, scales);
}

// Weights [N x K] -> codes [N x K], scales [ceil(N / 128) x ceil(K / 128)]: 128 x 128 blocks.
inline void quantize_fp8_weights(matrix_view<const float> w, matrix_view<std::uint8_t> codes,
                                 matrix_view<float> scales) {
  detail::quantize_fp8_tiles("quantize_fp8_weights", "w", w, fp8_block, codes, scales);
}

// y [M x N] = x W^T from the quantized x (quantize_fp8_activations) and W (quantize_fp8_weights).
inline void fp8_gemm(matrix_view<const std::uint8_t> x_codes, matrix_view<const float> x_scales,
                     matrix_view<const std::uint8_t> w_codes, matrix_view<const float> w_scales, matrix_view<float> y) {
  const char* what = "fp8_gemm";
  const index_t M = x_codes.shape[0], K = x_codes.shape[1], N = w_codes.shape[0];
  detail::require(w_codes.shape[1] == K, what, ": x has K = ", K, " columns, W has ", w_codes.shape[1]);
  detail::require_shape(what, "x_scales", x_scales.shape[0], x_scales.shape[1], M, detail::blocks_of(K));
  detail::require_shape(what, "w_scales", w_scales.shape[0], w_scales.shape[1], detail::blocks_of(N), detail::blocks_of(K));
  detail::require_shape(what, "y", y.shape[0], y.shape[1], M, N);
  const float* lut = detail::fp8_e4m3_values();
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      float sum = 0;
      for (index_t b = 0; b < detail::blocks_of(K); ++b) {
        float partial = 0;
        for (index_t k = b * fp8_block; k < std::min(K, (b + 1) * fp8_block); ++k)
          partial += lut[x_codes(i, k)] * lut[w_codes(j, k)];
        sum += partial * (x_scales(i, b) * w_scales(j / fp8_block, b));
      }
      y(i, j) = sum;
    }
}

}  // namespace lmrl
