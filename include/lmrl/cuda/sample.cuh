// Token sampling on the GPU that draws the token the CPU sampler
// (sample/samplers.hpp) draws for the same logits, config and uniform.
//
//   lmrl::cuda::sample_draws draws;   // u_r = rng.uniform_double(first_sequence + r, position),
//   draws.rng = counter_rng(seed);    // as model/generate.hpp draws them
//   draws.first_sequence = first;  draws.position = t;
//   std::size_t bytes = lmrl::cuda::sample_scratch_bytes<float>(rows, vocab, config);
//   lmrl::cuda::sample_tokens<float>(logits, rows, vocab, vocab, config, draws, tokens,
//                                    tempered_logprobs, logprobs /* or nullptr */, scratch, bytes, stream);
//
// One block of 512 threads per row. For each row it writes the token id and
// tempered_logprob = log softmax(x / T) over the whole vocabulary at that
// token (what TRL's _get_per_token_logps computes), and, where `logprobs` is
// not null, the log-prob under the sampling distribution (after every warper;
// 0 for greedy): sampled_token's two fields.
//
// How it matches the CPU. The CPU sampler is a fixed sequence of IEEE double
// operations; this kernel performs the same operations on the same values in
// the same order wherever the order decides the token:
//
//  * weights w_v = exp((x_v - max) / T) by a twin of
//    detail::exp_nonpositive_or_zero (tensor/fast_exp.hpp) written with
//    __dadd_rn / __dmul_rn / __ddiv_rn, which nvcc never fuses into FMAs, so
//    the bits equal the CPU's wherever the CPU does not fuse either (x86-64
//    without -mfma, or -ffp-contract=off; see below);
//  * every vocabulary-wide sum in detail::sum_blocks' order: blocks of 64
//    tokens (one thread each: 8 interleaved lanes, a tail, the same pairing),
//    the block totals added one after another by one warp walking them in
//    order (loads in parallel, the adds strictly sequential);
//  * the inverse CDF in the CPU's order: whole-vocabulary supports (no top-k)
//    block by block in token-id order, skipping whole blocks exactly as
//    draw_from_support does; top-k supports over the candidates sorted by
//    (logit descending, id ascending), a strict total order, so the sort is
//    unique whatever algorithm produces it;
//  * ties, -inf logits, min-p's trim from the end and the "last positive
//    token" fallback for a target that rounding leaves unreached, as the CPU.
//
// The only operations whose bits can differ from the CPU's are log() (CUDA's
// is within 1 ulp; glibc's is correctly rounded in practice) and the order of
// the sums inside top-p's boundary search when the CPU has more than 256
// candidates (it halves the range with std::nth_element and adds each half in
// the order nth_element leaves it, which no GPU code reproduces). So:
//
//  * greedy, temperature, min-p, top-k (with or without min-p), and top-k
//    followed by top-p when at most 256 logits reach the k-th largest: the
//    same token, always (given the CPU is built without FMA contraction).
//    Over 256, samplers.hpp's top_p_head halves the candidates with
//    std::nth_element and then sorts the kept head back into rank order, the
//    order this kernel draws and trims min-p in; such rows are tested too.
//  * top-p over more than 256 candidates (top-p alone on a flat row; top-k
//    keeping more than 256): the kept set can differ only when the
//    probability mass ahead of some token lies within a few ulps (~1e-15
//    relative) of top_p (the two boundary sums then round to opposite
//    sides); the kept sets then differ by that one token, and the draws can
//    differ for u in a range as wide as its probability. For
//    continuous logits the first event has probability of order 1e-13 per
//    row: zero in practice.
//  * top-p's candidate cut x >= max + T log((1 - top_p) z / (2 V)) uses log,
//    so a logit within an ulp of the cut can be a candidate on one side only;
//    such a token weighs (1 - top_p) z / (2 V), which top-p always removes,
//    so the result is the same.
//  * log-probs: the sums are bit-identical, so they differ from the CPU's by
//    log's ulp and the final rounding to T: well under 1e-6 relative.
//
// A CPU build with -march=native may let GCC fuse exp's polynomial into FMAs
// (GNU mode's default -ffp-contract=fast); weights then differ in the last
// bit and tokens agree except for draws within ~1e-15 of a CDF boundary.
//
// Work per row: a few passes over the vocabulary, one sequential walk over
// the ceil(V / 64) block totals (a warp, one add per step), and for top-k /
// top-p: a radix select of the k-th largest logit (exact integer counts), the
// candidates compacted and bitonic-sorted (in shared memory up to 2048, else
// in the scratch), a sequential walk over them. Top-p alone sorts every token
// above the cut: on a flat row that is most of the vocabulary (milliseconds at
// V = 151,936); peaked rows keep few candidates.
//
// Bad rows cannot throw from a kernel: a row with NaN or +inf, all -inf, or a
// caller uniform outside [0, 1) gets token -1 and NaN log-probs (the launcher
// validates everything it can see on the host and throws lmrl::error).
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/philox.cuh"
#include "lmrl/error.hpp"
#include "lmrl/sample/sampler_config.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

