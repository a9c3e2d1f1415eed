// Causal self-attention with grouped-query heads (GQA) on the GPU, forward and
// backward: the twin of the CPU op lmrl/model/ops/attention.hpp
// (ops::causal_attention_forward / ops::causal_attention_backward), same
// layouts, same masking, same saved log-sum-exp, same results to float rounding.
//
//   S = scale * Q_h K_g^T,  scale = 1/sqrt(head_dim),  g = h / (heads / kv_heads)   (repeat_kv)
//   P = softmax(S) over the keys a query may see,  O_h = P V_g,  lse_i = log sum_j exp S_ij.
//
// Query i of a sequence sees key j iff j <= i and mask[i] != 0 and mask[j] == mask[i]
// (mask [batch x seq_len], 0 = padding, left or right; equal nonzero values number
// the sequences packed into one row; nullptr = every token of one sequence). A
// masked query row gets output 0 and lse 0; so does one that sees no key.
//
// Backward (P recomputed from q, k and the saved lse; delta_i = dO_i . O_i =
// rowsum(P o dP) precomputed once per row):
//   dV_g = sum_{h in g} P^T dO_h,   dP = dO_h V_g^T,   dS = scale * P o (dP - delta),
//   dQ_h = dS K_g,                  dK_g = sum_{h in g} dS^T Q_h.
// grad_q, grad_k and grad_v are overwritten (as on the CPU, where grad_k/grad_v
// of a group are zeroed, then the heads sharing it add in order).
//
// Layouts (row-major, rows b*seq_len + t, as transformers keep them):
//   q, out, grad_out, grad_q [batch*seq_len x heads*head_dim],
//   k, v, grad_k, grad_v     [batch*seq_len x kv_heads*head_dim],
//   lse                      [batch*heads x seq_len]   (row b*heads + h),
//   workspace                batch*heads*seq_len floats (the deltas; see
//                            causal_attention_backward_workspace_size).
//
// Kernels (FlashAttention-2 style, fp32, no [T x T] matrix in global memory,
// head_dim up to 128 padded to 32, 64 or 128 at compile time; tiles past the
// end of a sequence or of head_dim are zero-filled in shared memory):
//   forward   one block per (16 query rows, head, sequence); K/V tiles of 32
//             keys up to the diagonal; a warp owns 4 rows, lane c scores key c,
//             online softmax (running max m, running sum l, rescaled O in
//             registers, lane d holds dims d, d+32, ...).
//   delta     one warp per (row, head): delta = dO . O.
//   dK/dV     one block per (32 keys, kv head, sequence): loops over the heads
//             of the group and the query tiles from the diagonal on, recomputes
//             P and dS for the 32 x 32 tile in shared memory, accumulates dK and
//             dV in registers; each element written once (deterministic, no
//             atomics).
//   dQ        one block per (32 query rows, head, sequence): loops over the key
//             tiles up to the diagonal, recomputes dS, accumulates dQ in
//             registers (a second recomputation instead of float atomics).
// Every order of summation is fixed: same inputs, same bits.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

namespace attention_detail {

constexpr int warp_size = 32;
constexpr int max_head_dim = 128;
constexpr int key_tile = 32;  // keys per tile (= lanes of a warp): lane c scores key c

// Forward: 4 warps of 4 query rows.
constexpr int forward_warps = 4;
constexpr int forward_rows_per_warp = 4;
constexpr int forward_rows = forward_warps * forward_rows_per_warp;
constexpr int forward_threads = forward_warps * warp_size;

// Backward: 32 x 32 tiles, 8 warps; in the score step a thread owns rows
// warp + 8m (m < 4) against key lane; in the accumulation a warp owns 4 keys
// (dK/dV) or 4 rows (dQ).
constexpr int backward_tile = key_tile;
constexpr int backward_warps = 8;
constexpr int backward_threads = backward_warps * warp_size;
constexpr int backward_per_warp = backward_tile / backward_warps;

constexpr int delta_warps = 8;

__device__ inline float warp_max(float x) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}
// Butterfly sum: every lane ends with the same bits (each step adds the same two values).
__device__ inline float warp_sum(float x) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Rows [first, first + Rows) of one head's [T x hd] slice (row i at head + i*row_stride)
// into tile[Rows][Pitch], columns [0, D); zero past row T and past column hd.
template <int Rows, int D, int Pitch>
__device__ void load_tile(float (*tile)[Pitch], const float* head, index_t row_stride, int first, int T, int hd) {
  static_assert(Pitch >= D);
  for (int idx = threadIdx.x; idx < Rows * D; idx += blockDim.x) {
    const int r = idx / D, d = idx % D, i = first + r;
    tile[r][d] = (i < T && d < hd) ? head[static_cast<index_t>(i) * row_stride + d] : 0.0f;
  }
}

