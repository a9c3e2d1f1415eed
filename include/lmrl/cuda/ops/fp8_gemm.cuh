// FP8 (E4M3) products with DeepSeek-V3's fine-grained block scales on the GPU:
// the twin of quant/fp8_blocks.hpp (read it for the format), in the scale
// layouts cuBLASLt's Hopper block-scaled kernels read.
//
//   fp8_tiles  x8;  quantize_fp8_activations(x, x8, stream);   // x [rows x K] float: 1 x 128 tiles
//   fp8_blocks w8;  quantize_fp8_weights(w, w8, stream);       // w [N x K] float: 128 x 128 blocks
//   fp8_products products(blas);
//   products.gemm(x8, w8, y, accumulate);                      // y [rows x N] (+)= x8 . w8^T, float
//
// Quantization gives the CPU's bytes: s = max|tile| / 448 (a float division),
// code = e4m3(v / s) rounded to nearest even, saturating; an all-zero tile gets
// s = 0 and codes 0. The CPU refuses non-finite input; a kernel cannot, so a
// NaN makes its whole tile's (block's) scale and codes NaN, and the product
// shows it.
//
// Layouts (cuBLAS 13 documentation, "128-element 1D and 128x128 2D block
// scaling for FP8 data types", scaling factors layouts), L = ceil(K / 128):
//   fp8_tiles   codes [padded_rows x K] row-major, padded_rows = rows rounded up to 8 (cuBLASLt wants the
//               product's M and N multiples of 4, and Transformer Engine observed 8 for a 1 x 128-scaled B:
//               fp8_row_multiple); the padding rows are zero codes with scale 0;
//               scales [L x padded_rows]: tile (r, b) at b * padded_rows + r (VEC128_32F, "N-major for B")
//   fp8_blocks  codes [N x K] row-major; scales [ceil(N / 128) x L4], L4 = L rounded up to 4: block (p, b)
//               at p * L4 + b, the padding 0 (BLK128x128_32F, "K-major, stride a multiple of 4")
// In cuBLAS's column-major terms y^T [N x rows] = W . x^T is D = op(A) . op(B) with A = the weight codes
// (transposed: K x N in memory) and B = the activation codes (K x rows): the "TN" format FP8 needs on Hopper.
//
// Two paths, the same sum:  y[i, j] = sum_b  s_x[i, b] s_w[j / 128, b]  sum_{k in block b} q_x[i, k] q_w[j, k]
//   tensor_cores  cuBLASLt with CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F (weights) and VEC128_32F
//                 (activations): compute capability 9.0 only (Hopper; Blackwell has other modes) with
//                 cuBLASLt 12.9 or later, N % 4 == 0 and K % 16 == 0 (16-byte rows), K > 0; accumulation
//                 inside each block on the tensor cores;
//   cuda_cores    a warp per output element, each block's products summed in float (a fixed order: the same
//                 bits on every run), scaled and added in float: any GPU, any shape, slowly.
// fp8_path::automatic takes the tensor cores where they apply, and the CUDA cores for a shape cuBLASLt has no
// algorithm for. The result is float; an output whose rows are not a multiple of fp8_row_multiple (or whose
// memory cuBLASLt cannot address in 16-byte units) is written to a float workspace of padded rows x N first
// and copied (added) into y: the workspace grows to the largest such product and is kept.
//
// Status: compiled (CUDA 13, sm_80 and sm_90), NOT yet run on a GPU; tests/cuda/test_fp8_gemm.cu checks the
// bytes against the CPU's quantizers and both paths against quant/'s fp8_gemm.
#pragma once

#include <cublasLt.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/ops/matmul.cuh"
#include "lmrl/cuda/quiet_nan.cuh"
#include "lmrl/error.hpp"

