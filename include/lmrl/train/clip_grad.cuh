// Gradient norm and scaling on the GPU: the twins of train/clip_grad.hpp's
// l2_norm and scale_gradients for a device buffer, what a device-resident
// optimizer step (train/transformer_gpu_policy.cuh, parameter_uploads::
// device_steps) needs to clip a gradient that never leaves the device.
//
//   double norm = lmrl::cuda::l2_norm(grad, n, stream);          // one sync: the norm comes back to the host
//   lmrl::cuda::scale_gradients(grad, n, 0.5f, stream);          // g[i] = g[i] * 0.5f, queued
//
// The sum of squares is accumulated in double, as on the CPU, in a fixed
// order that depends on n only (a fixed grid, each thread's strided partial
// sum, each block's tree, then one block's tree over the blocks): the same
// input gives the same bits every run. The order is not the CPU's, so the two
// agree to double rounding (about 1e-15 of the norm), not bit for bit.
// Status: compiled (CUDA 13, sm_80 and sm_90), NOT yet run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl::cuda {

namespace clip_grad_detail {

constexpr int block = 256;
constexpr index_t max_blocks = 1024;  // the partial sums: at most this many, reduced by one block

// The block's threads' values summed in a fixed tree; the result in sum[0].
template <class Sum>
__device__ void block_sum(Sum* sum) {
  for (int half = block / 2; half > 0; half /= 2) {
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < half) sum[threadIdx.x] += sum[threadIdx.x + half];
  }
}

template <class T>
__global__ void sum_of_squares_kernel(const T* __restrict__ x, index_t n, double* __restrict__ partial) {
  __shared__ double sum[block];
  double acc = 0;
  const index_t stride = static_cast<index_t>(gridDim.x) * block;
  for (index_t i = static_cast<index_t>(blockIdx.x) * block + threadIdx.x; i < n; i += stride) {
    const double xi = static_cast<double>(x[i]);
    acc += xi * xi;
  }
  sum[threadIdx.x] = acc;
  block_sum(sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum[0];
}

// One block: the square root of the sum of `count` partial sums, into out[0]. (A template, as every kernel
// defined in a header must be: a plain __global__ function would be defined in each unit that includes it.)
template <class Sum>
__global__ void root_of_sum_kernel(const Sum* __restrict__ partial, index_t count, Sum* __restrict__ out) {
  __shared__ Sum sum[block];
  Sum acc = 0;
  for (index_t i = threadIdx.x; i < count; i += block) acc += partial[i];
  sum[threadIdx.x] = acc;
  block_sum(sum);
  if (threadIdx.x == 0) out[0] = sqrt(sum[0]);
}

template <class T>
__global__ void scale_kernel(T* __restrict__ x, index_t n, T factor) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    x[i] = x[i] * factor;
}

}  // namespace clip_grad_detail

// The L2 norm of x[0, n) on the device; waits for the stream (the result is a host double). NaN or inf
// anywhere gives a norm that is not finite, as on the CPU. `scratch` (grown as needed) holds the partial
// sums; pass the same one every call to spare the allocation.
template <Real T>
double l2_norm(const T* x, index_t n, device_array<double>& scratch, cudaStream_t stream = nullptr) {
  lmrl::detail::require(n >= 0, "cuda::l2_norm: n = ", n, " must be >= 0");
  if (n == 0) return 0.0;
  lmrl::detail::require(x != nullptr, "cuda::l2_norm: x is null");
  using namespace clip_grad_detail;
  const index_t blocks = std::min<index_t>((n + block - 1) / block, max_blocks);
  grow(scratch, static_cast<std::size_t>(blocks + 1), stream, false);
  cuda::launch(sum_of_squares_kernel<T>, static_cast<unsigned>(blocks), block, 0, stream, x, n, scratch.data());
  LMRL_CUDA_CHECK_LAUNCH("sum_of_squares_kernel");
  cuda::launch(root_of_sum_kernel<double>, 1, block, 0, stream, scratch.data(), blocks, scratch.data() + blocks);
  LMRL_CUDA_CHECK_LAUNCH("root_of_sum_kernel");
  double norm = 0;
  LMRL_CUDA_CHECK(cudaMemcpyAsync(&norm, scratch.data() + blocks, sizeof(double), cudaMemcpyDeviceToHost, stream));
  LMRL_CUDA_CHECK(cudaStreamSynchronize(stream));
  return norm;
}

template <Real T>
double l2_norm(const T* x, index_t n, cudaStream_t stream = nullptr) {
  device_array<double> scratch;
  return l2_norm(x, n, scratch, stream);
}

// x[i] = x[i] * factor for i < n, queued on the stream (the CPU's scale_gradients: one float product each).
template <Real T>
void scale_gradients(T* x, index_t n, T factor, cudaStream_t stream = nullptr) {
  lmrl::detail::require(n >= 0, "cuda::scale_gradients: n = ", n, " must be >= 0");
  if (n == 0) return;
  lmrl::detail::require(x != nullptr, "cuda::scale_gradients: x is null");
  using namespace clip_grad_detail;
  const auto blocks = static_cast<unsigned>(std::min<index_t>((n + block - 1) / block, 4096));
  cuda::launch(scale_kernel<T>, blocks, block, 0, stream, x, n, factor);
  LMRL_CUDA_CHECK_LAUNCH("scale_kernel");
}

}  // namespace lmrl::cuda
