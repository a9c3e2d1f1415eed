// grpo_zero: DeepSeek-R1-Zero in miniature, in one command.
//
//   1. pretrain a small base model on a corpus of sums (train/task.hpp): most
//      problems answered directly, a minority solved with worked steps, plus
//      practice packs of worked chains; or load the base from a checkpoint
//   2. evaluate the base on 500 held-out problems
//   3. GRPO with rule rewards alone (answer correct, strict think/answer format)
//   4. evaluate again, write report.md, curves.svg and summary.json
//
// The direct answer of a multi-operand sum is hard for a small model; the
// worked steps are easy but rare in the base's samples. GRPO rewards what
// works, so thinking should spread and accuracy rise, as it did for R1-Zero.
//
//   grpo_zero                                  defaults (see docs/grpo_zero.md)
//   grpo_zero --seed 2 --output_dir runs/s2    any GRPOConfig key (TRL names)
//   grpo_zero --operands 3 --pretrain_steps 800 --base runs/x/base   task, model and stage flags
//   grpo_zero --advantage_estimator gae --kl_coef 0.001               PPO: a critic started from the base
//   mpirun -np 4 grpo_zero --base runs/x/base  data-parallel over MPI (a build that found MPI):
//                                              the same run as one process, its groups spread over the ranks
//   grpo_zero_cuda --device cuda               the model on the GPU (the build of this file by nvcc,
//                                              grpo_zero_cuda.cu, made where CMake finds nvcc);
//                                              under mpirun, one GPU per rank (the gradients
//                                              summed by NCCL where the build found it)
//   grpo_zero_cuda --device cuda --gpu_precision bf16   its products on the bf16 tensor cores
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "lmrl/model/config.hpp"
#include "lmrl/model/hf_checkpoint.hpp"
#include "lmrl/model/kv_format.hpp"
#include "lmrl/model/tokenizer/byte_tokenizer.hpp"
#include "lmrl/model/transformer.hpp"
#include "lmrl/quant/by_name.hpp"
#include "lmrl/reward/accuracy.hpp"
#include "lmrl/reward/format.hpp"
#include "lmrl/reward/length.hpp"
#include "lmrl/reward/weighted_sum.hpp"
#include "lmrl/train/evaluate.hpp"
#include "lmrl/train/grpo_config.hpp"
#include "lmrl/train/grpo_trainer.hpp"
#include "lmrl/train/pretrain.hpp"
#include "lmrl/train/report.hpp"
#include "lmrl/train/signals.hpp"
#include "lmrl/train/task.hpp"
#include "lmrl/train/transformer_policy.hpp"

#include "zero_common.hpp"

#ifdef LMRL_WITH_MPI
#include "lmrl/dist/mpi.hpp"
#endif
#ifdef LMRL_GRPO_ZERO_CUDA
#include "lmrl/train/transformer_gpu_policy.cuh"
#ifdef LMRL_WITH_NCCL
#include "lmrl/dist/nccl.hpp"
#endif
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

using namespace lmrl;
using namespace lmrl::zero;