namespace lmrl::cuda {

inline constexpr index_t fp8_tile_width = 128;  // quant/fp8_blocks.hpp's fp8_block
inline constexpr index_t fp8_row_multiple = 8;  // activation rows are padded to a multiple of this
inline constexpr float fp8_e4m3_max = 448.0f;

// Activations in 1 x 128 tiles (see the layouts above).
struct fp8_tiles {
  device_array<std::uint8_t> codes;  // [padded_rows x cols]
  device_array<float> scales;        // [ceil(cols / 128) x padded_rows]
  index_t rows = 0, cols = 0, padded_rows = 0;
};

// Weights in 128 x 128 blocks (see the layouts above).
struct fp8_blocks {
  device_array<std::uint8_t> codes;  // [rows x cols]
  device_array<float> scales;        // [ceil(rows / 128) x scale_stride]
  index_t rows = 0, cols = 0, scale_stride = 0;
};

enum class fp8_path { automatic, tensor_cores, cuda_cores };

inline const char* to_string(fp8_path p) {
  switch (p) {
    case fp8_path::automatic: return "automatic";
    case fp8_path::tensor_cores: return "tensor_cores";
    case fp8_path::cuda_cores: return "cuda_cores";
  }
  return "?";
}

namespace fp8_detail {

__host__ __device__ inline index_t blocks_of(index_t n) { return (n + fp8_tile_width - 1) / fp8_tile_width; }
inline index_t round_up(index_t n, index_t multiple) { return (n + multiple - 1) / multiple * multiple; }

__device__ inline std::uint8_t encode(float v, float scale) {
  return scale == 0.0f ? std::uint8_t{0}
                       : static_cast<std::uint8_t>(__nv_cvt_float_to_fp8(v / scale, __NV_SATFINITE, __NV_E4M3));
}

__device__ inline float decode(std::uint8_t code) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(code, __NV_E4M3)));
}


// One block of 128 threads per tile (row r, K-block b): grid (padded_rows, L).
template <class T>  // (templates: kernels defined in a header must not collide between translation units)
__global__ void quantize_tiles_kernel(const T* x, index_t rows, index_t cols, index_t ld, index_t padded_rows,
                                      std::uint8_t* codes, float* scales) {
  const index_t r = blockIdx.x, b = blockIdx.y, k = b * fp8_tile_width + threadIdx.x;
  const bool inside = r < rows && k < cols;
  const float v = inside ? static_cast<float>(x[r * ld + k]) : 0.0f;
  const float scale = block_max(fabsf(v)) / fp8_e4m3_max;  // NaN anywhere: every code of the tile NaN
  if (k < cols) codes[r * cols + k] = inside ? encode(v, scale) : std::uint8_t{0};
  if (threadIdx.x == 0) scales[b * padded_rows + r] = r < rows ? scale : 0.0f;
}

// One block of 256 threads per 128 x 128 block (p, b): grid (L, ceil(rows / 128)). Two passes over the block:
// its maximum, then its codes.
template <class T>
__global__ void quantize_blocks_kernel(const T* w, index_t rows, index_t cols, index_t ld, index_t scale_stride,
                                       std::uint8_t* codes, float* scales) {
  const index_t b = blockIdx.x, p = blockIdx.y;
  const index_t r0 = p * fp8_tile_width, k0 = b * fp8_tile_width;
  const index_t h = min(fp8_tile_width, rows - r0), wd = min(fp8_tile_width, cols - k0);
  float amax = 0.0f;
  for (index_t e = threadIdx.x; e < h * wd; e += blockDim.x)
    amax = nan_max(amax, fabsf(static_cast<float>(w[(r0 + e / wd) * ld + k0 + e % wd])));
  const float scale = block_max(amax) / fp8_e4m3_max;
  for (index_t e = threadIdx.x; e < h * wd; e += blockDim.x) {
    const index_t r = r0 + e / wd, k = k0 + e % wd;
    codes[r * cols + k] = encode(static_cast<float>(w[r * ld + k]), scale);
  }
  if (threadIdx.x == 0) scales[p * scale_stride + b] = scale;
}

// A warp per output element y[i, j] (8 warps a block): each K-block's products summed over the lanes (a
// fixed tree), scaled, added in block order.
template <class Out>
__global__ void gemm_cuda_cores_kernel(const std::uint8_t* xc, const float* xs, index_t padded_rows,
                                       const std::uint8_t* wc, const float* ws, index_t scale_stride, index_t rows,
                                       index_t n, index_t k, Out* y, index_t ldy, bool accumulate) {
  const index_t o = static_cast<index_t>(blockIdx.x) * 8 + threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  if (o >= rows * n) return;  // a whole warp leaves together
  const index_t i = o / n, j = o % n;
  const std::uint8_t* xr = xc + i * k;
  const std::uint8_t* wr = wc + j * k;
  float sum = 0.0f;
  for (index_t b = 0; b < blocks_of(k); ++b) {
    float partial = 0.0f;
    for (index_t e = b * fp8_tile_width + lane; e < min(k, (b + 1) * fp8_tile_width); e += 32)
      partial += decode(xr[e]) * decode(wr[e]);
    for (int s = 16; s > 0; s >>= 1) partial += __shfl_xor_sync(0xffffffffu, partial, s);
    sum += partial * (xs[b * padded_rows + i] * ws[(j / fp8_tile_width) * scale_stride + b]);
  }
  if (lane == 0) y[i * ldy + j] = accumulate ? y[i * ldy + j] + sum : sum;
}

