// cuda/ops/fp8_gemm.cuh against quant/fp8_blocks.hpp: the quantizers give the
// CPU's codes and scales byte for byte, in cuBLASLt's layouts (padding rows and
// scale columns included, every output poisoned first), NaN kept; both product paths
// against the CPU's fp8_gemm on the same codes; and linear_products at fp8:
// listed weights through FP8, the rest and the backward at bf16's bits.
// Tolerances, relative to sum_k |x_k w_k| of the dequantized operands (the
// size of the sum, so a product that cancels is not held to a tighter bound):
//   cuda_cores    1e-5: float sums in another order than the CPU's;
//   tensor_cores  2e-3: the block's 128 products summed inside the tensor
//                 cores, whose FP8 accumulator keeps about 14 bits (DeepSeek-V3
//                 report, section 3.3.2) - still 30x below a scale mix-up, which
//                 is off by the ratio of two blocks' scales (2x .. 64x here).
#include "support/doctest_strings.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda/random_values.hpp"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/ops/fp8_gemm.cuh"
#include "lmrl/cuda/ops/linear_products.cuh"
#include "lmrl/quant/fp8_blocks.hpp"

using namespace lmrl;
using namespace lmrl::cuda;

namespace {

// x [rows x cols] with magnitudes that differ by row and by 128-column block (factors 1 .. 64), so a scale
// taken from the wrong tile or block shows; row `zero_row`'s first block all zero (scale 0).
std::vector<float> spread_values(index_t rows, index_t cols, index_t ld, std::uint64_t seed, index_t zero_row) {
  auto v = testing::random_values(rows * ld, seed);
  for (index_t r = 0; r < rows; ++r)
    for (index_t k = 0; k < cols; ++k) {
      float& e = v[static_cast<std::size_t>(r * ld + k)];
      e *= static_cast<float>((1 + r % 4) * (1 << (2 * ((k / 128 + r / 128) % 4))));
      if (r == zero_row && k < 128) e = 0.0f;
    }
  return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

int compute_capability() {
  int device = 0, major = 0, minor = 0;
  LMRL_CUDA_CHECK(cudaGetDevice(&device));
  LMRL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  LMRL_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return 10 * major + minor;
}

// The CPU's quantization of x [rows x cols] (row stride ld) in tiles of tile_rows x 128.
struct cpu_quantized {
  std::vector<std::uint8_t> codes;
  std::vector<float> scales;
  index_t blocks = 0;
};
cpu_quantized cpu_quantize(const std::vector<float>& x, index_t rows, index_t cols, index_t ld, index_t tile_rows) {
  cpu_quantized q;
  q.blocks = (cols + 127) / 128;
  const index_t tiles = (rows + tile_rows - 1) / tile_rows;
  q.codes.resize(static_cast<std::size_t>(rows * cols));
  q.scales.resize(static_cast<std::size_t>(tiles * q.blocks));
  const matrix_view<const float> view(x.data(), {rows, cols}, {ld, 1});
  const matrix_view<std::uint8_t> codes(q.codes.data(), {rows, cols});
  const matrix_view<float> scales(q.scales.data(), {tiles, q.blocks});
  if (tile_rows == 1)
    quantize_fp8_activations(view, codes, scales);
  else
    quantize_fp8_weights(view, codes, scales);
  return q;
}

// sum_k |x_k w_k| of the dequantized operands, per output [rows x n].
std::vector<double> magnitudes(const cpu_quantized& x, index_t rows, const cpu_quantized& w, index_t n, index_t k) {
  const float* value = lmrl::detail::fp8_e4m3_values();
  std::vector<double> m(static_cast<std::size_t>(rows * n));
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = 0;
      for (index_t e = 0; e < k; ++e)
        s += std::abs(static_cast<double>(value[x.codes[static_cast<std::size_t>(i * k + e)]]) *
                      x.scales[static_cast<std::size_t>(i * x.blocks + e / 128)] *
                      value[w.codes[static_cast<std::size_t>(j * k + e)]] *
                      w.scales[static_cast<std::size_t>((j / 128) * w.blocks + e / 128)]);
      m[static_cast<std::size_t>(i * n + j)] = s;
    }
  return m;
}

}  // namespace

