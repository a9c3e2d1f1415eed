// PPO's clipped value loss (verl compute_value_loss, TRL PPOTrainer,
// OpenRLHF ValueLoss), the critic's regression on the GAE returns R:
//
//   V_clip = clamp(V, V_old - c, V_old + c)          c = cliprange_value
//   l      = max((V - R)^2, (V_clip - R)^2)
//   L      = 1/2 sum_{i,t} w[i, t] l[i, t]            w: the loss aggregation's weights
//
//   dL/dV  = w (V - R)                   where the unclipped term is the larger,
//            w (V_clip - R) 1[|V - V_old| <= c]   otherwise (0 once V left the range)
//
//   clip_fraction      = masked mean of 1[(V_clip - R)^2 > (V - R)^2]   (verl vf_clipfrac)
//   explained_variance = 1 - Var(R - V) / Var(R)   over the active tokens (TRL, OpenRLHF)
//
// c = infinity turns the clip off (OpenRLHF value_clip None).
#pragma once

#include <algorithm>
#include <cmath>

#include "lmrl/error.hpp"
#include "lmrl/rl/aggregation.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

struct value_loss_result {
  double loss = 0;
  double clip_fraction = 0;  // over the active tokens of this call
  index_t active_tokens = 0;
};

// L and dL/dV (written into grad_values, 0 where masked); weights from
// aggregation with totals of the whole optimizer step (see aggregation.hpp).
template <Real T>
value_loss_result clipped_value_loss(matrix_view<const T> values, matrix_view<const T> old_values,
                                     matrix_view<const T> returns, matrix_view<const T> mask, double cliprange_value,
                                     const loss_aggregation& aggregation, batch_totals totals,
                                     matrix_view<T> grad_values, matrix_view<T> scratch_weights) {
  constexpr const char* f = "lmrl::clipped_value_loss";
  detail::require_same_shape(f, "mask", mask, "values", values);
  detail::require_same_shape(f, "mask", mask, "old_values", old_values);
  detail::require_same_shape(f, "mask", mask, "returns", returns);
  detail::require_same_shape(f, "mask", mask, "grad_values", grad_values);
  detail::require_same_shape(f, "mask", mask, "scratch_weights", scratch_weights);
  detail::require(cliprange_value > 0, f, ": cliprange_value = ", cliprange_value,
                  " must be positive (infinity: no clipping)");
  detail::require_finite_where(f, "values", values, mask);
  detail::require_finite_where(f, "old_values", old_values, mask);
  detail::require_finite_where(f, "returns", returns, mask);
  aggregation.weights(mask, totals, scratch_weights);
  value_loss_result r;
  index_t clipped = 0;
  for (index_t i = 0; i < mask.shape[0]; ++i)
    for (index_t t = 0; t < mask.shape[1]; ++t) {
      grad_values(i, t) = T(0);
      if (mask(i, t) == T(0)) continue;
      const double v = values(i, t), v_old = old_values(i, t), ret = returns(i, t), w = scratch_weights(i, t);
      const double v_clip = std::clamp(v, v_old - cliprange_value, v_old + cliprange_value);
      const double plain = (v - ret) * (v - ret), limited = (v_clip - ret) * (v_clip - ret);
      ++r.active_tokens;
      if (limited > plain) {
        ++clipped;
        r.loss += 0.5 * w * limited;
        const bool inside = std::abs(v - v_old) <= cliprange_value;
        grad_values(i, t) = static_cast<T>(inside ? w * (v_clip - ret) : 0.0);
      } else {
        r.loss += 0.5 * w * plain;
        grad_values(i, t) = static_cast<T>(w * (v - ret));
      }
    }
  r.clip_fraction = r.active_tokens ? static_cast<double>(clipped) / static_cast<double>(r.active_tokens) : 0.0;
  return r;
}

// 1 - Var(R - V) / Var(R) over the active tokens (biased variances); NaN when
// Var(R) = 0 or there is no active token.
template <Real T>
double explained_variance(matrix_view<const T> values, matrix_view<const T> returns, matrix_view<const T> mask) {
  constexpr const char* f = "lmrl::explained_variance";
  detail::require_same_shape(f, "mask", mask, "values", values);
  detail::require_same_shape(f, "mask", mask, "returns", returns);
  double n = 0, sr = 0, srr = 0, sd = 0, sdd = 0;
  for (index_t i = 0; i < mask.shape[0]; ++i)
    for (index_t t = 0; t < mask.shape[1]; ++t) {
      if (mask(i, t) == T(0)) continue;
      const double ret = returns(i, t), diff = ret - static_cast<double>(values(i, t));
      n += 1, sr += ret, srr += ret * ret, sd += diff, sdd += diff * diff;
    }
  if (n == 0) return std::nan("");
  const double var_r = srr / n - (sr / n) * (sr / n), var_d = sdd / n - (sd / n) * (sd / n);
  return var_r > 0 ? 1 - var_d / var_r : std::nan("");
}

}  // namespace lmrl
