// Rotary position embeddings on the GPU: the CUDA twin of model/ops/rope.hpp
// (the math and its conventions are stated there). Hugging Face's rotate_half
// convention (Llama, Qwen2): head h of row r is x[r, h*hd : (h+1)*hd], split into
// halves x1 = its first hd/2 elements and x2 = its last hd/2 (NOT interleaved
// pairs); with p = positions[r] and c_i = cos(a_i), s_i = sin(a_i) from the table,
//
//   forward:   y1 = x1 c - x2 s,    y2 = x2 c + x1 s
//   backward:  dx1 = dy1 c + dy2 s, dx2 = dy2 c - dy1 s      (the inverse rotation)
//
// both in place. A negative position marks a padded row, left unchanged.
//
// Launchers (namespace lmrl::cuda, asynchronous on `stream`; x is [n x heads*head_dim]):
//   rope_forward(cos_table, sin_table, head_dim, max_positions, x, positions, n, heads, stream)
//   rope_backward(cos_table, sin_table, head_dim, max_positions, grad, positions, n, heads, stream)
// cos_table and sin_table are the tables of ops::rope_table<T> (model/ops/rope.hpp)
// copied to the device: max_positions rows of head_dim/2 values, row p at
// p*head_dim/2 (the host's table.cos(0) and table.sin(0) point at them), so the
// GPU rotates by the very numbers the CPU does. positions [n] are index_t, on
// the device; x is contiguous and row-major.
//
// A kernel cannot throw: where the CPU op reports a position >= max_positions
// as an lmrl::error, this one writes that row's heads as NaN (so the mistake
// shows in the loss) and never reads outside the table.
//
// Kernel: one thread per (row, head, i < hd/2) pair, consecutive threads on
// consecutive i (coalesced), a grid-stride loop; each thread reads and writes
// only its own two elements, so in place is race-free.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <type_traits>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/quiet_nan.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

namespace detail {

inline constexpr int rope_threads = 256;


template <class T, bool Inverse>
__global__ void rope_kernel(const T* cos_table, const T* sin_table, index_t half, index_t max_positions, T* x,
                            const index_t* positions, index_t n, index_t heads) {
  const index_t pairs = n * heads * half;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t k = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < pairs; k += step) {
    const index_t i = k % half;
    const index_t head = k / half;  // r * heads + h: heads are laid out one after another, rows too
    const index_t p = positions[head / heads];
    if (p < 0) continue;  // padded row
    T* v = x + head * 2 * half;
    if (p >= max_positions) {
      v[i] = v[i + half] = quiet_nan<T>();
      continue;
    }
    const T c = cos_table[p * half + i], s = sin_table[p * half + i];
    const T a = v[i], b = v[i + half];
    if constexpr (Inverse) {
      v[i] = a * c + b * s;
      v[i + half] = b * c - a * s;
    } else {
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

template <class T, bool Inverse>
void rope_launch(const T* cos_table, const T* sin_table, index_t head_dim, index_t max_positions, T* x,
                 const index_t* positions, index_t n, index_t heads, cudaStream_t stream, const char* f) {
  static_assert(std::is_floating_point_v<T>);
  lmrl::detail::require(head_dim > 0 && head_dim % 2 == 0, f, ": head_dim = ", head_dim, " must be positive and even");
  lmrl::detail::require(max_positions > 0, f, ": max_positions = ", max_positions, " must be positive");
  lmrl::detail::require(heads > 0, f, ": heads = ", heads, " must be positive");
  lmrl::detail::require(n >= 0, f, ": n = ", n, " rows must not be negative");
  const index_t pairs = n * heads * (head_dim / 2);
  if (pairs == 0) return;
  lmrl::detail::require(cos_table != nullptr && sin_table != nullptr && x != nullptr && positions != nullptr, f,
                        ": cos_table, sin_table, x and positions must be device pointers, not null");
  const index_t blocks = std::min<index_t>((pairs + rope_threads - 1) / rope_threads, index_t{1} << 20);
  cuda::launch(rope_kernel<T, Inverse>, static_cast<unsigned>(blocks), rope_threads, 0, stream, cos_table, sin_table,
      head_dim / 2, max_positions, x, positions, n, heads);
  LMRL_CUDA_CHECK_LAUNCH("rope_kernel");
}

}  // namespace detail

// x <- rope(x), in place.
template <class T>
void rope_forward(const T* cos_table, const std::type_identity_t<T>* sin_table, index_t head_dim, index_t max_positions,
                  std::type_identity_t<T>* x, const index_t* positions, index_t n, index_t heads, cudaStream_t stream) {
  detail::rope_launch<T, false>(cos_table, sin_table, head_dim, max_positions, x, positions, n, heads, stream,
                                "lmrl::cuda::rope_forward");
}

// grad <- dL/dx from grad = dL/dy, in place.
template <class T>
void rope_backward(const T* cos_table, const std::type_identity_t<T>* sin_table, index_t head_dim,
                   index_t max_positions, std::type_identity_t<T>* grad, const index_t* positions, index_t n,
                   index_t heads, cudaStream_t stream) {
  detail::rope_launch<T, true>(cos_table, sin_table, head_dim, max_positions, grad, positions, n, heads, stream,
                               "lmrl::cuda::rope_backward");
}

}  // namespace lmrl::cuda
