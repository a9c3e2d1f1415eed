// grpo_trainer: the GRPO step (DeepSeekMath / R1-Zero; TRL GRPOTrainer),
// composed from the concepts:
//
//   1. prompts:      P = generation_batch / G prompts, taken by index from a
//                    PromptSource (data cursor = an integer, saved in checkpoints)
//   2. rollouts:     G completions per prompt from a RolloutGenerator, seeded by
//                    (seed, step, round) through a counter-based RNG
//   3. rewards:      every rule of a RewardSet (e.g. reward/weighted_sum), each
//                    component kept for the log, the weighted total for training
//   4. DAPO dynamic sampling (optional): groups whose rewards are all equal are
//                    dropped and new prompts drawn, up to max_refill_rounds
//   5. old log-probs: recomputed by the policy when num_iterations > 1 (or
//                    recompute_old_logprobs), else the sampler's log-probs;
//                    with vllm_importance_sampling_correction, always, and the
//                    rollout correction's weights pi_old / pi_rollout (truncated
//                    or masked) multiply each token's objective in step 9
//   6. ref log-probs: when beta != 0 or kl_coef != 0, the policy with the
//                    reference parameters (a frozen copy of the initial ones;
//                    TRL's sync_ref_model mixes ref = alpha * policy +
//                    (1 - alpha) * ref every ref_model_sync_steps optimizer steps;
//                    train/reference_copy.hpp: on the host, or on the device
//                    of a model that steps there)
//   7. PPO: the critic's values V_old of the rollout; with kl_coef, token
//                    rewards = score at the last token - coef * KL per token
//                    (verl apply_kl_penalty; fixed or adaptive coefficient)
//   8. advantages:   an AdvantageEstimator by name (grpo with scale_rewards,
//                    dr_grpo, rloo, reinforce_pp, reinforce_pp_baseline, gae
//                    with the critic's values, which also gives the returns)
//   9. mu = num_iterations passes over mini-batches: composed_policy_loss with
//                    batch_totals of the mini-batch (so accumulation over
//                    micro-batches equals one big batch), policy.backward,
//                    global-norm clipping, AdamW, the HF LR schedule; with a
//                    critic, the clipped value loss on the returns, its own
//                    clipping, AdamW and schedule (critic_learning_rate)
//
// PPO is this trainer with a critic (ppo_trainer below): the same rollouts,
// rewards, logging and checkpoints, GAE instead of group baselines.
//
// Every random choice is a function of (seed, step, round, sequence, position),
// so a run resumed from a checkpoint produces the same records as one that
// was never interrupted.
//
// Data-parallel (options.communicator with several ranks, dist/): each round's
// prompts are split by group over the ranks, each rank generates and scores
// its groups (the RNG keyed by the global sequence number), and the scored
// rollouts are all-gathered, so every rank holds the whole batch and computes
// dynamic sampling, the KL penalty and the advantages exactly as one process
// would. The old/reference log-probs and the critic's values are computed
// for a slice of the rows on each rank and all-gathered. Each mini-batch's
// rows are split over the ranks; the loss uses the whole mini-batch's totals,
// so the summed (all-reduced) gradient is the one-process gradient up to the
// order of float additions, and every rank takes the same optimizer step.
// Rank 0 writes the checkpoints, the log and the report. A step whose rewards are all NaN, or a loss or
// gradient norm that is not finite, throws lmrl::error before the optimizer
// touches the parameters; the last checkpoint on disk is left as it was.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/dist/any_communicator.hpp"
#include "lmrl/dist/byte_pack.hpp"
#include "lmrl/error.hpp"
#include "lmrl/model/safetensors.hpp"
#include "lmrl/reward/rule.hpp"
#include "lmrl/rl/advantages/gae.hpp"
#include "lmrl/rl/advantages/grpo.hpp"
#include "lmrl/rl/advantages/reinforce_pp.hpp"
#include "lmrl/rl/advantages/rloo.hpp"
#include "lmrl/rl/advantages/whiten.hpp"
#include "lmrl/rl/aggregation.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/kl.hpp"
#include "lmrl/rl/kl_controller.hpp"
#include "lmrl/rl/objectives/by_name.hpp"
#include "lmrl/rl/policy.hpp"
#include "lmrl/rl/policy_loss.hpp"
#include "lmrl/rl/rollout_correction.hpp"
#include "lmrl/rl/value_loss.hpp"
#include "lmrl/sample/sampler_config.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/view.hpp"
#include "lmrl/train/adamw.hpp"
#include "lmrl/train/checkpoint.hpp"
#include "lmrl/train/clip_grad.hpp"
#include "lmrl/train/grpo_config.hpp"
#include "lmrl/train/metrics_log.hpp"
#include "lmrl/train/optimizer_step.hpp"
#include "lmrl/train/reference_copy.hpp"
#include "lmrl/train/report.hpp"
#include "lmrl/train/schedule.hpp"
#include "lmrl/train/signals.hpp"

namespace lmrl {

// ---------------------------------------------------------------- interfaces

// One training prompt: its text and the accepted answers (for rules that check them).
struct grpo_prompt {
  std::string text;
  std::vector<std::string> answers;
};

// Prompts addressed by an index: prompt(i) must depend only on i (and the
// source's own seed), so a data cursor of one integer reproduces the stream.
template <class P>
concept PromptSource = requires(const P& p, std::uint64_t i) {
  { p.prompt(i) } -> std::convertible_to<grpo_prompt>;
};

// What the trainer asks of a generator for one round.
struct rollout_request {
  index_t num_generations = 1;  // consecutive sequences per prompt
  index_t max_new_tokens = 1;
  sampler_config sampling{};
  std::uint64_t seed = 0;  // a counter-based RNG key: draws depend on (seed, sequence, position) only
  // The RNG's sequence number of the request's first sequence: a round split
  // over data-parallel ranks draws the same tokens as one process.
  std::uint64_t first_sequence = 0;
};

// G completions per prompt, prompt-major (sequence b comes from prompt b / G).
template <Real T>
struct rollout_batch {
  std::vector<std::vector<std::int32_t>> completions;  // completion token ids (EOS included when emitted)
  std::vector<std::vector<T>> logprobs;  // log pi_sampling of each completion token under softmax(logits / temperature)
  std::vector<bool> truncated;           // stopped by max_new_tokens
};

// TrainablePolicy (rl/policy.hpp): what the trainer optimizes.

template <class G, class M>
concept RolloutGenerator = requires(G& g, M& m, std::span<const std::vector<std::int32_t>> prompts,
                                    const rollout_request& r) {
  { g(m, prompts, r) } -> std::same_as<rollout_batch<typename M::value_type>>;
};

// PPO's value model: values V[i, t] at the log-prob positions (the value of
// the state in which token t is chosen), the backward of a loss on them, and
// one flat parameter / gradient buffer (transformer_critic is one).
template <class C>
concept ValueModel = requires(C& c, const token_batch<typename C::value_type>& batch,
                              matrix_view<typename C::value_type> out,
                              matrix_view<const typename C::value_type> grad) {
  { c.values(batch, out) };
  { c.backward_values(batch, grad) };
  { c.parameters() } -> std::same_as<std::span<typename C::value_type>>;
  { c.gradients() } -> std::same_as<std::span<typename C::value_type>>;
  { c.zero_grad() };
};

// The critic of a trainer without one (GRPO and its family); never called.
template <Real T>
struct no_critic {
  using value_type = T;
  void values(const token_batch<T>&, matrix_view<T>) { detail::fail("no_critic::values"); }
  void backward_values(const token_batch<T>&, matrix_view<const T>) { detail::fail("no_critic::backward_values"); }
  std::span<T> parameters() { return {}; }
  std::span<T> gradients() { return {}; }
  void zero_grad() {}
};

// Several reward rules with per-component values and a total (reward/weighted_sum is one).
template <class R>
concept RewardSet = requires(const R& r, const reward_context& ctx, const std::array<double, R::size>& v) {
  { r.components(ctx) } -> std::same_as<std::array<double, R::size>>;
  { r.total(v) } -> std::convertible_to<double>;
};

// ---------------------------------------------------------------- run-time choices

// The advantage estimator named by grpo_config (advantage_estimator, scale_rewards).
struct any_grpo_advantage {
  std::string name = "grpo";
  grpo_advantage grpo{};
  double gamma = 1.0, lam = 0.95;  // reinforce_pp, gae

