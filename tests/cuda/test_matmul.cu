// cuda/ops/matmul.cuh against a double-precision product on the host: the three
// layouts, overwrite and accumulate, row strides wider than the row, float in
// fp32 and TF32, bf16 inputs; bias add and deterministic column sums. And
// cuda/ops/linear_products.cuh: round_to_bf16 bit for bit against the host's
// rounding, its bf16 products against the double product of the host-rounded
// operands (1e-5: only the float accumulation differs), operands rounded once
// for several products (the one-shot products' bits; stale ones refused), fp32 /
// tf32 passed through to matmul unchanged, and its refusals. cuda/ops/int_gemm.cuh:
// every integer format's product against the CPU's int_matmul_transposed, bit for
// bit (the same fixed order of float operations), its Q8_0 activations
// (quantize_rows of cuda/ops/ggml_blocks.cuh) against quantize_rows_q8_0's bytes.
// Tolerances (relative to the largest |reference| of the product):
//   fp32 1e-5 (k <= 300 float additions, cuBLAS may split k), TF32 5e-3 and
//   bf16 1e-2 (10 and 7 stored mantissa bits on the inputs; float accumulation).
#include <cuda_bf16.h>
#include "support/doctest_strings.hpp"

#include "cuda/random_values.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/ops/ggml_blocks.cuh"
#include "lmrl/cuda/ops/int_gemm.cuh"
#include "lmrl/cuda/ops/linear_products.cuh"
#include "lmrl/cuda/ops/matmul.cuh"

using namespace lmrl;
using namespace lmrl::cuda;

namespace {

std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g) + 0.01f;  // never exactly zero
  return v;
}

enum class layout { nt, nn, tn };

// reference c (+)= op(a) . op(b), all row-major with the given row strides
std::vector<double> reference(layout l, const std::vector<float>& a, index_t lda, const std::vector<float>& b,
                              index_t ldb, index_t m, index_t n, index_t k, const std::vector<float>& c0, index_t ldc,
                              bool accumulate) {
  std::vector<double> c(static_cast<std::size_t>(m * ldc), 0.0);
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      double s = accumulate ? c0[static_cast<std::size_t>(i * ldc + j)] : 0.0;
      for (index_t p = 0; p < k; ++p) {
        const double x = l == layout::tn ? a[static_cast<std::size_t>(p * lda + i)] : a[static_cast<std::size_t>(i * lda + p)];
        const double y = l == layout::nt ? b[static_cast<std::size_t>(j * ldb + p)] : b[static_cast<std::size_t>(p * ldb + j)];
        s += x * y;
      }
      c[static_cast<std::size_t>(i * ldc + j)] = s;
    }
  return c;
}

double max_relative_error(const std::vector<float>& got, const std::vector<double>& want, index_t m, index_t n,
                          index_t ldc) {
  double scale = 0, err = 0;
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) scale = std::max(scale, std::abs(want[static_cast<std::size_t>(i * ldc + j)]));
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < n; ++j) {
      const double g = got[static_cast<std::size_t>(i * ldc + j)];
      err = std::max(err, std::isfinite(g) ? std::abs(g - want[static_cast<std::size_t>(i * ldc + j)]) : INFINITY);
    }
  return err / std::max(scale, 1e-30);
}

