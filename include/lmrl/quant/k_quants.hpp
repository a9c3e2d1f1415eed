// ggml's Q4_K super-block, byte for byte (ggml-quants.c's quantize_row_q4_K_ref
// and dequantize_row_q4_K; the test compares with ggml's own output,
// tests/data/quant_reference.txt from tools/ggml_q4_k_reference.c). 256 values
// in 8 sub-blocks of 32; each sub-block j has a scale and a min, themselves
// stored in 6 bits against two half-precision super-block scales d and dmin.
//
//   Q4_K, 144 bytes: half d, half dmin, scales[12] (sc_j, m_j: 6 bits each), qs[128] (q_i: 4 bits)
//                    x_i ~ d sc_j q_i - dmin m_j              (j = i / 32)
//
//   sub-block fit (make_qkx2_quants), weights w_i = sqrt(mean_j x^2) + |x_i|:
//     lo = min(0, min_j x), hi = max_j x;  first s = (hi - lo) / 15, q_i = round((x_i - lo) / s);
//     for t = 0..20: q_i = clamp(round((14 + t/10) (x_i - lo) / (hi - lo)), 0, 15),
//                    (s, lo) = the w-weighted least squares fit x ~ s q + lo (lo <= 0),
//                    kept when sum w (s q + lo - x)^2 is smaller;   s_j = s, mu_j = -lo
//   d    = s_max / 63,  sc_j = round(63 s_j / s_max)    (s_max = max_j s_j)
//   dmin = mu_max / 63, m_j  = round(63 mu_j / mu_max)
//   q_i  = clamp(round((x_i + dmin m_j) / (d sc_j)), 0, 15);  where d sc_j = 0 the fit's q_i stay
//   round() is ggml's nearest_int: add 1.5 * 2^23 in float and read the low mantissa bits
//   (ties to even). d and dmin are halves, read back before the q_i are computed.
//
// Packing (ggml's get_scale_min_k4): for j < 4, scales[j] and scales[j + 4] hold sc_j and m_j
// in their low 6 bits; for j >= 4, scales[j + 4] holds sc_j's low nibble (low) and m_j's (high),
// and their top 2 bits sit in bits 6-7 of scales[j - 4] (sc_j) and scales[j] (m_j).
// qs: 32 bytes per 64-value chunk c, byte l holding q_{64c+l} low and q_{64c+32+l} high.
//
// Floats, not doubles, in ggml's order of operations. ggml's x86 builds round every
// product before it is added (its ggml-base library gets no -march flags); here a
// product that feeds a sum goes through product() below, so that -march=native with
// FMA cannot fuse it and round once instead of twice. (ggml compiled with contraction,
// gcc's default wherever FMA is in the base ISA such as ARM64, gives other bytes for
// about 3 blocks in 100.)
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>

#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/quantizer.hpp"

namespace lmrl {

namespace detail::k_quants {

// a * b rounded to float on its own: a volatile store ends the expression, so a
// following + or - cannot be fused with it into one fused multiply-add.
inline float product(float a, float b) {
  const volatile float p = a * b;
  return p;
}

// ggml's nearest_int: 12582912 = 1.5 * 2^23; for |v| < 2^22 the sum's low 23
// mantissa bits are v rounded to nearest (ties to even), offset by 2^22.
// The volatile keeps a caller's a * b from being fused with the addition.
inline int nearest_int(float v) {
  const volatile float rounded = v;
  const float shifted = rounded + 12582912.0f;
  return (std::bit_cast<std::int32_t>(shifted) & 0x007fffff) - 0x00400000;
}

// make_qkx2_quants(32, 15, x, w, L, &the_min, Laux, -1, 0.1, 20, false): codes into
// `codes`, returns the scale s, writes mu = -lo (>= 0, may be -0) into `the_min`.
inline float fit_sub_block(std::span<const float, 32> x, std::span<const float, 32> w,
                           std::span<std::uint8_t, 32> codes, float& the_min) {
  constexpr std::size_t n = 32;
  constexpr int nmax = 15, nstep = 20;
  constexpr float rmin = -1.0f, rdelta = 0.1f;
  float lo = x[0], hi = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (std::size_t i = 1; i < n; ++i) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    sum_w += w[i];
    sum_x += product(w[i], x[i]);
  }
  if (lo > 0) lo = 0;
  if (hi == lo) {
    std::fill(codes.begin(), codes.end(), std::uint8_t{0});
    the_min = -lo;
    return 0.0f;
  }
  const auto clamp = [&](int l) { return std::max(0, std::min(nmax, l)); };
  float iscale = static_cast<float>(nmax) / (hi - lo);
  float scale = 1 / iscale;
  float best_error = 0;
  for (std::size_t i = 0; i < n; ++i) {
    codes[i] = static_cast<std::uint8_t>(clamp(nearest_int(iscale * (x[i] - lo))));
    const float diff = product(scale, codes[i]) + lo - x[i];  // (scale L + lo) - x
    best_error += product(w[i], diff * diff);
  }
  std::array<std::uint8_t, n> trial;
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + product(rdelta, static_cast<float>(is)) + nmax) / (hi - lo);  // ((rmin + rdelta is) + nmax)
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const int l = clamp(nearest_int(iscale * (x[i] - lo)));
      trial[i] = static_cast<std::uint8_t>(l);
      const float wl = product(w[i], static_cast<float>(l));  // w*l*l and w*l*x in C are (w*l)*l, (w*l)*x
      sum_l += wl;
      sum_l2 += product(wl, static_cast<float>(l));
      sum_xl += product(wl, x[i]);
    }
    const float det = product(sum_w, sum_l2) - product(sum_l, sum_l);
    if (det > 0) {
      float this_scale = (product(sum_w, sum_xl) - product(sum_x, sum_l)) / det;
      float this_min = (product(sum_l2, sum_x) - product(sum_l, sum_xl)) / det;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const float diff = product(this_scale, trial[i]) + this_min - x[i];
        cur_error += product(w[i], diff * diff);
      }
      if (cur_error < best_error) {
        std::copy(trial.begin(), trial.end(), codes.begin());
        best_error = cur_error;
        scale = this_scale;
        lo = this_min;
      }
    }
  }
  the_min = -lo;
  return scale;
}

