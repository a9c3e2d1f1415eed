// lmrl_demo: one GRPO loss step of the algorithm core on a realistic batch,
// printed step by step.
//
// 4 prompts x a group of 8 completions of up to 24 tokens, over Qwen3's
// 151,936-token vocabulary. A "policy" here is a synthetic logit generator (the
// bundled transformer comes later): the sampling policy, the current policy
// (a small step away from it) and the reference policy each give logits for
// every position. The demo then does what a trainer does with them:
//
//   rewards -> GRPO advantages -> log-probs (fused, streamed over the vocabulary)
//   -> PPO-clip objective + beta * k3 KL, aggregated as TRL's "grpo" loss
//   -> dL/dlogp -> dL/dlogits (fused backward)
//
// Nothing of size [tokens x vocab] is ever held: logits are made and consumed
// one completion at a time.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "lmrl/rl/advantages.hpp"
#include "lmrl/rl/aggregation.hpp"
#include "lmrl/rl/kl.hpp"
#include "lmrl/rl/kl_exact.hpp"
#include "lmrl/rl/logprob.hpp"
#include "lmrl/rl/objectives.hpp"
#include "lmrl/rl/policy_loss.hpp"
#include "lmrl/tensor.hpp"

namespace {

constexpr lmrl::index_t prompts = 4, group = 8, batch = prompts * group, max_tokens = 24, vocab = 151936;

// A counter-based hash: the same (seed, i) gives the same number everywhere.
double uniform01(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + i;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

// Logits of one position under the sampling policy (shift = 0) or a policy a
// small step away from it (shift = the step's seed): a peaked distribution
// whose favourite token depends on the position, plus noise.
void synthetic_logits(lmrl::index_t seq, lmrl::index_t pos, std::uint64_t shift, float* row) {
  const std::uint64_t base = static_cast<std::uint64_t>(seq * max_tokens + pos) * vocab;
  const auto favourite = static_cast<lmrl::index_t>(uniform01(7, base) * vocab);
  for (lmrl::index_t v = 0; v < vocab; ++v) {
    float z = static_cast<float>(4.0 * uniform01(1, base + v));
    if (shift) z += static_cast<float>(0.3 * (uniform01(shift, base + v) - 0.5));
    row[v] = z;
  }
  row[favourite] += 16.0f;
}

}  // namespace

int main() {
  using lmrl::index_t;
  std::printf("lmrl demo: %td prompts x group %td = %td completions, up to %td tokens, vocabulary %td\n\n", prompts,
              group, batch, max_tokens, vocab);

  // 1. Completions: lengths and the mask, the sampled tokens, and rule rewards
  //    (1 = correct answer). Prompt difficulty varies: one is always solved.
  lmrl::dense<float, 2> mask({batch, max_tokens});
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(batch * max_tokens));
  std::vector<float> rewards(batch);
  const double solve_rate[prompts] = {0.25, 0.5, 1.0, 0.75};
  for (index_t i = 0; i < batch; ++i) {
    const auto length = static_cast<index_t>(8 + uniform01(3, i) * (max_tokens - 8));
    for (index_t t = 0; t < length; ++t) mask(i, t) = 1;
    rewards[i] = uniform01(4, i) < solve_rate[i / group] ? 1.0f : 0.0f;
  }
  std::printf("1. rewards per group:\n");
  for (index_t g = 0; g < prompts; ++g) {
    std::printf("   prompt %td:", g);
    for (index_t k = 0; k < group; ++k) std::printf(" %.0f", rewards[g * group + k]);
    std::printf("\n");
  }

  // 2. Advantages: GRPO (TRL defaults: group std, unbiased, +1e-4), Dr. GRPO and RLOO.
  std::vector<float> grpo(batch), dr_grpo(batch), rloo(batch);
  const auto report = lmrl::grpo_sequence_advantages(rewards, group, lmrl::grpo_scale::group_std, grpo);
  lmrl::grpo_sequence_advantages(rewards, group, lmrl::grpo_scale::none, dr_grpo);
  lmrl::rloo_sequence_advantages(rewards, group, rloo);
  std::printf("\n2. advantages of prompt 0 (GRPO / Dr. GRPO / RLOO); %td of %td groups are uniform (zero advantage)\n",
              report.uniform_groups, report.groups);
  for (index_t k = 0; k < group; ++k)
    std::printf("   completion %td: reward %.0f  %+.4f  %+.4f  %+.4f\n", k, rewards[k], grpo[k], dr_grpo[k], rloo[k]);

