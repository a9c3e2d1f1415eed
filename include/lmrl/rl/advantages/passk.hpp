// Pass@k / best-of-group advantage (Chen et al. 2025, arXiv 2503.19595; verl
// compute_grpo_passk_outcome_advantage): only the best completion of each group
// gets a non-zero advantage, the margin by which it beats the runner-up,
//
//   A_{argmax} = (r_max - r_second) / (std_g + epsilon)   (or without / (std_g + epsilon))
//   A_i = 0 for every other i
//
// std_g is the unbiased group std (torch.std). Missing (NaN) scores are left
// out; a group with fewer than 2 scores or all equal gives 0. Ties for the
// best give 0 (the margin is 0), whichever one is "the best". group_size must
// be at least 2, as verl requires.
#pragma once

#include <concepts>

#include "lmrl/error.hpp"
#include "lmrl/rl/advantages/group_stats.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {
namespace detail {

template <class T, class Emit>
advantage_report passk_for_each(const char* function, vector_view<const T> rewards, index_t group_size,
                                bool norm_by_std, double epsilon, Emit&& emit) {
  const index_t batch = rewards.shape[0];
  require_group_size(function, batch, group_size);
  require(group_size >= 2, function, ": group_size = ", group_size, " but pass@k needs at least 2 samples per group");
  require_epsilon(function, "epsilon", epsilon);
  advantage_report report;
  report.missing_scores = require_scores(function, "rewards", rewards);
  report.groups = batch / group_size;
  for (index_t first = 0; first < batch; first += group_size) {
    const group_moments g = moments_of_group(rewards, first, group_size);
    report.uniform_groups += g.uniform;
    index_t best = -1;
    for (index_t i = first; i < first + group_size; ++i)
      if (!is_missing(rewards(i)) && (best < 0 || rewards(i) > rewards(best))) best = i;
    double second = 0;
    bool have_second = false;
    for (index_t i = first; i < first + group_size; ++i)
      if (i != best && !is_missing(rewards(i)) && (!have_second || rewards(i) > second)) {
        second = rewards(i);
        have_second = true;
      }
    double margin = 0;
    if (!g.uniform) {
      margin = rewards(best) - second;
      if (norm_by_std) margin /= g.std() + epsilon;
    }
    for (index_t i = first; i < first + group_size; ++i) emit(i, i == best ? margin : 0.0);
  }
  return report;
}

}  // namespace detail

template <Real T>
advantage_report passk_sequence_advantages(vector_view<const T> rewards, index_t group_size, vector_view<T> out,
                                           bool norm_by_std = true, double epsilon = 1e-6) {
  detail::require_same_shape("passk_sequence_advantages", "rewards", rewards, "out", out);
  return detail::passk_for_each("passk_sequence_advantages", rewards, group_size, norm_by_std, epsilon,
                                [&](index_t i, double a) { out(i) = static_cast<T>(a); });
}

template <Array1D R, WritableArray1D A>
  requires Real<element_t<A, 1>> && std::same_as<element_t<R, 1>, element_t<A, 1>>
advantage_report passk_sequence_advantages(const R& rewards, index_t group_size, A&& out, bool norm_by_std = true,
                                           double epsilon = 1e-6) {
  using T = element_t<A, 1>;
  return passk_sequence_advantages<T>(vector_view<const T>(view<1>(rewards)), group_size, view<1>(out), norm_by_std,
                                      epsilon);
}

// The estimator as a struct (AdvantageEstimator).
struct passk_advantage {
  bool norm_adv_by_std_in_grpo = true;  // verl's name and default
  double epsilon = 1e-6;                // verl's default

  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    const char* function = "passk_advantage";
    detail::require_outcome_inputs(function, in, out);
    return detail::passk_for_each(function, in.scores, in.group_size, norm_adv_by_std_in_grpo, epsilon,
                                  [&](index_t i, double a) { detail::broadcast_row(i, a, in.mask, out); });
  }
};

}  // namespace lmrl