// ggml's get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 packed bytes. (constexpr: the GPU's
// integer products call it too, cuda/ops/int_gemm.cuh.)
constexpr void scale_min(int j, const std::uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace detail::k_quants

struct q4_k {
  static constexpr std::size_t block_size = 256;
  static constexpr std::size_t bytes_per_block = 2 + 2 + 12 + 128;
  static constexpr const char* name = "q4_k";

  void quantize_block(std::span<const float> x, std::span<std::uint8_t> out) const {
    namespace k = detail::k_quants;
    detail::require_finite_block(name, x);
    std::array<std::uint8_t, 256> codes;
    std::array<float, 32> weights;
    std::array<float, 8> scales, mins;
    float max_scale = 0, max_min = 0;
    for (std::size_t j = 0; j < 8; ++j) {
      const auto xj = x.subspan(32 * j).first<32>();
      float sum_x2 = 0;
      for (float v : xj) sum_x2 += k::product(v, v);
      const float av_x = std::sqrt(sum_x2 / 32);
      for (std::size_t l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xj[l]);
      scales[j] = k::fit_sub_block(xj, weights, std::span(codes).subspan(32 * j).first<32>(), mins[j]);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }

    std::uint8_t* packed = out.data() + 4;
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (std::size_t j = 0; j < 8; ++j) {
      // uint8_t, then at most 63, as ggml: a negative code would wrap to a large one and clamp to 63
      const auto ls = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(k::nearest_int(inv_scale * scales[j])));
      const auto lm = std::min<std::uint8_t>(63, static_cast<std::uint8_t>(k::nearest_int(inv_min * mins[j])));
      if (j < 4) {
        packed[j] = ls;
        packed[j + 4] = lm;
      } else {  // j - 4 and j are below 8: written (=) at j - 4 < 4, before these |=
        packed[j + 4] = static_cast<std::uint8_t>((ls & 0xf) | ((lm & 0xf) << 4));
        packed[j - 4] |= static_cast<std::uint8_t>((ls >> 4) << 6);
        packed[j] |= static_cast<std::uint8_t>((lm >> 4) << 6);
      }
    }
    detail::store_half(out.data(), max_scale / 63.0f);
    detail::store_half(out.data() + 2, max_min / 63.0f);

    // The codes again, against the stored (half, 6-bit) scale and min.
    const float d_all = detail::load_half(out.data()), dmin_all = detail::load_half(out.data() + 2);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      k::scale_min(j, packed, sc, m);
      const float d = d_all * static_cast<float>(sc);  // a half times 6 bits: exact
      if (d == 0) continue;                             // the fit's codes stay
      const float dm = dmin_all * static_cast<float>(m);
      for (std::size_t i = 32 * static_cast<std::size_t>(j); i < 32 * static_cast<std::size_t>(j) + 32; ++i)
        codes[i] = static_cast<std::uint8_t>(std::max(0, std::min(15, k::nearest_int((x[i] + dm) / d))));
    }

    std::uint8_t* qs = out.data() + 16;
    for (std::size_t c = 0; c < 4; ++c)
      for (std::size_t l = 0; l < 32; ++l)
        qs[32 * c + l] = static_cast<std::uint8_t>(codes[64 * c + l] | (codes[64 * c + 32 + l] << 4));
  }

  // y = (d sc) q - dmin m. d sc and (d sc) q are exact in float (11 + 6 + 4 significant
  // bits), so a fused multiply-add gives the same float: no product() needed here.
  void dequantize_block(std::span<const std::uint8_t> in, std::span<float> y) const {
    const float d = detail::load_half(in.data()), dmin = detail::load_half(in.data() + 2);
    const std::uint8_t* packed = in.data() + 4;
    const std::uint8_t* qs = in.data() + 16;
    for (std::size_t c = 0; c < 4; ++c) {
      int sc, m;
      detail::k_quants::scale_min(static_cast<int>(2 * c), packed, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      detail::k_quants::scale_min(static_cast<int>(2 * c + 1), packed, sc, m);
      const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
      for (std::size_t l = 0; l < 32; ++l) {
        y[64 * c + l] = d1 * static_cast<float>(qs[32 * c + l] & 0xf) - m1;
        y[64 * c + 32 + l] = d2 * static_cast<float>(qs[32 * c + l] >> 4) - m2;
      }
    }
  }
};

static_assert(Quantizer<q4_k>);

}  // namespace lmrl
