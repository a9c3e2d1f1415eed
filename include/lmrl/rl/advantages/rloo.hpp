// RLOO, REINFORCE leave-one-out (Ahmadian et al. 2024; verl
// compute_rloo_outcome_advantage): each sequence's baseline is the mean of the
// other scores of its group,
//
//   A_i = r_i - (1 / (n - 1)) sum_{j != i} r_j        ( = n / (n - 1) (r_i - mean_g) )
//
// n counts the group's non-missing scores. group_size 1 follows verl: no
// baseline, A_i = r_i. A group with fewer than 2 scores, or all equal, gives 0.
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
advantage_report rloo_for_each(const char* function, vector_view<const T> rewards, index_t group_size, Emit&& emit) {
  const index_t batch = rewards.shape[0];
  require_group_size(function, batch, group_size);
  advantage_report report;
  report.missing_scores = require_scores(function, "rewards", rewards);
  report.groups = batch / group_size;
  for (index_t first = 0; first < batch; first += group_size) {
    const group_moments g = moments_of_group(rewards, first, group_size);
    const bool uniform = group_size > 1 && g.uniform;
    report.uniform_groups += uniform;
    for (index_t i = first; i < first + group_size; ++i) {
      const T r = rewards(i);
      double a = 0;
      if (is_missing(r) || uniform) {
        a = 0;
      } else if (group_size == 1) {
        a = r;
      } else {
        const double baseline = (g.sum - r) / static_cast<double>(g.count - 1);  // mean of the others
        a = r - baseline;
      }
      emit(i, a);
    }
  }
  return report;
}

}  // namespace detail

template <Real T>
advantage_report rloo_sequence_advantages(vector_view<const T> rewards, index_t group_size, vector_view<T> out) {
  detail::require_same_shape("rloo_sequence_advantages", "rewards", rewards, "out", out);
  return detail::rloo_for_each("rloo_sequence_advantages", rewards, group_size,
                               [&](index_t i, double a) { out(i) = static_cast<T>(a); });
}

template <Array1D R, WritableArray1D A>
  requires Real<element_t<A, 1>> && std::same_as<element_t<R, 1>, element_t<A, 1>>
advantage_report rloo_sequence_advantages(const R& rewards, index_t group_size, A&& out) {
  using T = element_t<A, 1>;
  return rloo_sequence_advantages<T>(vector_view<const T>(view<1>(rewards)), group_size, view<1>(out));
}

// Convenience: the advantages in a new array of rewards' family.
template <Array1D R>
  requires Real<element_t<R, 1>>
auto rloo_sequence_advantages(const R& rewards, index_t group_size) {
  using T = element_t<R, 1>;
  const auto r = view<1>(rewards);
  auto out = make_like<R, T, 1>(r.shape);
  rloo_sequence_advantages<T>(vector_view<const T>(r), group_size, view<1>(out));
  return out;
}

// The estimator as a struct (AdvantageEstimator). RLOO has no hyper-parameter.
struct rloo_advantage {
  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    const char* function = "rloo_advantage";
    detail::require_outcome_inputs(function, in, out);
    return detail::rloo_for_each(function, in.scores, in.group_size,
                                 [&](index_t i, double a) { detail::broadcast_row(i, a, in.mask, out); });
  }
};

}  // namespace lmrl