  static any_grpo_advantage from_config(const grpo_config& c) {
    any_grpo_advantage a;
    a.name = c.advantage_estimator;
    a.gamma = c.gamma;
    a.lam = c.lam;
    // TRL scale_rewards: "group" (also True), "batch", "none" (also False).
    if (c.scale_rewards == "batch") a.grpo.scale = grpo_scale::batch_std;
    if (c.scale_rewards == "none" || c.scale_rewards == "false") a.grpo.scale = grpo_scale::none;
    if (c.advantage_estimator == "dr_grpo") a.grpo.scale = grpo_scale::none;  // Dr. GRPO: no std division
    return a;
  }
  // Token-level estimators read in.token_rewards (the KL penalty in the reward);
  // the others read one score per sequence.
  bool token_level() const { return name == "reinforce_pp" || name == "gae"; }
  bool needs_critic() const { return name == "gae"; }

  // returns: GAE's regression targets for the critic (data == nullptr: not wanted).
  template <Real T>
  advantage_report operator()(const advantage_inputs<T>& in, matrix_view<T> out, matrix_view<T> returns = {}) const {
    if (name == "rloo") return rloo_advantage{}(in, out);
    if (name == "reinforce_pp") return reinforce_pp_advantage{gamma}(in, out);
    if (name == "reinforce_pp_baseline") return reinforce_pp_baseline_advantage{}(in, out);
    if (name == "gae") return gae_advantage{gamma, lam, true}(in, out, returns);
    return grpo(in, out);
  }
};

// The objective named by grpo_config, with TRL's clip settings applied
// (importance_sampling_level "sequence" turns "ppo" into GSPO, as in TRL).
inline any_objective objective_from_config(const grpo_config& c) {
  std::string name = c.objective;
  if (c.importance_sampling_level == "sequence" && (name == "ppo" || name == "grpo" || name == "vanilla"))
    name = "gspo";
  any_objective o = make_objective(name);
  if (auto* p = std::get_if<ppo_clip>(&o.objective)) {
    p->epsilon_low = c.epsilon_low();
    p->epsilon_high = c.epsilon_high_value();
    p->delta = c.delta;
  } else if (auto* g = std::get_if<gspo>(&o.objective)) {
    g->epsilon_low = c.epsilon_low();
    g->epsilon_high = c.epsilon_high_value();
    g->delta = c.delta;
  }
  return o;
}

// "k3" is TRL's unclamped k3; "low_var_kl" keeps verl's clamps.
inline kl_estimator kl_from_config(const grpo_config& c) {
  kl_estimator k = kl_estimator::from_name(c.kl_estimator);
  if (c.kl_estimator == "k3" || c.kl_estimator == "k3+") k.clamp = false;
  return k;
}

// ---------------------------------------------------------------- options

struct grpo_trainer_options {
  std::vector<std::string> reward_names;  // one per component (default reward_0, reward_1, ...)
  int accuracy_component = 0;             // component logged as "accuracy" (-1: none)
  std::function<std::vector<std::int32_t>(std::string_view)> encode;      // prompt text -> ids
  std::function<std::string(std::span<const std::int32_t>)> decode;       // completion ids -> text
  std::ostream* terminal = &std::cout;    // progress and samples (nullptr: quiet)
  bool resume = true;                     // continue from output_dir's latest checkpoint when there is one
  int keep_checkpoints = 1;               // newest checkpoints kept (0: all)
  std::vector<param_range> no_weight_decay{};  // ranges of the parameter buffer without weight decay
  bool write_report = true;               // report.md + curves.svg at the end of train()
  // Called every eval_steps steps (and never when eval_steps is 0) to add
  // evaluation numbers to the step's record.
  std::function<void(long long step, metrics_record&)> evaluate;
  // Extra files for each checkpoint (e.g. HF config.json and named tensors).
  std::function<void(checkpoint_writer&)> save_extra;
  // Log the policy's KL to the reference (k1 on the step's own rollouts,
  // "kl_ref/k1") at every eval step even when neither beta nor kl_coef needs
  // the reference: the variant bench compares it across algorithms.
  bool log_reference_kl = false;
  // The data-parallel group this trainer is one rank of (dist/: mpi_communicator,
  // or single_process, the default). Every rank runs the same trainer with the
  // same config; rank 0 alone writes checkpoints, logs and the report, prints,
  // and calls `evaluate`.
  any_communicator communicator{};
};

// ---------------------------------------------------------------- the trainer

template <TrainablePolicy Model, class Generator, RewardSet Rewards, PromptSource Prompts,
          ValueModel Critic = no_critic<typename Model::value_type>>
  requires RolloutGenerator<Generator, Model> && std::same_as<typename Critic::value_type, typename Model::value_type>
class grpo_trainer {
 public:
  using T = typename Model::value_type;

  grpo_trainer(grpo_config config, Model& model, Generator generator, Rewards rewards, Prompts prompts,
               grpo_trainer_options options)
      : grpo_trainer(std::move(config), model, nullptr, std::move(generator), std::move(rewards), std::move(prompts),
                     std::move(options)) {}

  // PPO: the policy with a critic (advantage_estimator "gae").
  grpo_trainer(grpo_config config, Model& model, Critic& critic, Generator generator, Rewards rewards, Prompts prompts,
               grpo_trainer_options options)
      : grpo_trainer(std::move(config), model, &critic, std::move(generator), std::move(rewards), std::move(prompts),
                     std::move(options)) {}

 private:
  grpo_trainer(grpo_config config, Model& model, Critic* critic, Generator generator, Rewards rewards,
               Prompts prompts, grpo_trainer_options options)
      : config_(validated(std::move(config))),
        model_(model),
        critic_(critic),
        generator_(std::move(generator)),
        rewards_(std::move(rewards)),
        prompts_(std::move(prompts)),
        options_(std::move(options)),
        optimizer_(static_cast<index_t>(model.parameters().size()), adam_config(config_), options_.no_weight_decay) {
    detail::require(config_.top_entropy_quantile == 1.0, "grpo_trainer: top_entropy_quantile = ",
                    config_.top_entropy_quantile, " is not supported yet; allowed: 1.0");
    detail::require(static_cast<bool>(options_.encode) && static_cast<bool>(options_.decode),
                    "grpo_trainer: options.encode and options.decode must be set");
    if (options_.reward_names.empty())
      for (std::size_t k = 0; k < Rewards::size; ++k) options_.reward_names.push_back("reward_" + std::to_string(k));
    detail::require(options_.reward_names.size() == Rewards::size, "grpo_trainer: ", options_.reward_names.size(),
                    " reward names for ", Rewards::size, " reward components");
    detail::require(options_.accuracy_component < static_cast<int>(Rewards::size), "grpo_trainer: accuracy_component = ",
                    options_.accuracy_component, " but there are ", Rewards::size, " reward components");
    if (!is_root()) options_.terminal = nullptr;
    objective_ = objective_from_config(config_);
    loss_.objective = objective_;
    loss_.kl = kl_from_config(config_);
    loss_.aggregation = loss_aggregation(config_.loss_type, config_.max_completion_length);
    loss_.beta = config_.beta;
    loss_.entropy_coeff = config_.entropy_coef;
    advantage_ = any_grpo_advantage::from_config(config_);
    detail::require(!advantage_.needs_critic() || critic_ != nullptr, "grpo_trainer: advantage_estimator \"",
                    config_.advantage_estimator, "\" needs a critic: construct the trainer with one (ppo_trainer)");
    detail::require(critic_ == nullptr || advantage_.needs_critic(), "grpo_trainer: a critic is trained only with ",
                    "advantage_estimator \"gae\", not \"", config_.advantage_estimator, "\"");
    detail::require(critic_ == nullptr || !critic_->parameters().empty() || config_.critic_warmup == 0,
                    "grpo_trainer: critic_warmup = ", config_.critic_warmup, " needs a critic with weights of its own; ",
                    "a critic on the policy's trunk is trained by the policy's optimizer");
    schedule_.type = lr_schedule::kind_from_name(config_.lr_scheduler_type);
    schedule_.num_training_steps = config_.total_optimizer_steps();
    schedule_.num_warmup_steps = config_.warmup_optimizer_steps();
    kl_penalty_ = kl_estimator::from_name(config_.kl_penalty);
    kl_coef_ = config_.kl_coef;
    if (critic_ != nullptr) {
      adamw_config a = adam_config(config_);
      a.lr = config_.critic_learning_rate.value_or(config_.learning_rate);
      critic_optimizer_.emplace(static_cast<index_t>(critic_->parameters().size()), a);
    }
    // Bad output directory: reported now, before any training.
    require_writable_directory(config_.output_dir);
    if (needs_reference()) ref_.hold(model_);
    long long keep = -1;
    if (options_.resume) {
      if (auto dir = latest_checkpoint(config_.output_dir)) {
        load_checkpoint(*dir);
        keep = step_;
      }
    }
    log_ = metrics_log((std::filesystem::path(config_.output_dir) / "metrics.jsonl").string(), keep,
                       options_.terminal, /*write_file=*/is_root());
  }

