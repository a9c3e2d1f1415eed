// Integer dot products of quantized weights with Q8_0-quantized activations,
// the arithmetic under llama.cpp's CPU matmuls: activations are quantized once
// per row into Q8_0 blocks (32 int8 codes and a half scale d_x; q8_0_rows.hpp),
// each weight block's codes are multiplied with them in integers, and floats
// appear only to scale a block's integer sums:
//
//   q8_0  . q8_0  sum over blocks of d_w d_x sum_k q_w,k q_x,k              (ggml_vec_dot_q8_0_q8_0)
//   q4_0  . q8_0  sum over blocks of d_w d_x sum_k (q_w,k - 8) q_x,k        (ggml_vec_dot_q4_0_q8_0)
//   i8    . q8_0  sum over blocks of     d_x sum_k q_w,k q_x,k              (int8_rows.hpp: times the row's scale)
//   q4_k  . q8_0  sum over sub-blocks j of (d sc_j) d_x sum_k q_w,k q_x,k   (k_quants.hpp)
//                                        - (dmin m_j) d_x sum_k q_x,k
//   tq2_0 . q8_0  sum over blocks of d_w d_x sum_k (q_w,k - 1) q_x,k        (ternary.hpp)
// (ggml multiplies Q4_K and TQ2_0 with Q8_K activations, 256 values a block; these take Q8_0's.)
//
// Q4_K and TQ2_0 blocks hold 256 values: each is 8 sub-blocks of 32, one per
// activation block (sub-block j of Q4_K has its own sc_j and m_j; TQ2_0's 8
// share d). d sc_j and dmin m_j are exact in float (an 11-bit half times 6 bits).
//
// The order of the float operations is fixed, so that every path gives the
// same bits: within a block of 32 (q4_k, tq2_0: a sub-block; "block" below
// means these), the products of codes 4j..4j+3 are summed
// exactly in int32 (lane j, j = 0..7; as ggml's AVX2 code groups them); then
// lane j of every even block accumulates into even_j = fma(d_w d_x, lane_j,
// even_j), of every odd block into odd_j, block after block (d_w d_x rounded
// to float first; i8 has d_w = 1, q4_k d_w = d sc_j). Q4_K's min term follows
// each block's, in the same lane: even_j = fma(m_w d_x, -(sum of x's codes
// 4j..4j+3), even_j) with m_w = dmin m_j (m_w d_x rounded to float first).
// Last, a_j = even_j + odd_j and the sum is
// ((a_0 + a_4) + (a_2 + a_6)) + ((a_1 + a_5) + (a_3 + a_7)). Two sets of
// lanes let a 512-bit register hold two blocks. dot_scalar below is that
// definition in plain C++.
//
// The sum runs over the activation row's blocks. A weight row of 256-value
// blocks may hold more sub-blocks than that (a row of 344 values is padded
// to 512 with zeros, its activations to 352): the sub-blocks past the
// activations' last one are zero weights and are not read, which is the
// product with zero activations there.
//
// The paths (scalar, avx2, avx_vnni, avx512_vnni) are chosen at run time:
// int_dot_paths.hpp says what each one uses and detects them; the tests check
// every path this CPU has against the scalar one, bit for bit.
//
// Activation codes must lie in [-127, 127], which quantize_rows_q8_0 and
// q8_0::quantize_block always give (the AVX2 sign trick negates them); weight
// codes may use the whole int8 range.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/int_dot_paths.hpp"
#include "lmrl/quant/k_quants.hpp"
#include "lmrl/quant/q8_0_rows.hpp"
#include "lmrl/quant/ternary.hpp"

namespace lmrl {

// ---------------------------------------------------------------- kernels

namespace detail::int_kernels {

#if LMRL_INT_DOT_X86
LMRL_INT_DOT_AVX2_INLINE __m256 load_half_broadcast(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(h)));
}
// Field n of each of 32 bytes cut into fields of `bits` bits (bits n bits .. n bits + bits - 1).
LMRL_INT_DOT_AVX2_INLINE __m256i unpack_bits(const std::uint8_t* bytes, int n, int bits) {
  const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes));
  return _mm256_and_si256(_mm256_srl_epi16(packed, _mm_cvtsi32_si128(n * bits)),
                          _mm256_set1_epi8(static_cast<char>((1 << bits) - 1)));
}
#endif