// seg[r] = the sequence token first + r belongs to: its mask value (0 = padding),
// 1 without a mask, 0 past the end. Query i sees key j iff seg_i != 0, seg_j == seg_i, j <= i.
template <int Rows>
__device__ void load_segments(float* seg, const float* mask_row, int first, int T) {
  for (int r = threadIdx.x; r < Rows; r += blockDim.x) {
    const int i = first + r;
    seg[r] = i < T ? (mask_row != nullptr ? mask_row[i] : 1.0f) : 0.0f;
  }
}

// values[r] = row[first + r], 0 past the end (lse and delta of a query tile).
template <int Rows>
__device__ void load_row_values(float* values, const float* row, int first, int T) {
  for (int r = threadIdx.x; r < Rows; r += blockDim.x) values[r] = first + r < T ? row[first + r] : 0.0f;
}

template <int D>
__global__ void __launch_bounds__(forward_threads)
    forward_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                   const float* __restrict__ mask, float* __restrict__ out, float* __restrict__ lse, int T, int H,
                   int G, int hd, float scale) {
  constexpr int per_lane = D / warp_size;
  __shared__ float q_s[forward_rows][D];
  __shared__ float k_s[key_tile][D + 1];  // +1: lane c reads row c, no bank conflicts
  __shared__ float v_s[key_tile][D];
  __shared__ float qseg_s[forward_rows];
  __shared__ float kseg_s[key_tile];

  const int i0 = blockIdx.x * forward_rows, h = blockIdx.y, b = blockIdx.z, g = h / (H / G);
  const int warp = threadIdx.x / warp_size, lane = threadIdx.x % warp_size;
  const index_t q_stride = static_cast<index_t>(H) * hd, kv_stride = static_cast<index_t>(G) * hd;
  const index_t q_off = static_cast<index_t>(b) * T * q_stride + static_cast<index_t>(h) * hd;
  const index_t kv_off = static_cast<index_t>(b) * T * kv_stride + static_cast<index_t>(g) * hd;
  const float* mask_row = mask != nullptr ? mask + static_cast<index_t>(b) * T : nullptr;

  load_tile<forward_rows, D, D>(q_s, q + q_off, q_stride, i0, T, hd);
  load_segments<forward_rows>(qseg_s, mask_row, i0, T);

  float m_run[forward_rows_per_warp], l_run[forward_rows_per_warp], o_acc[forward_rows_per_warp][per_lane];
#pragma unroll
  for (int rr = 0; rr < forward_rows_per_warp; ++rr) {
    m_run[rr] = -INFINITY;
    l_run[rr] = 0.0f;
#pragma unroll
    for (int t = 0; t < per_lane; ++t) o_acc[rr][t] = 0.0f;
  }

  const int last = min(i0 + forward_rows - 1, T - 1);  // the last key any row of this tile sees
  for (int j0 = 0; j0 <= last; j0 += key_tile) {
    __syncthreads();  // everyone is done with the previous K/V tile (and q_s/qseg_s are loaded)
    load_tile<key_tile, D, D + 1>(k_s, k + kv_off, kv_stride, j0, T, hd);
    load_tile<key_tile, D, D>(v_s, v + kv_off, kv_stride, j0, T, hd);
    load_segments<key_tile>(kseg_s, mask_row, j0, T);
    __syncthreads();
#pragma unroll
    for (int rr = 0; rr < forward_rows_per_warp; ++rr) {
      const int r = warp * forward_rows_per_warp + rr, i = i0 + r, c = lane, j = j0 + c;
      const float seg = qseg_s[r];
      if (seg == 0.0f) continue;  // masked row or past the end (warp-uniform)
      const bool visible = kseg_s[c] == seg && j <= i;
      float s = -INFINITY;
      if (visible) {
        float dot = 0.0f;
        for (int d = 0; d < hd; ++d) dot += q_s[r][d] * k_s[c][d];
        s = dot * scale;
      }
      const float m_new = fmaxf(m_run[rr], warp_max(s));
      if (m_new == -INFINITY) continue;  // no visible key yet (warp-uniform)
      const float alpha = expf(m_run[rr] - m_new);  // 0 on the first visible tile
      const float p = visible ? expf(s - m_new) : 0.0f;
      l_run[rr] = l_run[rr] * alpha + warp_sum(p);
#pragma unroll
      for (int t = 0; t < per_lane; ++t) o_acc[rr][t] *= alpha;
      for (int cc = 0; cc < key_tile; ++cc) {
        const float pc = __shfl_sync(0xffffffffu, p, cc);
#pragma unroll
        for (int t = 0; t < per_lane; ++t) o_acc[rr][t] += pc * v_s[cc][lane + warp_size * t];
      }
      m_run[rr] = m_new;
    }
  }

  const index_t lse_off = (static_cast<index_t>(b) * H + h) * T;
#pragma unroll
  for (int rr = 0; rr < forward_rows_per_warp; ++rr) {
    const int i = i0 + warp * forward_rows_per_warp + rr;
    if (i >= T) continue;
    const float l = l_run[rr];
#pragma unroll
    for (int t = 0; t < per_lane; ++t) {
      const int d = lane + warp_size * t;
      if (d < hd) out[q_off + static_cast<index_t>(i) * q_stride + d] = l > 0.0f ? o_acc[rr][t] / l : 0.0f;
    }
    if (lse != nullptr && lane == 0) lse[lse_off + i] = l > 0.0f ? m_run[rr] + logf(l) : 0.0f;
  }
}