 public:
  const grpo_config& config() const { return config_; }
  long long current_step() const { return step_; }
  long long optimizer_steps() const { return optimizer_steps_; }
  std::uint64_t data_cursor() const { return data_cursor_; }
  const std::vector<metrics_record>& records() const { return log_.records(); }
  // The policy's optimizer, its moments fetched first from a model that steps on a device.
  const adamw<T>& optimizer() {
    pull_optimizer_state(model_, optimizer_);
    return optimizer_;
  }
  // The reference's parameters (fetched first from a model that keeps them on a device); empty without one.
  std::span<const T> reference_parameters() { return ref_.held() ? ref_.values(model_) : std::span<const T>{}; }

  // Runs steps until max_steps or a stop request (SIGINT/SIGTERM: saves a
  // checkpoint and returns). Saves every save_steps and at the end; writes the
  // report. Returns true when it reached max_steps.
  bool train() {
    while (step_ < config_.max_steps) {
      // Every rank stops at the same step, even when the signal reached only some.
      if (all_reduce_value<std::int64_t>(comm(), stop_requested() ? 1 : 0, reduce_op::max) != 0) {
        log_.print("stop requested (signal " + std::to_string(stop_signal_number()) + "): saving step " +
                   std::to_string(step_) + "\n");
        if (step_ > 0) save();
        return false;
      }
      step();
      if (config_.save_steps > 0 && step_ % config_.save_steps == 0) save();
    }
    if (config_.save_steps > 0 && step_ % config_.save_steps != 0) save();
    log_.finish();
    if (options_.write_report && is_root())
      write_training_report(config_.output_dir, log_.records(), options_.reward_names, {},
                            critic_ ? "PPO training report" : "GRPO training report",
                            options_.accuracy_component);
    return true;
  }

