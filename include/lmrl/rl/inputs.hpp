// The batch an RL loss is computed on, and the concepts that connect the
// pieces of rl/: advantage estimators, KL estimators, policy objectives and
// loss aggregations.
//
// Shapes: per-token quantities are [sequences x tokens] with a 0/1 mask of the
// same shape; per-sequence quantities are [sequences]; a group is a run of
// group_size consecutive sequences that share a prompt. An empty view
// (data == nullptr) means "not given".
#pragma once

#include <concepts>
#include <cstddef>
#include <limits>

#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// ---------------------------------------------------------------- advantages

template <Real T>
struct advantage_inputs {
  vector_view<const T> scores;           // [B] task reward per sequence; NaN = missing
  matrix_view<const T> mask;             // [B x T] completion tokens
  index_t group_size = 1;                // sequences per prompt
  matrix_view<const T> token_rewards{};  // [B x T] per-token rewards (REINFORCE++, GAE), optional
  matrix_view<const T> values{};         // [B x T] critic values V(s_t) (GAE), optional
  vector_view<const T> baseline_scores{};  // [B] reward of a baseline completion (ReMax greedy), optional
  matrix_view<const T> reward_components{};  // [B x K] one column per reward rule (GDPO), optional
};

// What an estimator saw, so a trainer can log it or drop groups (DAPO).
struct advantage_report {
  index_t groups = 0;
  index_t uniform_groups = 0;   // groups whose rewards are all equal: zero advantage
  index_t missing_scores = 0;   // NaN scores, left out of the baselines
};

// out[i, t] = advantage of token t of sequence i; 0 where the mask is 0.
template <class E, class T>
concept AdvantageEstimator = Real<T> && requires(const E& e, const advantage_inputs<T>& in, matrix_view<T> out) {
  { e(in, out) } -> std::same_as<advantage_report>;
};

// ---------------------------------------------------------------- KL

// A per-token estimator of KL(pi_theta || pi_ref) from the two log-probs of the
// sampled token, with its derivative with respect to logp (the policy's).
template <class K, class T>
concept KLEstimator = Real<T> && requires(const K& k, T logp, T ref_logp) {
  { k.value(logp, ref_logp) } -> std::convertible_to<T>;
  { k.gradient(logp, ref_logp) } -> std::convertible_to<T>;
};

// ---------------------------------------------------------------- objectives

template <Real T>
struct policy_inputs {
  matrix_view<const T> logp;        // [B x T] log pi_theta(o_t | q, o_<t): the variable
  matrix_view<const T> old_logp;    // [B x T] log pi_old, the policy that sampled (== logp when on-policy)
  matrix_view<const T> advantages;  // [B x T]
  matrix_view<const T> mask;        // [B x T]
  matrix_view<const T> entropy{};   // [B x T] token entropy, for entropy terms and masking (optional)
  // [B x T] rollout-correction weights (rl/rollout_correction.hpp), optional: they multiply the objective's
  // per-token loss and carry no gradient (TRL importance_sampling_ratio, verl rollout_is_weights).
  matrix_view<const T> rollout_weights{};
};

// Statistics over active tokens, as TRL and verl log them.
struct objective_stats {
  index_t active_tokens = 0;
  double clip_fraction_low = 0;   // ratio < 1 - epsilon_low with A < 0 (clipped from below)
  double clip_fraction_high = 0;  // ratio > 1 + epsilon_high with A > 0 (clipped from above)
  double clip_fraction = 0;       // the two together
  double clip_fraction_dual = 0;  // dual clip active: A < 0 and -A ratio above -A clip_ratio_c (verl pg_clipfrac_lower)
  double cov_fraction = 0;        // tokens picked by Clip-Cov / KL-Cov (verl's pg_clipfrac for clip_cov)
  double approx_kl = 0;           // mean of old_logp - logp (verl ppo_kl, the k1 estimator of KL(old || theta))
  double ratio_mean = 0;
  double ratio_min = std::numeric_limits<double>::infinity();
  double ratio_max = -std::numeric_limits<double>::infinity();
};

// A policy objective writes its per-token loss l[i, t] (0 where masked) and,
// given upstream weights g[i, t] = dL/dl[i, t], the gradient of L with respect
// to logp. Most objectives are elementwise; sequence-level ones (GSPO, GMPO)
// couple the tokens of a sequence, which is why backward takes g.
template <class O, class T>
concept PolicyObjective = Real<T> && requires(const O& o, const policy_inputs<T>& in, matrix_view<T> out,
                                              matrix_view<const T> g) {
  { o.loss(in, out) } -> std::same_as<objective_stats>;
  { o.backward(in, g, out) };
};

// ---------------------------------------------------------------- aggregation

// Counts of the whole batch an optimizer step covers, so that a micro-batch's
// share of the loss is the same whatever the accumulation split (TRL #3021).
// Zero means "this micro-batch alone".
struct batch_totals {
  index_t sequences = 0;      // sequences in the whole step
  index_t active_tokens = 0;  // active tokens in the whole step
};

// Reduces a per-token loss to a scalar linearly: L = sum w[i, t] l[i, t].
// weights() writes w (0 where masked); the loss's gradient with respect to l is w.
template <class A, class T>
concept LossAggregation = Real<T> && requires(const A& a, matrix_view<const T> mask, batch_totals totals,
                                              matrix_view<T> w) {
  { a.weights(mask, totals, w) };
};

}  // namespace lmrl
