// AdamW exactly as torch.optim.AdamW (foreach=False, fused=False,
// amsgrad=False, maximize=False), on one contiguous parameter buffer.
//
// Per element, at step t (counted from 1), with learning rate lr:
//
//   p   <- p * (1 - lr * weight_decay)          decoupled decay, before the update
//   m   <- m + (1 - beta1) * (g - m)            torch's exp_avg.lerp_(g, 1 - beta1)
//   v   <- beta2 * v + (1 - beta2) * g * g
//   p   <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// The scalars (bias corrections, step size) are computed in double as Python
// computes them in torch, then used in the element type, and the elementwise
// operations are done in the order torch's CPU kernels do them, so float
// buffers match torch's float32 AdamW to rounding and double buffers to ~1e-15.
//
// The model keeps all of its tensors in one buffer, so the optimizer sees
// one span of parameters and one of gradients; its state (exp_avg then
// exp_avg_sq) is one optimizer-owned buffer of twice that length, which a
// checkpoint saves and restores as plain arrays with the step count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#if defined(__SSE2__) || defined(__AVX__)
#include <immintrin.h>  // the square-root instructions of detail::sqrt_block
#endif

#include "lmrl/error.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"
#include "lmrl/train/rounded.hpp"

namespace lmrl {

// Hyper-parameters under torch.optim.AdamW's names (HF TrainingArguments calls
// them learning_rate, adam_beta1, adam_beta2, adam_epsilon, weight_decay).
struct adamw_config {
  double lr = 1e-3;            // torch default; HF TrainingArguments 5e-5, TRL GRPOConfig 1e-6
  double beta1 = 0.9;          // torch and HF default
  double beta2 = 0.999;        // torch and HF default
  double eps = 1e-8;           // torch and HF default
  double weight_decay = 1e-2;  // torch.optim.AdamW default; HF TrainingArguments / TRL default 0.0

  // torch's own checks in AdamW.__init__.
  void validate(const char* function = "adamw") const {
    detail::require(lr >= 0, function, ": lr = ", lr, " must be >= 0");
    detail::require(eps >= 0, function, ": eps = ", eps, " must be >= 0");
    detail::require(beta1 >= 0 && beta1 < 1, function, ": beta1 = ", beta1, " must be in [0, 1)");
    detail::require(beta2 >= 0 && beta2 < 1, function, ": beta2 = ", beta2, " must be in [0, 1)");
    detail::require(weight_decay >= 0, function, ": weight_decay = ", weight_decay, " must be >= 0");
  }
};

// Elements [offset, offset + size) of the parameter buffer (one tensor, or
// several adjacent ones).
struct param_range {
  index_t offset = 0;
  index_t size = 0;
};

namespace detail {

// A stretch of the buffer with or without weight decay.
struct adamw_segment {
  index_t begin = 0;
  index_t end = 0;
  bool decay = true;
};

// Splits [0, size) into alternating decayed / undecayed segments. Ranges may
// be given in any order and may overlap or touch.
inline std::vector<adamw_segment> adamw_segments(index_t size, std::vector<param_range> no_decay) {
  for (std::size_t k = 0; k < no_decay.size(); ++k) {
    const auto& r = no_decay[k];
    require(r.offset >= 0 && r.size >= 0 && r.offset + r.size <= size, "adamw: no_weight_decay[", k,
            "] = [", r.offset, ", ", r.offset + r.size, ") is outside the parameter buffer of ", size,
            " elements");
  }
  std::sort(no_decay.begin(), no_decay.end(),
            [](const param_range& a, const param_range& b) { return a.offset < b.offset; });
  std::vector<adamw_segment> segments;
  index_t at = 0;
  for (const auto& r : no_decay) {
    if (r.size == 0) continue;
    const index_t end = r.offset + r.size;
    if (r.offset > at) segments.push_back({at, r.offset, true});
    if (!segments.empty() && !segments.back().decay && segments.back().end >= r.offset) {
      segments.back().end = std::max(segments.back().end, end);  // overlapping or touching
    } else {
      segments.push_back({std::max(at, r.offset), end, false});
    }
    at = std::max(at, end);
  }
  if (at < size) segments.push_back({at, size, true});
  return segments;
}

// The scalars of one step, computed in double as torch computes them in Python.
struct adamw_scalars {
  double decay_factor;  // 1 - lr * weight_decay
  double step_size;     // lr / (1 - beta1^t)
  double bias_correction2_sqrt;
};

inline adamw_scalars adamw_step_scalars(const adamw_config& c, double lr, std::int64_t step) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1 - std::pow(c.beta1, t);
  const double bias_correction2 = 1 - std::pow(c.beta2, t);
  return {1 - rounded(lr * c.weight_decay), lr / bias_correction1, std::pow(bias_correction2, 0.5)};
}

}  // namespace detail

