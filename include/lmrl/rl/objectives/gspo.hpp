// GSPO (group sequence policy optimization, arXiv 2507.18071): one importance
// ratio per sequence, the geometric mean of its token ratios,
//
//   s_i = exp( sum_t m[i,t] (logp - old_logp)[i,t] / max(|o_i|, 1) )
//   l[i,t] = max(-A[i,t] s_i, -A[i,t] clip(s_i, 1 - epsilon_low, 1 + epsilon_high))
//
// in two forms that share this value and differ in the gradient:
//
// - gspo: TRL importance_sampling_level="sequence". The gradient of s_i flows
//   to every token of the sequence: ds_i/dlogp[i,t] = s_i m[i,t] / |o_i|, so
//   dL/dlogp[i,t] = s_i m[i,t] / |o_i| * sum_s g[i,s] dl[i,s]/ds_i.
// - gspo_token: verl compute_policy_loss_gspo, the paper's GSPO-token,
//   s_{i,t} = sg[s_i] exp(logp[i,t] - sg[logp[i,t]]): each token's loss sends
//   its gradient to its own logp only, dl[i,t]/dlogp[i,t] = dl/ds * s_i; verl
//   caps log s_{i,t} at 10 (gradient 0 above).
//
// With advantages constant along a sequence and a per-sequence token mean
// (seq-mean-token-mean) the two gradients are equal.
//
// Defaults are the GSPO paper's clip range, 3e-4 / 4e-4 (TRL and verl leave
// their PPO defaults 0.2, with which a sequence ratio is almost never clipped).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/common.hpp"

namespace lmrl {

namespace detail {

// Mean log-ratio of row i over its active tokens, divided by max(|o_i|, 1)
// as TRL and verl do; count receives |o_i|.
template <Real T>
double sequence_log_ratio(const policy_inputs<T>& in, index_t i, index_t& count) {
  double sum = 0;
  count = 0;
  for (index_t t = 0; t < in.logp.shape[1]; ++t)
    if (in.mask(i, t) != 0) {
      sum += static_cast<double>(in.logp(i, t)) - old_logp_at(in, i, t);
      ++count;
    }
  return sum / static_cast<double>(std::max<index_t>(count, 1));
}

inline void validate_sequence_clip(const char* function, double epsilon_low, double epsilon_high) {
  require_in_range(function, "epsilon_low", epsilon_low, 0.0, 1.0, "[0, 1]");
  require_in_range(function, "epsilon_high", epsilon_high, 0.0, std::numeric_limits<double>::max(), "[0, inf)");
}

}  // namespace detail

struct gspo {
  double epsilon_low = 3e-4;   // GSPO paper; TRL/verl name epsilon / clip_ratio_low
  double epsilon_high = 4e-4;  // GSPO paper; TRL epsilon_high / verl clip_ratio_high
  std::optional<double> delta{};  // TRL delta caps s_i in the unclipped term; None by default

  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    validate("gspo::loss");
    detail::check_loss_args("gspo::loss", in, per_token_loss);
    detail::stats_accumulator acc;
    for (index_t i = 0; i < in.logp.shape[0]; ++i) {
      index_t n = 0;
      const double s = std::exp(detail::sequence_log_ratio(in, i, n));
      for (index_t t = 0; t < in.logp.shape[1]; ++t) {
        if (in.mask(i, t) == 0) {
          per_token_loss(i, t) = T(0);
          continue;
        }
        const auto k = token(s, in, i, t);
        per_token_loss(i, t) = static_cast<T>(k.loss);
        acc.add(k);
      }
    }
    return acc.finish();
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    validate("gspo::backward");
    detail::check_backward_args("gspo::backward", in, g, dlogp);
    for (index_t i = 0; i < in.logp.shape[0]; ++i) {
      index_t n = 0;
      const double s = std::exp(detail::sequence_log_ratio(in, i, n));
      double dL_ds = 0;  // sum over the sequence's tokens of g * dl/ds
      for (index_t t = 0; t < in.logp.shape[1]; ++t)
        if (in.mask(i, t) != 0) dL_ds += static_cast<double>(g(i, t)) * token(s, in, i, t).dloss_dlogp;
      const double per_token = dL_ds * s / static_cast<double>(std::max<index_t>(n, 1));
      for (index_t t = 0; t < in.logp.shape[1]; ++t)
        dlogp(i, t) = in.mask(i, t) != 0 ? static_cast<T>(per_token) : T(0);
    }
  }