// Where row r's uniform draw u_r comes from.
struct sample_draws {
  // Device [rows]: the draws themselves (a caller's own generator, tests).
  // nullptr: u_r = rng.uniform_double(sequence_r, position_r).
  const double* uniforms = nullptr;
  counter_rng rng{};
  const std::uint64_t* sequences = nullptr;  // device [rows]; nullptr: sequence_r = first_sequence + r
  std::uint64_t first_sequence = 0;
  const std::uint32_t* positions = nullptr;  // device [rows]; nullptr: position_r = position
  std::uint32_t position = 0;
};

namespace detail {

inline constexpr int sample_threads = 512;      // threads per row (one block per row)
inline constexpr int sample_shared_sort = 2048;  // candidates sorted in shared memory up to this many
inline constexpr int sample_sum_block = 64;      // = lmrl::detail::sum_block_size (samplers.hpp)

template <class T>
struct sample_candidate {  // no initializers: it lives in __shared__ arrays
  T logit;
  std::int32_t id;
};

// Byte offsets of one row's scratch, and its size (a multiple of 256).
struct sample_scratch_layout {
  std::size_t block_sums = 0;  // double[ceil(V / 64)]
  std::size_t block_last = 0;  // int[ceil(V / 64)]: last token of positive weight in the block, or -1
  std::size_t candidates = 0;  // sample_candidate<T>[V] (top-k / top-p only)
  std::size_t weights = 0;     // double[V] (top-k / top-p only)
  std::size_t row_bytes = 0;
};

template <class T>
constexpr sample_scratch_layout scratch_layout(index_t vocab, bool candidates) {
  const auto round_up = [](std::size_t b) { return (b + 255) / 256 * 256; };
  const auto v = static_cast<std::size_t>(vocab < 0 ? 0 : vocab);
  const std::size_t blocks = (v + sample_sum_block - 1) / sample_sum_block;
  sample_scratch_layout l;
  std::size_t at = 0;
  l.block_sums = at;
  at = round_up(at + blocks * sizeof(double));
  l.block_last = at;
  at = round_up(at + blocks * sizeof(int));
  if (candidates) {
    l.candidates = at;
    at = round_up(at + v * sizeof(sample_candidate<T>));
    l.weights = at;
    at = round_up(at + v * sizeof(double));
  }
  l.row_bytes = at;
  return l;
}

// ---------------------------------------------------------------- the CPU's arithmetic, unfused

// detail::exp_nonpositive(double) of tensor/fast_exp.hpp, operation for
// operation; the _rn intrinsics keep nvcc from contracting a*b+c into an FMA.
__device__ inline double exp_nonpositive(double x) {
  x = x < -708.0 ? -708.0 : x;
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = __dadd_rn(__dmul_rn(x, 1.4426950408889634), magic);
  const double n = __dsub_rn(t, magic);
  double r = __dsub_rn(x, __dmul_rn(n, 6.93147180369123816490e-01));
  r = __dsub_rn(r, __dmul_rn(n, 1.90821492927058770002e-10));
  double p = 1.0 / 6227020800.0;
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 479001600.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 39916800.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 3628800.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 362880.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 40320.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 5040.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 720.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 120.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 24.0);
  p = __dadd_rn(__dmul_rn(p, r), 1.0 / 6.0);
  p = __dadd_rn(__dmul_rn(p, r), 0.5);
  p = __dadd_rn(__dadd_rn(__dmul_rn(__dmul_rn(p, r), r), r), 1.0);  // p * r * r + r + 1.0
  const long long k = __double_as_longlong(t) - __double_as_longlong(magic);
  return __dmul_rn(p, __longlong_as_double(static_cast<long long>(static_cast<unsigned long long>(k + 1023) << 52)));
}

