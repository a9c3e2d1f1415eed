// GDPO / multi-reward normalize-then-sum (arXiv 2601.05242; TRL
// multi_objective_aggregation="normalize_then_sum", verl
// compute_gdpo_outcome_advantage): each reward component k (column k of
// reward_components [B x K]) is normalized within its group on its own, the
// normalized components are summed with weights, and the sum is normalized
// over the batch:
//
//   n_{i,k} = (r_{i,k} - mean_g(r_k)) / (std_g(r_k) + epsilon)
//   s_i     = sum_k w_k n_{i,k}
//   A_i     = (s_i - mean_batch(s)) / (std_batch(s) + epsilon)            (TRL, default)
//        or   masked_whiten(s broadcast over tokens)                        (verl)
//        or   s_i                                                          (none)
//
// Missing (NaN) components are left out of their statistics and of the sum
// (TRL nansum); a sequence with every component missing gets 0 and is left out
// of the batch statistics. A component that is uniform in a group contributes
// exactly 0 there. group_size 1 follows verl (mean 0, std 1).
#pragma once

#include <cmath>
#include <concepts>
#include <span>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/rl/advantages/group_stats.hpp"
#include "lmrl/rl/advantages/whiten.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

enum class gdpo_batch_norm {
  sequence,  // TRL: (s - nanmean(s)) / (nanstd(s) + epsilon) over sequences
  token,     // verl: masked_whiten over active tokens (token-weighted, + 1e-8 in the sqrt)
  none,      // only the per-group, per-component normalization
};

namespace detail {

template <class T>
struct gdpo_sum {
  matrix_view<const T> components;
  std::span<const double> weights;  // empty: all 1
  index_t group_size;
  double epsilon;

  vector_view<const T> column(index_t k) const {
    return {components.data + k * components.stride[1], {components.shape[0]}, {components.stride[0]}};
  }
  double weight(index_t k) const { return weights.empty() ? 1.0 : weights[static_cast<std::size_t>(k)]; }

  // s_i = sum_k w_k n_{i,k}; false when every component of i is missing.
  bool operator()(index_t i, double& s) const {
    const index_t first = i / group_size * group_size;
    bool scored = false;
    s = 0;
    for (index_t k = 0; k < components.shape[1]; ++k) {
      const T r = components(i, k);
      if (is_missing(r)) continue;
      scored = true;
      if (group_size == 1) {
        s += weight(k) * r / (1.0 + epsilon);
        continue;
      }
      const group_moments g = moments_of_group(column(k), first, group_size);
      if (!g.uniform) s += weight(k) * (r - g.mean) / (g.std() + epsilon);
    }
    return scored;
  }
};

template <class T>
advantage_report check_gdpo(const char* function, matrix_view<const T> components, std::span<const double> weights,
                            index_t group_size, double epsilon) {
  require_group_size(function, components.shape[0], group_size);
  require_epsilon(function, "epsilon", epsilon);
  require(weights.empty() || static_cast<index_t>(weights.size()) == components.shape[1], function, ": ",
          weights.size(), " weights for ", components.shape[1], " reward components");
  for (std::size_t k = 0; k < weights.size(); ++k)
    require(std::isfinite(weights[k]), function, ": weights[", k, "] = ", weights[k], " is not finite");
  advantage_report report;
  report.groups = components.shape[0] / group_size;
  for (index_t i = 0; i < components.shape[0]; ++i)
    for (index_t k = 0; k < components.shape[1]; ++k) {
      const T r = components(i, k);
      if (is_missing(r)) {
        ++report.missing_scores;
      } else if (!std::isfinite(r)) {
        fail(function, ": reward_components(", i, ", ", k, ") = ", static_cast<double>(r), " is infinite");
      }
    }
  for (index_t first = 0; first < components.shape[0] && group_size > 1; first += group_size) {
    const gdpo_sum<T> sum{components, weights, group_size, epsilon};
    bool uniform = true;
    for (index_t k = 0; k < components.shape[1]; ++k) uniform = uniform && moments_of_group(sum.column(k), first, group_size).uniform;
    report.uniform_groups += uniform;
  }
  return report;
}

// Calls emit(i, A_i, scored) with the sequence-normalized (or raw) sums.
template <class T, class Emit>
void gdpo_sequence_for_each(const gdpo_sum<T>& sum, bool normalize, Emit&& emit) {
  const index_t batch = sum.components.shape[0];
  double mean = 0, scale = 1;
  bool degenerate = false;
  if (normalize) {
    index_t count = 0;
    double total = 0, first_value = 0, s = 0;
    bool all_equal = true;
    for (index_t i = 0; i < batch; ++i)
      if (sum(i, s)) {
        if (count == 0) first_value = s;
        all_equal = all_equal && s == first_value;
        total += s;
        ++count;
      }
    degenerate = count < 2 || all_equal;  // TRL: nanstd is NaN or 0 -> advantage 0
    if (!degenerate) {
      mean = total / static_cast<double>(count);
      double squares = 0;
      for (index_t i = 0; i < batch; ++i)
        if (sum(i, s)) squares += (s - mean) * (s - mean);
      scale = std::sqrt(squares / static_cast<double>(count - 1)) + sum.epsilon;
    }
  }
  for (index_t i = 0; i < batch; ++i) {
    double s = 0;
    const bool scored = sum(i, s);
    emit(i, scored && !degenerate ? (s - mean) / scale : 0.0, scored);
  }
}

}  // namespace detail

