// Generalized advantage estimation with returns (Schulman et al. 2016; verl
// compute_gae_advantage_return, from TRL's PPO trainer):
//
//   delta_t = r_t + gamma V_{t'} - V_t           t' = next active token (V = 0 past the last)
//   A_t     = delta_t + gamma lambda A_{t'}
//   returns_t = A_t + V_t                       (the critic's regression target)
//   advantages = masked_whiten(A, m)            (verl; whiten = false keeps A)
//
// Masked tokens are skipped (verl: "skip values and TD-error on observation
// tokens"): V and A carry through them. Their values are never read, and lmrl
// writes 0 at masked positions of both outputs (verl leaves the carried values).
#pragma once

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

// The backward recursion. advantages may alias token_rewards; returns may be empty.
template <class T, class Skip>
void gae_recursion(matrix_view<const T> token_rewards, matrix_view<const T> values, matrix_view<const T> mask,
                   double gamma, double lambda, matrix_view<T> advantages, matrix_view<T> returns, Skip skip_row) {
  for (index_t i = 0; i < mask.shape[0]; ++i) {
    const bool skip = skip_row(i);
    double next_value = 0, next_advantage = 0;
    for (index_t t = mask.shape[1]; t-- > 0;) {
      if (mask(i, t) != 0 && !skip) {
        const double value = values(i, t);
        const double delta = token_rewards(i, t) + gamma * next_value - value;
        next_advantage = delta + gamma * lambda * next_advantage;
        next_value = value;
        advantages(i, t) = static_cast<T>(next_advantage);
        if (returns.data != nullptr) returns(i, t) = static_cast<T>(next_advantage + value);
      } else {
        advantages(i, t) = T(0);
        if (returns.data != nullptr) returns(i, t) = T(0);
      }
    }
  }
}

inline void require_gae_parameters(const char* function, double gamma, double lambda) {
  require(gamma >= 0 && gamma <= 1, function, ": gamma = ", gamma, " must be in [0, 1]");
  require(lambda >= 0 && lambda <= 1, function, ": lam = ", lambda, " must be in [0, 1]");
}

}  // namespace detail

// advantages [B x T] and, when returns is not empty (data != nullptr), returns [B x T].
template <Real T>
void gae_advantages(matrix_view<const T> token_rewards, matrix_view<const T> values, matrix_view<const T> mask,
                    double gamma, double lambda, matrix_view<T> advantages, matrix_view<T> returns = {},
                    bool whiten = true) {
  const char* function = "gae_advantages";
  detail::require_same_shape(function, "mask", mask, "token_rewards", token_rewards);
  detail::require_same_shape(function, "mask", mask, "values", values);
  detail::require_same_shape(function, "mask", mask, "advantages", advantages);
  if (returns.data != nullptr) detail::require_same_shape(function, "mask", mask, "returns", returns);
  detail::require_mask(function, "mask", mask);
  detail::require_finite_where(function, "token_rewards", token_rewards, mask);
  detail::require_finite_where(function, "values", values, mask);
  detail::require_gae_parameters(function, gamma, lambda);
  const auto all = [](index_t) { return true; };
  detail::gae_recursion(token_rewards, values, mask, gamma, lambda, advantages, returns, [](index_t) { return false; });
  if (whiten) detail::masked_whiten_rows(function, matrix_view<const T>(advantages), mask, advantages, true, true, all);
}

template <Array2D R, Array2D V, Array2D M, WritableArray2D A, WritableArray2D G>
  requires Real<element_t<A, 2>> && std::same_as<element_t<R, 2>, element_t<A, 2>> &&
           std::same_as<element_t<V, 2>, element_t<A, 2>> && std::same_as<element_t<M, 2>, element_t<A, 2>> &&
           std::same_as<element_t<G, 2>, element_t<A, 2>>
void gae_advantages(const R& token_rewards, const V& values, const M& mask, double gamma, double lambda,
                    A&& advantages, G&& returns, bool whiten = true) {
  using T = element_t<A, 2>;
  gae_advantages<T>(matrix_view<const T>(view<2>(token_rewards)), matrix_view<const T>(view<2>(values)),
                    matrix_view<const T>(view<2>(mask)), gamma, lambda, view<2>(advantages), view<2>(returns), whiten);
}

// GAE as a struct (AdvantageEstimator): needs in.values; uses in.token_rewards
// when given, else each score on its sequence's last active token (a missing
// score's row is left out of the whitening and gets 0). The second operator()
// also writes the returns.
struct gae_advantage {
  double gamma = 1.0;   // verl algorithm.gamma default (TRL PPOConfig: 1.0)
  double lam = 1.0;     // verl algorithm.lam default (TRL PPOConfig: 0.95)
  bool whiten = true;   // verl always whitens GAE advantages

  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out) const {
    return (*this)(in, out, matrix_view<T>{});
  }

  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out, matrix_view<T> returns) const {
    const char* function = "gae_advantage";
    detail::require(in.values.data != nullptr || in.mask.shape[0] == 0, function, ": values (the critic's V) are not given");
    advantage_report report;
    report.groups = in.mask.shape[0] / (in.group_size > 0 ? in.group_size : 1);
    if (in.token_rewards.data != nullptr) {
      gae_advantages<T>(in.token_rewards, in.values, in.mask, gamma, lam, out, returns, whiten);
      return report;
    }
    report.missing_scores = detail::require_outcome_inputs(function, in, out);
    detail::require_same_shape(function, "mask", in.mask, "values", in.values);
    if (returns.data != nullptr) detail::require_same_shape(function, "mask", in.mask, "returns", returns);
    detail::require_finite_where(function, "values", in.values, in.mask);
    detail::require_gae_parameters(function, gamma, lam);
    const auto missing = [&](index_t i) { return is_missing(in.scores(i)); };
    scores_on_last_token(in.scores, in.mask, out);
    detail::gae_recursion(matrix_view<const T>(out), in.values, in.mask, gamma, lam, out, returns, missing);
    if (whiten)
      detail::masked_whiten_rows(function, matrix_view<const T>(out), in.mask, out, true, true,
                                 [&](index_t i) { return !missing(i); });
    return report;
  }
};

}  // namespace lmrl
