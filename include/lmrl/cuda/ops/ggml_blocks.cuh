// ggml's Q8_0 and Q4_0 blocks on the GPU, a warp per block: the device twin
// of quant/ggml_blocks.hpp's quantize_block / dequantize_block, the same bytes.
//
//   const block_code c = quantize_in_warp<q8_0>(x, lane);   // lane i holds value i of the 32
//   store_block<q8_0>(c, lane, out);                         // the block's bytes (34 for q8_0, 18 for q4_0)
//   float back = c.code_value * half_scale(c.scale);         // what dequantize_block gives lane i
//   float v = block_value<q8_0>(block, i);                   // value i of stored bytes
//   round_rows_through<q8_0>(x, rows, cols, out, stream);    // rows rounded through blocks (host call)
//   quantize_rows<q8_0>(x, rows, cols, bytes, stream);        // rows into blocks' bytes (host call)
//
// The rules, as quant/ggml_blocks.hpp (read it for ggml's reasons):
//   Q8_0: d = max |x| / 127,  q_i = round(x_i / d), half away from zero, int8;     x_i ~ d q_i
//   Q4_0: m = the first x_i of largest |x_i|, d = m / -8,  q_i = min(15, trunc(x_i / d + 8.5));  x_i ~ d (q_i - 8)
// with x / d computed as x times 1/d and the product rounded before the + 8.5, as ggml; the _rn
// intrinsics keep nvcc from fusing what ggml rounds. d is stored as an IEEE half and dequantizing
// multiplies by that half. A block holding a value that is not finite gets a NaN scale (the CPU's
// quantize_block refuses such a block; a kernel cannot throw, so whatever reads it reads NaN).
// Every lane of the warp must call quantize_in_warp (it shuffles) and store_block (q4_0 shuffles).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/quiet_nan.cuh"
#include "lmrl/error.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl::cuda {

template <class Format>
concept ggml_block_format = std::is_same_v<Format, q8_0> || std::is_same_v<Format, q4_0>;

// One lane's share of a quantized block: the block's scale d (before its half rounding) and the lane's code
// (q8_0: -127 .. 127; q4_0: 0 .. 15).
struct block_code {
  float scale;
  int code;
};

// d rounded to the half the block stores, as a float.
__device__ inline float half_scale(float d) { return __half2float(__float2half_rn(d)); }

// A block's half scale at p, little-endian as ggml stores it (blocks are not 2-byte aligned: bytes one by one).
__device__ inline float load_half(const std::uint8_t* p) {
  __half_raw bits;
  bits.x = static_cast<unsigned short>(p[0] | (p[1] << 8));
  return __half2float(__half(bits));
}
__device__ inline void store_half(std::uint8_t* p, float d) {
  const unsigned short bits = __half_as_ushort(__float2half_rn(d));
  p[0] = static_cast<std::uint8_t>(bits & 0xff);
  p[1] = static_cast<std::uint8_t>(bits >> 8);
}

// The value a code stands for, before its scale: q (q8_0) or q - 8 (q4_0).
template <ggml_block_format Format>
__device__ inline float code_value(int code) {
  return static_cast<float>(std::is_same_v<Format, q8_0> ? code : code - 8);
}

template <ggml_block_format Format>
__device__ inline block_code quantize_in_warp(float x, int lane) {
  constexpr unsigned all = 0xffffffffu;
  float amax = fabsf(x);  // NaN kept: a block with a NaN or an infinity ends with amax not finite
  int first = lane;       // the lane of the first largest |x| (q4_0's m)
  for (int o = 16; o > 0; o >>= 1) {
    const float other = __shfl_xor_sync(all, amax, o);
    const int other_lane = __shfl_xor_sync(all, first, o);
    if (other > amax || (other == amax && other_lane < first)) first = other_lane;
    amax = nan_max(amax, other);
  }
  const float extreme = __shfl_sync(all, x, first);
  if (!(amax <= FLT_MAX)) return {quiet_nan<float>(), 0};
  const float d = std::is_same_v<Format, q8_0> ? __fdiv_rn(amax, 127.0f) : __fdiv_rn(extreme, -8.0f);
  const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
  if constexpr (std::is_same_v<Format, q8_0>) {
    return {d, static_cast<int>(roundf(__fmul_rn(x, id)))};
  } else {
    return {d, min(15, static_cast<int>(__fadd_rn(__fmul_rn(x, id), 8.5f)))};
  }
}