// detail::exp_nonpositive_or_zero: exactly 0 below -708 and at -inf.
__device__ inline double exp_nonpositive_or_zero(double x) {
  const bool underflow = x < -708.0;
  const double e = exp_nonpositive(underflow ? -708.0 : x);
  return underflow ? 0.0 : e;
}

// detail::tempered_weight: exp((x - max) / temperature).
__device__ inline double tempered_weight(double x, double max, double temperature) {
  return exp_nonpositive_or_zero(__ddiv_rn(__dsub_rn(x, max), temperature));
}

// sampling_support::keeps: min-p's floor and top-p's boundary in rank order.
struct support_rule {
  double floor_weight = 0;
  bool bounded = false;
  double boundary_logit = 0;
  int boundary_id = 0;
  __device__ bool keeps(double x, int v, double w) const {
    return w >= floor_weight &&
           (!bounded || x > boundary_logit || (x == boundary_logit && v <= boundary_id));
  }
  __device__ double weight(double x, int v, double max, double temperature) const {
    const double w = tempered_weight(x, max, temperature);
    return keeps(x, v, w) ? w : 0.0;
  }
};

template <class T>
__device__ inline bool ranks_before(const sample_candidate<T>& a, const sample_candidate<T>& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// ---------------------------------------------------------------- block-wide helpers

// Reduction over the block with every thread getting the result; the partial
// results are combined in one fixed order, so it is deterministic. buf: 32
// shared slots. blockDim.x must be a multiple of 32.
template <class V, class Op>
__device__ V block_all_reduce(V v, Op op, V* buf) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  __syncthreads();  // buf may still be read from the previous call
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  V r = buf[0];
  for (int w = 1; w < static_cast<int>(blockDim.x) / 32; ++w) r = op(r, buf[w]);
  return r;
}

struct max_op {
  template <class V>
  __device__ V operator()(V a, V b) const {
    return a > b ? a : b;
  }
};
struct min_op {
  template <class V>
  __device__ V operator()(V a, V b) const {
    return a < b ? a : b;
  }
};
struct plus_op {
  template <class V>
  __device__ V operator()(V a, V b) const {
    return a + b;
  }
};

// The whole warp walks a[0, n) in order, in step: each chunk of 32 values is
// loaded at once (load(i)), then visit(i, value) is called for one element
// after another with the value broadcast to every lane; visit returns true to
// stop. Every lane runs the same visits on the same values, so state kept in
// visit is the same in every lane. Call with all 32 lanes of one warp.
template <class Load, class Visit>
__device__ void warp_walk(int n, Load load, Visit visit) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  for (int base = 0; base < n; base += 32) {
    const int i = base + lane;
    const double mine = i < n ? load(i) : 0.0;
    const int count = n - base < 32 ? n - base : 32;
    for (int k = 0; k < count; ++k) {
      const double value = __shfl_sync(0xffffffffu, mine, k);
      if (visit(base + k, value)) return;
    }
  }
}

// sum_{i < n} a[i], added left to right from 0 (a sequential CPU loop's bits).
__device__ inline double warp_sum_in_order(const double* a, int n) {
  double total = 0;
  warp_walk(
      n, [&](int i) { return a[i]; },
      [&](int, double v) {
        total = __dadd_rn(total, v);
        return false;
      });
  return total;
}

