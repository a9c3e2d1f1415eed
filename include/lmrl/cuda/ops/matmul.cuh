// The transformer's matrix products on the GPU, through cuBLAS: the twins of
// model/ops/matmul.hpp (same names, same row-major layout, same meaning):
//
//   matmul_nt(a [m x k], b [n x k], c [m x n], accumulate)  c (+)= a . b^T     (Linear: y = x W^T)
//   matmul_nn(a [m x k], b [k x n], c [m x n], accumulate)  c (+)= a . b       (dx = dy W)
//   matmul_tn(a [k x m], b [k x n], c [m x n], accumulate)  c (+)= a^T . b     (dW += dy^T x)
//   add_bias(c [m x n], bias [n])                            c[i, :] += bias
//   add_column_sums(g [m x n], bias_grad [n])                bias_grad += sum_i g[i, :]  (double, row order)
//
// Row-major X [r x c] with row stride ld is, to column-major cuBLAS, X^T
// [c x r] with leading dimension ld; so c = a . b^T is computed as
// c^T = b . a^T: gemm(op_b = T, op_a = N, n, m, k, b, a, c), and likewise for
// the others. Inputs are float or __nv_bfloat16, the output float or
// __nv_bfloat16, accumulation always float (CUBLAS_COMPUTE_32F); with float
// inputs `precision` may allow TF32 tensor cores (about 10 mantissa bits); bf16
// products of float data round it first (cuda/ops/linear_products.cuh).
// add_column_sums sums each column in row order in double, so it is
// deterministic and matches the CPU op to float rounding.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <string_view>
#include <type_traits>
#include <utility>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

inline void cublas_check(cublasStatus_t code, const char* call) {
  if (code != CUBLAS_STATUS_SUCCESS)
    lmrl::detail::fail("cuBLAS: ", call, " failed: ", cublasGetStatusName(code), ": ", cublasGetStatusString(code));
}

// NVIDIA's recommended cuBLAS workspace for the current device: 32 MiB from Hopper (compute capability 9) on,
// 4 MiB before.
inline std::size_t recommended_cublas_workspace_bytes() {
  int device = 0, major = 0;
  LMRL_CUDA_CHECK(cudaGetDevice(&device));
  LMRL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return static_cast<std::size_t>(major >= 9 ? 32 : 4) << 20;
}

// One cuBLAS handle bound to a stream (RAII), with a workspace of its own of the recommended size: every
// handle has the same, so a product picks the same algorithm (and gives the same bits) on any handle, and
// cuBLAS allocates none inside a CUDA graph capture (where it would take a new one per graph).
class cublas_handle {
 public:
  explicit cublas_handle(cudaStream_t stream = nullptr)
      : workspace_(recommended_cublas_workspace_bytes(), stream), stream_(stream) {
    cublas_check(cublasCreate(&handle_), "cublasCreate");
    cublas_check(cublasSetStream(handle_, stream), "cublasSetStream");
    cublas_check(cublasSetWorkspace(handle_, workspace_.data(), workspace_.bytes()), "cublasSetWorkspace");
  }
  cublas_handle(const cublas_handle&) = delete;
  cublas_handle& operator=(const cublas_handle&) = delete;
  ~cublas_handle() {
    if (handle_) cublasDestroy(handle_);
  }
  cublasHandle_t get() const { return handle_; }
  // The handle as cuBLASLt's (a cublasHandle_t is a valid cublasLtHandle_t, cuBLAS's documentation says), its
  // stream and its workspace: for cuBLASLt calls that must use the same ones (cuda/ops/fp8_gemm.cuh).
  cublasLtHandle_t lt() const { return reinterpret_cast<cublasLtHandle_t>(handle_); }
  cudaStream_t stream() const { return stream_; }
  void* workspace() const { return const_cast<unsigned char*>(workspace_.data()); }
  std::size_t workspace_bytes() const { return workspace_.bytes(); }

 private:
  device_array<unsigned char> workspace_;  // freed after the destructor has destroyed handle_
  cudaStream_t stream_ = nullptr;
  cublasHandle_t handle_ = nullptr;
};

// The arithmetic of a product of float inputs: fp32 (CUBLAS_COMPUTE_32F), tf32 tensor cores (inputs rounded
// to 10 mantissa bits inside cuBLAS), or bf16 tensor cores, which needs the inputs rounded to __nv_bfloat16
// beforehand (cuda/ops/linear_products.cuh does; matmul_* with float inputs refuses bf16). bf16 inputs
// always use the bf16 tensor cores. fp8 is linear_products' mix: the layers' forward products in FP8 E4M3
// with DeepSeek-V3's block scales (cuda/ops/fp8_gemm.cuh), the rest at bf16; matmul_* refuse it.
enum class gemm_precision { fp32, tf32, bf16, fp8 };