TEST_CASE("cuda quantize_fp8_activations: the CPU's codes and scales, in cuBLASLt's 1 x 128 layout") {
  const index_t rows = 7, cols = 200, ld = 211, padded = 8, L = 2;  // a partial last tile and a padding row
  const auto x = spread_values(rows, cols, ld, 1, 3);
  const auto want = cpu_quantize(x, rows, cols, ld, 1);
  const auto x_dev = device_array<float>::from_host(x);
  fp8_tiles t;
  t.codes = device_array<std::uint8_t>(static_cast<std::size_t>(padded * cols));
  t.scales = device_array<float>(static_cast<std::size_t>(L * padded));
  t.codes.poison(), t.scales.poison();  // 0xFF: a NaN code and a NaN scale where nothing is written
  quantize_fp8_activations(device_matrix<const float>(x_dev.data(), rows, cols, ld), t);
  CHECK(t.rows == rows);
  CHECK(t.cols == cols);
  CHECK(t.padded_rows == padded);
  const auto codes = t.codes.to_host();
  const auto scales = t.scales.to_host();
  CHECK(std::vector<std::uint8_t>(codes.begin(), codes.begin() + rows * cols) == want.codes);
  for (index_t k = 0; k < cols; ++k) CHECK(codes[static_cast<std::size_t>(rows * cols + k)] == 0);  // padding row
  for (index_t r = 0; r < padded; ++r)
    for (index_t b = 0; b < L; ++b) {
      CAPTURE(r);
      CAPTURE(b);
      const float got = scales[static_cast<std::size_t>(b * padded + r)];  // M-major: rows contiguous
      CHECK(same_bits(got, r < rows ? want.scales[static_cast<std::size_t>(r * L + b)] : 0.0f));
    }
  CHECK(scales[static_cast<std::size_t>(0 * padded + 3)] == 0.0f);  // the all-zero tile
  CHECK(want.scales[static_cast<std::size_t>(3 * L + 1)] > 0.0f);
}

TEST_CASE("cuda fp8: a NaN makes its tile's scale and codes NaN, and its row of the product NaN") {
  // (the CPU refuses non-finite input; a kernel cannot, so the NaN must not vanish: fmaxf alone would drop it
  // from the tile's maximum and leave an all-zero tile with scale 0)
  const index_t rows = 2, cols = 128, n = 4;
  std::vector<float> x(static_cast<std::size_t>(rows * cols), 0.0f);
  x[5] = std::nanf("");                                                  // row 0: zeros and a NaN
  for (index_t k = 0; k < cols; ++k) x[static_cast<std::size_t>(cols + k)] = 0.5f + 0.01f * static_cast<float>(k);
  const auto w = testing::random_values(n * cols, 3);
  const auto x_dev = device_array<float>::from_host(x), w_dev = device_array<float>::from_host(w);
  fp8_tiles x8;
  fp8_blocks w8;
  quantize_fp8_activations(device_matrix<const float>(x_dev.data(), rows, cols), x8);
  quantize_fp8_weights(device_matrix<const float>(w_dev.data(), n, cols), w8);
  const auto scales = x8.scales.to_host();
  CHECK(std::isnan(scales[0]));
  CHECK(std::isfinite(scales[1]));
  cublas_handle h;
  fp8_products products(h);
  device_array<float> y(static_cast<std::size_t>(rows * n));
  products.gemm(x8, w8, device_matrix<float>(y.data(), rows, n), false, fp8_path::cuda_cores);
  const auto got = y.to_host();
  for (index_t j = 0; j < n; ++j) {
    CHECK(std::isnan(got[static_cast<std::size_t>(j)]));
    CHECK(std::isfinite(got[static_cast<std::size_t>(n + j)]));
  }
}

