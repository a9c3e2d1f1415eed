// managed_tensor<T, N>: a row-major N-D array in CUDA managed (unified)
// memory, owned, with the stream its kernels run on. Kernels read and write it
// through data(); after synchronize() the host reads and writes the same
// memory through view(), so it satisfies the tensor concepts (tensor/concepts.hpp)
// and every rl/ algorithm takes it as it takes a std::vector or an Eigen matrix.
//
//   managed_tensor<float, 2> logp({B, L}, stream);
//   launch(fused_log_probs, ..., logp.data());   // on the GPU (launch.cuh)
//   logp.synchronize();
//   grpo_sequence_advantages(rewards, G, grpo_scale::group_std, adv);   // on the host, same memory
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <utility>

#include "lmrl/cuda/check.cuh"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

template <class T, std::size_t N>
class managed_tensor {
 public:
  managed_tensor() = default;
  explicit managed_tensor(std::array<index_t, N> shape, cudaStream_t stream = nullptr)
      : shape_(shape), stream_(stream) {
    std::size_t n = 1;
    for (auto s : shape) {
      lmrl::detail::require(s >= 0, "managed_tensor: negative extent ", s);
      n *= static_cast<std::size_t>(s);
    }
    size_ = n;
    if (n > 0) {
      LMRL_CUDA_CHECK(cudaMallocManaged(reinterpret_cast<void**>(&data_), n * sizeof(T)));
      LMRL_CUDA_CHECK(cudaMemsetAsync(data_, 0, n * sizeof(T), stream_));
      // Zeroed before the constructor returns: a host write through view() must not be overtaken by it.
      LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
  }
  managed_tensor(const managed_tensor&) = delete;
  managed_tensor& operator=(const managed_tensor&) = delete;
  managed_tensor(managed_tensor&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), shape_(o.shape_), size_(std::exchange(o.size_, 0)), stream_(o.stream_) {}
  managed_tensor& operator=(managed_tensor&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      shape_ = o.shape_;
      size_ = std::exchange(o.size_, 0);
      stream_ = o.stream_;
    }
    return *this;
  }
  ~managed_tensor() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  const std::array<index_t, N>& shape() const { return shape_; }
  index_t size() const { return static_cast<index_t>(size_); }
  cudaStream_t stream() const { return stream_; }

  // Waits for the stream's work, after which the host may touch the memory.
  void synchronize() const { LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  strided_view<T, N> view() { return {data_, shape_}; }
  strided_view<const T, N> view() const { return {data_, shape_}; }

 private:
  void release() {
    if (data_) cudaFree(data_);
    data_ = nullptr;
  }
  T* data_ = nullptr;
  std::array<index_t, N> shape_{};
  std::size_t size_ = 0;
  cudaStream_t stream_ = nullptr;
};

}  // namespace lmrl::cuda

namespace lmrl {

// The host's view of managed memory (call synchronize() first); results of the
// convenience overloads come back as host arrays.
template <class T, std::size_t N>
struct backend<cuda::managed_tensor<T, N>> {
  template <std::size_t M>
    requires(M == N)
  static strided_view<T, N> view(cuda::managed_tensor<T, N>& x) {
    return x.view();
  }
  template <std::size_t M>
    requires(M == N)
  static strided_view<const T, N> view(const cuda::managed_tensor<T, N>& x) {
    return x.view();
  }
  template <class U, std::size_t M>
  static dense<U, M> make(std::array<index_t, M> shape) {
    return dense<U, M>(shape);
  }
};

}  // namespace lmrl
