// quiet_nan<T>(): a quiet NaN of float or double in device code, where a
// kernel marks a row it cannot compute (a kernel cannot throw); nan_max(a, b):
// the larger, or NaN when either is (fmaxf would drop a NaN).
#pragma once

#include <type_traits>

namespace lmrl::cuda {

template <class T>
__device__ T quiet_nan() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "quiet_nan: float or double");
  if constexpr (std::is_same_v<T, float>)
    return nanf("");
  else
    return nan("");
}

__device__ inline float nan_max(float a, float b) { return a != a || b != b ? quiet_nan<float>() : fmaxf(a, b); }

}  // namespace lmrl::cuda