TEST_CASE("cuda quantize_fp8_weights: the CPU's codes and scales, in cuBLASLt's 128 x 128 layout") {
  const index_t rows = 300, cols = 200, ld = 200, P = 3, L = 2, L4 = 4;  // partial blocks both ways
  const auto w = spread_values(rows, cols, ld, 2, -1);
  auto w_zero_block = w;
  for (index_t r = 256; r < rows; ++r)
    for (index_t k = 128; k < cols; ++k) w_zero_block[static_cast<std::size_t>(r * ld + k)] = 0.0f;
  const auto want = cpu_quantize(w_zero_block, rows, cols, ld, 128);
  const auto w_dev = device_array<float>::from_host(w_zero_block);
  fp8_blocks q;
  q.codes = device_array<std::uint8_t>(static_cast<std::size_t>(rows * cols));
  q.scales = device_array<float>(static_cast<std::size_t>(P * L4));
  q.codes.poison(), q.scales.poison();
  quantize_fp8_weights(device_matrix<const float>(w_dev.data(), rows, cols, ld), q);
  CHECK(q.scale_stride == L4);
  CHECK(q.codes.to_host() == want.codes);
  const auto scales = q.scales.to_host();
  for (index_t p = 0; p < P; ++p)
    for (index_t b = 0; b < L4; ++b) {
      CAPTURE(p);
      CAPTURE(b);
      const float got = scales[static_cast<std::size_t>(p * L4 + b)];  // K-major, stride rounded up to 4
      CHECK(same_bits(got, b < L ? want.scales[static_cast<std::size_t>(p * L + b)] : 0.0f));
    }
  CHECK(scales[static_cast<std::size_t>(2 * L4 + 1)] == 0.0f);  // the all-zero block
}

