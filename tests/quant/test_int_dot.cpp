// Integer block dots and activation quantization (lmrl/quant/int_dot.hpp):
// every path this CPU has gives the scalar reference's bits, on random blocks
// with the extreme codes; the reference is ggml's formula (for q4_k and tq2_0:
// the double dot of the dequantized blocks); quantize_rows_q8_0
// gives q8_0::quantize_block's bytes on every path, padding a short last block
// with zeros; bad input is an error.
#include "lmrl/quant/int_dot.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "doctest/doctest.h"

using namespace lmrl;

namespace {

std::uint16_t random_half(std::mt19937& gen) {  // a finite half: any exponent, either sign, sometimes 0
  std::uniform_int_distribution<int> pick(0, 9);
  if (pick(gen) == 0) return 0;
  std::uniform_int_distribution<int> bits(0, 0xffff);
  std::uint16_t h;
  do h = static_cast<std::uint16_t>(bits(gen));
  while ((h & 0x7c00) == 0x7c00);  // not inf or NaN
  return h;
}

// Activation codes: [-127, 127] (what quantize_rows_q8_0 gives), the ends often.
std::int8_t activation_code(std::mt19937& gen) {
  std::uniform_int_distribution<int> pick(0, 7), any(-127, 127);
  switch (pick(gen)) {
    case 0:
      return 127;
    case 1:
      return -127;
    case 2:
      return 0;
    default:
      return static_cast<std::int8_t>(any(gen));
  }
}
// Weight codes: the whole int8 range, the ends often.
std::int8_t weight_code(std::mt19937& gen) {
  std::uniform_int_distribution<int> pick(0, 7), any(-128, 127);
  switch (pick(gen)) {
    case 0:
      return 127;
    case 1:
      return -128;
    case 2:
      return -127;
    default:
      return static_cast<std::int8_t>(any(gen));
  }
}

void put_half(std::uint8_t* p, std::uint16_t h) {
  p[0] = static_cast<std::uint8_t>(h & 0xff);
  p[1] = static_cast<std::uint8_t>(h >> 8);
}

std::vector<std::uint8_t> random_q8_0(std::size_t blocks, std::mt19937& gen, bool weights) {
  std::vector<std::uint8_t> out(blocks * 34);
  for (std::size_t b = 0; b < blocks; ++b) {
    put_half(&out[34 * b], random_half(gen));
    for (std::size_t k = 0; k < 32; ++k)
      out[34 * b + 2 + k] = static_cast<std::uint8_t>(weights ? weight_code(gen) : activation_code(gen));
  }
  return out;
}

std::vector<std::uint8_t> random_q4_0(std::size_t blocks, std::mt19937& gen) {
  std::vector<std::uint8_t> out(blocks * 18);
  std::uniform_int_distribution<int> pick(0, 5), nibble(0, 15);
  const auto code = [&] {
    const int p = pick(gen);
    return p == 0 ? 0 : p == 1 ? 15 : nibble(gen);
  };
  for (std::size_t b = 0; b < blocks; ++b) {
    put_half(&out[18 * b], random_half(gen));
    for (std::size_t j = 0; j < 16; ++j) out[18 * b + 2 + j] = static_cast<std::uint8_t>(code() | (code() << 4));
  }
  return out;
}

// ggml's formula in double: sum over blocks of d_w d_x sum_k w_k x_k (w from `values`).
template <class Values>
double ggml_formula(const std::vector<std::uint8_t>& x, std::size_t blocks, Values values) {
  double s = 0;
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::uint8_t* xb = &x[34 * b];
    const double dx = half_to_float(static_cast<std::uint16_t>(xb[0] | (xb[1] << 8)));
    double dw = 0;
    int w[32];
    values(b, dw, w);
    long long isum = 0;
    for (int k = 0; k < 32; ++k) isum += static_cast<long long>(w[k]) * static_cast<std::int8_t>(xb[2 + k]);
    s += dw * dx * static_cast<double>(isum);
  }
  return s;
}

