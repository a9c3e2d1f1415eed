// AdamW on the GPU: the twin of train/adamw.hpp (torch.optim.AdamW with
// foreach=False, fused=False, amsgrad=False), one contiguous parameter buffer.
//
// Per element, at step t (counted from 1), with learning rate lr:
//
//   p   <- p * (1 - lr * weight_decay)          decoupled decay, before the update (not on no-decay ranges)
//   m   <- m + (1 - beta1) * (g - m)            torch's exp_avg.lerp_(g, 1 - beta1)
//   v   <- beta2 * v + (1 - beta2) * g * g
//   p   <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// The step's scalars are computed on the host in double exactly as
// detail::adamw_step_scalars computes them (then rounded to the element type),
// and each thread does the CPU's elementwise operations in the CPU's order
// (lerp's two branches included) with the IEEE round-to-nearest intrinsics:
// no fma contraction and no --use_fast_math approximation, so the result is
// the CPU's to the bit wherever the host compiler did not contract either.
// One thread per element (grid-stride loop); one launch per stretch of the
// buffer with or without weight decay, as the CPU loops over its segments.
//
// This layer sits below train/, so it does not include train/adamw.hpp: the
// hyper-parameters come as cuda::adamw_step_config (the fields of
// adamw_config plus the step number), and the no-decay ranges as
// cuda::adamw_range (param_range's fields).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

