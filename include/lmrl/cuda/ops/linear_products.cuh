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
//   // An activation that feeds several products, rounded once (bf16) in operand slot 0 or 1:
//   const linear_operand h = products.operand(0, h1);
//   products.nt(h, wq, q);  products.nt(h, wk, k);  products.nt(h, wv, v);
//
// With bf16, begin() writes the whole buffer's bf16 copy (2 bytes a parameter,
// kept until the next begin: call it again whenever the float parameters
// change), and an activation is rounded into one of two bf16 workspaces (the
// operand slots, each grown to the largest operand seen): by operand(), once
// for all the products it feeds, or by the product itself when it is given a
// float matrix (slot 0; tn's second operand slot 1). An operand is good until
// its slot is rounded into again or begin() is called: a stale one is refused.
// At fp32 and tf32 an operand is the float matrix itself, and nothing is rounded. The accumulation and the
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

#include <array>
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

// An activation operand of linear_products: the float matrix and, at bf16, its rounded copy in an operand slot.
struct linear_operand {
  device_matrix<const float> value;
  device_matrix<const __nv_bfloat16> rounded;  // bf16 only
  int slot = -1;                               // -1: not rounded (fp32, tf32)
  std::uint64_t stamp = 0;                     // the slot's rounding this copy came from
};

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
    for (auto& stamp : stamps_) ++stamp;  // every operand rounded before is stale
    if (precision != gemm_precision::bf16) return;
    grow(weights_bf16_, n, stream_);
    round_to_bf16(device_matrix<const float>(params, 1, static_cast<index_t>(n)), weights_bf16_.data(), stream_);
  }

  gemm_precision precision() const { return precision_; }
  // Device bytes held for bf16: the parameters' copy and the two operand workspaces.
  std::size_t workspace_bytes() const {
    return weights_bf16_.bytes() + slots_[0].bytes() + slots_[1].bytes();
  }

  // m as an operand of the products that follow; at bf16 rounded now into operand slot `slot` (0 or 1),
  // which makes the slot's earlier operand stale.
  linear_operand operand(int slot, device_matrix<const float> m) {
    detail::require_layout("cuda::linear_products", "operand", m);
    lmrl::detail::require(slot == 0 || slot == 1, "cuda::linear_products::operand: slot ", slot,
                          " (there are slots 0 and 1)");
    if (precision_ != gemm_precision::bf16) return {m, {}, -1, 0};
    auto& workspace = slots_[static_cast<std::size_t>(slot)];
    grow(workspace, static_cast<std::size_t>(m.rows * m.cols), stream_);
    round_to_bf16(m, workspace.data(), stream_);
    return {m, {workspace.data(), m.rows, m.cols}, slot, ++stamps_[static_cast<std::size_t>(slot)]};
  }

  // y (+)= x . w^T
  void nt(const linear_operand& x, device_matrix<const float> w, device_matrix<float> y, bool accumulate = false) {
    if (precision_ != gemm_precision::bf16) return matmul_nt<float>(*blas_, x.value, w, y, accumulate, precision_);
    matmul_nt<__nv_bfloat16, float>(*blas_, rounded("nt", x), weight("nt", w), y, accumulate);
  }
  // dx (+)= dy . w
  void nn(const linear_operand& dy, device_matrix<const float> w, device_matrix<float> dx, bool accumulate = false) {
    if (precision_ != gemm_precision::bf16) return matmul_nn<float>(*blas_, dy.value, w, dx, accumulate, precision_);
    matmul_nn<__nv_bfloat16, float>(*blas_, rounded("nn", dy), weight("nn", w), dx, accumulate);
  }
  // dw (+)= dy^T . x
  void tn(const linear_operand& dy, const linear_operand& x, device_matrix<float> dw, bool accumulate = false) {
    if (precision_ != gemm_precision::bf16)
      return matmul_tn<float>(*blas_, dy.value, x.value, dw, accumulate, precision_);
    matmul_tn<__nv_bfloat16, float>(*blas_, rounded("tn", dy), rounded("tn", x), dw, accumulate);
  }

  // The same products of float matrices, each operand rounded for this product alone (slot 0; tn's x slot 1).
  void nt(device_matrix<const float> x, device_matrix<const float> w, device_matrix<float> y, bool accumulate = false) {
    nt(operand(0, x), w, y, accumulate);
  }
  void nn(device_matrix<const float> dy, device_matrix<const float> w, device_matrix<float> dx,
          bool accumulate = false) {
    nn(operand(0, dy), w, dx, accumulate);
  }
  void tn(device_matrix<const float> dy, device_matrix<const float> x, device_matrix<float> dw,
          bool accumulate = false) {
    const linear_operand a = operand(0, dy);
    tn(a, operand(1, x), dw, accumulate);
  }

 private:
  // The operand's bf16 copy, which must still be in its slot.
  device_matrix<const __nv_bfloat16> rounded(const char* product, const linear_operand& m) const {
    lmrl::detail::require(m.slot >= 0 && m.stamp == stamps_[static_cast<std::size_t>(m.slot)],
                          "cuda::linear_products::", product, ": a bf16 operand is stale (",
                          m.slot < 0 ? "made at another precision" : "its slot was rounded into again since",
                          "): make it with operand() after begin() and use it before its slot is reused");
    return m.rounded;
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
  device_array<__nv_bfloat16> weights_bf16_;
  std::array<device_array<__nv_bfloat16>, 2> slots_;  // the operand slots
  std::array<std::uint64_t, 2> stamps_{};             // how often each slot was rounded into (and begin() calls)
};

}  // namespace lmrl::cuda