namespace detail {

// Square roots of N contiguous values in place. A loop that calls std::sqrt
// does not vectorize while math errno is on (the default: the call may set
// errno for a negative argument), so full blocks use the SSE/AVX square-root
// instructions, which round exactly as std::sqrt does.
template <class T, index_t N>
inline void sqrt_block(T* x) {
#if defined(__AVX__)
  if constexpr (std::is_same_v<T, float> && N % 8 == 0) {
    for (index_t j = 0; j < N; j += 8) _mm256_storeu_ps(x + j, _mm256_sqrt_ps(_mm256_loadu_ps(x + j)));
  } else if constexpr (std::is_same_v<T, double> && N % 4 == 0) {
    for (index_t j = 0; j < N; j += 4) _mm256_storeu_pd(x + j, _mm256_sqrt_pd(_mm256_loadu_pd(x + j)));
  } else {
    for (index_t j = 0; j < N; ++j) x[j] = std::sqrt(x[j]);
  }
#elif defined(__SSE2__)
  if constexpr (std::is_same_v<T, float> && N % 4 == 0) {
    for (index_t j = 0; j < N; j += 4) _mm_storeu_ps(x + j, _mm_sqrt_ps(_mm_loadu_ps(x + j)));
  } else if constexpr (std::is_same_v<T, double> && N % 2 == 0) {
    for (index_t j = 0; j < N; j += 2) _mm_storeu_pd(x + j, _mm_sqrt_pd(_mm_loadu_pd(x + j)));
  } else {
    for (index_t j = 0; j < N; ++j) x[j] = std::sqrt(x[j]);
  }
#else
  for (index_t j = 0; j < N; ++j) x[j] = std::sqrt(x[j]);
#endif
}

// The per-step constants, in the element type.
template <class T>
struct adamw_coefficients {
  T decay_factor, lerp_weight, lerp_complement, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size;
};

// The constants of step `step` at rate lr, as torch's kernels get them:
// the scalars in double (Python), then rounded to the element type.
template <class T>
adamw_coefficients<T> adamw_step_coefficients(const adamw_config& c, double lr, std::int64_t step) {
  const auto s = adamw_step_scalars(c, lr, step);
  const T lerp_weight = static_cast<T>(1 - c.beta1);
  return {static_cast<T>(s.decay_factor),
          lerp_weight,
          T(1) - lerp_weight,
          static_cast<T>(c.beta2),
          static_cast<T>(1 - c.beta2),
          static_cast<T>(s.bias_correction2_sqrt),
          static_cast<T>(c.eps),
          static_cast<T>(-s.step_size)};
}

// Which of ATen's two lerp formulas exp_avg.lerp_(grad, 1 - beta1) takes.
template <class T>
bool adamw_lerp_small(const adamw_coefficients<T>& k) {
  return std::abs(k.lerp_weight) < T(0.5);
}

inline constexpr index_t adamw_block_size = 64;

// The update of one block of len <= adamw_block_size elements. Full blocks
// have a compile-time trip count, so the three loops vectorize even at -O2;
// the choices (decay on this segment, lerp's branch) are template parameters
// so that the loops have no branch.
template <bool Decay, bool LerpSmall, bool Full, class T>
inline void adamw_block(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, index_t len,
                        const adamw_coefficients<T>& k) {
  constexpr index_t block = adamw_block_size;
  const index_t n = Full ? block : len;
  T root[block];
  for (index_t j = 0; j < n; ++j) {
    const T gj = g[j];
    // exp_avg.lerp_(grad, 1 - beta1), with ATen's two branches of lerp
    T mj;
    if constexpr (LerpSmall) {
      mj = m[j] + k.lerp_weight * (gj - m[j]);
    } else {
      mj = gj - (gj - m[j]) * k.lerp_complement;
    }
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    const T vj = v[j] * k.beta2 + k.one_minus_beta2 * gj * gj;
    m[j] = mj;
    v[j] = vj;
    root[j] = vj;
  }
  if constexpr (Full) {
    sqrt_block<T, block>(root);
  } else {
    for (index_t j = 0; j < n; ++j) root[j] = std::sqrt(root[j]);
  }
  for (index_t j = 0; j < n; ++j) {
    T pj = p[j];
    if constexpr (Decay) pj = pj * k.decay_factor;  // param.mul_(1 - lr * weight_decay), before the update
    // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    const T denom = root[j] / k.bc2_sqrt + k.eps;
    // param.addcdiv_(exp_avg, denom, value=-step_size)
    p[j] = pj + k.neg_step_size * m[j] / denom;
  }
}

// Elements [begin, end) in blocks, shared among the threads of the enclosing
// parallel region (elementwise: the result does not depend on the split).
template <bool Decay, bool LerpSmall, class T>
void adamw_segment_update(T* p, const T* g, T* m, T* v, index_t begin, index_t end, const adamw_coefficients<T>& k) {
  constexpr index_t block = adamw_block_size;
  const index_t blocks = (end - begin + block - 1) / block;
#if defined(_OPENMP)
#pragma omp for schedule(static) nowait
#endif
  for (index_t b = 0; b < blocks; ++b) {
    const index_t i = begin + b * block;
    const index_t len = std::min(block, end - i);
    if (len == block) {
      adamw_block<Decay, LerpSmall, true>(p + i, g + i, m + i, v + i, len, k);
    } else {
      adamw_block<Decay, LerpSmall, false>(p + i, g + i, m + i, v + i, len, k);
    }
  }
}

}  // namespace detail

