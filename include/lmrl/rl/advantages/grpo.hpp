// GRPO group-normalized advantages (DeepSeekMath; TRL GRPOTrainer, verl
// compute_grpo_outcome_advantage), with the scale options of TRL:
//
//   group_std (GRPO):      A_i = (r_i - mean_g) / (std_g + epsilon)
//   batch_std (TRL "batch", PPO-Lite): A_i = (r_i - mean_g) / (std_batch + epsilon)
//   none (Dr. GRPO):       A_i = r_i - mean_g
//
// A group whose scores are all equal gives exactly 0 (never NaN) and is counted
// in report.uniform_groups; a NaN score is missing (left out of mean and std,
// zero advantage), as TRL's nanmean/nanstd. group_size 1 follows verl: mean 0,
// std 1 (so A_i = r_i / (1 + epsilon)), and such a group is not "uniform".
#pragma once

#include <concepts>
#include <cstdint>

#include "lmrl/error.hpp"
#include "lmrl/rl/advantages/group_stats.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

enum class grpo_scale { group_std, batch_std, none };

namespace detail {

// Calls emit(i, A_i) for every sequence; the formula of the header comment.
template <class T, class Emit>
advantage_report grpo_for_each(const char* function, vector_view<const T> rewards, index_t group_size,
                               grpo_scale scale, double epsilon, bool unbiased_std, Emit&& emit) {
  const index_t batch = rewards.shape[0];
  require_group_size(function, batch, group_size);
  require_epsilon(function, "epsilon", epsilon);
  advantage_report report;
  report.missing_scores = require_scores(function, "rewards", rewards);
  report.groups = batch / group_size;

  double batch_std = 1;  // std of every score of the batch (TRL nanstd(rewards))
  if (scale == grpo_scale::batch_std) {
    const group_moments all = moments_of_group(rewards, 0, batch, unbiased_std);
    if (all.count >= 2) batch_std = all.std();
  }
  const bool single = group_size == 1;  // verl: mean 0, std 1
  for (index_t first = 0; first < batch; first += group_size) {
    const group_moments g = moments_of_group(rewards, first, group_size, unbiased_std);
    const bool uniform = !single && g.uniform;
    report.uniform_groups += uniform;
    const double mean = single ? 0.0 : g.mean;
    const double std = scale == grpo_scale::group_std ? (single ? 1.0 : g.std()) : batch_std;
    for (index_t i = first; i < first + group_size; ++i) {
      const T r = rewards(i);
      double a = 0;
      if (!uniform && !is_missing(r)) a = scale == grpo_scale::none ? r - mean : (r - mean) / (std + epsilon);
      emit(i, a);
    }
  }
  return report;
}

}  // namespace detail

// One advantage per sequence: out[i] = A_i.
template <Real T>
advantage_report grpo_sequence_advantages(vector_view<const T> rewards, index_t group_size, grpo_scale scale,
                                          vector_view<T> out, double epsilon = 1e-4, bool unbiased_std = true) {
  detail::require_same_shape("grpo_sequence_advantages", "rewards", rewards, "out", out);
  return detail::grpo_for_each("grpo_sequence_advantages", rewards, group_size, scale, epsilon, unbiased_std,
                               [&](index_t i, double a) { out(i) = static_cast<T>(a); });
}

template <Array1D R, WritableArray1D A>
  requires Real<element_t<A, 1>> && std::same_as<element_t<R, 1>, element_t<A, 1>>
advantage_report grpo_sequence_advantages(const R& rewards, index_t group_size, grpo_scale scale, A&& out,
                                          double epsilon = 1e-4, bool unbiased_std = true) {
  using T = element_t<A, 1>;
  return grpo_sequence_advantages<T>(vector_view<const T>(view<1>(rewards)), group_size, scale, view<1>(out), epsilon,
                                     unbiased_std);
}

// Convenience: the advantages in a new array of rewards' family.
template <Array1D R>
  requires Real<element_t<R, 1>>
auto grpo_sequence_advantages(const R& rewards, index_t group_size, grpo_scale scale = grpo_scale::group_std,
                              double epsilon = 1e-4, bool unbiased_std = true) {
  using T = element_t<R, 1>;
  const auto r = view<1>(rewards);
  auto out = make_like<R, T, 1>(r.shape);
  grpo_sequence_advantages<T>(vector_view<const T>(r), group_size, scale, view<1>(out), epsilon, unbiased_std);
  return out;
}

// flags[g] = 1 when group g carries no learning signal (all of its non-missing
// scores equal), else 0: DAPO's dynamic sampling drops these groups. Returns
// the number of flagged groups. group_size 1 is never flagged (verl baseline 0).
template <Real T, class F>
index_t uniform_group_flags(vector_view<const T> rewards, index_t group_size, vector_view<F> flags) {
  const char* function = "uniform_group_flags";
  detail::require_group_size(function, rewards.shape[0], group_size);
  detail::require_scores(function, "rewards", rewards);
  detail::require_extent(function, "flags", flags, 0, rewards.shape[0] / group_size, "the number of groups");
  index_t flagged = 0;
  for (index_t g = 0; g < flags.shape[0]; ++g) {
    const bool uniform = group_size > 1 && moments_of_group(rewards, g * group_size, group_size).uniform;
    flags(g) = static_cast<F>(uniform ? 1 : 0);
    flagged += uniform;
  }
  return flagged;
}

template <Array1D R, WritableArray1D F>
  requires Real<element_t<R, 1>>
index_t uniform_group_flags(const R& rewards, index_t group_size, F&& flags) {
  using T = element_t<R, 1>;
  return uniform_group_flags<T>(vector_view<const T>(view<1>(rewards)), group_size, view<1>(flags));
}

// The estimator as a struct (AdvantageEstimator): TRL's defaults.
struct grpo_advantage {
  grpo_scale scale = grpo_scale::group_std;  // TRL scale_rewards="group"; verl norm_adv_by_std_in_grpo=True
  double epsilon = 1e-4;                     // TRL 1e-4; verl 1e-6; OpenRLHF 1e-9
  bool unbiased_std = true;                  // torch.std, as TRL, verl and OpenRLHF

  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    const char* function = "grpo_advantage";
    detail::require_outcome_inputs(function, in, out);
    return detail::grpo_for_each(function, in.scores, in.group_size, scale, epsilon, unbiased_std,
                                 [&](index_t i, double a) { detail::broadcast_row(i, a, in.mask, out); });
  }
};

}  // namespace lmrl
