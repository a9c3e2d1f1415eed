// ReMax (Li et al. 2023; verl compute_remax_outcome_advantage): the baseline of
// a sampled completion is the reward of the greedy completion of its prompt,
//
//   returns_{i,t} = sum_{s >= t} m_{i,s} r_{i,s}      (return-to-go, no discount)
//   A_{i,t}       = returns_{i,t} - b_i               on active tokens, 0 where masked
//
// With an outcome reward on the last active token, returns_{i,t} = r_i on every
// active token, so A_{i,t} = r_i - b_i broadcast. verl leaves the return-to-go
// at masked positions before the last active token (multi-turn observation
// tokens); lmrl writes 0 there, as on every masked position.
#pragma once

#include <cmath>
#include <concepts>

#include "lmrl/error.hpp"
#include "lmrl/rl/advantages/group_stats.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// Token-level ReMax: advantages and, when returns is not empty, the returns. A
// missing (NaN) baseline gives the row zero advantage; +-inf is an error.
template <Real T>
void remax_advantages(matrix_view<const T> token_rewards, vector_view<const T> baseline_scores,
                      matrix_view<const T> mask, matrix_view<T> advantages, matrix_view<T> returns = {}) {
  const char* function = "remax_advantages";
  detail::require_same_shape(function, "mask", mask, "token_rewards", token_rewards);
  detail::require_same_shape(function, "mask", mask, "advantages", advantages);
  if (returns.data != nullptr) detail::require_same_shape(function, "mask", mask, "returns", returns);
  detail::require_extent(function, "baseline_scores", baseline_scores, 0, mask.shape[0], "the number of rows of mask");
  detail::require_mask(function, "mask", mask);
  detail::require_finite_where(function, "token_rewards", token_rewards, mask);
  detail::require_scores(function, "baseline_scores", baseline_scores);
  for (index_t i = 0; i < mask.shape[0]; ++i) {
    const bool missing = is_missing(baseline_scores(i));  // no greedy reward: no advantage
    double to_go = 0;
    for (index_t t = mask.shape[1]; t-- > 0;) {
      const bool active = mask(i, t) != 0;
      if (active) to_go += token_rewards(i, t);
      if (returns.data != nullptr) returns(i, t) = active ? static_cast<T>(to_go) : T(0);
      advantages(i, t) = active && !missing ? static_cast<T>(to_go - baseline_scores(i)) : T(0);
    }
  }
}

template <Array2D R, Array1D B, Array2D M, WritableArray2D A>
  requires Real<element_t<A, 2>> && std::same_as<element_t<R, 2>, element_t<A, 2>> &&
           std::same_as<element_t<B, 1>, element_t<A, 2>> && std::same_as<element_t<M, 2>, element_t<A, 2>>
void remax_advantages(const R& token_rewards, const B& baseline_scores, const M& mask, A&& advantages) {
  using T = element_t<A, 2>;
  remax_advantages<T>(matrix_view<const T>(view<2>(token_rewards)), vector_view<const T>(view<1>(baseline_scores)),
                      matrix_view<const T>(view<2>(mask)), view<2>(advantages));
}

// Sequence-level ReMax: out[i] = r_i - b_i; a missing (NaN) r_i or b_i gives 0.
template <Real T>
advantage_report remax_sequence_advantages(vector_view<const T> scores, vector_view<const T> baseline_scores,
                                           vector_view<T> out) {
  const char* function = "remax_sequence_advantages";
  detail::require_same_shape(function, "scores", scores, "baseline_scores", baseline_scores);
  detail::require_same_shape(function, "scores", scores, "out", out);
  advantage_report report;
  report.missing_scores = detail::require_scores(function, "scores", scores);
  detail::require_scores(function, "baseline_scores", baseline_scores);
  report.groups = scores.shape[0];
  for (index_t i = 0; i < scores.shape[0]; ++i) {
    const bool missing = is_missing(scores(i)) || is_missing(baseline_scores(i));
    out(i) = missing ? T(0) : static_cast<T>(static_cast<double>(scores(i)) - baseline_scores(i));
  }
  return report;
}

template <Array1D S, Array1D B, WritableArray1D A>
  requires Real<element_t<A, 1>> && std::same_as<element_t<S, 1>, element_t<A, 1>> &&
           std::same_as<element_t<B, 1>, element_t<A, 1>>
advantage_report remax_sequence_advantages(const S& scores, const B& baseline_scores, A&& out) {
  using T = element_t<A, 1>;
  return remax_sequence_advantages<T>(vector_view<const T>(view<1>(scores)),
                                      vector_view<const T>(view<1>(baseline_scores)), view<1>(out));
}

// ReMax as a struct (AdvantageEstimator): needs in.baseline_scores; uses
// in.token_rewards when given, else the scores (A = r_i - b_i broadcast). With
// scores, a missing (NaN) score or baseline gives 0.
struct remax_advantage {
  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    const char* function = "remax_advantage";
    detail::require(in.baseline_scores.data != nullptr || in.mask.shape[0] == 0, function,
                    ": baseline_scores (the reward of the greedy completion) are not given");
    if (in.token_rewards.data != nullptr) {
      remax_advantages<T>(in.token_rewards, in.baseline_scores, in.mask, out);
      return advantage_report{in.mask.shape[0], 0, 0};
    }
    detail::require_outcome_inputs(function, in, out);
    detail::require_extent(function, "baseline_scores", in.baseline_scores, 0, in.mask.shape[0],
                           "the number of rows of mask");
    advantage_report report;
    report.groups = in.mask.shape[0];
    report.missing_scores = detail::require_scores(function, "scores", in.scores);
    detail::require_scores(function, "baseline_scores", in.baseline_scores);
    for (index_t i = 0; i < in.mask.shape[0]; ++i) {
      const bool missing = is_missing(in.scores(i)) || is_missing(in.baseline_scores(i));
      detail::broadcast_row(i, missing ? 0.0 : static_cast<double>(in.scores(i)) - in.baseline_scores(i), in.mask,
                            out);
    }
    return report;
  }
};

}  // namespace lmrl
