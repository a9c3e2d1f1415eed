// GPG, group policy gradient (Chu et al. 2025; verl compute_gpg_outcome_advantage):
//
//   A_i = alpha (r_i - mean_g) / f_norm,   alpha = B / max(1, M)
//
// M is the number of non-zero scores in the batch (verl: torch.count_nonzero of
// the sequence scores), so a batch with few rewarded completions gets a larger
// step. verl's alpha argument is overwritten by B / M, so lmrl does not take one.
// Missing (NaN) scores count neither in M nor in the mean and get 0; B counts
// every sequence, as verl's bsz. group_size 1 follows verl: mean 0. A group
// whose scores are all equal gives 0.
#pragma once

#include <algorithm>
#include <cmath>
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
advantage_report gpg_for_each(const char* function, vector_view<const T> rewards, index_t group_size, double f_norm,
                              Emit&& emit) {
  const index_t batch = rewards.shape[0];
  require_group_size(function, batch, group_size);
  require(std::isfinite(f_norm) && f_norm > 0, function, ": f_norm = ", f_norm, " must be finite and > 0");
  advantage_report report;
  report.missing_scores = require_scores(function, "rewards", rewards);
  report.groups = batch / group_size;
  index_t nonzero = 0;
  for (index_t i = 0; i < batch; ++i) nonzero += !is_missing(rewards(i)) && rewards(i) != 0;
  const double alpha = static_cast<double>(batch) / static_cast<double>(std::max<index_t>(1, nonzero));
  for (index_t first = 0; first < batch; first += group_size) {
    const group_moments g = moments_of_group(rewards, first, group_size);
    const bool uniform = group_size > 1 && g.uniform;
    report.uniform_groups += uniform;
    const double mean = group_size == 1 ? 0.0 : g.mean;
    for (index_t i = first; i < first + group_size; ++i) {
      const T r = rewards(i);
      emit(i, is_missing(r) || uniform ? 0.0 : alpha * (r - mean) / f_norm);
    }
  }
  return report;
}

}  // namespace detail

template <Real T>
advantage_report gpg_sequence_advantages(vector_view<const T> rewards, index_t group_size, vector_view<T> out,
                                         double f_norm = 1.0) {
  detail::require_same_shape("gpg_sequence_advantages", "rewards", rewards, "out", out);
  return detail::gpg_for_each("gpg_sequence_advantages", rewards, group_size, f_norm,
                              [&](index_t i, double a) { out(i) = static_cast<T>(a); });
}

template <Array1D R, WritableArray1D A>
  requires Real<element_t<A, 1>> && std::same_as<element_t<R, 1>, element_t<A, 1>>
advantage_report gpg_sequence_advantages(const R& rewards, index_t group_size, A&& out, double f_norm = 1.0) {
  using T = element_t<A, 1>;
  return gpg_sequence_advantages<T>(vector_view<const T>(view<1>(rewards)), group_size, view<1>(out), f_norm);
}

// The estimator as a struct (AdvantageEstimator).
struct gpg_advantage {
  double f_norm = 1.0;  // verl's default

  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    const char* function = "gpg_advantage";
    detail::require_outcome_inputs(function, in, out);
    return detail::gpg_for_each(function, in.scores, in.group_size, f_norm,
                                [&](index_t i, double a) { detail::broadcast_row(i, a, in.mask, out); });
  }
};

}  // namespace lmrl