void check_layout(layout l, index_t m, index_t n, index_t k, bool accumulate, gemm_precision precision, double tol) {
  // operand shapes (rows x cols) and padded row strides
  const index_t ar = l == layout::tn ? k : m, ac = l == layout::tn ? m : k;
  const index_t br = l == layout::nt ? n : k, bc = l == layout::nt ? k : n;
  const index_t lda = ac + 3, ldb = bc + 1, ldc = n + 2;
  const auto a = random_values(static_cast<std::size_t>(ar * lda), 1), b = random_values(static_cast<std::size_t>(br * ldb), 2);
  const auto c0 = random_values(static_cast<std::size_t>(m * ldc), 3);
  auto da = device_array<float>::from_host(a), db = device_array<float>::from_host(b);
  device_array<float> dc(c0.size());
  if (accumulate) dc.copy_from_host(c0);
  else dc.poison();  // every element must be written
  cublas_handle h;
  const device_matrix<const float> A(da.data(), ar, ac, lda), B(db.data(), br, bc, ldb);
  const device_matrix<float> C(dc.data(), m, n, ldc);
  if (l == layout::nt) matmul_nt<float>(h, A, B, C, accumulate, precision);
  if (l == layout::nn) matmul_nn<float>(h, A, B, C, accumulate, precision);
  if (l == layout::tn) matmul_tn<float>(h, A, B, C, accumulate, precision);
  const auto got = dc.to_host();
  const auto want = reference(l, a, lda, b, ldb, m, n, k, c0, ldc, accumulate);
  INFO("layout ", static_cast<int>(l), " m ", m, " n ", n, " k ", k, " accumulate ", accumulate);
  CHECK(max_relative_error(got, want, m, n, ldc) < tol);
}

}  // namespace

TEST_CASE("cuda gemm_precision: each name to_string gives reads back, other names are refused") {
  for (const gemm_precision p : {gemm_precision::fp32, gemm_precision::tf32, gemm_precision::bf16, gemm_precision::fp8})
    CHECK(gemm_precision_from_name(to_string(p)) == p);
  CHECK_THROWS_WITH_AS(gemm_precision_from_name("fp16"), doctest::Contains("allowed: fp32, tf32, bf16, fp8"),
                       lmrl::error);
}

TEST_CASE("cuda matmul: nt, nn and tn against a double product, overwrite and accumulate, padded strides") {
  for (layout l : {layout::nt, layout::nn, layout::tn})
    for (auto [m, n, k] : {std::array<index_t, 3>{1, 1, 1}, {7, 5, 3}, {33, 64, 100}, {130, 17, 300}})
      for (bool acc : {false, true}) {
        check_layout(l, m, n, k, acc, gemm_precision::fp32, 1e-5);
        check_layout(l, m, n, k, acc, gemm_precision::tf32, 5e-3);
      }
}

TEST_CASE("cuda matmul: bf16 inputs with float accumulation and output") {
  const index_t m = 40, n = 24, k = 96;
  const auto a = random_values(static_cast<std::size_t>(m * k), 4), b = random_values(static_cast<std::size_t>(n * k), 5);
  std::vector<__nv_bfloat16> a16(a.size()), b16(b.size());
  std::vector<float> a_rounded(a.size()), b_rounded(b.size());
  for (std::size_t i = 0; i < a.size(); ++i) a16[i] = __float2bfloat16(a[i]), a_rounded[i] = __bfloat162float(a16[i]);
  for (std::size_t i = 0; i < b.size(); ++i) b16[i] = __float2bfloat16(b[i]), b_rounded[i] = __bfloat162float(b16[i]);
  auto da = device_array<__nv_bfloat16>::from_host(a16), db = device_array<__nv_bfloat16>::from_host(b16);
  device_array<float> dc(static_cast<std::size_t>(m * n));
  dc.poison();
  cublas_handle h;
  matmul_nt<__nv_bfloat16, float>(h, device_matrix<const __nv_bfloat16>(da.data(), m, k),
                                  device_matrix<const __nv_bfloat16>(db.data(), n, k), device_matrix<float>(dc.data(), m, n));
  // against the product of the rounded inputs: only the accumulation differs
  const auto want = reference(layout::nt, a_rounded, k, b_rounded, k, m, n, k, {}, n, false);
  CHECK(max_relative_error(dc.to_host(), want, m, n, n) < 1e-5);
  // and against the unrounded inputs: the bf16 rounding of the inputs
  CHECK(max_relative_error(dc.to_host(), reference(layout::nt, a, k, b, k, m, n, k, {}, n, false), m, n, n) < 1e-2);
}