  // One trainer step; returns its record (also appended to metrics.jsonl).
  metrics_record step() {
    using clock = std::chrono::steady_clock;
    const auto t_start = clock::now();
    const index_t G = config_.num_generations;
    const index_t P = config_.prompts_per_step();
    const long long step_number = step_ + 1;
    comm_seconds_ = 0;

    // ---- 1-4: prompts, rollouts, rewards, dynamic sampling
    std::vector<sequence> seqs;
    index_t dropped = 0, rounds = 0, generated_tokens = 0;
    double t_generate = 0, t_score = 0;
    std::vector<sequence> last_uniform;
    while (static_cast<index_t>(seqs.size()) < P * G) {
      const index_t need = P - static_cast<index_t>(seqs.size()) / G;
      std::vector<grpo_prompt> prompts;
      std::vector<std::vector<std::int32_t>> prompt_ids;
      for (index_t p = 0; p < need; ++p) {
        prompts.push_back(prompts_.prompt(data_cursor_++));
        prompt_ids.push_back(options_.encode(prompts.back().text));
        detail::require(!prompt_ids.back().empty(), "grpo_trainer: prompt ", data_cursor_ - 1, " encodes to no token");
        if (static_cast<index_t>(prompt_ids.back().size()) > config_.max_prompt_length)  // TRL keeps the end
          prompt_ids.back().erase(prompt_ids.back().begin(),
                                  prompt_ids.back().end() - static_cast<std::ptrdiff_t>(config_.max_prompt_length));
      }
      rollout_request req;
      req.num_generations = G;
      req.max_new_tokens = config_.max_completion_length;
      req.sampling.temperature = config_.temperature;
      req.sampling.top_p = config_.top_p;
      req.sampling.top_k = config_.top_k;
      req.sampling.min_p = config_.min_p.value_or(0.0);
      req.seed = mix_seed(config_.seed, static_cast<std::uint64_t>(step_number), static_cast<std::uint64_t>(rounds));
      // This rank's groups of the round (all of them in one process).
      const shard mine = shard_of(need, comm().rank(), comm().size());
      req.first_sequence = static_cast<std::uint64_t>(mine.begin * G);
      const auto t0 = clock::now();
      rollout_batch<T> out;
      if (mine.count() > 0)
        out = generator_(model_, std::span<const std::vector<std::int32_t>>(prompt_ids).subspan(
                                     static_cast<std::size_t>(mine.begin), static_cast<std::size_t>(mine.count())),
                         req);
      const auto t1 = clock::now();
      t_generate += std::chrono::duration<double>(t1 - t0).count();
      const auto n = static_cast<std::size_t>(mine.count() * G);
      detail::require(out.completions.size() == n && out.logprobs.size() == n && out.truncated.size() == n,
                      "grpo_trainer: the generator returned ", out.completions.size(), " completions, ",
                      out.logprobs.size(), " log-prob rows and ", out.truncated.size(), " truncated flags for ", n,
                      " sequences");
      std::vector<sequence> round;
      for (std::size_t b = 0; b < n; ++b) {
        sequence s;
        const auto p = static_cast<std::size_t>(mine.begin) + b / static_cast<std::size_t>(G);
        s.prompt = prompt_ids[p];
        s.prompt_text = prompts[p].text;
        s.completion = std::move(out.completions[b]);
        s.logprobs = std::move(out.logprobs[b]);
        s.truncated = out.truncated[b];
        detail::require(s.logprobs.size() == s.completion.size(), "grpo_trainer: completion ", b, " has ",
                        s.completion.size(), " tokens but ", s.logprobs.size(), " log-probs");
        const std::string text = options_.decode(std::span<const std::int32_t>(s.completion));
        std::vector<std::int64_t> ids(s.completion.begin(), s.completion.end());
        reward_context ctx;
        ctx.prompt = s.prompt_text;
        ctx.completion = text;
        ctx.gold_answers = std::span<const std::string>(prompts[p].answers);
        ctx.completion_tokens = static_cast<std::int64_t>(s.completion.size());
        ctx.truncated = s.truncated;
        ctx.completion_ids = std::span<const std::int64_t>(ids);
        const auto values = rewards_.components(ctx);
        s.components.assign(values.begin(), values.end());
        s.reward = rewards_.total(values);
        detail::require(!std::isinf(s.reward), "grpo_trainer: step ", step_number, ": completion ",
                        static_cast<std::size_t>(mine.begin * G) + b, " has an infinite reward");
        round.push_back(std::move(s));
      }
      if (comm().size() > 1) round = all_gathered(std::move(round), prompts, prompt_ids, need);
      for (const auto& s : round) generated_tokens += static_cast<index_t>(s.completion.size());
      t_score += std::chrono::duration<double>(clock::now() - t1).count();
      ++rounds;
      for (index_t g = 0; g < need; ++g) {
        const auto first = round.begin() + g * G;
        const bool uniform = config_.dynamic_sampling && group_is_uniform(first, first + G);
        if (uniform) {
          ++dropped;
          if (rounds > config_.max_refill_rounds) last_uniform.insert(last_uniform.end(), first, first + G);
          continue;
        }
        seqs.insert(seqs.end(), std::make_move_iterator(first), std::make_move_iterator(first + G));
      }
      if (rounds > config_.max_refill_rounds) {
        // Out of refill rounds (verl's max_num_gen_batches): fill with uniform groups, which get zero advantage.
        for (std::size_t k = 0; k < last_uniform.size() && static_cast<index_t>(seqs.size()) < P * G; ++k)
          seqs.push_back(last_uniform[k]);
        break;
      }
    }
    const index_t B = static_cast<index_t>(seqs.size());

    // Every reward NaN: nothing to learn from, and a sign of a broken reward.
    bool any_reward = false;
    for (const auto& s : seqs) any_reward = any_reward || !std::isnan(s.reward);
    detail::require(any_reward, "grpo_trainer: step ", step_number, ": every reward of the ", B,
                    " completions is NaN (no reward rule gave a value); stopping. The last checkpoint in \"",
                    config_.output_dir, "\" is kept.");

    // ---- the padded batch: prompt then completion, right padding
    index_t L = 1;
    for (const auto& s : seqs) L = std::max<index_t>(L, static_cast<index_t>(s.prompt.size() + s.completion.size()));
    dense<std::int32_t, 2> tokens({B, L});
    dense<T, 2> attention({B, L}), mask({B, L}), sample_logp({B, L}), old_logp({B, L}), ref_logp, adv({B, L});
    dense<T, 1> scores({B});
    index_t active_tokens = 0, truncated_count = 0;
    for (index_t i = 0; i < B; ++i) {
      const sequence& s = seqs[static_cast<std::size_t>(i)];
      const auto np = static_cast<index_t>(s.prompt.size()), nc = static_cast<index_t>(s.completion.size());
      for (index_t t = 0; t < np; ++t) tokens(i, t) = s.prompt[static_cast<std::size_t>(t)];
      const bool masked_out = s.truncated && config_.masks_truncated();
      truncated_count += s.truncated;
      for (index_t t = 0; t < nc; ++t) {
        tokens(i, np + t) = s.completion[static_cast<std::size_t>(t)];
        mask(i, np + t) = masked_out ? T(0) : T(1);
        sample_logp(i, np + t) = s.logprobs[static_cast<std::size_t>(t)];
        active_tokens += masked_out ? 0 : 1;
      }
      for (index_t t = 0; t < np + nc; ++t) attention(i, t) = T(1);
      scores(i) = static_cast<T>(s.reward);
    }

    // ---- 5, 6: old and reference log-probs
    const auto t_train0 = clock::now();
    const bool correct = config_.vllm_importance_sampling_correction;
    const bool recompute_old = config_.num_iterations > 1 || config_.recompute_old_logprobs || correct;
    if (recompute_old) {
      forward_only(tokens, attention, old_logp);
    } else {
      old_logp = sample_logp;
    }
    // The rollout correction's weights pi_old / pi_rollout, truncated or masked
    // (TRL's importance_sampling_ratio), over the whole batch: sequence-level
    // weights need whole sequences.
    dense<T, 2> correction;
    rollout_correction_stats correction_stats;
    if (correct) {
      correction = dense<T, 2>({B, L});
      correction_stats = rollout_correction::trl(config_.vllm_importance_sampling_mode,
                                                 config_.vllm_importance_sampling_cap)
                             .weights<T>(old_logp.view(), sample_logp.view(), mask.view(), correction.view());
    }
    const bool log_kl_now = options_.log_reference_kl && config_.eval_steps > 0 && step_number % config_.eval_steps == 0;
    if (config_.beta != 0 || config_.kl_coef != 0 || log_kl_now) {
      ref_logp = dense<T, 2>({B, L});
      swap_in_reference();
      try {
        forward_only(tokens, attention, ref_logp);
      } catch (...) {
        swap_in_reference();
        throw;
      }
      swap_in_reference();
    }

    // ---- 7: the critic's values of the rollout; the KL penalty in the reward
    double t_critic = 0;
    dense<T, 2> old_values, returns, token_rewards;
    if (critic_ != nullptr) {
      const auto t0 = clock::now();
      old_values = dense<T, 2>({B, L});
      returns = dense<T, 2>({B, L});
      critic_forward_only(tokens, attention, old_values);
      t_critic += std::chrono::duration<double>(clock::now() - t0).count();
    }
    kl_penalty_report kl_report;
    if (config_.kl_coef != 0) {
      token_rewards = dense<T, 2>({B, L});
      dense<T, 1> known_scores({B});  // a missing (NaN) reward scores 0 here: only its KL penalty is left
      for (index_t i = 0; i < B; ++i) known_scores(i) = std::isnan(scores(i)) ? T(0) : scores(i);
      if (config_.kl_ctrl_type == "adaptive") {
        adaptive_kl_controller ctl(kl_coef_, config_.kl_target, config_.kl_horizon);
        kl_report = apply_kl_penalty<kl_estimator, adaptive_kl_controller, T>(
            kl_penalty_, ctl, known_scores.view(), old_logp.view(), ref_logp.view(), mask.view(), token_rewards.view());
        kl_coef_ = ctl.value;
      } else {
        kl_report = apply_kl_penalty<kl_estimator, T>(kl_penalty_, kl_coef_, known_scores.view(), old_logp.view(),
                                                      ref_logp.view(), mask.view(), token_rewards.view());
      }
      // Sequence-level estimators score the sum of the token rewards (verl: token_level_rewards.sum(-1)).
      if (!advantage_.token_level())
        for (index_t i = 0; i < B; ++i) {
          if (std::isnan(scores(i))) continue;
          double sum = 0;
          for (index_t t = 0; t < L; ++t) sum += token_rewards(i, t);
          scores(i) = static_cast<T>(sum);
        }
    }

    // ---- 8: advantages (and GAE's returns)
    advantage_inputs<T> ain;
    ain.scores = scores.view();
    ain.mask = mask.view();
    ain.group_size = G;
    if (config_.kl_coef != 0 && advantage_.token_level()) ain.token_rewards = token_rewards.view();
    if (critic_ != nullptr) ain.values = old_values.view();
    const advantage_report report =
        advantage_(ain, adv.view(), critic_ != nullptr ? returns.view() : matrix_view<T>{});

    // ---- 9: mu iterations over mini-batches of micro-batches
    const index_t mini = config_.mini_batch_size();
    const bool train_policy = step_number > config_.critic_warmup;  // verl critic_warmup: the critic first
    loss_stats stats;
    critic_stats cstats;
    for (index_t it = 0; it < config_.num_iterations; ++it)
      for (index_t m0 = 0; m0 < B; m0 += mini) {
        const index_t mn = std::min(mini, B - m0);
        batch_totals totals;
        totals.sequences = mn;
        for (index_t i = m0; i < m0 + mn; ++i)
          for (index_t t = 0; t < L; ++t) totals.active_tokens += mask(i, t) != T(0);
        // This rank's rows of the mini-batch (all of them in one process).
        const shard part = shard_of(mn, comm().rank(), comm().size());
        if (train_policy) {
          model_.zero_grad();
          for_micro_batches(m0 + part.begin, part.count(), [&](index_t u0, index_t un) {
            micro_step(tokens, attention, mask, old_logp, ref_logp, adv, correction, u0, un, totals, stats,
                       step_number);
          });
        }
        // The critic's backward runs before either optimizer step: a critic on
        // the policy's own trunk adds vf_coef * (value loss gradient) into the
        // policy's gradients, which then take one step on the joint loss.
        if (critic_ != nullptr) {
          const auto t0 = clock::now();
          critic_->zero_grad();
          for_micro_batches(m0 + part.begin, part.count(), [&](index_t u0, index_t un) {
            critic_micro_step(tokens, attention, mask, old_values, returns, u0, un, totals, cstats, step_number);
          });
          t_critic += std::chrono::duration<double>(clock::now() - t0).count();
        }
        if (train_policy) optimizer_update(stats, step_number);
        if (critic_ != nullptr) {
          const auto t0 = clock::now();
          critic_update(cstats, step_number);
          t_critic += std::chrono::duration<double>(clock::now() - t0).count();
        }
      }
    if (comm().size() > 1) {  // each rank summed its own rows' statistics
      std::array<double, 10> sums{stats.loss, stats.kl,    stats.entropy, stats.clip_low, stats.clip_high,
                                  stats.clip, stats.tokens, cstats.loss,  cstats.clip,    cstats.tokens};
      timed_comm([&] { comm().all_reduce(std::span<double>(sums), reduce_op::sum); });
      stats.loss = sums[0], stats.kl = sums[1], stats.entropy = sums[2], stats.clip_low = sums[3];
      stats.clip_high = sums[4], stats.clip = sums[5], stats.tokens = sums[6];
      cstats.loss = sums[7], cstats.clip = sums[8], cstats.tokens = sums[9];
    }
    const double t_train = std::chrono::duration<double>(clock::now() - t_train0).count();
    ++step_;

    // ---- the record
    metrics_record r;
    r.set("step", static_cast<double>(step_));
    r.set("optimizer_steps", static_cast<double>(optimizer_steps_));
    r.set("data_cursor", static_cast<double>(data_cursor_));
    {
      double sum = 0, count = 0, group_std_sum = 0;
      for (const auto& s : seqs)
        if (!std::isnan(s.reward)) sum += s.reward, count += 1;
      for (index_t g = 0; g + G <= B; g += G) group_std_sum += group_std(g, G, seqs);
      r.set("reward", count > 0 ? sum / count : std::nan(""));
      r.set("reward_std", B >= G ? group_std_sum / static_cast<double>(B / G) : std::nan(""));
      for (std::size_t k = 0; k < Rewards::size; ++k) {
        double ks = 0, kc = 0;
        for (const auto& s : seqs)
          if (!std::isnan(s.components[k])) ks += s.components[k], kc += 1;
        r.set("rewards/" + options_.reward_names[k] + "/mean", kc > 0 ? ks / kc : std::nan(""));
        if (static_cast<int>(k) == options_.accuracy_component) r.set("accuracy", kc > 0 ? ks / kc : std::nan(""));
      }
    }
    r.set("frac_reward_zero_std", report.groups > 0 ? static_cast<double>(report.uniform_groups) / report.groups : 0.0);
    {
      double amin = INFINITY, amax = -INFINITY, asum = 0, asq = 0;
      index_t n = 0;
      for (index_t i = 0; i < B; ++i) {
        const auto np = static_cast<index_t>(seqs[static_cast<std::size_t>(i)].prompt.size());
        if (np >= L || seqs[static_cast<std::size_t>(i)].completion.empty()) continue;
        const double a = adv(i, np);
        amin = std::min(amin, a), amax = std::max(amax, a), asum += a, asq += a * a, ++n;
      }
      const double mean = n ? asum / n : 0;
      r.set("advantages/mean", mean);
      r.set("advantages/std", n ? std::sqrt(std::max(0.0, asq / n - mean * mean)) : 0.0);
      r.set("advantages/min", n ? amin : 0.0);
      r.set("advantages/max", n ? amax : 0.0);
    }
    r.set("loss", stats.optimizer_steps ? stats.loss / stats.optimizer_steps : 0.0);
    if (config_.beta != 0) r.set("kl", stats.tokens ? stats.kl / stats.tokens : 0.0);
    if (config_.kl_coef != 0) {
      r.set("kl_penalty/kl", kl_report.current_kl);  // mean per sequence of its mean KL per token
      r.set("kl_penalty/coef", kl_report.coef);
    }
    if (ref_logp.size() > 0 && active_tokens > 0)  // k1 on the step's own samples
      r.set("kl_ref/k1", kl_masked_mean(kl_per_token(kl_k1{}, old_logp, ref_logp, mask), mask));
    if (recompute_old && active_tokens > 0) {
      // How far the sampler's log-probs are from the trainer's for the same
      // tokens (a quantized or otherwise different rollout engine; 0 up to
      // rounding when they are the same model): TRL's sampling/sampling_logp_difference
      // and k1 of KL(rollout || trainer) on the rollout's own tokens.
      const auto gap = kl_per_token(kl_abs{}, sample_logp, old_logp, mask);  // |log pi_rollout - log pi_trainer|
      double gap_max = 0;
      for (index_t i = 0; i < B; ++i)
        for (index_t t = 0; t < L; ++t)
          if (mask(i, t) != T(0)) gap_max = std::max(gap_max, static_cast<double>(gap(i, t)));
      r.set("rollout/logp_gap_mean", kl_masked_mean(gap, mask));
      r.set("rollout/logp_gap_max", gap_max);
      r.set("rollout/kl_k1", kl_masked_mean(kl_per_token(kl_k1{}, sample_logp, old_logp, mask), mask));
    }
    if (correct && correction_stats.active_tokens > 0) {  // TRL sampling/importance_sampling_ratio/*
      r.set("rollout/is_ratio_mean", correction_stats.weight_mean);
      r.set("rollout/is_ratio_min", correction_stats.weight_min);
      r.set("rollout/is_ratio_max", correction_stats.weight_max);
      r.set("rollout/is_fraction_corrected",
            correction_stats.fraction_masked + correction_stats.fraction_truncated);  // tokens masked or truncated
    }
    if (critic_ != nullptr) {
      const double updates = static_cast<double>(std::max<index_t>(cstats.optimizer_steps, 1));
      r.set("critic/value_loss", cstats.loss / updates);
      r.set("critic/clip_fraction", cstats.tokens ? cstats.clip / cstats.tokens : 0.0);
      r.set("critic/explained_variance",
            explained_variance<T>(old_values.view(), returns.view(), mask.view()));  // NaN when the returns are flat
      r.set("critic/values_mean", active_tokens ? masked_mean<T>(old_values.view(), mask.view()) : 0.0);
      r.set("critic/returns_mean", active_tokens ? masked_mean<T>(returns.view(), mask.view()) : 0.0);
      r.set("critic/grad_norm", cstats.grad_norm / updates);
      r.set("critic/learning_rate", critic_last_lr_);
    }
    r.set("entropy", stats.tokens ? stats.entropy / stats.tokens : 0.0);
    r.set("clip_ratio/low_mean", stats.tokens ? stats.clip_low / stats.tokens : 0.0);
    r.set("clip_ratio/high_mean", stats.tokens ? stats.clip_high / stats.tokens : 0.0);
    r.set("clip_ratio/region_mean", stats.tokens ? stats.clip / stats.tokens : 0.0);
    r.set("grad_norm", stats.optimizer_steps ? stats.grad_norm / stats.optimizer_steps : 0.0);
    r.set("learning_rate", last_lr_);
    {
      double lsum = 0, lmin = INFINITY, lmax = 0;
      for (const auto& s : seqs) {
        const auto n = static_cast<double>(s.completion.size());
        lsum += n, lmin = std::min(lmin, n), lmax = std::max(lmax, n);
      }
      r.set("completions/mean_length", B ? lsum / B : 0.0);
      r.set("completions/min_length", B ? lmin : 0.0);
      r.set("completions/max_length", lmax);
      r.set("completions/clipped_ratio", B ? static_cast<double>(truncated_count) / B : 0.0);
    }
    r.set("num_tokens", static_cast<double>(active_tokens));
    r.set("dynamic_sampling/dropped_groups", static_cast<double>(dropped));
    r.set("dynamic_sampling/rounds", static_cast<double>(rounds));
    if (options_.evaluate && is_root() && config_.eval_steps > 0 && step_ % config_.eval_steps == 0)
      options_.evaluate(step_, r);
    // Timing and memory last: they are the only values that differ between identical runs.
    const double t_step = std::chrono::duration<double>(clock::now() - t_start).count();
    r.set("time/generate_s", t_generate);
    r.set("time/score_s", t_score);
    r.set("time/train_s", t_train);
    if (critic_ != nullptr) r.set("time/critic_s", t_critic);  // part of train_s
    r.set("time/step_s", t_step);
    if (comm().size() > 1) r.set("time/communicate_s", comm_seconds_);  // inside the phases above
    r.set("tokens_per_s/generate", t_generate > 0 ? generated_tokens / t_generate : 0.0);
    r.set("tokens_per_s/train", t_train > 0 ? static_cast<double>(B * L * config_.num_iterations) / t_train : 0.0);
    r.set("memory/peak_mib", peak_memory_mib());
    if (critic_ != nullptr)  // weights, gradients and the two Adam moments
      r.set("memory/critic_state_mib",
            4.0 * static_cast<double>(critic_->parameters().size() * sizeof(T)) / (1024.0 * 1024.0));
    log_.write(r);
    if (config_.logging_steps > 0 && (step_ % config_.logging_steps == 0 || step_ == 1))
      log_.progress(r, static_cast<long long>(config_.max_steps));
    if (is_root() && config_.log_completions_steps > 0 && step_ % config_.log_completions_steps == 0)
      log_completions(seqs);
    return r;
  }

