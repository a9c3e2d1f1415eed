// quiet_nan<T>(): a quiet NaN of float or double in device code, where a
// kernel marks a row it cannot compute (a kernel cannot throw); nan_max(a, b):
// the larger, or NaN when either is (fmaxf would drop a NaN); block_max(v): nan_max over a block's threads.
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

// max over the block's threads of v >= 0 (an |x|), NaN if any is (every thread gets it); blockDim.x a multiple
// of 32, at most 1024. Every thread of the block must call it (it synchronizes).
__device__ inline float block_max(float v) {
  __shared__ float warp_max[32];
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x) / 32 ? warp_max[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) warp_max[0] = v;
  }
  __syncthreads();
  const float m = warp_max[0];
  __syncthreads();  // warp_max may be reused by a later call
  return m;
}

}  // namespace lmrl::cuda
