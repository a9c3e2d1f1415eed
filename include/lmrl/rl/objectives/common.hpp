// What every policy objective shares: the argument checks, the log-ratio
// (optionally clamped as verl clamps it), the PPO clipped surrogate with its
// derivative, the statistics over active tokens, the loops of elementwise
// objectives, and the generic overloads that take any backend array.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "lmrl/error.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// verl clamps log(pi_theta / pi_old) to [-20, 20] "for stability" (vanilla,
// cispo, sapo); TRL does not. Objectives with `clamp_log_ratio = true` do.
inline constexpr double verl_log_ratio_bound = 20.0;

namespace detail {

// log(pi_theta / pi_old) and its slope with respect to logp: 1, or 0 where the
// clamp is active (torch.clamp passes the gradient on [lo, hi], ends included).
struct log_ratio_value {
  double value = 0;
  double slope = 1;
};

inline log_ratio_value log_ratio(double logp, double old_logp, bool clamp) {
  const double r = logp - old_logp;
  if (clamp && (r < -verl_log_ratio_bound || r > verl_log_ratio_bound))
    return {std::clamp(r, -verl_log_ratio_bound, verl_log_ratio_bound), 0.0};
  return {r, 1.0};
}

// pi_old at (i, t); an absent old_logp means on-policy: old = sg[logp] (TRL).
template <Real T>
double old_logp_at(const policy_inputs<T>& in, index_t i, index_t t) {
  return static_cast<double>(in.old_logp.data != nullptr ? in.old_logp(i, t) : in.logp(i, t));
}

inline double sign(double x) { return static_cast<double>((x > 0) - (x < 0)); }

// One token of the PPO clipped surrogate, as TRL and verl write it:
//   l = max(-A min(rho, delta), -A clip(rho, lo, hi)),  then for A < 0 with
//   dual clip: l = min(l, -A c).
// dloss_dratio is what autograd gives: 0 on a clipped branch, and where two
// branches tie (inside the clip range) half from each, which sums to -A.
struct surrogate {
  double loss = 0;
  double dloss_dratio = 0;
  bool low = false;   // TRL clip_ratio/low:  min(rho, delta) < lo and A < 0
  bool high = false;  // TRL clip_ratio/high: min(rho, delta) > hi and A > 0
  bool dual = false;  // verl pg_clipfrac_lower: dual clip bound active
};

inline surrogate clipped_surrogate(double ratio, double adv, double lo, double hi,
                                   double delta = std::numeric_limits<double>::infinity(),
                                   double clip_ratio_c = std::numeric_limits<double>::infinity()) {
  const double capped = std::min(ratio, delta);
  const double clipped = std::clamp(ratio, lo, hi);
  const double unclipped_loss = -adv * capped;
  const double clipped_loss = -adv * clipped;
  const double d_unclipped = ratio <= delta ? -adv : 0.0;
  const double d_clipped = (ratio >= lo && ratio <= hi) ? -adv : 0.0;
  surrogate s;
  if (unclipped_loss > clipped_loss) {
    s.loss = unclipped_loss;
    s.dloss_dratio = d_unclipped;
  } else if (clipped_loss > unclipped_loss) {
    s.loss = clipped_loss;
    s.dloss_dratio = d_clipped;
  } else {
    s.loss = unclipped_loss;
    s.dloss_dratio = 0.5 * (d_unclipped + d_clipped);
  }
  if (adv < 0 && clip_ratio_c < std::numeric_limits<double>::infinity()) {
    const double dual_loss = -adv * clip_ratio_c;
    if (dual_loss < s.loss) {
      s.loss = dual_loss;
      s.dloss_dratio = 0;
      s.dual = true;
    } else if (dual_loss == s.loss) {
      s.dloss_dratio *= 0.5;
    }
  }
  s.low = capped < lo && adv < 0;
  s.high = capped > hi && adv > 0;
  return s;
}

// What one active token contributes: its loss, dl/dlogp, and its statistics.
struct token_terms {
  double loss = 0;
  double dloss_dlogp = 0;
  double log_ratio = 0;  // the log-ratio the objective used, for approx_kl
  double ratio = 1;      // the ratio the objective used, for ratio_mean/min/max
  bool low = false;
  bool high = false;
  bool clipped = false;  // counted in clip_fraction
  bool dual = false;
  bool picked = false;   // Clip-Cov / KL-Cov selection
};

// Sums over active tokens, in double, turned into objective_stats.
struct stats_accumulator {
  index_t n = 0, low = 0, high = 0, clipped = 0, dual = 0, picked = 0;
  double kl_sum = 0, ratio_sum = 0;
  double ratio_min = std::numeric_limits<double>::infinity();
  double ratio_max = -std::numeric_limits<double>::infinity();

