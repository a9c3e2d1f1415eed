// The reference copy's device work (train/reference_copy.hpp's
// DeviceReferenceModel, cuda::transformer_gpu_policy with
// parameter_uploads::device_steps): the swap of the parameters with the
// copy, and TRL's sync_ref_model mix-up, on device buffers.
//
//   lmrl::cuda::swap_values(params, ref, n, stream);             // queued
//   lmrl::cuda::mixup_reference(ref, params, 0.6f, n, stream);   // ref = 0.6 params + 0.4 ref, queued
//
// The mix-up rounds each product and the sum (no fused multiply-add), as the
// CPU's mixup_reference written in plain float arithmetic does; a host
// compiler that contracts the CPU's expression into an FMA may differ in the
// last bit.
// Status: compiled (CUDA 13, sm_80 and sm_90), NOT yet run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl::cuda {

namespace reference_detail {

constexpr int block = 256;

inline unsigned blocks_for(index_t n) { return static_cast<unsigned>(std::min<index_t>((n + block - 1) / block, 4096)); }

template <class T>
__global__ void swap_kernel(T* __restrict__ a, T* __restrict__ b, index_t n) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T t = a[i];
    a[i] = b[i];
    b[i] = t;
  }
}

template <class T>
__global__ void mixup_kernel(T* __restrict__ ref, const T* __restrict__ policy, T alpha, index_t n) {
  const T keep = T(1) - alpha;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if constexpr (std::is_same_v<T, float>)
      ref[i] = __fadd_rn(__fmul_rn(alpha, policy[i]), __fmul_rn(keep, ref[i]));
    else
      ref[i] = __dadd_rn(__dmul_rn(alpha, policy[i]), __dmul_rn(keep, ref[i]));
  }
}

inline void require_buffers(const char* f, const void* a, const void* b, index_t n) {
  lmrl::detail::require(n >= 0, f, ": n = ", n, " must be >= 0");
  lmrl::detail::require(n == 0 || (a != nullptr && b != nullptr), f, ": a buffer is null");
}

}  // namespace reference_detail

// a[i] <-> b[i] for i < n, queued on the stream (a and b do not overlap).
template <Real T>
void swap_values(T* a, T* b, index_t n, cudaStream_t stream = nullptr) {
  using namespace reference_detail;
  require_buffers("cuda::swap_values", a, b, n);
  if (n == 0) return;
  cuda::launch(swap_kernel<T>, blocks_for(n), block, 0, stream, a, b, n);
  LMRL_CUDA_CHECK_LAUNCH("swap_kernel");
}

// ref[i] = alpha * policy[i] + (1 - alpha) * ref[i] for i < n, queued on the stream.
template <Real T>
void mixup_reference(T* ref, const T* policy, T alpha, index_t n, cudaStream_t stream = nullptr) {
  using namespace reference_detail;
  require_buffers("cuda::mixup_reference", ref, policy, n);
  if (n == 0) return;
  cuda::launch(mixup_kernel<T>, blocks_for(n), block, 0, stream, ref, policy, alpha, n);
  LMRL_CUDA_CHECK_LAUNCH("mixup_kernel");
}

}  // namespace lmrl::cuda
