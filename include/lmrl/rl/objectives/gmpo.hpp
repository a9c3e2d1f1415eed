// GMPO (geometric-mean policy optimization, arXiv 2507.20673), as verl
// compute_policy_loss_geo_mean computes it: clip each token's log-ratio in log
// space, on the side that matters for the sign of its advantage, then take the
// geometric mean over the sequence:
//
//   r[i,t]  = logp - old_logp
//   c[i,t]  = sgn(A) min(sgn(A) r, sgn(A) clip(r, -epsilon_low, epsilon_high))
//   ratio_i = exp( sum_t m c[i,t] / (|o_i| + 1e-8) )
//   Abar_i  = sum_t m A[i,t] / (|o_i| + 1e-8)
//   L_i     = -Abar_i ratio_i
//
// GMPO's loss is one number per sequence; lmrl writes it on every active token
// of the sequence, l[i,t] = L_i, so that a per-sequence token mean
// (seq-mean-token-mean aggregation) gives verl's mean over sequences.
// dc/dr = 1 where the unclipped side is kept, 0 where the clip bites (A > 0
// and r > epsilon_high, or A < 0 and r < -epsilon_low), and 0 where A = 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/common.hpp"

namespace lmrl {

struct gmpo {
  double epsilon_low = 0.4;   // GMPO paper clips log-ratios to (-0.4, 0.4); verl clip_ratio_low
  double epsilon_high = 0.4;  // verl clip_ratio_high

  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    validate("gmpo::loss");
    detail::check_loss_args("gmpo::loss", in, per_token_loss);
    detail::stats_accumulator acc;
    for (index_t i = 0; i < in.logp.shape[0]; ++i) {
      const auto row = sequence(in, i);
      for (index_t t = 0; t < in.logp.shape[1]; ++t) {
        if (in.mask(i, t) == 0) {
          per_token_loss(i, t) = T(0);
          continue;
        }
        const double r = static_cast<double>(in.logp(i, t)) - detail::old_logp_at(in, i, t);
        const double adv = static_cast<double>(in.advantages(i, t));
        const bool clipped = r != std::clamp(r, -epsilon_low, epsilon_high);
        detail::token_terms k;
        k.loss = row.loss;
        k.log_ratio = r;
        k.ratio = row.ratio;
        k.high = clipped && adv > 0;  // verl pg_clipfrac: log-ratio outside the range, A > 0
        k.low = clipped && adv < 0;   // verl pg_clipfrac_lower: outside the range, A < 0
        k.clipped = k.high || k.low;
        per_token_loss(i, t) = static_cast<T>(k.loss);
        acc.add(k);
      }
    }
    return acc.finish();
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    validate("gmpo::backward");
    detail::check_backward_args("gmpo::backward", in, g, dlogp);
    for (index_t i = 0; i < in.logp.shape[0]; ++i) {
      const auto row = sequence(in, i);
      double g_sum = 0;  // every active token carries L_i, so dL/dL_i = sum_t g[i,t]
      for (index_t t = 0; t < in.logp.shape[1]; ++t)
        if (in.mask(i, t) != 0) g_sum += static_cast<double>(g(i, t));
      const double dL_dmean = g_sum * -row.advantage * row.ratio;  // d(-Abar exp(mean c)) / d(mean c)
      for (index_t t = 0; t < in.logp.shape[1]; ++t) {
        if (in.mask(i, t) == 0) {
          dlogp(i, t) = T(0);
          continue;
        }
        const double r = static_cast<double>(in.logp(i, t)) - detail::old_logp_at(in, i, t);
        dlogp(i, t) = static_cast<T>(dL_dmean * slope(r, static_cast<double>(in.advantages(i, t))) / row.denominator);
      }
    }
  }

  void validate(const char* function) const {
    detail::require_in_range(function, "epsilon_low", epsilon_low, 0.0, std::numeric_limits<double>::max(),
                             "[0, inf)");
    detail::require_in_range(function, "epsilon_high", epsilon_high, 0.0, std::numeric_limits<double>::max(),
                             "[0, inf)");
  }

 private:
  struct row_terms {
    double denominator = 1e-8;  // |o_i| + 1e-8, as verl
    double ratio = 1;
    double advantage = 0;
    double loss = 0;
  };

  // c[i,t] for log-ratio r and advantage adv.
  double clipped_log_ratio(double r, double adv) const {
    const double sg = detail::sign(adv);
    return sg * std::min(sg * r, sg * std::clamp(r, -epsilon_low, epsilon_high));
  }
  // dc/dr (ties inside the range: half from each side of the min, summing to 1).
  double slope(double r, double adv) const {
    if (adv > 0) return r > epsilon_high ? 0.0 : 1.0;
    if (adv < 0) return r < -epsilon_low ? 0.0 : 1.0;
    return 0.0;
  }

  template <Real T>
  row_terms sequence(const policy_inputs<T>& in, index_t i) const {
    double c_sum = 0, a_sum = 0;
    index_t n = 0;
    for (index_t t = 0; t < in.logp.shape[1]; ++t)
      if (in.mask(i, t) != 0) {
        const double adv = static_cast<double>(in.advantages(i, t));
        c_sum += clipped_log_ratio(static_cast<double>(in.logp(i, t)) - detail::old_logp_at(in, i, t), adv);
        a_sum += adv;
        ++n;
      }
    row_terms row;
    row.denominator = static_cast<double>(n) + 1e-8;
    row.ratio = std::exp(c_sum / row.denominator);
    row.advantage = a_sum / row.denominator;
    row.loss = -row.advantage * row.ratio;
    return row;
  }
};

static_assert(PolicyObjective<gmpo, float> && PolicyObjective<gmpo, double>);

}  // namespace lmrl
