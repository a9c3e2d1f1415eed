// REINFORCE / GPG: the plain policy gradient, no importance ratio.
//
//   l[i, t] = -A[i, t] * logp[i, t]          dl/dlogp = -A[i, t]
//
// verl compute_policy_loss_gpg (name "gpg"). Exact only on-policy; the ratio
// statistics are still reported (from old_logp when given) for monitoring.
#pragma once

#include <cmath>

#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/common.hpp"

namespace lmrl {

struct reinforce {
  template <Real T>
  objective_stats loss(const policy_inputs<T>& in, matrix_view<T> per_token_loss) const {
    detail::check_loss_args("reinforce::loss", in, per_token_loss);
    return detail::elementwise_loss(in, per_token_loss, token);
  }

  template <Real T>
  void backward(const policy_inputs<T>& in, matrix_view<const T> g, matrix_view<T> dlogp) const {
    detail::check_backward_args("reinforce::backward", in, g, dlogp);
    detail::elementwise_backward(in, g, dlogp, token);
  }

 private:
  static detail::token_terms token(index_t, index_t, double logp, double old_logp, double adv) {
    detail::token_terms k;
    k.loss = -adv * logp;
    k.dloss_dlogp = -adv;
    k.log_ratio = logp - old_logp;
    k.ratio = std::exp(k.log_ratio);
    return k;
  }
};

static_assert(PolicyObjective<reinforce, float> && PolicyObjective<reinforce, double>);

}  // namespace lmrl