  void add(const token_terms& k) {
    ++n;
    low += k.low;
    high += k.high;
    clipped += k.clipped;
    dual += k.dual;
    picked += k.picked;
    kl_sum += -k.log_ratio;
    ratio_sum += k.ratio;
    ratio_min = std::min(ratio_min, k.ratio);
    ratio_max = std::max(ratio_max, k.ratio);
  }

  objective_stats finish() const {
    objective_stats s;
    s.active_tokens = n;
    if (n == 0) return s;
    const double count = static_cast<double>(n);
    s.clip_fraction_low = static_cast<double>(low) / count;
    s.clip_fraction_high = static_cast<double>(high) / count;
    s.clip_fraction = static_cast<double>(clipped) / count;
    s.clip_fraction_dual = static_cast<double>(dual) / count;
    s.cov_fraction = static_cast<double>(picked) / count;
    s.approx_kl = kl_sum / count;
    s.ratio_mean = ratio_sum / count;
    s.ratio_min = ratio_min;
    s.ratio_max = ratio_max;
    return s;
  }
};

template <class A, class B>
void require_given_like(const char* function, const char* name, const matrix_view<A>& x, const char* like_name,
                        const matrix_view<B>& like) {
  if (x.data == nullptr && !like.empty())
    fail(function, ": ", name, " is not given (empty view) but ", like_name, " has shape ", like);
  require_same_shape(function, like_name, like, name, x);
}

// The checks every objective makes: logp, advantages and mask given and of one
// shape (old_logp too when given), a 0/1 mask, finite inputs where active.
template <Real T>
void check_policy_inputs(const char* function, const policy_inputs<T>& in) {
  require_given_like(function, "advantages", in.advantages, "logp", in.logp);
  require_given_like(function, "mask", in.mask, "logp", in.logp);
  if (in.old_logp.data != nullptr) require_same_shape(function, "logp", in.logp, "old_logp", in.old_logp);
  require_mask(function, "mask", in.mask);
  require_finite_where(function, "logp", in.logp, in.mask);
  if (in.old_logp.data != nullptr) require_finite_where(function, "old_logp", in.old_logp, in.mask);
  require_finite_where(function, "advantages", in.advantages, in.mask);
}

template <Real T>
void check_loss_args(const char* function, const policy_inputs<T>& in, const matrix_view<T>& out) {
  check_policy_inputs(function, in);
  require_given_like(function, "per_token_loss", out, "logp", in.logp);
}

template <Real T>
void check_backward_args(const char* function, const policy_inputs<T>& in, const matrix_view<const T>& g,
                         const matrix_view<T>& dlogp) {
  check_policy_inputs(function, in);
  require_given_like(function, "g", g, "logp", in.logp);
  require_given_like(function, "dlogp", dlogp, "logp", in.logp);
  require_finite_where(function, "g", g, in.mask);
}

inline void require_in_range(const char* function, const char* name, double value, double lo, double hi,
                             const char* range) {
  if (!(value >= lo && value <= hi)) fail(function, ": ", name, " = ", value, " must be in ", range);
}

// The loop of an elementwise objective: token(i, t, logp, old_logp, adv)
// returns the token_terms of an active token; masked tokens get 0.
template <Real T, class Token>
objective_stats elementwise_loss(const policy_inputs<T>& in, matrix_view<T> out, Token&& token) {
  stats_accumulator acc;
  for (index_t i = 0; i < in.logp.shape[0]; ++i)
    for (index_t t = 0; t < in.logp.shape[1]; ++t) {
      if (in.mask(i, t) == 0) {
        out(i, t) = T(0);
        continue;
      }
      const token_terms k = token(i, t, static_cast<double>(in.logp(i, t)), old_logp_at(in, i, t),
                                  static_cast<double>(in.advantages(i, t)));
      out(i, t) = static_cast<T>(k.loss);
      acc.add(k);
    }
  return acc.finish();
}

template <Real T, class Token>
void elementwise_backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp, Token&& token) {
  for (index_t i = 0; i < in.logp.shape[0]; ++i)
    for (index_t t = 0; t < in.logp.shape[1]; ++t) {
      if (in.mask(i, t) == 0) {
        dlogp(i, t) = T(0);
        continue;
      }
      const token_terms k = token(i, t, static_cast<double>(in.logp(i, t)), old_logp_at(in, i, t),
                                  static_cast<double>(in.advantages(i, t)));
      dlogp(i, t) = static_cast<T>(static_cast<double>(g(i, t)) * k.dloss_dlogp);
    }
}

}  // namespace detail