// detail::sum_block of samplers.hpp over tokens [begin, end) with the rule's
// weights: 8 interleaved lanes, a tail, the same pairing. *last: the last
// token of positive weight, or -1.
template <class T>
__device__ double sum_token_block(const T* x, int begin, int end, const support_rule& rule, double max, double t,
                                  int* last) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int positive = -1;
  int v = begin;
  for (; v + 8 <= end; v += 8)
    for (int l = 0; l < 8; ++l) {
      const double w = rule.weight(static_cast<double>(x[v + l]), v + l, max, t);
      lane[l] = __dadd_rn(lane[l], w);
      if (w > 0) positive = v + l;
    }
  double tail = 0;
  for (; v < end; ++v) {
    const double w = rule.weight(static_cast<double>(x[v]), v, max, t);
    tail = __dadd_rn(tail, w);
    if (w > 0) positive = v;
  }
  *last = positive;
  const double left = __dadd_rn(__dadd_rn(lane[0], lane[1]), __dadd_rn(lane[2], lane[3]));
  const double right = __dadd_rn(__dadd_rn(lane[4], lane[5]), __dadd_rn(lane[6], lane[7]));
  return __dadd_rn(__dadd_rn(left, right), tail);
}

// Every 64-token block's sum (and last positive token) into the scratch; the
// whole block of threads calls it. Ends with __syncthreads.
template <class T>
__device__ void compute_block_sums(const T* x, int vocab, const support_rule& rule, double max, double t,
                                   double* block_sum, int* block_last) {
  const int blocks = (vocab + sample_sum_block - 1) / sample_sum_block;
  for (int b = static_cast<int>(threadIdx.x); b < blocks; b += static_cast<int>(blockDim.x)) {
    const int begin = b * sample_sum_block;
    const int end = vocab - begin < sample_sum_block ? vocab : begin + sample_sum_block;
    int last = -1;
    block_sum[b] = sum_token_block(x, begin, end, rule, max, t, &last);
    block_last[b] = last;
  }
  __syncthreads();
}

// draw_from_support's whole-vocabulary branch (token-id order), run by one
// warp (all lanes get the same answer): the first token whose running weight
// exceeds target, whole blocks skipped as the CPU skips them.
template <class T>
__device__ int draw_id_order(const T* x, int vocab, const support_rule& rule, double max, double t,
                             const double* block_sum, const int* block_last, double target, int argmax) {
  const int blocks = (vocab + sample_sum_block - 1) / sample_sum_block;
  double running = 0;
  int last_block = -1;  // the last block of positive weight walked past
  int found = -1;
  warp_walk(
      blocks, [&](int b) { return block_sum[b]; },
      [&](int b, double block) {
        if (block > 0 && __dadd_rn(running, block) > target) {
          found = b;
          return true;
        }
        running = __dadd_rn(running, block);
        if (block > 0) last_block = b;
        return false;
      });
  int last = last_block >= 0 ? block_last[last_block] : argmax;
  if (found < 0) return last;  // rounding: the total never passed the target
  const int begin = found * sample_sum_block;
  const int end = vocab - begin < sample_sum_block ? vocab : begin + sample_sum_block;
  double inner = running;
  for (int v = begin; v < end; ++v) {
    const double w = rule.weight(static_cast<double>(x[v]), v, max, t);
    if (w <= 0) continue;
    inner = __dadd_rn(inner, w);
    last = v;
    if (inner > target) return v;
  }
  return last;  // rounding: the block passes the target as a whole but not token by token
}

// Sorts a[0, n) by ranks_before (a strict total order: ids are distinct), in
// shared or global memory. Bitonic network in its "flip" form, every
// comparator ascending, so a length that is not a power of two is padded
// with virtual last-ranked elements that never move: pairs reaching past n
// are skipped. The whole block calls it with the same n.
template <class T>
__device__ void bitonic_sort(sample_candidate<T>* a, int n) {
  int size = 1;
  while (size < n) size <<= 1;
  for (int k = 2; k <= size; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x)) {
        const int p = j == (k >> 1) ? (i ^ (k - 1)) : (i ^ j);  // first step of a merge: the mirror partner
        if (p > i && p < n) {
          const sample_candidate<T> ai = a[i], ap = a[p];
          if (ranks_before(ap, ai)) {
            a[i] = ap;
            a[p] = ai;
          }
        }
      }
      __syncthreads();
    }
  }
}

