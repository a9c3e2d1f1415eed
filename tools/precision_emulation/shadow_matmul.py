#!/usr/bin/env python3
"""Writes OUT/lmrl/model/ops/matmul.hpp: a copy of include/lmrl/model/ops/matmul.hpp whose
matmul_nt / matmul_nn / matmul_tn round both float operands to `ops::emulate_mantissa_bits`
explicit mantissa bits (round to nearest even) before the product; float accumulation as before.
A matmul_nt whose weight (b) is in `ops::emulate_fp8_weights` instead takes both operands through
FP8 E4M3 with DeepSeek-V3's block scales (quant/fp8_blocks.hpp: a in 1 x 128 tiles, b in 128 x 128
blocks), quantized and dequantized: the GPU's fp8 precision for the layers' forward products.
Put OUT first on the include path and transformer<float> computes as a GPU's tf32 (10 bits),
bf16 (7 bits) or fp8 products do. Used by precision_emulation.sh."""
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parents[2]
out = pathlib.Path(sys.argv[1]) / "lmrl/model/ops/matmul.hpp"
src = (root / "include/lmrl/model/ops/matmul.hpp").read_text()

helper = '''}  // namespace detail

// Emulation only (tools/precision_emulation): 0 = off, else the operands' explicit mantissa bits.
inline int emulate_mantissa_bits = 0;
inline float round_mantissa(float x) {
  if (emulate_mantissa_bits == 0 || !std::isfinite(x)) return x;
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  const int drop = 23 - emulate_mantissa_bits;
  u = (u + (1u << (drop - 1)) - 1 + ((u >> drop) & 1u)) & ~((1u << drop) - 1);  // round to nearest even
  std::memcpy(&x, &u, 4);
  return x;
}
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rounded(const matrix_view<const T>& m) {
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> r = detail::map(m);
  if constexpr (std::is_same_v<T, float>)
    for (Eigen::Index i = 0; i < r.size(); ++i) r.data()[i] = round_mantissa(r.data()[i]);
  return r;
}
// Emulation only: the weights whose nt products go through FP8 blocks.
inline std::set<const void*> emulate_fp8_weights;
template <class T>
bool fp8_product(const matrix_view<const T>& w) {
  return std::is_same_v<T, float> && emulate_fp8_weights.count(static_cast<const void*>(w.data)) > 0;
}
// m quantized in tiles of tile_rows x 128 (quant/fp8_blocks.hpp) and dequantized.
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> fp8_dequantized(const matrix_view<const T>& m,
                                                                                    index_t tile_rows) {
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> r = detail::map(m);
  if constexpr (std::is_same_v<T, float>) {
    const index_t R = m.shape[0], K = m.shape[1], tiles = (R + tile_rows - 1) / tile_rows;
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(R * K));
    std::vector<float> scales(static_cast<std::size_t>(tiles * lmrl::detail::blocks_of(K)));
    lmrl::detail::quantize_fp8_tiles("emulation", "m", matrix_view<const float>(r.data(), {R, K}), tile_rows,
                                     matrix_view<std::uint8_t>(codes.data(), {R, K}),
                                     matrix_view<float>(scales.data(), {tiles, lmrl::detail::blocks_of(K)}));
    const float* value = lmrl::detail::fp8_e4m3_values();
    for (index_t i = 0; i < R; ++i)
      for (index_t k = 0; k < K; ++k)
        r(i, k) = value[codes[static_cast<std::size_t>(i * K + k)]] *
                  scales[static_cast<std::size_t>((i / tile_rows) * lmrl::detail::blocks_of(K) + k / fp8_block)];
  }
  return r;
}
template <class T>
auto nt_activation(const matrix_view<const T>& a, const matrix_view<const T>& w) {
  return fp8_product(w) ? fp8_dequantized<T>(a, 1) : rounded<T>(a);
}
template <class T>
auto nt_weight(const matrix_view<const T>& w) {
  return fp8_product(w) ? fp8_dequantized<T>(w, fp8_block) : rounded<T>(w);
}
'''
replacements = [
    ("}  // namespace detail\n", helper),
    ("detail::map(a) * detail::map(b).transpose()", "nt_activation<T>(a, b) * nt_weight<T>(b).transpose()"),
    ("detail::map(a) * detail::map(b), accumulate", "rounded<T>(a) * rounded<T>(b), accumulate"),
    ("detail::map(a).transpose() * detail::map(b)", "rounded<T>(a).transpose() * rounded<T>(b)"),
    ("#pragma once\n", "#pragma once\n#include <cmath>\n#include <cstdint>\n#include <cstring>\n#include <set>\n"
     "#include <vector>\n#include \"lmrl/quant/fp8_blocks.hpp\"\n"),
]
for old, new in replacements:
    if src.count(old) != 1:
        sys.exit(f"shadow_matmul.py: matmul.hpp changed: {old!r} found {src.count(old)} times")
    src = src.replace(old, new)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(src)
