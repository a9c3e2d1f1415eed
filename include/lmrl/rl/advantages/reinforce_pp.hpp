// REINFORCE++ (Hu 2025, arXiv 2501.03262; verl
// compute_reinforce_plus_plus_outcome_advantage): the discounted return-to-go
// of the token rewards, whitened over the active tokens of the batch,
//
//   G_{i,t} = r_{i,t} + gamma G_{i,t+1}   on active tokens; a masked token is
//             skipped (G carries through it unchanged and its reward is ignored),
//             so the return restarts from 0 after the last active token (EOS)
//   A = masked_whiten(G, m)
//
// and REINFORCE++-baseline (verl compute_reinforce_plus_plus_baseline_outcome_advantage):
//
//   A_{i,t} = masked_whiten(r_i - mean_g)   broadcast over active tokens
//
// (group_size 1: mean 0, as verl). Whitening: unbiased variance, + 1e-8 (verl).
#pragma once

#include <cmath>
#include <concepts>

#include "lmrl/error.hpp"
#include "lmrl/rl/advantages/group_stats.hpp"
#include "lmrl/rl/advantages/token_rewards.hpp"
#include "lmrl/rl/advantages/whiten.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {
namespace detail {

// Return-to-go into returns; returns may alias token_rewards (each reward is
// read before the return at the same place is written). Rows with
// skip_row(i) get 0.
template <class T, class Skip>
void discounted_returns(matrix_view<const T> token_rewards, matrix_view<const T> mask, double gamma,
                        matrix_view<T> returns, Skip skip_row) {
  for (index_t i = 0; i < mask.shape[0]; ++i) {
    double running = 0;
    const bool skip = skip_row(i);
    for (index_t t = mask.shape[1]; t-- > 0;) {
      if (mask(i, t) != 0 && !skip) {
        running = token_rewards(i, t) + gamma * running;
        returns(i, t) = static_cast<T>(running);
      } else {
        returns(i, t) = T(0);
      }
    }
  }
}

inline void require_gamma(const char* function, const char* name, double gamma) {
  require(gamma >= 0 && gamma <= 1, function, ": ", name, " = ", gamma, " must be in [0, 1]");
}

}  // namespace detail

// Token-level REINFORCE++: advantages [B x T] and, when returns is not empty
// (data != nullptr), the undiscounted-by-whitening returns G.
template <Real T>
void reinforce_pp_advantages(matrix_view<const T> token_rewards, matrix_view<const T> mask, double gamma,
                             matrix_view<T> advantages, matrix_view<T> returns = {}, bool whiten = true) {
  const char* function = "reinforce_pp_advantages";
  detail::require_same_shape(function, "mask", mask, "token_rewards", token_rewards);
  detail::require_same_shape(function, "mask", mask, "advantages", advantages);
  if (returns.data != nullptr) detail::require_same_shape(function, "mask", mask, "returns", returns);
  detail::require_mask(function, "mask", mask);
  detail::require_finite_where(function, "token_rewards", token_rewards, mask);
  detail::require_gamma(function, "gamma", gamma);
  const auto all = [](index_t) { return true; };
  const auto none = [](index_t) { return false; };
  matrix_view<T> g = returns.data != nullptr ? returns : advantages;
  detail::discounted_returns(token_rewards, mask, gamma, g, none);
  if (whiten) {
    detail::masked_whiten_rows(function, matrix_view<const T>(g), mask, advantages, true, true, all);
  } else if (g.data != advantages.data) {
    for (index_t i = 0; i < mask.shape[0]; ++i)
      for (index_t t = 0; t < mask.shape[1]; ++t) advantages(i, t) = g(i, t);
  }
}

template <Array2D R, Array2D M, WritableArray2D A>
  requires Real<element_t<A, 2>> && std::same_as<element_t<R, 2>, element_t<A, 2>> &&
           std::same_as<element_t<M, 2>, element_t<A, 2>>
void reinforce_pp_advantages(const R& token_rewards, const M& mask, double gamma, A&& advantages) {
  using T = element_t<A, 2>;
  reinforce_pp_advantages<T>(matrix_view<const T>(view<2>(token_rewards)), matrix_view<const T>(view<2>(mask)), gamma,
                             view<2>(advantages));
}

