// RMSNorm on the GPU: the CUDA twin of model/ops/rms_norm.hpp (the math and
// its conventions are stated there), for contiguous row-major device buffers
// of n rows of width d:
//
//   r_i = 1 / sqrt(mean_j x[i, j]^2 + eps)        (the sum of squares in double)
//   y[i, j] = w_j * (x[i, j] * r_i)
//   backward, ACCUMULATED as on the CPU (the residual stream already holds the
//   gradient of the skip path):
//     c_i = r_i^2 mean_k(w_k dy[i, k] x[i, k])    (the dot product in double)
//     grad_x[i, j] += r_i (w_j dy[i, j] - x[i, j] c_i)
//     grad_w[j]    += sum_i dy[i, j] (x[i, j] r_i)   (summed in double)
//
// Launchers (namespace lmrl::cuda, asynchronous on `stream`):
//   rms_norm_forward(x, w, n, d, eps, y, inv_rms or nullptr, stream)     y may alias x
//   rms_norm_backward(x, w, inv_rms, grad_y, n, d, grad_x, grad_w or nullptr, stream)
//
// Kernels: one block per row, its sum reduced in double in a fixed order (warp
// shuffles, then the warps' sums in warp order). grad_w is a column sum over
// rows: one block per 32 columns whose 32 x 32 threads each sum every 32nd row
// in row order, then the 32 partial sums of a column are added in a fixed
// order. No atomics: the bits are the same from run to run; they differ from
// the CPU's only by the order of the double additions (see the tolerance in
// tests/cuda/test_ops_pointwise.cu).
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <type_traits>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

namespace detail {

inline constexpr int rms_norm_threads = 256;  // threads per row block, a multiple of 32
inline constexpr int rms_norm_w_cols = 32;    // grad_w: columns per block (one warp wide)
inline constexpr int rms_norm_w_rows = 32;    // grad_w: row strips per block
inline constexpr int rms_norm_w_threads = rms_norm_w_cols * rms_norm_w_rows;

// The sum of v over a block of Threads threads, returned to every thread, in an
// order fixed by Threads alone.
template <int Threads>
__device__ double rms_norm_block_sum(double v) {
  static_assert(Threads % 32 == 0 && Threads <= 1024);
  __shared__ double warp_sums[Threads / 32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  double total = 0;
  for (int k = 0; k < Threads / 32; ++k) total += warp_sums[k];
  __syncthreads();  // warp_sums may be reused by a second call
  return total;
}

// One block per row i. x and y may be the same buffer: each thread writes only
// the elements it read, after the block has summed them.
template <class T>
__global__ void __launch_bounds__(rms_norm_threads)
    rms_norm_forward_kernel(const T* x, const T* w, index_t d, double eps, T* y, T* inv_rms) {
  const index_t i = blockIdx.x;
  const T* xi = x + i * d;
  T* yi = y + i * d;
  double sum = 0;
  for (index_t j = threadIdx.x; j < d; j += blockDim.x) sum += static_cast<double>(xi[j]) * xi[j];
  sum = rms_norm_block_sum<rms_norm_threads>(sum);
  const T r = static_cast<T>(1.0 / sqrt(sum / static_cast<double>(d) + eps));
  for (index_t j = threadIdx.x; j < d; j += blockDim.x) yi[j] = w[j] * (xi[j] * r);
  if (inv_rms != nullptr && threadIdx.x == 0) inv_rms[i] = r;
}

// One block per row i: grad_x[i, :] += r (w dy - x c).
template <class T>
__global__ void __launch_bounds__(rms_norm_threads)
    rms_norm_backward_x_kernel(const T* x, const T* w, const T* inv_rms, const T* grad_y, index_t d, T* grad_x) {
  const index_t i = blockIdx.x;
  const T* xi = x + i * d;
  const T* dyi = grad_y + i * d;
  T* dxi = grad_x + i * d;
  const T r = inv_rms[i];
  double dot = 0;  // sum_k w_k dy_k x_k
  for (index_t j = threadIdx.x; j < d; j += blockDim.x) dot += static_cast<double>(w[j] * dyi[j]) * xi[j];
  dot = rms_norm_block_sum<rms_norm_threads>(dot);
  const T c = static_cast<T>(dot / static_cast<double>(d)) * r * r;
  for (index_t j = threadIdx.x; j < d; j += blockDim.x) dxi[j] += r * (w[j] * dyi[j] - xi[j] * c);
}

// Block b owns columns [32 b, 32 b + 32); thread (tx, ty) sums rows ty, ty + 32,
// ... of column 32 b + tx in row order, then row ty = 0 adds the 32 partial
// sums in ty order: grad_w[j] += sum_i dy[i, j] (x[i, j] r_i).
template <class T>
__global__ void __launch_bounds__(rms_norm_w_threads)
    rms_norm_backward_w_kernel(const T* x, const T* inv_rms, const T* grad_y, index_t n, index_t d, T* grad_w) {
  __shared__ double partial[rms_norm_w_rows][rms_norm_w_cols];
  const index_t j = static_cast<index_t>(blockIdx.x) * rms_norm_w_cols + threadIdx.x;
  double sum = 0;
  if (j < d)
    for (index_t i = threadIdx.y; i < n; i += rms_norm_w_rows)
      sum += static_cast<double>(grad_y[i * d + j]) * (x[i * d + j] * inv_rms[i]);
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && j < d) {
    double total = 0;
    for (int t = 0; t < rms_norm_w_rows; ++t) total += partial[t][threadIdx.x];
    grad_w[j] += static_cast<T>(total);
  }
}

inline void rms_norm_require_shape(const char* f, index_t n, index_t d) {
  lmrl::detail::require(n >= 0 && n <= INT_MAX, f, ": n = ", n, " rows must be in [0, ", INT_MAX, "]");
  lmrl::detail::require(d > 0, f, ": d = ", d, " columns must be positive");
}

}  // namespace detail