  // Writes a checkpoint of the current state (atomically; see checkpoint.hpp).
  // Every rank calls it: the replicas are checked to agree, rank 0 writes, and
  // no rank goes on before the checkpoint is committed.
  void save() {
    require_same_parameters_on_every_rank();
    if (is_root()) write_checkpoint();
    comm().barrier();
  }

 private:
  void write_checkpoint() {
    checkpoint_writer w(config_.output_dir, step_);
    pull_optimizer_state(model_, optimizer_);  // a model that steps on a device: its moments, here
    write_model_and_optimizer<T>(w, model_.parameters(), optimizer_);
    if (ref_.held()) w.write_tensors<T>("ref_model.safetensors", {{"parameters", ref_.values(model_)}});
    if (critic_ != nullptr && !critic_->parameters().empty()) {  // a shared-trunk critic has no weights of its own
      pull_optimizer_state(*critic_, *critic_optimizer_);
      write_model_and_optimizer<T>(w, std::span<const T>(critic_->parameters()), *critic_optimizer_, "critic");
    }
    w.write_file("trainer_state.json", "{\"step\": " + std::to_string(step_) +
                                           ", \"optimizer_steps\": " + std::to_string(optimizer_steps_) +
                                           ", \"critic_optimizer_steps\": " + std::to_string(critic_steps_) +
                                           ", \"kl_coef\": " + json::number_text(kl_coef_) +
                                           ", \"data_cursor\": " + std::to_string(data_cursor_) + ", \"seed\": \"" +
                                           std::to_string(config_.seed) + "\", \"last_lr\": " +
                                           json::number_text(last_lr_) + "}\n");
    w.write_file("grpo_config.json", grpo_config_json(config_));
    std::string metrics;
    for (const auto& r : log_.records()) metrics += r.to_json() + "\n";
    w.write_file("metrics.jsonl", metrics);
    if (options_.save_extra) options_.save_extra(w);
    w.commit(options_.keep_checkpoints);
  }