inline const char* to_string(gemm_precision p) {
  switch (p) {
    case gemm_precision::fp32: return "fp32";
    case gemm_precision::tf32: return "tf32";
    case gemm_precision::bf16: return "bf16";
    case gemm_precision::fp8: return "fp8";
  }
  return "?";
}

// The precision to_string names (the examples' --gpu_precision); anything else is an error naming the four.
inline gemm_precision gemm_precision_from_name(std::string_view name) {
  for (const gemm_precision p : {gemm_precision::fp32, gemm_precision::tf32, gemm_precision::bf16, gemm_precision::fp8})
    if (name == to_string(p)) return p;
  lmrl::detail::fail("gemm precision \"", name, "\" is not allowed; allowed: fp32, tf32, bf16, fp8");
}

// A row-major matrix on the device: rows x cols, row stride ld (>= cols).
template <class T>
struct device_matrix {
  T* data = nullptr;
  index_t rows = 0, cols = 0, ld = 0;

  device_matrix() = default;
  device_matrix(T* d, index_t r, index_t c, index_t row_stride) : data(d), rows(r), cols(c), ld(row_stride) {}
  device_matrix(T* d, index_t r, index_t c) : device_matrix(d, r, c, std::max<index_t>(c, 1)) {}  // contiguous rows
  template <class U>
    requires std::is_same_v<const U, T>
  device_matrix(const device_matrix<U>& m) : device_matrix(m.data, m.rows, m.cols, m.ld) {}  // read-only view
};

namespace detail {

template <class T>
cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<std::remove_const_t<T>, float>) return CUDA_R_32F;
  else if constexpr (std::is_same_v<std::remove_const_t<T>, __nv_bfloat16>) return CUDA_R_16BF;
  else static_assert(sizeof(T) == 0, "matmul: float or __nv_bfloat16");
}

template <class T>
void require_layout(const char* f, const char* name, const device_matrix<T>& m) {
  lmrl::detail::require(m.rows >= 0 && m.cols >= 0 && m.ld >= std::max<index_t>(m.cols, 1), f, ": ", name,
                        " is ", m.rows, " x ", m.cols, " with row stride ", m.ld);
}

// Column-major gemm on the row-major operands' memory: C^T = opB(B^T mem) . opA(A^T mem).
template <class A, class B, class C>
void gemm(const cublas_handle& h, cublasOperation_t op_first, cublasOperation_t op_second, index_t m, index_t n,
          index_t k, const device_matrix<A>& first, const device_matrix<B>& second, const device_matrix<C>& c,
          bool accumulate, gemm_precision precision, const char* f) {
  static_assert(std::is_same_v<std::remove_const_t<A>, std::remove_const_t<B>>, "matmul: both inputs of one type");
  constexpr bool float_inputs = std::is_same_v<std::remove_const_t<A>, float>;
  static_assert(!float_inputs || std::is_same_v<C, float>,
                "matmul: float inputs give a float product (cuBLAS has no 32F x 32F -> 16BF)");
  lmrl::detail::require(!float_inputs || (precision != gemm_precision::bf16 && precision != gemm_precision::fp8), f,
                        ": float inputs at ", to_string(precision), " precision: round them to __nv_bfloat16 (or"
                        " quantize them to fp8) first (cuda::linear_products does)");
  if (m == 0 || n == 0) return;
  constexpr index_t int_max = std::numeric_limits<int>::max();
  lmrl::detail::require(std::max({m, n, k, first.ld, second.ld, c.ld}) <= int_max, f,
                        ": a dimension or row stride is over 2^31 - 1, cuBLAS's int");
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cublasComputeType_t compute =
      float_inputs && precision == gemm_precision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                                          : CUBLAS_COMPUTE_32F;
  cublas_check(cublasGemmEx(h.get(), op_first, op_second, static_cast<int>(m), static_cast<int>(n),
                            static_cast<int>(k), &alpha, first.data, cuda_type<A>(), static_cast<int>(first.ld),
                            second.data, cuda_type<B>(), static_cast<int>(second.ld), &beta, c.data, cuda_type<C>(),
                            static_cast<int>(c.ld), compute, CUBLAS_GEMM_DEFAULT),
               f);
}

}  // namespace detail