// One step's hyper-parameters, under torch.optim.AdamW's names.
struct adamw_step_config {
  std::int64_t step = 1;  // the step number after incrementing: 1 for the first step
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

// Elements [offset, offset + size) of the buffer that get no weight decay.
struct adamw_range {
  index_t offset = 0;
  index_t size = 0;
};

namespace detail {

// The IEEE operations one at a time (never fused, never approximated).
__device__ inline float adamw_add(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float adamw_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ inline float adamw_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float adamw_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline float adamw_sqrt(float a) { return __fsqrt_rn(a); }
__device__ inline double adamw_add(double a, double b) { return __dadd_rn(a, b); }
__device__ inline double adamw_sub(double a, double b) { return __dsub_rn(a, b); }
__device__ inline double adamw_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ inline double adamw_div(double a, double b) { return __ddiv_rn(a, b); }
__device__ inline double adamw_sqrt(double a) { return __dsqrt_rn(a); }

// The per-step constants in the element type (detail::adamw_coefficients of
// train/adamw.hpp) and the two choices the CPU makes per segment.
template <class T>
struct adamw_coefficients {
  T decay_factor, lerp_weight, lerp_complement, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size;
  bool decay;       // weight decay on this stretch (and weight_decay != 0)
  bool lerp_small;  // |1 - beta1| < 0.5: which of ATen's two lerp formulas
};

template <class T>
__global__ void adamw_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                             index_t begin, index_t end, adamw_coefficients<T> k) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = begin + static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < end; i += stride) {
    const T gi = g[i];
    const T m_old = m[i];
    // exp_avg.lerp_(grad, 1 - beta1), with ATen's two branches of lerp
    const T mi = k.lerp_small ? adamw_add(m_old, adamw_mul(k.lerp_weight, adamw_sub(gi, m_old)))
                              : adamw_sub(gi, adamw_mul(adamw_sub(gi, m_old), k.lerp_complement));
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    const T vi = adamw_add(adamw_mul(v[i], k.beta2), adamw_mul(adamw_mul(k.one_minus_beta2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    T pi = p[i];
    if (k.decay) pi = adamw_mul(pi, k.decay_factor);  // param.mul_(1 - lr * weight_decay), before the update
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    const T denom = adamw_add(adamw_div(adamw_sqrt(vi), k.bc2_sqrt), k.eps);
    // param.addcdiv_(exp_avg, denom, value=-step_size)
    p[i] = adamw_add(pi, adamw_div(adamw_mul(k.neg_step_size, mi), denom));
  }
}

// x rounded to a double in memory, so that the host compiler cannot fuse the
// product that made it into a following addition (train/rounded.hpp).
inline double adamw_rounded(double x) {
  volatile double stored = x;
  return stored;
}

// A stretch [begin, end) of the buffer with or without weight decay.
struct adamw_stretch {
  index_t begin = 0;
  index_t end = 0;
  bool decay = true;
};

// [0, size) split into decayed / undecayed stretches, as detail::adamw_segments
// splits it: ranges in any order, overlapping or touching ones merged.
inline std::vector<adamw_stretch> adamw_stretches(const char* f, index_t size, std::span<const adamw_range> ranges) {
  std::vector<adamw_range> no_decay(ranges.begin(), ranges.end());
  for (std::size_t k = 0; k < no_decay.size(); ++k) {
    const auto& r = no_decay[k];
    lmrl::detail::require(r.offset >= 0 && r.size >= 0 && r.offset + r.size <= size, f, ": no_weight_decay[", k,
                          "] = [", r.offset, ", ", r.offset + r.size, ") is outside the parameter buffer of ", size,
                          " elements");
  }
  std::sort(no_decay.begin(), no_decay.end(),
            [](const adamw_range& a, const adamw_range& b) { return a.offset < b.offset; });
  std::vector<adamw_stretch> out;
  index_t at = 0;
  for (const auto& r : no_decay) {
    if (r.size == 0) continue;
    const index_t end = r.offset + r.size;
    if (r.offset > at) out.push_back({at, r.offset, true});
    if (!out.empty() && !out.back().decay && out.back().end >= r.offset) {
      out.back().end = std::max(out.back().end, end);  // overlapping or touching
    } else {
      out.push_back({std::max(at, r.offset), end, false});
    }
    at = std::max(at, end);
  }
  if (at < size) out.push_back({at, size, true});
  return out;
}

}  // namespace detail

// One AdamW step on device buffers of size elements: params updated, grads
// read, exp_avg and exp_avg_sq (the moments, zero before the first step)
// updated. no_weight_decay: host list of ranges without weight decay.
template <class T>
  requires std::is_same_v<T, float> || std::is_same_v<T, double>
void adamw_update(T* params, const T* grads, T* exp_avg, T* exp_avg_sq, index_t size, const adamw_step_config& c,
                  std::span<const adamw_range> no_weight_decay, cudaStream_t stream) {
  using lmrl::detail::require;
  const char* f = "cuda::adamw_update";
  require(size >= 0, f, ": size = ", size, " must be >= 0");
  require(c.step >= 1, f, ": step = ", c.step, " must be >= 1 (the step number after incrementing)");
  require(c.lr >= 0 && std::isfinite(c.lr), f, ": lr = ", c.lr, " must be finite and >= 0");
  require(c.eps >= 0, f, ": eps = ", c.eps, " must be >= 0");
  require(c.beta1 >= 0 && c.beta1 < 1, f, ": beta1 = ", c.beta1, " must be in [0, 1)");
  require(c.beta2 >= 0 && c.beta2 < 1, f, ": beta2 = ", c.beta2, " must be in [0, 1)");
  require(c.weight_decay >= 0, f, ": weight_decay = ", c.weight_decay, " must be >= 0");
  const auto stretches = detail::adamw_stretches(f, size, no_weight_decay);
  if (size == 0) return;
  require(params != nullptr, f, ": params is null");
  require(grads != nullptr, f, ": grads is null");
  require(exp_avg != nullptr, f, ": exp_avg is null");
  require(exp_avg_sq != nullptr, f, ": exp_avg_sq is null");

  // The scalars in double, as detail::adamw_step_scalars (and torch's Python) computes them.
  const double t = static_cast<double>(c.step);
  const double bias_correction1 = 1 - std::pow(c.beta1, t);
  const double bias_correction2 = 1 - std::pow(c.beta2, t);
  const double decay_factor = 1 - detail::adamw_rounded(c.lr * c.weight_decay);
  const double step_size = c.lr / bias_correction1;
  const double bias_correction2_sqrt = std::pow(bias_correction2, 0.5);
  // Python doubles become element-type scalars, as in adamw_update of train/adamw.hpp.
  const T lerp_weight = static_cast<T>(1 - c.beta1);
  detail::adamw_coefficients<T> k{static_cast<T>(decay_factor),
                                  lerp_weight,
                                  T(1) - lerp_weight,
                                  static_cast<T>(c.beta2),
                                  static_cast<T>(1 - c.beta2),
                                  static_cast<T>(bias_correction2_sqrt),
                                  static_cast<T>(c.eps),
                                  static_cast<T>(-step_size),
                                  false,
                                  std::abs(lerp_weight) < T(0.5)};
  const bool decay_on = c.weight_decay != 0;  // torch skips the multiply when weight_decay == 0

  constexpr int block = 256;
  constexpr index_t max_blocks = 4096;  // the grid-stride loop covers the rest
  for (const auto& s : stretches) {
    k.decay = decay_on && s.decay;
    const index_t n = s.end - s.begin;
    if (n <= 0) continue;
    const auto blocks = static_cast<unsigned>(std::min<index_t>((n + block - 1) / block, max_blocks));
    detail::adamw_kernel<T><<<blocks, block, 0, stream>>>(params, grads, exp_avg, exp_avg_sq, s.begin, s.end, k);
    LMRL_CUDA_CHECK_LAUNCH("adamw_kernel");
  }
}

// Without no-decay ranges: weight decay on every element.
template <class T>
  requires std::is_same_v<T, float> || std::is_same_v<T, double>
void adamw_update(T* params, const T* grads, T* exp_avg, T* exp_avg_sq, index_t size, const adamw_step_config& c,
                  cudaStream_t stream) {
  adamw_update<T>(params, grads, exp_avg, exp_avg_sq, size, c, std::span<const adamw_range>{}, stream);
}

}  // namespace lmrl::cuda