// Order-preserving unsigned keys of finite logits: larger logit, larger key;
// -0 and +0 one key (they tie on the CPU too).
template <class T>
struct radix_key;
template <>
struct radix_key<float> {
  using type = std::uint32_t;
  __device__ static type of(float x) {
    const std::uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
};
template <>
struct radix_key<double> {
  using type = unsigned long long;
  __device__ static type of(double x) {
    const auto u = static_cast<unsigned long long>(__double_as_longlong(x == 0.0 ? 0.0 : x));
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
  }
};

// The key of the k-th largest finite logit counting repeats (1 <= k <= the
// number of finite logits): MSB-first radix select, 8 bits a pass, integer
// counts only (exact, deterministic). hist: 256 shared ints. The whole block
// calls it.
template <class T>
__device__ typename radix_key<T>::type kth_largest_key(const T* x, int vocab, int k, int* hist) {
  using K = typename radix_key<T>::type;
  __shared__ K s_prefix;
  __shared__ int s_remaining;
  K prefix = 0, mask = 0;
  int remaining = k;
  for (int shift = static_cast<int>(sizeof(K)) * 8 - 8; shift >= 0; shift -= 8) {
    for (int i = static_cast<int>(threadIdx.x); i < 256; i += static_cast<int>(blockDim.x)) hist[i] = 0;
    __syncthreads();
    for (int v = static_cast<int>(threadIdx.x); v < vocab; v += static_cast<int>(blockDim.x)) {
      const T xv = x[v];
      if (!(xv > -std::numeric_limits<T>::infinity())) continue;
      const K key = radix_key<T>::of(xv);
      if ((key & mask) == prefix) atomicAdd(&hist[static_cast<int>((key >> shift) & 255u)], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0, d = 255;  // keys with a larger digit than d, among those matching the prefix
      for (; d > 0; --d) {
        if (above + hist[d] >= remaining) break;
        above += hist[d];
      }
      s_prefix = prefix | (static_cast<K>(d) << shift);
      s_remaining = remaining - above;
    }
    __syncthreads();
    prefix = s_prefix;
    remaining = s_remaining;
    mask |= static_cast<K>(255u) << shift;
  }
  __syncthreads();  // hist and s_prefix are free again
  return prefix;
}

template <class T>
struct sample_args {
  const T* logits;
  index_t ld;
  int vocab;
  double temperature, top_p, min_p;
  int top_k;
  bool do_sample, top_k_on, top_p_on, min_p_on;
  sample_draws draws;
  std::int32_t* tokens;
  T* tempered_logprobs;
  T* logprobs;  // may be null
  unsigned char* scratch;
  sample_scratch_layout layout;
};

template <class T>
__global__ void __launch_bounds__(sample_threads) sample_kernel(sample_args<T> a) {
  __shared__ sample_candidate<T> s_candidates[sample_shared_sort];
  __shared__ T red_t[32];
  __shared__ int red_i[32];
  __shared__ int hist[256];
  __shared__ int s_count;
  __shared__ int s_int[2];
  __shared__ double s_double[2];

  constexpr T minus_inf = -std::numeric_limits<T>::infinity();
  const int tid = static_cast<int>(threadIdx.x), threads = static_cast<int>(blockDim.x);
  const int row = static_cast<int>(blockIdx.x);
  const int vocab = a.vocab;
  const T* x = a.logits + static_cast<index_t>(row) * a.ld;
  unsigned char* scratch = a.scratch + static_cast<std::size_t>(row) * a.layout.row_bytes;
  double* block_sum = reinterpret_cast<double*>(scratch + a.layout.block_sums);
  int* block_last = reinterpret_cast<int*>(scratch + a.layout.block_last);

  double u;
  if (a.draws.uniforms != nullptr) {
    u = a.draws.uniforms[row];
  } else {
    const std::uint64_t sequence = a.draws.sequences != nullptr ? a.draws.sequences[row]
                                                                : a.draws.first_sequence + static_cast<std::uint64_t>(row);
    const std::uint32_t position = a.draws.positions != nullptr ? a.draws.positions[row] : a.draws.position;
    u = a.draws.rng.uniform_double(sequence, position);
  }

  // Max and a flag for NaN / +inf (summarize_row).
  T m = minus_inf;
  int bad = 0;
  for (int v = tid; v < vocab; v += threads) {
    const T xv = x[v];
    bad |= !(xv < std::numeric_limits<T>::infinity());
    m = xv > m ? xv : m;
  }
  m = block_all_reduce(m, max_op{}, red_t);
  bad = block_all_reduce(bad, max_op{}, red_i);
  if (bad || !(m > minus_inf) || !(u >= 0 && u < 1)) {  // the same for every thread: the block leaves together
    if (tid == 0) {
      a.tokens[row] = -1;
      a.tempered_logprobs[row] = std::numeric_limits<T>::quiet_NaN();
      if (a.logprobs != nullptr) a.logprobs[row] = std::numeric_limits<T>::quiet_NaN();
    }
    return;
  }
  int first_max = INT_MAX;  // the lowest id holding the max
  for (int v = tid; v < vocab; v += threads)
    if (x[v] == m) {
      first_max = v;
      break;
    }
  const int argmax = block_all_reduce(first_max, min_op{}, red_i);
  const double max = static_cast<double>(m);
  const double t = a.temperature;

  // z = sum_v w_v in sum_blocks' order.
  compute_block_sums(x, vocab, support_rule{}, max, t, block_sum, block_last);
  const int blocks = (vocab + sample_sum_block - 1) / sample_sum_block;
  if (tid < 32) {
    const double z = warp_sum_in_order(block_sum, blocks);
    if (tid == 0) s_double[0] = z;
  }
  __syncthreads();
  const double z = s_double[0];

  int token = argmax;
  double support_z = 1;  // greedy: a point mass
  if (a.do_sample) {
    support_rule rule;
    rule.floor_weight = a.min_p_on ? a.min_p : 0.0;
    if (!a.top_k_on && !a.top_p_on) {
      // Temperature and min-p: the support is a rule over the vocabulary.
      if (rule.floor_weight > 0) {
        compute_block_sums(x, vocab, rule, max, t, block_sum, block_last);
        if (tid < 32) {
          const double zs = warp_sum_in_order(block_sum, blocks);
          if (tid == 0) s_double[1] = zs;
        }
        __syncthreads();
        support_z = s_double[1];
      } else {
        support_z = z;  // the block sums of z are the support's
      }
      if (tid < 32) {
        const int drawn = draw_id_order(x, vocab, rule, max, t, block_sum, block_last, __dmul_rn(u, support_z), argmax);
        if (tid == 0) s_int[0] = drawn;
      }
      __syncthreads();
      token = s_int[0];
    } else {
      // Top-k and/or top-p: candidates (logit, id), sorted by rank.
      auto* g_candidates = reinterpret_cast<sample_candidate<T>*>(scratch + a.layout.candidates);
      double* weights = reinterpret_cast<double*>(scratch + a.layout.weights);
      bool use_key = false;  // top-k: keep radix_key(x) >= key_threshold
      typename radix_key<T>::type key_threshold = 0;
      double x_cut = -std::numeric_limits<double>::infinity();
      if (a.top_k_on) {
        int finite = 0;
        for (int v = tid; v < vocab; v += threads) finite += x[v] > minus_inf ? 1 : 0;
        finite = block_all_reduce(finite, plus_op{}, red_i);
        if (a.top_k < finite) {
          use_key = true;
          key_threshold = kth_largest_key(x, vocab, a.top_k, hist);
        }
      } else {
        // Top-p alone: tokens too light to ever be in the nucleus stay out (find_support's cut).
        const double cut = __ddiv_rn(__dmul_rn(__dmul_rn(0.5, __dsub_rn(1.0, a.top_p)), z), static_cast<double>(vocab));
        x_cut = __dadd_rn(max, __dmul_rn(t, ::log(cut)));
      }
      if (tid == 0) s_count = 0;
      __syncthreads();
      for (int v = tid; v < vocab; v += threads) {
        const T xv = x[v];
        if (!(xv > minus_inf)) continue;
        const bool keep = use_key ? radix_key<T>::of(xv) >= key_threshold : static_cast<double>(xv) >= x_cut;
        if (keep) g_candidates[atomicAdd(&s_count, 1)] = sample_candidate<T>{xv, v};
      }
      __syncthreads();
      int n = s_count;
      sample_candidate<T>* c = g_candidates;
      if (n <= sample_shared_sort) {
        for (int j = tid; j < n; j += threads) s_candidates[j] = g_candidates[j];
        __syncthreads();
        c = s_candidates;
      }
      bitonic_sort(c, n);  // ends with __syncthreads (n >= 1: the max is always a candidate)
      for (int j = tid; j < n; j += threads) weights[j] = tempered_weight(static_cast<double>(c[j].logit), max, t);
      __syncthreads();

      const double keep_above = __dsub_rn(1.0, a.top_p);
      // top_p_head: the first rank j > 0 whose mass ahead is at least top_p of total.
      const auto top_p_head = [&](int count, double total) {
        int kept = count;
        double ahead = 0;
        warp_walk(
            count, [&](int j) { return weights[j]; },
            [&](int j, double w) {
              if (j > 0 && __ddiv_rn(__dsub_rn(total, ahead), total) <= keep_above) {
                kept = j;
                return true;
              }
              ahead = __dadd_rn(ahead, w);
              return false;
            });
        return kept;
      };

      if (!a.top_k_on) {
        // Top-p alone: find the boundary token, then sample the kept tokens in id order.
        if (tid < 32) {
          const int kept = top_p_head(n, z);
          if (tid == 0) s_int[0] = kept;
        }
        __syncthreads();
        const sample_candidate<T> boundary = c[s_int[0] - 1];
        rule.bounded = true;
        rule.boundary_logit = static_cast<double>(boundary.logit);
        rule.boundary_id = boundary.id;
        compute_block_sums(x, vocab, rule, max, t, block_sum, block_last);
        if (tid < 32) {
          const double zs = warp_sum_in_order(block_sum, blocks);
          const int drawn = draw_id_order(x, vocab, rule, max, t, block_sum, block_last, __dmul_rn(u, zs), argmax);
          if (tid == 0) {
            s_double[1] = zs;
            s_int[1] = drawn;
          }
        }
        __syncthreads();
        support_z = s_double[1];
        token = s_int[1];
      } else {
        // Top-k (all ties with the k-th kept), then top-p over their weight, then min-p.
        if (a.top_p_on) {
          if (tid < 32) {
            const double zk = warp_sum_in_order(weights, n);
            const int kept = top_p_head(n, zk);
            if (tid == 0) s_int[0] = kept;
          }
          __syncthreads();
          n = s_int[0];
        }
        if (rule.floor_weight > 0) {
          // while (n > 1 && w[n - 1] < floor) --n, i.e. 1 + the last rank with w >= floor (or 1).
          int last = 0;
          for (int j = tid; j < n; j += threads)
            if (weights[j] >= rule.floor_weight) last = j;
          n = block_all_reduce(last, max_op{}, red_i) + 1;
        }
        if (tid < 32) {
          const double zs = warp_sum_in_order(weights, n);
          const double target = __dmul_rn(u, zs);
          double running = 0;
          int last = -1, found = -1;
          warp_walk(
              n, [&](int j) { return weights[j]; },
              [&](int j, double w) {
                if (w <= 0) return false;
                running = __dadd_rn(running, w);
                last = j;
                if (running > target) {
                  found = j;
                  return true;
                }
                return false;
              });
          const int pick = found >= 0 ? found : last;
          if (tid == 0) {
            s_double[1] = zs;
            s_int[1] = pick >= 0 ? c[pick].id : argmax;
          }
        }
        __syncthreads();
        support_z = s_double[1];
        token = s_int[1];
      }
    }
  }

  if (tid == 0) {
    const double s = __ddiv_rn(__dsub_rn(static_cast<double>(x[token]), max), t);
    a.tokens[row] = token;
    a.tempered_logprobs[row] = static_cast<T>(s - ::log(z));
    if (a.logprobs != nullptr) a.logprobs[row] = a.do_sample ? static_cast<T>(s - ::log(support_z)) : T(0);
  }
}

}  // namespace detail

// Bytes of device scratch sample_tokens needs for `rows` rows of `vocab`
// logits under `config`: per row ceil(V / 64) * 12 bytes, plus V * (8 +
// sizeof(T) + 4, rounded) when top-k or top-p is on.
template <class T>
std::size_t sample_scratch_bytes(index_t rows, index_t vocab, const sampler_config& config) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "sample_tokens: logits are float or double");
  const bool candidates = config.uses_top_k(vocab) || config.uses_top_p();
  return static_cast<std::size_t>(rows < 0 ? 0 : rows) * detail::scratch_layout<T>(vocab, candidates).row_bytes;
}