// What a kernel needs from a weight format. A block of block_bytes holds
// sub_blocks runs of 32 values, one per activation block; for run j of a block:
//   scale(block, j)      its float factor d_w (has_scale; exact in float)
//   min(block, j)        has_min: the factor m_w of minus x's code sums (Q4_K's dmin m_j)
//   values(block, j, q)  its 32 values as ints (scalar path)
//   codes(block, j)      the same as bytes for the SIMD paths: signed int8
//                        (signed_codes), or unsigned ones that stand for code - offset
//   scale8               scale broadcast to 8 floats (the same floats); has_min: scale_min8, both
struct q8_0_weights {
  static constexpr std::size_t block_bytes = q8_0::bytes_per_block, sub_blocks = 1;
  static constexpr bool has_scale = true, has_min = false, signed_codes = true;
  static constexpr int offset = 0;
  static float scale(const std::uint8_t* block, int) { return load_half(block); }
  static void values(const std::uint8_t* block, int, int* q) {
    for (int k = 0; k < 32; ++k) q[k] = static_cast<std::int8_t>(block[2 + k]);
  }
#if LMRL_INT_DOT_X86
  static LMRL_INT_DOT_AVX2_INLINE __m256 scale8(const std::uint8_t* block, int) { return load_half_broadcast(block); }
  static LMRL_INT_DOT_AVX2_INLINE __m256i codes(const std::uint8_t* block, int) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
  }
#endif
};

struct q4_0_weights {
  static constexpr std::size_t block_bytes = q4_0::bytes_per_block, sub_blocks = 1;
  static constexpr bool has_scale = true, has_min = false, signed_codes = false;
  static constexpr int offset = 8;
  static float scale(const std::uint8_t* block, int) { return load_half(block); }
  static void values(const std::uint8_t* block, int, int* q) {
    for (int j = 0; j < 16; ++j) {
      q[j] = (block[2 + j] & 0x0f) - 8;
      q[j + 16] = (block[2 + j] >> 4) - 8;
    }
  }
#if LMRL_INT_DOT_X86
  static LMRL_INT_DOT_AVX2_INLINE __m256 scale8(const std::uint8_t* block, int) { return load_half_broadcast(block); }
  static LMRL_INT_DOT_AVX2_INLINE __m256i codes(const std::uint8_t* block, int) {  // q_0..q_15 low nibbles, q_16..q_31 high
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0f));
  }
#endif
};

struct i8_weights {  // int8_rows: 32 codes per block, no block scale
  static constexpr std::size_t block_bytes = 32, sub_blocks = 1;
  static constexpr bool has_scale = false, has_min = false, signed_codes = true;
  static constexpr int offset = 0;
  static float scale(const std::uint8_t*, int) { return 1.0f; }
  static void values(const std::uint8_t* block, int, int* q) {
    for (int k = 0; k < 32; ++k) q[k] = static_cast<std::int8_t>(block[k]);
  }
#if LMRL_INT_DOT_X86
  static LMRL_INT_DOT_AVX2_INLINE __m256i codes(const std::uint8_t* block, int) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block));
  }
#endif
};

