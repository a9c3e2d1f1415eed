// Fused log-probability and entropy of the sampled tokens on the GPU: the
// twin of rl/logprob.hpp (read that header for the derivation), same inputs,
// same outputs, same numerics up to float rounding.
//
// For each row r with logits x[r, 0..V), target y_r, temperature tau and
// z = x / tau (z rounded to float as the CPU rounds it):
//
//   lse_r     = log sum_v exp(z_v)
//   logp_r    = z_{y_r} - lse_r
//   entropy_r = lse_r - sum_v p_v z_v  =  log S - E / S,    p_v = exp(z_v - lse_r)
//
// with M = max_v z_v, S = sum_v exp(z_v - M), E = sum_v exp(z_v - M)(z_v - M).
//
// Forward: one block per row, ONE pass over the row. Each thread keeps an
// online triple (m, s, e) over the elements it reads (threads stride over the
// row; 16-byte float4 loads where the row is 16-byte aligned, after a scalar
// head of at most 3 elements): on a new running max m' the sums are rescaled,
//
//   s <- exp(m - m') s,    e <- exp(m - m') (e + (m - m') s),
//
// then the element adds p = exp(z - m) to s and p (z - m) to e. The block
// merges the threads' triples in double with the same rule (warp shuffles,
// then one shared array of one triple per warp). Nothing of size rows x vocab
// (or vocab) is allocated. Thread accumulators are float (a few hundred terms
// each at V = 151,936), merges double, like the CPU's float lanes and double
// chunk merges. z - m is clamped at -87 before exp, as on the CPU, so -inf
// logits give a tiny weight instead of a NaN (a CPU chunk that is all -inf
// adds nothing; a GPU thread that read only -inf keeps the finite start max
// and is weighted 0 at the merge). A row of -inf only: lse -inf, log-prob and
// entropy NaN, on both.
//
// Backward, given g_logp = dL/dlogp_r and g_H = dL/dentropy_r (either may be
// absent, i.e. zero), writes in one more pass
//
//   dL/dx_v = [ g_logp (1[v = y] - p_v) - g_H p_v (log p_v + H) ] / tau
//
// with log p_v = (z_v - lse_hi) - lse_lo (lse split into two floats, as on the
// CPU, so log p keeps float precision for |z| ~ 1e4).
//
// Target ids: the host can only check sizes and the temperature. The kernels
// check each id against the vocabulary; a bad row never reads out of range, its
// logp (forward) or gradient row (backward) is NaN, and it is recorded in a
// one-int device flag (atomicMin of the row index). With target_check::wait
// (the default) the launcher reads the flag back (waiting for the stream) and
// throws lmrl::error naming the first bad row and its id; with
// target_check::caller_checked it does not wait, and the caller vouches for
// the ids (bad rows still come out NaN, never an out-of-range read).
//
// Precision: float logits, float logp / entropy / gradient, lse in double
// (what the backward pass takes). exp is expf (max 2 ulp); building with
// --use_fast_math turns it into __expf, which is less accurate.
//
// Performance (for the later bench against the two-pass log-softmax): the
// forward reads the logits once, the backward reads them once more and writes
// the gradient once; loads are coalesced (float4 across a warp), so both are
// meant to be memory-bandwidth bound for rows >> number of SMs. With only a
// few rows one block per row leaves most SMs idle.
#pragma once

#include <cuda_runtime.h>

#include <cfloat>
#include <climits>
#include <cmath>
#include <concepts>
#include <cstdint>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

// What the launchers do about target ids out of [0, vocab).
enum class target_check {
  wait,            // read the device flag back after the kernel (waits for the stream), throw naming the first bad row
  caller_checked,  // no wait: the caller checked the ids (a bad row still gets NaN, never an out-of-range read)
};

namespace detail {

inline constexpr int logprob_block = 256;  // threads per row: a power of two, a multiple of the warp
inline constexpr float logprob_floor = -87.0f;  // z - m is clamped here before exp, as the CPU does

// ------------------------------------------------------------ device pieces

// One thread's running max m of z, s = sum exp(z - m), e = sum exp(z - m)(z - m).
template <bool WithEntropy>
struct logprob_running {
  float m = -FLT_MAX;  // finite, so that a -inf logit gives z - m = -inf (clamped), never -inf - -inf
  float s = 0.0f;
  float e = 0.0f;

