// The float dot product under the quantized products, vectorized with xsimd
// (SSE/AVX2/AVX-512, whichever the build targets: -march=native gets the
// widest) when xsimd is installed, a plain loop otherwise. dot_reference is the
// plain loop, kept for the tests. The vector version sums in another order, so
// the two agree to float rounding, not bit for bit.
#pragma once

#include <cstddef>

#if __has_include(<xsimd/xsimd.hpp>)
#include <xsimd/xsimd.hpp>
#define LMRL_QUANT_HAS_XSIMD 1
#else
#define LMRL_QUANT_HAS_XSIMD 0
#endif

namespace lmrl {

inline float dot_reference(const float* a, const float* b, std::size_t n) {
  float s = 0;
  for (std::size_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline float dot(const float* a, const float* b, std::size_t n) {
#if LMRL_QUANT_HAS_XSIMD
  using batch = xsimd::batch<float>;
  constexpr std::size_t width = batch::size;
  batch acc0(0.0f), acc1(0.0f);  // two accumulators hide the FMA latency
  std::size_t i = 0;
  for (; i + 2 * width <= n; i += 2 * width) {
    acc0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), acc0);
    acc1 = xsimd::fma(batch::load_unaligned(a + i + width), batch::load_unaligned(b + i + width), acc1);
  }
  for (; i + width <= n; i += width) acc0 = xsimd::fma(batch::load_unaligned(a + i), batch::load_unaligned(b + i), acc0);
  float s = xsimd::hadd(acc0 + acc1);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
#else
  return dot_reference(a, b, n);
#endif
}

}  // namespace lmrl