// y[i, :] (+)= t[i, :] for the first y.rows rows of t (contiguous, n columns).
template <class T>
__global__ void store_rows_kernel(const T* t, index_t rows, index_t n, T* y, index_t ldy, bool accumulate) {
  const index_t total = rows * n, step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const index_t i = e / n, j = e % n;
    y[i * ldy + j] = accumulate ? y[i * ldy + j] + t[e] : t[e];
  }
}

inline bool is_sm90(int device) {
  int major = 0, minor = 0;
  LMRL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  LMRL_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major == 9 && minor == 0;
}

}  // namespace fp8_detail

// x [rows x cols] (row stride ld) into 1 x 128 tiles; `out`'s buffers grow as needed (poisoned when new,
// then every element written).
inline void quantize_fp8_activations(device_matrix<const float> x, fp8_tiles& out, cudaStream_t stream = nullptr) {
  detail::require_layout("cuda::quantize_fp8_activations", "x", x);
  const index_t padded = fp8_detail::round_up(x.rows, fp8_row_multiple), L = fp8_detail::blocks_of(x.cols);
  grow(out.codes, static_cast<std::size_t>(padded * x.cols), stream);
  grow(out.scales, static_cast<std::size_t>(L * padded), stream);
  out.rows = x.rows, out.cols = x.cols, out.padded_rows = padded;
  if (padded == 0 || L == 0) return;
  cuda::launch(fp8_detail::quantize_tiles_kernel<float>, dim3(static_cast<unsigned>(padded), static_cast<unsigned>(L)),
      static_cast<unsigned>(fp8_tile_width), 0, stream, x.data, x.rows, x.cols, x.ld, padded, out.codes.data(),
      out.scales.data());
  LMRL_CUDA_CHECK_LAUNCH("fp8_detail::quantize_tiles_kernel");
}

// w [rows x cols] (row stride ld) into 128 x 128 blocks; `out`'s buffers grow as needed.
inline void quantize_fp8_weights(device_matrix<const float> w, fp8_blocks& out, cudaStream_t stream = nullptr) {
  detail::require_layout("cuda::quantize_fp8_weights", "w", w);
  const index_t P = fp8_detail::blocks_of(w.rows), L = fp8_detail::blocks_of(w.cols),
                L4 = fp8_detail::round_up(L, 4);
  grow(out.codes, static_cast<std::size_t>(w.rows * w.cols), stream);
  grow(out.scales, static_cast<std::size_t>(P * L4), stream);
  out.rows = w.rows, out.cols = w.cols, out.scale_stride = L4;
  if (P == 0 || L == 0) return;
  LMRL_CUDA_CHECK(cudaMemsetAsync(out.scales.data(), 0, static_cast<std::size_t>(P * L4) * sizeof(float), stream));
  cuda::launch(fp8_detail::quantize_blocks_kernel<float>, dim3(static_cast<unsigned>(L), static_cast<unsigned>(P)), 256,
      0, stream, w.data, w.rows, w.cols, w.ld, L4, out.codes.data(), out.scales.data());
  LMRL_CUDA_CHECK_LAUNCH("fp8_detail::quantize_blocks_kernel");
}

// The products y (+)= x8 . w8^T on one cuBLAS handle (its stream and workspace), with the cuBLASLt algorithm
// of each shape looked up once and a workspace for outputs cuBLASLt cannot write in place. `blas` must outlive
// this object.
class fp8_products {
 public:
  fp8_products() = default;  // unusable until assigned one built from a handle
  explicit fp8_products(const cublas_handle& blas) : blas_(&blas) {
    LMRL_CUDA_CHECK(cudaGetDevice(&device_));
    tensor_cores_ = fp8_detail::is_sm90(device_) && cublasLtGetVersion() >= 120900;  // block scales came in 12.9
  }

  // Whether fp8_path::tensor_cores can run a product of these sizes here (compute capability 9.0, cuBLASLt
  // 12.9 or later, n % 4 == 0, k % 16 == 0, k > 0).
  bool tensor_cores_apply(index_t n, index_t k) const { return tensor_cores_ && n % 4 == 0 && k % 16 == 0 && k > 0; }
  // Device bytes of the workspace for outputs cuBLASLt cannot write in place (a decoder compares it across a
  // pass to know its captured graphs still name live memory).
  std::size_t workspace_bytes() const { return scratch_.bytes(); }

