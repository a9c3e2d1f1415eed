// exp(x) for x <= 0 without branches or library calls, so that loops over a
// vocabulary vectorize: x = n ln 2 + r with |r| <= ln 2 / 2, exp(r) by a
// polynomial (float: Cephes' degree 5, ~2 ulp; double: Taylor to r^13,
// remainder < 1e-17), 2^n put into the exponent bits. The fused log-prob, the
// samplers and attention's softmax all use these.
#pragma once

#include <bit>
#include <cstdint>

namespace lmrl::detail {

// exp(x) for x <= 0 without branches or library calls, so loops over it
// vectorize. Arguments below the clamp give a tiny normal number instead of a
// denormal or 0 (next to the row's max term, which is 1, they do not count).
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;  // round(x / ln 2)
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;  // x - n ln 2 in two steps (Cephes)
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t k = std::bit_cast<std::int32_t>(t) - std::bit_cast<std::int32_t>(magic);  // n as an integer
  return p * std::bit_cast<float>((k + 127) << 23);
}

inline double exp_nonpositive(double x) {
  x = x < -708.0 ? -708.0 : x;
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.4426950408889634 + magic;
  const double n = t - magic;
  double r = x - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;  // |r| <= ln2 / 2
  // Taylor series to r^13 / 13!: the remainder is below 1e-17 on |r| <= 0.347.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  const std::int64_t k = std::bit_cast<std::int64_t>(t) - std::bit_cast<std::int64_t>(magic);
  return p * std::bit_cast<double>((k + 1023) << 52);
}

// As exp_nonpositive(double), but exactly 0 below -708 (and at -inf), so that
// masked tokens weigh nothing in a sampler's distribution.
inline double exp_nonpositive_or_zero(double x) {
  const bool underflow = x < -708.0;
  const double e = exp_nonpositive(underflow ? -708.0 : x);
  return underflow ? 0.0 : e;
}

}  // namespace lmrl::detail
