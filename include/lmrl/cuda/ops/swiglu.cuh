// SwiGLU's elementwise middle on the GPU: the CUDA twin of model/ops/swiglu.hpp
// (the math and its conventions are stated there). Over `count` elements of
// same-shaped device buffers (an [n x f] matrix is count = n*f):
//
//   out = silu(gate) * up,   silu(g) = g s,  s = sigmoid(g) = 1 / (1 + exp(-g))
//   backward (OVERWRITES, as on the CPU):
//     grad_up   = grad_out * g s
//     grad_gate = grad_out * up * s (1 + g (1 - s))      (d silu / dg)
//
// Launchers (namespace lmrl::cuda, asynchronous on `stream`):
//   swiglu_forward(gate, up, count, out, stream)
//   swiglu_backward(gate, up, grad_out, count, grad_gate, grad_up, stream)
//
// Kernels: one thread per element in a grid-stride loop (coalesced). exp is
// CUDA's expf/exp (within 2 ulp; the host's is within 1), so results agree with
// the CPU op to a few ulp, not bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

namespace detail {

inline constexpr int swiglu_threads = 256;

template <class T>
__device__ T swiglu_sigmoid(T g) {
  if constexpr (std::is_same_v<T, float>)
    return 1.0f / (1.0f + expf(-g));
  else
    return T(1) / (T(1) + exp(-g));
}

template <class T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, index_t count, T* out) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += step) {
    const T g = gate[k];
    out[k] = g * swiglu_sigmoid(g) * up[k];
  }
}

template <class T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* grad_out, index_t count, T* grad_gate,
                                       T* grad_up) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += step) {
    const T g = gate[k], u = up[k], dy = grad_out[k];
    const T s = swiglu_sigmoid(g);
    grad_up[k] = dy * g * s;
    grad_gate[k] = dy * u * s * (T(1) + g * (T(1) - s));
  }
}

inline unsigned swiglu_blocks(index_t count) {
  return static_cast<unsigned>(std::min<index_t>((count + swiglu_threads - 1) / swiglu_threads, index_t{1} << 20));
}

}  // namespace detail

// out = silu(gate) * up.
template <class T>
void swiglu_forward(const T* gate, const std::type_identity_t<T>* up, index_t count, std::type_identity_t<T>* out,
                    cudaStream_t stream) {
  static_assert(std::is_floating_point_v<T>);
  const char* f = "lmrl::cuda::swiglu_forward";
  lmrl::detail::require(count >= 0, f, ": count = ", count, " must not be negative");
  if (count == 0) return;
  lmrl::detail::require(gate != nullptr && up != nullptr && out != nullptr, f,
                        ": gate, up and out must be device pointers, not null");
  cuda::launch(detail::swiglu_forward_kernel<T>, detail::swiglu_blocks(count), detail::swiglu_threads, 0, stream, gate,
      up, count, out);
  LMRL_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

// grad_gate and grad_up overwritten with dL/dgate and dL/dup.
template <class T>
void swiglu_backward(const T* gate, const std::type_identity_t<T>* up, const std::type_identity_t<T>* grad_out,
                     index_t count, std::type_identity_t<T>* grad_gate, std::type_identity_t<T>* grad_up,
                     cudaStream_t stream) {
  static_assert(std::is_floating_point_v<T>);
  const char* f = "lmrl::cuda::swiglu_backward";
  lmrl::detail::require(count >= 0, f, ": count = ", count, " must not be negative");
  if (count == 0) return;
  lmrl::detail::require(
      gate != nullptr && up != nullptr && grad_out != nullptr && grad_gate != nullptr && grad_up != nullptr, f,
      ": gate, up, grad_out, grad_gate and grad_up must be device pointers, not null");
  cuda::launch(detail::swiglu_backward_kernel<T>, detail::swiglu_blocks(count), detail::swiglu_threads, 0, stream, gate,
      up, grad_out, count, grad_gate, grad_up);
  LMRL_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace lmrl::cuda
