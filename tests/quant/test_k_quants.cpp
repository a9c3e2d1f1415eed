// ggml Q4_K (lmrl/quant/k_quants.hpp): bytes and dequantized values equal
// ggml's own (quantize_row_q4_K_ref / dequantize_row_q4_K, compiled from
// llama.cpp by tools/make_quant_reference.py), a block checked by hand, the
// rounding rule, error bounds, and bad input.
#include "lmrl/quant/k_quants.hpp"

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "quant/quant_reference.hpp"

using namespace lmrl;

namespace {

constexpr std::size_t reference_blocks = 16;  // 13 chosen cases, 3 that a fused multiply-add changes

std::uint16_t half_bits(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }

// Sub-block j's 6-bit scale and min, unpacked as ggml's get_scale_min_k4 does (written out again here).
std::pair<int, int> scale_min(const std::uint8_t* block, int j) {
  const std::uint8_t* q = block + 4;
  if (j < 4) return {q[j] & 63, q[j + 4] & 63};
  return {(q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)};
}

// Value i's 4-bit code: chunk i / 64, byte i % 32 of it, the high nibble for the chunk's second half.
int code(const std::uint8_t* block, std::size_t i) {
  const std::uint8_t byte = block[16 + 32 * (i / 64) + i % 32];
  return i % 64 < 32 ? byte & 0xf : byte >> 4;
}

}  // namespace

TEST_CASE("q4_k bytes and dequantized values equal ggml's quantize_row_q4_K_ref and dequantize_row_q4_K") {
  const auto input = quant_reference::floats("q4_k_input");
  const auto expected = quant_reference::bytes("q4_k_bytes");
  const auto expected_back = quant_reference::floats("q4_k_dequant");
  REQUIRE(input.size() == reference_blocks * 256);
  REQUIRE(expected.size() == reference_blocks * 144);
  std::vector<std::uint8_t> got(quantized_bytes<q4_k>(input.size()));
  quantize(q4_k{}, input, got);
  for (std::size_t b = 0; b < reference_blocks; ++b) {
    INFO("block ", b);
    const auto block = [&](const std::vector<std::uint8_t>& v, std::size_t from, std::size_t to) {
      return std::vector<std::uint8_t>(v.begin() + static_cast<std::ptrdiff_t>(144 * b + from),
                                       v.begin() + static_cast<std::ptrdiff_t>(144 * b + to));
    };
    CHECK(block(got, 0, 4) == block(expected, 0, 4));      // d, dmin
    CHECK(block(got, 4, 16) == block(expected, 4, 16));    // the packed 6-bit scales and mins
    CHECK(block(got, 16, 144) == block(expected, 16, 144));  // the codes
  }
  // Dequantizing ggml's bytes (not ours, so a quantizer bug cannot hide a dequantizer one) gives ggml's floats.
  std::vector<float> back(input.size());
  dequantize(q4_k{}, expected, back);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < back.size(); ++i)
    differ += std::bit_cast<std::uint32_t>(back[i]) != std::bit_cast<std::uint32_t>(expected_back[i]);
  CHECK(differ == 0);
  // And the whole round trip, as for the other ggml formats.
  quant_reference::check_against_gguf<q4_k>("q4_k", reference_blocks);
}

TEST_CASE("q4_k by hand: staircase sub-blocks give exact fits, d, dmin, packing, codes") {
  // Sub-block j is x_l = a_j floor(l / 2) - mu_j: 16 levels a_j apart. With a_j a power of two
  // the fit is exact (s_j = a_j, lo = -mu_j, zero error, so no trial step replaces it).
  const float a[8] = {1, 0.5f, 0.25f, 0.125f, 1, 0.5f, 0.0625f, 0.25f};
  const float mu[8] = {63.0f / 32, 5.0f / 64, 0, 1.0f / 32, 0, 45.0f / 32, 7.0f / 64, 0.5f};
  std::vector<float> x(256);
  for (std::size_t j = 0; j < 8; ++j)
    for (std::size_t l = 0; l < 32; ++l) x[32 * j + l] = a[j] * static_cast<float>(l / 2) - mu[j];
  std::vector<std::uint8_t> b(144);
  quantize(q4_k{}, x, b);
  // d = half(s_max / 63) = half(1 / 63) = 65 / 4096 (1.015873 * 2^-6, 10 mantissa bits: 1040 / 1024);
  // dmin = mu_max / 63 = (63 / 32) / 63 = 1 / 32 exactly.
  CHECK(half_bits(&b[0]) == 0x2410);
  CHECK(half_to_float(half_bits(&b[0])) == 65.0f / 4096);
  CHECK(half_bits(&b[2]) == 0x2800);
  // sc_j = round(63 a_j): 63, 31.5 -> 32, 15.75 -> 16, 7.875 -> 8, 63, 32, 3.9375 -> 4, 16.
  // m_j = round(32 mu_j): 63, 2.5 -> 2 (ties to even), 0, 1, 0, 45, 3.5 -> 4, 16.
  const int sc[8] = {63, 32, 16, 8, 63, 32, 4, 16}, m[8] = {63, 2, 0, 1, 0, 45, 4, 16};
  for (int j = 0; j < 8; ++j) {
    INFO("sub-block ", j);
    CHECK(scale_min(b.data(), j) == std::pair{sc[j], m[j]});
  }
  // Sub-block 5 (sc 32 = 0b100000, m 45 = 0b101101) is packed in three bytes:
  CHECK(b[4 + 1] == (32 | (2 << 6)));         // sc_1 = 32, and sc_5's top two bits (10)
  CHECK(b[4 + 5] == (2 | (2 << 6)));          // m_1 = 2, and m_5's top two bits (10)
  CHECK(b[4 + 9] == (0 | (13 << 4)));         // the low nibbles: sc_5's 0000, m_5's 1101
  // Codes: q = round((x + dmin m) / (d sc)). Sub-block 5: x + 45/32 = 0.5 k, d sc = 65/128,
  // q = 64 k / 65 -> k. Sub-block 4 (d sc = 4095/4096): q = k. Both share bytes 64..95 of qs
  // (values 128..159 low nibbles, 160..191 high), so byte 64 + i is (i/2) | (i/2) << 4.
  for (std::size_t i = 0; i < 32; ++i) {
    INFO("qs byte ", 64 + i);
    CHECK(b[16 + 64 + i] == ((i / 2) | ((i / 2) << 4)));
  }
  // Sub-block 1 (m rounded down to 2): x + 2/32 = 0.5 k - 1/64, q = (64 k - 2) / 65 -> k (0 clamps at 0).
  for (std::size_t l = 0; l < 32; ++l) CHECK(code(b.data(), 32 + l) == static_cast<int>(l / 2));
  std::vector<float> back(256);
  dequantize(q4_k{}, b, back);
  CHECK(back[191] == 65.0f / 128 * 15 - 45.0f / 32);  // 795/128: d sc q - dmin m
  CHECK(back[32] == -1.0f / 16);                       // the min's 6-bit rounding: -2/32, not -5/64
  CHECK(back[0] == -63.0f / 32);
}

