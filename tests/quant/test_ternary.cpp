// Ternary TQ2_0 / TQ1_0 (lmrl/quant/ternary.hpp): ggml's bytes (gguf-py) for
// the absmax rule, BitNet's absmean rule by hand, every base-3 byte of TQ1_0
// decoding back, and sizes.
#include "lmrl/quant/ternary.hpp"

#include <cmath>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "quant/quant_reference.hpp"

using namespace lmrl;

TEST_CASE("tq2_0 and tq1_0 (absmax) bytes and dequantized values equal gguf-py's bit for bit") {
  quant_reference::check_against_gguf<tq2_0>("tq2_0", 6);
  quant_reference::check_against_gguf<tq1_0>("tq1_0", 6);
  CHECK(bits_per_value<tq2_0>() == 2.0625);
  CHECK(bits_per_value<tq1_0>() == 1.6875);
}

TEST_CASE("ternary: all 243 five-digit and 81 four-digit patterns survive TQ1_0's base-3 bytes, both rules") {
  // Block b's five-digit byte s (32 of stride 32, then 16 of stride 16) carries pattern (48 b + s) mod 243,
  // its four-digit byte m pattern (4 b + m) mod 81; six blocks cover every pattern.
  const std::size_t blocks = 6;
  std::vector<float> x(256 * blocks);
  const auto put = [&](std::size_t block, int pattern, int digits, std::size_t first, std::size_t stride) {
    for (int n = digits - 1; n >= 0; --n, pattern /= 3)
      x[256 * block + first + static_cast<std::size_t>(n) * stride] = static_cast<float>(pattern % 3 - 1);
  };
  for (std::size_t b = 0; b < blocks; ++b) {
    for (std::size_t s = 0; s < 48; ++s) {
      const int pattern = static_cast<int>((48 * b + s) % 243);
      if (s < 32) put(b, pattern, 5, s, 32);
      else put(b, pattern, 5, 160 + (s - 32), 16);
    }
    for (std::size_t m = 0; m < 4; ++m) put(b, static_cast<int>((4 * b + m) % 81), 4, 240 + m, 4);
  }
  for (ternary_rule rule : {ternary_rule::absmax, ternary_rule::absmean}) {
    std::vector<std::uint8_t> bytes(quantized_bytes<tq1_0>(x.size()));
    quantize(tq1_0{rule}, x, bytes);
    std::vector<float> back(x.size());
    dequantize(tq1_0{rule}, bytes, back);
    for (std::size_t b = 0; b < blocks; ++b) {
      const float d = detail::load_half(&bytes[54 * b + 52]);
      CHECK(d > 0);
      for (std::size_t i = 0; i < 256; ++i) {
        INFO("block ", b, " value ", i);
        CHECK(back[256 * b + i] == x[256 * b + i] * d);  // every digit back, whatever the rule's d
      }
    }
  }
}

TEST_CASE("ternary absmean is BitNet b1.58's rule: d = mean |x|, q = clamp(round(x / d), -1, 1)") {
  std::vector<float> x(256, 0.0f);
  x[0] = 4;
  x[1] = -1;
  x[2] = 0.2f;
  x[3] = 0.7f;
  double mean = 0;
  for (float v : x) mean += std::fabs(v);
  mean /= 256;  // (4 + 1 + 0.2 + 0.7) / 256 = 0.023
  std::vector<std::uint8_t> bytes(66);
  quantize(tq2_0{ternary_rule::absmean}, x, bytes);
  std::vector<float> back(256);
  dequantize(tq2_0{ternary_rule::absmean}, bytes, back);
  const float d = half_to_float(float_to_half(static_cast<float>(mean)));
  CHECK(back[0] == d);    // 4 / d >> 1: clamped to +1
  CHECK(back[1] == -d);
  CHECK(back[2] == d);    // 0.2 / 0.023 > 0.5
  CHECK(back[4] == 0.0f);
  // absmax on the same block: d = 4, and 0.2, 0.7, -1 all round to 0 (1 / 4 < 0.5)
  quantize(tq2_0{}, x, bytes);
  dequantize(tq2_0{}, bytes, back);
  CHECK(back[0] == 4.0f);
  CHECK(back[1] == 0.0f);
  CHECK(back[3] == 0.0f);

  // On Gaussian weights absmean leaves far fewer zeros than absmax
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(256 * 16);
  for (auto& v : w) v = normal(gen);
  const auto zeros = [&](ternary_rule r) {
    std::vector<std::uint8_t> b(quantized_bytes<tq2_0>(w.size()));
    std::vector<float> y(w.size());
    quantize(tq2_0{r}, w, b);
    dequantize(tq2_0{r}, b, y);
    double z = 0;
    for (float v : y) z += v == 0.0f;
    return z / static_cast<double>(y.size());
  };
  CHECK(zeros(ternary_rule::absmean) < 0.45);  // |x| < mean|x| / 2 = 0.4: about 31% of a standard normal
  CHECK(zeros(ternary_rule::absmax) > 0.7);    // |x| < max / 2, about 1.4: about 84%
}