TEST_CASE("cuda add_bias and add_column_sums: the Linear layer's bias and its gradient, accumulated") {
  const index_t m = 37, n = 300, ld = 301;
  const auto c = random_values(static_cast<std::size_t>(m * ld), 6), bias = random_values(static_cast<std::size_t>(n), 7);
  const auto grad0 = random_values(static_cast<std::size_t>(n), 8);
  auto dc = device_array<float>::from_host(c), dbias = device_array<float>::from_host(bias);
  auto dgrad = device_array<float>::from_host(grad0);
  add_bias(device_matrix<float>(dc.data(), m, n, ld), dbias.data());
  const auto after = dc.to_host();
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < ld; ++j) {
      const auto e = static_cast<std::size_t>(i * ld + j);
      CHECK(after[e] == (j < n ? c[e] + bias[static_cast<std::size_t>(j)] : c[e]));  // padding untouched
    }
  add_column_sums(device_matrix<const float>(dc.data(), m, n, ld), dgrad.data());
  const auto grad = dgrad.to_host();
  for (index_t j = 0; j < n; ++j) {
    double s = grad0[static_cast<std::size_t>(j)];
    for (index_t i = 0; i < m; ++i) s += after[static_cast<std::size_t>(i * ld + j)];
    CHECK(grad[static_cast<std::size_t>(j)] == doctest::Approx(s).epsilon(1e-6));
  }
}

TEST_CASE("cuda matmul: shapes that do not fit are an lmrl::error before any launch") {
  cublas_handle h;
  float* p = nullptr;
  CHECK_THROWS_WITH_AS(matmul_nt<float>(h, device_matrix<const float>(p, 2, 3), device_matrix<const float>(p, 4, 5),
                                        device_matrix<float>(nullptr, 2, 4)),
                       doctest::Contains("does not fit"), error);
}

namespace {

// x rounded to bf16 and back, on the host (cuda_bf16.h's host path: round to nearest even).
std::vector<float> bf16_rounded(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) r[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
  return r;
}

std::uint16_t bits(__nv_bfloat16 v) {
  std::uint16_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

}  // namespace

TEST_CASE("cuda round_to_bf16: the host's round to nearest even, bit for bit, rows of a strided matrix") {
  const index_t rows = 13, cols = 37, ld = 41;
  auto src = random_values(static_cast<std::size_t>(rows * ld), 20);
  // ties and edges: exactly halfway between two bf16 values (even and odd below), tiny, huge, negative zero, inf
  const float halfway_even = std::bit_cast<float>(0x3F808000u), halfway_odd = std::bit_cast<float>(0x3F818000u);
  const float specials[] = {halfway_even, halfway_odd, -halfway_odd, 1e-40f, 3.0e38f, -0.0f, INFINITY, -1.0f};
  for (std::size_t i = 0; i < std::size(specials); ++i) src[i * 3] = specials[i];
  const auto dsrc = device_array<float>::from_host(src);
  device_array<__nv_bfloat16> dst(static_cast<std::size_t>(rows * cols + 5));
  dst.poison();
  round_to_bf16(device_matrix<const float>(dsrc.data(), rows, cols, ld), dst.data());
  const auto got = dst.to_host();
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) {
      const float x = src[static_cast<std::size_t>(i * ld + j)];
      CAPTURE(x);
      CHECK(bits(got[static_cast<std::size_t>(i * cols + j)]) == bits(__float2bfloat16_rn(x)));
    }
  for (std::size_t e = static_cast<std::size_t>(rows * cols); e < got.size(); ++e) CHECK(bits(got[e]) == 0xFFFF);
  CHECK(bits(__float2bfloat16_rn(halfway_even)) == 0x3F80);  // the tie goes to the even neighbour
  CHECK(bits(__float2bfloat16_rn(halfway_odd)) == 0x3F82);
}

