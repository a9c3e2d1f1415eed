// The loss a trainer minimizes on one micro-batch, composed from a policy
// objective, an optional KL penalty to a reference policy, an optional entropy
// bonus and a loss aggregation:
//
//   l[i, t] = c[i, t] objective[i, t] + beta * kl(logp[i, t], ref_logp[i, t]) - entropy_coeff * H[i, t]
//   L       = sum_{i,t} w[i, t] l[i, t]          (w from the aggregation, 0 where masked)
//
//   dL/dlogp[i, t] = objective.backward(g = w c) + beta * w * dkl/dlogp
//
// c is the rollout correction's weight (in.rollout_weights; 1 when empty): it
// scales the objective term only, with no gradient of its own, as TRL
// (per_token_loss * importance_sampling_ratio, before the KL is added) and verl
// (pg_losses * rollout_is_weights) apply it.
//   dL/dH[i, t]    = -entropy_coeff * w
//
// This is verl's ppo_loss (pg_loss + kl_loss_coef * agg_loss(kl) -
// entropy_coeff * agg_loss(entropy), every term with the same loss_agg_mode)
// and TRL's _compute_loss (per_token_loss + beta * per_token_kl, aggregated by
// loss_type). TRL differs for the entropy bonus: it is always a token mean of
// the micro-batch divided by the accumulation steps, whatever loss_type is; use
// the token_mean aggregation to get it, or add the bonus yourself.
//
// (The struct is composed_policy_loss: lmrl::policy_loss is the objectives'
// per-token helper in rl/objectives/common.hpp.)
#pragma once

#include <cstddef>
#include <limits>

#include "lmrl/error.hpp"
#include "lmrl/rl/aggregation.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// The KL estimator of a loss without a KL term: 0, with gradient 0.
struct no_kl {
  template <Real T>
  T value(T, T) const {
    return T(0);
  }
  template <Real T>
  T gradient(T, T) const {
    return T(0);
  }
};
static_assert(KLEstimator<no_kl, float> && KLEstimator<no_kl, double>);

// Caller storage for the two per-token intermediates (no allocation in the hot
// path). After the call, per_token holds the composed per-token loss l and
// weights holds w = dL/dl.
template <Real T>
struct composed_loss_scratch {
  matrix_view<T> per_token;  // [B x T]
  matrix_view<T> weights;    // [B x T]
};

// The value of the loss and what TRL and verl log beside it.
struct composed_loss_result {
  double loss = 0;          // L
  double policy_loss = 0;   // the objective term alone, aggregated (TRL policy_loss, verl actor/pg_loss)
  double kl_loss = 0;       // the KL aggregated like the loss, before beta (verl actor/kl_loss)
  double entropy_loss = 0;  // the entropy aggregated like the loss, before the coefficient (verl actor/entropy_loss)
  double mean_kl = 0;       // mean KL over the active tokens of this micro-batch (TRL "kl")
  double mean_entropy = 0;  // mean entropy over the active tokens of this micro-batch (TRL "entropy"), if given
  objective_stats stats;    // from the objective: clip fractions, ratio statistics
};

template <class Objective, class KL = no_kl, class Aggregation = token_mean>
struct composed_policy_loss {
  Objective objective{};
  KL kl{};
  Aggregation aggregation{};
  double beta = 0;           // KL coefficient: TRL GRPOConfig.beta (default 0.0), verl kl_loss_coef (0.001 when used)
  double entropy_coeff = 0;  // entropy bonus: TRL entropy_coef, verl entropy_coeff (both default 0)

