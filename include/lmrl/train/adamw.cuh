// AdamW on the GPU: the twin of train/adamw.hpp (torch.optim.AdamW with
// foreach=False, fused=False, amsgrad=False) on one contiguous device buffer.
// It lives in train/ beside the CPU version and takes the same adamw_config,
// step number, rate and no-decay segments; the step's constants come from the
// same detail::adamw_step_coefficients (the scalars in double, rounded to the
// element type), so the two cannot drift apart.
//
// Per element, at step t (counted from 1), with learning rate lr:
//
//   p   <- p * (1 - lr * weight_decay)          decoupled decay, before the update (not on no-decay ranges)
//   m   <- m + (1 - beta1) * (g - m)            torch's exp_avg.lerp_(g, 1 - beta1)
//   v   <- beta2 * v + (1 - beta2) * g * g
//   p   <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// Each thread does the CPU's elementwise operations in the CPU's order (lerp's
// two branches included) with the IEEE round-to-nearest intrinsics: no fma
// contraction, no --use_fast_math approximation, so the result is the CPU's to
// the bit wherever the host compiler did not contract either. One thread per
// element (grid-stride loop), one launch per segment with or without decay.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/train/adamw.hpp"

namespace lmrl::cuda {

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

template <class T>
__global__ void adamw_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                             index_t begin, index_t end, lmrl::detail::adamw_coefficients<T> k, bool decay,
                             bool lerp_small) {
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = begin + static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < end; i += stride) {
    const T gi = g[i];
    const T m_old = m[i];
    // exp_avg.lerp_(grad, 1 - beta1), with ATen's two branches of lerp
    const T mi = lerp_small ? adamw_add(m_old, adamw_mul(k.lerp_weight, adamw_sub(gi, m_old)))
                            : adamw_sub(gi, adamw_mul(adamw_sub(gi, m_old), k.lerp_complement));
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    const T vi = adamw_add(adamw_mul(v[i], k.beta2), adamw_mul(adamw_mul(k.one_minus_beta2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    T pi = p[i];
    if (decay) pi = adamw_mul(pi, k.decay_factor);  // param.mul_(1 - lr * weight_decay), before the update
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    const T denom = adamw_add(adamw_div(adamw_sqrt(vi), k.bc2_sqrt), k.eps);
    // param.addcdiv_(exp_avg, denom, value=-step_size)
    p[i] = adamw_add(pi, adamw_div(adamw_mul(k.neg_step_size, mi), denom));
  }
}

}  // namespace detail

// One AdamW step on device buffers of `size` elements: params updated, grads
// read, exp_avg and exp_avg_sq (the moments, zero before the first step)
// updated. step: the step number after incrementing (1 for the first);
// segments: lmrl::detail::adamw_segments(size, no_weight_decay), as the CPU's.
template <Real T>
void adamw_update(T* params, const T* grads, T* exp_avg, T* exp_avg_sq, index_t size, std::int64_t step, double lr,
                  const adamw_config& c, const std::vector<lmrl::detail::adamw_segment>& segments,
                  cudaStream_t stream = nullptr) {
  using lmrl::detail::require;
  const char* f = "cuda::adamw_update";
  c.validate(f);
  require(size >= 0, f, ": size = ", size, " must be >= 0");
  require(step >= 1, f, ": step = ", step, " must be >= 1 (the step number after incrementing)");
  require(lr >= 0 && std::isfinite(lr), f, ": lr = ", lr, " must be finite and >= 0");
  if (size == 0) return;
  require(params != nullptr, f, ": params is null");
  require(grads != nullptr, f, ": grads is null");
  require(exp_avg != nullptr, f, ": exp_avg is null");
  require(exp_avg_sq != nullptr, f, ": exp_avg_sq is null");
  const auto k = lmrl::detail::adamw_step_coefficients<T>(c, lr, step);
  const bool decay_on = c.weight_decay != 0;  // torch skips the multiply when weight_decay == 0
  const bool lerp_small = lmrl::detail::adamw_lerp_small(k);
  constexpr int block = 256;
  constexpr index_t max_blocks = 4096;  // the grid-stride loop covers the rest
  for (const auto& s : segments) {
    require(s.begin >= 0 && s.end <= size && s.begin <= s.end, f, ": segment [", s.begin, ", ", s.end,
            ") is outside the buffer of ", size, " elements");
    const index_t n = s.end - s.begin;
    if (n == 0) continue;
    const auto blocks = static_cast<unsigned>(std::min<index_t>((n + block - 1) / block, max_blocks));
    cuda::launch(detail::adamw_kernel<T>, blocks, block, 0, stream, params, grads, exp_avg, exp_avg_sq, s.begin, s.end,
        k, decay_on && s.decay, lerp_small);
    LMRL_CUDA_CHECK_LAUNCH("adamw_kernel");
  }
}

// The same with the ranges that get no weight decay (param_range, any order,
// overlapping or touching), as adamw<T> takes them.
template <Real T>
void adamw_update(T* params, const T* grads, T* exp_avg, T* exp_avg_sq, index_t size, std::int64_t step, double lr,
                  const adamw_config& c, std::vector<param_range> no_weight_decay = {}, cudaStream_t stream = nullptr) {
  adamw_update<T>(params, grads, exp_avg, exp_avg_sq, size, step, lr, c,
                  lmrl::detail::adamw_segments(size, std::move(no_weight_decay)), stream);
}

}  // namespace lmrl::cuda