TEST_CASE("q4_k rounds as ggml's nearest_int does: to nearest, ties to even") {
  using detail::k_quants::nearest_int;
  CHECK(nearest_int(0.5f) == 0);
  CHECK(nearest_int(1.5f) == 2);
  CHECK(nearest_int(2.5f) == 2);
  CHECK(nearest_int(-2.5f) == -2);
  CHECK(nearest_int(2.5000002f) == 3);
  CHECK(nearest_int(-0.0f) == 0);
  CHECK(nearest_int(4194303.0f) == 4194303);
}

TEST_CASE("q4_k reconstructs each sub-block within a step of its scale and of the min") {
  CHECK(bits_per_value<q4_k>() == 4.5);
  CHECK(q4_k::bytes_per_block == 144);
  constexpr std::size_t blocks = 24;
  std::vector<float> x(256 * blocks);
  std::mt19937 gen(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> decade(-1.5f, 0.0f);
  for (std::size_t blk = 0; blk < blocks; ++blk)
    for (std::size_t j = 0; j < 8; ++j) {
      const float scale = std::pow(10.0f, decade(gen)) * (blk < 6 ? 1.0f : 30.0f);  // sub-blocks 1 to 30x apart
      const float offset = blk % 3 == 2 ? 4 * scale : 0.0f;                          // some mostly positive
      for (std::size_t l = 0; l < 32; ++l) {
        const std::size_t i = 256 * blk + 32 * j + l;
        x[i] = blk < 6 ? std::sin(0.37f * static_cast<float>(i)) * (1 + static_cast<float>(i % 7)) * scale
                       : normal(gen) * scale + offset;
      }
    }
  std::vector<std::uint8_t> b(quantized_bytes<q4_k>(x.size()));
  quantize(q4_k{}, x, b);
  std::vector<float> back(x.size());
  dequantize(q4_k{}, b, back);
  double err2 = 0, step2 = 0;
  for (std::size_t blk = 0; blk < blocks; ++blk) {
    const std::uint8_t* block = &b[144 * blk];
    const float d = half_to_float(half_bits(block)), dmin = half_to_float(half_bits(block + 2));
    for (int j = 0; j < 8; ++j) {
      const int sc = scale_min(block, j).first, m = scale_min(block, j).second;
      const float step = d * static_cast<float>(sc);
      for (std::size_t l = 0; l < 32; ++l) {
        const std::size_t i = 256 * blk + 32 * static_cast<std::size_t>(j) + l;
        const float err = std::fabs(back[i] - x[i]);
        INFO("block ", blk, " sub-block ", j, " value ", l, " sc ", sc, " m ", m);
        // A step of the code and one of the min; and sc_j = round(s_j / d) can leave the 15 steps
        // d sc_j short of the fitted range by 15 half-steps of d.
        CHECK(err <= step + dmin + 7.5f * d);
        err2 += static_cast<double>(err) * err;
        step2 += static_cast<double>(step) * step;
      }
    }
  }
  // Typically a uniform rounding error: rms 0.29 of a step.
  CHECK(std::sqrt(err2 / step2) < 0.35);
  // An all-zero block is all zeros again.
  std::vector<float> zero(256, 0.0f), zero_back(256, 1.0f);
  std::vector<std::uint8_t> zb(144);
  quantize(q4_k{}, zero, zb);
  dequantize(q4_k{}, zb, zero_back);
  CHECK(zero_back == zero);
}

TEST_CASE("q4_k: a partial block, a wrong output size and non-finite values are errors") {
  std::vector<float> x(300, 1.0f);
  std::vector<std::uint8_t> out(288);
  CHECK_THROWS_WITH_AS(quantize(q4_k{}, x, out), doctest::Contains("not a whole number of blocks of 256"),
                       lmrl::error);
  x.resize(512);
  std::vector<std::uint8_t> short_out(287);
  CHECK_THROWS_WITH_AS(quantize(q4_k{}, x, short_out), doctest::Contains("need 288 bytes"), lmrl::error);
  std::vector<float> back(256);
  CHECK_THROWS_WITH_AS(dequantize(q4_k{}, std::span<const std::uint8_t>(out).first(143), back),
                       doctest::Contains("need 144 bytes"), lmrl::error);
  x[300] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(quantize(q4_k{}, x, out), doctest::Contains("q4_k: value 44 of the block"), lmrl::error);
  x[300] = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(quantize(q4_k{}, x, out), lmrl::error);
}