  __device__ void add(float z) {
    if (z > m) {  // a new running max: rescale the sums to it (a NaN z never is one, it reaches s below)
      float d = m - z;
      d = d < logprob_floor ? logprob_floor : d;
      const float w = expf(d);
      if constexpr (WithEntropy) e = w * (e + d * s);
      s = w * s;
      m = z;
    }
    float d = z - m;
    d = d < logprob_floor ? logprob_floor : d;  // as the CPU: also keeps a NaN a NaN
    const float p = expf(d);
    s += p;
    if constexpr (WithEntropy) e += p * d;
  }
};

// A merged (m, s, e) in double; s == 0 marks an empty part (a thread that read nothing).
struct logprob_partial {
  double m, s, e;
};

__device__ inline logprob_partial logprob_merge(logprob_partial a, logprob_partial b) {
  if (b.s == 0) return a;
  if (a.s == 0) return b;
  if (b.m > a.m) {  // a keeps the larger max
    const logprob_partial t = a;
    a = b;
    b = t;
  }
  const double d = b.m - a.m;  // <= 0
  const double w = exp(d);
  return {a.m, a.s + w * b.s, a.e + w * (b.e + d * b.s)};
}

__device__ inline logprob_partial logprob_shfl_down(logprob_partial t, int offset) {
  constexpr unsigned all = 0xffffffffu;
  return {__shfl_down_sync(all, t.m, offset), __shfl_down_sync(all, t.s, offset), __shfl_down_sync(all, t.e, offset)};
}

// The merge of the block's Block triples; the result is valid in thread 0.
// Every thread of the block must call it (it has a __syncthreads).
template <int Block>
__device__ logprob_partial logprob_block_merge(logprob_partial t) {
  static_assert(Block % 32 == 0 && Block <= 1024 && (Block & (Block - 1)) == 0,
                "logprob: the block is a power of two of whole warps");
  constexpr int warps = Block / 32;
  __shared__ logprob_partial per_warp[warps];
  const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
  // Tree over the warp: lane 0 ends with all 32 (lanes whose partner is out of
  // the warp merge their own value again, but lane 0 never reads them).
  for (int offset = 16; offset > 0; offset /= 2) t = logprob_merge(t, logprob_shfl_down(t, offset));
  if (lane == 0) per_warp[warp] = t;
  __syncthreads();
  if (warp == 0) {
    t = lane < warps ? per_warp[lane] : logprob_partial{0, 0, 0};
    for (int offset = 16; offset > 0; offset /= 2) t = logprob_merge(t, logprob_shfl_down(t, offset));
  }
  return t;
}

// Elements before the row's first 16-byte boundary (scalar loads), at most 3;
// the whole row when the pointer is not even float-aligned.
__device__ inline index_t logprob_aligned_head(const float* x, index_t vocab) {
  const auto misalign = static_cast<index_t>(reinterpret_cast<std::uintptr_t>(x) % 16);
  if (misalign % static_cast<index_t>(sizeof(float)) != 0) return vocab;
  const index_t head = misalign == 0 ? 0 : (16 - misalign) / static_cast<index_t>(sizeof(float));
  return head < vocab ? head : vocab;
}

__device__ inline index_t logprob_row_target(const std::int32_t* t, index_t row) { return static_cast<index_t>(t[row]); }
__device__ inline index_t logprob_row_target(const std::int64_t* t, index_t row) { return static_cast<index_t>(t[row]); }

__device__ inline float logprob_nan() { return __int_as_float(0x7fc00000); }

// Forward: one block per row; logp[row], entropy[row] (WithEntropy), lse[row] (if given).
template <int Block, bool WithEntropy, class Id>
__global__ void __launch_bounds__(Block)
    logprob_forward_kernel(const float* __restrict__ logits, index_t vocab, index_t row_stride,
                           const Id* __restrict__ targets, float inv_tau, float* __restrict__ logp,
                           float* __restrict__ entropy, double* __restrict__ lse, unsigned* bad_row) {
  const index_t row = blockIdx.x;
  const float* x = logits + row * row_stride;

  // 1. this thread's (m, s, e) over its elements of the row, z = x * inv_tau rounded as on the CPU
  logprob_running<WithEntropy> acc;
  const index_t head = logprob_aligned_head(x, vocab);
  for (index_t v = threadIdx.x; v < head; v += Block) acc.add(__fmul_rn(x[v], inv_tau));
  const index_t quads = (vocab - head) / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x + head);  // 16-byte aligned (used only when quads > 0)
#pragma unroll 4
  for (index_t i = threadIdx.x; i < quads; i += Block) {
    const float4 q = x4[i];
    acc.add(__fmul_rn(q.x, inv_tau));
    acc.add(__fmul_rn(q.y, inv_tau));
    acc.add(__fmul_rn(q.z, inv_tau));
    acc.add(__fmul_rn(q.w, inv_tau));
  }
  for (index_t v = head + 4 * quads + threadIdx.x; v < vocab; v += Block) acc.add(__fmul_rn(x[v], inv_tau));