// delta[(b*H + h)*T + t] = dO . O of row (b, t, head h): one warp per row.
template <int D>
__global__ void __launch_bounds__(delta_warps* warp_size)
    delta_kernel(const float* __restrict__ out, const float* __restrict__ grad_out, float* __restrict__ delta,
                 index_t rows, int T, int H, int hd) {
  const index_t w = static_cast<index_t>(blockIdx.x) * delta_warps + threadIdx.x / warp_size;
  const int lane = threadIdx.x % warp_size;
  if (w >= rows) return;  // whole warps only
  const index_t base = w * hd;  // row (b*T + t)*H + h of a [B*T*H x hd] array
  float sum = 0.0f;
#pragma unroll
  for (int t = 0; t < D / warp_size; ++t) {
    const int d = lane + warp_size * t;
    if (d < hd) sum += out[base + d] * grad_out[base + d];
  }
  sum = warp_sum(sum);
  if (lane == 0) {
    const index_t bt = w / H, h = w % H, b = bt / T, t = bt % T;
    delta[(b * H + h) * T + t] = sum;
  }
}

template <int D>
struct backward_smem {
  float k[backward_tile][D + 1];  // +1: lane c reads row c
  float v[backward_tile][D + 1];
  float q[backward_tile][D];
  float dout[backward_tile][D];
  float p[backward_tile][backward_tile];   // [query row][key]
  float ds[backward_tile][backward_tile];  // scale * P o (dP - delta)
  float lse[backward_tile];
  float delta[backward_tile];
  float qseg[backward_tile];
  float kseg[backward_tile];
};