// One AdamW step on contiguous arrays (the algorithm, written once). step is
// the step number after incrementing (1 for the first step); segments say
// which elements get weight decay (detail::adamw_segments).
template <Real T>
void adamw_update(std::span<T> params, std::span<const T> grads, std::span<T> exp_avg, std::span<T> exp_avg_sq,
                  std::int64_t step, double lr, const adamw_config& c,
                  const std::vector<detail::adamw_segment>& segments) {
  const auto k = detail::adamw_step_coefficients<T>(c, lr, step);
  const bool decay_on = c.weight_decay != 0;  // torch skips the multiply when weight_decay == 0
  const bool lerp_small = detail::adamw_lerp_small(k);
  T* const p = params.data();
  const T* const g = grads.data();
  T* const m = exp_avg.data();
  T* const v = exp_avg_sq.data();
  [[maybe_unused]] const index_t n = static_cast<index_t>(params.size());

  // One parallel region; each segment's blocks are shared among the threads.
#if defined(_OPENMP)
#pragma omp parallel if (n >= (index_t{1} << 16))
#endif
  for (const auto& segment : segments) {
    const bool decay = decay_on && segment.decay;
    const index_t b = segment.begin, e = segment.end;
    if (decay && lerp_small) {
      detail::adamw_segment_update<true, true>(p, g, m, v, b, e, k);
    } else if (decay) {
      detail::adamw_segment_update<true, false>(p, g, m, v, b, e, k);
    } else if (lerp_small) {
      detail::adamw_segment_update<false, true>(p, g, m, v, b, e, k);
    } else {
      detail::adamw_segment_update<false, false>(p, g, m, v, b, e, k);
    }
  }
}

// The optimizer: hyper-parameters, the ranges without weight decay, the step
// count and the moments of a parameter buffer of a fixed size.
template <Real T>
class adamw {
 public:
  // no_weight_decay: ranges of the buffer that get no weight decay (HF's
  // Trainer excludes biases and norm weights; see docs/training.md).
  explicit adamw(index_t size, adamw_config config = {}, std::vector<param_range> no_weight_decay = {})
      : config_(config), size_(size) {
    detail::require(size >= 0, "adamw: size = ", size, " must be >= 0");
    config_.validate();
    segments_ = detail::adamw_segments(size, std::move(no_weight_decay));
    state_.assign(2 * static_cast<std::size_t>(size), T(0));
  }