  struct sequence {
    std::vector<std::int32_t> prompt;
    std::string prompt_text;
    std::vector<std::int32_t> completion;
    std::vector<T> logprobs;
    bool truncated = false;
    std::vector<double> components;
    double reward = 0;
  };

  struct loss_stats {
    double loss = 0, kl = 0, entropy = 0, clip_low = 0, clip_high = 0, clip = 0, grad_norm = 0;
    double tokens = 0;
    index_t optimizer_steps = 0;
  };

  struct critic_stats {
    double loss = 0, clip = 0, tokens = 0, grad_norm = 0;
    index_t optimizer_steps = 0;
  };

  any_communicator& comm() { return options_.communicator; }

  // Runs a collective, adding its wall time (transfer and waiting for the
  // slowest rank) to this step's time/communicate_s.
  template <class F>
  decltype(auto) timed_comm(F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    struct add_on_exit {
      double& total;
      std::chrono::steady_clock::time_point t0;
      ~add_on_exit() { total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
    } guard{comm_seconds_, t0};
    return f();
  }
  bool is_root() const { return options_.communicator.rank() == 0; }

  // Every rank's scored sequences of one round, in rank order (= the order of
  // one process): the token ids, log-probs, flags, reward components and total
  // travel; prompts are rebuilt from the round's prompts.
  std::vector<sequence> all_gathered(std::vector<sequence> mine, const std::vector<grpo_prompt>& prompts,
                                     const std::vector<std::vector<std::int32_t>>& prompt_ids, index_t need) {
    const index_t G = config_.num_generations;
    byte_writer w;
    w.put<std::uint64_t>(mine.size());
    for (const auto& s : mine) {
      w.put_array<std::int32_t>(s.completion);
      w.put_array<T>(s.logprobs);
      w.put<std::uint8_t>(s.truncated ? 1 : 0);
      w.put_array<double>(s.components);
      w.put<double>(s.reward);
    }
    const auto parts = timed_comm([&] { return comm().all_gather(w.bytes()); });
    std::vector<sequence> all;
    for (int r = 0; r < comm().size(); ++r) {
      if (r == comm().rank()) {
        all.insert(all.end(), std::make_move_iterator(mine.begin()), std::make_move_iterator(mine.end()));
        continue;
      }
      const shard theirs = shard_of(need, r, comm().size());
      byte_reader in(parts[static_cast<std::size_t>(r)], "grpo_trainer: the rollouts of rank " + std::to_string(r));
      const auto n = in.get<std::uint64_t>();
      detail::require(n == static_cast<std::uint64_t>(theirs.count() * G), "grpo_trainer: rank ", r, " sent ", n,
                      " sequences, expected ", theirs.count() * G, " (do all ranks run the same config?)");
      for (std::uint64_t k = 0; k < n; ++k) {
        sequence s;
        const auto p = static_cast<std::size_t>(theirs.begin) + static_cast<std::size_t>(k / static_cast<std::uint64_t>(G));
        s.prompt = prompt_ids[p];
        s.prompt_text = prompts[p].text;
        s.completion = in.get_array<std::int32_t>();
        s.logprobs = in.get_array<T>();
        s.truncated = in.get<std::uint8_t>() != 0;
        s.components = in.get_array<double>();
        s.reward = in.get<double>();
        detail::require(s.components.size() == Rewards::size && s.logprobs.size() == s.completion.size(),
                        "grpo_trainer: rank ", r, " sent a malformed sequence");
        all.push_back(std::move(s));
      }
      detail::require(in.done(), "grpo_trainer: rank ", r, " sent trailing bytes");
    }
    return all;
  }

  // Rows [rows.begin, rows.end) of m were computed here, the others by the
  // ranks that own them (shard_of over m's rows): every rank gets all of them.
  void all_gather_rows(dense<T, 2>& m) {
    if (comm().size() == 1) return;
    const index_t B = m.shape()[0], L = m.shape()[1];
    const shard mine = shard_of(B, comm().rank(), comm().size());
    const auto bytes = std::as_bytes(std::span<const T>(m.data() + mine.begin * L, static_cast<std::size_t>(mine.count() * L)));
    const auto parts = timed_comm([&] { return comm().all_gather(bytes); });
    for (int r = 0; r < comm().size(); ++r) {
      const shard theirs = shard_of(B, r, comm().size());
      const auto& part = parts[static_cast<std::size_t>(r)];
      detail::require(part.size() == static_cast<std::size_t>(theirs.count() * L) * sizeof(T), "grpo_trainer: rank ",
                      r, " sent ", part.size(), " bytes of rows, expected ", theirs.count() * L * static_cast<index_t>(sizeof(T)));
      if (r != comm().rank()) std::memcpy(m.data() + theirs.begin * L, part.data(), part.size());
    }
  }

  // Stops with a clear error when the ranks' parameters differ (a non-deterministic
  // reduction, a rank started from other weights): compares a hash on every rank.
  void require_same_parameters_on_every_rank() {
    if (comm().size() == 1) return;
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the parameter bytes
    using bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    for (const T v : model_.parameters()) {
      h ^= static_cast<std::uint64_t>(std::bit_cast<bits>(v));
      h *= 1099511628211ull;
    }
    const auto mine = static_cast<std::int64_t>(h >> 1);  // >= 0, so -mine is too
    std::array<std::int64_t, 2> extremes{mine, -mine};     // one collective: max of h and of -h
    comm().all_reduce(std::span<std::int64_t>(extremes), reduce_op::max);
    const std::int64_t hi = extremes[0], lo = -extremes[1];
    detail::require(lo == hi, "grpo_trainer: step ", step_, ": the ranks' parameters differ (hash ", mine, " on rank ",
                    comm().rank(), "; min ", lo, ", max ", hi, "): the data-parallel replicas diverged");
  }

  // The reference is needed for the KL in the loss (beta), in the reward
  // (kl_coef), or for the log.
  bool needs_reference() const {
    return config_.beta != 0 || config_.kl_coef != 0 || options_.log_reference_kl;
  }

  static grpo_config validated(grpo_config c) {
    c.validate();
    return c;
  }

  static adamw_config adam_config(const grpo_config& c) {
    adamw_config a;
    a.lr = c.learning_rate;
    a.beta1 = c.adam_beta1;
    a.beta2 = c.adam_beta2;
    a.eps = c.adam_epsilon;
    a.weight_decay = c.weight_decay;
    return a;
  }

  // splitmix64 of the three numbers: a distinct generator key per (seed, step, round).
  static std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t step, std::uint64_t round) {
    auto mix = [](std::uint64_t z) {
      z += 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return z ^ (z >> 31);
    };
    return mix(mix(mix(seed) ^ step) ^ (round * 0x632BE59BD9B4E019ull));
  }