TEST_CASE("cuda linear_products at bf16: the products of the rounded operands, float accumulation") {
  // A parameter buffer with one weight w [n x k] at an offset; activations with row strides wider than rows.
  const index_t m = 29, n = 24, k = 40, offset = 7, ldx = k + 3, ldy = n + 2;
  const std::size_t params_size = static_cast<std::size_t>(offset + n * k + 11);
  auto params = random_values(params_size, 21);
  auto dparams = device_array<float>::from_host(params);
  const std::vector<float> w(params.begin() + offset, params.begin() + offset + n * k);
  const auto x = random_values(static_cast<std::size_t>(m * ldx), 22);
  const auto dy = random_values(static_cast<std::size_t>(m * ldy), 23);
  const auto y0 = random_values(static_cast<std::size_t>(m * ldy), 24);
  auto dx_dev = device_array<float>::from_host(x), dy_dev = device_array<float>::from_host(dy);
  cublas_handle h;
  linear_products products(h, nullptr);
  products.begin(gemm_precision::bf16, dparams.data(), params_size);
  CHECK(products.precision() == gemm_precision::bf16);
  const device_matrix<const float> weight(dparams.data() + offset, n, k);
  const auto xr = bf16_rounded(x), dyr = bf16_rounded(dy), wr = bf16_rounded(w);

  SUBCASE("nt, overwrite and accumulate: y (+)= x . w^T") {
    for (const bool accumulate : {false, true}) {
      CAPTURE(accumulate);
      auto y = device_array<float>::from_host(y0);
      products.nt(device_matrix<const float>(dx_dev.data(), m, k, ldx), weight,
                  device_matrix<float>(y.data(), m, n, ldy), accumulate);
      const auto got = y.to_host();
      CHECK(max_relative_error(got, reference(layout::nt, xr, ldx, wr, k, m, n, k, y0, ldy, accumulate), m, n, ldy) <
            1e-5);
      // and about 1e-2 from the unrounded product: the rounding happened
      const double unrounded =
          max_relative_error(got, reference(layout::nt, x, ldx, w, k, m, n, k, y0, ldy, accumulate), m, n, ldy);
      CHECK(unrounded > 1e-5);
      CHECK(unrounded < 1e-2);
      for (index_t i = 0; i < m; ++i)  // the stride's padding untouched
        for (index_t j = n; j < ldy; ++j) CHECK(got[static_cast<std::size_t>(i * ldy + j)] == y0[static_cast<std::size_t>(i * ldy + j)]);
    }
  }
  SUBCASE("nn: dx = dy . w") {
    device_array<float> out(static_cast<std::size_t>(m * k));
    out.poison();
    products.nn(device_matrix<const float>(dy_dev.data(), m, n, ldy), weight, device_matrix<float>(out.data(), m, k));
    CHECK(max_relative_error(out.to_host(), reference(layout::nn, dyr, ldy, wr, k, m, k, n, {}, k, false), m, k, k) <
          1e-5);
  }
  SUBCASE("tn, accumulating into a float gradient: dw += dy^T . x") {
    const auto g0 = random_values(static_cast<std::size_t>(n * k), 25);
    auto g = device_array<float>::from_host(g0);
    products.tn(device_matrix<const float>(dy_dev.data(), m, n, ldy), device_matrix<const float>(dx_dev.data(), m, k, ldx),
                device_matrix<float>(g.data(), n, k), true);
    CHECK(max_relative_error(g.to_host(), reference(layout::tn, dyr, ldy, xr, ldx, n, k, m, g0, k, true), n, k, k) <
          1e-5);
  }
  SUBCASE("begin again after the parameters change: the new weights") {
    for (auto& v : params) v = -2.0f * v + 0.5f;
    dparams.copy_from_host(params);
    products.begin(gemm_precision::bf16, dparams.data(), params_size);
    const std::vector<float> w2(params.begin() + offset, params.begin() + offset + n * k);
    device_array<float> out(static_cast<std::size_t>(m * n));
    out.poison();
    products.nt(device_matrix<const float>(dx_dev.data(), m, k, ldx), weight, device_matrix<float>(out.data(), m, n));
    CHECK(max_relative_error(out.to_host(), reference(layout::nt, xr, ldx, bf16_rounded(w2), k, m, n, k, {}, n, false),
                             m, n, n) < 1e-5);
  }
  SUBCASE("given a weights version, begin() rounds the buffer again only when the version, buffer or precision move") {
    products.begin(gemm_precision::bf16, dparams.data(), params_size, {}, 7);
    const std::uint64_t rounded = products.weight_roundings();
    products.begin(gemm_precision::bf16, dparams.data(), params_size, {}, 7);
    CHECK(products.weight_roundings() == rounded);  // the copy stands
    // Changed behind the version's back: the products still use the copy the version vouched for.
    for (auto& v : params) v = -2.0f * v + 0.5f;
    dparams.copy_from_host(params);
    const std::vector<float> w2(params.begin() + offset, params.begin() + offset + n * k);
    device_array<float> out(static_cast<std::size_t>(m * n));
    const auto product = [&] {
      out.poison();
      products.nt(device_matrix<const float>(dx_dev.data(), m, k, ldx), weight, device_matrix<float>(out.data(), m, n));
      return out.to_host();
    };
    products.begin(gemm_precision::bf16, dparams.data(), params_size, {}, 7);
    CHECK(max_relative_error(product(), reference(layout::nt, xr, ldx, wr, k, m, n, k, {}, n, false), m, n, n) < 1e-5);
    products.begin(gemm_precision::bf16, dparams.data(), params_size, {}, 8);  // a new version: the new weights
    CHECK(products.weight_roundings() == rounded + 1);
    const auto w2r = bf16_rounded(w2);
    CHECK(max_relative_error(product(), reference(layout::nt, xr, ldx, w2r, k, m, n, k, {}, n, false), m, n, n) < 1e-5);
    products.begin(gemm_precision::fp32, dparams.data(), params_size, {}, 8);  // another precision in between
    products.begin(gemm_precision::bf16, dparams.data(), params_size, {}, 8);
    products.begin(gemm_precision::bf16, dparams.data(), params_size - 1, {}, 8);  // another buffer
    products.begin(gemm_precision::bf16, dparams.data(), params_size);           // no version: always
    CHECK(products.weight_roundings() == rounded + 4);
  }
  SUBCASE("an operand rounded once feeds several products with the one-shot products' bits; stale ones refused") {
    const device_matrix<const float> X(dx_dev.data(), m, k, ldx), DY(dy_dev.data(), m, n, ldy);
    const linear_operand xo = products.operand(1, X), dyo = products.operand(0, DY);
    CHECK(products.workspace_bytes() >= static_cast<std::size_t>(params_size + m * k + m * n) * 2);
    device_array<float> a(static_cast<std::size_t>(m * n)), b(static_cast<std::size_t>(m * n)),
        c(static_cast<std::size_t>(m * k)), e(static_cast<std::size_t>(m * k)), f(static_cast<std::size_t>(n * k)),
        g(static_cast<std::size_t>(n * k));
    for (auto* out : {&a, &b, &c, &e, &f, &g}) out->poison();
    products.nt(xo, weight, device_matrix<float>(a.data(), m, n));
    products.nn(dyo, weight, device_matrix<float>(c.data(), m, k));
    products.tn(dyo, xo, device_matrix<float>(f.data(), n, k));
    products.nt(xo, weight, device_matrix<float>(b.data(), m, n));  // the same operands again
    CHECK(a.to_host() == b.to_host());
    products.nn(DY, weight, device_matrix<float>(e.data(), m, k));  // one-shot: rounds into slot 0 again
    products.tn(DY, X, device_matrix<float>(g.data(), n, k));
    CHECK(c.to_host() == e.to_host());
    CHECK(f.to_host() == g.to_host());
    // The one-shot products reused both slots: the operands made before are stale, and so is any after begin().
    CHECK_THROWS_WITH_AS(products.nt(xo, weight, device_matrix<float>(a.data(), m, n)),
                         doctest::Contains("operand is stale"), error);
    CHECK_THROWS_WITH_AS(products.nn(dyo, weight, device_matrix<float>(c.data(), m, k)),
                         doctest::Contains("operand is stale"), error);
    const linear_operand fresh = products.operand(0, X);
    products.begin(gemm_precision::bf16, dparams.data(), params_size);
    CHECK_THROWS_WITH_AS(products.nt(fresh, weight, device_matrix<float>(a.data(), m, n)),
                         doctest::Contains("operand is stale"), error);
    // An fp32 operand (not rounded) at bf16 is refused too; slot 2 does not exist.
    products.begin(gemm_precision::fp32, dparams.data(), params_size);
    const linear_operand plain = products.operand(0, X);
    CHECK(plain.slot == -1);
    products.begin(gemm_precision::bf16, dparams.data(), params_size);
    CHECK_THROWS_WITH_AS(products.nt(plain, weight, device_matrix<float>(a.data(), m, n)),
                         doctest::Contains("made at another precision"), error);
    CHECK_THROWS_WITH_AS(products.operand(2, X), doctest::Contains("slot 2"), error);
  }
  SUBCASE("a weight outside the parameter buffer is refused") {
    const auto outside = device_array<float>::from_host(w);
    device_array<float> out(static_cast<std::size_t>(m * n));
    CHECK_THROWS_WITH_AS(products.nt(device_matrix<const float>(dx_dev.data(), m, k, ldx),
                                     device_matrix<const float>(outside.data(), n, k),
                                     device_matrix<float>(out.data(), m, n)),
                         doctest::Contains("must lie inside the parameter buffer"), error);
    // one element past the end
    CHECK_THROWS_WITH_AS(products.nn(device_matrix<const float>(dy_dev.data(), m, n, ldy),
                                     device_matrix<const float>(dparams.data() + params_size - n * k + 1, n, k),
                                     device_matrix<float>(out.data(), m, k)),
                         doctest::Contains("must lie inside the parameter buffer"), error);
  }
}