float half_at(const std::uint8_t* p) { return half_to_float(static_cast<std::uint16_t>(p[0] | (p[1] << 8))); }

// Q4_K blocks: random halves d and dmin, random scale bytes (every 6-bit sc_j and m_j),
// codes 0 and 15 often.
std::vector<std::uint8_t> random_q4_k(std::size_t blocks, std::mt19937& gen) {
  std::vector<std::uint8_t> out(blocks * q4_k::bytes_per_block);
  std::uniform_int_distribution<int> byte(0, 255), pick(0, 5), nibble(0, 15);
  const auto code = [&] {
    const int p = pick(gen);
    return p == 0 ? 0 : p == 1 ? 15 : nibble(gen);
  };
  for (std::size_t b = 0; b < blocks; ++b) {
    std::uint8_t* block = &out[q4_k::bytes_per_block * b];
    put_half(block, random_half(gen));
    put_half(block + 2, random_half(gen));
    for (std::size_t k = 4; k < 16; ++k) block[k] = static_cast<std::uint8_t>(byte(gen));
    for (std::size_t k = 16; k < q4_k::bytes_per_block; ++k) block[k] = static_cast<std::uint8_t>(code() | (code() << 4));
  }
  return out;
}

// TQ2_0 blocks: every 2-bit code, 0, 1, 2 and the unused 3 (ggml reads it as 3 - 1 = 2, as dequantize does).
std::vector<std::uint8_t> random_tq2_0(std::size_t blocks, std::mt19937& gen) {
  std::vector<std::uint8_t> out(blocks * tq2_0::bytes_per_block);
  std::uniform_int_distribution<int> byte(0, 255);
  for (std::size_t b = 0; b < blocks; ++b) {
    std::uint8_t* block = &out[tq2_0::bytes_per_block * b];
    for (std::size_t k = 0; k < 64; ++k) block[k] = static_cast<std::uint8_t>(byte(gen));
    put_half(block + 64, random_half(gen));
  }
  return out;
}

// The weight blocks of a 256-value format that nb activation blocks read: ceil(nb / 8).
std::size_t blocks_256(std::size_t nb) { return (nb + 7) / 8; }

}  // namespace

TEST_CASE("int_dot paths: scalar first, the best last, and a path the CPU lacks is an error") {
  const auto paths = supported_int_dot_paths();
  REQUIRE(!paths.empty());
  CHECK(paths.front() == int_dot_path::scalar);
  CHECK(best_int_dot_path() == paths.back());
  MESSAGE("int_dot paths on this CPU: ", paths.size(), ", best ", std::string(to_string(best_int_dot_path())));
  std::vector<std::uint8_t> w(34), x(34);
  for (int_dot_path p : {int_dot_path::scalar, int_dot_path::avx2, int_dot_path::avx512_vnni, int_dot_path::avx_vnni}) {
    if (std::find(paths.begin(), paths.end(), p) != paths.end())
      CHECK(vec_dot_q8_0_q8_0(w, x, p) == 0.0f);
    else
      CHECK_THROWS_WITH_AS(vec_dot_q8_0_q8_0(w, x, p), doctest::Contains("this CPU has no"), lmrl::error);
  }
}