// Q4_K (k_quants.hpp): run j is sub-block j, codes q in [0, 15] (qs byte 32 (j / 2) + l,
// low nibble for even j, high for odd), d_w = d sc_j, m_w = dmin m_j.
struct q4_k_weights {
  static constexpr std::size_t block_bytes = q4_k::bytes_per_block, sub_blocks = 8;
  static constexpr bool has_scale = true, has_min = true, signed_codes = false;
  static constexpr int offset = 0;
  static float scale(const std::uint8_t* block, int j) {  // exact: an 11-bit half times 6 bits
    int sc, m;
    k_quants::scale_min(j, block + 4, sc, m);
    return load_half(block) * static_cast<float>(sc);
  }
  static float min(const std::uint8_t* block, int j) {
    int sc, m;
    k_quants::scale_min(j, block + 4, sc, m);
    return load_half(block + 2) * static_cast<float>(m);
  }
  static void values(const std::uint8_t* block, int j, int* q) {
    const std::uint8_t* qs = block + 16 + 32 * (j / 2);
    for (int l = 0; l < 32; ++l) q[l] = (qs[l] >> (4 * (j % 2))) & 0x0f;
  }
#if LMRL_INT_DOT_X86
  // scale and min broadcast at once: d and dmin converted together, times sc_j and m_j (exact)
  static LMRL_INT_DOT_AVX2_INLINE void scale_min8(const std::uint8_t* block, int j, __m256& scale, __m256& min) {
    int sc, m;
    k_quants::scale_min(j, block + 4, sc, m);
    std::int32_t halves;
    std::memcpy(&halves, block, 4);
    const __m128 f = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(halves)),
                                _mm_setr_ps(static_cast<float>(sc), static_cast<float>(m), 0.0f, 0.0f));
    scale = _mm256_broadcastss_ps(f);
    min = _mm256_broadcastss_ps(_mm_movehdup_ps(f));
  }
  static LMRL_INT_DOT_AVX2_INLINE __m256i codes(const std::uint8_t* block, int j) {
    return unpack_bits(block + 16 + 32 * (j / 2), j % 2, 4);
  }
#endif
};

// TQ2_0 (ternary.hpp): run j is values 32 j..32 j + 31, in bits 2 (j % 4) of bytes
// 32 (j / 4)..; codes c in {0, 1, 2} stand for c - 1 (ggml also reads the unused 3, as 2), d_w = d.
struct tq2_0_weights {
  static constexpr std::size_t block_bytes = tq2_0::bytes_per_block, sub_blocks = 8;
  static constexpr bool has_scale = true, has_min = false, signed_codes = false;
  static constexpr int offset = 1;
  static float scale(const std::uint8_t* block, int) { return load_half(block + 64); }
  static void values(const std::uint8_t* block, int j, int* q) {
    const std::uint8_t* qs = block + 32 * (j / 4);
    for (int l = 0; l < 32; ++l) q[l] = ((qs[l] >> (2 * (j % 4))) & 3) - 1;
  }
#if LMRL_INT_DOT_X86
  static LMRL_INT_DOT_AVX2_INLINE __m256 scale8(const std::uint8_t* block, int) {
    return load_half_broadcast(block + 64);
  }
  static LMRL_INT_DOT_AVX2_INLINE __m256i codes(const std::uint8_t* block, int j) {
    return unpack_bits(block + 32 * (j / 4), j % 4, 2);
  }
#endif
};

// Activation block b of a weight row: the weight block that holds it, and its run in that block.
template <class W>
const std::uint8_t* block_of(const std::uint8_t* row, std::size_t b) {
  return row + b / W::sub_blocks * W::block_bytes;
}
template <class W>
int run_of(std::size_t b) {
  return static_cast<int>(b % W::sub_blocks);
}
// The bytes of a weight row that nb activation blocks read.
template <class W>
constexpr std::size_t row_bytes_for(std::size_t nb) {
  return (nb + W::sub_blocks - 1) / W::sub_blocks * W::block_bytes;
}

// Unsigned codes stand for code - offset: each lane's sum is corrected by
// offset times minus the sum of x's 4 codes, a shift of q8_0_rows' minus-sums.
template <class W>
constexpr int offset_shift() {
  static_assert(W::offset == 0 || std::has_single_bit(static_cast<unsigned>(W::offset)));
  return W::offset == 0 ? 0 : std::countr_zero(static_cast<unsigned>(W::offset));
}

// The fixed order every path sums in: even[j] + odd[j], then the 8 lanes as a tree.
inline float sum_lanes(const float* even, const float* odd) {
  float a[8];
  for (int j = 0; j < 8; ++j) a[j] = even[j] + odd[j];
  const float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
  return (s0 + s2) + (s1 + s3);
}