TEST_CASE("cuda linear_products at fp32 and tf32: matmul's own results, bit for bit") {
  const index_t m = 17, n = 12, k = 33;
  const auto params = random_values(static_cast<std::size_t>(n * k), 26), x = random_values(static_cast<std::size_t>(m * k), 27);
  const auto dparams = device_array<float>::from_host(params), dx = device_array<float>::from_host(x);
  cublas_handle h;
  linear_products products(h, nullptr);
  for (const gemm_precision p : {gemm_precision::fp32, gemm_precision::tf32}) {
    CAPTURE(to_string(p));
    products.begin(p, dparams.data(), params.size());
    CHECK(products.workspace_bytes() == 0);  // nothing rounded, nothing held
    device_array<float> a(static_cast<std::size_t>(m * n)), b(static_cast<std::size_t>(m * n));
    a.poison(), b.poison();
    products.nt(device_matrix<const float>(dx.data(), m, k), device_matrix<const float>(dparams.data(), n, k),
                device_matrix<float>(a.data(), m, n));
    matmul_nt<float>(h, device_matrix<const float>(dx.data(), m, k), device_matrix<const float>(dparams.data(), n, k),
                     device_matrix<float>(b.data(), m, n), false, p);
    CHECK(a.to_host() == b.to_host());
  }
}

