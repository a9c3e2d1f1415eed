// Attention of new rows against a key/value cache on the GPU: what decoding
// needs (model/generate.cuh), the twin of the CPU decoder's ops::attention_forward
// over model/kv_cache.hpp's rows.
//
// The cache of one layer, keys and values alike: [slots x kv_heads x max_len] rows
// of head_dim values, row-major (one contiguous max_len-row block per slot and kv
// head, as on the CPU), each row stored in a kv_format (model/kv_format.hpp):
// head_dim floats, or head_dim / 32 ggml q8_0 / q4_0 blocks, the CPU cache's
// bytes exactly (quant/ggml_blocks.hpp: the same scale, the same codes, the
// same half rounding).
//
//   kv_cache_store(k, v, ld, n, slots, positions, kv_heads, head_dim, max_len, format, k_cache, v_cache)
//       cache[slot_r, g, position_r] = row r's head g of k (and of v), for r < n, g < kv_heads,
//       quantized where the format is
//   cached_attention_forward(q, n, slots, positions, heads, kv_heads, head_dim, max_len, format, k_cache, v_cache, out)
//       out[r, h] = softmax_j(scale q[r, h] . K[j]) V[j] over the keys j in [0, position_r] of slot_r,
//       kv head g = h / (heads / kv_heads) (repeat_kv), scale = 1/sqrt(head_dim), K and V dequantized
//       where stored quantized
//
// (Each also takes float caches without a format: f32.) q and out are [n x
// heads*head_dim], k and v rows of kv_heads*head_dim floats at row stride ld;
// slots and positions device [n] (index_t). The caller stores a pass's keys
// before it attends (a prompt's rows see each other through the cache) and
// guarantees slot < slots and position < max_len: the decoder checks them on
// the host, where it computes them. A negative position (a padding row, as
// transformer.cuh numbers them) stores nothing and attends to nothing: its
// output is 0, as the CPU's attention over no key. A quantized block with a
// value that is not finite gets a NaN scale (the CPU cache refuses such a row):
// whatever attends to it reads NaN, which the sampler refuses.
//
// Attention kernel: one block per (row, head), 4 warps; warp w scores keys w, w+4, ...
// (lane l holds dims l, l+32, ... of q and of the running output; in a quantized
// row those are position l of each block), a butterfly sum gives every lane the
// score, an online softmax per warp (running max m, sum s, rescaled output), then
// the 4 warps' states merge in shared memory. Every order is fixed: same inputs,
// same bits. Not tuned: each key costs a warp one 5-step shuffle sum, and the heads
// of a group read their kv head once each (from L2); a split over keys for long
// caches is not done either. Quantizing store: one warp per 32-value block
// (cuda/ops/ggml_blocks.cuh).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/ops/attention.cuh"
#include "lmrl/cuda/ops/ggml_blocks.cuh"
#include "lmrl/error.hpp"
#include "lmrl/model/kv_format.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