TEST_CASE("int_dot: every path gives the scalar path's bits on random blocks with extreme codes and zero scales") {
  std::mt19937 gen(17);
  int compared = 0;
  for (std::size_t blocks : {1u, 2u, 3u, 7u, 8u, 9u, 16u, 31u, 64u}) {
    for (int trial = 0; trial < 6; ++trial) {
      const auto x = random_q8_0(blocks, gen, false);
      const auto w8 = random_q8_0(blocks, gen, true);
      const auto w4 = random_q4_0(blocks, gen);
      std::vector<std::int8_t> wi(32 * blocks);
      for (auto& c : wi) c = weight_code(gen);
      const float r8 = vec_dot_q8_0_q8_0(w8, x, int_dot_path::scalar);
      const float r4 = vec_dot_q4_0_q8_0(w4, x, int_dot_path::scalar);
      const float ri = vec_dot_i8_q8_0(wi, x, int_dot_path::scalar);
      for (int_dot_path p : supported_int_dot_paths()) {
        INFO("path ", to_string(p), ", ", blocks, " blocks, trial ", trial);
        CHECK(std::bit_cast<std::uint32_t>(vec_dot_q8_0_q8_0(w8, x, p)) == std::bit_cast<std::uint32_t>(r8));
        CHECK(std::bit_cast<std::uint32_t>(vec_dot_q4_0_q8_0(w4, x, p)) == std::bit_cast<std::uint32_t>(r4));
        CHECK(std::bit_cast<std::uint32_t>(vec_dot_i8_q8_0(wi, x, p)) == std::bit_cast<std::uint32_t>(ri));
        compared += 3;
      }
    }
  }
  MESSAGE(compared, " dots compared with the scalar path");
}

