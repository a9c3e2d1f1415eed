// The products of the model's linear layers on the GPU at a chosen precision:
// float activations times weights that live in one float parameter buffer, and
// the weight gradients. fp32 and tf32 go straight to cuda/ops/matmul.cuh; bf16
// rounds the operands to bfloat16 first (round to nearest even, 7 stored mantissa
// bits) and multiplies on the bf16 tensor cores with float accumulation and a
// float result, the way mixed-precision training keeps float master weights.
//
//   linear_products products(blas, stream);
//   products.begin(gemm_precision::bf16, params, n);   // rounds the parameter buffer once (bf16 only)
//   products.nt(x, w, y);          // y  (+)= x . w^T   (w [out x in] inside the parameter buffer)
//   products.nn(dy, w, dx);        // dx (+)= dy . w
//   products.tn(dy, x, dw, true);  // dw (+)= dy^T . x  (activations only; dw stays float)
//
// With bf16, begin() writes the whole buffer's bf16 copy (2 bytes a parameter,
// kept until the next begin: call it again whenever the float parameters
// change), and each product rounds its activation operands into a bf16
// workspace that grows to the largest operand seen. The accumulation and the
// outputs stay float, so accumulating products (the residual adds, the
// gradient sums) lose nothing beyond the inputs' rounding.
//
// Numerics: bf16 inputs carry a relative rounding error up to 2^-8 each; a
// dot product of such inputs is off by about that times its terms' scale, and
// through the test model the log-probs move by 4e-3 .. 1.2e-2 of their scale
// (measured on the CPU by tools/precision_emulation). tf32: 2^-11, 4e-4 .. 3e-3.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/ops/matmul.cuh"
#include "lmrl/error.hpp"

namespace lmrl::cuda {

namespace linear_detail {

// dst [rows x cols] (contiguous) = bf16(src [rows x cols], row stride ld).
template <class T>
__global__ void round_to_bf16_kernel(const T* src, index_t rows, index_t cols, index_t ld, __nv_bfloat16* dst) {
  const index_t n = rows * cols, step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
    const index_t i = e / cols, j = e % cols;
    dst[e] = __float2bfloat16_rn(src[i * ld + j]);
  }
}

}  // namespace linear_detail

// dst[0 .. rows*cols) = src rounded to bf16 (round to nearest even), row by row; dst is contiguous.
inline void round_to_bf16(device_matrix<const float> src, __nv_bfloat16* dst, cudaStream_t stream = nullptr) {
  detail::require_layout("cuda::round_to_bf16", "src", src);
  if (src.rows == 0 || src.cols == 0) return;
  linear_detail::round_to_bf16_kernel<float><<<detail::blocks_for(src.rows * src.cols, 256), 256, 0, stream>>>(
      src.data, src.rows, src.cols, src.ld, dst);
  LMRL_CUDA_CHECK_LAUNCH("round_to_bf16");
}

class linear_products {
 public:
  linear_products() = default;  // unusable until assigned one built from a handle
  // `blas` must outlive this object (it is bound to `stream`).
  linear_products(const cublas_handle& blas, cudaStream_t stream) : blas_(&blas), stream_(stream) {}

  // Products from here on run at `precision` with weights inside [params, params + n). With bf16 the buffer
  // is rounded into the bf16 copy now (queued on the stream).
  void begin(gemm_precision precision, const float* params, std::size_t n) {
    lmrl::detail::require(blas_ != nullptr, "cuda::linear_products::begin: no cuBLAS handle (default-constructed)");
    lmrl::detail::require(params != nullptr || n == 0, "cuda::linear_products::begin: null parameter buffer");
    precision_ = precision;
    params_ = params;
    size_ = n;
    if (precision != gemm_precision::bf16) return;
    grow(weights_bf16_, n, stream_);
    round_to_bf16(device_matrix<const float>(params, 1, static_cast<index_t>(n)), weights_bf16_.data(), stream_);
  }

  gemm_precision precision() const { return precision_; }
  // Device bytes held for bf16: the parameters' copy and the two operand workspaces.
  std::size_t workspace_bytes() const { return weights_bf16_.bytes() + first_.bytes() + second_.bytes(); }

  // y (+)= x . w^T
  void nt(device_matrix<const float> x, device_matrix<const float> w, device_matrix<float> y, bool accumulate = false) {
    if (precision_ != gemm_precision::bf16) return matmul_nt<float>(*blas_, x, w, y, accumulate, precision_);
    matmul_nt<__nv_bfloat16, float>(*blas_, rounded(first_, x), weight("nt", w), y, accumulate);
  }
  // dx (+)= dy . w
  void nn(device_matrix<const float> dy, device_matrix<const float> w, device_matrix<float> dx,
          bool accumulate = false) {
    if (precision_ != gemm_precision::bf16) return matmul_nn<float>(*blas_, dy, w, dx, accumulate, precision_);
    matmul_nn<__nv_bfloat16, float>(*blas_, rounded(first_, dy), weight("nn", w), dx, accumulate);
  }
  // dw (+)= dy^T . x
  void tn(device_matrix<const float> dy, device_matrix<const float> x, device_matrix<float> dw,
          bool accumulate = false) {
    if (precision_ != gemm_precision::bf16) return matmul_tn<float>(*blas_, dy, x, dw, accumulate, precision_);
    matmul_tn<__nv_bfloat16, float>(*blas_, rounded(first_, dy), rounded(second_, x), dw, accumulate);
  }

 private:
  // m rounded into `workspace` (grown to fit; contiguous rows).
  device_matrix<const __nv_bfloat16> rounded(device_array<__nv_bfloat16>& workspace, device_matrix<const float> m) {
    detail::require_layout("cuda::linear_products", "operand", m);
    grow(workspace, static_cast<std::size_t>(m.rows * m.cols), stream_);
    round_to_bf16(m, workspace.data(), stream_);
    return {workspace.data(), m.rows, m.cols};
  }

  // The bf16 copy of w, which must lie inside the parameter buffer given to begin().
  device_matrix<const __nv_bfloat16> weight(const char* product, device_matrix<const float> w) const {
    detail::require_layout("cuda::linear_products", "weight", w);
    const auto base = reinterpret_cast<std::uintptr_t>(params_), at = reinterpret_cast<std::uintptr_t>(w.data);
    const std::size_t end = w.rows == 0 ? 0 : static_cast<std::size_t>((w.rows - 1) * w.ld + w.cols);
    const bool inside = params_ != nullptr && at >= base && (at - base) % sizeof(float) == 0 &&
                        (at - base) / sizeof(float) + end <= size_;
    lmrl::detail::require(inside, "cuda::linear_products::", product,
                          ": with bf16 the weight must lie inside the parameter buffer given to begin()");
    return {weights_bf16_.data() + (at - base) / sizeof(float), w.rows, w.cols, w.ld};
  }

  const cublas_handle* blas_ = nullptr;
  cudaStream_t stream_ = nullptr;
  gemm_precision precision_ = gemm_precision::fp32;
  const float* params_ = nullptr;
  std::size_t size_ = 0;
  device_array<__nv_bfloat16> weights_bf16_, first_, second_;
};

}  // namespace lmrl::cuda
