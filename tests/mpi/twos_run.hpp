// The small transformer GRPO run of the MPI tests (test_data_parallel.cpp and
// grpo_run.cpp): a 2-layer GQA model learns to emit token 2 (the reward is the
// share of 2s); 8 prompts x 4 completions a step, two optimizer steps a step.
#pragma once

#include <csignal>
#include <string>
#include <vector>

#include "lmrl/reward/weighted_sum.hpp"
#include "lmrl/train/transformer_policy.hpp"
#include "support/model_shapes.hpp"
#include "support/twos_task.hpp"  // the twos reward

namespace lmrl::testing {

inline constexpr int twos_prompts_per_step = 8;

// prompt(i) is one letter; with kill_rank set, that rank fails as step
// kill_step draws its first prompt: killed by SIGKILL (a crashed machine), or
// with throw_error, an lmrl::error (a bug or bad data on one rank).
struct twos_prompts {
  int rank = 0, kill_rank = -1;
  long long kill_step = -1;
  bool throw_error = false;
  grpo_prompt prompt(std::uint64_t i) const {
    if (rank == kill_rank && static_cast<long long>(i) == (kill_step - 1) * twos_prompts_per_step) {
      if (throw_error) detail::fail("twos_prompts: injected failure on rank ", rank, " at step ", kill_step);
      std::raise(SIGKILL);
    }
    return {std::string(1, static_cast<char>('a' + i % 5)), {}};
  }
};

inline grpo_config twos_config(const std::string& output_dir, long long steps) {
  grpo_config c;
  c.output_dir = output_dir;
  c.max_steps = steps;
  c.learning_rate = 1e-2;
  c.num_generations = 4;
  c.per_device_train_batch_size = 4;
  c.gradient_accumulation_steps = 4;  // mini-batches of 16 sequences
  c.steps_per_generation = 8;         // 8 prompts x 4 = 32 sequences: two optimizer steps a step
  c.max_completion_length = 8;
  c.beta = 0.02;
  c.save_steps = 0;
  c.logging_steps = 100;
  c.seed = 5;
  return c;
}

inline transformer_policy<float> twos_policy() {
  return transformer_policy<float>(transformer<float>(transformer_shape(12, 32, 2, 4, 2, 48), 4, 0.3));
}

inline grpo_trainer_options twos_options(any_communicator communicator) {
  grpo_trainer_options o;
  o.encode = [](std::string_view s) { return std::vector<std::int32_t>{static_cast<std::int32_t>(s[0] - 'a' + 1), 3}; };
  o.decode = [](std::span<const std::int32_t> ids) { return std::string(ids.size(), 'x'); };
  o.terminal = nullptr;
  o.write_report = false;
  o.communicator = std::move(communicator);
  return o;
}

}  // namespace lmrl::testing