// Samples one token per row of the [rows x vocab] logits (row r at
// logits + r * ld, device memory) as sample_token does on the CPU with the
// uniform u_r of `draws`; writes tokens[r] (device int32), the tempered
// log-prob (log softmax(x / temperature) over the whole vocabulary) into
// tempered_logprobs[r] and, if logprobs is not null, the log-prob under the
// sampling distribution into logprobs[r]. `scratch`: device memory of at
// least sample_scratch_bytes<T>(rows, vocab, config) bytes, 16-byte aligned
// (cudaMalloc's is). Asynchronous on `stream`.
template <class T>
void sample_tokens(const T* logits, index_t rows, index_t vocab, index_t ld, const sampler_config& config,
                   const sample_draws& draws, std::int32_t* tokens, T* tempered_logprobs, T* logprobs, void* scratch,
                   std::size_t scratch_bytes, cudaStream_t stream) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "sample_tokens: logits are float or double");
  using ::lmrl::detail::require;
  config.validate();
  require(rows >= 0, "cuda::sample_tokens: rows = ", rows, " must be >= 0");
  require(rows <= INT_MAX, "cuda::sample_tokens: rows = ", rows, " is more than one launch holds (", INT_MAX, ")");
  require(vocab >= 1, "cuda::sample_tokens: vocab = ", vocab, " must be >= 1");
  require(vocab <= INT32_MAX, "cuda::sample_tokens: vocab = ", vocab, " is more than token ids of 32 bits hold");
  require(ld >= vocab, "cuda::sample_tokens: ld = ", ld, " must be >= vocab = ", vocab);
  if (rows == 0) return;
  require(logits != nullptr, "cuda::sample_tokens: logits is null");
  require(tokens != nullptr, "cuda::sample_tokens: tokens is null");
  require(tempered_logprobs != nullptr, "cuda::sample_tokens: tempered_logprobs is null");
  const bool candidates = config.uses_top_k(vocab) || config.uses_top_p();
  const detail::sample_scratch_layout layout = detail::scratch_layout<T>(vocab, candidates);
  const std::size_t needed = static_cast<std::size_t>(rows) * layout.row_bytes;
  require(scratch != nullptr, "cuda::sample_tokens: scratch is null (", needed, " bytes needed)");
  require(scratch_bytes >= needed, "cuda::sample_tokens: scratch holds ", scratch_bytes, " bytes but ", rows,
          " rows of ", vocab, " logits need ", needed, " (sample_scratch_bytes)");
  require(reinterpret_cast<std::uintptr_t>(scratch) % 16 == 0, "cuda::sample_tokens: scratch is not 16-byte aligned");

  detail::sample_args<T> args{};
  args.logits = logits;
  args.ld = ld;
  args.vocab = static_cast<int>(vocab);
  args.temperature = config.temperature;
  args.top_p = config.top_p;
  args.min_p = config.min_p;
  args.do_sample = config.do_sample;
  args.top_k_on = config.uses_top_k(vocab);
  args.top_k = args.top_k_on ? static_cast<int>(config.top_k) : 0;
  args.top_p_on = config.uses_top_p();
  args.min_p_on = config.uses_min_p();
  args.draws = draws;
  args.tokens = tokens;
  args.tempered_logprobs = tempered_logprobs;
  args.logprobs = logprobs;
  args.scratch = static_cast<unsigned char*>(scratch);
  args.layout = layout;
  cuda::launch(detail::sample_kernel<T>, static_cast<unsigned>(rows), detail::sample_threads, 0, stream, args);
  LMRL_CUDA_CHECK_LAUNCH("sample_kernel");
}

}  // namespace lmrl::cuda
