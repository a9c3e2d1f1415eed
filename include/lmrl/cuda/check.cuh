// Every CUDA runtime call and kernel launch checked: a failure becomes an
// lmrl::error naming the call, where it was made and CUDA's error name.
//
//   LMRL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
//   launch(kernel, grid, block, 0, stream, ...);   // launch.cuh
//   LMRL_CUDA_CHECK_LAUNCH("rms_norm_forward");
//
// Host code only: usable from .cu files and from C++ that includes
// <cuda_runtime.h> (dist/nccl.hpp).
#pragma once

#include <cuda_runtime.h>

#include "lmrl/error.hpp"

namespace lmrl::cuda {

inline void check(cudaError_t code, const char* call, const char* file, int line) {
  if (code == cudaSuccess) return;
  lmrl::detail::fail("CUDA: ", call, " failed (", file, ":", line, "): ", cudaGetErrorName(code), ": ",
                     cudaGetErrorString(code));
}

// Fails unless a CUDA device can be used: called where `who` is about to need
// one, so that the error names the missing device instead of the first call
// that trips over it (cublasCreate reports NOT_INITIALIZED, cudaMalloc no device).
// Returns the number of devices.
inline int require_device(const char* who) {
  int count = 0;
  const cudaError_t code = cudaGetDeviceCount(&count);
  if (code != cudaSuccess)
    lmrl::detail::fail(who, ": no usable CUDA device (cudaGetDeviceCount: ", cudaGetErrorName(code), ": ",
                       cudaGetErrorString(code), ")");
  if (count == 0) lmrl::detail::fail(who, ": no CUDA device (cudaGetDeviceCount found none)");
  return count;
}

// Makes GPU `rank % devices` this thread's device (cudaSetDevice) and returns it: one data-parallel rank per
// GPU, with ranks placed node by node (ranks 0..7 on the first machine of 8 GPUs, 8..15 on the next).
inline int use_device_of_rank(int rank, const char* who) {
  const int device = rank % require_device(who);
  check(cudaSetDevice(device), "cudaSetDevice", __FILE__, __LINE__);
  return device;
}

}  // namespace lmrl::cuda

#define LMRL_CUDA_CHECK(call) ::lmrl::cuda::check((call), #call, __FILE__, __LINE__)
#define LMRL_CUDA_CHECK_LAUNCH(kernel_name) \
  ::lmrl::cuda::check(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)