// ---------------------------------------------------------------- generic overloads

// The policy_inputs of any backend arrays (all of one element type).
template <Array2D L, Array2D O, Array2D A, Array2D M>
  requires Real<element_t<L, 2>> && std::same_as<element_t<L, 2>, element_t<O, 2>> &&
           std::same_as<element_t<L, 2>, element_t<A, 2>> && std::same_as<element_t<L, 2>, element_t<M, 2>>
policy_inputs<element_t<L, 2>> policy_inputs_of(const L& logp, const O& old_logp, const A& advantages,
                                                const M& mask) {
  policy_inputs<element_t<L, 2>> in;
  in.logp = lmrl::view<2>(logp);
  in.old_logp = lmrl::view<2>(old_logp);
  in.advantages = lmrl::view<2>(advantages);
  in.mask = lmrl::view<2>(mask);
  return in;
}

// o.loss into any writable array of T.
template <class O, Real T, WritableArray2D Out>
  requires PolicyObjective<O, T> && std::same_as<element_t<Out, 2>, T>
objective_stats policy_loss(const O& objective, const policy_inputs<T>& in, Out&& per_token_loss) {
  return objective.loss(in, lmrl::view<2>(per_token_loss));
}

// o.backward from any array g into any writable array of T.
template <class O, Real T, Array2D G, WritableArray2D D>
  requires PolicyObjective<O, T> && std::same_as<element_t<G, 2>, T> && std::same_as<element_t<D, 2>, T>
void policy_backward(const O& objective, const policy_inputs<T>& in, const G& g, D&& dlogp) {
  objective.backward(in, matrix_view<const T>(lmrl::view<2>(g)), lmrl::view<2>(dlogp));
}

template <class X>
struct policy_loss_result {
  X per_token_loss;
  objective_stats stats;
};

// Convenience: the per-token loss as a new array of logp's backend family.
template <class O, Array2D L, Array2D Old, Array2D A, Array2D M>
  requires PolicyObjective<O, element_t<L, 2>>
auto policy_loss(const O& objective, const L& logp, const Old& old_logp, const A& advantages, const M& mask) {
  using T = element_t<L, 2>;
  const auto in = policy_inputs_of(logp, old_logp, advantages, mask);
  policy_loss_result<owning_t<L, T, 2>> result{make_like<L, T, 2>(in.logp.shape), {}};
  result.stats = objective.loss(in, lmrl::view<2>(result.per_token_loss));
  return result;
}

}  // namespace lmrl
