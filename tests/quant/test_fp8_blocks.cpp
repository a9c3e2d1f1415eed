// DeepSeek-V3's FP8 scaling (lmrl/quant/fp8_blocks.hpp): tile and block
// scales by hand, the largest value on 448, reconstruction error, the FP8 GEMM
// against the dequantized product, and bad shapes.
#include "lmrl/quant/fp8_blocks.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "doctest/doctest.h"

using namespace lmrl;

namespace {

std::vector<float> gaussian(std::size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

}  // namespace

TEST_CASE("fp8 activations: one scale per 1 x 128 tile, the tile's largest value on 448") {
  const index_t M = 3, K = 300;  // tiles of 128, 128 and 44
  auto x = gaussian(static_cast<std::size_t>(M * K), 1, 5.0f);
  x[1 * K + 200] = -1000.0f;  // row 1, tile 1
  for (index_t k = 256; k < K; ++k) x[static_cast<std::size_t>(2 * K + k)] = 0.0f;  // row 2's short last tile: all zero
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(M * K));
  std::vector<float> scales(static_cast<std::size_t>(M * 3));
  quantize_fp8_activations(matrix_view<const float>(x.data(), {M, K}), matrix_view<std::uint8_t>(codes.data(), {M, K}),
                           matrix_view<float>(scales.data(), {M, 3}));
  CHECK(scales[1 * 3 + 1] == 1000.0f / 448.0f);
  CHECK(codes[static_cast<std::size_t>(1 * K + 200)] == 0xfe);  // -448
  CHECK(scales[2 * 3 + 2] == 0.0f);
  for (index_t k = 256; k < K; ++k) CHECK(codes[static_cast<std::size_t>(2 * K + k)] == 0);
  for (index_t i = 0; i < M; ++i)
    for (index_t k = 0; k < K; ++k) {
      const float s = scales[static_cast<std::size_t>(i * 3 + k / 128)];
      const float back = fp8_e4m3::decode(codes[static_cast<std::size_t>(i * K + k)]) * s;
      const float v = x[static_cast<std::size_t>(i * K + k)];
      // E4M3 keeps 3 mantissa bits: relative 2^-4 in the normal range, 2^-10 x s absolute below it
      CHECK(std::fabs(back - v) <= std::max(std::ldexp(std::fabs(v), -4), std::ldexp(s, -10)) * 1.0001f);
    }
}

TEST_CASE("fp8_tile is the same numbers as a Quantizer block (codes, then the float32 scale)") {
  const auto x = gaussian(256, 2);
  std::vector<std::uint8_t> bytes(quantized_bytes<fp8_tile>(x.size()));
  CHECK(bytes.size() == 2 * 132);
  quantize(fp8_tile{}, x, bytes);
  std::vector<std::uint8_t> codes(256);
  std::vector<float> scales(2);
  quantize_fp8_activations(matrix_view<const float>(x.data(), {1, 256}), matrix_view<std::uint8_t>(codes.data(), {1, 256}),
                           matrix_view<float>(scales.data(), {1, 2}));
  for (std::size_t i = 0; i < 128; ++i) {
    CHECK(bytes[i] == codes[i]);
    CHECK(bytes[132 + i] == codes[128 + i]);
  }
  std::vector<float> back(256);
  dequantize(fp8_tile{}, bytes, back);
  for (std::size_t i = 0; i < 256; ++i) CHECK(back[i] == fp8_e4m3::decode(codes[i]) * scales[i / 128]);
  CHECK(bits_per_value<fp8_tile>() == 8.25);
}

TEST_CASE("fp8 weights: one scale per 128 x 128 block, partial blocks at the edges") {
  const index_t N = 130, K = 129;
  auto w = gaussian(static_cast<std::size_t>(N * K), 3, 0.02f);
  w[static_cast<std::size_t>(129 * K + 128)] = 0.5f;  // alone in the corner block
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(N * K));
  std::vector<float> scales(4);
  quantize_fp8_weights(matrix_view<const float>(w.data(), {N, K}), matrix_view<std::uint8_t>(codes.data(), {N, K}),
                       matrix_view<float>(scales.data(), {2, 2}));
  CHECK(scales[3] == 0.5f / 448.0f);
  CHECK(codes[static_cast<std::size_t>(129 * K + 128)] == 0x7e);
  float amax = 0;
  for (index_t n = 0; n < 128; ++n)
    for (index_t k = 0; k < 128; ++k) amax = std::max(amax, std::fabs(w[static_cast<std::size_t>(n * K + k)]));
  CHECK(scales[0] == amax / 448.0f);
}