  // y [x8.rows x w8.rows] (+)= x8 . w8^T; returns the path that ran.
  fp8_path gemm(const fp8_tiles& x8, const fp8_blocks& w8, device_matrix<float> y, bool accumulate = false,
                fp8_path path = fp8_path::automatic) {
    const char* f = "cuda::fp8_products::gemm";
    lmrl::detail::require(blas_ != nullptr, f, ": no cuBLAS handle (default-constructed)");
    detail::require_layout(f, "y", y);
    lmrl::detail::require(x8.cols == w8.cols && y.rows == x8.rows && y.cols == w8.rows, f, ": x ", x8.rows, " x ",
                          x8.cols, " . w^T with w ", w8.rows, " x ", w8.cols, " does not fit y ", y.rows, " x ",
                          y.cols);
    const index_t n = w8.rows, k = w8.cols;
    const bool required = path == fp8_path::tensor_cores;
    if (path == fp8_path::automatic) path = tensor_cores_apply(n, k) ? fp8_path::tensor_cores : fp8_path::cuda_cores;
    lmrl::detail::require(path == fp8_path::cuda_cores || tensor_cores_apply(n, k), f,
                          ": the tensor-core path needs compute capability 9.0 and cuBLASLt 12.9 or later (this ",
                          "device: ", tensor_cores_ ? "yes" : "no", "), n % 4 == 0 (n = ", n,
                          ") and k % 16 == 0, k > 0 (k = ", k, ")");
    if (y.rows == 0 || n == 0) return path;
    if (path == fp8_path::tensor_cores && tensor_core_gemm(x8, w8, y, accumulate, required)) return path;
    // the CUDA cores (also where cuBLASLt had no algorithm for the shape and the path was automatic)
    const index_t outputs = y.rows * n;
    cuda::launch(fp8_detail::gemm_cuda_cores_kernel<float>, static_cast<unsigned>((outputs + 7) / 8), 256, 0,
        blas_->stream(), x8.codes.data(), x8.scales.data(), x8.padded_rows, w8.codes.data(), w8.scales.data(),
        w8.scale_stride, y.rows, n, k, y.data, y.ld, accumulate);
    LMRL_CUDA_CHECK_LAUNCH("fp8_detail::gemm_cuda_cores_kernel");
    return fp8_path::cuda_cores;
  }

 private:
  // The product on cuBLASLt; false when it has no algorithm for it (an error instead when `required`).
  bool tensor_core_gemm(const fp8_tiles& x8, const fp8_blocks& w8, device_matrix<float> y, bool accumulate,
                        bool required) {
    const index_t n = w8.rows;
    // cuBLASLt writes padded_rows rows with 16-byte aligned columns of y^T: in place when y allows it.
    const bool in_place = x8.padded_rows == y.rows && y.ld % 4 == 0 && reinterpret_cast<std::uintptr_t>(y.data) % 16 == 0;
    if (in_place) return lt_matmul(x8, w8, y.data, y.ld, accumulate, required);
    grow(scratch_, static_cast<std::size_t>(x8.padded_rows * n), blas_->stream());
    if (!lt_matmul(x8, w8, scratch_.data(), n, false, required)) return false;
    cuda::launch(fp8_detail::store_rows_kernel<float>, detail::blocks_for(y.rows * n, 256), 256, 0, blas_->stream(),
        scratch_.data(), y.rows, n, y.data, y.ld, accumulate);
    LMRL_CUDA_CHECK_LAUNCH("fp8_detail::store_rows_kernel");
    return true;
  }

