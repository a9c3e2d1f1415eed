#!/usr/bin/env python3
"""Writes OUT/lmrl/model/ops/matmul.hpp: a copy of include/lmrl/model/ops/matmul.hpp whose
matmul_nt / matmul_nn / matmul_tn round both float operands to `ops::emulate_mantissa_bits`
explicit mantissa bits (round to nearest even) before the product; float accumulation as before.
Put OUT first on the include path and transformer<float> computes as a GPU's tf32 (10 bits) or
bf16 (7 bits) products do. Used by precision_emulation.sh."""
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
'''
replacements = [
    ("}  // namespace detail\n", helper),
    ("detail::map(a) * detail::map(b).transpose()", "rounded<T>(a) * rounded<T>(b).transpose()"),
    ("detail::map(a) * detail::map(b), accumulate", "rounded<T>(a) * rounded<T>(b), accumulate"),
    ("detail::map(a).transpose() * detail::map(b)", "rounded<T>(a).transpose() * rounded<T>(b)"),
    ("#pragma once\n", "#pragma once\n#include <cmath>\n#include <cstdint>\n#include <cstring>\n"),
]
for old, new in replacements:
    if src.count(old) != 1:
        sys.exit(f"shadow_matmul.py: matmul.hpp changed: {old!r} found {src.count(old)} times")
    src = src.replace(old, new)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(src)
