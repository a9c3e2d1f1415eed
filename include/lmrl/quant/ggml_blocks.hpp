// ggml's Q8_0 and Q4_0 blocks, byte for byte (ggml-quants.c's reference
// quantize_row_q8_0_ref / quantize_row_q4_0_ref; gguf-py's quants.py is the
// test's reference, tests/data/quant_reference.txt), so blocks move between
// lmrl and llama.cpp unchanged. 32 values per block, the scale d as IEEE half.
//
//   Q8_0, 34 bytes: d = max|x| / 127;  q_i = round(x_i / d) (half away from zero), int8
//                   x_i ~ d q_i
//   Q4_0, 18 bytes: m = the x_i of largest |x_i| (the first such), d = m / -8;
//                   q_i = min(15, trunc(x_i / d + 8.5)), 4 bits;  x_i ~ d (q_i - 8)
//                   byte j holds q_j in its low nibble and q_{j+16} in its high one.
// Q4_0 divides by -8 so that the extreme value lands exactly on code 0 (-8 d =
// m) and keeps its sign: the 16 codes reach 8 steps one way and 7 the other.
// ggml multiplies by 1/d rather than dividing; so does this (the same floats).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

#include "lmrl/quant/minifloat.hpp"
#include "lmrl/quant/quantizer.hpp"

namespace lmrl {

namespace detail {
inline void store_half(std::uint8_t* out, float x) {
  const std::uint16_t h = float_to_half(x);
  out[0] = static_cast<std::uint8_t>(h & 0xff);  // little-endian, as ggml on every platform it runs on
  out[1] = static_cast<std::uint8_t>(h >> 8);
}
inline float load_half(const std::uint8_t* in) {
  return half_to_float(static_cast<std::uint16_t>(in[0] | (in[1] << 8)));
}
}  // namespace detail

struct q8_0 {
  static constexpr std::size_t block_size = 32;
  static constexpr std::size_t bytes_per_block = 2 + 32;
  static constexpr const char* name = "q8_0";

  void quantize_block(std::span<const float> x, std::span<std::uint8_t> out) const {
    detail::require_finite_block(name, x);
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    detail::store_half(out.data(), d);
    for (std::size_t i = 0; i < block_size; ++i) {
      const auto q = static_cast<std::int8_t>(std::round(x[i] * id));
      std::memcpy(&out[2 + i], &q, 1);
    }
  }

  void dequantize_block(std::span<const std::uint8_t> in, std::span<float> x) const {
    const float d = detail::load_half(in.data());
    for (std::size_t i = 0; i < block_size; ++i) {
      std::int8_t q;
      std::memcpy(&q, &in[2 + i], 1);
      x[i] = static_cast<float>(q) * d;
    }
  }
};

struct q4_0 {
  static constexpr std::size_t block_size = 32;
  static constexpr std::size_t bytes_per_block = 2 + 16;
  static constexpr const char* name = "q4_0";

  void quantize_block(std::span<const float> x, std::span<std::uint8_t> out) const {
    detail::require_finite_block(name, x);
    float amax = 0, extreme = 0;
    for (float v : x)
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        extreme = v;
      }
    const float d = extreme / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    detail::store_half(out.data(), d);
    const auto code = [&](float v) {
      volatile float scaled = v * id;  // rounded to float before the + 8.5, as in ggml (no fused multiply-add)
      return std::min(15, static_cast<int>(scaled + 8.5f));
    };
    for (std::size_t j = 0; j < block_size / 2; ++j)
      out[2 + j] = static_cast<std::uint8_t>(code(x[j]) | (code(x[j + block_size / 2]) << 4));
  }

  void dequantize_block(std::span<const std::uint8_t> in, std::span<float> x) const {
    const float d = detail::load_half(in.data());
    for (std::size_t j = 0; j < block_size / 2; ++j) {
      x[j] = static_cast<float>((in[2 + j] & 0x0f) - 8) * d;
      x[j + block_size / 2] = static_cast<float>((in[2 + j] >> 4) - 8) * d;
    }
  }
};

static_assert(Quantizer<q8_0> && Quantizer<q4_0>);

}  // namespace lmrl