  // D [n x padded_rows] column-major (ld ldd) = W . x^T (+ D): A = the weight codes, B = the activation codes.
  // The algorithm of each shape (or that there is none) is looked up once.
  bool lt_matmul(const fp8_tiles& x8, const fp8_blocks& w8, float* d, index_t ldd, bool accumulate, bool required) {
    const index_t m = w8.rows, n = x8.padded_rows, k = w8.cols;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    struct cleanup {
      cublasLtMatmulDesc_t& desc;
      cublasLtMatrixLayout_t &a, &b, &c;
      ~cleanup() {
        for (auto* l : {&a, &b, &c})
          if (*l) cublasLtMatrixLayoutDestroy(*l);
        if (desc) cublasLtMatmulDescDestroy(desc);
      }
    } guard{desc, a, b, c};
    cublas_check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
    const std::int32_t a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F,
                       b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    const void* a_scale = w8.scales.data();
    const void* b_scale = x8.scales.data();
    const auto set = [&](cublasLtMatmulDescAttributes_t attribute, const auto& value) {
      cublas_check(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)), "cublasLtMatmulDescSetAttribute");
    };
    set(CUBLASLT_MATMUL_DESC_TRANSA, transa);
    set(CUBLASLT_MATMUL_DESC_TRANSB, transb);
    set(CUBLASLT_MATMUL_DESC_A_SCALE_MODE, a_mode);
    set(CUBLASLT_MATMUL_DESC_B_SCALE_MODE, b_mode);
    set(CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, a_scale);
    set(CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, b_scale);
    const auto u = [](index_t v) { return static_cast<std::uint64_t>(v); };
    cublas_check(cublasLtMatrixLayoutCreate(&a, CUDA_R_8F_E4M3, u(k), u(m), k), "cublasLtMatrixLayoutCreate(A)");
    cublas_check(cublasLtMatrixLayoutCreate(&b, CUDA_R_8F_E4M3, u(k), u(n), k), "cublasLtMatrixLayoutCreate(B)");
    cublas_check(cublasLtMatrixLayoutCreate(&c, CUDA_R_32F, u(m), u(n), ldd), "cublasLtMatrixLayoutCreate(C, D)");

    // cuBLASLt's algorithms may assume more alignment than D has (its default preference is 256 bytes)
    int d_alignment = 256;
    while (reinterpret_cast<std::uintptr_t>(d) % static_cast<std::uintptr_t>(d_alignment) != 0) d_alignment /= 2;
    const auto key = std::make_tuple(m, n, k, ldd, accumulate, d_alignment);
    auto found = algorithms_.find(key);
    if (found == algorithms_.end()) {
      cublasLtMatmulPreference_t preference = nullptr;
      cublas_check(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
      const std::size_t workspace = blas_->workspace_bytes();
      cublasLtMatmulHeuristicResult_t result{};
      int returned = 0;
      const std::uint32_t alignment = static_cast<std::uint32_t>(d_alignment);
      cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(
          preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace));
      for (auto attribute : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        if (status == CUBLAS_STATUS_SUCCESS)
          status = cublasLtMatmulPreferenceSetAttribute(preference, attribute, &alignment, sizeof(alignment));
      if (status == CUBLAS_STATUS_SUCCESS)
        status = cublasLtMatmulAlgoGetHeuristic(blas_->lt(), desc, a, b, c, c, preference, 1, &result, &returned);
      cublasLtMatmulPreferenceDestroy(preference);
      // A combination cuBLASLt cannot run comes back as NOT_SUPPORTED or, for some layouts and versions,
      // INVALID_VALUE: either means no algorithm (the CUDA-core path then runs, unless tensor cores were
      // required). Anything else is an error.
      if (status != CUBLAS_STATUS_NOT_SUPPORTED && status != CUBLAS_STATUS_INVALID_VALUE)
        cublas_check(status, "cublasLtMatmulAlgoGetHeuristic");
      found = algorithms_.emplace(key, status == CUBLAS_STATUS_SUCCESS && returned > 0
                                           ? std::optional<cublasLtMatmulAlgo_t>(result.algo)
                                           : std::nullopt)
                  .first;
    }
    lmrl::detail::require(found->second.has_value() || !required,
                          "cuda::fp8_products::gemm: cuBLASLt has no block-scaled FP8 algorithm for ", m, " x ", n,
                          " x ", k, " on this device");
    if (!found->second) return false;
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublas_check(cublasLtMatmul(blas_->lt(), desc, &alpha, w8.codes.data(), a, x8.codes.data(), b, &beta, d, c, d, c,
                            &*found->second, blas_->workspace(), blas_->workspace_bytes(), blas_->stream()),
             "cublasLtMatmul (block-scaled FP8)");
    return true;
  }

  const cublas_handle* blas_ = nullptr;
  int device_ = 0;
  bool tensor_cores_ = false;
  // per shape, alignment and accumulation: cuBLASLt's algorithm, or none
  std::map<std::tuple<index_t, index_t, index_t, index_t, bool, int>, std::optional<cublasLtMatmulAlgo_t>> algorithms_;
  device_array<float> scratch_;
};

}  // namespace lmrl::cuda