TEST_CASE("int_dot: the scalar path is ggml's formula, to float rounding") {
  std::mt19937 gen(23);
  for (std::size_t blocks : {1u, 5u, 40u}) {
    // scales of one size, so the sum has no cancellation to speak of
    auto x = random_q8_0(blocks, gen, false);
    auto w8 = random_q8_0(blocks, gen, true);
    auto w4 = random_q4_0(blocks, gen);
    std::uniform_real_distribution<float> scale(0.01f, 0.02f);
    for (std::size_t b = 0; b < blocks; ++b) {
      detail::store_half(&x[34 * b], scale(gen));
      detail::store_half(&w8[34 * b], scale(gen));
      detail::store_half(&w4[18 * b], -scale(gen));
    }
    std::vector<std::int8_t> wi(32 * blocks);
    for (auto& c : wi) c = weight_code(gen);
    const double e8 = ggml_formula(x, blocks, [&](std::size_t b, double& d, int* q) {
      d = half_at(&w8[34 * b]);
      for (int k = 0; k < 32; ++k) q[k] = static_cast<std::int8_t>(w8[34 * b + 2 + k]);
    });
    const double e4 = ggml_formula(x, blocks, [&](std::size_t b, double& d, int* q) {
      d = half_at(&w4[18 * b]);
      for (int j = 0; j < 16; ++j) {
        q[j] = (w4[18 * b + 2 + j] & 15) - 8;
        q[j + 16] = (w4[18 * b + 2 + j] >> 4) - 8;
      }
    });
    const double ei = ggml_formula(x, blocks, [&](std::size_t b, double& d, int* q) {
      d = 1;
      for (int k = 0; k < 32; ++k) q[k] = wi[32 * b + static_cast<std::size_t>(k)];
    });
    // the magnitude of the terms bounds the float error: at most blocks / 2 + 5 roundings of 2^-24 each
    const double terms = 0.0004 * 32 * 128 * 127 * static_cast<double>(blocks);
    const double tolerance = (static_cast<double>(blocks) / 2 + 5) * 0x1p-24 * terms;
    INFO(blocks, " blocks");
    CHECK(std::fabs(vec_dot_q8_0_q8_0(w8, x, int_dot_path::scalar) - e8) <= tolerance);
    CHECK(std::fabs(vec_dot_q4_0_q8_0(w4, x, int_dot_path::scalar) - e4) <= tolerance);
    CHECK(std::fabs(vec_dot_i8_q8_0(wi, x, int_dot_path::scalar) - ei) <= tolerance * 100);  // d_w = 1, not 0.02
  }
  // by hand: one block, d_w = 2, d_x = 0.5, codes 1..32 against 1 (q8_0) -> 2 * 0.5 * 528
  std::vector<std::uint8_t> w(34), x(34);
  detail::store_half(&w[0], 2.0f);
  detail::store_half(&x[0], 0.5f);
  for (int k = 0; k < 32; ++k) {
    w[2 + static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(k + 1);
    x[2 + static_cast<std::size_t>(k)] = 1;
  }
  for (int_dot_path p : supported_int_dot_paths()) CHECK(vec_dot_q8_0_q8_0(w, x, p) == 528.0f);
  // q4_0: every code 0 stands for -8: 32 * -8 * 1 * d_w d_x
  std::vector<std::uint8_t> w4(18, 0);
  detail::store_half(&w4[0], 2.0f);
  for (int_dot_path p : supported_int_dot_paths()) CHECK(vec_dot_q4_0_q8_0(w4, x, p) == -256.0f);
}

TEST_CASE("int_dot: wrong block counts are errors naming the sizes") {
  std::vector<std::uint8_t> w(68), x(68), odd(50);
  CHECK_THROWS_WITH_AS(vec_dot_q8_0_q8_0(w, odd),
                       doctest::Contains("x has 50 bytes, not a whole number of q8_0 blocks"), lmrl::error);
  std::vector<std::uint8_t> w4(18);
  CHECK_THROWS_WITH_AS(vec_dot_q4_0_q8_0(w4, x), doctest::Contains("x is 2 blocks, so w needs 36 bytes; it has 18"),
                       lmrl::error);
  std::vector<std::int8_t> wi(32);
  CHECK_THROWS_WITH_AS(vec_dot_i8_q8_0(wi, x), doctest::Contains("w needs 64 bytes"), lmrl::error);
}

TEST_CASE("quantize_rows_q8_0 gives q8_0::quantize_block's bytes on every path, a short last block padded with zeros") {
  std::mt19937 gen(29);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (index_t cols : {1, 5, 31, 32, 33, 40, 96, 344}) {
    const index_t rows = 3;
    const index_t stride = cols + 3;  // rows apart in memory
    std::vector<float> x(static_cast<std::size_t>(rows * stride));
    for (auto& v : x) v = normal(gen) * 4;
    // ties after scaling: row 1's largest value is 127, so d = 1 and x / d = x; half away from zero
    x[static_cast<std::size_t>(stride)] = 127;
    if (cols > 2) {
      x[static_cast<std::size_t>(stride + 1)] = 2.5f;
      x[static_cast<std::size_t>(stride + 2)] = -2.5f;
    }
    const matrix_view<const float> view(x.data(), {rows, cols}, {stride, 1});
    const index_t padded = (cols + 31) / 32 * 32;
    for (int_dot_path p : supported_int_dot_paths()) {
      q8_0_rows q;
      quantize_rows_q8_0(view, q, p);
      REQUIRE(q.rows() == rows);
      REQUIRE(q.cols() == cols);
      CHECK(q.padded_cols() == padded);
      REQUIRE(q.row_bytes() == static_cast<std::size_t>(padded / 32 * 34));
      for (index_t i = 0; i < rows; ++i) {
        std::vector<float> row(static_cast<std::size_t>(padded), 0.0f);
        for (index_t k = 0; k < cols; ++k) row[static_cast<std::size_t>(k)] = view(i, k);
        std::vector<std::uint8_t> expected(q.row_bytes());
        quantize(q8_0{}, std::span<const float>(row), std::span<std::uint8_t>(expected));
        const auto got = q.row_bytes_of(i);
        INFO("path ", to_string(p), ", cols ", cols, ", row ", i);
        CHECK(std::equal(got.begin(), got.end(), expected.begin(), expected.end()));
        if (i == 1 && cols > 2) {
          CHECK(static_cast<std::int8_t>(got[3]) == 3);   // 2.5 -> 3
          CHECK(static_cast<std::int8_t>(got[4]) == -3);  // -2.5 -> -3
        }
        for (index_t k = cols; k < padded; ++k) CHECK(got[static_cast<std::size_t>(2 + k / 32 * 34 + k % 32)] == 0);
        if (supported_int_dot_paths().size() > 1) {  // the SIMD kernels' copy: codes, scales, minus the sums of 4
          const std::size_t blocks = q.blocks_per_row();
          REQUIRE(q.pairs_per_row() == (blocks + 1) / 2);
          const detail::q8_0_pair* pairs = q.pairs_of(i);
          for (std::size_t b = 0; b < 2 * q.pairs_per_row(); ++b) {
            const auto& pair = pairs[b / 2];
            const std::size_t h = b % 2;
            const float d = b < blocks ? half_at(&got[34 * b]) : 0.0f;
            for (std::size_t j = 0; j < 8; ++j) {
              CHECK(pair.scales[8 * h + j] == d);
              int sum = 0;
              for (std::size_t k = 4 * j; k < 4 * j + 4; ++k) {
                const int code = b < blocks ? static_cast<std::int8_t>(got[34 * b + 2 + k]) : 0;
                CHECK(pair.codes[32 * h + k] == code);
                sum += code;
              }
              CHECK(pair.neg_sums[8 * h + j] == -sum);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("quantize_rows_q8_0: column strides, all-zero rows, reuse, and non-finite values named by row and column") {
  std::vector<float> x(2 * 40 * 2, 0.0f);
  for (std::size_t k = 0; k < 40; ++k) x[2 * (40 + k)] = static_cast<float>(k) - 20;  // row 1, every other float
  const matrix_view<const float> strided(x.data(), {2, 40}, {80, 2});
  q8_0_rows a, b;
  quantize_rows_q8_0(strided, a, int_dot_path::scalar);
  std::vector<float> dense(80);
  for (index_t i = 0; i < 2; ++i)
    for (index_t k = 0; k < 40; ++k) dense[static_cast<std::size_t>(i * 40 + k)] = strided(i, k);
  for (int_dot_path p : supported_int_dot_paths()) {
    quantize_rows_q8_0(matrix_view<const float>(dense.data(), {2, 40}), b, p);
    CHECK(std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin(), b.bytes().end()));
    CHECK(std::all_of(b.row_bytes_of(0).begin(), b.row_bytes_of(0).end(), [](std::uint8_t v) { return v == 0; }));
  }
  // reused for a smaller matrix: sizes follow
  quantize_rows_q8_0(matrix_view<const float>(dense.data(), {1, 8}), b);
  CHECK(b.rows() == 1);
  CHECK(b.bytes().size() == 34);
  for (int_dot_path p : supported_int_dot_paths()) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      dense[40 + 37] = bad;
      INFO("path ", to_string(p));
      CHECK_THROWS_WITH_AS(quantize_rows_q8_0(matrix_view<const float>(dense.data(), {2, 40}), b, p),
                           doctest::Contains("x(1, 37) is"), lmrl::error);
    }
    dense[40 + 37] = 0;
  }
}

TEST_CASE("int dots read blocks at any byte address: a misaligned copy gives the same bits on every path") {
  std::mt19937 gen(41);
  const std::size_t nb = 7;
  const auto w8 = random_q8_0(nb, gen, true), w4 = random_q4_0(nb, gen), x = random_q8_0(nb, gen, false);
  for (int_dot_path path : supported_int_dot_paths()) {
    CAPTURE(to_string(path));
    const float want8 = vec_dot_q8_0_q8_0(w8, x, path), want4 = vec_dot_q4_0_q8_0(w4, x, path);
    for (std::size_t offset : {1u, 3u, 5u}) {
      // The same bytes at an odd address (block formats are byte arrays: 34 and 18 bytes a block).
      std::vector<std::uint8_t> storage(offset + w8.size() + x.size() + w4.size());
      std::uint8_t* p = storage.data() + offset;
      std::copy(w8.begin(), w8.end(), p);
      std::copy(x.begin(), x.end(), p + w8.size());
      std::copy(w4.begin(), w4.end(), p + w8.size() + x.size());
      const std::span<const std::uint8_t> mw8(p, w8.size()), mx(p + w8.size(), x.size()),
          mw4(p + w8.size() + x.size(), w4.size());
      CHECK(std::bit_cast<std::uint32_t>(vec_dot_q8_0_q8_0(mw8, mx, path)) == std::bit_cast<std::uint32_t>(want8));
      CHECK(std::bit_cast<std::uint32_t>(vec_dot_q4_0_q8_0(mw4, mx, path)) == std::bit_cast<std::uint32_t>(want4));
    }
  }
}

TEST_CASE("int_dot q4_k and tq2_0: every path gives the scalar path's bits, for any number of activation blocks") {
  std::mt19937 gen(53);
  int compared = 0;
  // nb activation blocks against ceil(nb / 8) weight blocks of 256: whole ones, and rows whose last block is read in part
  for (std::size_t nb : {1u, 2u, 3u, 7u, 8u, 9u, 11u, 16u, 17u, 28u, 64u}) {
    for (int trial = 0; trial < 6; ++trial) {
      const auto x = random_q8_0(nb, gen, false);
      const auto wk = random_q4_k(blocks_256(nb), gen);
      const auto wt = random_tq2_0(blocks_256(nb), gen);
      const float rk = vec_dot_q4_k_q8_0(wk, x, int_dot_path::scalar);
      const float rt = vec_dot_tq2_0_q8_0(wt, x, int_dot_path::scalar);
      for (int_dot_path p : supported_int_dot_paths()) {
        INFO("path ", to_string(p), ", ", nb, " blocks, trial ", trial);
        CHECK(std::bit_cast<std::uint32_t>(vec_dot_q4_k_q8_0(wk, x, p)) == std::bit_cast<std::uint32_t>(rk));
        CHECK(std::bit_cast<std::uint32_t>(vec_dot_tq2_0_q8_0(wt, x, p)) == std::bit_cast<std::uint32_t>(rt));
        compared += 2;
      }
    }
  }
  MESSAGE(compared, " q4_k and tq2_0 dots compared with the scalar path");
}

TEST_CASE("int_dot q4_k and tq2_0: the scalar path is the double dot of the dequantized blocks, to float rounding") {
  std::mt19937 gen(59);
  std::uniform_real_distribution<float> scale(0.01f, 0.02f);
  std::uniform_int_distribution<int> coin(0, 1);
  for (std::size_t nb : {1u, 8u, 11u, 40u}) {
    auto x = random_q8_0(nb, gen, false);
    auto wk = random_q4_k(blocks_256(nb), gen);
    auto wt = random_tq2_0(blocks_256(nb), gen);
    for (std::size_t b = 0; b < nb; ++b) detail::store_half(&x[34 * b], scale(gen));
    for (std::size_t b = 0; b < blocks_256(nb); ++b) {  // scales of one size, either sign
      detail::store_half(&wk[q4_k::bytes_per_block * b], coin(gen) ? scale(gen) : -scale(gen));
      detail::store_half(&wk[q4_k::bytes_per_block * b + 2], coin(gen) ? scale(gen) : -scale(gen));
      detail::store_half(&wt[tq2_0::bytes_per_block * b + 64], coin(gen) ? scale(gen) : -scale(gen));
    }
    const auto padded = static_cast<std::size_t>(256 * blocks_256(nb));
    std::vector<float> xd(32 * nb), yk(padded), yt(padded);
    dequantize(q8_0{}, std::span<const std::uint8_t>(x), std::span<float>(xd));
    dequantize(q4_k{}, std::span<const std::uint8_t>(wk), std::span<float>(yk));
    dequantize(tq2_0{}, std::span<const std::uint8_t>(wt), std::span<float>(yt));
    // |the terms| of the kernels' sums: q4_k's d sc_j q x and dmin m_j x apart, before they cancel
    double ek = 0, et = 0, terms_k = 0, terms_t = 0, dequant_k = 0;
    for (std::size_t i = 0; i < 32 * nb; ++i) {
      const std::uint8_t* block = &wk[q4_k::bytes_per_block * (i / 256)];
      const int j = static_cast<int>(i % 256 / 32);
      int sc, m;
      detail::k_quants::scale_min(j, block + 4, sc, m);
      const int q = (block[16 + 32 * (j / 2) + i % 32] >> (4 * (j % 2))) & 15;
      const double d_sc = double(half_at(block)) * sc, dmin_m = double(half_at(block + 2)) * m;
      ek += double(yk[i]) * xd[i];
      et += double(yt[i]) * xd[i];
      terms_k += (std::fabs(d_sc * q) + std::fabs(dmin_m)) * std::fabs(double(xd[i]));
      terms_t += std::fabs(double(yt[i]) * xd[i]);
      // dequantize_block rounds d sc q - dmin m to float once: the double dot of its floats carries that
      dequant_k += std::fabs(double(yk[i]) * xd[i]) * 0x1p-24;
    }
    // at most nb fused multiply-adds on a lane's chain (q4_k: two a block), even + odd, 3 tree additions,
    // the rounding of d_w d_x: each a factor (1 + delta), |delta| <= 2^-24
    const double rounding = (static_cast<double>(nb) + 6) * 0x1p-24;
    INFO(nb, " activation blocks");
    CHECK(std::fabs(vec_dot_q4_k_q8_0(wk, x, int_dot_path::scalar) - ek) <= rounding * terms_k + dequant_k);
    CHECK(std::fabs(vec_dot_tq2_0_q8_0(wt, x, int_dot_path::scalar) - et) <= rounding * terms_t);
  }
  // by hand: one q4_k block, d = dmin = 1, every sc_j = m_j = 1, every code 0: each value is 0 - 1;
  // eight activation blocks of codes 1 and d_x = 0.5: 256 (-1) 0.5
  std::vector<std::uint8_t> wk(q4_k::bytes_per_block, 0), x(8 * 34, 0);
  detail::store_half(&wk[0], 1.0f);
  detail::store_half(&wk[2], 1.0f);
  for (std::size_t j = 0; j < 4; ++j) wk[4 + j] = wk[8 + j] = 1;  // sc_0..3, m_0..3
  for (std::size_t j = 4; j < 8; ++j) wk[4 + j + 4] = 0x11;        // sc_4..7 and m_4..7, low nibbles
  for (std::size_t b = 0; b < 8; ++b) {
    detail::store_half(&x[34 * b], 0.5f);
    for (std::size_t k = 0; k < 32; ++k) x[34 * b + 2 + k] = 1;
  }
  for (int_dot_path p : supported_int_dot_paths()) CHECK(vec_dot_q4_k_q8_0(wk, x, p) == -128.0f);
  wk[16 + 5] = 0x0f;  // value 5 of sub-block 0: code 15, 15 - 1 = 14 instead of -1
  for (int_dot_path p : supported_int_dot_paths()) CHECK(vec_dot_q4_k_q8_0(wk, x, p) == -128.0f + 15 * 0.5f);
  // tq2_0: every code 2 (+1), d = 2: 256 * 2 * 0.5; every code 3 reads as 2, as ggml's dequantization does
  std::vector<std::uint8_t> wt(tq2_0::bytes_per_block, 0xaa);
  detail::store_half(&wt[64], 2.0f);
  for (int_dot_path p : supported_int_dot_paths()) CHECK(vec_dot_tq2_0_q8_0(wt, x, p) == 256.0f);
  std::fill(wt.begin(), wt.begin() + 64, std::uint8_t{0xff});
  std::vector<float> y(256);
  dequantize(tq2_0{}, std::span<const std::uint8_t>(wt), std::span<float>(y));
  CHECK(y[0] == 4.0f);
  for (int_dot_path p : supported_int_dot_paths()) CHECK(vec_dot_tq2_0_q8_0(wt, x, p) == 512.0f);
  std::fill(wt.begin(), wt.begin() + 64, std::uint8_t{0x55});  // every code 1: 0
  for (int_dot_path p : supported_int_dot_paths()) CHECK(vec_dot_tq2_0_q8_0(wt, x, p) == 0.0f);
}

TEST_CASE("int_dot q4_k and tq2_0: a weight row's sub-blocks past the activations' last block are not read") {
  // 11 activation blocks (344 values padded to 352) against 2 weight blocks (512): the same value
  // as the activations padded to 16 blocks with zero codes and nonzero scales, on every path
  std::mt19937 gen(61);
  const std::size_t nb = 11;
  const auto x = random_q8_0(nb, gen, false);
  auto x16 = x;
  for (std::size_t b = nb; b < 16; ++b) {
    x16.resize(x16.size() + 34, 0);
    detail::store_half(&x16[34 * b], 1.0f);
  }
  auto wk = random_q4_k(2, gen);
  auto wt = random_tq2_0(2, gen);
  for (int_dot_path p : supported_int_dot_paths()) {
    INFO("path ", to_string(p));
    const float k = vec_dot_q4_k_q8_0(wk, x, p), t = vec_dot_tq2_0_q8_0(wt, x, p);
    CHECK(k == vec_dot_q4_k_q8_0(wk, x16, p));
    CHECK(t == vec_dot_tq2_0_q8_0(wt, x16, p));
    // weight block 1's sub-blocks 3-7 (activation blocks 11-15) changed, codes and scales: the same bits
    auto wk2 = wk, wt2 = wt;
    std::uint8_t* k1 = wk2.data() + q4_k::bytes_per_block;
    for (std::size_t l = 0; l < 32; ++l) k1[16 + 32 + l] ^= 0xf0;  // sub-block 3: chunk 1's high nibbles
    for (std::size_t l = 64; l < 128; ++l) k1[16 + l] ^= 0xff;      // sub-blocks 4-7: chunks 2 and 3
    k1[4 + 3] ^= 0x3f;                                               // sc_3
    k1[4 + 7] ^= 0x3f;                                               // m_3
    for (std::size_t i = 0; i < 8; ++i) k1[4 + i] ^= 0xc0;           // the high bits of sc_4..7 and m_4..7
    for (std::size_t i = 8; i < 12; ++i) k1[4 + i] ^= 0xff;          // their low nibbles
    std::uint8_t* t1 = wt2.data() + tq2_0::bytes_per_block;
    for (std::size_t l = 0; l < 32; ++l) t1[l] ^= 0xc0;       // sub-block 3: bits 6-7 of bytes 0-31
    for (std::size_t l = 32; l < 64; ++l) t1[l] ^= 0xff;      // sub-blocks 4-7: bytes 32-63
    CHECK(std::bit_cast<std::uint32_t>(vec_dot_q4_k_q8_0(wk2, x, p)) == std::bit_cast<std::uint32_t>(k));
    CHECK(std::bit_cast<std::uint32_t>(vec_dot_tq2_0_q8_0(wt2, x, p)) == std::bit_cast<std::uint32_t>(t));
  }
  // the byte counts: ceil(nb / 8) blocks
  CHECK_THROWS_WITH_AS(vec_dot_q4_k_q8_0(std::span<const std::uint8_t>(wk).first(144), x),
                       doctest::Contains("x is 11 blocks, so w needs 288 bytes; it has 144"), lmrl::error);
  const auto x17 = random_q8_0(17, gen, false);
  CHECK_THROWS_WITH_AS(vec_dot_tq2_0_q8_0(wt, x17), doctest::Contains("x is 17 blocks, so w needs 198 bytes; it has 132"),
                       lmrl::error);
}