// One advantage per sequence (batch_norm sequence or none; the token-level
// whitening needs a mask: use gdpo_advantage).
template <Real T>
advantage_report gdpo_sequence_advantages(matrix_view<const T> reward_components, std::span<const double> weights,
                                          index_t group_size, vector_view<T> out, double epsilon = 1e-4,
                                          gdpo_batch_norm batch_norm = gdpo_batch_norm::sequence) {
  const char* function = "gdpo_sequence_advantages";
  detail::require_extent(function, "out", out, 0, reward_components.shape[0], "the number of rows of reward_components");
  detail::require(batch_norm != gdpo_batch_norm::token, function,
                  ": batch_norm = token needs the mask; use gdpo_advantage with advantage_inputs");
  const auto report = detail::check_gdpo(function, reward_components, weights, group_size, epsilon);
  const detail::gdpo_sum<T> sum{reward_components, weights, group_size, epsilon};
  detail::gdpo_sequence_for_each(sum, batch_norm == gdpo_batch_norm::sequence,
                                 [&](index_t i, double a, bool) { out(i) = static_cast<T>(a); });
  return report;
}

template <Array2D C, WritableArray1D A>
  requires Real<element_t<A, 1>> && std::same_as<element_t<C, 2>, element_t<A, 1>>
advantage_report gdpo_sequence_advantages(const C& reward_components, std::span<const double> weights,
                                          index_t group_size, A&& out, double epsilon = 1e-4,
                                          gdpo_batch_norm batch_norm = gdpo_batch_norm::sequence) {
  using T = element_t<A, 1>;
  return gdpo_sequence_advantages<T>(matrix_view<const T>(view<2>(reward_components)), weights, group_size,
                                     view<1>(out), epsilon, batch_norm);
}

// GDPO as a struct (AdvantageEstimator): uses in.reward_components, or the
// scores as the only component when none are given.
struct gdpo_advantage {
  std::vector<double> reward_weights{};              // TRL reward_weights / verl gdpo_reward_weights; empty: all 1
  double epsilon = 1e-4;                             // TRL 1e-4; verl 1e-6
  gdpo_batch_norm batch_norm = gdpo_batch_norm::sequence;  // TRL; verl: token

  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    const char* function = "gdpo_advantage";
    detail::require_same_shape(function, "mask", in.mask, "out", out);
    detail::require_mask(function, "mask", in.mask);
    matrix_view<const T> components = in.reward_components;
    if (components.data == nullptr) {
      detail::require_extent(function, "scores", in.scores, 0, in.mask.shape[0], "the number of rows of mask");
      components = matrix_view<const T>(in.scores.data, {in.scores.shape[0], 1}, {in.scores.stride[0], 1});
    }
    detail::require_extent(function, "reward_components", components, 0, in.mask.shape[0],
                           "the number of rows of mask");
    const std::span<const double> weights(reward_weights);
    const auto report = detail::check_gdpo(function, components, weights, in.group_size, epsilon);
    const detail::gdpo_sum<T> sum{components, weights, in.group_size, epsilon};
    if (batch_norm != gdpo_batch_norm::token) {
      detail::gdpo_sequence_for_each(sum, batch_norm == gdpo_batch_norm::sequence,
                                     [&](index_t i, double a, bool) { detail::broadcast_row(i, a, in.mask, out); });
      return report;
    }
    // verl: broadcast the sums, then whiten over the active tokens of scored sequences.
    for (index_t i = 0; i < in.mask.shape[0]; ++i) {
      double s = 0;
      const bool scored = sum(i, s);
      detail::broadcast_row(i, scored ? s : 0.0, in.mask, out);
    }
    detail::masked_whiten_rows(function, matrix_view<const T>(out), in.mask, out, true, true, [&](index_t i) {
      double s = 0;
      return sum(i, s);
    });
    return report;
  }
};

}  // namespace lmrl