  template <class It>
  static bool group_is_uniform(It first, It last) {
    // DAPO keeps groups whose rewards are not all equal (NaN rewards are missing).
    bool seen = false;
    double v = 0;
    for (auto it = first; it != last; ++it) {
      if (std::isnan(it->reward)) continue;
      if (!seen) {
        v = it->reward;
        seen = true;
      } else if (it->reward != v) {
        return false;
      }
    }
    return true;
  }

  static double group_std(index_t first, index_t G, const std::vector<sequence>& seqs) {
    double sum = 0, sq = 0, n = 0;
    for (index_t i = first; i < first + G; ++i) {
      const double r = seqs[static_cast<std::size_t>(i)].reward;
      if (std::isnan(r)) continue;
      sum += r, n += 1;
    }
    if (n < 2) return 0;
    const double mean = sum / n;
    for (index_t i = first; i < first + G; ++i) {
      const double r = seqs[static_cast<std::size_t>(i)].reward;
      if (!std::isnan(r)) sq += (r - mean) * (r - mean);
    }
    return std::sqrt(sq / (n - 1));  // torch.std (unbiased), as TRL's reward_std
  }

  void swap_in_reference() { ref_.swap(model_); }

  // log-probs of every row, in micro-batches, without a backward pass (each
  // rank computes its slice of the rows; all_gather_rows shares them).
  void forward_only(dense<std::int32_t, 2>& tokens, dense<T, 2>& attention, dense<T, 2>& out) {
    const shard rows = shard_of(tokens.shape()[0], comm().rank(), comm().size());
    for_micro_batches(rows.begin, rows.count(), [&](index_t u0, index_t un) {
      model_.log_probs(rows_of(tokens, attention, u0, un), out.view().rows(u0, un), matrix_view<T>{});
    });
    all_gather_rows(out);
  }

  // f(u0, un) for the micro-batches [u0, u0 + un) of rows [first, first + count).
  template <class F>
  void for_micro_batches(index_t first, index_t count, F&& f) const {
    const index_t micro = config_.per_device_train_batch_size;
    for (index_t u0 = first; u0 < first + count; u0 += micro) f(u0, std::min(micro, first + count - u0));
  }

  // Rows [u0, u0 + un) of the padded batch.
  static token_batch<T> rows_of(dense<std::int32_t, 2>& tokens, dense<T, 2>& attention, index_t u0, index_t un) {
    return {matrix_view<const std::int32_t>(tokens.view().rows(u0, un)),
            matrix_view<const T>(attention.view().rows(u0, un))};
  }

  // `correction` is empty, or the rollout correction's weights of the whole batch.
  void micro_step(dense<std::int32_t, 2>& tokens, dense<T, 2>& attention, dense<T, 2>& mask, dense<T, 2>& old_logp,
                  dense<T, 2>& ref_logp, dense<T, 2>& adv, dense<T, 2>& correction, index_t u0, index_t un,
                  batch_totals totals, loss_stats& stats, long long step_number) {
    const index_t L = tokens.shape()[1];
    dense<T, 2> logp({un, L}), entropy({un, L}), grad_logp({un, L}), grad_entropy({un, L}), per_token({un, L}),
        weights({un, L});
    const token_batch<T> batch = rows_of(tokens, attention, u0, un);
    model_.log_probs(batch, logp.view(), entropy.view());
    policy_inputs<T> in;
    in.logp = logp.view();
    in.old_logp = matrix_view<const T>(old_logp.view().rows(u0, un));
    in.advantages = matrix_view<const T>(adv.view().rows(u0, un));
    in.mask = matrix_view<const T>(mask.view().rows(u0, un));
    in.entropy = entropy.view();
    if (correction.size() > 0) in.rollout_weights = matrix_view<const T>(correction.view().rows(u0, un));
    const matrix_view<const T> ref =
        config_.beta != 0 ? matrix_view<const T>(ref_logp.view().rows(u0, un)) : matrix_view<const T>{};
    const composed_loss_result res =
        loss_(in, ref, totals, grad_logp.view(), grad_entropy.view(),
              composed_loss_scratch<T>{per_token.view(), weights.view()});
    detail::require(std::isfinite(res.loss), "grpo_trainer: step ", step_number, ": the loss is ", res.loss,
                    " (not finite); stopping before the update. The last checkpoint in \"", config_.output_dir,
                    "\" is kept.");
    model_.backward(batch, matrix_view<const T>(grad_logp.view()), matrix_view<const T>(grad_entropy.view()));
    const double n = static_cast<double>(res.stats.active_tokens);
    stats.loss += res.loss;
    stats.kl += res.mean_kl * n;
    stats.entropy += res.mean_entropy * n;
    stats.clip_low += res.stats.clip_fraction_low * n;
    stats.clip_high += res.stats.clip_fraction_high * n;
    stats.clip += res.stats.clip_fraction * n;
    stats.tokens += n;
  }