// P and dS of query rows [i0, i0+32) against keys [j0, j0+32), from the tiles in s:
// thread (warp, lane) computes rows warp + 8m against key lane.
template <int D, bool StoreP>
__device__ void backward_tile_scores(backward_smem<D>& s, int i0, int j0, int hd, float scale) {
  const int warp = threadIdx.x / warp_size, c = threadIdx.x % warp_size;
#pragma unroll
  for (int m = 0; m < backward_per_warp; ++m) {
    const int r = warp + backward_warps * m;
    const float seg = s.qseg[r];
    const bool visible = seg != 0.0f && s.kseg[c] == seg && j0 + c <= i0 + r;
    float p = 0.0f, ds = 0.0f;
    if (visible) {
      float qk = 0.0f, dov = 0.0f;
      for (int d = 0; d < hd; ++d) {
        qk += s.q[r][d] * s.k[c][d];
        dov += s.dout[r][d] * s.v[c][d];
      }
      p = expf(fminf(qk * scale - s.lse[r], 0.0f));
      ds = p * (dov - s.delta[r]) * scale;
    }
    if constexpr (StoreP) s.p[r][c] = p;
    s.ds[r][c] = ds;
  }
}

// dK, dV of keys [j0, j0+32) of kv head g of sequence b.
template <int D>
__global__ void __launch_bounds__(backward_threads)
    dkdv_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                const float* __restrict__ mask, const float* __restrict__ lse, const float* __restrict__ delta,
                const float* __restrict__ grad_out, float* __restrict__ grad_k, float* __restrict__ grad_v, int T,
                int H, int G, int hd, float scale) {
  constexpr int per_lane = D / warp_size;
  auto& s = *dynamic_shared_memory<backward_smem<D>>();

  const int j0 = blockIdx.x * backward_tile, g = blockIdx.y, b = blockIdx.z, group = H / G;
  const int warp = threadIdx.x / warp_size, lane = threadIdx.x % warp_size;
  const index_t q_stride = static_cast<index_t>(H) * hd, kv_stride = static_cast<index_t>(G) * hd;
  const index_t kv_off = static_cast<index_t>(b) * T * kv_stride + static_cast<index_t>(g) * hd;
  const float* mask_row = mask != nullptr ? mask + static_cast<index_t>(b) * T : nullptr;

  load_tile<backward_tile, D, D + 1>(s.k, k + kv_off, kv_stride, j0, T, hd);
  load_tile<backward_tile, D, D + 1>(s.v, v + kv_off, kv_stride, j0, T, hd);
  load_segments<backward_tile>(s.kseg, mask_row, j0, T);

  float dk_acc[backward_per_warp][per_lane] = {}, dv_acc[backward_per_warp][per_lane] = {};
  for (int h = g * group; h < (g + 1) * group; ++h) {  // the heads sharing kv head g, in order
    const index_t q_off = static_cast<index_t>(b) * T * q_stride + static_cast<index_t>(h) * hd;
    const index_t row_off = (static_cast<index_t>(b) * H + h) * T;
    for (int i0 = j0; i0 < T; i0 += backward_tile) {  // query tiles from the diagonal on
      __syncthreads();  // everyone is done with the previous query tile
      load_tile<backward_tile, D, D>(s.q, q + q_off, q_stride, i0, T, hd);
      load_tile<backward_tile, D, D>(s.dout, grad_out + q_off, q_stride, i0, T, hd);
      load_segments<backward_tile>(s.qseg, mask_row, i0, T);
      load_row_values<backward_tile>(s.lse, lse + row_off, i0, T);
      load_row_values<backward_tile>(s.delta, delta + row_off, i0, T);
      __syncthreads();
      backward_tile_scores<D, true>(s, i0, j0, hd, scale);
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < backward_per_warp; ++kk) {
        const int c = warp * backward_per_warp + kk;
        for (int r = 0; r < backward_tile; ++r) {
          const float p = s.p[r][c], ds = s.ds[r][c];
#pragma unroll
          for (int t = 0; t < per_lane; ++t) {
            dv_acc[kk][t] += p * s.dout[r][lane + warp_size * t];
            dk_acc[kk][t] += ds * s.q[r][lane + warp_size * t];
          }
        }
      }
    }
  }