namespace {

// ---------------------------------------------------------------- settings

// What this example adds to grpo_config: the task, the model, pretraining and evaluation.
struct zero_settings {
  // task
  int operands = 10;
  int digits = 1;
  std::string step_format = "remaining";
  // The R1-Zero template's system text. Empty by default: the base learns the
  // tags from its corpus, and a long prompt would cost more compute than the
  // completion it precedes (train/task.hpp has a short one-line system text).
  std::string system;
  double worked_fraction = 0.2;
  double practice_fraction = 0.3;
  int practice_lines = 9;  // steps per practice pack: one whole chain of ten numbers
  // model (transformer_config fields; a preset replaces the defaults below)
  std::string preset;  // "", "tiny", "small"
  transformer_config model = default_zero_model();
  std::uint64_t init_seed = 0;  // parameter initialization (default: the run's seed)
  std::string base;             // a model directory (config.json + model.safetensors) to start GRPO from
  // pretraining
  pretrain_config pretrain{};
  index_t pretrain_save_steps = 500;  // pretraining checkpoints in OUTPUT_DIR/pretrain (Ctrl-C saves one too)
  bool pretrain_only = false;         // stop once the base is saved (the variant bench shares one base)
  // DAPO's soft overlong punishment as a third reward (weight 1): 0 up to
  // max_completion_length - overlong_buffer tokens, then down to -1. 0 = off.
  index_t overlong_buffer = 0;
  // Rollouts from quantized weights: q8_0, q4_0, int8, q4_k, tq2_0 and
  // tq2_0_absmean run the integer kernels (quant/integer_linear.hpp, activations
  // in Q8_0); fp8 rounds the float weights through the format (quant/by_name.hpp).
  // Training stays in float32 and recomputes the old log-probs;
  // rollout/logp_gap_* logs the mismatch.
  std::string rollout_quant = "none";
  // The rollouts' kv cache: "none" (float32), q8_0 or q4_0 blocks per cached row.
  std::string rollout_kv_quant = "none";
  // PPO's critic: "separate" weights started from the base, or "shared" with the
  // policy (a value head on the policy's own trunk, one joint loss).
  std::string critic_trunk = "separate";
  // Where the model's passes run: "cpu", or "cuda" (grpo_zero_cuda only: pretraining's and stage 3's
  // passes and rollouts through train/transformer_gpu_policy.cuh, the held-out evaluations on the GPU's
  // decoder; the optimizer steps the host's master parameters either way).
  std::string device = "cpu";
  // With --device cuda, the arithmetic of the model's matrix products (transformer_gpu::precision): fp32, tf32
  // or bf16 tensor cores; float master weights, gradients and optimizer either way.
  std::string gpu_precision = "fp32";
  // evaluation
  index_t heldout = 500;
  index_t eval_samples = 4;  // sampled completions per held-out problem (pass@1 sampled, pass@k)
};

// --name value flags of zero_settings: name -> setter(settings, name, value text).
using setting = std::function<void(zero_settings&, const std::string&, const std::string&)>;

double parse_number(const std::string& name, const std::string& text, double lo, double hi) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (...) {
    used = 0;
  }
  detail::require(used == text.size() && !text.empty(), "--", name, " = \"", text, "\" is not a number");
  detail::require(v >= lo && v <= hi, "--", name, " = ", text, " is out of range; allowed: [", lo, ", ",
                  hi, "]");
  return v;
}

// A number in [lo, hi] for the member that field(settings) refers to; an
// integer member takes integers only.
template <class Field>
setting number(double lo, double hi, Field field) {
  return [=](zero_settings& s, const std::string& name, const std::string& text) {
    const double x = parse_number(name, text, lo, hi);
    auto& target = field(s);
    using V = std::remove_reference_t<decltype(target)>;
    if constexpr (std::is_integral_v<V>)
      detail::require(x == std::floor(x), "--", name, " = ", text, " must be an integer");
    target = static_cast<V>(x);
  };
}

template <class Field>
setting text(Field field) {
  return [=](zero_settings& s, const std::string&, const std::string& value) { field(s) = value; };
}