namespace cached_attention_detail {

inline constexpr int warps = 4;
inline constexpr int threads = warps * attention_detail::warp_size;
inline constexpr int store_threads = 256;

// The ggml block type of a quantized kv_format.
template <kv_format F>
using block_format = std::conditional_t<F == kv_format::q8_0, q8_0, q4_0>;

// Value d of a cached row stored in format F (the bytes model/kv_cache.hpp writes): a float, or value d % 32
// of block d / 32.
template <kv_format F>
__device__ inline float cached_value(const std::uint8_t* __restrict__ row, int d) {
  if constexpr (F == kv_format::f32) {
    return reinterpret_cast<const float*>(row)[d];
  } else {
    constexpr std::size_t block_bytes = kv_block_bytes(F);
    return block_value<block_format<F>>(row + (d / kv_block_values) * block_bytes, d % kv_block_values);
  }
}

template <int D, kv_format F>
__global__ void __launch_bounds__(threads)
    forward_kernel(const float* __restrict__ q, const index_t* __restrict__ slots, const index_t* __restrict__ positions,
                   int H, int G, int hd, index_t max_len, std::size_t row_bytes,
                   const std::uint8_t* __restrict__ k_cache, const std::uint8_t* __restrict__ v_cache,
                   float* __restrict__ out, float scale) {
  constexpr int W = attention_detail::warp_size, per_lane = D / W;
  __shared__ float m_s[warps], s_s[warps];
  __shared__ float o_s[warps][D];
  const int lane = threadIdx.x % W, warp = threadIdx.x / W;
  const index_t r = blockIdx.x;
  const int h = blockIdx.y, g = h / (H / G);
  const index_t keys = positions[r] + 1;
  if (keys <= 0) {  // a padding row (position -1) sees no key: 0, as the CPU's attention over no key (the
                    // whole block leaves together, before the barrier)
    for (int d = threadIdx.x; d < hd; d += threads) out[(r * H + h) * hd + d] = 0.0f;
    return;
  }
  const float* qh = q + (r * H + h) * hd;
  // this slot's and kv head's block of max_len rows
  const std::size_t block = static_cast<std::size_t>((slots[r] * G + g) * max_len) * row_bytes;
  const std::uint8_t* K = k_cache + block;
  const std::uint8_t* V = v_cache + block;

  float qv[per_lane], o[per_lane];
  for (int i = 0; i < per_lane; ++i) {
    const int d = lane + i * W;
    qv[i] = d < hd ? qh[d] * scale : 0.0f;
    o[i] = 0.0f;
  }
  float m = -std::numeric_limits<float>::infinity(), s = 0.0f;
  for (index_t j = warp; j < keys; j += warps) {
    const std::uint8_t* kj = K + static_cast<std::size_t>(j) * row_bytes;
    float dot = 0.0f;
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + i * W;
      if (d < hd) dot += qv[i] * cached_value<F>(kj, d);
    }
    const float score = attention_detail::warp_sum(dot);
    const float m_new = fmaxf(m, score);
    const float rescale = expf(m - m_new), p = expf(score - m_new);  // exp(-inf) = 0 on the first key
    s = s * rescale + p;
    const std::uint8_t* vj = V + static_cast<std::size_t>(j) * row_bytes;
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + i * W;
      o[i] = o[i] * rescale + (d < hd ? p * cached_value<F>(vj, d) : 0.0f);
    }
    m = m_new;
  }
  if (lane == 0) {
    m_s[warp] = m;
    s_s[warp] = s;
  }
  for (int i = 0; i < per_lane; ++i) o_s[warp][lane + i * W] = o[i];
  __syncthreads();
  // Warp 0 always saw key 0, so the overall max is finite; a warp that saw no key weighs exp(-inf) = 0.
  float m_all = m_s[0];
  for (int w = 1; w < warps; ++w) m_all = fmaxf(m_all, m_s[w]);
  float weight[warps], total = 0.0f;
  for (int w = 0; w < warps; ++w) {
    weight[w] = expf(m_s[w] - m_all);
    total += weight[w] * s_s[w];
  }
  float* oh = out + (r * H + h) * hd;
  for (int d = threadIdx.x; d < hd; d += threads) {
    float acc = 0.0f;
    for (int w = 0; w < warps; ++w) acc += weight[w] * o_s[w][d];
    oh[d] = acc / total;
  }
}

template <class T>  // a template: a plain kernel defined in a header collides between translation units
__global__ void store_kernel(const T* __restrict__ k, const T* __restrict__ v, index_t ld, index_t n,
                             const index_t* __restrict__ slots, const index_t* __restrict__ positions, index_t G,
                             index_t hd, index_t max_len, T* __restrict__ k_cache, T* __restrict__ v_cache) {
  const index_t width = G * hd, step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * width; e += step) {
    const index_t r = e / width, c = e % width, g = c / hd, d = c % hd;
    if (positions[r] < 0) continue;  // a padding row: nothing to keep
    const index_t at = ((slots[r] * G + g) * max_len + positions[r]) * hd + d;
    k_cache[at] = k[r * ld + c];
    v_cache[at] = v[r * ld + c];
  }
}

