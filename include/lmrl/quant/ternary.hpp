// Ternary (1.58-bit) weights in ggml's TQ2_0 and TQ1_0 blocks: 256 values in
// {-1, 0, +1} times one half-precision scale d per block.
//
//   TQ2_0, 66 bytes (2.06 bits/value): each value in 2 bits, q + 1 in {0, 1, 2};
//          byte 32 h + m holds values 128 h + m, +32, +64, +96 in bits 0-1, 2-3, 4-5, 6-7.
//   TQ1_0, 54 bytes (1.69 bits/value): five values per byte as a base-3 number
//          s = sum_n (q_n + 1) 3^(4-n), stored as ceil(s 256 / 243) so that
//          value n comes back as ((byte 3^n mod 256) 3) >> 8 with shifts and
//          multiplies only. Bytes 0-31 hold values n 32 + m (n < 5), bytes 32-47
//          values 160 + n 16 + m, bytes 48-51 values 240 + n 4 + m (four each), then d.
//
// Which ternary value and which d (ternary_rule):
//   absmax   d = max|x|, q = round(x / d): ggml's quantize_row_tq*_ref, byte for
//            byte (gguf-py's quants.py is the test's reference)
//   absmean  d = mean|x|, q = clamp(round(x / d), -1, 1): BitNet b1.58's rule
//            (Ma et al. 2024, eq. 1-3) applied per block of 256 rather than per tensor
// absmax keeps the largest weight exact and rounds most of a Gaussian block to
// 0; absmean is what BitNet trains with: about half the weights become +-1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>

#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/quantizer.hpp"

namespace lmrl {

enum class ternary_rule { absmax, absmean };

namespace detail {
// The block's d (unrounded) and its ternary values as q + 1 in {0, 1, 2}.
inline float ternary_values(std::span<const float> x, ternary_rule rule, std::uint8_t* q_plus_one) {
  float d = 0;
  if (rule == ternary_rule::absmax) {
    for (float v : x) d = std::max(d, std::fabs(v));
  } else {
    double sum = 0;
    for (float v : x) sum += std::fabs(v);
    d = static_cast<float>(sum / static_cast<double>(x.size()));
  }
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (std::size_t i = 0; i < x.size(); ++i)
    q_plus_one[i] = static_cast<std::uint8_t>(std::clamp(static_cast<int>(std::round(x[i] * id)), -1, 1) + 1);
  return d;
}
}  // namespace detail

struct tq2_0 {
  static constexpr std::size_t block_size = 256;
  static constexpr std::size_t bytes_per_block = 64 + 2;
  static constexpr const char* name = "tq2_0";
  ternary_rule rule = ternary_rule::absmax;

  void quantize_block(std::span<const float> x, std::span<std::uint8_t> out) const {
    detail::require_finite_block(name, x);
    std::uint8_t q[block_size];
    const float d = detail::ternary_values(x, rule, q);
    for (std::size_t h = 0; h < 2; ++h)
      for (std::size_t m = 0; m < 32; ++m) {
        const std::uint8_t* v = q + 128 * h + m;
        out[32 * h + m] = static_cast<std::uint8_t>(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
      }
    detail::store_half(&out[64], d);
  }

  void dequantize_block(std::span<const std::uint8_t> in, std::span<float> x) const {
    const float d = detail::load_half(&in[64]);
    for (std::size_t h = 0; h < 2; ++h)
      for (std::size_t m = 0; m < 32; ++m)
        for (std::size_t n = 0; n < 4; ++n)
          x[128 * h + 32 * n + m] = static_cast<float>(((in[32 * h + m] >> (2 * n)) & 3) - 1) * d;
  }
};

struct tq1_0 {
  static constexpr std::size_t block_size = 256;
  static constexpr std::size_t bytes_per_block = 48 + 4 + 2;
  static constexpr const char* name = "tq1_0";
  ternary_rule rule = ternary_rule::absmax;

  void quantize_block(std::span<const float> x, std::span<std::uint8_t> out) const {
    detail::require_finite_block(name, x);
    std::uint8_t q[block_size];
    const float d = detail::ternary_values(x, rule, q);
    // `digits` base-3 digits, value n at first + n * stride, most significant first, into one byte
    const auto pack = [&](std::size_t first, std::size_t stride, int digits) {
      unsigned s = 0;
      for (int n = 0; n < digits; ++n) s = 3 * s + q[first + static_cast<std::size_t>(n) * stride];
      for (int n = digits; n < 5; ++n) s *= 3;  // four-digit bytes are scaled as five-digit ones
      return static_cast<std::uint8_t>((s * 256 + 242) / 243);
    };
    for (std::size_t m = 0; m < 32; ++m) out[m] = pack(m, 32, 5);
    for (std::size_t m = 0; m < 16; ++m) out[32 + m] = pack(160 + m, 16, 5);
    for (std::size_t m = 0; m < 4; ++m) out[48 + m] = pack(240 + m, 4, 4);
    detail::store_half(&out[52], d);
  }

  void dequantize_block(std::span<const std::uint8_t> in, std::span<float> x) const {
    const float d = detail::load_half(&in[52]);
    const auto digit = [](std::uint8_t byte, int n) {  // ((byte 3^n mod 256) 3) >> 8, minus 1
      static constexpr std::uint8_t pow3[5] = {1, 3, 9, 27, 81};
      const auto shifted = static_cast<std::uint8_t>(byte * pow3[n]);
      return static_cast<int>((static_cast<unsigned>(shifted) * 3) >> 8) - 1;
    };
    for (std::size_t m = 0; m < 32; ++m)
      for (int n = 0; n < 5; ++n) x[static_cast<std::size_t>(n) * 32 + m] = static_cast<float>(digit(in[m], n)) * d;
    for (std::size_t m = 0; m < 16; ++m)
      for (int n = 0; n < 5; ++n)
        x[160 + static_cast<std::size_t>(n) * 16 + m] = static_cast<float>(digit(in[32 + m], n)) * d;
    for (std::size_t m = 0; m < 4; ++m)
      for (int n = 0; n < 4; ++n)
        x[240 + static_cast<std::size_t>(n) * 4 + m] = static_cast<float>(digit(in[48 + m], n)) * d;
  }
};

static_assert(Quantizer<tq2_0> && Quantizer<tq1_0>);

}  // namespace lmrl