// The block's bytes from every lane's code: the half scale (little-endian, as ggml), then the codes (q8_0:
// byte 2 + i holds code i; q4_0: byte 2 + j holds code j in its low nibble and code j + 16 in its high one).
template <ggml_block_format Format>
__device__ inline void store_block(block_code c, int lane, std::uint8_t* __restrict__ out) {
  if (lane == 0) store_half(out, c.scale);
  if constexpr (std::is_same_v<Format, q8_0>) {
    out[2 + lane] = static_cast<std::uint8_t>(static_cast<std::int8_t>(c.code));
  } else {
    const int high = __shfl_down_sync(0xffffffffu, c.code, 16);  // lane j < 16 gets code j + 16
    if (lane < 16) out[2 + lane] = static_cast<std::uint8_t>(c.code | (high << 4));
  }
}

// Value i of a stored block: its code times its half scale, as dequantize_block computes it.
template <ggml_block_format Format>
__device__ inline float block_value(const std::uint8_t* __restrict__ block, int i) {
  const float scale = load_half(block);
  if constexpr (std::is_same_v<Format, q8_0>) {
    return static_cast<float>(static_cast<std::int8_t>(block[2 + i])) * scale;
  } else {
    const int code = i < 16 ? (block[2 + i] & 0x0f) : (block[2 + i - 16] >> 4);
    return code_value<Format>(code) * scale;
  }
}

namespace ggml_blocks_detail {

inline constexpr int threads = 256;

// A warp per (row, block of 32 columns), a grid-stride loop whose bounds are the same for every lane of a warp;
// a short last block padded with zeros. Bytes: the blocks' bytes into out_bytes (rows of whole blocks); else the
// values they stand for into out_values. x and out_values may be the same buffer: each lane reads its value
// before it writes it.
template <class Format, bool Bytes>
__global__ void rows_through_blocks_kernel(const float* x, index_t rows, index_t cols, float* out_values,
                                           std::uint8_t* __restrict__ out_bytes) {
  constexpr int W = 32;
  const int lane = static_cast<int>(threadIdx.x) % W;
  const index_t blocks = (cols + W - 1) / W, warps = rows * blocks;
  const index_t step = static_cast<index_t>(gridDim.x) * (blockDim.x / W);
  for (index_t w = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / W; w < warps; w += step) {
    const index_t r = w / blocks, c = w % blocks * W + lane;
    const float v = c < cols ? x[r * cols + c] : 0.0f;
    const block_code q = quantize_in_warp<Format>(v, lane);
    if constexpr (Bytes) {
      store_block<Format>(q, lane, out_bytes + static_cast<std::size_t>(w) * Format::bytes_per_block);
    } else if (c < cols) {
      out_values[r * cols + c] = code_value<Format>(q.code) * half_scale(q.scale);
    }
  }
}

// Launches it for x [rows x cols] (checked by the callers).
template <class Format, bool Bytes>
void rows_through_blocks(const char* f, const float* x, index_t rows, index_t cols, float* out_values,
                         std::uint8_t* out_bytes, cudaStream_t stream) {
  lmrl::detail::require(rows >= 0 && cols >= 0, f, ": rows = ", rows, " and cols = ", cols, " must be >= 0");
  if (rows == 0 || cols == 0) return;
  lmrl::detail::require(x != nullptr && (Bytes ? out_bytes != nullptr : out_values != nullptr), f,
                        ": x and out must be device pointers");
  const index_t threads_needed = rows * ((cols + 31) / 32) * 32;
  const auto grid = static_cast<unsigned>(std::clamp<index_t>((threads_needed + threads - 1) / threads, 1, 65535));
  cuda::launch(rows_through_blocks_kernel<Format, Bytes>, grid, threads, 0, stream, x, rows, cols, out_values,
               out_bytes);
  LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::ggml_blocks_detail::rows_through_blocks_kernel");
}

}  // namespace ggml_blocks_detail

// out [rows x cols] = x rounded through Format blocks of 32 along each row, a short last block padded with
// zeros (as quant/q8_0_rows.hpp pads the activations of the CPU's integer products): quantize_block then
// dequantize_block of each block, the values the CPU's integer products multiply by. out may be x.
template <ggml_block_format Format>
void round_rows_through(const float* x, index_t rows, index_t cols, float* out, cudaStream_t stream = nullptr) {
  ggml_blocks_detail::rows_through_blocks<Format, false>("lmrl::cuda::round_rows_through", x, rows, cols, out,
                                                         nullptr, stream);
}

// x [rows x cols] quantized into Format blocks of 32 along each row, a short last block padded with zeros:
// out holds rows x ceil(cols / 32) blocks, row after row, the bytes of quant/q8_0_rows.hpp's
// quantize_rows_q8_0 for q8_0 (what cuda/ops/int_gemm.cuh multiplies).
template <ggml_block_format Format>
void quantize_rows(const float* x, index_t rows, index_t cols, std::uint8_t* out, cudaStream_t stream = nullptr) {
  ggml_blocks_detail::rows_through_blocks<Format, true>("lmrl::cuda::quantize_rows", x, rows, cols, nullptr, out,
                                                        stream);
}

}  // namespace lmrl::cuda