TEST_CASE("fp8_gemm equals the product of the dequantized operands (float32 promotion per K-block)") {
  const index_t M = 5, N = 140, K = 300;
  const auto x = gaussian(static_cast<std::size_t>(M * K), 4, 3.0f), w = gaussian(static_cast<std::size_t>(N * K), 5, 0.05f);
  std::vector<std::uint8_t> xc(x.size()), wc(w.size());
  std::vector<float> xs(static_cast<std::size_t>(M * 3)), ws(2 * 3), y(static_cast<std::size_t>(M * N));
  quantize_fp8_activations(matrix_view<const float>(x.data(), {M, K}), matrix_view<std::uint8_t>(xc.data(), {M, K}),
                           matrix_view<float>(xs.data(), {M, 3}));
  quantize_fp8_weights(matrix_view<const float>(w.data(), {N, K}), matrix_view<std::uint8_t>(wc.data(), {N, K}),
                       matrix_view<float>(ws.data(), {2, 3}));
  fp8_gemm(matrix_view<const std::uint8_t>(xc.data(), {M, K}), matrix_view<const float>(xs.data(), {M, 3}),
           matrix_view<const std::uint8_t>(wc.data(), {N, K}), matrix_view<const float>(ws.data(), {2, 3}),
           matrix_view<float>(y.data(), {M, N}));
  double worst_vs_dequantized = 0, worst_vs_float = 0, norm = 0;
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) {
      double dq = 0, exact = 0;
      for (index_t k = 0; k < K; ++k) {
        const auto xi = static_cast<std::size_t>(i * K + k), wj = static_cast<std::size_t>(j * K + k);
        dq += static_cast<double>(fp8_e4m3::decode(xc[xi]) * xs[static_cast<std::size_t>(i * 3 + k / 128)]) *
              (fp8_e4m3::decode(wc[wj]) * ws[static_cast<std::size_t>((j / 128) * 3 + k / 128)]);
        exact += static_cast<double>(x[xi]) * w[wj];
      }
      const double got = y[static_cast<std::size_t>(i * N + j)];
      worst_vs_dequantized = std::max(worst_vs_dequantized, std::fabs(got - dq));
      worst_vs_float = std::max(worst_vs_float, std::fabs(got - exact));
      norm = std::max(norm, std::fabs(exact));
    }
  CHECK(worst_vs_dequantized < 1e-5 * norm);  // float32 sums of exactly representable products
  CHECK(worst_vs_float < 0.1 * norm);         // FP8's own error: a few percent of the largest output
  CHECK(worst_vs_float > 1e-4 * norm);        // and it is there (the check above is not vacuous)
}

TEST_CASE("fp8 blocks: wrong shapes and non-finite values are errors naming them") {
  std::vector<float> x(2 * 130, 1.0f), scales(4);
  std::vector<std::uint8_t> codes(2 * 130);
  CHECK_THROWS_WITH_AS(quantize_fp8_activations(matrix_view<const float>(x.data(), {2, 130}),
                                                matrix_view<std::uint8_t>(codes.data(), {2, 130}),
                                                matrix_view<float>(scales.data(), {2, 1})),
                       doctest::Contains("scales is [2 x 1], expected [2 x 2]"), lmrl::error);
  x[131] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(quantize_fp8_activations(matrix_view<const float>(x.data(), {2, 130}),
                                                matrix_view<std::uint8_t>(codes.data(), {2, 130}),
                                                matrix_view<float>(scales.data(), {2, 2})),
                       doctest::Contains("x[1, 1] = inf"), lmrl::error);
  std::vector<float> y(4);
  CHECK_THROWS_WITH_AS(fp8_gemm(matrix_view<const std::uint8_t>(codes.data(), {2, 130}),
                                matrix_view<const float>(scales.data(), {2, 2}),
                                matrix_view<const std::uint8_t>(codes.data(), {1, 260}),
                                matrix_view<const float>(scales.data(), {1, 3}), matrix_view<float>(y.data(), {2, 1})),
                       doctest::Contains("x has K = 130 columns, W has 260"), lmrl::error);
}
