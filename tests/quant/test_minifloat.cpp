// FP8 E4M3 / E5M2 and binary16 (lmrl/quant/minifloat.hpp): every FP8 code and
// every rounding boundary against ml_dtypes, float16 against numpy, and the
// saturating mode by hand.
#include "lmrl/quant/minifloat.hpp"

#include <bit>
#include <cmath>
#include <limits>

#include "doctest/doctest.h"
#include "quant/quant_reference.hpp"

using namespace lmrl;

TEST_CASE("minifloat: the formats' constants") {
  CHECK(fp8_e4m3::max_value() == 448.0);
  CHECK(fp8_e5m2::max_value() == 57344.0);
  CHECK(binary16::max_value() == 65504.0);
  CHECK(fp8_e4m3::decode(1) == std::ldexp(1.0f, -9));  // smallest subnormals
  CHECK(fp8_e5m2::decode(1) == std::ldexp(1.0f, -16));
  CHECK(binary16::decode(1) == std::ldexp(1.0f, -24));
  CHECK(fp8_e4m3::decode(0x38) == 1.0f);
  CHECK(fp8_e5m2::decode(0x3c) == 1.0f);
  CHECK(std::isnan(fp8_e4m3::decode(0x7f)));
  CHECK(std::isnan(fp8_e4m3::decode(0xff)));
  CHECK(fp8_e4m3::decode(0x7e) == 448.0f);  // S.1111.110 is a number in E4M3, not infinity
  CHECK(fp8_e5m2::decode(0x7c) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(fp8_e5m2::decode(0x7d)));
}

TEST_CASE("minifloat: all 256 codes of E4M3 and E5M2 decode as ml_dtypes decodes them") {
  for (const char* name : {"fp8_e4m3_decode", "fp8_e5m2_decode"}) {
    const auto expected = quant_reference::floats(name);
    REQUIRE(expected.size() == 256);
    for (std::uint32_t code = 0; code < 256; ++code) {
      const float got = name[5] == '4' ? fp8_e4m3::decode(code) : fp8_e5m2::decode(code);
      INFO(name, " code ", code);
      if (std::isnan(expected[code])) {
        CHECK(std::isnan(got));
      } else {
        CHECK(std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(expected[code]));  // -0 too
      }
    }
  }
}

TEST_CASE("minifloat: encoding rounds as ml_dtypes does at every boundary (ties to even, overflow::ieee)") {
  const auto inputs = quant_reference::floats("fp8_inputs");
  const auto e4 = quant_reference::bits("fp8_e4m3_encode"), e5 = quant_reference::bits("fp8_e5m2_encode");
  REQUIRE(inputs.size() == e4.size());
  REQUIRE(inputs.size() == e5.size());
  REQUIRE(inputs.size() > 1000);
  int mismatches = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::uint32_t a = fp8_e4m3::encode(inputs[i], overflow::ieee), b = fp8_e5m2::encode(inputs[i], overflow::ieee);
    // A NaN input keeps its sign bit here; the reference's NaN is positive
    if (std::isnan(inputs[i])) {
      CHECK(std::isnan(fp8_e4m3::decode(a)));
      CHECK(std::isnan(fp8_e5m2::decode(b)));
      continue;
    }
    if (a != e4[i] || b != e5[i]) {
      ++mismatches;
      INFO("input ", inputs[i], " (bits ", std::bit_cast<std::uint32_t>(inputs[i]), "): e4m3 ", a, " vs ", e4[i],
           ", e5m2 ", b, " vs ", e5[i]);
      CHECK(false);
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("minifloat: float16 rounding equals numpy's astype(float16)") {
  const auto inputs = quant_reference::floats("fp16_inputs");
  const auto expected = quant_reference::bits("fp16_encode");
  REQUIRE(inputs.size() == expected.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    INFO("input ", inputs[i]);
    if (std::isnan(inputs[i]))
      CHECK(std::isnan(half_to_float(float_to_half(inputs[i]))));
    else
      CHECK(float_to_half(inputs[i]) == expected[i]);
  }
}

TEST_CASE("minifloat: saturation clamps finite overflow and infinities to +-max, NaN stays NaN") {
  CHECK(fp8_e4m3::encode(448.0f) == 0x7e);
  CHECK(fp8_e4m3::encode(464.0f) == 0x7e);  // the tie between 448 and (absent) 480 goes to even, 448, in both modes
  CHECK(fp8_e4m3::encode(464.0f, overflow::ieee) == 0x7e);
  CHECK(fp8_e4m3::encode(464.1f) == 0x7e);
  CHECK(fp8_e4m3::encode(464.1f, overflow::ieee) == 0x7f);  // NaN: E4M3 has no infinity
  CHECK(fp8_e4m3::encode(-1e30f) == 0xfe);
  CHECK(fp8_e4m3::encode(std::numeric_limits<float>::infinity()) == 0x7e);
  CHECK(fp8_e5m2::encode(61439.0f) == 0x7b);  // below the midpoint to 65536: the max, 57344
  CHECK(fp8_e5m2::encode(61440.0f) == 0x7b);  // saturate
  CHECK(fp8_e5m2::encode(61440.0f, overflow::ieee) == 0x7c);  // tie to even: infinity
  CHECK(fp8_e5m2::encode(-std::numeric_limits<float>::infinity()) == 0xfb);
  CHECK(fp8_e5m2::encode(-std::numeric_limits<float>::infinity(), overflow::ieee) == 0xfc);
  CHECK(std::isnan(fp8_e4m3::round(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(fp8_e5m2::round(std::numeric_limits<float>::quiet_NaN())));
  // below half the smallest subnormal: signed zero; at exactly half: ties to even (zero); above: the subnormal
  CHECK(fp8_e4m3::encode(std::ldexp(1.0f, -11)) == 0x00);
  CHECK(fp8_e4m3::encode(-std::ldexp(1.0f, -10)) == 0x80);
  CHECK(fp8_e4m3::encode(std::nextafter(std::ldexp(1.0f, -10), 1.0f)) == 0x01);
  CHECK(fp8_e4m3::encode(3 * std::ldexp(1.0f, -10)) == 0x02);  // 1.5 x 2^-9: tie, to the even code 2
}

TEST_CASE("minifloat: round() is idempotent and within half a unit in the last place") {
  for (float x = -500; x <= 500; x += 0.37f) {
    const float r = fp8_e4m3::round(x);
    CHECK(fp8_e4m3::round(r) == r);
    if (std::fabs(x) >= 0.015625f && std::fabs(x) <= 448)  // normal range: relative error <= 2^-4
      CHECK(std::fabs(r - x) <= std::ldexp(std::fabs(x), -4));
  }
}