const std::map<std::string, setting>& settings_table() {
  using S = zero_settings;
  static const std::map<std::string, setting> table = {
      {"operands", number(2, 64, [](S& s) -> auto& { return s.operands; })},
      {"digits", number(1, 9, [](S& s) -> auto& { return s.digits; })},
      {"step_format", text([](S& s) -> auto& { return s.step_format; })},
      {"system", text([](S& s) -> auto& { return s.system; })},
      {"worked_fraction", number(0, 1, [](S& s) -> auto& { return s.worked_fraction; })},
      {"practice_fraction", number(0, 1, [](S& s) -> auto& { return s.practice_fraction; })},
      {"practice_lines", number(1, 1000, [](S& s) -> auto& { return s.practice_lines; })},
      {"preset",
       [](S& s, const std::string&, const std::string& v) {
         s.preset = v;
         s.model = transformer_config::preset(v);  // throws naming the known presets
         s.model.vocab_size = tokenizer::vocab_size;  // the shape is the preset's, the vocabulary the tokenizer's
       }},
      {"hidden_size", number(1, 8192, [](S& s) -> auto& { return s.model.hidden_size; })},
      {"num_hidden_layers", number(1, 256, [](S& s) -> auto& { return s.model.num_hidden_layers; })},
      {"num_attention_heads", number(1, 256, [](S& s) -> auto& { return s.model.num_attention_heads; })},
      {"num_key_value_heads", number(1, 256, [](S& s) -> auto& { return s.model.num_key_value_heads; })},
      {"intermediate_size", number(1, 65536, [](S& s) -> auto& { return s.model.intermediate_size; })},
      {"init_seed", number(0, 9.0e15, [](S& s) -> auto& { return s.init_seed; })},
      {"base", text([](S& s) -> auto& { return s.base; })},
      {"pretrain_steps", number(0, 1e7, [](S& s) -> auto& { return s.pretrain.steps; })},
      {"pretrain_batch_size", number(1, 65536, [](S& s) -> auto& { return s.pretrain.batch_size; })},
      {"pretrain_lr", number(1e-12, 10, [](S& s) -> auto& { return s.pretrain.lr; })},
      {"pretrain_save_steps", number(0, 1e7, [](S& s) -> auto& { return s.pretrain_save_steps; })},
      {"pretrain_group_by_length", number(0, 1, [](S& s) -> auto& { return s.pretrain.group_by_length; })},
      {"pretrain_only", number(0, 1, [](S& s) -> auto& { return s.pretrain_only; })},
      {"overlong_buffer", number(0, 1e9, [](S& s) -> auto& { return s.overlong_buffer; })},
      {"rollout_quant",
       [](S& s, const std::string&, const std::string& v) {
         bool known = v == "none" || integer_format_by_name(v).has_value();
         try {
           known = known || weight_rounding_by_name<float>(v) != nullptr;
         } catch (const lmrl::error&) {
         }
         detail::require(known, "--rollout_quant = \"", v, "\" is not known; known: none, ", integer_format_names,
                         " (integer kernels), fp8 (float weights rounded through it)");
         s.rollout_quant = v;
       }},
      {"rollout_kv_quant",
       [](S& s, const std::string&, const std::string& v) {
         kv_format_by_name(v);  // throws naming the known formats
         s.rollout_kv_quant = v;
       }},
      {"critic_trunk",
       [](S& s, const std::string& name, const std::string& v) {
         detail::require(v == "separate" || v == "shared", "--", name, " = \"", v,
                         "\" is not allowed; allowed: separate, shared");
         s.critic_trunk = v;
       }},
      {"device",
       [](S& s, const std::string&, const std::string& v) {
         check_device_flag(v, "grpo_zero");
         s.device = v;
       }},
      {"gpu_precision",
       [](S& s, const std::string&, const std::string& v) {
         check_gpu_precision_flag(v);
         s.gpu_precision = v;
       }},
      {"heldout", number(1, 1e6, [](S& s) -> auto& { return s.heldout; })},
      {"eval_samples", number(0, 1024, [](S& s) -> auto& { return s.eval_samples; })},
  };
  return table;
}

#ifdef LMRL_GRPO_ZERO_CUDA
// Held-out evaluation by the GPU decoder over `model`'s device weights, at its precision.
evaluation_result evaluate_gpu(const lmrl::cuda::transformer_gpu& model, const std::vector<zero_problem>& problems,
                               const std::vector<std::vector<std::int32_t>>& prompts, const grpo_config& c,
                               index_t samples) {
  lmrl::cuda::cached_decoder_gpu decoder(model);
  return evaluate_on(
      [&](std::span<const std::vector<std::int32_t>> batch, const generation_options& o, const counter_rng& rng) {
        return lmrl::cuda::generate(decoder, batch, o, rng);
      },
      problems, prompts, c, samples);
}
#endif

