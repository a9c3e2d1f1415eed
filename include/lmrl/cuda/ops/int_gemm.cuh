// Integer products of quantized weights with Q8_0 activations on the GPU: the
// device twin of quant/int_gemm.hpp, with its bits.
//
//   packed_integer_weights w;                                   // device copies of integer_linear matrices
//   const std::size_t i = w.add(integer_linear(integer_format::q4_0, host_w));   // quantized on the host
//   const std::size_t k = w.add_on_device(integer_format::q4_0, device_w);      // all but q4_k: on the device
//   w.upload(stream);
//   quantize_rows<q8_0>(x, n, cols, xq, stream);                // cuda/ops/ggml_blocks.cuh: X's blocks
//   int_matmul_transposed(xq, w[i], y, accumulate, stream);      // Y [n x rows] (+)= X W^T
//
// Every format of quant/integer_linear.hpp (q8_0, q4_0, int8, q4_k, tq2_0), its
// bytes as the CPU holds them. The arithmetic is int_dot.hpp's, in its fixed
// order: in each activation block (a sub-block of Q4_K's and TQ2_0's 256)
// lane j = 0..7 sums the products of codes 4j..4j+3 in int32 (__dp4a) and
// accumulates them into even_j or odd_j by the block's parity as
// fma(d_w d_x, lane_j, acc), d_w d_x rounded to float first, Q4_K's min term
// after it in the same lane; then the lanes are summed as sum_lanes does. Here
// the 8 lanes are 8 threads, and sum_lanes' tree ((a0 + a4) + (a2 + a6)) +
// ((a1 + a5) + (a3 + a7)) is three xor shuffles (4, 2, 1), which add the same
// pairs (float addition is commutative). int8's row scale and the accumulate
// add follow as int_gemm does. The _rn intrinsics keep nvcc from contracting
// any of it into another fma: each output has the CPU's bits.
//
// Work: a warp computes 4 weight rows (8 threads each) against up to 4
// activation rows, each weight block read once for the 4. Bytes are read one at
// a time (the blocks of 34, 18 and 66 bytes are not word aligned). Not tuned.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/ops/ggml_blocks.cuh"
#include "lmrl/cuda/ops/matmul.cuh"
#include "lmrl/cuda/quiet_nan.cuh"
#include "lmrl/error.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/integer_linear.hpp"
#include "lmrl/quant/k_quants.hpp"
#include "lmrl/quant/ternary.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl::cuda {

// An integer_linear matrix in device memory: row r's blocks at data + r * stride (the CPU's bytes),
// row_scales (int8 only) one float a row.
struct device_integer_matrix {
  integer_format format = integer_format::q8_0;
  const std::uint8_t* data = nullptr;
  std::size_t stride = 0;
  const float* row_scales = nullptr;
  index_t rows = 0, cols = 0;
};

