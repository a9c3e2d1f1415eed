// KL in the reward (PPO/REINFORCE++ style, verl algorithm.use_kl_in_reward):
//
//   token_rewards[i, t] = [t = last active token of i] * score_i - coef * kl[i, t]
//
// with kl a per-token estimator of the sampling policy's log-probs against the
// reference's (verl apply_kl_penalty), and coef from a KL controller: fixed, or
// adaptive (Ziegler et al. 2019, verl/OpenRLHF AdaptiveKLController):
//
//   e = clip(current_kl / target - 1, -0.2, 0.2),   coef <- coef * (1 + e * n_steps / horizon)
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <type_traits>

#include "lmrl/error.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/kl.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// A KL coefficient that may change with the observed KL.
template <class C>
concept KLController = requires(C& c, const C& cc, double current_kl, index_t n_steps) {
  { cc.value } -> std::convertible_to<double>;
  { c.update(current_kl, n_steps) };
};

// A constant coefficient (verl FixedKLController; kl_ctrl.kl_coef default 0.001).
struct fixed_kl_controller {
  double value = 0.001;  // verl algorithm.kl_ctrl.kl_coef
  void update(double /*current_kl*/, index_t /*n_steps*/) {}
};

// The adaptive controller of Ziegler et al. (verl, OpenRLHF, TRL's old PPOTrainer).
struct adaptive_kl_controller {
  double value = 0.001;     // current coefficient; verl kl_ctrl.kl_coef default
  double target = 0.1;      // verl kl_ctrl.target_kl default
  double horizon = 10000;   // verl kl_ctrl.horizon default

  adaptive_kl_controller() = default;
  adaptive_kl_controller(double init_kl_coef, double target_kl, double horizon_steps)
      : value(init_kl_coef), target(target_kl), horizon(horizon_steps) {
    validate();
  }

  void validate() const {
    constexpr const char* fn = "lmrl::adaptive_kl_controller";
    detail::require(std::isfinite(value) && value >= 0, fn, ": init_kl_coef = ", value,
                    " must be finite and non-negative");
    detail::require(std::isfinite(target) && target > 0, fn, ": target_kl = ", target, " must be positive");
    detail::require(std::isfinite(horizon) && horizon > 0, fn, ": horizon = ", horizon, " must be positive");
  }

  void update(double current_kl, index_t n_steps) {
    validate();
    detail::require(std::isfinite(current_kl), "lmrl::adaptive_kl_controller::update: current_kl = ", current_kl,
                    " is not finite");
    detail::require(n_steps >= 0, "lmrl::adaptive_kl_controller::update: n_steps = ", n_steps,
                    " must be non-negative");
    const double proportional_error = std::clamp(current_kl / target - 1, -0.2, 0.2);
    value *= 1 + proportional_error * static_cast<double>(n_steps) / horizon;
  }
};

// What apply_kl_penalty logs (verl actor/reward_kl_penalty and _coeff).
struct kl_penalty_report {
  double current_kl = 0;  // mean over sequences of each sequence's mean KL over its active tokens
  double coef = 0;        // the coefficient used (before the controller's update)
};

// token_rewards[i, t] = score_i at the last active token of sequence i, minus
// coef * k(logp, ref_logp) on every active token, 0 where masked. logp are the
// log-probs of the policy that sampled (verl old_log_probs). A sequence with no
// active token (masked out, e.g. a truncated completion under overlong
// filtering) gets 0 everywhere and is left out of current_kl.
template <class K, Real T>
  requires KLEstimator<K, T>
kl_penalty_report apply_kl_penalty(const K& k, double coef, vector_view<const T> scores, matrix_view<const T> logp,
                                   matrix_view<const T> ref_logp, matrix_view<const T> mask,
                                   matrix_view<T> token_rewards) {
  constexpr const char* fn = "lmrl::apply_kl_penalty";
  detail::require_same_shape(fn, "logp", logp, "ref_logp", ref_logp);
  detail::require_same_shape(fn, "logp", logp, "mask", mask);
  detail::require_same_shape(fn, "logp", logp, "token_rewards", token_rewards);
  detail::require_extent(fn, "scores", scores, 0, logp.shape[0], "the number of rows of logp");
  detail::require(std::isfinite(coef), fn, ": coef = ", coef, " is not finite");
  detail::require_mask(fn, "mask", mask);
  detail::require_finite_where(fn, "logp", logp, mask);
  detail::require_finite_where(fn, "ref_logp", ref_logp, mask);
  const index_t rows = logp.shape[0];
  const index_t cols = logp.shape[1];
  for (index_t i = 0; i < rows; ++i)
    detail::require(std::isfinite(static_cast<double>(scores(i))), fn, ": scores(", i, ") = ",
                    static_cast<double>(scores(i)), " is not finite");

  double sum_of_means = 0;
  index_t counted = 0;
  for (index_t i = 0; i < rows; ++i) {
    index_t last = -1;
    index_t n = 0;
    double kl_sum = 0;
    double last_kl = 0;
    for (index_t t = 0; t < cols; ++t) {
      if (mask(i, t) == 0) {
        token_rewards(i, t) = T(0);
        continue;
      }
      const double kl = static_cast<double>(k.value(logp(i, t), ref_logp(i, t)));
      token_rewards(i, t) = static_cast<T>(-coef * kl);
      kl_sum += kl;
      ++n;
      last = t;
      last_kl = kl;
    }
    if (last < 0) continue;
    // verl: token_level_scores - beta * kld, the score sitting at the last active token.
    token_rewards(i, last) = static_cast<T>(static_cast<double>(scores(i)) - coef * last_kl);
    sum_of_means += kl_sum / static_cast<double>(n);
    ++counted;
  }
  return {counted > 0 ? sum_of_means / static_cast<double>(counted) : 0.0, coef};
}

// The verl flow: penalize with the controller's coefficient, then update the
// controller with the batch's KL and n_steps = number of sequences.
template <class K, KLController C, Real T>
  requires KLEstimator<K, T>
kl_penalty_report apply_kl_penalty(const K& k, C& controller, vector_view<const T> scores, matrix_view<const T> logp,
                                   matrix_view<const T> ref_logp, matrix_view<const T> mask,
                                   matrix_view<T> token_rewards) {
  const auto report = apply_kl_penalty<K, T>(k, static_cast<double>(controller.value), scores, logp, ref_logp, mask,
                                             token_rewards);
  controller.update(report.current_kl, logp.shape[0]);
  return report;
}

// Any backend, into caller storage; coef is a number or a KLController.
// (S comes before Coef so that explicit <K, T> calls never select this overload.)
template <class K, Array1D S, class Coef, Array2D L, Array2D R, Array2D M, WritableArray2D O>
  requires KLEstimator<K, element_t<L, 2>> && (std::convertible_to<Coef, double> || KLController<Coef>)
kl_penalty_report apply_kl_penalty(const K& k, Coef&& coef, const S& scores, const L& logp, const R& ref_logp,
                                   const M& mask, O&& token_rewards) {
  using T = element_t<L, 2>;
  const vector_view<const T> s = view<1>(scores);
  const matrix_view<const T> lp = view<2>(logp), rp = view<2>(ref_logp), m = view<2>(mask);
  const matrix_view<T> out = view<2>(token_rewards);
  if constexpr (KLController<std::remove_cvref_t<Coef>>) {
    return apply_kl_penalty<K, std::remove_cvref_t<Coef>, T>(k, coef, s, lp, rp, m, out);
  } else {
    return apply_kl_penalty<K, T>(k, static_cast<double>(coef), s, lp, rp, m, out);
  }
}

}  // namespace lmrl