  // L and its gradients for one micro-batch. ref_logp is needed when beta != 0
  // (else it may be empty); in.entropy and grad_entropy when entropy_coeff != 0
  // (grad_entropy may be empty otherwise; if given it is written, 0 then).
  // grad_logp is overwritten, 0 where masked. totals describe the whole step.
  template <Real T>
    requires PolicyObjective<Objective, T> && KLEstimator<KL, T> && LossAggregation<Aggregation, T>
  composed_loss_result operator()(const policy_inputs<T>& in, matrix_view<const T> ref_logp, batch_totals totals,
                                matrix_view<T> grad_logp, matrix_view<T> grad_entropy,
                                composed_loss_scratch<T> scratch) const {
    const char* f = "composed_policy_loss";
    const auto& mask = in.mask;
    detail::require_same_shape(f, "mask", mask, "logp", in.logp);
    detail::require_same_shape(f, "mask", mask, "grad_logp", grad_logp);
    detail::require_same_shape(f, "mask", mask, "scratch.per_token", scratch.per_token);
    detail::require_same_shape(f, "mask", mask, "scratch.weights", scratch.weights);
    const bool use_kl = beta != 0;
    const bool use_entropy = entropy_coeff != 0;
    const bool has_entropy = in.entropy.data != nullptr;
    const bool write_grad_entropy = grad_entropy.data != nullptr;
    if (use_kl) {
      detail::require(ref_logp.data != nullptr, f, ": beta = ", beta, " needs ref_logp, which is empty");
      detail::require_same_shape(f, "mask", mask, "ref_logp", ref_logp);
    }
    if (use_entropy) {
      detail::require(has_entropy, f, ": entropy_coeff = ", entropy_coeff, " needs in.entropy, which is empty");
      detail::require(write_grad_entropy, f, ": entropy_coeff = ", entropy_coeff,
                      " needs grad_entropy to write dL/dentropy into, which is empty");
    }
    if (has_entropy) detail::require_same_shape(f, "mask", mask, "entropy", in.entropy);
    const bool corrected = in.rollout_weights.data != nullptr;
    if (corrected) detail::require_same_shape(f, "mask", mask, "rollout_weights", in.rollout_weights);
    if (write_grad_entropy) detail::require_same_shape(f, "mask", mask, "grad_entropy", grad_entropy);

    const matrix_view<T> w = scratch.weights;
    const matrix_view<const T> wc = w;
    aggregation.weights(mask, totals, w);

    composed_loss_result r;
    r.stats = objective.loss(in, scratch.per_token);
    if (corrected) {  // the objective sees w c; w itself is restored for the KL and entropy terms
      for (index_t i = 0; i < mask.shape[0]; ++i)
        for (index_t t = 0; t < mask.shape[1]; ++t) w(i, t) *= in.rollout_weights(i, t);
    }
    r.policy_loss = aggregate<T>(matrix_view<const T>(scratch.per_token), wc);
    objective.backward(in, wc, grad_logp);
    if (corrected) {
      aggregation.weights(mask, totals, w);
      for (index_t i = 0; i < mask.shape[0]; ++i)
        for (index_t t = 0; t < mask.shape[1]; ++t) scratch.per_token(i, t) *= in.rollout_weights(i, t);
    }

    // The KL and entropy terms, elementwise: loss, gradient and logs in one sweep.
    const T beta_t = static_cast<T>(beta), coeff_t = static_cast<T>(entropy_coeff);
    double kl_w = 0, ent_w = 0, kl_sum = 0, ent_sum = 0;
    index_t active = 0;
    for (index_t i = 0; i < mask.shape[0]; ++i)
      for (index_t t = 0; t < mask.shape[1]; ++t) {
        if (mask(i, t) == T(0)) {
          scratch.per_token(i, t) = T(0);
          grad_logp(i, t) = T(0);
          if (write_grad_entropy) grad_entropy(i, t) = T(0);
          continue;
        }
        ++active;
        const T wi = w(i, t);
        T l = scratch.per_token(i, t);
        if (use_kl) {
          const T lp = in.logp(i, t), ref = ref_logp(i, t);
          const T k = static_cast<T>(kl.value(lp, ref));
          l += beta_t * k;
          grad_logp(i, t) += beta_t * wi * static_cast<T>(kl.gradient(lp, ref));
          kl_w += static_cast<double>(wi) * k;
          kl_sum += k;
        }
        if (has_entropy) {
          const T h = in.entropy(i, t);
          if (use_entropy) l -= coeff_t * h;
          ent_w += static_cast<double>(wi) * h;
          ent_sum += h;
        }
        if (write_grad_entropy) grad_entropy(i, t) = -coeff_t * wi;
        scratch.per_token(i, t) = l;
      }
    r.kl_loss = kl_w;
    r.entropy_loss = ent_w;
    r.mean_kl = active > 0 ? kl_sum / static_cast<double>(active) : 0.0;
    r.mean_entropy = active > 0 && has_entropy ? ent_sum / static_cast<double>(active) : 0.0;
    r.loss = r.policy_loss + (use_kl ? beta * r.kl_loss : 0.0) - (use_entropy ? entropy_coeff * r.entropy_loss : 0.0);
    return r;
  }

  // Convenience: gradients into arrays of any backend (pass an empty array for
  // grad_entropy when there is no entropy term); allocates the scratch.
  template <Real T, WritableArray2D G, WritableArray2D H>
    requires PolicyObjective<Objective, T> && KLEstimator<KL, T> && LossAggregation<Aggregation, T> &&
             std::same_as<element_t<G, 2>, T> && std::same_as<element_t<H, 2>, T>
  composed_loss_result operator()(const policy_inputs<T>& in, matrix_view<const T> ref_logp, batch_totals totals,
                                G&& grad_logp, H&& grad_entropy) const {
    dense<T, 2> per_token(in.mask.shape), weights(in.mask.shape);
    matrix_view<T> ge = lmrl::view<2>(grad_entropy);
    if (ge.size() == 0) ge = {};
    return (*this)(in, ref_logp, totals, lmrl::view<2>(grad_logp), ge,
                   composed_loss_scratch<T>{per_token.view(), weights.view()});
  }
};

}  // namespace lmrl
