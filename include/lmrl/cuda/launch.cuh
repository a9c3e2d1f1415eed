// Where kernels meet the hardware: every launch of the library goes through
// `launch`, and the kernels that size their shared memory at launch time reach
// it through `dynamic_shared_memory`.
//
//   launch(kernel<T>, grid, block, shared_bytes, stream, args...);
//   LMRL_CUDA_CHECK_LAUNCH("kernel");      // as after any launch (check.cuh)
//
// is kernel<T><<<grid, block, shared_bytes, stream>>>(args...) under nvcc. The
// one place also lets the kernels run without a GPU: compiled by a host
// compiler with LMRL_CUDA_EMULATOR defined, `launch` hands the kernel to the
// CPU emulator of tests/emulator/ (its header, force-included before any lmrl
// header, declares lmrl_cuda_emulator::launch and ::dynamic_shared_memory).
// Nothing else in the library knows of the emulator.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace lmrl::cuda {

template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes, cudaStream_t stream,
            Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "launch: the kernel takes another number of arguments");
#if defined(__CUDACC__)
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
#elif defined(LMRL_CUDA_EMULATOR)
  lmrl_cuda_emulator::launch(kernel, grid, block, shared_bytes, stream, std::forward<Args>(args)...);
#else
#error "lmrl/cuda: kernels compile with nvcc (or with the CPU emulator of tests/emulator/)"
#endif
}

// The block's dynamic shared memory (the launch's shared_bytes), 16-byte
// aligned, as T. One declaration for every kernel: `extern __shared__` arrays
// of different types under one name would not compile.
template <class T>
__device__ inline T* dynamic_shared_memory() {
#if defined(__CUDACC__)
  extern __shared__ __align__(16) unsigned char lmrl_dynamic_shared[];
  return reinterpret_cast<T*>(lmrl_dynamic_shared);
#else
  return static_cast<T*>(lmrl_cuda_emulator::dynamic_shared_memory());
#endif
}

}  // namespace lmrl::cuda
