// ggml Q8_0 and Q4_0 (lmrl/quant/ggml_blocks.hpp): the bytes equal gguf-py's
// (bit-exact with ggml-quants.c) for the same input, dequantization equals
// its floats, a hand-made block, error bounds, and bad input.
#include "lmrl/quant/ggml_blocks.hpp"

#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "doctest/doctest.h"
#include "quant/quant_reference.hpp"

using namespace lmrl;


TEST_CASE("q8_0 and q4_0 bytes and dequantized values equal gguf-py's (ggml's reference) bit for bit") {
  quant_reference::check_against_gguf<q8_0>("q8_0", 24);
  quant_reference::check_against_gguf<q4_0>("q4_0", 24);
}

TEST_CASE("q8_0 and q4_0 by hand: sizes, scales, nibble order") {
  CHECK(bits_per_value<q8_0>() == 8.5);
  CHECK(bits_per_value<q4_0>() == 4.5);
  std::vector<float> x(32, 0.0f);
  x[0] = -16;  // the extreme: Q4_0's d = -16 / -8 = 2, code 0
  x[1] = 2;    // 2 / 2 + 8.5 = 9.5 -> 9
  x[16] = 14;  // 14 / 2 + 8.5 = 15.5 -> 15 (the clamp's edge)
  x[17] = 3;   // 1.5 + 8.5 = 10
  std::vector<std::uint8_t> b4(18);
  quantize(q4_0{}, x, b4);
  CHECK(half_to_float(static_cast<std::uint16_t>(b4[0] | (b4[1] << 8))) == 2.0f);
  CHECK(b4[2] == (0 | (15 << 4)));  // q_0 low nibble, q_16 high nibble
  CHECK(b4[3] == (9 | (10 << 4)));
  CHECK(b4[4] == (8 | (8 << 4)));   // zeros are code 8
  std::vector<float> back(32);
  dequantize(q4_0{}, b4, back);
  CHECK(back[0] == -16.0f);
  CHECK(back[1] == 2.0f);
  CHECK(back[16] == 14.0f);
  CHECK(back[17] == 4.0f);  // 3 rounds up to a step of 2

  std::vector<std::uint8_t> b8(34);
  quantize(q8_0{}, x, b8);  // d = 16 / 127; 2 / d = 15.875 -> 16
  CHECK(static_cast<std::int8_t>(b8[2]) == -127);
  CHECK(static_cast<std::int8_t>(b8[3]) == 16);
  CHECK(static_cast<std::int8_t>(b8[2 + 16]) == 111);  // 14 * 127 / 16 = 111.125
}

TEST_CASE("q8_0 and q4_0 reconstruct within half a step of the block's scale") {
  std::vector<float> x(32 * 8);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * (1 + static_cast<float>(i % 5));
  std::vector<float> back(x.size());
  std::vector<std::uint8_t> b8(quantized_bytes<q8_0>(x.size())), b4(quantized_bytes<q4_0>(x.size()));
  quantize(q8_0{}, x, b8);
  dequantize(q8_0{}, b8, back);
  for (std::size_t blk = 0; blk < 8; ++blk) {
    float amax = 0;
    for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[blk * 32 + i]));
    for (std::size_t i = 0; i < 32; ++i)  // half a step, plus the scale's half-precision rounding
      CHECK(std::fabs(back[blk * 32 + i] - x[blk * 32 + i]) <= amax / 127 * (0.5f + 128 * 0x1p-11f));
  }
  quantize(q4_0{}, x, b4);
  dequantize(q4_0{}, b4, back);
  for (std::size_t blk = 0; blk < 8; ++blk) {
    float amax = 0;
    for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[blk * 32 + i]));
    for (std::size_t i = 0; i < 32; ++i)  // the 16th level is missing on the far side: up to one whole step there
      CHECK(std::fabs(back[blk * 32 + i] - x[blk * 32 + i]) <= amax / 8 * (1.0f + 16 * 0x1p-11f));
  }
}

TEST_CASE("q8_0 and q4_0: a partial block, a wrong output size and non-finite values are errors") {
  std::vector<float> x(40, 1.0f);
  std::vector<std::uint8_t> out(68);
  CHECK_THROWS_WITH_AS(quantize(q8_0{}, x, out), doctest::Contains("not a whole number of blocks of 32"), lmrl::error);
  x.resize(64);
  std::vector<std::uint8_t> short_out(67);
  CHECK_THROWS_WITH_AS(quantize(q8_0{}, x, short_out), doctest::Contains("need 68 bytes"), lmrl::error);
  x[33] = std::numeric_limits<float>::quiet_NaN();
  std::vector<std::uint8_t> b4(36);
  CHECK_THROWS_WITH_AS(quantize(q4_0{}, x, b4), doctest::Contains("value 1 of the block"), lmrl::error);
  x[33] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(quantize(q8_0{}, x, out), lmrl::error);
}