// c (+)= a . b^T
template <class In, class Out = In>
void matmul_nt(const cublas_handle& h, device_matrix<const std::type_identity_t<In>> a,
               device_matrix<const std::type_identity_t<In>> b, device_matrix<Out> c,
               bool accumulate = false, gemm_precision precision = gemm_precision::fp32) {
  const char* f = "cuda::matmul_nt";
  detail::require_layout(f, "a", a), detail::require_layout(f, "b", b), detail::require_layout(f, "c", c);
  lmrl::detail::require(a.cols == b.cols && c.rows == a.rows && c.cols == b.rows, f, ": a ", a.rows, " x ", a.cols,
                        " . b^T with b ", b.rows, " x ", b.cols, " does not fit c ", c.rows, " x ", c.cols);
  detail::gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, c.cols, c.rows, a.cols, b, a, c, accumulate, precision, f);
}

// c (+)= a . b
template <class In, class Out = In>
void matmul_nn(const cublas_handle& h, device_matrix<const std::type_identity_t<In>> a,
               device_matrix<const std::type_identity_t<In>> b, device_matrix<Out> c,
               bool accumulate = false, gemm_precision precision = gemm_precision::fp32) {
  const char* f = "cuda::matmul_nn";
  detail::require_layout(f, "a", a), detail::require_layout(f, "b", b), detail::require_layout(f, "c", c);
  lmrl::detail::require(a.cols == b.rows && c.rows == a.rows && c.cols == b.cols, f, ": a ", a.rows, " x ", a.cols,
                        " . b with b ", b.rows, " x ", b.cols, " does not fit c ", c.rows, " x ", c.cols);
  detail::gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, c.cols, c.rows, a.cols, b, a, c, accumulate, precision, f);
}

// c (+)= a^T . b
template <class In, class Out = In>
void matmul_tn(const cublas_handle& h, device_matrix<const std::type_identity_t<In>> a,
               device_matrix<const std::type_identity_t<In>> b, device_matrix<Out> c,
               bool accumulate = false, gemm_precision precision = gemm_precision::fp32) {
  const char* f = "cuda::matmul_tn";
  detail::require_layout(f, "a", a), detail::require_layout(f, "b", b), detail::require_layout(f, "c", c);
  lmrl::detail::require(a.rows == b.rows && c.rows == a.cols && c.cols == b.cols, f, ": a^T with a ", a.rows, " x ",
                        a.cols, " . b with b ", b.rows, " x ", b.cols, " does not fit c ", c.rows, " x ", c.cols);
  detail::gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, c.cols, c.rows, a.rows, b, a, c, accumulate, precision, f);
}

namespace detail {

template <class T>
__global__ void add_bias_kernel(T* c, index_t rows, index_t cols, index_t ld, const T* bias) {
  const index_t n = rows * cols;
  for (index_t e = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t i = e / cols, j = e % cols;
    c[i * ld + j] += bias[j];
  }
}

// One thread per column (a grid-stride loop past the grid's 65535 blocks), rows in order, in double:
// deterministic.
template <class T>
__global__ void add_column_sums_kernel(const T* g, index_t rows, index_t cols, index_t ld, T* bias_grad) {
  for (index_t j = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; j < cols;
       j += static_cast<index_t>(gridDim.x) * blockDim.x) {
    double sum = 0;
    for (index_t i = 0; i < rows; ++i) sum += static_cast<double>(g[i * ld + j]);
    bias_grad[j] += static_cast<T>(sum);
  }
}

inline unsigned blocks_for(index_t n, unsigned threads) {
  const index_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::min<index_t>(std::max<index_t>(b, 1), 65535));
}

}  // namespace detail

// c[i, :] += bias
template <class T>
void add_bias(device_matrix<T> c, const T* bias, cudaStream_t stream = nullptr) {
  detail::require_layout("cuda::add_bias", "c", c);
  if (c.rows == 0 || c.cols == 0) return;
  cuda::launch(detail::add_bias_kernel<T>, detail::blocks_for(c.rows * c.cols, 256), 256, 0, stream, c.data, c.rows,
      c.cols, c.ld, bias);
  LMRL_CUDA_CHECK_LAUNCH("add_bias");
}

// bias_grad += sum_i g[i, :]
template <class T>
void add_column_sums(device_matrix<const T> g, T* bias_grad, cudaStream_t stream = nullptr) {
  detail::require_layout("cuda::add_column_sums", "g", g);
  if (g.cols == 0) return;
  cuda::launch(detail::add_column_sums_kernel<T>, detail::blocks_for(g.cols, 128), 128, 0, stream, g.data, g.rows,
      g.cols, g.ld, bias_grad);
  LMRL_CUDA_CHECK_LAUNCH("add_column_sums");
}

}  // namespace lmrl::cuda
