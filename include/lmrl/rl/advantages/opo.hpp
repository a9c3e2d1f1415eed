// OPO, on-policy RL with the optimal (length-weighted) baseline (Hao et al.
// 2025; verl compute_opo_outcome_advantage):
//
//   b_g = sum_{j in g} |o_j| r_j / sum_{j in g} |o_j|,   A_i = r_i - b_g
//
// |o_j| = sum_t m[j, t] is the completion length. Missing (NaN) scores are left
// out of both sums. group_size 1 follows verl: b = 0, A_i = r_i. A group whose
// scores are all equal, or whose scored completions are all empty, gives 0.
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

template <class T>
double sequence_length(matrix_view<const T> mask, index_t i) {
  double n = 0;
  for (index_t t = 0; t < mask.shape[1]; ++t) n += mask(i, t);
  return n;
}

template <class T, class Emit>
advantage_report opo_for_each(const char* function, vector_view<const T> rewards, matrix_view<const T> mask,
                              index_t group_size, Emit&& emit) {
  const index_t batch = rewards.shape[0];
  require_extent(function, "rewards", rewards, 0, mask.shape[0], "the number of rows of mask");
  require_mask(function, "mask", mask);
  require_group_size(function, batch, group_size);
  advantage_report report;
  report.missing_scores = require_scores(function, "rewards", rewards);
  report.groups = batch / group_size;
  for (index_t first = 0; first < batch; first += group_size) {
    double weighted = 0, total_length = 0;
    for (index_t j = first; j < first + group_size; ++j) {
      if (is_missing(rewards(j))) continue;
      const double length = sequence_length(mask, j);
      weighted += length * rewards(j);
      total_length += length;
    }
    const bool uniform = group_size > 1 && (moments_of_group(rewards, first, group_size).uniform || total_length == 0);
    report.uniform_groups += uniform;
    const double baseline = group_size == 1 || uniform ? 0.0 : weighted / total_length;
    for (index_t i = first; i < first + group_size; ++i) {
      const T r = rewards(i);
      emit(i, is_missing(r) || uniform ? 0.0 : r - baseline);
    }
  }
  return report;
}

}  // namespace detail

// One advantage per sequence; mask [B x T] gives the lengths |o_i|.
template <Real T>
advantage_report opo_sequence_advantages(vector_view<const T> rewards, matrix_view<const T> mask, index_t group_size,
                                         vector_view<T> out) {
  detail::require_same_shape("opo_sequence_advantages", "rewards", rewards, "out", out);
  return detail::opo_for_each("opo_sequence_advantages", rewards, mask, group_size,
                              [&](index_t i, double a) { out(i) = static_cast<T>(a); });
}

template <Array1D R, Array2D M, WritableArray1D A>
  requires Real<element_t<A, 1>> && std::same_as<element_t<R, 1>, element_t<A, 1>> &&
           std::same_as<element_t<M, 2>, element_t<A, 1>>
advantage_report opo_sequence_advantages(const R& rewards, const M& mask, index_t group_size, A&& out) {
  using T = element_t<A, 1>;
  return opo_sequence_advantages<T>(vector_view<const T>(view<1>(rewards)), matrix_view<const T>(view<2>(mask)),
                                    group_size, view<1>(out));
}

// The estimator as a struct (AdvantageEstimator). OPO has no hyper-parameter.
struct opo_advantage {
  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    const char* function = "opo_advantage";
    detail::require_outcome_inputs(function, in, out);
    return detail::opo_for_each(function, in.scores, in.mask, in.group_size,
                                [&](index_t i, double a) { detail::broadcast_row(i, a, in.mask, out); });
  }
};

}  // namespace lmrl