TEST_CASE("cuda matmul and linear_products refusals: float inputs at bf16 or fp8, no handle") {
  cublas_handle h;
  device_array<float> a(6), b(6), c(4);
  CHECK_THROWS_WITH_AS(matmul_nt<float>(h, device_matrix<const float>(a.data(), 2, 3),
                                        device_matrix<const float>(b.data(), 2, 3), device_matrix<float>(c.data(), 2, 2),
                                        false, gemm_precision::bf16),
                       doctest::Contains("float inputs at bf16 precision: round them"), error);
  CHECK_THROWS_WITH_AS(matmul_nt<float>(h, device_matrix<const float>(a.data(), 2, 3),
                                        device_matrix<const float>(b.data(), 2, 3), device_matrix<float>(c.data(), 2, 2),
                                        false, gemm_precision::fp8),
                       doctest::Contains("float inputs at fp8 precision"), error);
  linear_products unbound;
  CHECK_THROWS_WITH_AS(unbound.begin(gemm_precision::fp32, a.data(), a.size()), doctest::Contains("no cuBLAS handle"),
                       error);
}

TEST_CASE("cuda int_matmul_transposed: every integer format gives the CPU's integer product bit for bit") {
  struct shape {
    index_t rows, cols, n;
  };
  // cols: whole blocks, a short last block of 32, rows of 256-value blocks padded (q4_k, tq2_0: 80 -> 256, 300 ->
  // 512); rows not a multiple of the warp's 4; n over a warp's 4 activation rows and with a partial last tile.
  for (const shape sh : {shape{9, 64, 1}, shape{13, 80, 6}, shape{5, 300, 17}}) {
    CAPTURE(sh.rows);
    CAPTURE(sh.cols);
    CAPTURE(sh.n);
    const auto x = lmrl::testing::random_values<float>(sh.n * sh.cols, 61 + sh.cols, -3, 3);
    const auto x_dev = device_array<float>::from_host(x);
    // The activations' blocks: the CPU's bytes.
    q8_0_rows xq;
    quantize_rows_q8_0(matrix_view<const float>(x.data(), {sh.n, sh.cols}), xq);
    device_array<std::uint8_t> xq_dev(xq.bytes().size());
    xq_dev.poison();
    lmrl::cuda::quantize_rows<q8_0>(x_dev.data(), sh.n, sh.cols, xq_dev.data());
    const std::vector<std::uint8_t> xq_bytes(xq.bytes().begin(), xq.bytes().end());
    REQUIRE(xq_dev.to_host() == xq_bytes);
    for (const integer_format format : {integer_format::q8_0, integer_format::q4_0, integer_format::int8,
                                        integer_format::q4_k, integer_format::tq2_0, integer_format::tq2_0_absmean}) {
      CAPTURE(integer_format_name(format));
      // Two matrices packed together: the second's offset (and int8's scales after its codes) in use.
      const auto w0 = lmrl::testing::random_values<float>(3 * sh.cols, 70, -1, 1);
      const auto w = lmrl::testing::random_values<float>(sh.rows * sh.cols, 71 + sh.rows, -1, 1);
      const integer_linear m0(format, matrix_view<const float>(w0.data(), {3, sh.cols}));
      const integer_linear m(format, matrix_view<const float>(w.data(), {sh.rows, sh.cols}));
      lmrl::cuda::packed_integer_weights packed;
      CHECK(packed.add(m0) == 0);
      CHECK(packed.add(m) == 1);
      packed.upload(nullptr);
      CHECK(packed.bytes() >= m0.bytes() + m.bytes());
      const auto y0 = lmrl::testing::random_values<float>(sh.n * sh.rows, 72, -2, 2);
      for (const bool accumulate : {false, true}) {
        CAPTURE(accumulate);
        std::vector<float> expected = y0;
        m.multiply(xq, matrix_view<float>(expected.data(), {sh.n, sh.rows}), accumulate);
        auto y = device_array<float>::from_host(y0);
        if (!accumulate) y.poison();  // every output written
        lmrl::cuda::int_matmul_transposed(xq_dev.data(), packed[1], {y.data(), sh.n, sh.rows}, accumulate);
        CHECK(y.to_host() == expected);  // bit for bit
        CHECK(expected != y0);
      }
      // Rows of y wider than the product (ld): the columns past it untouched.
      const index_t ld = sh.rows + 3;
      std::vector<float> wide(static_cast<std::size_t>(sh.n * ld), 7.0f), expected = wide;
      m.multiply(xq, matrix_view<float>(expected.data(), {sh.n, sh.rows}, {ld, 1}), true);
      auto y = device_array<float>::from_host(wide);
      lmrl::cuda::int_matmul_transposed(xq_dev.data(), packed[1], {y.data(), sh.n, sh.rows, ld}, true);
      CHECK(y.to_host() == expected);
    }
  }
  // Refusals.
  const auto w = lmrl::testing::random_values<float>(4 * 32, 73);
  CHECK_THROWS_WITH_AS(lmrl::cuda::packed_integer_weights{}.add_on_device(integer_format::q4_k, {nullptr, 4, 32}),
                       doctest::Contains("quantized on the host"), error);
  lmrl::cuda::packed_integer_weights packed;
  packed.add(integer_linear(integer_format::int8, matrix_view<const float>(w.data(), {4, 32})));
  CHECK_THROWS_WITH_AS(packed[0], doctest::Contains("not uploaded"), error);
  packed.upload(nullptr);
  device_array<std::uint8_t> xq(34);
  device_array<float> y(8);
  CHECK_THROWS_WITH_AS(lmrl::cuda::int_matmul_transposed(xq.data(), packed[0], {y.data(), 2, 3}),
                       doctest::Contains("the matrix has 4 rows"), error);
  auto unscaled = packed[0];
  unscaled.row_scales = nullptr;
  CHECK_THROWS_WITH_AS(lmrl::cuda::int_matmul_transposed(xq.data(), unscaled, {y.data(), 2, 4}),
                       doctest::Contains("row scales"), error);
}