  // Sums the gradient over the ranks, checks its norm (not finite: stop before
  // the update), clips it to max_grad_norm and takes one AdamW step at the
  // schedule's rate for step `steps`, on the host or where the model steps
  // (train/optimizer_step.hpp); returns the norm before clipping. Used for the
  // policy and the critic.
  template <class M>
  double clipped_adamw_step(M& model, adamw<T>& optimizer, double base_lr, long long steps, double& lr,
                            const char* whose, long long step_number) {
    if (comm().size() > 1) timed_comm([&] { all_reduce_gradients(model, comm()); });  // on the device, or the host
    const double norm = gradient_norm(model);
    detail::require(std::isfinite(norm), "grpo_trainer: step ", step_number, ": ", whose, " gradient norm is ", norm,
                    " (not finite); stopping before the update. The last checkpoint in \"", config_.output_dir,
                    "\" is kept.");
    lr = schedule_.lr(base_lr, static_cast<index_t>(steps));
    clip_and_step(model, optimizer, norm, config_.max_grad_norm, lr);
    return norm;
  }

  void optimizer_update(loss_stats& stats, long long step_number) {
    const double norm =
        clipped_adamw_step(model_, optimizer_, config_.learning_rate, optimizer_steps_, last_lr_, "the", step_number);
    model_.zero_grad();
    ++optimizer_steps_;
    stats.grad_norm += norm;
    ++stats.optimizer_steps;
    if (config_.sync_ref_model && ref_.held() && optimizer_steps_ % config_.ref_model_sync_steps == 0)
      ref_.mixup(model_, static_cast<T>(config_.ref_model_mixup_alpha));  // TRL's SyncRefModelCallback
  }

  // The critic's values of every row, in micro-batches, without a backward pass.
  void critic_forward_only(dense<std::int32_t, 2>& tokens, dense<T, 2>& attention, dense<T, 2>& out) {
    const shard rows = shard_of(tokens.shape()[0], comm().rank(), comm().size());
    for_micro_batches(rows.begin, rows.count(), [&](index_t u0, index_t un) {
      critic_->values(rows_of(tokens, attention, u0, un), out.view().rows(u0, un));
    });
    all_gather_rows(out);
  }

  void critic_micro_step(dense<std::int32_t, 2>& tokens, dense<T, 2>& attention, dense<T, 2>& mask,
                         dense<T, 2>& old_values, dense<T, 2>& returns, index_t u0, index_t un, batch_totals totals,
                         critic_stats& stats, long long step_number) {
    const index_t L = tokens.shape()[1];
    dense<T, 2> values({un, L}), grad({un, L}), weights({un, L});
    const token_batch<T> batch = rows_of(tokens, attention, u0, un);
    critic_->values(batch, values.view());
    const value_loss_result res = clipped_value_loss<T>(
        values.view(), matrix_view<const T>(old_values.view().rows(u0, un)),
        matrix_view<const T>(returns.view().rows(u0, un)), matrix_view<const T>(mask.view().rows(u0, un)),
        config_.cliprange_value, loss_.aggregation, totals, grad.view(), weights.view());
    detail::require(std::isfinite(res.loss), "grpo_trainer: step ", step_number, ": the value loss is ", res.loss,
                    " (not finite); stopping before the update. The last checkpoint in \"", config_.output_dir,
                    "\" is kept.");
    const T coef = static_cast<T>(config_.vf_coef);  // TRL: loss = pg_loss + vf_coef * vf_loss
    for (index_t k = 0; k < grad.size(); ++k) grad.data()[k] *= coef;
    critic_->backward_values(batch, matrix_view<const T>(grad.view()));
    stats.loss += config_.vf_coef * res.loss;
    stats.clip += res.clip_fraction * static_cast<double>(res.active_tokens);
    stats.tokens += static_cast<double>(res.active_tokens);
  }

  void critic_update(critic_stats& stats, long long step_number) {
    const double norm = clipped_adamw_step(*critic_, *critic_optimizer_,
                                           config_.critic_learning_rate.value_or(config_.learning_rate), critic_steps_,
                                           critic_last_lr_, "the critic's", step_number);
    critic_->zero_grad();
    ++critic_steps_;
    stats.grad_norm += norm;
    ++stats.optimizer_steps;
  }

  void load_checkpoint(const std::string& dir) {
    const auto state_text = detail::read_text_file(dir + "/trainer_state.json");
    const json::value doc = json::parse(state_text, dir + "/trainer_state.json");
    const json::node root(doc, dir + "/trainer_state.json");
    step_ = root.at("step").as_int64();
    optimizer_steps_ = root.at("optimizer_steps").as_int64();
    data_cursor_ = static_cast<std::uint64_t>(root.at("data_cursor").as_int64());
    last_lr_ = root.at("last_lr").as_double();
    json::node field = root;
    if (root.maybe("kl_coef", field)) kl_coef_ = field.as_double();
    read_model_and_optimizer<T>(dir, model_.parameters(), optimizer_, optimizer_steps_);
    parameters_changed(model_);
    push_optimizer_state(model_, optimizer_);
    if (critic_ != nullptr) {
      critic_steps_ = root.at("critic_optimizer_steps").as_int64();
      if (!critic_->parameters().empty()) {
        read_model_and_optimizer<T>(dir, critic_->parameters(), *critic_optimizer_, critic_steps_, "critic");
        parameters_changed(*critic_);
        push_optimizer_state(*critic_, *critic_optimizer_);
      }
    }
    if (ref_.held())
      ref_.load(model_, [&](std::span<T> to) {
        safetensors::reader::from_file(dir + "/ref_model.safetensors").read<T>("parameters", to);
      });
  }

  void log_completions(const std::vector<sequence>& seqs) {
    const std::string path = (std::filesystem::path(config_.output_dir) / "completions.jsonl").string();
    std::ofstream out(path, std::ios::app);
    std::string shown;
    for (index_t k = 0; k < std::min<index_t>(config_.num_completions_to_print, static_cast<index_t>(seqs.size()));
         ++k) {
      const auto& s = seqs[static_cast<std::size_t>(k)];
      // Decoded again here, for the few printed: the texts are not kept (nor sent between ranks).
      const std::string text = options_.decode(std::span<const std::int32_t>(s.completion));
      out << completion_json(step_, s.prompt_text, text, s.reward) << '\n';
      shown += "--- step " + std::to_string(step_) + ", reward " + json::number_text(s.reward) + "\n" +
               s.prompt_text + text + "\n";
    }
    log_.print(shown);
  }

  grpo_config config_;
  Model& model_;
  Critic* critic_ = nullptr;
  Generator generator_;
  Rewards rewards_;
  Prompts prompts_;
  grpo_trainer_options options_;
  adamw<T> optimizer_;
  any_objective objective_;
  composed_policy_loss<any_objective, kl_estimator, loss_aggregation> loss_;
  any_grpo_advantage advantage_;
  lr_schedule schedule_;
  reference_copy<T> ref_;  // pi_ref when needs_reference(): on the host, or beside the parameters on a device
  metrics_log log_;
  long long step_ = 0;
  long long optimizer_steps_ = 0;
  std::uint64_t data_cursor_ = 0;
  double last_lr_ = 0;
  kl_estimator kl_penalty_{};
  double kl_coef_ = 0;  // the KL-in-reward coefficient now (adaptive: updated every step)
  std::optional<adamw<T>> critic_optimizer_;
  long long critic_steps_ = 0;
  double critic_last_lr_ = 0;
  double comm_seconds_ = 0;  // this step's time in collectives
};

// PPO with a critic is the same trainer: see the constructor taking a critic.
template <TrainablePolicy Model, class Generator, RewardSet Rewards, PromptSource Prompts, ValueModel Critic>
  requires RolloutGenerator<Generator, Model>
using ppo_trainer = grpo_trainer<Model, Generator, Rewards, Prompts, Critic>;

}  // namespace lmrl