std::string table_row(const char* label, const evaluation_result& e) {
  return std::string("| ") + label + " | " + percent(e.greedy.accuracy) + " | " + percent(e.sampled.accuracy) +
         " | " + percent(e.pass_at_k) + " | " + percent(e.greedy.format) + " | " + percent(e.greedy.think_rate) +
         " | " + percent(e.sampled.think_rate) + " | " + percent(e.sampled.accuracy_thinking) + " | " +
         percent(e.sampled.accuracy_direct) + " |";
}

}  // namespace

// The whole command on one rank of `comm` (one process: single_process).
// Rank 0 pretrains the base when there is none, evaluates, prints and writes
// the report; every rank trains.
int run_zero(int argc, char** argv, any_communicator comm) try {
  using clock = std::chrono::steady_clock;
  const bool root = comm.rank() == 0;
  if (!root) std::freopen("/dev/null", "w", stdout);  // one voice: rank 0's (errors still reach stderr)
  const auto t_start = clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(clock::now() - t_start).count(); };

  // ---- settings: GRPOConfig keys and this example's own flags
  zero_settings s;
  s.pretrain.steps = 2000;  // at 1,200 seed 1's base had not learned the worked chains yet (docs/grpo_zero.md)
  s.pretrain.batch_size = 32;
  s.pretrain.lr = 3e-3;
  s.pretrain.log_every = 100;
  grpo_config c = default_grpo_config();
  bool init_seed_given = false;
  const auto positional = apply_grpo_config_flags(
      c, argc, argv, [&](std::string_view name, std::optional<std::string_view> value) {
        const auto it = settings_table().find(std::string(name));
        if (it == settings_table().end()) return flag_use::not_mine;
        detail::require(value.has_value(), "--", name, " needs a value");
        it->second(s, std::string(name), std::string(*value));
        init_seed_given = init_seed_given || name == "init_seed";
        return flag_use::used_value;
      });
  detail::require(positional.empty(), "unexpected argument \"", positional.empty() ? "" : positional[0],
                  "\" (flags are --key value)");
  c.validate();
  detail::require(c.reward_weights.empty() || c.reward_weights.size() == 2 || c.reward_weights.size() == 3,
                  "reward_weights has ", c.reward_weights.size(),
                  " values; this example has 3 rewards (accuracy, format, overlong; the third may be left out)");
  detail::require(s.overlong_buffer <= c.max_completion_length, "--overlong_buffer ", s.overlong_buffer,
                  " is longer than max_completion_length = ", c.max_completion_length);
  if (s.rollout_quant != "none" || s.rollout_kv_quant != "none")
    c.recompute_old_logprobs = true;  // the trainer's log-probs, not the sampler's
  if (!init_seed_given) s.init_seed = c.seed;
#if defined(LMRL_GRPO_ZERO_CUDA) && defined(LMRL_WITH_NCCL)
  std::optional<nccl_communicator> nccl;  // several ranks on GPUs: their own group, for the gradients (stage 3)