// y[i, :] = w * (x[i, :] * r_i); inv_rms[i] = r_i when inv_rms is not null.
template <class T>
void rms_norm_forward(const T* x, const std::type_identity_t<T>* w, index_t n, index_t d, double eps,
                      std::type_identity_t<T>* y, std::type_identity_t<T>* inv_rms, cudaStream_t stream) {
  static_assert(std::is_floating_point_v<T>);
  const char* f = "lmrl::cuda::rms_norm_forward";
  detail::rms_norm_require_shape(f, n, d);
  if (n == 0) return;
  lmrl::detail::require(x != nullptr && w != nullptr && y != nullptr, f,
                        ": x, w and y must be device pointers, not null");
  cuda::launch(detail::rms_norm_forward_kernel<T>, static_cast<unsigned>(n), detail::rms_norm_threads, 0, stream, x, w,
      d, eps, y, inv_rms);
  LMRL_CUDA_CHECK_LAUNCH("rms_norm_forward_kernel");
}

// grad_x += dL/dx and, when grad_w is not null, grad_w += dL/dw.
template <class T>
void rms_norm_backward(const T* x, const std::type_identity_t<T>* w, const std::type_identity_t<T>* inv_rms,
                       const std::type_identity_t<T>* grad_y, index_t n, index_t d, std::type_identity_t<T>* grad_x,
                       std::type_identity_t<T>* grad_w, cudaStream_t stream) {
  static_assert(std::is_floating_point_v<T>);
  const char* f = "lmrl::cuda::rms_norm_backward";
  detail::rms_norm_require_shape(f, n, d);
  if (n == 0) return;
  lmrl::detail::require(x != nullptr && w != nullptr && inv_rms != nullptr && grad_y != nullptr && grad_x != nullptr, f,
                        ": x, w, inv_rms, grad_y and grad_x must be device pointers, not null");
  cuda::launch(detail::rms_norm_backward_x_kernel<T>, static_cast<unsigned>(n), detail::rms_norm_threads, 0, stream, x,
      w, inv_rms, grad_y, d, grad_x);
  LMRL_CUDA_CHECK_LAUNCH("rms_norm_backward_x_kernel");
  if (grad_w == nullptr) return;
  const auto blocks = static_cast<unsigned>((d + detail::rms_norm_w_cols - 1) / detail::rms_norm_w_cols);
  cuda::launch(detail::rms_norm_backward_w_kernel<T>, blocks, dim3(detail::rms_norm_w_cols, detail::rms_norm_w_rows), 0,
      stream, x, inv_rms, grad_y, n, d, grad_w);
  LMRL_CUDA_CHECK_LAUNCH("rms_norm_backward_w_kernel");
}

}  // namespace lmrl::cuda
