// CISPO (clipped IS-weight policy optimization, MiniMax-M1, arXiv 2506.13585):
// clip the importance weight, not the update, and stop its gradient, so every
// token keeps a REINFORCE gradient scaled by the clipped weight:
//
//   w = sg[ clip(rho, 1 - epsilon_low, 1 + epsilon_high) ]     rho = exp(logp - old_logp)
//   l = -w A logp                          dl/dlogp = -w A
//
// The two libraries name the bound differently:
// - verl compute_policy_loss_cispo clips to [1 - clip_ratio_low, 1 + clip_ratio_high]
//   (both sides, its PPO defaults 0.2) and clamps the log-ratio to [-20, 20];
// - TRL loss_type="cispo" clamps to max = epsilon_high, an absolute cap (its
//   epsilon_max, recommended 5.0), with no lower bound.
// lmrl writes the cap as 1 + epsilon_high, like verl; epsilon_low absent means no
// lower bound, like TRL and the paper. The default epsilon_high = 4 is TRL's
// recommended cap of 5 (ScaleRL); TRL's epsilon_high = e is lmrl's e - 1.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/common.hpp"

namespace lmrl {

struct cispo {
  std::optional<double> epsilon_low{};  // no lower clip (paper, TRL); verl clip_ratio_low = 0.2
  double epsilon_high = 4.0;            // cap 1 + 4 = 5: TRL's recommended epsilon_high = 5.0 (ScaleRL)
  bool clamp_log_ratio = false;         // verl clamps logp - old_logp to [-20, 20]; TRL does not

  // verl's defaults: clip to [0.8, 1.2], clamped log-ratio.
  static cispo verl() {
    cispo o;
    o.epsilon_low = 0.2;
    o.epsilon_high = 0.2;
    o.clamp_log_ratio = true;
    return o;
  }

  void validate(const char* function) const {
    if (epsilon_low) detail::require_in_range(function, "epsilon_low", *epsilon_low, 0.0, 1.0, "[0, 1]");
    detail::require_in_range(function, "epsilon_high", epsilon_high, 0.0, std::numeric_limits<double>::max(),
                             "[0, inf)");
  }

 private:
  auto token_fn() const {
    return [this](index_t, index_t, double logp, double old_logp, double adv) {
      const auto r = detail::log_ratio(logp, old_logp, clamp_log_ratio);
      const double rho = std::exp(r.value);
      const double lo = epsilon_low ? 1 - *epsilon_low : 0.0;
      const double hi = 1 + epsilon_high;
      const double w = std::clamp(rho, lo, hi);
      detail::token_terms k;
      k.loss = -w * adv * logp;
      k.dloss_dlogp = -w * adv;
      k.log_ratio = r.value;
      k.ratio = rho;
      k.high = rho > hi && adv > 0;  // TRL cispo_clip_ratio
      k.low = rho < lo && adv < 0;
      k.clipped = w != rho;          // verl pg_clipfrac: the weight was clipped, whatever the sign of A
      return k;
    };
  }

 public:
  // (the private helpers come first: nvcc's front end cannot deduce token_fn's type from a later definition)
  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    validate("cispo::loss");
    detail::check_loss_args("cispo::loss", in, per_token_loss);
    return detail::elementwise_loss(in, per_token_loss, token_fn());
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    validate("cispo::backward");
    detail::check_backward_args("cispo::backward", in, g, dlogp);
    detail::elementwise_backward(in, g, dlogp, token_fn());
  }
};

static_assert(PolicyObjective<cispo, float> && PolicyObjective<cispo, double>);

}  // namespace lmrl
