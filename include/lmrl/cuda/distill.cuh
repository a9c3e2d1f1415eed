// Logit distillation's divergence on the GPU: the twin of rl/distill.hpp's
// distillation_kl (read it for the formulas). With p = softmax(teacher / tau),
// q = softmax(student / tau), z the student's logits:
//
//   forward KL  KL(p || q) = sum_v p_v (log p_v - log q_v)   dKL/dz_v = (q_v - p_v) / tau
//   reverse KL  KL(q || p) = sum_v q_v (log q_v - log p_v)   dKL/dz_v = q_v (log q_v - log p_v - KL) / tau
//
//   distillation_kl(student, ld_s, teacher, ld_t, rows, vocab, divergence, tau, kl, grad, ld_g, row_scale, stream)
//       kl[r] for r < rows; when grad is not null, grad[r, v] = row_scale[r] * dKL_r / dz_v (row_scale null: 1)
//
// One block per row, two passes over the vocabulary and nothing vocabulary-sized
// beyond the caller's gradient: pass 1 keeps, per thread, each distribution's
// online log-sum-exp state (running max m, sum s = sum e^(x - m)) and the
// weighted sum w = sum e^(a - m) (a - b) of the log-ratio the KL needs (rescaled
// with s when m grows), merged over the block in a fixed tree (same inputs, same
// bits); then KL = w / s - lse(a) + lse(b) with a, b the two sides' scaled logits.
// Pass 2 writes the gradient. Sums in double, as the CPU's.
//
// Status: compiled (CUDA 13), NOT yet run on a GPU; tests/cuda/test_generate.cu
// compares it with rl/distill.hpp.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/error.hpp"
#include "lmrl/rl/distill.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::cuda {

namespace distill_detail {

inline constexpr int threads = 256;

// One side's online state: max m, s = sum e^(x - m), w = sum e^(x - m) d (d the log-ratio term).
// (no member initializers: the block's states live in __shared__ arrays, which cannot be constructed)
struct lse_state {
  double m, s, w;

  __device__ static lse_state empty() { return {-INFINITY, 0.0, 0.0}; }

  __device__ void add(double x, double d) {
    if (x > m) {
      const double f = s == 0 ? 0.0 : exp(m - x);
      s = s * f + 1, w = w * f + d, m = x;
    } else {
      const double e = exp(x - m);
      s += e, w += e * d;
    }
  }
  __device__ void merge(const lse_state& o) {
    if (o.s == 0) return;
    if (s == 0) {
      *this = o;
      return;
    }
    const double top = fmax(m, o.m), f = exp(m - top), g = exp(o.m - top);
    s = s * f + o.s * g, w = w * f + o.w * g, m = top;
  }
  __device__ double lse() const { return m + log(s); }
};

// Block per row. `first` is the distribution the KL averages over (p for forward, q for reverse): its state
// carries w = sum e^(first - m) (first - second).
template <class T>
__global__ void __launch_bounds__(threads)
    kl_kernel(const T* student, index_t ld_s, const T* teacher, index_t ld_t, index_t vocab, bool reverse,
              double inv_tau, T* kl, T* grad, index_t ld_g, const T* row_scale) {
  __shared__ lse_state first_s[threads], second_s[threads];
  const index_t r = blockIdx.x;
  const T* z = student + r * ld_s;
  const T* t = teacher + r * ld_t;
  lse_state first = lse_state::empty(), second = lse_state::empty();
  for (index_t v = threadIdx.x; v < vocab; v += threads) {
    const double a = static_cast<double>(t[v]) * inv_tau, b = static_cast<double>(z[v]) * inv_tau;
    const double x = reverse ? b : a, y = reverse ? a : b;
    first.add(x, x - y);
    second.add(y, 0.0);
  }
  first_s[threadIdx.x] = first, second_s[threadIdx.x] = second;
  __syncthreads();
  for (int half = threads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) {
      first_s[threadIdx.x].merge(first_s[threadIdx.x + half]);
      second_s[threadIdx.x].merge(second_s[threadIdx.x + half]);
    }
    __syncthreads();
  }
  const double lse_first = first_s[0].lse(), lse_second = second_s[0].lse();
  const double value = first_s[0].w / first_s[0].s - lse_first + lse_second;
  if (threadIdx.x == 0) kl[r] = static_cast<T>(value);
  if (grad == nullptr) return;
  const double lse_a = reverse ? lse_second : lse_first, lse_b = reverse ? lse_first : lse_second;
  const double scale = (row_scale != nullptr ? static_cast<double>(row_scale[r]) : 1.0) * inv_tau;
  T* g = grad + r * ld_g;
  for (index_t v = threadIdx.x; v < vocab; v += threads) {
    const double log_p = static_cast<double>(t[v]) * inv_tau - lse_a, log_q = static_cast<double>(z[v]) * inv_tau - lse_b;
    const double q = exp(log_q);
    g[v] = static_cast<T>(scale * (reverse ? q * (log_q - log_p - value) : q - exp(log_p)));
  }
}

}  // namespace distill_detail

// kl[r] (and grad[r, :] scaled by row_scale[r]) for the rows of student and teacher logits [rows x vocab]
// (row strides ld_s, ld_t); device pointers; grad and row_scale may be null.
inline void distillation_kl(const float* student, index_t ld_s, const float* teacher, index_t ld_t, index_t rows,
                            index_t vocab, distill_divergence divergence, double temperature, float* kl, float* grad,
                            index_t ld_g, const float* row_scale, cudaStream_t stream = nullptr) {
  const char* f = "cuda::distillation_kl";
  lmrl::detail::require(rows >= 0 && vocab >= 1 && ld_s >= vocab && ld_t >= vocab && (grad == nullptr || ld_g >= vocab),
                        f, ": ", rows, " rows of ", vocab, " logits with row strides ", ld_s, ", ", ld_t, " and ", ld_g);
  lmrl::detail::require(temperature > 0 && std::isfinite(temperature), f, ": temperature = ", temperature,
                        " must be positive and finite");
  lmrl::detail::require(rows <= 2147483647, f, ": ", rows, " rows are more than a grid holds");
  if (rows == 0) return;
  cuda::launch(distill_detail::kl_kernel<float>, static_cast<unsigned>(rows), distill_detail::threads, 0, stream,
      student, ld_s, teacher, ld_t, vocab, divergence == distill_divergence::reverse_kl, 1.0 / temperature, kl, grad,
      ld_g, row_scale);
  LMRL_CUDA_CHECK_LAUNCH("distill_detail::kl_kernel");
}

}  // namespace lmrl::cuda