template <class T>
std::vector<T> copy_to_host(const T* device, std::size_t n) {
  std::vector<T> out(n);
  LMRL_CUDA_CHECK(cudaMemcpy(out.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost));
  return out;
}

TEST_CASE("cuda packed_integer_weights::add_on_device: every format but q4_k quantized on the device, the host's bytes") {
  for (const integer_format format : {integer_format::q8_0, integer_format::q4_0, integer_format::int8,
                                      integer_format::tq2_0, integer_format::tq2_0_absmean}) {
    CAPTURE(integer_format_name(format));
    lmrl::cuda::packed_integer_weights packed;
    std::vector<integer_linear> host, int8;
    std::vector<device_array<float>> device;
    // Whole blocks and short ones (tq2_0: rows of 64, 80 and 300 padded to 256 and 512), each followed by a
    // host-quantized int8 matrix (codes, then scales).
    for (const index_t cols : {64, 80, 300}) {
      auto w = lmrl::testing::random_values<float>(7 * cols, 80 + cols, -2, 2);
      std::fill_n(w.begin() + cols, cols, 0.0f);  // row 1: zeros (scale 0)
      // row 2 (int8): subnormals, whose 1 / s overflows, so int8_rows divides. (The block formats follow
      // ggml there: x times an infinite 1 / d, whose conversion to int the C++ leaves undefined.)
      if (format == integer_format::int8)
        for (index_t c = 0; c < cols; ++c) w[static_cast<std::size_t>(2 * cols + c)] = static_cast<float>(c % 7 - 3) * 1e-40f;
      host.emplace_back(format, matrix_view<const float>(w.data(), {7, cols}));
      int8.emplace_back(integer_format::int8, matrix_view<const float>(w.data(), {7, cols}));
      device.push_back(device_array<float>::from_host(w));
      CHECK(packed.add_on_device(format, {device.back().data(), 7, cols}) == 2 * host.size() - 2);
      CHECK(packed.add(int8.back()) == 2 * host.size() - 1);
    }
    packed.upload(nullptr);
    const auto bytes_of = [](const auto& rows) {
      return std::vector<std::uint8_t>(rows.data, rows.data + rows.stride * 7);
    };
    const auto scales_of = [](const auto& rows) { return std::vector<float>(rows.row_scales, rows.row_scales + 7); };
    for (std::size_t i = 0; i < host.size(); ++i) {
      const lmrl::cuda::device_integer_matrix m = packed[2 * i], m8 = packed[2 * i + 1];
      const auto rows = host[i].kernel_rows(), rows8 = int8[i].kernel_rows();
      REQUIRE(m.stride == rows.stride);
      CHECK(m.format == format);
      CHECK(copy_to_host(m.data, m.stride * 7) == bytes_of(rows));
      REQUIRE((m.row_scales != nullptr) == (format == integer_format::int8));
      if (m.row_scales != nullptr) CHECK(copy_to_host(m.row_scales, 7) == scales_of(rows));
      REQUIRE(m8.row_scales != nullptr);
      CHECK(copy_to_host(m8.data, m8.stride * 7) == bytes_of(rows8));
      CHECK(copy_to_host(m8.row_scales, 7) == scales_of(rows8));
    }
  }
  // A non-finite weight: int8's row gets a NaN scale (the host refuses the matrix).
  auto w = lmrl::testing::random_values<float>(2 * 40, 90);
  w[45] = std::numeric_limits<float>::infinity();
  const auto w_dev = device_array<float>::from_host(w);
  lmrl::cuda::packed_integer_weights packed;
  packed.add_on_device(integer_format::int8, {w_dev.data(), 2, 40});
  packed.upload(nullptr);
  const auto scales = copy_to_host(packed[0].row_scales, 2);
  CHECK(scales[0] > 0);
  CHECK(std::isnan(scales[1]));
}
