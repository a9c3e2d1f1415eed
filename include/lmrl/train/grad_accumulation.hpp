// Gradient accumulation: the gradient of a batch too big for one pass is the
// sum of its micro-batches' gradients, each of a loss scaled so that the sum
// is the big batch's loss:
//
//   L = sum_k s_k * L_k,   grad L = sum_k s_k * grad L_k
//
// With L_k the mean over the n_k items (sequences or tokens) of micro-batch k
// and N = sum_k n_k, s_k = n_k / N gives exactly the mean over the big batch
// (HF Trainer's num_items_in_batch path); s_k = 1 / K gives the mean of the
// micro-batch means (HF's loss / gradient_accumulation_steps), equal to it
// only when every n_k is the same.
//
// Then one optimizer step per K micro-batches, as HF's Trainer does it:
// clip_grad_norm_ (when max_grad_norm > 0), optimizer.step(), zero_grad().
#pragma once

#include <algorithm>
#include <cmath>
#include <span>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"
#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.hpp"

namespace lmrl {

// total += scale * micro, elementwise (in the element type).
template <Real T>
void accumulate_gradients(std::span<T> total, std::span<const T> micro, T scale = T(1)) {
  detail::require(total.size() == micro.size(), "accumulate_gradients: micro has ", micro.size(),
                  " elements but total has ", total.size());
  T* const t = total.data();
  const T* const g = micro.data();
  const index_t n = static_cast<index_t>(total.size());
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (n >= (index_t{1} << 16))
#endif
  for (index_t i = 0; i < n; ++i) t[i] = t[i] + scale * g[i];
}

// s_k = n_k / N: the loss scale of a micro-batch of micro_items items in a
// batch of total_items, so that the accumulated gradient is the big batch's mean.
inline double micro_batch_loss_scale(index_t micro_items, index_t total_items) {
  detail::require(total_items > 0, "micro_batch_loss_scale: total_items = ", total_items, " must be > 0");
  detail::require(micro_items >= 0 && micro_items <= total_items, "micro_batch_loss_scale: micro_items = ",
                  micro_items, " must be in [0, total_items = ", total_items, "]");
  return static_cast<double>(micro_items) / static_cast<double>(total_items);
}

// HF Trainer's optimizer step: clip the global gradient norm when
// max_grad_norm > 0 (HF default 1.0), step AdamW with this step's lr, zero
// the gradients. Returns the gradient norm before clipping (computed also
// when not clipping, for the log).
template <Real T>
double optimizer_step(adamw<T>& optimizer, std::span<T> params, std::span<T> grads, double lr,
                      double max_grad_norm = 1.0) {
  detail::require(!std::isnan(max_grad_norm), "optimizer_step: max_grad_norm is NaN");
  const double norm = max_grad_norm > 0 ? clip_grad_norm(grads, max_grad_norm)
                                        : l2_norm(std::span<const T>(grads));
  optimizer.step(params, std::span<const T>(grads), lr);
  std::fill(grads.begin(), grads.end(), T(0));
  return norm;
}

// Counts micro-batches into a caller-owned gradient buffer (the model's
// gradient array) and steps the optimizer every accumulation_steps of them.
//
//   gradient_accumulator<float> acc(grads, K);
//   for each micro-batch k:
//     either model.backward(..., loss_scale = s_k) adds into grads, then acc.count_micro_batch();
//     or     acc.add(micro_grads, s_k);
//     if (acc.ready()) norm = acc.step(optimizer, params, schedule.lr(base_lr, acc.optimizer_steps()));
template <Real T>
class gradient_accumulator {
 public:
  gradient_accumulator(std::span<T> grads, index_t accumulation_steps)
      : grads_(grads), steps_(accumulation_steps) {
    detail::require(accumulation_steps >= 1, "gradient_accumulator: accumulation_steps = ", accumulation_steps,
                    " must be >= 1");
  }

  // Adds scale * micro_grads into the buffer and counts one micro-batch.
  void add(std::span<const T> micro_grads, double scale) {
    require_room("add");
    accumulate_gradients(grads_, micro_grads, static_cast<T>(scale));
    ++count_;
  }
  // Counts a micro-batch whose gradient the caller already added into the buffer.
  void count_micro_batch() {
    require_room("count_micro_batch");
    ++count_;
  }

  index_t micro_batches() const { return count_; }
  index_t accumulation_steps() const { return steps_; }
  bool ready() const { return count_ == steps_; }
  // Optimizer steps taken so far (the scheduler step of the next one).
  index_t optimizer_steps() const { return updates_; }
  std::span<T> grads() const { return grads_; }

  // Clip, AdamW step, zero the buffer; only when ready(). Returns the
  // pre-clip gradient norm.
  double step(adamw<T>& optimizer, std::span<T> params, double lr, double max_grad_norm = 1.0) {
    detail::require(ready(), "gradient_accumulator::step: ", count_, " micro-batches accumulated but ", steps_,
                    " are needed for a step");
    const double norm = optimizer_step(optimizer, params, grads_, lr, max_grad_norm);
    count_ = 0;
    ++updates_;
    return norm;
  }

  // Drops what was accumulated (zero_grad) without stepping.
  void zero() {
    std::fill(grads_.begin(), grads_.end(), T(0));
    count_ = 0;
  }

 private:
  void require_room(const char* function) const {
    detail::require(count_ < steps_, "gradient_accumulator::", function, ": already holds ", count_,
                    " micro-batches of accumulation_steps = ", steps_, "; call step() first");
  }

  std::span<T> grads_;
  index_t steps_ = 1;
  index_t count_ = 0;
  index_t updates_ = 0;
};

}  // namespace lmrl