#endif
  if (s.device == "cuda") {
#ifdef LMRL_GRPO_ZERO_CUDA
    // Before pretraining, not after it; under mpirun each rank takes a GPU of its own (rank % GPUs), and the
    // trainer sums the gradients by NCCL on the GPUs where the build has it, else over the host communicator.
    [[maybe_unused]] const int gpu = lmrl::cuda::use_device_of_rank(comm.rank(), "--device cuda");
    const char* summed = "on the host";
#ifdef LMRL_WITH_NCCL
    if (comm.size() > 1) {
      nccl.emplace(comm, gpu);
      summed = "by NCCL on the GPUs";
    }
#endif
    if (comm.size() > 1)
      std::printf("grpo_zero: %d ranks, each on a GPU of its own; gradients summed %s\n", comm.size(), summed);
#endif
  }
  check_gpu_precision_applies(s.device, s.gpu_precision);
  detail::require(s.device != "cuda" || s.gpu_precision != "fp8" || s.rollout_quant == "none" ||
                      integer_format_by_name(s.rollout_quant).has_value(),
                  "--rollout_quant ", s.rollout_quant, " with --gpu_precision fp8: the fp8 products quantize the "
                  "weights themselves; use fp32, tf32 or bf16 (the integer formats run beside any precision)");
  s.model.validate();
  require_kv_head_dim(kv_format_by_name(s.rollout_kv_quant), s.model.head_dim(), "--rollout_kv_quant");
  s.pretrain.validate();
  require_writable_directory(c.output_dir);  // before any work

  zero_task_options task_options;
  task_options.operands = s.operands;
  task_options.digits = s.digits;
  task_options.step_format = s.step_format;
  task_options.system = s.system;
  task_options.validate();
  const zero_task task(task_options);

  // ---- held-out problems (the same set for every seed)
  const std::vector<zero_problem> heldout = zero_held_out(task_options, static_cast<std::size_t>(s.heldout));
  std::vector<std::vector<std::int32_t>> heldout_prompts;
  for (const auto& p : heldout) heldout_prompts.push_back(encode(p.prompt));
  const index_t longest_worked =
      static_cast<index_t>(encode(task.worked_completion(heldout.front())).size()) + 8;
  std::printf("grpo_zero: sums of %d numbers of %d digits, e.g. \"%s\" = %s; %td held-out problems; output in %s\n",
              s.operands, s.digits, heldout.front().expression.c_str(), heldout.front().answer.c_str(), s.heldout,
              c.output_dir.c_str());
  std::fflush(stdout);
  detail::require(c.max_completion_length >= longest_worked, "max_completion_length = ",
                  c.max_completion_length, " is shorter than a worked solution (", longest_worked,
                  " tokens with margin); allowed: >= ", longest_worked);

  install_stop_handlers();  // Ctrl-C / SIGTERM: save a checkpoint and exit; the same command resumes

#ifdef LMRL_GRPO_ZERO_CUDA
  const auto gpu_precision = lmrl::cuda::gemm_precision_from_name(s.gpu_precision);
#endif

  // ---- 1. the base model: load it, or pretrain it and save it (rank 0; the
  // other ranks wait for it and load what it saved), on the device stage 3 runs on
  if (!root) comm.barrier();
  const std::string base_dir = s.base.empty() ? (std::filesystem::path(c.output_dir) / "base").string() : s.base;
  std::optional<transformer<float>> model;
  if (std::filesystem::exists(std::filesystem::path(base_dir) / "config.json")) {
    model.emplace(load_hf_checkpoint<float>(base_dir));
    std::printf("base: loaded %s (%zu parameters)\n", base_dir.c_str(), model->parameters().values().size());
  } else {
    detail::require(s.base.empty(), "--base ", s.base, " has no config.json");
    model.emplace(s.model, s.init_seed);
    std::printf("base: pretraining %zu parameters (d %td, %td layers, ffn %td) for %td steps of %td examples; "
                "%.0f%% worked, %.0f%% practice packs\n",
                model->parameters().values().size(), s.model.hidden_size, s.model.num_hidden_layers,
                s.model.intermediate_size, s.pretrain.steps, s.pretrain.batch_size, 100 * s.worked_fraction,
                100 * s.practice_fraction);
    zero_corpus corpus(task_options, s.worked_fraction, data::mix64(c.seed ^ 0x70726574ULL), s.practice_fraction,
                       s.practice_lines);
    const auto next = [&] { return corpus_pretrain_example(corpus.next()); };
    const std::string pretrain_dir = (std::filesystem::path(c.output_dir) / "pretrain").string();
    const auto log = [&](const pretrain_record& r) {
      std::printf("  pretrain step %5td  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  %.0f s\n", r.step, r.loss, r.lr,
                  r.grad_norm, static_cast<double>(r.tokens) / r.seconds, elapsed());
      std::fflush(stdout);
    };
    const pretrain_checkpointing checkpoints{pretrain_dir, s.pretrain_save_steps};
    pretrain_result pretrained;
#ifdef LMRL_GRPO_ZERO_CUDA
    if (s.device == "cuda") {  // the passes, clipping and AdamW on the GPU: no parameter crosses per step
      lmrl::cuda::transformer_gpu_policy gpu(std::move(model->parameters()), nullptr,
                                             lmrl::cuda::parameter_uploads::device_steps);
      gpu.gpu().precision = gpu_precision;
      pretrained = pretrain(gpu, next, s.pretrain, log, checkpoints);
      model.emplace(std::move(gpu.host_parameters()));
    }
#endif
    if (s.device == "cpu") pretrained = pretrain(*model, next, s.pretrain, log, checkpoints);
    if (pretrained.stopped) {
      std::printf("stopped during pretraining (checkpoint in %s); run the same command again to resume\n",
                  pretrain_dir.c_str());
      return comm.size() > 1 ? 1 : 130;  // the other ranks are waiting for the base: end the job
    }
    save_hf_checkpoint(model->parameters(), base_dir);
    std::filesystem::remove_all(pretrain_dir);  // the base holds everything now
    std::printf("base: saved to %s (%.0f s%s)\n", base_dir.c_str(), elapsed(),
                pretrained.resumed_from > 0 ? ", pretraining resumed from a checkpoint" : "");
  }

  if (root) comm.barrier();
  if (s.pretrain_only) return 0;

  // ---- 2. the base on the held-out set (rank 0), on the device stage 3 runs on
  const auto evaluate_base = [&]() -> evaluation_result {
#ifdef LMRL_GRPO_ZERO_CUDA
    if (s.device == "cuda") {
      lmrl::cuda::transformer_gpu base(model->parameters());
      base.precision = gpu_precision;
      return evaluate_gpu(base, heldout, heldout_prompts, c, s.eval_samples);
    }
#endif
    return evaluate(model->parameters(), heldout, heldout_prompts, c, s.eval_samples);
  };
  const evaluation_result before = root ? evaluate_base() : evaluation_result{};
  const bool ppo = any_grpo_advantage::from_config(c).needs_critic();
  const std::string algorithm = ppo ? "PPO" : "GRPO";
  print_evaluation(("before " + algorithm).c_str(), before);

  // ---- 3. GRPO (or PPO) with rule rewards
  const bool shared_trunk = ppo && s.critic_trunk == "shared";
  std::optional<transformer_policy<float>> cpu_policy;