namespace int_gemm_detail {

// Four values in [-128, 127] as __dp4a's four signed bytes (the first in the low byte).
__device__ inline int pack4(int a, int b, int c, int d) {
  const unsigned u = (static_cast<unsigned>(a) & 0xffu) | (static_cast<unsigned>(b) & 0xffu) << 8 |
                     (static_cast<unsigned>(c) & 0xffu) << 16 | (static_cast<unsigned>(d) & 0xffu) << 24;
  return static_cast<int>(u);
}

// Code k of 4 consecutive ones, `bits` wide at `shift` in each byte, minus `offset`, packed.
__device__ inline int codes4(const std::uint8_t* p, int shift, unsigned mask, int offset) {
  return pack4(((p[0] >> shift) & mask) - offset, ((p[1] >> shift) & mask) - offset,
               ((p[2] >> shift) & mask) - offset, ((p[3] >> shift) & mask) - offset);
}

// A run's float factors: the scale d_w of its codes and (has_min) the factor m_w of minus x's code sums.
struct run_scales {
  float d, m;
};

// Each format's blocks as int_dot.hpp's *_weights read them: run `run` of a block (its sub-block), lane j's
// values (codes 4j..4j+3 minus the format's offset, packed), and the run's scales.
struct q8_0_codes {
  static constexpr std::size_t block_bytes = q8_0::bytes_per_block, sub_blocks = 1;
  static constexpr bool has_scale = true, has_min = false;
  __device__ static run_scales scales(const std::uint8_t* b, int) { return {load_half(b), 0.0f}; }
  __device__ static int values(const std::uint8_t* b, int, int j) { return codes4(b + 2 + 4 * j, 0, 0xffu, 0); }
};
struct q4_0_codes {  // byte 2 + k holds code k (low nibble) and code k + 16 (high)
  static constexpr std::size_t block_bytes = q4_0::bytes_per_block, sub_blocks = 1;
  static constexpr bool has_scale = true, has_min = false;
  __device__ static run_scales scales(const std::uint8_t* b, int) { return {load_half(b), 0.0f}; }
  __device__ static int values(const std::uint8_t* b, int, int j) {
    return codes4(b + 2 + 4 * (j % 4), j < 4 ? 0 : 4, 0x0fu, 8);
  }
};
struct i8_codes {  // int8_rows: 32 codes a block, no block scale (the row's comes last)
  static constexpr std::size_t block_bytes = 32, sub_blocks = 1;
  static constexpr bool has_scale = false, has_min = false;
  __device__ static run_scales scales(const std::uint8_t*, int) { return {1.0f, 0.0f}; }
  __device__ static int values(const std::uint8_t* b, int, int j) { return codes4(b + 4 * j, 0, 0xffu, 0); }
};
struct q4_k_codes {  // sub-block r: nibble r % 2 of qs bytes 32 (r / 2) ..; d sc_r and dmin m_r (k_quants.hpp)
  static constexpr std::size_t block_bytes = q4_k::bytes_per_block, sub_blocks = 8;
  static constexpr bool has_scale = true, has_min = true;
  __device__ static run_scales scales(const std::uint8_t* b, int run) {  // exact: 11-bit halves times 6 bits
    int sc = 0, m = 0;
    lmrl::detail::k_quants::scale_min(run, b + 4, sc, m);
    return {load_half(b) * static_cast<float>(sc), load_half(b + 2) * static_cast<float>(m)};
  }
  __device__ static int values(const std::uint8_t* b, int run, int j) {
    return codes4(b + 16 + 32 * (run / 2) + 4 * j, 4 * (run % 2), 0x0fu, 0);
  }
};
struct tq2_0_codes {  // sub-block r: bits 2 (r % 4) of bytes 32 (r / 4) ..; codes c stand for c - 1; d at byte 64
  static constexpr std::size_t block_bytes = tq2_0::bytes_per_block, sub_blocks = 8;
  static constexpr bool has_scale = true, has_min = false;
  __device__ static run_scales scales(const std::uint8_t* b, int) { return {load_half(b + 64), 0.0f}; }
  __device__ static int values(const std::uint8_t* b, int run, int j) {
    return codes4(b + 32 * (run / 4) + 4 * j, 2 * (run % 4), 0x03u, 1);
  }
};

inline constexpr int threads = 256, x_rows_per_warp = 4;

// Lane j's share of activation block b against one weight block, for R activation rows, into acc[i]
// (the even or the odd accumulators, by b's parity).
template <class F, int R>
__device__ inline void accumulate_block(const std::uint8_t* w_row, const std::uint8_t* __restrict__ xq,
                                        index_t x_rows, std::size_t x_row_bytes, index_t b, int j, float (&acc)[R]) {
  constexpr std::size_t xb_bytes = q8_0::bytes_per_block;
  const std::uint8_t* wb = w_row + static_cast<std::size_t>(b) / F::sub_blocks * F::block_bytes;
  const int run = static_cast<int>(b % static_cast<index_t>(F::sub_blocks));
  const int w = F::values(wb, run, j);
  const run_scales w_scales = F::scales(wb, run);
#pragma unroll
  for (int i = 0; i < R; ++i) {
    if (i >= x_rows) break;
    const std::uint8_t* xb = xq + static_cast<std::size_t>(i) * x_row_bytes + static_cast<std::size_t>(b) * xb_bytes;
    const float d_x = load_half(xb);
    const int x = codes4(xb + 2 + 4 * j, 0, 0xffu, 0);
    const float dd = F::has_scale ? __fmul_rn(w_scales.d, d_x) : d_x;
    acc[i] = __fmaf_rn(dd, static_cast<float>(__dp4a(w, x, 0)), acc[i]);
    if constexpr (F::has_min)
      acc[i] = __fmaf_rn(__fmul_rn(w_scales.m, d_x), static_cast<float>(-__dp4a(x, 0x01010101, 0)), acc[i]);
  }
}

// y [n x rows] (+)= xq W^T: warp `item` takes weight rows 4 (item % quads) .. (thread group g = lane / 8 the
// g-th) and activation rows R (item / quads) ..; a grid-stride loop whose bounds are the same for every lane.
template <class F, int R>
__global__ void int_gemm_kernel(const std::uint8_t* __restrict__ xq, index_t n, index_t nb,
                                const std::uint8_t* __restrict__ w, std::size_t stride,
                                const float* __restrict__ row_scales, index_t rows, float* __restrict__ y, index_t ldy,
                                bool accumulate) {
  constexpr unsigned all = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x % 32), j = lane % 8;
  const index_t quads = (rows + 3) / 4, items = quads * ((n + R - 1) / R);
  const std::size_t x_row_bytes = static_cast<std::size_t>(nb) * q8_0::bytes_per_block;
  const index_t step = static_cast<index_t>(gridDim.x) * (blockDim.x / 32);
  for (index_t item = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; item < items; item += step) {
    const index_t o = item % quads * 4 + lane / 8, i0 = item / quads * R, x_rows = min(static_cast<index_t>(R), n - i0);
    // a group past the last weight row reads the last one and writes nothing (its lanes still shuffle)
    const std::uint8_t* w_row = w + static_cast<std::size_t>(min(o, rows - 1)) * stride;
    const std::uint8_t* x = xq + static_cast<std::size_t>(i0) * x_row_bytes;
    float even[R], odd[R];
#pragma unroll
    for (int i = 0; i < R; ++i) even[i] = odd[i] = 0.0f;
    for (index_t b = 0; b < nb; b += 2) {
      accumulate_block<F, R>(w_row, x, x_rows, x_row_bytes, b, j, even);
      if (b + 1 < nb) accumulate_block<F, R>(w_row, x, x_rows, x_row_bytes, b + 1, j, odd);
    }
#pragma unroll
    for (int i = 0; i < R; ++i) {
      float a = __fadd_rn(even[i], odd[i]);
      for (int m = 4; m > 0; m >>= 1) a = __fadd_rn(a, __shfl_xor_sync(all, a, m, 8));
      if (j != 0 || o >= rows || i >= x_rows) continue;
      const float v = row_scales != nullptr ? __fmul_rn(a, row_scales[o]) : a;
      float& target = y[(i0 + i) * ldy + o];
      target = accumulate ? __fadd_rn(target, v) : v;
    }
  }
}