// The reference: one weight row (its first row_bytes_for<W>(nb) bytes) dotted
// with one activation row (nb q8_0 blocks).
template <class W>
float dot_scalar(const std::uint8_t* w, const std::uint8_t* x, std::size_t nb) {
  float acc[2][8] = {};  // [block parity][lane]
  int q[32];
  for (std::size_t b = 0; b < nb; ++b, x += q8_0::bytes_per_block) {
    const std::uint8_t* wb = block_of<W>(w, b);
    const int run = run_of<W>(b);
    const float dx = load_half(x);
    const float dd = W::has_scale ? W::scale(wb, run) * dx : dx;
    float mm = 0;
    if constexpr (W::has_min) mm = W::min(wb, run) * dx;
    W::values(wb, run, q);
    for (int j = 0; j < 8; ++j) {
      int lane = 0, x_sum = 0;
      for (int k = 4 * j; k < 4 * j + 4; ++k) {
        lane += q[k] * static_cast<std::int8_t>(x[2 + k]);
        x_sum += static_cast<std::int8_t>(x[2 + k]);
      }
      acc[b % 2][j] = std::fma(dd, static_cast<float>(lane), acc[b % 2][j]);
      if constexpr (W::has_min) acc[b % 2][j] = std::fma(mm, static_cast<float>(-x_sum), acc[b % 2][j]);
    }
  }
  return sum_lanes(acc[0], acc[1]);
}

// A tile: NW weight rows times NX activation rows, out[r * NX + i] = dot(w[r], x[i]).
struct scalar_kernel {
  static constexpr int max_nx = 1;
  static constexpr bool reads_pairs = false;  // x[i]: a row of q8_0 blocks
  template <class W, int NW, int NX>
  static void tile(const std::uint8_t* const* w, const std::uint8_t* const* x, std::size_t nb, float* out) {
    for (int r = 0; r < NW; ++r)
      for (int i = 0; i < NX; ++i) out[r * NX + i] = dot_scalar<W>(w[r], x[i], nb);
  }
};

#if LMRL_INT_DOT_X86
LMRL_INT_DOT_AVX2_INLINE float sum_lanes(__m256 even, __m256 odd) {  // sum_lanes's order
  const __m256 a = _mm256_add_ps(even, odd);
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));  // s0 s1 s2 s3
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));                                  // s0+s2 s1+s3
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// The SIMD tiles share one shape: per block, load NX activation blocks (codes,
// scales and minus the sums of 4 codes, from q8_0_rows' pairs), then for
// each of NW weight blocks form the 8 int32 lane sums
// with every activation block and accumulate them, scaled, into acc[r][i]
// (even blocks into one set of accumulators, odd ones into another; Q4_K's
// min term after them, from the minus-sums). They differ in the instructions
// that form the lane sums:
//
// AVX2: vpmaddubsw multiplies unsigned by signed bytes and adds pairs into int16
// (it saturates: the operands are kept small enough never to reach it),
// vpmaddwd adds pairs of those into int32. Signed codes: |w| times x with w's
// sign (at most 2 * 128 * 127 per int16). Unsigned codes (at most 15): c x,
// then offset times minus the sums of x's groups of 4.
template <class W, int NW, int NX>
LMRL_INT_DOT_AVX2_INLINE void block_avx2(const std::uint8_t* const* w, const std::uint8_t* const* x, std::size_t b,
                                         __m256 (&acc)[NW][NX]) {
  constexpr bool biased = !W::signed_codes && W::offset != 0;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i xq[NX], neg_sums[NX];
  __m256 dx[NX], x_sums[NX];  // x_sums: minus x's sums of 4 as floats (has_min)
  for (int i = 0; i < NX; ++i) {
    const auto& xp = reinterpret_cast<const q8_0_pair*>(x[i])[b / 2];
    const std::size_t h = b % 2;
    xq[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp.codes + 32 * h));
    dx[i] = _mm256_loadu_ps(xp.scales + 8 * h);
    if constexpr (biased || W::has_min)
      neg_sums[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp.neg_sums + 8 * h));
    if constexpr (W::has_min) x_sums[i] = _mm256_cvtepi32_ps(neg_sums[i]);
  }
  for (int r = 0; r < NW; ++r) {
    const std::uint8_t* wb = block_of<W>(w[r], b);
    const int run = run_of<W>(b);
    const __m256i c = W::codes(wb, run);
    const __m256i u = W::signed_codes ? _mm256_abs_epi8(c) : c;
    __m256 dw = _mm256_setzero_ps(), mw = _mm256_setzero_ps();
    if constexpr (W::has_min)
      W::scale_min8(wb, run, dw, mw);
    else if constexpr (W::has_scale)
      dw = W::scale8(wb, run);
    for (int i = 0; i < NX; ++i) {
      __m256i lanes;
      if constexpr (W::signed_codes)
        lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(xq[i], c)), ones);
      else
        lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(u, xq[i]), ones);
      if constexpr (biased) lanes = _mm256_add_epi32(lanes, _mm256_slli_epi32(neg_sums[i], offset_shift<W>()));
      const __m256 dd = W::has_scale ? _mm256_mul_ps(dw, dx[i]) : dx[i];
      acc[r][i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes), acc[r][i]);
      if constexpr (W::has_min) acc[r][i] = _mm256_fmadd_ps(_mm256_mul_ps(mw, dx[i]), x_sums[i], acc[r][i]);
    }
  }
}