#ifdef LMRL_GRPO_ZERO_CUDA
  std::optional<lmrl::cuda::transformer_gpu_policy> gpu_policy;
  if (s.device == "cuda") {
    // The optimizer steps on the GPU; the trainer tells the policy of each change it makes on the host
    // (reference swaps, checkpoint loads).
    gpu_policy.emplace(shared_trunk ? with_value_head(model->parameters()) : std::move(model->parameters()), nullptr,
                       lmrl::cuda::parameter_uploads::device_steps);
    gpu_policy->gpu().precision = gpu_precision;
  }
#endif
  if (s.device == "cpu")
    cpu_policy.emplace(shared_trunk ? transformer<float>(with_value_head(model->parameters())) : std::move(*model));
  // The policy's current parameters (on the host, wherever it trains).
  const auto policy_parameters = [&]() -> const transformer_parameters<float>& {
#ifdef LMRL_GRPO_ZERO_CUDA
    if (gpu_policy) return gpu_policy->host_parameters();
#endif
    return cpu_policy->model().parameters();
  };
  // The held-out evaluation of the policy now, on its device.
  const auto evaluate_policy_now = [&](index_t samples) -> evaluation_result {
#ifdef LMRL_GRPO_ZERO_CUDA
    if (gpu_policy) {
      gpu_policy->sync_parameters();  // a change the trainer made on the host (a reference swap) goes first
      return evaluate_gpu(gpu_policy->gpu(), heldout, heldout_prompts, c, samples);
    }
#endif
    return evaluate(policy_parameters(), heldout, heldout_prompts, c, samples);
  };
  // The overlong rule is always there; with no buffer it weighs 0 and changes nothing.
  const auto weight = [&](std::size_t k, double otherwise) {
    return k < c.reward_weights.size() ? c.reward_weights[k] : otherwise;
  };
  // (the rules named: nvcc's front end deduces no template arguments from this constructor)
  weighted_sum<accuracy, format_strict, soft_overlong> rewards(
      std::array<double, 3>{weight(0, 1.0), weight(1, 1.0), weight(2, s.overlong_buffer > 0 ? 1.0 : 0.0)},
      accuracy{answer_source::answer_tag}, format_strict{true}, soft_overlong{c.max_completion_length, s.overlong_buffer});
  grpo_trainer_options o = trainer_options({"accuracy", "format", "overlong"});
  o.write_report = false;
  o.communicator = comm;
