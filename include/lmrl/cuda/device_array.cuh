// device_array<T>: n elements of device memory, owned (RAII), with the stream
// its copies run on. The kernels of cuda/ take raw pointers and sizes (like
// cuBLAS); this is what tests, launchers and trainers hold them in.
//
//   auto x = device_array<float>::from_host(values, stream);   // async copy in
//   device_array<float> y(n, stream);  y.poison();            // NaN everywhere: unwritten elements show
//   launch(x.data(), y.data(), ...);
//   std::vector<float> out = y.to_host();                       // waits for the stream
//   grow(workspace, n, stream);                                 // at least n elements (reallocated, poisoned)
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "lmrl/cuda/check.cuh"

namespace lmrl::cuda {

template <class T>
class device_array {
 public:
  device_array() = default;
  explicit device_array(std::size_t n, cudaStream_t stream = nullptr) : size_(n), stream_(stream) {
    if (n > 0) LMRL_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), n * sizeof(T)));
  }
  static device_array from_host(std::span<const T> values, cudaStream_t stream = nullptr) {
    device_array a(values.size(), stream);
    if (!values.empty())
      LMRL_CUDA_CHECK(cudaMemcpyAsync(a.data_, values.data(), values.size_bytes(), cudaMemcpyHostToDevice, stream));
    return a;
  }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  device_array(device_array&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), stream_(o.stream_) {}
  device_array& operator=(device_array&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      stream_ = o.stream_;
    }
    return *this;
  }
  ~device_array() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return size_ * sizeof(T); }
  cudaStream_t stream() const { return stream_; }

  // Every byte 0xFF: NaN for floating point, -1 for integers.
  void poison() {
    if (size_ > 0) LMRL_CUDA_CHECK(cudaMemsetAsync(data_, 0xFF, bytes(), stream_));
  }
  void zero() {
    if (size_ > 0) LMRL_CUDA_CHECK(cudaMemsetAsync(data_, 0, bytes(), stream_));
  }
  void copy_from_host(std::span<const T> values) {
    lmrl::detail::require(values.size() == size_, "device_array::copy_from_host: ", values.size(),
                          " values for ", size_, " elements");
    if (size_ > 0) LMRL_CUDA_CHECK(cudaMemcpyAsync(data_, values.data(), bytes(), cudaMemcpyHostToDevice, stream_));
  }
  // A host copy, after everything queued on the stream.
  std::vector<T> to_host() const {
    std::vector<T> out(size_);
    if (size_ > 0) LMRL_CUDA_CHECK(cudaMemcpyAsync(out.data(), data_, bytes(), cudaMemcpyDeviceToHost, stream_));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return out;
  }

 private:
  void release() {
    if (data_) cudaFree(data_);  // not checked: a destructor must not throw
    data_ = nullptr;
  }
  T* data_ = nullptr;
  std::size_t size_ = 0;
  cudaStream_t stream_ = nullptr;
};

// Makes `a` hold at least n elements: a workspace that grows to the largest
// request and is reused. The old buffer is freed before the new one is
// allocated (they need not coexist; cudaFree waits for the device, so work
// queued on the old buffer finishes first) and its contents are NOT kept. A new
// buffer is poisoned (NaN bytes, -1 for integers) so that a read of an element
// never written shows, unless `poison_new` is false.
template <class T>
void grow(device_array<T>& a, std::size_t n, cudaStream_t stream, bool poison_new = true) {
  if (a.size() >= n) return;
  a = device_array<T>();
  a = device_array<T>(n, stream);
  if (poison_new) a.poison();
}

}  // namespace lmrl::cuda