  void validate(const char* function) const {
    detail::validate_sequence_clip(function, epsilon_low, epsilon_high);
    if (delta)
      detail::require(*delta > 0.0 && std::isfinite(*delta), function, ": delta = ", *delta,
                      " must be a positive finite number");
  }

 private:
  // token_terms of token t under sequence ratio s; dloss_dlogp holds dl/ds here.
  template <Real T>
  detail::token_terms token(double s, const policy_inputs<T>& in, index_t i, index_t t) const {
    const double adv = static_cast<double>(in.advantages(i, t));
    const auto c = detail::clipped_surrogate(s, adv, 1 - epsilon_low, 1 + epsilon_high,
                                             delta.value_or(std::numeric_limits<double>::infinity()));
    detail::token_terms k;
    k.loss = c.loss;
    k.dloss_dlogp = c.dloss_dratio;
    k.log_ratio = static_cast<double>(in.logp(i, t)) - detail::old_logp_at(in, i, t);
    k.ratio = s;
    k.low = c.low;
    k.high = c.high;
    k.clipped = c.low || c.high;
    return k;
  }
};

struct gspo_token {
  double epsilon_low = 3e-4;    // GSPO paper; verl clip_ratio_low
  double epsilon_high = 4e-4;   // GSPO paper; verl clip_ratio_high
  double max_log_ratio = 10.0;  // verl clamps log s_{i,t} at 10 "for numerical stability"

  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    validate("gspo_token::loss");
    detail::check_loss_args("gspo_token::loss", in, per_token_loss);
    detail::stats_accumulator acc;
    for (index_t i = 0; i < in.logp.shape[0]; ++i) {
      const auto row = sequence_ratio(in, i);
      for (index_t t = 0; t < in.logp.shape[1]; ++t) {
        if (in.mask(i, t) == 0) {
          per_token_loss(i, t) = T(0);
          continue;
        }
        const auto k = token(row, in, i, t);
        per_token_loss(i, t) = static_cast<T>(k.loss);
        acc.add(k);
      }
    }
    return acc.finish();
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    validate("gspo_token::backward");
    detail::check_backward_args("gspo_token::backward", in, g, dlogp);
    for (index_t i = 0; i < in.logp.shape[0]; ++i) {
      const auto row = sequence_ratio(in, i);
      for (index_t t = 0; t < in.logp.shape[1]; ++t)
        dlogp(i, t) = in.mask(i, t) != 0
                          ? static_cast<T>(static_cast<double>(g(i, t)) * token(row, in, i, t).dloss_dlogp)
                          : T(0);
    }
  }

  void validate(const char* function) const {
    detail::validate_sequence_clip(function, epsilon_low, epsilon_high);
    detail::require(!std::isnan(max_log_ratio), function, ": max_log_ratio is NaN");
  }

 private:
  struct row_ratio {
    double value = 1;  // s_i after the cap
    double slope = 1;  // 0 where the cap is active
  };

  template <Real T>
  row_ratio sequence_ratio(const policy_inputs<T>& in, index_t i) const {
    index_t n = 0;
    const double log_s = detail::sequence_log_ratio(in, i, n);
    if (log_s > max_log_ratio) return {std::exp(max_log_ratio), 0.0};
    return {std::exp(log_s), 1.0};
  }

  template <Real T>
  detail::token_terms token(row_ratio s, const policy_inputs<T>& in, index_t i, index_t t) const {
    const double adv = static_cast<double>(in.advantages(i, t));
    const auto c = detail::clipped_surrogate(s.value, adv, 1 - epsilon_low, 1 + epsilon_high);
    detail::token_terms k;
    k.loss = c.loss;
    k.dloss_dlogp = c.dloss_dratio * s.value * s.slope;  // d s_{i,t} / d logp[i,t] = s_{i,t}
    k.log_ratio = static_cast<double>(in.logp(i, t)) - detail::old_logp_at(in, i, t);
    k.ratio = s.value;
    k.low = c.low;
    k.high = c.high;
    k.clipped = c.low || c.high;
    return k;
  }
};

static_assert(PolicyObjective<gspo, float> && PolicyObjective<gspo, double>);
static_assert(PolicyObjective<gspo_token, float> && PolicyObjective<gspo_token, double>);

}  // namespace lmrl