// store_kernel for a quantized cache: one warp per (row, keys or values, kv head, block of 32 values), a
// grid-stride loop over them whose bounds are the same for every lane of a warp.
template <kv_format F>
__global__ void store_quantized_kernel(const float* __restrict__ k, const float* __restrict__ v, index_t ld,
                                       index_t n, const index_t* __restrict__ slots,
                                       const index_t* __restrict__ positions, index_t G, index_t hd,
                                       index_t max_len, std::size_t row_bytes, std::uint8_t* __restrict__ k_cache,
                                       std::uint8_t* __restrict__ v_cache) {
  constexpr int W = attention_detail::warp_size;
  const int lane = static_cast<int>(threadIdx.x) % W;
  const index_t blocks = hd / kv_block_values, warps = n * 2 * G * blocks;
  const index_t step = static_cast<index_t>(gridDim.x) * (blockDim.x / W);
  for (index_t w = (static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x) / W; w < warps; w += step) {
    const index_t b = w % blocks, g = w / blocks % G, values = w / (blocks * G) % 2, r = w / (blocks * G * 2);
    if (positions[r] < 0) continue;  // a padding row: nothing to keep (the whole warp skips it)
    const float x = (values ? v : k)[r * ld + g * hd + b * kv_block_values + lane];
    std::uint8_t* row = (values ? v_cache : k_cache) +
                        static_cast<std::size_t>((slots[r] * G + g) * max_len + positions[r]) * row_bytes;
    constexpr std::size_t block_bytes = kv_block_bytes(F);
    store_block<block_format<F>>(quantize_in_warp<block_format<F>>(x, lane), lane,
                                 row + static_cast<std::size_t>(b) * block_bytes);
  }
}

inline void check_heads(const char* f, index_t n, index_t heads, index_t kv_heads, index_t head_dim, index_t max_len,
                        kv_format format) {
  lmrl::detail::require(n >= 0 && n <= 0x7fffffff, f, ": n = ", n, " rows must be in [0, 2^31)");
  lmrl::detail::require(heads > 0 && kv_heads > 0 && heads % kv_heads == 0 && heads <= 65535, f, ": heads = ", heads,
                        " must be a positive multiple of kv_heads = ", kv_heads, ", at most 65535");
  lmrl::detail::require(head_dim >= 1 && head_dim <= attention_detail::max_head_dim, f, ": head_dim = ", head_dim,
                        " is outside [1, ", attention_detail::max_head_dim, "]");
  lmrl::detail::require(max_len >= 1, f, ": max_len = ", max_len, " must be positive");
  require_kv_head_dim(format, head_dim, f);
}

template <int D, kv_format F>
void launch(const float* q, index_t n, const index_t* slots, const index_t* positions, index_t heads,
            index_t kv_heads, index_t head_dim, index_t max_len, const void* k_cache, const void* v_cache,
            float* out, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(heads));
  cuda::launch(forward_kernel<D, F>, grid, threads, 0, stream, q, slots, positions, static_cast<int>(heads),
      static_cast<int>(kv_heads), static_cast<int>(head_dim), max_len, kv_row_bytes(F, head_dim),
      static_cast<const std::uint8_t*>(k_cache), static_cast<const std::uint8_t*>(v_cache), out,
      attention_detail::default_scale(head_dim));
  LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::cached_attention_detail::forward_kernel");
}

// Calls f(std::integral_constant<kv_format, format>{}): the kernels take the format as a template argument.
template <class F>
void with_format(kv_format format, F&& f) {
  switch (format) {
    case kv_format::f32: return f(std::integral_constant<kv_format, kv_format::f32>{});
    case kv_format::q8_0: return f(std::integral_constant<kv_format, kv_format::q8_0>{});
    case kv_format::q4_0: return f(std::integral_constant<kv_format, kv_format::q4_0>{});
  }
}

template <int D>
void launch(kv_format format, const float* q, index_t n, const index_t* slots, const index_t* positions,
            index_t heads, index_t kv_heads, index_t head_dim, index_t max_len, const void* k_cache,
            const void* v_cache, float* out, cudaStream_t stream) {
  with_format(format, [&](auto f) {
    launch<D, decltype(f)::value>(q, n, slots, positions, heads, kv_heads, head_dim, max_len, k_cache, v_cache, out, stream);
  });
}

}  // namespace cached_attention_detail