  // 3. Log-probs of the sampled tokens under the three policies, one completion
  //    at a time: [max_tokens x vocab] logits at most, never [batch x tokens x vocab].
  lmrl::dense<float, 2> old_logp({batch, max_tokens}), logp({batch, max_tokens}), ref_logp({batch, max_tokens}),
      entropy({batch, max_tokens}), advantages({batch, max_tokens});
  std::vector<float> logits(static_cast<std::size_t>(max_tokens * vocab));
  std::vector<float> ref_logits(static_cast<std::size_t>(max_tokens * vocab));
  std::vector<double> lse(max_tokens);
  std::vector<float> exact_kl(max_tokens);
  double exact_kl_sum = 0;
  index_t active = 0;
  for (index_t i = 0; i < batch; ++i) {
    std::span<std::int32_t> sampled(tokens.data() + i * max_tokens, static_cast<std::size_t>(max_tokens));
    lmrl::matrix_view<const float> rows(logits.data(), {max_tokens, vocab});
    for (index_t t = 0; t < max_tokens; ++t) {
      synthetic_logits(i, t, 0, logits.data() + t * vocab);
      // The sampler's choice: the favourite token most of the time.
      const float* row = logits.data() + t * vocab;
      index_t best = 0;
      for (index_t v = 1; v < vocab; ++v) best = row[v] > row[best] ? v : best;
      sampled[static_cast<std::size_t>(t)] =
          static_cast<std::int32_t>(uniform01(5, static_cast<std::uint64_t>(i * max_tokens + t)) < 0.9 ? best : t);
      advantages(i, t) = mask(i, t) * grpo[static_cast<std::size_t>(i)];
    }
    std::span<const std::int32_t> ids(sampled);
    lmrl::logprob_forward(rows, ids, 1.0, old_logp.view().row(i), lmrl::vector_view<float>{}, lmrl::vector_view<double>{});
    for (index_t t = 0; t < max_tokens; ++t) synthetic_logits(i, t, 11, logits.data() + t * vocab);
    lmrl::logprob_forward(rows, ids, 1.0, logp.view().row(i), entropy.view().row(i),
                          lmrl::vector_view<double>(lse.data(), {max_tokens}));
    for (index_t t = 0; t < max_tokens; ++t) synthetic_logits(i, t, 13, ref_logits.data() + t * vocab);
    lmrl::matrix_view<const float> ref_rows(ref_logits.data(), {max_tokens, vocab});
    lmrl::logprob_forward(ref_rows, ids, 1.0, ref_logp.view().row(i), lmrl::vector_view<float>{},
                          lmrl::vector_view<double>{});
    // The exact KL(pi_theta || pi_ref) over the whole vocabulary, to compare with k3's estimate.
    lmrl::exact_kl(rows, ref_rows, exact_kl);
    for (index_t t = 0; t < max_tokens; ++t)
      if (mask(i, t) != 0) exact_kl_sum += exact_kl[static_cast<std::size_t>(t)], ++active;
  }
  std::printf("\n3. log-probs over %td active tokens: mean log pi_theta %.4f, mean entropy %.4f nats\n", active,
              [&] {
                double s = 0;
                for (index_t i = 0; i < batch; ++i)
                  for (index_t t = 0; t < max_tokens; ++t) s += mask(i, t) * logp(i, t);
                return s / static_cast<double>(active);
              }(),
              [&] {
                double s = 0;
                for (index_t i = 0; i < batch; ++i)
                  for (index_t t = 0; t < max_tokens; ++t) s += mask(i, t) * entropy(i, t);
                return s / static_cast<double>(active);
              }());

  // 4. The loss: PPO clip (TRL defaults), beta = 0.04 with k3, TRL's "grpo" aggregation.
  lmrl::composed_policy_loss<lmrl::ppo_clip, lmrl::kl_k3, lmrl::seq_mean_token_mean> loss{};
  loss.beta = 0.04;
  lmrl::policy_inputs<float> in{logp.view(), old_logp.view(), advantages.view(), mask.view(), entropy.view(), {}};
  lmrl::dense<float, 2> grad_logp({batch, max_tokens}), no_entropy_grad;
  const auto result = loss(in, lmrl::matrix_view<const float>(ref_logp.view()), lmrl::batch_totals{}, grad_logp,
                           no_entropy_grad);
  std::printf("\n4. loss %.6f = policy %.6f + beta * KL %.6f\n", result.loss, result.policy_loss, result.kl_loss);
  std::printf("   clip fraction %.3f (low %.3f, high %.3f), ratio in [%.3f, %.3f], mean %.4f\n",
              result.stats.clip_fraction, result.stats.clip_fraction_low, result.stats.clip_fraction_high,
              result.stats.ratio_min, result.stats.ratio_max, result.stats.ratio_mean);
  std::printf("   KL to the reference: k3 estimate %.5f, exact over the vocabulary %.5f\n", result.mean_kl,
              exact_kl_sum / static_cast<double>(active));

  // 5. Back to the logits of completion 0: one fused pass writes dL/dlogits.
  {
    std::span<const std::int32_t> ids(tokens.data(), static_cast<std::size_t>(max_tokens));
    for (index_t t = 0; t < max_tokens; ++t) synthetic_logits(0, t, 11, logits.data() + t * vocab);
    lmrl::matrix_view<const float> rows(logits.data(), {max_tokens, vocab});
    lmrl::logprob_forward(rows, ids, 1.0, lmrl::dense<float, 1>({max_tokens}).view(), lmrl::vector_view<float>{},
                          lmrl::vector_view<double>(lse.data(), {max_tokens}));
    std::vector<float> grad_logits(logits.size());
    lmrl::logprob_backward(rows, ids, 1.0, lmrl::vector_view<const double>(lse.data(), {max_tokens}),
                           lmrl::vector_view<const float>{}, lmrl::matrix_view<const float>(grad_logp.view()).row(0),
                           lmrl::vector_view<const float>{},
                           lmrl::matrix_view<float>(grad_logits.data(), {max_tokens, vocab}));
    double norm = 0, row_sum = 0;
    for (index_t v = 0; v < vocab; ++v) row_sum += grad_logits[static_cast<std::size_t>(v)];
    for (float g : grad_logits) norm += static_cast<double>(g) * g;
    std::printf("\n5. dL/dlogits of completion 0: norm %.3e; each row sums to %.1e (softmax gradients do)\n",
                std::sqrt(norm), row_sum);
  }
  return 0;
}