// AVX-VNNI: vpdpbusd adds the four unsigned-by-signed byte products of each
// lane to an int32, exactly. Every format is made unsigned: signed codes + 128
// (the top bit flipped), the others as they are; each lane's sum starts from
// -offset times the sum of x's 4 codes (a shift of q8_0_rows' minus-sums).
template <class W>
constexpr int vnni_shift() {  // the offset of the unsigned codes, 128 or W's, as a power of 2
  return W::signed_codes ? 7 : offset_shift<W>();
}
template <class W>
constexpr bool vnni_biased() {
  return W::signed_codes || W::offset != 0;
}

template <class W, int NW, int NX>
__attribute__((target("avx2,fma,f16c,avxvnni"), always_inline)) inline void block_avx_vnni(const std::uint8_t* const* w,
                                                                                           const std::uint8_t* const* x,
                                                                                           std::size_t b,
                                                                                           __m256 (&acc)[NW][NX]) {
  __m256i xq[NX], neg_sums[NX], bias[NX];
  __m256 dx[NX], x_sums[NX];  // x_sums: minus x's sums of 4 as floats (has_min)
  for (int i = 0; i < NX; ++i) {
    const auto& xp = reinterpret_cast<const q8_0_pair*>(x[i])[b / 2];
    const std::size_t h = b % 2;
    xq[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp.codes + 32 * h));
    dx[i] = _mm256_loadu_ps(xp.scales + 8 * h);
    neg_sums[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp.neg_sums + 8 * h));
    bias[i] = vnni_biased<W>() ? _mm256_slli_epi32(neg_sums[i], vnni_shift<W>()) : _mm256_setzero_si256();
    if constexpr (W::has_min) x_sums[i] = _mm256_cvtepi32_ps(neg_sums[i]);
  }
  for (int r = 0; r < NW; ++r) {
    const std::uint8_t* wb = block_of<W>(w[r], b);
    const int run = run_of<W>(b);
    const __m256i c = W::codes(wb, run);
    const __m256i u = W::signed_codes ? _mm256_xor_si256(c, _mm256_set1_epi8(-128)) : c;
    __m256 dw = _mm256_setzero_ps(), mw = _mm256_setzero_ps();
    if constexpr (W::has_min)
      W::scale_min8(wb, run, dw, mw);
    else if constexpr (W::has_scale)
      dw = W::scale8(wb, run);
    for (int i = 0; i < NX; ++i) {
      const __m256i lanes = _mm256_dpbusd_avx_epi32(bias[i], u, xq[i]);
      const __m256 dd = W::has_scale ? _mm256_mul_ps(dw, dx[i]) : dx[i];
      acc[r][i] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(lanes), acc[r][i]);
      if constexpr (W::has_min) acc[r][i] = _mm256_fmadd_ps(_mm256_mul_ps(mw, dx[i]), x_sums[i], acc[r][i]);
    }
  }
}

