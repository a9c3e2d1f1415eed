// The bigram GRPO fixtures shared by the trainer tests and the data-parallel
// tests: two reward rules, a small config that exercises the reference, two
// iterations and accumulation, quiet options, and the record comparison.
#pragma once

#include <array>
#include <string>
#include <utility>

#include "lmrl/reward/weighted_sum.hpp"
#include "lmrl/train/grpo_trainer.hpp"
#include "train/tiny_policy.hpp"

namespace lmrl::testing {

// Component 0: the first completion token is 'c' (the "accuracy");
// component 1: the completion ends with the end-of-text token.
inline auto first_is_c = [](const reward_context& c) { return !c.completion.empty() && c.completion[0] == 'c' ? 1.0 : 0.0; };
inline auto ends = [](const reward_context& c) { return !c.completion.empty() && c.completion.back() == '$' ? 1.0 : 0.0; };

template <class R>
weighted_sum<R> one_rule(R r) {
  return weighted_sum<R>(std::move(r));
}

inline auto make_rewards() { return weighted_sum(std::array<double, 2>{1.0, 0.25}, first_is_c, ends); }

inline grpo_config small_config(const std::string& dir) {
  grpo_config c;
  c.output_dir = dir;
  c.num_generations = 4;
  c.per_device_train_batch_size = 8;
  c.gradient_accumulation_steps = 2;  // generation batch 16 = 4 prompts x 4
  c.max_completion_length = 4;
  c.learning_rate = 0.05;
  c.lr_scheduler_type = "constant";
  c.max_steps = 12;
  c.beta = 0.04;          // exercises the reference log-probs
  c.num_iterations = 2;   // exercises recomputed old log-probs and two optimizer steps per step
  c.logging_steps = 1000;
  c.save_steps = 0;
  c.seed = 11;
  return c;
}

inline grpo_trainer_options quiet_options(std::size_t components) {
  grpo_trainer_options o;
  if (components == 2) o.reward_names = {"first_is_c", "ends"};
  o.encode = bigram_encode;
  o.decode = bigram_decode;
  o.terminal = nullptr;
  o.write_report = false;
  return o;
}

template <class Rewards>
auto make_trainer(const grpo_config& c, bigram_policy& m, Rewards r, int* calls = nullptr,
                  any_communicator communicator = {}) {
  grpo_trainer_options o = quiet_options(Rewards::size);
  o.communicator = std::move(communicator);
  return grpo_trainer<bigram_policy, bigram_generator, Rewards, bigram_prompts>(c, m, bigram_generator{calls}, r,
                                                                                bigram_prompts{}, o);
}

inline bool same_except_timing(const metrics_record& a, const metrics_record& b) {
  metrics_record x, y;
  for (const auto& [k, v] : a.entries())
    if (k.rfind("time/", 0) != 0 && k.rfind("tokens_per_s/", 0) != 0 && k.rfind("memory/", 0) != 0) x.set(k, v);
  for (const auto& [k, v] : b.entries())
    if (k.rfind("time/", 0) != 0 && k.rfind("tokens_per_s/", 0) != 0 && k.rfind("memory/", 0) != 0) y.set(k, v);
  return x == y;
}

template <class Rewards>
auto make_ppo_trainer(const grpo_config& c, bigram_policy& m, bigram_critic& critic, Rewards r,
                      any_communicator communicator = {}) {
  grpo_trainer_options o = quiet_options(Rewards::size);
  o.communicator = std::move(communicator);
  return ppo_trainer<bigram_policy, bigram_generator, Rewards, bigram_prompts, bigram_critic>(
      c, m, critic, bigram_generator{}, r, bigram_prompts{}, o);
}
inline grpo_config ppo_config(const std::string& dir) {
  grpo_config c = small_config(dir);
  c.advantage_estimator = "gae";
  c.beta = 0;
  c.kl_coef = 0.05;  // KL in the reward, as TRL's PPO
  c.lam = 0.95;
  c.vf_coef = 0.5;
  c.critic_learning_rate = 0.1;
  return c;
}

}  // namespace lmrl::testing