// int8_rows' quantization of row blockIdx.x of w [rows x cols] (int8_rows::quantize_row's rule: s = max|w| / 127,
// code = nearbyint(w / s) as w times 1 / s, or w / s where 1 / s overflows, clamped to +-127), codes padded with
// zeros to `padded` a row. A row with a non-finite value gets a NaN scale and zero codes (the host refuses it).
template <int Threads>
__global__ void quantize_int8_rows_kernel(const float* __restrict__ w, index_t cols, index_t padded,
                                          std::int8_t* __restrict__ codes, float* __restrict__ scales) {
  const float* row = w + static_cast<index_t>(blockIdx.x) * cols;
  std::int8_t* out = codes + static_cast<index_t>(blockIdx.x) * padded;
  float amax = 0.0f;
  for (index_t c = threadIdx.x; c < cols; c += Threads) amax = nan_max(amax, fabsf(row[c]));
  amax = block_max(amax);
  const bool finite = amax <= FLT_MAX;
  const float s = finite ? __fdiv_rn(amax, 127.0f) : quiet_nan<float>();
  if (threadIdx.x == 0) scales[blockIdx.x] = s;
  const float inverse = s != 0.0f && finite ? __fdiv_rn(1.0f, s) : 0.0f;
  const bool overflows = !(inverse <= FLT_MAX);
  for (index_t c = threadIdx.x; c < padded; c += Threads) {
    float code = 0.0f;
    if (c < cols && inverse != 0.0f) code = rintf(overflows ? __fdiv_rn(row[c], s) : __fmul_rn(row[c], inverse));
    out[c] = static_cast<std::int8_t>(fminf(fmaxf(code, -127.0f), 127.0f));
  }
}