#if defined(LMRL_GRPO_ZERO_CUDA) && defined(LMRL_WITH_NCCL)
  // Rollouts, statistics and checks over `comm`; the device-stepped gradients summed in place by NCCL.
  if (nccl) o.communicator = split_communicator<any_communicator, nccl_communicator>(comm, *nccl);
#endif
  const auto log_heldout = [](const evaluation_result& e, metrics_record& r) {
    r.set(heldout_accuracy_key, e.greedy.accuracy);
    r.set("eval/format", e.greedy.format);
    r.set("eval/think_rate", e.greedy.think_rate);
    r.set(heldout_length_key, e.greedy.mean_length);
  };
  o.evaluate = [&](long long, metrics_record& r) {
    const auto t0 = clock::now();
    log_heldout(evaluate_policy_now(0), r);
    r.set("time/eval_s", std::chrono::duration<double>(clock::now() - t0).count());  // inside time/step_s
  };
  o.log_reference_kl = true;  // kl_ref/k1 at eval steps, for comparisons across algorithms
  // GRPO and its family; PPO (advantage_estimator gae) adds a critic started from the base.
  std::vector<metrics_record> trained;
  const auto run = [&](auto& trainer) {
    const bool finished = trainer.train();
    if (!finished) std::printf("stopped at step %lld; run the same command again to resume\n", trainer.current_step());
    trained = trainer.records();
    return finished;
  };
  // --rollout_quant and --rollout_kv_quant on a rollout generator (the CPU's or the GPU's: the same calls).
  const auto set_rollout_quantization = [&](auto& r) {
    if (const auto format = integer_format_by_name(s.rollout_quant)) {
      r.set_weight_format(format);
    } else if (s.rollout_quant != "none") {
      r.set_weight_rounding(weight_rounding_by_name<float>(s.rollout_quant));
    }
    r.set_kv_format(kv_format_by_name(s.rollout_kv_quant));
  };
  const auto rollouts = [&] {
    transformer_rollouts<float> r({tokenizer::eos}, tokenizer::pad);
    set_rollout_quantization(r);
    return r;
  };
  bool finished = false;
  if (s.device == "cuda") {
#ifdef LMRL_GRPO_ZERO_CUDA
    namespace lc = lmrl::cuda;
    const auto gpu_rollouts = [&] {
      lc::transformer_gpu_rollouts r({tokenizer::eos}, tokenizer::pad);
      set_rollout_quantization(r);
      return r;
    };
    if (shared_trunk) {
      lc::transformer_gpu_shared_critic critic(*gpu_policy);
      ppo_trainer trainer(c, *gpu_policy, critic, gpu_rollouts(), rewards, zero_prompts{task_options, c.seed}, o);
      finished = run(trainer);
    } else if (ppo) {
      auto critic = lc::transformer_gpu_critic::from_policy(gpu_policy->host_parameters(), nullptr,
                                                            lc::parameter_uploads::device_steps);
      critic.gpu().precision = gpu_precision;
      ppo_trainer trainer(c, *gpu_policy, critic, gpu_rollouts(), rewards, zero_prompts{task_options, c.seed}, o);
      finished = run(trainer);
    } else {
      grpo_trainer trainer(c, *gpu_policy, gpu_rollouts(), rewards, zero_prompts{task_options, c.seed}, o);
      finished = run(trainer);
    }
#endif
  } else if (shared_trunk) {
    transformer_shared_critic<float> critic(*cpu_policy);
    ppo_trainer trainer(c, *cpu_policy, critic, rollouts(), rewards, zero_prompts{task_options, c.seed}, o);
    finished = run(trainer);
  } else if (ppo) {
    auto critic = transformer_critic<float>::from_policy(cpu_policy->model().parameters());
    ppo_trainer trainer(c, *cpu_policy, critic, rollouts(), rewards, zero_prompts{task_options, c.seed}, o);
    finished = run(trainer);
  } else {
    grpo_trainer trainer(c, *cpu_policy, rollouts(), rewards, zero_prompts{task_options, c.seed}, o);
    finished = run(trainer);
  }
  if (!finished) return 130;
  if (!root) return 0;

  // ---- 4. after
  const evaluation_result after = evaluate_policy_now(s.eval_samples);
  print_evaluation(("after " + algorithm).c_str(), after);
  // The final policy as a causal LM (a shared trunk's value head is left out).
  save_hf_checkpoint(with_value_head(policy_parameters(), false),
                     (std::filesystem::path(c.output_dir) / "final").string());

  const double seconds = elapsed();
  std::string table = "## Held-out evaluation (" + std::to_string(before.problems) + " problems)\n\n";
  table += "| model | greedy pass@1 | sampled pass@1 | pass@" + std::to_string(std::max<index_t>(1, s.eval_samples)) +
           " | format (greedy) | thinks (greedy) | thinks (sampled) | accuracy when thinking | accuracy when direct |\n";
  table += "|---|---|---|---|---|---|---|---|---|\n";
  table += table_row("base (pretrained)", before) + "\n" + table_row(("after " + algorithm).c_str(), after) + "\n\n";
  char line[256];
  std::snprintf(line, sizeof line, "Greedy pass@1 %+.1f points; whole command %.0f s.\n",
                100 * (after.greedy.accuracy - before.greedy.accuracy), seconds);
  table += line;
  // The curves start from the base: a step-0 record with its held-out figures.
  metrics_record base_record;
  base_record.set("step", 0);
  log_heldout(before, base_record);
  trained.insert(trained.begin(), base_record);
  write_training_report(c.output_dir, trained, o.reward_names, {table}, "grpo_zero report", o.accuracy_component);
  write_file_atomically((std::filesystem::path(c.output_dir) / "summary.json").string(),
                        "{\"seed\": " + std::to_string(c.seed) + ", \"seconds\": " + std::to_string(seconds) +
                            ", \"before\": " + evaluation_json(before) + ", \"after\": " + evaluation_json(after) +
                            "}\n");
  std::printf("%s", table.c_str());
  std::printf("report: %s/report.md, curves: %s/curves.svg\n", c.output_dir.c_str(), c.output_dir.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "grpo_zero: %s\n", e.what());
  return 1;
}

