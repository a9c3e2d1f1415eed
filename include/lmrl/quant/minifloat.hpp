// Small binary floating-point formats: FP8 E4M3 and E5M2 (OCP FP8, as
// DeepSeek-V3 trains in), and IEEE binary16 (the scales of ggml's blocks).
//
// A format has 1 sign bit, E exponent bits with bias 2^(E-1) - 1 and M
// mantissa bits. An exponent field of 0 is subnormal: value = m * 2^(1-bias-M).
//
//   E4M3 ("e4m3fn")  bias 7,  no infinities, NaN = S.1111.111, max 448,   min subnormal 2^-9
//   E5M2             bias 15, +-inf = S.11111.00, NaN = S.11111.{01,10,11}, max 57344, min subnormal 2^-16
//   binary16         bias 15, IEEE,             max 65504, min subnormal 2^-24
//
// encode() rounds to nearest, ties to even, as ml_dtypes, PyTorch and numpy
// do. What happens past the largest finite value is a choice:
//   overflow::saturate  finite overflow and +-inf give +-max (NVIDIA's
//                       cvt.satfinite, Transformer Engine; what FP8
//                       training wants: a scale slightly off never makes a NaN)
//   overflow::ieee      the format's infinity, or NaN for E4M3, which has none
//                       (ml_dtypes' and PyTorch's casts: the reference vectors)
// NaN stays NaN in both. tests/quant/test_minifloat.cpp checks all 256 FP8
// codes and every rounding boundary against ml_dtypes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace lmrl {

enum class overflow { saturate, ieee };

template <int ExponentBits, int MantissaBits, bool HasInfinity>
struct minifloat_format {
  static_assert(ExponentBits >= 2 && MantissaBits >= 1 && 1 + ExponentBits + MantissaBits <= 16);
  static constexpr int exponent_bits = ExponentBits;
  static constexpr int mantissa_bits = MantissaBits;
  static constexpr bool has_infinity = HasInfinity;
  static constexpr int bits = 1 + ExponentBits + MantissaBits;
  static constexpr int bias = (1 << (ExponentBits - 1)) - 1;
  static constexpr int min_exponent = 1 - bias;  // of the normal numbers
  static constexpr std::uint32_t exponent_ones = (1u << ExponentBits) - 1;
  static constexpr std::uint32_t mantissa_ones = (1u << MantissaBits) - 1;
  static constexpr std::uint32_t sign_bit = 1u << (ExponentBits + MantissaBits);
  // With infinities the all-ones exponent is reserved (IEEE); without, only all-ones bits are NaN.
  static constexpr std::uint32_t max_code =
      HasInfinity ? ((exponent_ones - 1) << MantissaBits) | mantissa_ones : (exponent_ones << MantissaBits) | (mantissa_ones - 1);
  static constexpr std::uint32_t infinity_code = exponent_ones << MantissaBits;  // only with HasInfinity
  static constexpr std::uint32_t nan_code =
      HasInfinity ? (exponent_ones << MantissaBits) | (1u << (MantissaBits - 1)) : (exponent_ones << MantissaBits) | mantissa_ones;

  // The value of a code (NaN codes give a quiet NaN of the code's sign).
  static float decode(std::uint32_t code) {
    const bool negative = (code & sign_bit) != 0;
    const std::uint32_t e = (code >> MantissaBits) & exponent_ones, m = code & mantissa_ones;
    float value;
    if (HasInfinity && e == exponent_ones)
      value = m == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    else if (!HasInfinity && e == exponent_ones && m == mantissa_ones)
      value = std::numeric_limits<float>::quiet_NaN();
    else if (e == 0)
      value = std::ldexp(static_cast<float>(m), min_exponent - MantissaBits);
    else
      value = std::ldexp(static_cast<float>(m | (1u << MantissaBits)), static_cast<int>(e) - bias - MantissaBits);
    return negative ? -value : value;
  }

  static double max_value() {
    static const double value = decode(max_code);  // once: encode() compares against it for every value
    return value;
  }

  // The code nearest to x (ties to even); past max_value, as `mode` says.
  static std::uint32_t encode(float x, overflow mode = overflow::saturate) {
    const std::uint32_t sign = std::signbit(x) ? sign_bit : 0u;
    if (std::isnan(x)) return sign | nan_code;
    const double a = std::fabs(static_cast<double>(x));
    const auto too_large = [&] {
      if (mode == overflow::saturate) return sign | max_code;
      return sign | (HasInfinity ? infinity_code : nan_code);
    };
    if (std::isinf(a)) return too_large();
    if (a == 0) return sign;
    // Round on the grid of x's binade (the subnormal spacing below the normal
    // range); a / quantum is exact in double, nearbyint rounds ties to even.
    int e = 0;
    std::frexp(a, &e);  // a = f 2^e, f in [0.5, 1)
    const int exponent = std::max(e - 1, min_exponent);
    const double quantum = std::ldexp(1.0, exponent - MantissaBits);
    const double r = std::nearbyint(a / quantum) * quantum;
    if (r > max_value()) return too_large();
    if (r == 0) return sign;
    std::frexp(r, &e);  // r may have rounded up into the next binade
    if (e - 1 < min_exponent)
      return sign | static_cast<std::uint32_t>(std::ldexp(r, MantissaBits - min_exponent));  // subnormal
    const auto field = static_cast<std::uint32_t>(e - 1 + bias);
    const auto mantissa = static_cast<std::uint32_t>(std::ldexp(r, MantissaBits - (e - 1))) - (1u << MantissaBits);
    return sign | (field << MantissaBits) | mantissa;
  }

  // x rounded to the format and back.
  static float round(float x, overflow mode = overflow::saturate) { return decode(encode(x, mode)); }
};

using fp8_e4m3 = minifloat_format<4, 3, false>;
using fp8_e5m2 = minifloat_format<5, 2, true>;
using binary16 = minifloat_format<5, 10, true>;

// float <-> IEEE half bits, rounding to nearest even (numpy's astype(float16)).
inline std::uint16_t float_to_half(float x) { return static_cast<std::uint16_t>(binary16::encode(x, overflow::ieee)); }
inline float half_to_float(std::uint16_t h) { return binary16::decode(h); }

}  // namespace lmrl