  // 2. the row's (M, S, E), in thread 0
  const logprob_partial total = logprob_block_merge<Block>(logprob_partial{acc.m, acc.s, WithEntropy ? acc.e : 0.0f});
  if (threadIdx.x != 0) return;

  // 3. lse = M + log S, entropy = log S - E / S, logp = z_y - lse; a row with no logit above -inf (every
  //    thread's max still its start) has no distribution: lse -inf, entropy and logp NaN, as on the CPU
  const double log_s = total.m == -FLT_MAX ? -INFINITY : log(total.s);
  const double row_lse = total.m + log_s;
  if (lse != nullptr) lse[row] = row_lse;
  if constexpr (WithEntropy)
    entropy[row] = total.m == -FLT_MAX ? logprob_nan() : static_cast<float>(log_s - total.e / total.s);
  const index_t y = logprob_row_target(targets, row);
  if (y < 0 || y >= vocab) {
    if (bad_row != nullptr) atomicMin(bad_row, static_cast<unsigned>(row));
    logp[row] = logprob_nan();
    return;
  }
  const double z_target = __fmul_rn(x[y], inv_tau);  // z as the loop saw it
  logp[row] = static_cast<float>(z_target - row_lse);
}

// Backward: one block per row; grad row = [ a (1[v = y] - p_v) - b p_v (log p_v + H) ] / tau.
template <int Block, class Id>
__global__ void __launch_bounds__(Block)
    logprob_backward_kernel(const float* __restrict__ logits, index_t vocab, index_t row_stride,
                            const Id* __restrict__ targets, float inv_tau, const double* __restrict__ lse,
                            const float* __restrict__ entropy, const float* __restrict__ grad_logp,
                            const float* __restrict__ grad_entropy, float* __restrict__ grad_logits,
                            index_t grad_row_stride, unsigned* bad_row) {
  const index_t row = blockIdx.x;
  const float* x = logits + row * row_stride;
  float* g = grad_logits + row * grad_row_stride;

  const index_t y = logprob_row_target(targets, row);
  const bool bad = y < 0 || y >= vocab;
  if (bad && threadIdx.x == 0 && bad_row != nullptr) atomicMin(bad_row, static_cast<unsigned>(row));

  // The per-row constants, as the CPU forms them (rl/logprob.hpp, softmax_row_backward).
  const float a = bad ? logprob_nan() : (grad_logp != nullptr ? grad_logp[row] : 0.0f);  // bad id: a NaN row
  const float b = grad_entropy != nullptr ? grad_entropy[row] : 0.0f;
  const float h = grad_entropy != nullptr ? entropy[row] : 0.0f;
  const double l = lse[row];
  const float lse_hi = static_cast<float>(l);
  const float lse_lo = static_cast<float>(l - static_cast<double>(lse_hi));
  const float a_tau = a * inv_tau, b_tau = b * inv_tau;
  const float c = a_tau + b_tau * h;  // the coefficient of p_v that does not depend on v

  auto grad = [=](index_t v, float xv) {
    float lp = (__fmul_rn(xv, inv_tau) - lse_hi) - lse_lo;  // log p_v
    lp = lp < logprob_floor ? logprob_floor : lp;
    float out = -(c + b_tau * lp) * expf(lp);
    if (v == y) out += a_tau;
    return out;
  };

  // float4 loads and stores only when the gradient row has the logits row's alignment.
  index_t head = logprob_aligned_head(x, vocab);
  if ((reinterpret_cast<std::uintptr_t>(g) - reinterpret_cast<std::uintptr_t>(x)) % 16 != 0) head = vocab;
  for (index_t v = threadIdx.x; v < head; v += Block) g[v] = grad(v, x[v]);
  const index_t quads = (vocab - head) / 4;
  const float4* x4 = reinterpret_cast<const float4*>(x + head);
  float4* g4 = reinterpret_cast<float4*>(g + head);
#pragma unroll 4
  for (index_t i = threadIdx.x; i < quads; i += Block) {
    const float4 q = x4[i];
    const index_t v = head + 4 * i;
    g4[i] = make_float4(grad(v, q.x), grad(v + 1, q.y), grad(v + 2, q.z), grad(v + 3, q.w));
  }
  for (index_t v = head + 4 * quads + threadIdx.x; v < vocab; v += Block) g[v] = grad(v, x[v]);
}