// Rows' keys and values into the cache, in `format` (see the top of the file).
inline void kv_cache_store(const float* k, const float* v, index_t ld, index_t n, const index_t* slots,
                           const index_t* positions, index_t kv_heads, index_t head_dim, index_t max_len,
                           kv_format format, void* k_cache, void* v_cache, cudaStream_t stream = nullptr) {
  namespace cd = cached_attention_detail;
  const char* f = "lmrl::cuda::kv_cache_store";
  cd::check_heads(f, n, kv_heads, kv_heads, head_dim, max_len, format);
  lmrl::detail::require(ld >= kv_heads * head_dim, f, ": ld = ", ld, " is less than kv_heads * head_dim = ",
                        kv_heads * head_dim);
  if (n == 0) return;
  for (const void* p : {static_cast<const void*>(k), static_cast<const void*>(v), static_cast<const void*>(slots),
                        static_cast<const void*>(positions), static_cast<const void*>(k_cache),
                        static_cast<const void*>(v_cache)})
    lmrl::detail::require(p != nullptr, f, ": k, v, slots, positions, k_cache and v_cache must be device pointers");
  const auto grid = [](index_t threads_needed) {
    return static_cast<unsigned>(
        std::clamp<index_t>((threads_needed + cd::store_threads - 1) / cd::store_threads, 1, 65535));
  };
  cd::with_format(format, [&](auto f) {
    constexpr kv_format F = decltype(f)::value;
    if constexpr (F == kv_format::f32) {
      cuda::launch(cd::store_kernel<float>, grid(n * kv_heads * head_dim), cd::store_threads, 0, stream, k, v, ld, n,
          slots, positions, kv_heads, head_dim, max_len, static_cast<float*>(k_cache), static_cast<float*>(v_cache));
    } else {  // a warp per block of 32 values
      const index_t warps = n * 2 * kv_heads * (head_dim / kv_block_values);
      cuda::launch(cd::store_quantized_kernel<F>, grid(warps * attention_detail::warp_size), cd::store_threads,
          0, stream, k, v, ld, n, slots, positions, kv_heads, head_dim, max_len, kv_row_bytes(F, head_dim),
          static_cast<std::uint8_t*>(k_cache), static_cast<std::uint8_t*>(v_cache));
    }
  });
  LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::cached_attention_detail::store_kernel");
}

inline void kv_cache_store(const float* k, const float* v, index_t ld, index_t n, const index_t* slots,
                           const index_t* positions, index_t kv_heads, index_t head_dim, index_t max_len,
                           float* k_cache, float* v_cache, cudaStream_t stream = nullptr) {
  kv_cache_store(k, v, ld, n, slots, positions, kv_heads, head_dim, max_len, kv_format::f32, k_cache, v_cache,
                 stream);
}

// Each row's heads against its slot's cached keys [0, position] stored in `format` (see the top of the
// file); out overwritten.
inline void cached_attention_forward(const float* q, index_t n, const index_t* slots, const index_t* positions,
                                     index_t heads, index_t kv_heads, index_t head_dim, index_t max_len,
                                     kv_format format, const void* k_cache, const void* v_cache, float* out,
                                     cudaStream_t stream = nullptr) {
  namespace cd = cached_attention_detail;
  const char* f = "lmrl::cuda::cached_attention_forward";
  cd::check_heads(f, n, heads, kv_heads, head_dim, max_len, format);
  if (n == 0) return;
  for (const void* p : {static_cast<const void*>(q), static_cast<const void*>(slots),
                        static_cast<const void*>(positions), k_cache, v_cache, static_cast<const void*>(out)})
    lmrl::detail::require(p != nullptr, f, ": q, slots, positions, k_cache, v_cache and out must be device pointers");
  if (head_dim <= 32)
    cd::launch<32>(format, q, n, slots, positions, heads, kv_heads, head_dim, max_len, k_cache, v_cache, out, stream);
  else if (head_dim <= 64)
    cd::launch<64>(format, q, n, slots, positions, heads, kv_heads, head_dim, max_len, k_cache, v_cache, out, stream);
  else
    cd::launch<128>(format, q, n, slots, positions, heads, kv_heads, head_dim, max_len, k_cache, v_cache, out, stream);
}

inline void cached_attention_forward(const float* q, index_t n, const index_t* slots, const index_t* positions,
                                     index_t heads, index_t kv_heads, index_t head_dim, index_t max_len,
                                     const float* k_cache, const float* v_cache, float* out,
                                     cudaStream_t stream = nullptr) {
  cached_attention_forward(q, n, slots, positions, heads, kv_heads, head_dim, max_len, kv_format::f32, k_cache,
                           v_cache, out, stream);
}

}  // namespace lmrl::cuda