template <class W, int NW, int NX>
LMRL_INT_DOT_AVX2 void tile_avx2(const std::uint8_t* const* w, const std::uint8_t* const* x, std::size_t nb,
                                 float* out) {
  __m256 even[NW][NX];  // the even blocks' sums, then the odd ones' (fewer registers than both at once)
  for (std::size_t parity = 0; parity < 2; ++parity) {
    __m256 acc[NW][NX];
    for (auto& row : acc)
      for (auto& a : row) a = _mm256_setzero_ps();
    for (std::size_t b = parity; b < nb; b += 2) block_avx2<W, NW, NX>(w, x, b, acc);
    for (int r = 0; r < NW; ++r)
      for (int i = 0; i < NX; ++i) {
        if (parity == 0)
          even[r][i] = acc[r][i];
        else
          out[r * NX + i] = sum_lanes(even[r][i], acc[r][i]);
      }
  }
}

template <class W, int NW, int NX>
LMRL_INT_DOT_AVX_VNNI void tile_avx_vnni(const std::uint8_t* const* w, const std::uint8_t* const* x, std::size_t nb,
                                         float* out) {
  __m256 even[NW][NX];  // the even blocks' sums, then the odd ones' (fewer registers than both at once)
  for (std::size_t parity = 0; parity < 2; ++parity) {
    __m256 acc[NW][NX];
    for (auto& row : acc)
      for (auto& a : row) a = _mm256_setzero_ps();
    for (std::size_t b = parity; b < nb; b += 2) block_avx_vnni<W, NW, NX>(w, x, b, acc);
    for (int r = 0; r < NW; ++r)
      for (int i = 0; i < NX; ++i) {
        if (parity == 0)
          even[r][i] = acc[r][i];
        else
          out[r * NX + i] = sum_lanes(even[r][i], acc[r][i]);
      }
  }
}

// AVX512-VNNI: as AVX-VNNI, two blocks at a time in 512-bit registers: lanes
// 0-7 hold an even block, lanes 8-15 the odd one after it, so one register
// accumulates both of sum_lanes's halves. An odd last block updates lanes 0-7 only.
// (GCC 12 warns that the unmasked forms of some AVX-512 intrinsics read an
// undefined value, _mm512_undefined_ps: the zero-masked forms say the same without it.)
#define LMRL_INT_DOT_AVX512_INLINE \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) inline
LMRL_INT_DOT_AVX512_INLINE __m512i join(__m256i low, __m256i high) {
  return _mm512_maskz_inserti64x4(0xff, _mm512_castsi256_si512(low), high, 1);
}
LMRL_INT_DOT_AVX512_INLINE __m512 join(__m256 low, __m256 high) {
  return _mm512_castsi512_ps(join(_mm256_castps_si256(low), _mm256_castps_si256(high)));
}
LMRL_INT_DOT_AVX512_INLINE __m512i zero_extend(__m256i low) {
  return _mm512_maskz_inserti64x4(0xff, _mm512_setzero_si512(), low, 0);
}