// ternary.hpp's TQ2_0 quantization, a warp per block of 256 (w [rows x cols], rows padded with zeros to
// whole blocks, blocks row after row): d = max |x| (absmax) or the mean of |x| summed in double in the
// values' order (absmean: one lane sums, for the host's bits), q = clamp(round(x / d), -1, 1) as x times 1 / d;
// lane m writes bytes m and 32 + m (values 128 h + m + 32 n in bits 2n, n = 0..3), the half d at byte 64.
// A block with a non-finite value gets a NaN d and zero values (the host refuses it).
template <bool Absmean>
__global__ void quantize_tq2_0_kernel(const float* __restrict__ w, index_t rows, index_t cols,
                                      std::uint8_t* __restrict__ out) {
  constexpr unsigned all = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const index_t per_row = (cols + 255) / 256, blocks = rows * per_row;
  const index_t step = static_cast<index_t>(gridDim.x) * (blockDim.x / 32);
  for (index_t b = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; b < blocks; b += step) {
    const float* row = w + b / per_row * cols;
    const index_t first = b % per_row * 256;
    const auto value = [&](index_t i) { return first + i < cols ? row[first + i] : 0.0f; };
    float x[8], amax = 0.0f;
    for (int k = 0; k < 8; ++k) {
      x[k] = value(32 * k + lane);
      amax = nan_max(amax, fabsf(x[k]));
    }
    for (int o = 16; o > 0; o >>= 1) amax = nan_max(amax, __shfl_xor_sync(all, amax, o));
    float d = amax;
    if constexpr (Absmean) {
      double sum = 0;
      if (lane == 0)
        for (index_t i = 0; i < 256; ++i) sum = __dadd_rn(sum, static_cast<double>(fabsf(value(i))));
      d = static_cast<float>(__ddiv_rn(__shfl_sync(all, sum, 0), 256.0));
    }
    const bool finite = amax <= FLT_MAX;
    const float id = finite && d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    std::uint8_t* block = out + static_cast<std::size_t>(b) * tq2_0::bytes_per_block;
    for (int h = 0; h < 2; ++h) {
      unsigned byte = 0;
      for (int n = 0; n < 4; ++n) {
        const int q = max(-1, min(1, static_cast<int>(roundf(__fmul_rn(x[4 * h + n], id)))));
        byte |= static_cast<unsigned>(q + 1) << (2 * n);
      }
      block[32 * h + lane] = static_cast<std::uint8_t>(byte);
    }
    if (lane == 0) store_half(block + 64, finite ? d : quiet_nan<float>());
  }
}

template <class F>
void launch_int_gemm(const std::uint8_t* xq, index_t n, index_t nb, const device_integer_matrix& w,
                     device_matrix<float> y, bool accumulate, cudaStream_t stream) {
  constexpr int R = x_rows_per_warp;
  const index_t warps = (w.rows + 3) / 4 * ((n + R - 1) / R), per_block = threads / 32;
  const auto grid = static_cast<unsigned>(std::clamp<index_t>((warps + per_block - 1) / per_block, 1, 65535));
  cuda::launch(int_gemm_kernel<F, R>, grid, threads, 0, stream, xq, n, nb, w.data, w.stride, w.row_scales, w.rows,
               y.data, y.ld, accumulate);
  LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::int_gemm_detail::int_gemm_kernel");
}

}  // namespace int_gemm_detail