int main(int argc, char** argv) {
#ifdef LMRL_WITH_MPI
  if (mpi_session::launched()) {  // started by mpirun: one rank of a data-parallel run
    mpi_session mpi(argc, argv);
    int code = 1;
    try {
      mpi_communicator world(mpi);
#ifdef _OPENMP
      // The ranks on this machine share its cores, unless OMP_NUM_THREADS says otherwise.
      if (std::getenv("OMP_NUM_THREADS") == nullptr)
        omp_set_num_threads(std::max(1, omp_get_num_procs() / world.local_size()));
#endif
      if (world.rank() == 0)
        std::printf("grpo_zero: rank 0 of %d (%d on this machine)\n", world.size(), world.local_size());
      code = run_zero(argc, argv, any_communicator::borrowing(world));
      // 130: the trainer stopped on a signal, every rank at the same step after a checkpoint.
      if (code != 0 && code != 130 && world.size() > 1) {
        std::fprintf(stderr, "grpo_zero: rank %d stops the job (status %d)\n", world.rank(), code);
        std::fflush(stderr);
        mpi.abort(code);  // the other ranks wait in a collective this rank will not join
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "grpo_zero: %s\n", e.what());
      mpi.abort(1);
    }
    return code;
  }
#endif
  return run_zero(argc, argv, single_process{});
}