template <Array2D R, Array2D M, WritableArray2D A, WritableArray2D G>
  requires Real<element_t<A, 2>> && std::same_as<element_t<R, 2>, element_t<A, 2>> &&
           std::same_as<element_t<M, 2>, element_t<A, 2>> && std::same_as<element_t<G, 2>, element_t<A, 2>>
void reinforce_pp_advantages(const R& token_rewards, const M& mask, double gamma, A&& advantages, G&& returns,
                             bool whiten = true) {
  using T = element_t<A, 2>;
  reinforce_pp_advantages<T>(matrix_view<const T>(view<2>(token_rewards)), matrix_view<const T>(view<2>(mask)), gamma,
                             view<2>(advantages), view<2>(returns), whiten);
}

// REINFORCE++-baseline: sequence scores centred by their group mean, broadcast
// over active tokens, whitened over the batch. A missing (NaN) score's row is
// left out of the group mean and of the whitening and gets 0.
template <Real T>
advantage_report reinforce_pp_baseline_advantages(vector_view<const T> scores, matrix_view<const T> mask,
                                                  index_t group_size, matrix_view<T> advantages) {
  const char* function = "reinforce_pp_baseline_advantages";
  detail::require_extent(function, "scores", scores, 0, mask.shape[0], "the number of rows of mask");
  detail::require_same_shape(function, "mask", mask, "advantages", advantages);
  detail::require_mask(function, "mask", mask);
  detail::require_group_size(function, mask.shape[0], group_size);
  advantage_report report;
  report.missing_scores = detail::require_scores(function, "scores", scores);
  report.groups = mask.shape[0] / group_size;
  for (index_t first = 0; first < mask.shape[0]; first += group_size) {
    const group_moments g = moments_of_group(scores, first, group_size);
    report.uniform_groups += group_size > 1 && g.uniform;
    const double mean = group_size == 1 ? 0.0 : g.mean;
    for (index_t i = first; i < first + group_size; ++i)
      detail::broadcast_row(i, is_missing(scores(i)) ? 0.0 : scores(i) - mean, mask, advantages);
  }
  detail::masked_whiten_rows(function, matrix_view<const T>(advantages), mask, advantages, true, true,
                             [&](index_t i) { return !is_missing(scores(i)); });
  return report;
}

template <Array1D S, Array2D M, WritableArray2D A>
  requires Real<element_t<A, 2>> && std::same_as<element_t<S, 1>, element_t<A, 2>> &&
           std::same_as<element_t<M, 2>, element_t<A, 2>>
advantage_report reinforce_pp_baseline_advantages(const S& scores, const M& mask, index_t group_size, A&& advantages) {
  using T = element_t<A, 2>;
  return reinforce_pp_baseline_advantages<T>(vector_view<const T>(view<1>(scores)), matrix_view<const T>(view<2>(mask)),
                                             group_size, view<2>(advantages));
}

// REINFORCE++ as a struct (AdvantageEstimator): uses in.token_rewards when
// given, else each score on its sequence's last active token. With scores, a
// missing score's row is left out of the whitening and gets 0.
struct reinforce_pp_advantage {
  double gamma = 1.0;  // verl algorithm.gamma default

  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    const char* function = "reinforce_pp_advantage";
    advantage_report report;
    report.groups = in.mask.shape[0] / (in.group_size > 0 ? in.group_size : 1);
    if (in.token_rewards.data != nullptr) {
      reinforce_pp_advantages<T>(in.token_rewards, in.mask, gamma, out);
      return report;
    }
    report.missing_scores = detail::require_outcome_inputs(function, in, out);
    detail::require_gamma(function, "gamma", gamma);
    scores_on_last_token(in.scores, in.mask, out);
    const auto missing = [&](index_t i) { return is_missing(in.scores(i)); };
    detail::discounted_returns(matrix_view<const T>(out), in.mask, gamma, out, missing);
    detail::masked_whiten_rows(function, matrix_view<const T>(out), in.mask, out, true, true,
                               [&](index_t i) { return !missing(i); });
    return report;
  }
};

// REINFORCE++-baseline as a struct (AdvantageEstimator); no hyper-parameter.
struct reinforce_pp_baseline_advantage {
  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    detail::require_outcome_inputs("reinforce_pp_baseline_advantage", in, out);
    return reinforce_pp_baseline_advantages<T>(in.scores, in.mask, in.group_size, out);
  }
};

}  // namespace lmrl