  // One step with config().lr.
  void step(std::span<T> params, std::span<const T> grads) { step(params, grads, config_.lr); }

  // One step with the learning rate of this step (a schedule's lr).
  void step(std::span<T> params, std::span<const T> grads, double lr) {
    check_buffer("params", params.size());
    check_buffer("grads", grads.size());
    detail::require(lr >= 0 && std::isfinite(lr), "adamw::step: lr = ", lr, " must be finite and >= 0");
    ++step_;
    adamw_update<T>(params, grads, exp_avg_span(), exp_avg_sq_span(), step_, lr, config_, segments_);
  }

  // Any contiguous 1-D array of T (Eigen vector, xtensor, std::vector).
  template <class P, class G>
    requires(WritableArray1D<P> && Array1D<G> && std::same_as<element_t<P, 1>, T> &&
             std::same_as<element_t<G, 1>, T>)
  void step(P&& params, const G& grads, double lr) {
    step(contiguous("params", view<1>(params)), contiguous("grads", view<1>(grads)), lr);
  }

  // Counts a step taken on another copy of the state (a device's: train/optimizer_step.hpp); the moments
  // here are behind that copy's until load_state() brings them back.
  void count_step_taken_elsewhere() { ++step_; }

  index_t size() const { return size_; }
  std::int64_t step_count() const { return step_; }
  const adamw_config& config() const { return config_; }
  void set_lr(double lr) {
    detail::require(lr >= 0, "adamw::set_lr: lr = ", lr, " must be >= 0");
    config_.lr = lr;
  }
  const std::vector<detail::adamw_segment>& segments() const { return segments_; }

  // The state as plain arrays: exp_avg then exp_avg_sq, 2 * size() elements.
  std::span<const T> state() const { return state_; }
  std::span<const T> exp_avg() const { return std::span<const T>(state_).first(static_cast<std::size_t>(size_)); }
  std::span<const T> exp_avg_sq() const {
    return std::span<const T>(state_).last(static_cast<std::size_t>(size_));
  }

  // Restores a saved state (a checkpoint): the step count and both moments.
  void load_state(std::int64_t step, std::span<const T> exp_avg, std::span<const T> exp_avg_sq) {
    detail::require(step >= 0, "adamw::load_state: step = ", step, " must be >= 0");
    check_buffer("exp_avg", exp_avg.size());
    check_buffer("exp_avg_sq", exp_avg_sq.size());
    std::copy(exp_avg.begin(), exp_avg.end(), state_.begin());
    std::copy(exp_avg_sq.begin(), exp_avg_sq.end(), state_.begin() + size_);
    step_ = step;
  }
  void load_state(std::int64_t step, std::span<const T> state) {
    detail::require(static_cast<index_t>(state.size()) == 2 * size_, "adamw::load_state: state has ",
                    state.size(), " elements but 2 * size = ", 2 * size_);
    load_state(step, state.first(static_cast<std::size_t>(size_)), state.last(static_cast<std::size_t>(size_)));
  }

  // Back to step 0 with zero moments (torch's state before the first step).
  void reset() {
    std::fill(state_.begin(), state_.end(), T(0));
    step_ = 0;
  }

 private:
  void check_buffer(const char* name, std::size_t n) const {
    detail::require(static_cast<index_t>(n) == size_, "adamw: ", name, " has ", n,
                    " elements but the optimizer was made for ", size_);
  }
  template <class E>
  static std::span<E> contiguous(const char* name, strided_view<E, 1> x) {
    detail::require(x.shape[0] <= 1 || x.stride[0] == 1, "adamw::step: ", name, " has stride ", x.stride[0],
                    " but the optimizer needs a contiguous buffer");
    return std::span<E>(x.data, static_cast<std::size_t>(x.shape[0]));
  }
  std::span<T> exp_avg_span() { return std::span<T>(state_).first(static_cast<std::size_t>(size_)); }
  std::span<T> exp_avg_sq_span() { return std::span<T>(state_).last(static_cast<std::size_t>(size_)); }

  adamw_config config_;
  index_t size_ = 0;
  std::vector<detail::adamw_segment> segments_;
  std::vector<T> state_;
  std::int64_t step_ = 0;
};

}  // namespace lmrl
