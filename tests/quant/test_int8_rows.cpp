// int8_rows (lmrl/quant/int8_rows.hpp): per-row scales max|w| / 127, codes
// rounded half to even from w times the float inverse of the scale (torch's
// quantize_per_channel; hand-computed cases, torch itself is not a test
// dependency), zero rows, padding, dequantization, codes and scales from
// elsewhere, bad input, and the same bytes (and the error of the lowest row)
// whatever the number of threads.
#include "lmrl/quant/int8_rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "support/threads.hpp"

using namespace lmrl;

TEST_CASE("int8_rows: scale max|w| / 127 per row, codes round half to even as torch.quantize_per_channel") {
  // row 0: max 127 -> s = 1, so the codes are w rounded; ties go to the even code (ggml's Q8_0 would go away from 0)
  // row 1: max 254 -> s = 2, inverse 0.5 exactly
  // row 2: all zero -> scale 0, codes 0
  const std::vector<float> w = {127, 2.5f, -2.5f, 0.5f, 1.5f, -0.5f, 3.5f, -127,  //
                                254, 5,    7,     -5,   1,    -3,    253,  -254,  //
                                0,   0,    0,     0,    0,    0,     0,    0};
  const int8_rows q(matrix_view<const float>(w.data(), {3, 8}));
  REQUIRE(q.rows() == 3);
  REQUIRE(q.cols() == 8);
  CHECK(q.padded_cols() == 32);
  CHECK(q.scales()[0] == 1.0f);
  CHECK(q.scales()[1] == 2.0f);
  CHECK(q.scales()[2] == 0.0f);
  const std::vector<int> row0 = {127, 2, -2, 0, 2, 0, 4, -127}, row1 = {127, 2, 4, -2, 0, -2, 126, -127};
  for (index_t c = 0; c < 8; ++c) {
    CHECK(q.row_codes(0)[c] == row0[static_cast<std::size_t>(c)]);
    CHECK(q.row_codes(1)[c] == row1[static_cast<std::size_t>(c)]);
    CHECK(q.row_codes(2)[c] == 0);
  }
  for (index_t r = 0; r < 3; ++r)
    for (index_t c = 8; c < 32; ++c) CHECK(q.row_codes(r)[c] == 0);  // the padding
  CHECK(q.codes().size() == 3 * 32);
  CHECK(q.size_bytes() == 3 * 32 + 3 * 4);
}

TEST_CASE("int8_rows: w times the float inverse of the scale, as torch's quantize_val, not w / s") {
  // s = max / 127 = 0x1.add954p-8, 1 / s = 0x1.30ecfcp+7 (float). For these two weights the product and the
  // quotient fall on different sides of a rounding point:
  //   0x1.92fbbep-5 * (1/s) = 7.4999995 -> 7,   0x1.92fbbep-5 / s = 7.5 -> 8
  //   0x1.1a16ap-4  * (1/s) = 10.5 -> 10 (even), 0x1.1a16ap-4 / s = 10.500001 -> 11
  const float amax = 0x1.aa7da2p-1f;
  const std::vector<float> w = {amax, 0x1.92fbbep-5f, 0x1.1a16ap-4f, -0x1.92fbbep-5f};
  const int8_rows q(matrix_view<const float>(w.data(), {1, 4}));
  CHECK(q.scales()[0] == 0x1.add954p-8f);
  CHECK(q.row_codes(0)[0] == 127);
  CHECK(q.row_codes(0)[1] == 7);
  CHECK(q.row_codes(0)[2] == 10);
  CHECK(q.row_codes(0)[3] == -7);
}

TEST_CASE("int8_rows: dequantized values are within half a step of w, and any strides quantize the same") {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const index_t rows = 5, cols = 70;
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& v : w) v = normal(gen);
  const int8_rows q(matrix_view<const float>(w.data(), {rows, cols}));
  CHECK(q.padded_cols() == 96);
  std::vector<float> back(w.size());
  q.dequantize_to(matrix_view<float>(back.data(), {rows, cols}));
  for (index_t r = 0; r < rows; ++r) {
    const float s = q.scales()[static_cast<std::size_t>(r)];
    for (index_t c = 0; c < cols; ++c) {
      const auto k = static_cast<std::size_t>(r * cols + c);
      CHECK(back[k] == static_cast<float>(q.row_codes(r)[c]) * s);
      // half a step, plus the rounding of 1 / s and of w (1 / s): |w / s| <= 127 codes times 2^-23
      CHECK(std::fabs(back[k] - w[k]) <= s * (0.5f + 0x1p-15f));
    }
  }
  // the transpose's view (column-major strides) quantizes the same matrix
  std::vector<float> t(w.size());
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c)
      t[static_cast<std::size_t>(c * rows + r)] = w[static_cast<std::size_t>(r * cols + c)];
  const int8_rows qt(matrix_view<const float>(t.data(), {rows, cols}, {1, rows}));
  CHECK(std::equal(qt.codes().begin(), qt.codes().end(), q.codes().begin(), q.codes().end()));
  CHECK(std::equal(qt.scales().begin(), qt.scales().end(), q.scales().begin(), q.scales().end()));
}

