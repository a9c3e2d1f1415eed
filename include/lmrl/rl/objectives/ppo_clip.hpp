// The PPO clipped surrogate, as GRPO/DAPO use it (TRL loss_type grpo/bnpo/
// dr_grpo/dapo, verl compute_policy_loss_vanilla):
//
//   rho = exp(logp - old_logp)
//   l   = max(-A min(rho, delta), -A clip(rho, 1 - epsilon_low, 1 + epsilon_high))
//   l   = min(l, -A clip_ratio_c)        for A < 0, when dual clip is on
//
// dl/dlogp = -A rho on the unclipped branch (rho <= delta), 0 on a clipped one.
// Defaults are TRL's (symmetric 0.2, no delta, no dual clip, no log-ratio
// clamp); ppo_clip::verl() and ppo_clip::dapo() give the others.
#pragma once

#include <cmath>
#include <limits>
#include <optional>

#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/common.hpp"

namespace lmrl {

struct ppo_clip {
  double epsilon_low = 0.2;   // TRL epsilon = 0.2; verl clip_ratio_low = 0.2
  double epsilon_high = 0.2;  // TRL epsilon_high (defaults to epsilon); verl clip_ratio_high; DAPO 0.28
  std::optional<double> clip_ratio_c{};  // dual clip for A < 0: verl 3.0 (always on); TRL has none
  std::optional<double> delta{};         // TRL delta (INTELLECT-2 two-sided clip), None by default
  bool clamp_log_ratio = false;          // verl clamps logp - old_logp to [-20, 20]; TRL does not

  // verl's actor defaults: clip_ratio 0.2, clip_ratio_c 3, clamped log-ratio.
  static ppo_clip verl() {
    ppo_clip o;
    o.clip_ratio_c = 3.0;
    o.clamp_log_ratio = true;
    return o;
  }
  // DAPO clip-higher: epsilon_low 0.2, epsilon_high 0.28.
  static ppo_clip dapo() {
    ppo_clip o;
    o.epsilon_high = 0.28;
    return o;
  }

  void validate(const char* function) const {
    detail::require_in_range(function, "epsilon_low", epsilon_low, 0.0, 1.0, "[0, 1]");
    detail::require_in_range(function, "epsilon_high", epsilon_high, 0.0, std::numeric_limits<double>::max(),
                             "[0, inf)");
    if (clip_ratio_c)
      detail::require(*clip_ratio_c > 1.0 && std::isfinite(*clip_ratio_c), function, ": clip_ratio_c = ",
                      *clip_ratio_c, " must be a finite number greater than 1 (dual-clip PPO)");
    if (delta)
      detail::require(*delta > 0.0 && std::isfinite(*delta), function, ": delta = ", *delta,
                      " must be a positive finite number (TRL recommends > 1 + epsilon)");
  }

 private:
  auto token_fn() const {
    constexpr double off = std::numeric_limits<double>::infinity();
    return [this, d = delta.value_or(off), c = clip_ratio_c.value_or(off)](index_t, index_t, double logp,
                                                                           double old_logp, double adv) {
      const auto r = detail::log_ratio(logp, old_logp, clamp_log_ratio);
      const double rho = std::exp(r.value);
      const auto s = detail::clipped_surrogate(rho, adv, 1 - epsilon_low, 1 + epsilon_high, d, c);
      detail::token_terms k;
      k.loss = s.loss;
      k.dloss_dlogp = s.dloss_dratio * rho * r.slope;
      k.log_ratio = r.value;
      k.ratio = rho;
      k.low = s.low;
      k.high = s.high;
      k.clipped = s.low || s.high;
      k.dual = s.dual;
      return k;
    };
  }

 public:
  // (the private helpers come first: nvcc's front end cannot deduce token_fn's type from a later definition)
  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    validate("ppo_clip::loss");
    detail::check_loss_args("ppo_clip::loss", in, per_token_loss);
    return detail::elementwise_loss(in, per_token_loss, token_fn());
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    validate("ppo_clip::backward");
    detail::check_backward_args("ppo_clip::backward", in, g, dlogp);
    detail::elementwise_backward(in, g, dlogp, token_fn());
  }
};

static_assert(PolicyObjective<ppo_clip, float> && PolicyObjective<ppo_clip, double>);

}  // namespace lmrl