#pragma unroll
  for (int kk = 0; kk < backward_per_warp; ++kk) {
    const int j = j0 + warp * backward_per_warp + kk;
    if (j >= T) continue;
#pragma unroll
    for (int t = 0; t < per_lane; ++t) {
      const int d = lane + warp_size * t;
      if (d < hd) {
        grad_k[kv_off + static_cast<index_t>(j) * kv_stride + d] = dk_acc[kk][t];
        grad_v[kv_off + static_cast<index_t>(j) * kv_stride + d] = dv_acc[kk][t];
      }
    }
  }
}

// dQ of query rows [i0, i0+32) of head h of sequence b.
template <int D>
__global__ void __launch_bounds__(backward_threads)
    dq_kernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
              const float* __restrict__ mask, const float* __restrict__ lse, const float* __restrict__ delta,
              const float* __restrict__ grad_out, float* __restrict__ grad_q, int T, int H, int G, int hd,
              float scale) {
  constexpr int per_lane = D / warp_size;
  auto& s = *dynamic_shared_memory<backward_smem<D>>();

  const int i0 = blockIdx.x * backward_tile, h = blockIdx.y, b = blockIdx.z, g = h / (H / G);
  const int warp = threadIdx.x / warp_size, lane = threadIdx.x % warp_size;
  const index_t q_stride = static_cast<index_t>(H) * hd, kv_stride = static_cast<index_t>(G) * hd;
  const index_t q_off = static_cast<index_t>(b) * T * q_stride + static_cast<index_t>(h) * hd;
  const index_t kv_off = static_cast<index_t>(b) * T * kv_stride + static_cast<index_t>(g) * hd;
  const index_t row_off = (static_cast<index_t>(b) * H + h) * T;
  const float* mask_row = mask != nullptr ? mask + static_cast<index_t>(b) * T : nullptr;

  load_tile<backward_tile, D, D>(s.q, q + q_off, q_stride, i0, T, hd);
  load_tile<backward_tile, D, D>(s.dout, grad_out + q_off, q_stride, i0, T, hd);
  load_segments<backward_tile>(s.qseg, mask_row, i0, T);
  load_row_values<backward_tile>(s.lse, lse + row_off, i0, T);
  load_row_values<backward_tile>(s.delta, delta + row_off, i0, T);

  float dq_acc[backward_per_warp][per_lane] = {};
  const int last = min(i0 + backward_tile - 1, T - 1);
  for (int j0 = 0; j0 <= last; j0 += backward_tile) {  // key tiles up to the diagonal
    __syncthreads();  // everyone is done with the previous key tile (and the query tile is loaded)
    load_tile<backward_tile, D, D + 1>(s.k, k + kv_off, kv_stride, j0, T, hd);
    load_tile<backward_tile, D, D + 1>(s.v, v + kv_off, kv_stride, j0, T, hd);
    load_segments<backward_tile>(s.kseg, mask_row, j0, T);
    __syncthreads();
    backward_tile_scores<D, false>(s, i0, j0, hd, scale);
    __syncthreads();
#pragma unroll
    for (int m = 0; m < backward_per_warp; ++m) {
      const int r = warp * backward_per_warp + m;
      for (int c = 0; c < backward_tile; ++c) {
        const float ds = s.ds[r][c];
#pragma unroll
        for (int t = 0; t < per_lane; ++t) dq_acc[m][t] += ds * s.k[c][lane + warp_size * t];
      }
    }
  }

#pragma unroll
  for (int m = 0; m < backward_per_warp; ++m) {
    const int i = i0 + warp * backward_per_warp + m;
    if (i >= T) continue;
#pragma unroll
    for (int t = 0; t < per_lane; ++t) {
      const int d = lane + warp_size * t;
      if (d < hd) grad_q[q_off + static_cast<index_t>(i) * q_stride + d] = dq_acc[m][t];
    }
  }
}