// Y [n x w.rows] (+)= X W^T, with X given as xq: n rows of ceil(w.cols / 32) Q8_0 blocks (quantize_rows<q8_0>
// of cuda/ops/ggml_blocks.cuh, or quant/q8_0_rows.hpp's bytes). The bits of int_matmul_transposed on the CPU.
inline void int_matmul_transposed(const std::uint8_t* xq, const device_integer_matrix& w, device_matrix<float> y,
                                  bool accumulate = false, cudaStream_t stream = nullptr) {
  const char* f = "lmrl::cuda::int_matmul_transposed";
  const index_t n = y.rows;
  lmrl::detail::require(y.cols == w.rows && n >= 0 && y.ld >= std::max<index_t>(y.cols, 1), f, ": y is [", y.rows,
                        " x ", y.cols, "] (ld ", y.ld, "), the matrix has ", w.rows, " rows");
  if (n == 0 || w.rows == 0) return;
  lmrl::detail::require(xq != nullptr && w.data != nullptr && y.data != nullptr, f, ": xq, w and y must be device "
                        "pointers");
  lmrl::detail::require((w.format == integer_format::int8) == (w.row_scales != nullptr), f, ": int8 weights have "
                        "row scales, the other formats none");
  const index_t nb = (w.cols + 31) / 32;
  namespace d = int_gemm_detail;
  switch (w.format) {
    case integer_format::q8_0: return d::launch_int_gemm<d::q8_0_codes>(xq, n, nb, w, y, accumulate, stream);
    case integer_format::q4_0: return d::launch_int_gemm<d::q4_0_codes>(xq, n, nb, w, y, accumulate, stream);
    case integer_format::int8: return d::launch_int_gemm<d::i8_codes>(xq, n, nb, w, y, accumulate, stream);
    case integer_format::q4_k: return d::launch_int_gemm<d::q4_k_codes>(xq, n, nb, w, y, accumulate, stream);
    case integer_format::tq2_0:
    case integer_format::tq2_0_absmean:
      return d::launch_int_gemm<d::tq2_0_codes>(xq, n, nb, w, y, accumulate, stream);
  }
  lmrl::detail::fail(f, ": unknown integer format");
}

