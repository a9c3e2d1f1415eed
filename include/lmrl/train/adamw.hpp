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
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

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
  return {1 - lr * c.weight_decay, lr / bias_correction1, std::pow(bias_correction2, 0.5)};
}

}  // namespace detail

// One AdamW step on contiguous arrays (the algorithm, written once). step is
// the step number after incrementing (1 for the first step); segments say
// which elements get weight decay (detail::adamw_segments).
template <Real T>
void adamw_update(std::span<T> params, std::span<const T> grads, std::span<T> exp_avg, std::span<T> exp_avg_sq,
                  std::int64_t step, double lr, const adamw_config& c,
                  const std::vector<detail::adamw_segment>& segments) {
  const auto s = detail::adamw_step_scalars(c, lr, step);
  // As torch's kernels do: Python doubles become element-type scalars.
  const T decay_factor = static_cast<T>(s.decay_factor);
  const bool decay_on = c.weight_decay != 0;  // torch skips the multiply when weight_decay == 0
  const T lerp_weight = static_cast<T>(1 - c.beta1);
  const bool lerp_small = std::abs(lerp_weight) < T(0.5);
  const T lerp_complement = T(1) - lerp_weight;
  const T beta2 = static_cast<T>(c.beta2);
  const T one_minus_beta2 = static_cast<T>(1 - c.beta2);
  const T bc2_sqrt = static_cast<T>(s.bias_correction2_sqrt);
  const T eps = static_cast<T>(c.eps);
  const T neg_step_size = static_cast<T>(-s.step_size);
  T* const p = params.data();
  const T* const g = grads.data();
  T* const m = exp_avg.data();
  T* const v = exp_avg_sq.data();
  [[maybe_unused]] const index_t n = static_cast<index_t>(params.size());

#if defined(_OPENMP)
#pragma omp parallel if (n >= (index_t{1} << 16))
#endif
  for (const auto& segment : segments) {
    const bool decay = decay_on && segment.decay;
#if defined(_OPENMP)
#pragma omp for schedule(static) nowait
#endif
    for (index_t i = segment.begin; i < segment.end; ++i) {
      const T gi = g[i];
      T pi = p[i];
      if (decay) pi = pi * decay_factor;
      // exp_avg.lerp_(grad, 1 - beta1), with ATen's two branches of lerp
      const T mi = lerp_small ? m[i] + lerp_weight * (gi - m[i]) : gi - (gi - m[i]) * lerp_complement;
      // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
      const T vi = v[i] * beta2 + one_minus_beta2 * gi * gi;
      // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
      const T denom = std::sqrt(vi) / bc2_sqrt + eps;
      // param.addcdiv_(exp_avg, denom, value=-step_size)
      p[i] = pi + neg_step_size * mi / denom;
      m[i] = mi;
      v[i] = vi;
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