inline void check_shape(const char* f, index_t batch, index_t seq_len, index_t heads, index_t kv_heads,
                        index_t head_dim) {
  lmrl::detail::require(batch >= 0 && seq_len >= 0, f, ": batch = ", batch, " and seq_len = ", seq_len,
                        " must not be negative");
  lmrl::detail::require(heads > 0 && kv_heads > 0 && heads % kv_heads == 0, f, ": heads = ", heads,
                        " must be a positive multiple of kv_heads = ", kv_heads);
  lmrl::detail::require(head_dim >= 1 && head_dim <= max_head_dim, f, ": head_dim = ", head_dim,
                        " is outside [1, ", max_head_dim, "]");
  lmrl::detail::require(batch <= 65535 && heads <= 65535, f, ": batch = ", batch, " and heads = ", heads,
                        " must each be at most 65535 (grid dimensions)");
  lmrl::detail::require(seq_len <= (index_t{1} << 30), f, ": seq_len = ", seq_len, " is over 2^30");
  lmrl::detail::require(batch * seq_len * heads / delta_warps < INT_MAX, f, ": batch * seq_len * heads = ",
                        batch * seq_len * heads, " rows is too many for one launch");
}

inline void require_pointer(const char* f, const char* name, const void* p) {
  lmrl::detail::require(p != nullptr, f, ": ", name, " is null (a device pointer is needed)");
}

inline float default_scale(index_t head_dim) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

template <int D>
void launch_forward(const float* q, const float* k, const float* v, const float* mask, float* out, float* lse,
                    index_t batch, index_t seq_len, index_t heads, index_t kv_heads, index_t head_dim,
                    cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((seq_len + forward_rows - 1) / forward_rows), static_cast<unsigned>(heads),
                  static_cast<unsigned>(batch));
  cuda::launch(forward_kernel<D>, grid, forward_threads, 0, stream, q, k, v, mask, out, lse, static_cast<int>(seq_len),
      static_cast<int>(heads), static_cast<int>(kv_heads), static_cast<int>(head_dim), default_scale(head_dim));
  LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::attention_detail::forward_kernel");
}