// ------------------------------------------------------------ host pieces

// One device unsigned that kernels atomicMin a bad row into (UINT_MAX: none),
// allocated and freed in the stream's order.
class logprob_bad_row_flag {
 public:
  explicit logprob_bad_row_flag(cudaStream_t stream) : stream_(stream) {
    LMRL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&flag_), sizeof(unsigned), stream_));
  }
  logprob_bad_row_flag(const logprob_bad_row_flag&) = delete;
  logprob_bad_row_flag& operator=(const logprob_bad_row_flag&) = delete;
  ~logprob_bad_row_flag() {
    if (flag_ != nullptr) cudaFreeAsync(flag_, stream_);  // not checked: a destructor must not throw
  }
  unsigned* arm() {
    LMRL_CUDA_CHECK(cudaMemsetAsync(flag_, 0xFF, sizeof(unsigned), stream_));
    return flag_;
  }
  // Waits for the stream; the first bad row, or -1.
  index_t first_bad_row() const {
    unsigned row = UINT_MAX;
    LMRL_CUDA_CHECK(cudaMemcpyAsync(&row, flag_, sizeof(unsigned), cudaMemcpyDeviceToHost, stream_));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return row == UINT_MAX ? index_t{-1} : static_cast<index_t>(row);
  }

 private:
  unsigned* flag_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

template <class Id>
[[noreturn]] void logprob_fail_target(const char* f, const Id* targets, index_t row, index_t vocab,
                                      cudaStream_t stream) {
  Id id{};
  LMRL_CUDA_CHECK(cudaMemcpyAsync(&id, targets + row, sizeof(Id), cudaMemcpyDeviceToHost, stream));
  LMRL_CUDA_CHECK(cudaStreamSynchronize(stream));
  lmrl::detail::fail(f, ": targets[", row, "] = ", static_cast<std::int64_t>(id),
                     " is out of range for a vocabulary of ", vocab, " tokens (found on the device; rows after the "
                     "first bad one may be bad too)");
}

// Runs launch(flag) with a device flag for the first bad target row and throws
// naming it (target_check::wait), or launch(nullptr) without waiting.
template <class Id, class Launch>
void launch_checking_targets(target_check check, cudaStream_t stream, const char* f, const Id* targets, index_t vocab,
                             Launch&& launch) {
  if (check == target_check::caller_checked) {
    launch(nullptr);
    return;
  }
  logprob_bad_row_flag flag(stream);
  launch(flag.arm());
  if (const index_t bad = flag.first_bad_row(); bad >= 0) logprob_fail_target(f, targets, bad, vocab, stream);
}

inline float logprob_check_common(const char* f, const float* logits, index_t rows, index_t vocab,
                                  index_t row_stride, const void* targets, double temperature) {
  using lmrl::detail::require;
  require(rows >= 0, f, ": rows = ", rows, " must be >= 0");
  require(rows <= INT_MAX, f, ": rows = ", rows, " is more than one launch handles (", INT_MAX, " blocks)");
  require(vocab > 0, f, ": vocab = ", vocab, " must be > 0 (an empty vocabulary has no distribution)");
  require(rows <= 1 || row_stride >= vocab, f, ": row_stride = ", row_stride, " is less than vocab = ", vocab,
          " (rows would overlap)");
  require(rows == 0 || logits != nullptr, f, ": logits is null");
  require(rows == 0 || targets != nullptr, f, ": targets is null");
  require(temperature > 0 && std::isfinite(temperature), f, ": temperature = ", temperature,
          " must be positive and finite");
  return static_cast<float>(1.0 / temperature);  // as the CPU: 1 / tau in double, then rounded to float
}

}  // namespace detail

// Forward: logp [rows] (required), entropy [rows] and lse [rows] (double) from
// float logits [rows x vocab], row r at logits + r * row_stride; ids int32 or
// int64. entropy = nullptr runs the variant without the entropy's sum; lse =
// nullptr skips it (the backward pass needs it). All pointers are device
// memory; the kernel runs on stream.
template <class Id>
  requires std::same_as<Id, std::int32_t> || std::same_as<Id, std::int64_t>