TEST_CASE("cuda fp8_products: both paths against quant/'s fp8_gemm on the same codes") {
  const int cc = compute_capability();
  cublas_handle h;
  fp8_products products(h);
  // Hopper must take the tensor cores for these shapes: a silent fallback would leave them untested.
  if (cc == 90) CHECK(products.tensor_cores_apply(256, 384));
  if (cc != 90) MESSAGE("compute capability ", cc, ": the tensor-core path is not available here, not tested");
  struct shape {
    index_t rows, n, k, ldy, offset;  // y starts `offset` floats into its buffer
  };
  // in place (rows % 8 == 0; a wider row stride; y 16-byte but not 256-byte aligned), through the workspace
  // (rows 6 and a row stride of 270; rows 5), a partial last K-block, n past a 128-row block, and a shape only
  // the CUDA cores take (n % 4 != 0).
  const shape shapes[] = {{8, 256, 384, 256, 0}, {8, 256, 384, 260, 4}, {6, 260, 384, 270, 0},
                          {5, 132, 272, 132, 0}, {3, 6, 200, 6, 0}};
  for (const shape& s : shapes) {
    CAPTURE(s.rows);
    CAPTURE(s.n);
    CAPTURE(s.k);
    CAPTURE(s.ldy);
    CAPTURE(s.offset);
    const auto x = spread_values(s.rows, s.k, s.k, 10 + s.rows, 1);
    const auto w = spread_values(s.n, s.k, s.k, 20 + s.n, -1);
    const auto xq = cpu_quantize(x, s.rows, s.k, s.k, 1), wq = cpu_quantize(w, s.n, s.k, s.k, 128);
    std::vector<float> want(static_cast<std::size_t>(s.rows * s.n));
    fp8_gemm(matrix_view<const std::uint8_t>(xq.codes.data(), {s.rows, s.k}),
             matrix_view<const float>(xq.scales.data(), {s.rows, xq.blocks}),
             matrix_view<const std::uint8_t>(wq.codes.data(), {s.n, s.k}),
             matrix_view<const float>(wq.scales.data(), {(s.n + 127) / 128, wq.blocks}),
             matrix_view<float>(want.data(), {s.rows, s.n}));
    const auto size = magnitudes(xq, s.rows, wq, s.n, s.k);
    const auto x_dev = device_array<float>::from_host(x), w_dev = device_array<float>::from_host(w);
    fp8_tiles x8;
    fp8_blocks w8;
    quantize_fp8_activations(device_matrix<const float>(x_dev.data(), s.rows, s.k), x8);
    quantize_fp8_weights(device_matrix<const float>(w_dev.data(), s.n, s.k), w8);
    const auto y0 = testing::random_values(s.offset + s.rows * s.ldy, 30);
    for (const fp8_path path : {fp8_path::cuda_cores, fp8_path::tensor_cores}) {
      CAPTURE(to_string(path));
      if (path == fp8_path::tensor_cores && !products.tensor_cores_apply(s.n, s.k)) {
        CHECK_THROWS_WITH_AS(products.gemm(x8, w8, device_matrix<float>(nullptr, s.rows, s.n, s.ldy), false, path),
                             doctest::Contains("tensor-core path needs"), error);
        continue;
      }
      const double bound = path == fp8_path::cuda_cores ? 1e-5 : 2e-3;
      for (const bool accumulate : {false, true}) {
        CAPTURE(accumulate);
        auto y = device_array<float>::from_host(y0);
        if (!accumulate) {  // poison the product's elements, keep the stride's padding
          std::vector<float> p = y0;
          for (index_t i = 0; i < s.rows; ++i)
            for (index_t j = 0; j < s.n; ++j) p[static_cast<std::size_t>(s.offset + i * s.ldy + j)] = std::nanf("");
          y.copy_from_host(p);
        }
        const device_matrix<float> out(y.data() + s.offset, s.rows, s.n, s.ldy);
        CHECK(products.gemm(x8, w8, out, accumulate, path) == path);
        const auto got = y.to_host();
        for (index_t e = 0; e < s.offset; ++e) CHECK(same_bits(got[static_cast<std::size_t>(e)], y0[static_cast<std::size_t>(e)]));
        double worst = 0;
        for (index_t i = 0; i < s.rows; ++i) {
          for (index_t j = 0; j < s.n; ++j) {
            const auto e = static_cast<std::size_t>(s.offset + i * s.ldy + j), o = static_cast<std::size_t>(i * s.n + j);
            const double base = accumulate ? y0[e] : 0.0, err = std::abs(got[e] - (base + want[o]));
            worst = std::isnan(err) ? INFINITY : std::max(worst, err / (size[o] + (accumulate ? std::abs(base) : 0)));
          }
          for (index_t j = s.n; j < s.ldy; ++j) {  // the stride's padding untouched
            const auto e = static_cast<std::size_t>(s.offset + i * s.ldy + j);
            CHECK(same_bits(got[e], y0[e]));
          }
        }
        MESSAGE(to_string(path), " ", s.rows, " x ", s.n, " x ", s.k, ": worst error / sum |terms| ", worst);
        CHECK(worst <= bound);
      }
    }
    // automatic takes the tensor cores exactly where they apply
    device_array<float> y(static_cast<std::size_t>(s.offset + s.rows * s.ldy));
    const fp8_path ran = products.gemm(x8, w8, device_matrix<float>(y.data() + s.offset, s.rows, s.n, s.ldy));
    CHECK(ran == (products.tensor_cores_apply(s.n, s.k) ? fp8_path::tensor_cores : fp8_path::cuda_cores));
  }
}