template <class W, int NW, int NX>
LMRL_INT_DOT_AVX512_VNNI void tile_avx512_vnni(const std::uint8_t* const* w, const std::uint8_t* const* x,
                                               std::size_t nb, float* out) {
  const __m512i flip = _mm512_set1_epi8(-128);
  __m512 acc[NW][NX];
  for (auto& row : acc)
    for (auto& a : row) a = _mm512_setzero_ps();
  // blocks b and b + 1 (both when `both`, else b alone in lanes 0-7 and zeros above)
  for (std::size_t b = 0; b < nb; b += 2) {
    const bool both = b + 1 < nb;
    const __mmask16 lanes_used = both ? 0xffff : 0x00ff;
    __m512i xq[NX], neg_sums[NX], bias[NX];
    __m512 dx[NX], x_sums[NX];
    for (int i = 0; i < NX; ++i) {  // (an odd last block's partner is zeros)
      const auto& xp = reinterpret_cast<const q8_0_pair*>(x[i])[b / 2];
      xq[i] = _mm512_loadu_si512(xp.codes);
      dx[i] = _mm512_loadu_ps(xp.scales);
      neg_sums[i] = _mm512_loadu_si512(xp.neg_sums);
      bias[i] = vnni_biased<W>() ? _mm512_maskz_slli_epi32(0xffff, neg_sums[i], vnni_shift<W>()) : _mm512_setzero_si512();
      if constexpr (W::has_min) x_sums[i] = _mm512_maskz_cvtepi32_ps(0xffff, neg_sums[i]);
    }
    for (int r = 0; r < NW; ++r) {
      const std::uint8_t* wb = block_of<W>(w[r], b);
      const std::uint8_t* wb1 = both ? block_of<W>(w[r], b + 1) : wb;
      const int run = run_of<W>(b), run1 = run_of<W>(b + 1);
      const __m512i c = both ? join(W::codes(wb, run), W::codes(wb1, run1)) : zero_extend(W::codes(wb, run));
      const __m512i u = W::signed_codes ? _mm512_xor_si512(c, flip) : c;
      __m512 dw = _mm512_setzero_ps(), mw = _mm512_setzero_ps();
      if constexpr (W::has_min) {
        __m256 s0, m0, s1, m1;
        W::scale_min8(wb, run, s0, m0);
        W::scale_min8(wb1, run1, s1, m1);  // (wb1 is wb when !both: lanes 8-15 are not used)
        dw = join(s0, s1);
        mw = join(m0, m1);
      } else if constexpr (W::has_scale) {
        const __m256 s = W::scale8(wb, run);
        dw = join(s, both ? W::scale8(wb1, run1) : s);
      }
      for (int i = 0; i < NX; ++i) {
        const __m512i lanes = _mm512_dpbusd_epi32(bias[i], u, xq[i]);
        const __m512 dd = W::has_scale ? _mm512_mul_ps(dw, dx[i]) : dx[i];
        acc[r][i] = _mm512_mask3_fmadd_ps(dd, _mm512_maskz_cvtepi32_ps(0xffff, lanes), acc[r][i], lanes_used);
        if constexpr (W::has_min)
          acc[r][i] = _mm512_mask3_fmadd_ps(_mm512_mul_ps(mw, dx[i]), x_sums[i], acc[r][i], lanes_used);
      }
    }
  }
  for (int r = 0; r < NW; ++r)
    for (int i = 0; i < NX; ++i) {
      const __m512d both = _mm512_castps_pd(acc[r][i]);
      const __m256 even = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xff, both, 0));
      const __m256 odd = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xff, both, 1));
      out[r * NX + i] = sum_lanes(even, odd);
    }
}
#undef LMRL_INT_DOT_AVX512_INLINE

struct avx2_kernel {
  static constexpr int max_nx = 2;           // 16 ymm registers: 4 x 2 accumulators and the operands
  static constexpr bool reads_pairs = true;  // x[i]: a row of q8_0_pairs
  template <class W, int NW, int NX>
  static void tile(const std::uint8_t* const* w, const std::uint8_t* const* x, std::size_t nb, float* out) {
    tile_avx2<W, NW, NX>(w, x, nb, out);
  }
};
struct avx_vnni_kernel {
  static constexpr int max_nx = 2;
  static constexpr bool reads_pairs = true;
  template <class W, int NW, int NX>
  static void tile(const std::uint8_t* const* w, const std::uint8_t* const* x, std::size_t nb, float* out) {
    tile_avx_vnni<W, NW, NX>(w, x, nb, out);
  }
};
struct avx512_vnni_kernel {
  static constexpr int max_nx = 4;  // 32 zmm registers
  static constexpr bool reads_pairs = true;
  template <class W, int NW, int NX>
  static void tile(const std::uint8_t* const* w, const std::uint8_t* const* x, std::size_t nb, float* out) {
    tile_avx512_vnni<W, NW, NX>(w, x, nb, out);
  }
};
#endif

// Calls f(kernel) with the kernel type of `path` (which the caller has checked).
template <class F>
decltype(auto) with_kernel([[maybe_unused]] int_dot_path path, F&& f) {
#if LMRL_INT_DOT_X86
  switch (path) {
    case int_dot_path::avx2:
      return f(avx2_kernel{});
    case int_dot_path::avx512_vnni:
      return f(avx512_vnni_kernel{});
    case int_dot_path::avx_vnni:
      return f(avx_vnni_kernel{});
    case int_dot_path::scalar:
      break;
  }
#endif
  return f(scalar_kernel{});
}