TEST_CASE("int8_rows: from codes and scales made elsewhere") {
  const std::vector<std::int8_t> codes = {-128, 0, 127, 5, -5, 1};
  const std::vector<float> scales = {0.5f, 0.25f};
  const int8_rows q(2, 3, codes, scales);
  CHECK(q.padded_cols() == 32);
  CHECK(q.row_codes(0)[0] == -128);
  CHECK(q.row_codes(1)[2] == 1);
  CHECK(q.row_codes(1)[3] == 0);
  std::vector<float> back(6);
  q.dequantize_to(matrix_view<float>(back.data(), {2, 3}));
  CHECK(back == std::vector<float>{-64, 0, 63.5f, 1.25f, -1.25f, 0.25f});
  CHECK_THROWS_WITH_AS(int8_rows(2, 3, std::span<const std::int8_t>(codes).first(5), scales),
                       doctest::Contains("[2 x 3] needs 6 codes, got 5"), lmrl::error);
  CHECK_THROWS_WITH_AS(int8_rows(2, 3, codes, std::span<const float>(scales).first(1)),
                       doctest::Contains("2 rows need 2 scales, got 1"), lmrl::error);
  const std::vector<float> bad = {0.5f, -1.0f};
  CHECK_THROWS_WITH_AS(int8_rows(2, 3, codes, bad), doctest::Contains("scale 1 is -1"), lmrl::error);
}

TEST_CASE("int8_rows: non-finite weights and a wrong output shape are errors naming them") {
  std::vector<float> w(2 * 4, 1.0f);
  w[6] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH_AS(int8_rows(matrix_view<const float>(w.data(), {2, 4})), doctest::Contains("w(1, 2) is nan"),
                       lmrl::error);
  w[6] = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH_AS(int8_rows(matrix_view<const float>(w.data(), {2, 4})), doctest::Contains("w(1, 2) is -inf"),
                       lmrl::error);
  w[6] = 0;
  const int8_rows q(matrix_view<const float>(w.data(), {2, 4}));
  std::vector<float> out(8);
  CHECK_THROWS_WITH_AS(q.dequantize_to(matrix_view<float>(out.data(), {4, 2})),
                       doctest::Contains("the output is [4 x 2], the matrix [2 x 4]"), lmrl::error);
}

using testing::set_threads;
using testing::thread_counts;

TEST_CASE("int8_rows: a large matrix gives the row formula's bytes and the lowest row's error, whatever the threads") {
  const index_t rows = 300, cols = 250;  // 75000 values: parallel where the build has OpenMP
  std::mt19937 gen(13);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (auto& v : w) v = 0.02f * normal(gen);
  const auto at = [&](index_t r, index_t c) -> float& { return w[static_cast<std::size_t>(r * cols + c)]; };
  for (index_t c = 0; c < cols; ++c) {
    at(1, c) = 0.0f;                                  // scale 0, codes 0
    at(2, c) = static_cast<float>(c % 255 - 127);     // scale 1: ties at nothing, codes = w
    at(3, c) = c == 9 ? 127.0f : (c % 2 ? 2.5f : -0.5f);  // exact ties, to even
    at(4, c) *= 1e-38f;                               // 1 / s overflows: w / s
  }
  // the formula, row by row (the header's top comment)
  std::vector<std::int8_t> codes(static_cast<std::size_t>(rows * 256), 0);
  std::vector<float> scales(static_cast<std::size_t>(rows));
  for (index_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (index_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(at(r, c)));
    const float s = amax / 127.0f, inverse = 1.0f / s;
    scales[static_cast<std::size_t>(r)] = s;
    if (s == 0) continue;
    for (index_t c = 0; c < cols; ++c) {
      const float code = std::nearbyint(std::isinf(inverse) ? at(r, c) / s : at(r, c) * inverse);
      codes[static_cast<std::size_t>(r * 256 + c)] = static_cast<std::int8_t>(std::clamp(code, -127.0f, 127.0f));
    }
  }
  CHECK(codes[static_cast<std::size_t>(3 * 256)] == 0);  // -0.5 to even
  CHECK(codes[static_cast<std::size_t>(3 * 256 + 1)] == 2);  // 2.5 to even
  std::vector<float> t(w.size());  // the transpose's view: column strides
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < cols; ++c) t[static_cast<std::size_t>(c * rows + r)] = at(r, c);
  const int threads = thread_counts().back();
  for (const int n : thread_counts()) {
    set_threads(n);
    CAPTURE(n);
    for (const auto& q : {int8_rows(matrix_view<const float>(w.data(), {rows, cols})),
                          int8_rows(matrix_view<const float>(t.data(), {rows, cols}, {1, rows}))}) {
      CHECK(std::equal(q.codes().begin(), q.codes().end(), codes.begin(), codes.end()));
      CHECK(std::equal(q.scales().begin(), q.scales().end(), scales.begin(), scales.end()));
    }
    std::vector<float> bad = w;
    bad[static_cast<std::size_t>(280 * cols + 3)] = std::numeric_limits<float>::quiet_NaN();
    bad[static_cast<std::size_t>(97 * cols + 200)] = std::numeric_limits<float>::infinity();
    bad[static_cast<std::size_t>(97 * cols + 201)] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH_AS(int8_rows(matrix_view<const float>(bad.data(), {rows, cols})),
                         "int8_rows: w(97, 200) is inf; weights must be finite", lmrl::error);
  }
  set_threads(threads);
}