TEST_CASE("cuda linear_products at fp8: listed weights' nt in FP8, every other product at bf16's bits") {
  const index_t m = 12, n = 64, k = 96, head = 40;
  // one buffer: a listed weight [n x k], then an unlisted one [head x k]
  const auto params = testing::random_values(n * k + head * k, 40);
  const auto x = testing::random_values(m * k, 41), dy = testing::random_values(m * n, 42);
  const auto dparams = device_array<float>::from_host(params);
  const auto x_dev = device_array<float>::from_host(x), dy_dev = device_array<float>::from_host(dy);
  const device_matrix<const float> w(dparams.data(), n, k), other(dparams.data() + n * k, head, k),
      X(x_dev.data(), m, k), DY(dy_dev.data(), m, n);
  cublas_handle h;
  linear_products products(h, nullptr);
  const auto run = [&](gemm_precision p) {
    const device_matrix<const float> listed[] = {w};
    products.begin(p, dparams.data(), params.size(), listed);
    device_array<float> y(static_cast<std::size_t>(m * n)), z(static_cast<std::size_t>(m * head)),
        dx(static_cast<std::size_t>(m * k)), dw(static_cast<std::size_t>(n * k));
    for (auto* a : {&y, &z, &dx, &dw}) a->poison();
    dw.zero();
    const linear_operand xo = products.operand(1, X);
    products.nt(xo, w, device_matrix<float>(y.data(), m, n));
    products.nt(xo, other, device_matrix<float>(z.data(), m, head));
    products.nn(DY, w, device_matrix<float>(dx.data(), m, k));
    products.tn(products.operand(0, DY), xo, device_matrix<float>(dw.data(), n, k), true);
    CHECK(products.fp8_weight(w) == (p == gemm_precision::fp8));
    CHECK_FALSE(products.fp8_weight(other));
    return std::vector<std::vector<float>>{y.to_host(), z.to_host(), dx.to_host(), dw.to_host()};
  };
  const auto bf16 = run(gemm_precision::bf16);
  const std::size_t bf16_bytes = products.workspace_bytes();
  const auto fp8 = run(gemm_precision::fp8);
  CHECK(products.workspace_bytes() >= bf16_bytes + static_cast<std::size_t>(n * k + m * k));  // + codes of w, x
  CHECK(fp8[1] == bf16[1]);  // the unlisted weight's product, the backward: bf16's bits
  CHECK(fp8[2] == bf16[2]);
  CHECK(fp8[3] == bf16[3]);
  // the listed weight's product is fp8_products' on the quantized operands, bit for bit
  fp8_tiles x8;
  fp8_blocks w8;
  quantize_fp8_activations(X, x8);
  quantize_fp8_weights(w, w8);
  fp8_products direct(h);
  device_array<float> y(static_cast<std::size_t>(m * n));
  direct.gemm(x8, w8, device_matrix<float>(y.data(), m, n));
  CHECK(y.to_host() == fp8[0]);

  // A listed weight used with another shape or row stride, a weight listed twice, one outside the buffer:
  // refused.
  const device_matrix<const float> listed[] = {w};
  products.begin(gemm_precision::fp8, dparams.data(), params.size(), listed);
  device_array<float> out(static_cast<std::size_t>(m * n));
  CHECK_THROWS_WITH_AS(products.nt(device_matrix<const float>(x_dev.data(), m, k / 2),
                                   device_matrix<const float>(dparams.data(), 2 * n, k / 2),
                                   device_matrix<float>(out.data(), m, 2 * n)),
                       doctest::Contains("is used as"), error);
  CHECK_THROWS_WITH_AS(products.nt(X, device_matrix<const float>(dparams.data(), n, k, 2 * k),
                                   device_matrix<float>(out.data(), m, n)),
                       doctest::Contains("(row stride 192)"), error);
  const device_matrix<const float> twice[] = {w, w};
  CHECK_THROWS_WITH_AS(products.begin(gemm_precision::fp8, dparams.data(), params.size(), twice),
                       doctest::Contains("listed twice"), error);
  const device_matrix<const float> outside[] = {X};
  CHECK_THROWS_WITH_AS(products.begin(gemm_precision::fp8, dparams.data(), params.size(), outside),
                       doctest::Contains("must lie inside the parameter buffer"), error);
}