template <class W>
float vec_dot(const char* function, const std::uint8_t* w, std::size_t w_bytes, std::span<const std::uint8_t> x,
              int_dot_path path) {
  require_int_dot_path(function, path);
  require(x.size() % q8_0::bytes_per_block == 0, function, ": x has ", x.size(),
          " bytes, not a whole number of q8_0 blocks of ", q8_0::bytes_per_block);
  const std::size_t nb = x.size() / q8_0::bytes_per_block;
  require(w_bytes == row_bytes_for<W>(nb), function, ": x is ", nb, " blocks, so w needs ", row_bytes_for<W>(nb),
          " bytes; it has ", w_bytes);
  float out = 0;
  with_kernel(path, [&](auto kernel) {
    using K = decltype(kernel);
    const std::uint8_t* xp = x.data();
#if LMRL_INT_DOT_X86
    if constexpr (K::reads_pairs) {
      thread_local std::vector<q8_0_pair> pairs;
      pairs.resize((nb + 1) / 2);
      pair_up_q8_0(x.data(), nb, pairs.data());
      xp = reinterpret_cast<const std::uint8_t*>(pairs.data());
    }
#endif
    K::template tile<W, 1, 1>(&w, &xp, nb, &out);
  });
  return out;
}

}  // namespace detail::int_kernels

// ---------------------------------------------------------------- block dots

// w: nb q8_0 blocks; x: nb q8_0 blocks (codes in [-127, 127]).
inline float vec_dot_q8_0_q8_0(std::span<const std::uint8_t> w, std::span<const std::uint8_t> x,
                               int_dot_path path = best_int_dot_path()) {
  return detail::int_kernels::vec_dot<detail::int_kernels::q8_0_weights>("vec_dot_q8_0_q8_0", w.data(), w.size(), x,
                                                                         path);
}
// w: nb q4_0 blocks; x: nb q8_0 blocks.
inline float vec_dot_q4_0_q8_0(std::span<const std::uint8_t> w, std::span<const std::uint8_t> x,
                               int_dot_path path = best_int_dot_path()) {
  return detail::int_kernels::vec_dot<detail::int_kernels::q4_0_weights>("vec_dot_q4_0_q8_0", w.data(), w.size(), x,
                                                                         path);
}
// w: 32 nb int8 codes (a row of int8_rows, padded); x: nb q8_0 blocks. The
// row's scale is not applied: multiply the result by it.
inline float vec_dot_i8_q8_0(std::span<const std::int8_t> w, std::span<const std::uint8_t> x,
                             int_dot_path path = best_int_dot_path()) {
  return detail::int_kernels::vec_dot<detail::int_kernels::i8_weights>(
      "vec_dot_i8_q8_0", reinterpret_cast<const std::uint8_t*>(w.data()), w.size(), x, path);
}
// w: ceil(nb / 8) q4_k blocks (sub-block j of w's block b / 8 against x's block b; sub-blocks
// past x's last block are not read); x: nb q8_0 blocks.
inline float vec_dot_q4_k_q8_0(std::span<const std::uint8_t> w, std::span<const std::uint8_t> x,
                               int_dot_path path = best_int_dot_path()) {
  return detail::int_kernels::vec_dot<detail::int_kernels::q4_k_weights>("vec_dot_q4_k_q8_0", w.data(), w.size(), x,
                                                                         path);
}
// w: ceil(nb / 8) tq2_0 blocks (as q4_k's); x: nb q8_0 blocks.
inline float vec_dot_tq2_0_q8_0(std::span<const std::uint8_t> w, std::span<const std::uint8_t> x,
                                int_dot_path path = best_int_dot_path()) {
  return detail::int_kernels::vec_dot<detail::int_kernels::tq2_0_weights>("vec_dot_tq2_0_q8_0", w.data(), w.size(),
                                                                          x, path);
}

}  // namespace lmrl
