// quiet_nan<T>(): a quiet NaN of float or double in device code, where a
// kernel marks a row it cannot compute (a kernel cannot throw).
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

}  // namespace lmrl::cuda