void logprob_forward(const float* logits, index_t rows, index_t vocab, index_t row_stride, const Id* targets,
                     double temperature, float* logp, float* entropy, double* lse, cudaStream_t stream,
                     target_check check = target_check::wait) {
  const char* f = "cuda::logprob_forward";
  const float inv_tau = detail::logprob_check_common(f, logits, rows, vocab, row_stride, targets, temperature);
  lmrl::detail::require(rows == 0 || logp != nullptr, f, ": logp is null (it is the one required output)");
  if (rows == 0) return;
  constexpr int block = detail::logprob_block;
  const dim3 grid(static_cast<unsigned>(rows));
  const auto launch = [&](unsigned* bad_row) {
    if (entropy != nullptr) {
      cuda::launch(detail::logprob_forward_kernel<block, true, Id>, grid, block, 0, stream, logits, vocab, row_stride,
          targets, inv_tau, logp, entropy, lse, bad_row);
      LMRL_CUDA_CHECK_LAUNCH("logprob_forward_kernel (with entropy)");
    } else {
      cuda::launch(detail::logprob_forward_kernel<block, false, Id>, grid, block, 0, stream, logits, vocab, row_stride,
          targets, inv_tau, logp, entropy, lse, bad_row);
      LMRL_CUDA_CHECK_LAUNCH("logprob_forward_kernel (without entropy)");
    }
  };
  detail::launch_checking_targets(check, stream, f, targets, vocab, launch);
}

// Backward: grad_logits [rows x vocab] (row r at grad_logits + r *
// grad_row_stride, overwritten) from grad_logp and grad_entropy [rows] (either
// may be nullptr: zero), lse [rows] from the forward pass, and entropy [rows]
// when grad_entropy is given. Same logits, ids and temperature as the forward.
template <class Id>
  requires std::same_as<Id, std::int32_t> || std::same_as<Id, std::int64_t>
void logprob_backward(const float* logits, index_t rows, index_t vocab, index_t row_stride, const Id* targets,
                      double temperature, const double* lse, const float* entropy, const float* grad_logp,
                      const float* grad_entropy, float* grad_logits, index_t grad_row_stride, cudaStream_t stream,
                      target_check check = target_check::wait) {
  using lmrl::detail::require;
  const char* f = "cuda::logprob_backward";
  const float inv_tau = detail::logprob_check_common(f, logits, rows, vocab, row_stride, targets, temperature);
  require(rows <= 1 || grad_row_stride >= vocab, f, ": grad_row_stride = ", grad_row_stride,
          " is less than vocab = ", vocab, " (rows would overlap)");
  require(rows == 0 || grad_logits != nullptr, f, ": grad_logits is null");
  require(rows == 0 || lse != nullptr, f, ": lse is null (pass the lse written by logprob_forward)");
  require(rows == 0 || grad_entropy == nullptr || entropy != nullptr, f,
          ": grad_entropy is given, so entropy (from logprob_forward) is needed but is null");
  if (rows == 0) return;
  {  // the gradient must not overwrite the logits it is computed from
    const auto lo = reinterpret_cast<std::uintptr_t>(logits);
    const auto hi = reinterpret_cast<std::uintptr_t>(logits + (rows - 1) * row_stride + vocab);
    const auto g_lo = reinterpret_cast<std::uintptr_t>(grad_logits);
    const auto g_hi = reinterpret_cast<std::uintptr_t>(grad_logits + (rows - 1) * grad_row_stride + vocab);
    require(g_hi <= lo || g_lo >= hi, f, ": grad_logits overlaps logits; write the gradient into separate storage");
  }
  constexpr int block = detail::logprob_block;
  const dim3 grid(static_cast<unsigned>(rows));
  const auto launch = [&](unsigned* bad_row) {
    cuda::launch(detail::logprob_backward_kernel<block, Id>, grid, block, 0, stream, logits, vocab, row_stride, targets,
        inv_tau, lse, entropy, grad_logp, grad_entropy, grad_logits, grad_row_stride, bad_row);
    LMRL_CUDA_CHECK_LAUNCH("logprob_backward_kernel");
  };
  detail::launch_checking_targets(check, stream, f, targets, vocab, launch);
}

}  // namespace lmrl::cuda
