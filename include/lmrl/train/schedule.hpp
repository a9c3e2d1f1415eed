// Learning-rate schedules as Hugging Face transformers defines them
// (transformers/optimization.py): each is a multiplier of the base learning
// rate as a function of the scheduler step, lr = base_lr * multiplier(step),
// which is what torch's LambdaLR computes. The arithmetic is the same
// double-precision operations in the same order, so the numbers are the same
// bits as transformers' on the same machine.
//
// Step counting as in HF's Trainer: the scheduler is stepped after each
// optimizer step, so optimizer step t (t = 1, 2, ...) uses multiplier(t - 1);
// with warmup the very first update has lr = 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <string_view>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"
#include "lmrl/train/rounded.hpp"

namespace lmrl {

namespace detail {
inline void require_schedule_steps(const char* function, index_t step, index_t num_warmup_steps,
                                   index_t num_training_steps = 0) {
  require(step >= 0, function, ": step = ", step, " must be >= 0");
  require(num_warmup_steps >= 0, function, ": num_warmup_steps = ", num_warmup_steps, " must be >= 0");
  require(num_training_steps >= 0, function, ": num_training_steps = ", num_training_steps, " must be >= 0");
}
}  // namespace detail

// get_constant_schedule: always 1.
inline double constant_schedule(index_t step) {
  detail::require_schedule_steps("constant_schedule", step, 0);
  return 1.0;
}

// get_constant_schedule_with_warmup: step / warmup during warmup, then 1.
inline double constant_schedule_with_warmup(index_t step, index_t num_warmup_steps) {
  detail::require_schedule_steps("constant_schedule_with_warmup", step, num_warmup_steps);
  if (step < num_warmup_steps)
    return static_cast<double>(step) / std::max(1.0, static_cast<double>(num_warmup_steps));
  return 1.0;
}

// get_linear_schedule_with_warmup: up linearly from 0 to 1 over the warmup,
// then down linearly to 0 at num_training_steps, and 0 after.
inline double linear_schedule_with_warmup(index_t step, index_t num_warmup_steps, index_t num_training_steps) {
  detail::require_schedule_steps("linear_schedule_with_warmup", step, num_warmup_steps, num_training_steps);
  if (step < num_warmup_steps)
    return static_cast<double>(step) / static_cast<double>(std::max<index_t>(1, num_warmup_steps));
  return std::max(0.0, static_cast<double>(num_training_steps - step) /
                           static_cast<double>(std::max<index_t>(1, num_training_steps - num_warmup_steps)));
}

// get_cosine_schedule_with_warmup (min_lr_rate = 0) and
// get_cosine_with_min_lr_schedule_with_warmup (min_lr_rate > 0): after the
// warmup, 0.5 * (1 + cos(pi * num_cycles * 2 * progress)), rescaled into
// [min_lr_rate, 1]. num_cycles = 0.5 is one half-cosine from 1 down to 0
// (min_lr_rate) at num_training_steps; past it the cosine comes back up, as in HF.
inline double cosine_schedule_with_warmup(index_t step, index_t num_warmup_steps, index_t num_training_steps,
                                          double num_cycles = 0.5, double min_lr_rate = 0.0) {
  detail::require_schedule_steps("cosine_schedule_with_warmup", step, num_warmup_steps, num_training_steps);
  detail::require(std::isfinite(num_cycles) && num_cycles >= 0, "cosine_schedule_with_warmup: num_cycles = ",
                  num_cycles, " must be finite and >= 0");
  detail::require(min_lr_rate >= 0 && min_lr_rate <= 1, "cosine_schedule_with_warmup: min_lr_rate = ", min_lr_rate,
                  " must be in [0, 1]");
  if (step < num_warmup_steps)
    return static_cast<double>(step) / static_cast<double>(std::max<index_t>(1, num_warmup_steps));
  const double progress = static_cast<double>(step - num_warmup_steps) /
                          static_cast<double>(std::max<index_t>(1, num_training_steps - num_warmup_steps));
  // Python evaluates math.pi * float(num_cycles) * 2.0 * progress left to right.
  double factor = 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress));
  factor = detail::rounded(factor * (1 - min_lr_rate)) + min_lr_rate;  // the identity when min_lr_rate == 0
  return std::max(0.0, factor);
}

// TrainingArguments.get_warmup_steps: warmup_steps >= 1 is a count
// (truncated), below 1 a fraction of num_training_steps (rounded up).
inline index_t warmup_steps_for(double warmup_steps, index_t num_training_steps) {
  detail::require(std::isfinite(warmup_steps) && warmup_steps >= 0, "warmup_steps_for: warmup_steps = ",
                  warmup_steps, " must be finite and >= 0");
  detail::require(num_training_steps >= 0, "warmup_steps_for: num_training_steps = ", num_training_steps,
                  " must be >= 0");
  if (warmup_steps >= 1) return static_cast<index_t>(warmup_steps);
  return static_cast<index_t>(std::ceil(static_cast<double>(num_training_steps) * warmup_steps));
}

// A schedule as a value, named as HF's SchedulerType (lr_scheduler_type).
struct lr_schedule {
  enum class kind { constant, constant_with_warmup, linear, cosine, cosine_with_min_lr };
  kind type = kind::linear;       // HF TrainingArguments default lr_scheduler_type = "linear"
  index_t num_warmup_steps = 0;   // HF default warmup_steps = 0
  index_t num_training_steps = 0;
  double num_cycles = 0.5;        // HF default (a half cosine)
  double min_lr_rate = 0.0;       // only for cosine_with_min_lr (HF's lr_scheduler_kwargs)

  double multiplier(index_t step) const {
    switch (type) {
      case kind::constant:
        return constant_schedule(step);
      case kind::constant_with_warmup:
        return constant_schedule_with_warmup(step, num_warmup_steps);
      case kind::linear:
        return linear_schedule_with_warmup(step, num_warmup_steps, num_training_steps);
      case kind::cosine:
        return cosine_schedule_with_warmup(step, num_warmup_steps, num_training_steps, num_cycles);
      case kind::cosine_with_min_lr:
        return cosine_schedule_with_warmup(step, num_warmup_steps, num_training_steps, num_cycles, min_lr_rate);
    }
    detail::fail("lr_schedule: unknown kind ", static_cast<int>(type));
  }
  // torch's LambdaLR: base_lr * lambda(step).
  double lr(double base_lr, index_t step) const { return base_lr * multiplier(step); }

  static kind kind_from_name(std::string_view name) {
    if (name == "constant") return kind::constant;
    if (name == "constant_with_warmup") return kind::constant_with_warmup;
    if (name == "linear") return kind::linear;
    if (name == "cosine") return kind::cosine;
    if (name == "cosine_with_min_lr") return kind::cosine_with_min_lr;
    detail::fail("lr_schedule: lr_scheduler_type \"", std::string(name),
                 "\" is not one of constant, constant_with_warmup, linear, cosine, cosine_with_min_lr");
  }
};

}  // namespace lmrl