// Device copies of integer_linear matrices in one allocation: add() each (quantized on the host) or, for every
// format but q4_k, add_on_device() (a float matrix in device memory, quantized there: the host's bytes),
// upload() them, then [i] is matrix i's view. The host staging bytes are kept for the next packing (cleared,
// not freed).
class packed_integer_weights {
 public:
  // Stages m's bytes (and int8's row scales); returns its index. Invalidates the views until upload().
  std::size_t add(const integer_linear& m) {
    const lmrl::detail::int_kernels::weight_rows src = m.kernel_rows();
    entry e{m.format(), aligned_end(), src.stride, 0, m.rows(), m.cols()};
    append(src.data, src.stride * static_cast<std::size_t>(m.rows()));
    if (src.row_scales != nullptr) {
      e.scales = aligned_end();
      append(reinterpret_cast<const std::uint8_t*>(src.row_scales), static_cast<std::size_t>(m.rows()) * sizeof(float));
    }
    entries_.push_back(e);
    return entries_.size() - 1;
  }
  // Stages w [rows x cols] (device memory, read at upload()) in any format but q4_k, rows padded to whole
  // blocks (32 values, tq2_0's 256) with zeros as the host pads them; returns its index. A non-finite weight
  // gives its block (int8: its row) a NaN scale (the host's add() refuses it): the products that read it are NaN.
  std::size_t add_on_device(integer_format format, device_matrix<const float> w) {
    const char* f = "lmrl::cuda::packed_integer_weights::add_on_device";
    lmrl::detail::require(quantizes_on_device(format), f, ": ", integer_format_name(format),
                          " is quantized on the host (add); the other formats here");
    lmrl::detail::require(w.rows >= 0 && w.cols >= 0 && w.ld == std::max<index_t>(w.cols, 1), f,
                          ": w must be a contiguous [rows x cols] matrix");
    const bool ternary = format == integer_format::tq2_0 || format == integer_format::tq2_0_absmean;
    const std::size_t blocks = static_cast<std::size_t>((w.cols + 31) / 32);
    const std::size_t stride = ternary ? static_cast<std::size_t>((w.cols + 255) / 256) * tq2_0::bytes_per_block
                                       : blocks * (format == integer_format::q8_0   ? q8_0::bytes_per_block
                                                   : format == integer_format::q4_0 ? q4_0::bytes_per_block
                                                                                    : 32);
    entry e{format, aligned_end(), stride, 0, w.rows, w.cols};
    end_ = e.offset + stride * static_cast<std::size_t>(w.rows);
    if (format == integer_format::int8) {
      e.scales = aligned_end();
      end_ = e.scales + static_cast<std::size_t>(w.rows) * sizeof(float);
    }
    entries_.push_back(e);
    on_device_.push_back({entries_.size() - 1, w.data});
    return entries_.size() - 1;
  }
  // Copies the staged bytes to the device (growing its buffer), quantizes add_on_device's matrices there, and
  // synchronizes `stream`.
  void upload(cudaStream_t stream) {
    cuda::grow(device_, std::max<std::size_t>(end_, 1), stream);
    if (!host_.empty())
      LMRL_CUDA_CHECK(cudaMemcpyAsync(device_.data(), host_.data(), host_.size(), cudaMemcpyHostToDevice, stream));
    for (const auto& [i, w] : on_device_) {
      const entry& e = entries_[i];
      std::uint8_t* out = device_.data() + e.offset;
      if (e.format == integer_format::q8_0) {
        quantize_rows<q8_0>(w, e.rows, e.cols, out, stream);
      } else if (e.format == integer_format::q4_0) {
        quantize_rows<q4_0>(w, e.rows, e.cols, out, stream);
      } else if (e.format != integer_format::int8) {  // tq2_0, either rule
        if (e.rows == 0 || e.cols == 0) continue;
        const index_t warps = e.rows * ((e.cols + 255) / 256);
        const auto grid = static_cast<unsigned>(std::clamp<index_t>((warps + 7) / 8, 1, 65535));
        if (e.format == integer_format::tq2_0_absmean) {
          cuda::launch(int_gemm_detail::quantize_tq2_0_kernel<true>, grid, 256, 0, stream, w, e.rows, e.cols, out);
        } else {
          cuda::launch(int_gemm_detail::quantize_tq2_0_kernel<false>, grid, 256, 0, stream, w, e.rows, e.cols, out);
        }
        LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::int_gemm_detail::quantize_tq2_0_kernel");
      } else if (e.rows > 0) {
        constexpr int threads = 256;
        cuda::launch(int_gemm_detail::quantize_int8_rows_kernel<threads>, static_cast<unsigned>(e.rows), threads, 0,
                     stream, w, e.cols, static_cast<index_t>(e.stride), reinterpret_cast<std::int8_t*>(out),
                     reinterpret_cast<float*>(device_.data() + e.scales));
        LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::int_gemm_detail::quantize_int8_rows_kernel");
      }
    }
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream));  // host_ is reused by the next packing
    uploaded_ = entries_.size();
  }
  // Starts a new packing (the device bytes stay until the next upload()).
  void clear() {
    entries_.clear();
    on_device_.clear();
    host_.clear();
    end_ = 0;
    uploaded_ = 0;
  }

  // The formats add_on_device takes.
  static bool quantizes_on_device(integer_format format) { return format != integer_format::q4_k; }

  std::size_t size() const { return entries_.size(); }
  // Device bytes of the uploaded matrices.
  std::size_t bytes() const { return uploaded_ > 0 ? end_ : 0; }
  device_integer_matrix operator[](std::size_t i) const {
    lmrl::detail::require(i < uploaded_, "lmrl::cuda::packed_integer_weights: matrix ", i, " is not uploaded (",
                          uploaded_, " are)");
    const entry& e = entries_[i];
    const bool scaled = e.format == integer_format::int8;
    return {e.format, device_.data() + e.offset, e.stride,
            scaled ? reinterpret_cast<const float*>(device_.data() + e.scales) : nullptr, e.rows, e.cols};
  }

 private:
  struct entry {
    integer_format format;
    std::size_t offset, stride, scales;
    index_t rows, cols;
  };
  std::size_t aligned_end() const { return (end_ + 15) / 16 * 16; }  // the scales' floats aligned
  void append(const std::uint8_t* p, std::size_t n) {
    const std::size_t at = aligned_end();
    host_.resize(at + n);  // (over add_on_device's room too: upload() quantizes over those bytes after the copy)
    if (n > 0) std::memcpy(host_.data() + at, p, n);
    end_ = host_.size();
  }

  std::vector<entry> entries_;
  std::vector<std::pair<std::size_t, const float*>> on_device_;  // add_on_device's entries and their floats
  std::vector<std::uint8_t> host_;
  std::size_t end_ = 0;  // the bytes staged and reserved
  device_array<std::uint8_t> device_;
  std::size_t uploaded_ = 0;
};

}  // namespace lmrl::cuda