template <int D>
void launch_backward(const float* q, const float* k, const float* v, const float* mask, const float* out,
                     const float* lse, const float* grad_out, float* grad_q, float* grad_k, float* grad_v,
                     float* delta, index_t batch, index_t seq_len, index_t heads, index_t kv_heads, index_t head_dim,
                     cudaStream_t stream) {
  const int T = static_cast<int>(seq_len), H = static_cast<int>(heads), G = static_cast<int>(kv_heads),
            hd = static_cast<int>(head_dim);
  const float scale = default_scale(head_dim);

  const index_t rows = batch * seq_len * heads;
  const auto delta_blocks = static_cast<unsigned>((rows + delta_warps - 1) / delta_warps);
  cuda::launch(delta_kernel<D>, delta_blocks, delta_warps * warp_size, 0, stream, out, grad_out, delta, rows, T, H, hd);
  LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::attention_detail::delta_kernel");

  constexpr int smem = static_cast<int>(sizeof(backward_smem<D>));  // over 48 KiB at D = 128: opt in
  LMRL_CUDA_CHECK(cudaFuncSetAttribute(dkdv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  LMRL_CUDA_CHECK(cudaFuncSetAttribute(dq_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const auto tiles = static_cast<unsigned>((seq_len + backward_tile - 1) / backward_tile);

  cuda::launch(dkdv_kernel<D>, dim3(tiles, static_cast<unsigned>(kv_heads), static_cast<unsigned>(batch)),
      backward_threads, smem, stream, q, k, v, mask, lse, delta, grad_out, grad_k, grad_v, T, H, G, hd, scale);
  LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::attention_detail::dkdv_kernel");

  cuda::launch(dq_kernel<D>, dim3(tiles, static_cast<unsigned>(heads), static_cast<unsigned>(batch)), backward_threads,
      smem, stream, q, k, v, mask, lse, delta, grad_out, grad_q, T, H, G, hd, scale);
  LMRL_CUDA_CHECK_LAUNCH("lmrl::cuda::attention_detail::dq_kernel");
}

}  // namespace attention_detail

// Floats of device workspace causal_attention_backward needs (one delta per row and head).
inline index_t causal_attention_backward_workspace_size(index_t batch, index_t seq_len, index_t heads) {
  return batch * seq_len * heads;
}

// A padded batch of `batch` sequences of seq_len tokens: out (and lse, unless
// nullptr) overwritten. mask: device [batch x seq_len] or nullptr (no padding).
// All pointers are device memory; out must not alias the inputs.
inline void causal_attention_forward(const float* q, const float* k, const float* v, const float* mask, float* out,
                                     float* lse, index_t batch, index_t seq_len, index_t heads, index_t kv_heads,
                                     index_t head_dim, cudaStream_t stream = nullptr) {
  namespace ad = attention_detail;
  const char* f = "lmrl::cuda::causal_attention_forward";
  ad::check_shape(f, batch, seq_len, heads, kv_heads, head_dim);
  if (batch == 0 || seq_len == 0) return;
  ad::require_pointer(f, "q", q);
  ad::require_pointer(f, "k", k);
  ad::require_pointer(f, "v", v);
  ad::require_pointer(f, "out", out);
  if (head_dim <= 32)
    ad::launch_forward<32>(q, k, v, mask, out, lse, batch, seq_len, heads, kv_heads, head_dim, stream);
  else if (head_dim <= 64)
    ad::launch_forward<64>(q, k, v, mask, out, lse, batch, seq_len, heads, kv_heads, head_dim, stream);
  else
    ad::launch_forward<128>(q, k, v, mask, out, lse, batch, seq_len, heads, kv_heads, head_dim, stream);
}

// Gradients of causal_attention_forward: grad_q, grad_k, grad_v overwritten.
// out and lse are the forward's (same inputs); workspace holds
// causal_attention_backward_workspace_size(batch, seq_len, heads) floats,
// overwritten. Gradients must not alias the inputs.
inline void causal_attention_backward(const float* q, const float* k, const float* v, const float* mask,
                                      const float* out, const float* lse, const float* grad_out, float* grad_q,
                                      float* grad_k, float* grad_v, float* workspace, index_t batch, index_t seq_len,
                                      index_t heads, index_t kv_heads, index_t head_dim,
                                      cudaStream_t stream = nullptr) {
  namespace ad = attention_detail;
  const char* f = "lmrl::cuda::causal_attention_backward";
  ad::check_shape(f, batch, seq_len, heads, kv_heads, head_dim);
  if (batch == 0 || seq_len == 0) return;
  ad::require_pointer(f, "q", q);
  ad::require_pointer(f, "k", k);
  ad::require_pointer(f, "v", v);
  ad::require_pointer(f, "out", out);
  ad::require_pointer(f, "lse", lse);
  ad::require_pointer(f, "grad_out", grad_out);
  ad::require_pointer(f, "grad_q", grad_q);
  ad::require_pointer(f, "grad_k", grad_k);
  ad::require_pointer(f, "grad_v", grad_v);
  ad::require_pointer(f, "workspace", workspace);
  if (head_dim <= 32)
    ad::launch_backward<32>(q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v, workspace, batch, seq_len,
                            heads, kv_heads, head_dim, stream);
  else if (head_dim <= 64)
    ad::launch_backward<64>(q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v, workspace, batch, seq_len,
                            heads, kv_heads, head_dim, stream);
  else
    ad::launch_backward<128>(q, k, v, mask, out, lse, grad_out, grad_q, grad_k, grad_v, workspace, batch, seq_len,
                             heads, kv_heads, head_dim, stream);
}

}  // namespace lmrl::cuda
