// SAPO (soft adaptive policy optimization, arXiv 2511.20347): a smooth
// sigmoid gate in place of the hard clip, with a separate temperature for
// positive and non-positive advantages (TRL loss_type="sapo", verl
// compute_policy_loss_sapo):
//
//   tau = tau_pos if A > 0 else tau_neg
//   f   = sigmoid(tau (rho - 1)) * 4 / tau        (f(1) = 2/tau, f'(1) = 1)
//   l   = -f A
//   dl/dlogp = -A * 4 sigma (1 - sigma) * rho
//
// TRL names the temperatures sapo_temperature_pos / _neg, verl tau_pos / tau_neg;
// both default to 1.0 / 1.05. verl clamps the log-ratio to [-20, 20], TRL not.
#pragma once

#include <cmath>
#include <limits>

#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/common.hpp"

namespace lmrl {

struct sapo {
  double tau_pos = 1.0;   // TRL sapo_temperature_pos / verl tau_pos, both 1.0
  double tau_neg = 1.05;  // TRL sapo_temperature_neg / verl tau_neg, both 1.05
  bool clamp_log_ratio = false;  // verl clamps logp - old_logp to [-20, 20]; TRL does not

  void validate(const char* function) const {
    detail::require(tau_pos > 0 && std::isfinite(tau_pos), function, ": tau_pos = ", tau_pos,
                    " must be a positive finite temperature");
    detail::require(tau_neg > 0 && std::isfinite(tau_neg), function, ": tau_neg = ", tau_neg,
                    " must be a positive finite temperature");
  }

 private:
  static double sigmoid(double x) {
    if (x >= 0) return 1 / (1 + std::exp(-x));
    const double e = std::exp(x);
    return e / (1 + e);
  }

  auto token_fn() const {
    return [this](index_t, index_t, double logp, double old_logp, double adv) {
      const auto r = detail::log_ratio(logp, old_logp, clamp_log_ratio);
      const double rho = std::exp(r.value);
      const double tau = adv > 0 ? tau_pos : tau_neg;
      const double sig = sigmoid(tau * (rho - 1));
      detail::token_terms k;
      k.loss = -(sig * 4 / tau) * adv;  // TRL: -(sigmoid(tau (rho - 1)) * 4 / tau) * A
      k.dloss_dlogp = -adv * 4 * sig * (1 - sig) * rho * r.slope;
      k.log_ratio = r.value;
      k.ratio = rho;
      return k;
    };
  }

 public:
  // (the private helpers come first: nvcc's front end cannot deduce token_fn's type from a later definition)
  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    validate("sapo::loss");
    detail::check_loss_args("sapo::loss", in, per_token_loss);
    return detail::elementwise_loss(in, per_token_loss, token_fn());
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    validate("sapo::backward");
    detail::check_backward_args("sapo::backward", in, g, dlogp);
    detail::elementwise_backward(in, g, dlogp, token_fn());
  }
};

static_assert(PolicyObjective<sapo, float> && PolicyObjective<sapo, double>);

}  // namespace lmrl
