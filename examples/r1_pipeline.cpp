// r1_pipeline: DeepSeek-R1 beyond R1-Zero, in miniature, in one command.
//
// On grpo_zero's task (sums of ten one-digit numbers) with a teacher (grpo_zero's
// model, 0.8M parameters) and a smaller student (31k by default, --student_* flags):
//
//   bases      pretrain both on the same corpus (or load them: --teacher_base, --student_base)
//   R1-Zero    teacher base -> GRPO
//   R1         teacher base -> cold-start SFT on a few readable worked solutions -> GRPO
//              -> rejection sampling (correct, well-formed, not repetitive, distinct) + general data
//              -> second SFT from the base on that dataset -> second GRPO stage
//   student    student base -> GRPO alone
//              student base -> SFT on the R1 teacher's traces (sequence-level distillation)
//              student base -> logit distillation from the R1 teacher on the same traces
//
// Every model is evaluated on the same 500 held-out problems (greedy pass@1,
// format, think rate, length); the student's three arms get the same budget
// (optimizer steps x sequences per step). Each seed reruns everything after
// the bases; report.md gives mean and spread over the seeds found in
// OUTPUT_DIR, sample completions of every stage, and the R1 paper's claim
// checked in miniature: does distilling the teacher beat RL on the student?
//
// Stages are resumable: a stage whose stage.json exists is loaded, not rerun,
// so seeds can run as separate processes (--seeds 2 and --seeds 3 side by side
// once the bases exist) and the report is rebuilt from every finished seed.
//
//   r1_pipeline                                      defaults (docs/r1_pipeline.md)
//   r1_pipeline --seeds 1,2,3 --teacher_base runs/grpo_zero/base
//   r1_pipeline --report_only 1                      the report from the stages already run
//   r1_pipeline_cuda --device cuda                   every stage on the GPU (this file compiled by nvcc:
//                                                    r1_pipeline_cuda.cu, made where CMake finds nvcc)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/data/utf8.hpp"
#include "lmrl/model/hf_checkpoint.hpp"
#include "lmrl/reward/language.hpp"
#include "lmrl/reward/length.hpp"
#include "lmrl/reward/weighted_sum.hpp"
#include "lmrl/train/distill.hpp"
#include "lmrl/train/rejection_sampling.hpp"
#include "lmrl/train/sft.hpp"
#include "lmrl/train/signals.hpp"
#include "lmrl/train/transformer_policy.hpp"
#include "zero_common.hpp"

#ifdef LMRL_R1_PIPELINE_CUDA
#include "lmrl/model/generate.cuh"
#include "lmrl/train/distill.cuh"
#include "lmrl/train/transformer_gpu_policy.cuh"
#endif

using namespace lmrl;
using namespace lmrl::zero;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------- settings

struct pipeline_settings {
  std::string output_dir = "runs/r1_pipeline";
  std::vector<std::uint64_t> seeds = {1};
  bool report_only = false;
  // bases
  std::string teacher_base, student_base;  // model directories; empty: pretrain into OUTPUT_DIR/bases
  index_t pretrain_steps = 2000;           // grpo_zero's budget, for both bases
  transformer_config student = [] {  // the teacher's shape, narrower and shallower: 31,328 parameters
    transformer_config c = default_zero_model();
    c.hidden_size = 32;
    c.num_hidden_layers = 2;
    c.intermediate_size = 86;
    return c;
  }();
  // R1
  index_t cold_start_examples = 64;  // worked solutions, a few dozen as R1's "thousands" in miniature
  double cold_start_epochs = 4;
  index_t rl_steps = 40;             // R1-Zero's GRPO and the student's (grpo_zero's default)
  index_t r1_rl_steps = 20;          // R1's first GRPO stage (it starts from a model that already thinks)
  index_t r1_rl2_steps = 10;         // R1's second GRPO stage
  double r1_rl2_overlong = 0.1;      // its extra rule: DAPO's soft overlong punishment, this weight (0: none)
  index_t rs_prompts = 256;          // rejection sampling: training prompts
  index_t rs_samples = 4;            // completions per prompt
  double general_fraction = 0.1;     // general (non-reasoning) examples mixed in, per kept trace
  // What rejection sampling (and the teacher's traces) keep: "correct" (right answer, strict
  // format: R1's rule), "format" (strict format only) or "any" (for smoke tests of the wiring).
  std::string rs_rule = "correct";
  bool rs_keep_truncated = false;    // keep completions cut at max_completion_length (smoke tests)
  double sft2_epochs = 2;
  // distillation: the student's budget is student_steps optimizer steps of 128 sequences, as its GRPO run
  index_t student_steps = 40;
  double distill_lr = 1e-3;
  std::string divergence = "forward_kl";
  // evaluation
  index_t heldout = 500;
  index_t shown = 2;  // sample completions per stage in the report
  // Where the models train and generate: "cpu", or "cuda" (r1_pipeline_cuda only: every stage's passes,
  // optimizer steps and generation on the GPU), and there the products' arithmetic (fp32, tf32, bf16, fp8).
  std::string device = "cpu";
  std::string gpu_precision = "fp32";
};

// --name value flags of pipeline_settings (GRPOConfig keys go to the RL stages).
bool apply_setting(pipeline_settings& s, std::string_view name, std::string_view value) {
  const std::string v(value);
  const auto integer = [&](index_t& field, double lo, double hi) {
    const double x = detail::parse_real(name, v);
    detail::require(x == std::floor(x) && x >= lo && x <= hi, "--", name, " = ", v, " must be an integer in [", lo,
                    ", ", hi, "]");
    field = static_cast<index_t>(x);
  };
  const auto real = [&](double& field, double lo, double hi) {
    const double x = detail::parse_real(name, v);
    detail::require(x >= lo && x <= hi, "--", name, " = ", v, " must be in [", lo, ", ", hi, "]");
    field = x;
  };
  if (name == "seeds") {
    s.seeds.clear();
    for (const auto& part : detail::split_list(v)) {
      const double x = detail::parse_real(name, part);
      detail::require(x == std::floor(x) && x >= 0 && x < 9e15, "--seeds: \"", part, "\" is not a seed (an integer >= 0)");
      s.seeds.push_back(static_cast<std::uint64_t>(x));
    }
    detail::require(!s.seeds.empty(), "--seeds needs at least one seed");
  } else if (name == "report_only") {
    index_t x = 0;
    integer(x, 0, 1);
    s.report_only = x == 1;
  } else if (name == "teacher_base") {
    s.teacher_base = v;
  } else if (name == "student_base") {
    s.student_base = v;
  } else if (name == "pretrain_steps") {
    integer(s.pretrain_steps, 1, 1e7);
  } else if (name == "student_hidden_size") {
    integer(s.student.hidden_size, 8, 4096);
  } else if (name == "student_layers") {
    integer(s.student.num_hidden_layers, 1, 64);
  } else if (name == "student_heads") {
    integer(s.student.num_attention_heads, 1, 256);
  } else if (name == "student_kv_heads") {
    integer(s.student.num_key_value_heads, 1, 256);
  } else if (name == "student_intermediate_size") {
    integer(s.student.intermediate_size, 8, 65536);
  } else if (name == "cold_start_examples") {
    integer(s.cold_start_examples, 1, 1e6);
  } else if (name == "cold_start_epochs") {
    real(s.cold_start_epochs, 1e-3, 1e4);
  } else if (name == "rl_steps") {
    integer(s.rl_steps, 1, 1e6);
  } else if (name == "r1_rl_steps") {
    integer(s.r1_rl_steps, 1, 1e6);
  } else if (name == "r1_rl2_steps") {
    integer(s.r1_rl2_steps, 1, 1e6);
  } else if (name == "r1_rl2_overlong") {
    real(s.r1_rl2_overlong, 0, 100);
  } else if (name == "rs_prompts") {
    integer(s.rs_prompts, 1, 1e6);
  } else if (name == "rs_samples") {
    integer(s.rs_samples, 1, 1024);
  } else if (name == "general_fraction") {
    real(s.general_fraction, 0, 10);
  } else if (name == "rs_rule") {
    detail::require(v == "correct" || v == "format" || v == "any", "--rs_rule = \"", v,
                    "\" is not allowed; allowed: correct, format, any");
    s.rs_rule = v;
  } else if (name == "rs_keep_truncated") {
    index_t x = 0;
    integer(x, 0, 1);
    s.rs_keep_truncated = x == 1;
  } else if (name == "sft2_epochs") {
    real(s.sft2_epochs, 1e-3, 1e4);
  } else if (name == "student_steps") {
    integer(s.student_steps, 1, 1e6);
  } else if (name == "distill_lr") {
    real(s.distill_lr, 1e-12, 10);
  } else if (name == "divergence") {
    distill_divergence_from_name(v);  // throws naming the allowed values
    s.divergence = v;
  } else if (name == "heldout") {
    integer(s.heldout, 1, 1e6);
  } else if (name == "shown") {
    integer(s.shown, 0, 100);
  } else if (name == "device") {
    check_device_flag(v, "r1_pipeline");
    s.device = v;
  } else if (name == "gpu_precision") {
    check_gpu_precision_flag(v);
    s.gpu_precision = v;
  } else {
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- where the models run

#ifdef LMRL_R1_PIPELINE_CUDA
namespace lc = lmrl::cuda;

// train(gpu) on a GPU policy holding `model`'s parameters (passes, clipping and AdamW on the device:
// parameter_uploads::device_steps; products at --gpu_precision); the trained parameters come back into `model`.
template <class Train>
auto train_on_gpu(const pipeline_settings& s, transformer<float>& model, Train&& train) {
  lc::transformer_gpu_policy gpu(std::move(model.parameters()), nullptr, lc::parameter_uploads::device_steps);
  gpu.gpu().precision = lc::gemm_precision_from_name(s.gpu_precision);
  auto result = train(gpu);
  model = transformer<float>(std::move(gpu.host_parameters()));
  return result;
}
#endif

// train(m) with m = `model` itself (the CPU), or, with --device cuda, the GPU policy of train_on_gpu.
template <class Train>
auto train_on_device([[maybe_unused]] const pipeline_settings& s, transformer<float>& model, Train&& train) {
#ifdef LMRL_R1_PIPELINE_CUDA
  if (s.device == "cuda") return train_on_gpu(s, model, train);
#endif
  return train(model);
}

// use(generate) with generate(prompts, generation_options, counter_rng) -> generation_result<float>, the
// decoder over `params` on the device the pipeline runs on (the same draws on both: sample/philox.hpp).
template <class Use>
auto with_decoder([[maybe_unused]] const pipeline_settings& s, const transformer_parameters<float>& params,
                  Use&& use) {
#ifdef LMRL_R1_PIPELINE_CUDA
  if (s.device == "cuda") {
    lc::transformer_gpu model(params);
    model.precision = lc::gemm_precision_from_name(s.gpu_precision);
    lc::cached_decoder_gpu decoder(model);
    return use([&](std::span<const std::vector<std::int32_t>> batch, const generation_options& o,
                   const counter_rng& rng) { return lc::generate(decoder, batch, o, rng); });
  }
#endif
  cached_decoder<float> decoder(params);
  return use([&](std::span<const std::vector<std::int32_t>> batch, const generation_options& o,
                 const counter_rng& rng) { return generate(decoder, batch, o, rng); });
}

// ---------------------------------------------------------------- stages

// What a stage leaves in its directory: the model (config.json + model.safetensors)
// and stage.json with its evaluation, its wall time and sample completions.
struct stage_outcome {
  evaluation_result eval;
  double seconds = 0;      // this stage's own work (not the stages it starts from)
  long long steps = 0;     // optimizer steps
  std::vector<std::string> samples;  // greedy completions of the first held-out problems
};

// Text as valid UTF-8: each ill-formed stretch becomes U+FFFD (an undertrained
// model's bytes need not be UTF-8, and JSON must be).
std::string valid_utf8(std::string_view text) {
  std::string out;
  for (std::size_t at = 0; at < text.size();) {
    const utf8_char c = decode_utf8(text, at);
    append_utf8(out, c.code_point);
    at += c.length;
  }
  return out;
}

std::string stage_json(const stage_outcome& o) {
  std::string s = "{\"eval\": " + evaluation_json(o.eval) + ", \"seconds\": " + json::number_text(o.seconds) +
                  ", \"steps\": " + std::to_string(o.steps) + ", \"samples\": [";
  for (std::size_t i = 0; i < o.samples.size(); ++i) {
    if (i) s += ", ";
    json::append_string(s, valid_utf8(o.samples[i]));
  }
  return s + "]}\n";
}

std::optional<stage_outcome> read_stage(const fs::path& dir) {
  const fs::path path = dir / "stage.json";
  if (!fs::exists(path)) return std::nullopt;
  const json::value doc = json::parse(detail::read_text_file(path.string()), path.string());
  const json::node root(doc, path.string());
  stage_outcome o;
  const json::node e = root.at("eval"), g = e.at("greedy");
  o.eval.problems = static_cast<index_t>(e.at("problems").as_int64());
  o.eval.greedy.accuracy = g.at("accuracy").as_double();
  o.eval.greedy.format = g.at("format").as_double();
  o.eval.greedy.think_rate = g.at("think_rate").as_double();
  o.eval.greedy.mean_length = g.at("mean_length").as_double();
  o.seconds = root.at("seconds").as_double();
  o.steps = root.at("steps").as_int64();
  const json::node samples = root.at("samples");
  for (std::size_t i = 0; i < samples.size(); ++i) o.samples.push_back(samples[i].as_string());
  return o;
}

// The held-out set, its prompts, and the grpo_config the RL stages start from.
struct pipeline_context {
  pipeline_settings s;
  grpo_config grpo;
  zero_task_options task;
  std::vector<zero_problem> heldout;
  std::vector<std::vector<std::int32_t>> heldout_prompts;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double elapsed() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }
};

stage_outcome evaluate_stage(const pipeline_context& ctx, const transformer<float>& model, double seconds,
                             long long steps) {
  stage_outcome o;
  // The greedy completions of the first problems, for the report, come from the evaluation's own decoding.
  o.samples.resize(static_cast<std::size_t>(std::min<index_t>(ctx.s.shown, static_cast<index_t>(ctx.heldout.size()))));
  o.eval = with_decoder(ctx.s, model.parameters(), [&](const auto& generate_batch) {
    return evaluate_on(generate_batch, ctx.heldout, ctx.heldout_prompts, ctx.grpo, 0, &o.samples);
  });
  o.seconds = seconds;
  o.steps = steps;
  return o;
}

// Runs `work` (which trains `model` and returns its optimizer steps) unless the
// stage already finished; saves the model and stage.json. Returns the outcome
// and leaves the stage's model in `model`.
stage_outcome run_stage(const pipeline_context& ctx, const fs::path& dir, const char* label,
                        transformer<float>& model, const std::function<long long(transformer<float>&)>& work) {
  if (auto done = read_stage(dir); done && fs::exists(dir / "config.json")) {
    model = transformer<float>(load_hf_checkpoint<float>(dir.string()));
    std::printf("[%6.0f s] %-34s done before: greedy pass@1 %s\n", ctx.elapsed(), label,
                percent(done->eval.greedy.accuracy).c_str());
    return *done;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const long long steps = work(model);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stage_outcome o = evaluate_stage(ctx, model, seconds, steps);
  fs::create_directories(dir);
  save_hf_checkpoint(model.parameters(), dir.string());
  write_file_atomically((dir / "stage.json").string(), stage_json(o));
  std::printf("[%6.0f s] %-34s greedy pass@1 %s, format %s, thinks %s, length %.0f (%lld steps, %.0f s)\n",
              ctx.elapsed(), label, percent(o.eval.greedy.accuracy).c_str(), percent(o.eval.greedy.format).c_str(),
              percent(o.eval.greedy.think_rate).c_str(), o.eval.greedy.mean_length, steps, seconds);
  std::fflush(stdout);
  return o;
}

// GRPO with R1's rule rewards: accuracy, format, language consistency; with
// `overlong` > 0 also DAPO's soft overlong punishment at that weight (the
// second RL stage's extra rule: completions within the last 20 tokens before
// max_completion_length lose up to `overlong`, cut ones lose all of it).
long long grpo_stage(const pipeline_context& ctx, transformer<float>& model, index_t steps, std::uint64_t seed,
                     const fs::path& dir, double overlong = 0) {
  grpo_config c = ctx.grpo;
  c.seed = seed;
  c.max_steps = steps;
  c.output_dir = (dir / "grpo").string();
  c.save_steps = steps;  // one checkpoint, at the end (a stopped stage resumes from it)
  grpo_trainer_options o = trainer_options({"accuracy", "format", "language"});
  o.terminal = nullptr;
  if (overlong > 0) o.reward_names.push_back("overlong");
  // GRPO of `policy` with `rollouts`, on the rules (the rules named: nvcc's front end deduces no template
  // arguments from weighted_sum's constructor).
  const auto rl = [&](auto& policy, auto rollouts) {
    const auto train = [&](const auto& rewards) {
      grpo_trainer trainer(c, policy, std::move(rollouts), rewards, zero_prompts{ctx.task, seed}, o);
      detail::require(trainer.train(), "stopped during ", c.output_dir, "; run the same command again to resume");
      return trainer.current_step();
    };
    const std::vector<double>& w = ctx.grpo.reward_weights;  // main() checks there are three
    const accuracy correct{answer_source::answer_tag};
    if (overlong > 0) {
      const soft_overlong cut{ctx.grpo.max_completion_length,
                              std::min<std::int64_t>(20, ctx.grpo.max_completion_length)};
      return train(weighted_sum<accuracy, format_strict, language_consistency, soft_overlong>(
          std::array<double, 4>{w[0], w[1], w[2], overlong}, correct, format_strict{true}, language_consistency{},
          cut));
    }
    return train(weighted_sum<accuracy, format_strict, language_consistency>(
        std::array<double, 3>{w[0], w[1], w[2]}, correct, format_strict{true}, language_consistency{}));
  };
#ifdef LMRL_R1_PIPELINE_CUDA
  if (ctx.s.device == "cuda")
    return train_on_gpu(ctx.s, model, [&](lc::transformer_gpu_policy& gpu) {
      return rl(gpu, lc::transformer_gpu_rollouts({tokenizer::eos}, tokenizer::pad));
    });
#endif
  transformer_policy<float> policy(std::move(model));
  const long long done = rl(policy, transformer_rollouts<float>({tokenizer::eos}, tokenizer::pad));
  model = std::move(policy.model());
  return done;
}

// The SFT and distillation stages' settings: packed rows of up to 512 tokens, 10% warmup, one log line.
pretrain_config packed_sft_config(index_t steps, index_t batch_size, double lr) {
  pretrain_config c;
  c.steps = steps;
  c.batch_size = batch_size;
  c.lr = lr;
  c.warmup_ratio = 0.1;
  c.log_every = std::max<index_t>(1, steps);
  c.packing = true;
  c.max_length = 512;
  return c;
}

// SFT of `model` on examples for `epochs` epochs, batches of 32 (grpo_zero's pretraining batch).
long long sft_stage(const pipeline_settings& s, transformer<float>& model, std::vector<pretrain_example> examples,
                    double epochs, double lr, std::uint64_t seed) {
  const pretrain_config c = packed_sft_config(sft_steps_for_epochs(epochs, examples.size(), 32), 32, lr);
  train_on_device(s, model, [&](auto& m) { return supervised_fine_tune(m, std::move(examples), c, seed); });
  return c.steps;
}

// SFT examples of the records (an end-of-text token after each completion).
// A record longer than the model's context cannot be trained on; it is left
// out and counted, not cut (a cut trace would teach stopping mid-thought).
std::vector<pretrain_example> tokenized(const std::vector<sft_record>& records, index_t context, const char* what) {
  std::vector<pretrain_example> out;
  for (const auto& r : records) {
    pretrain_example e = sft_tokenize(r.prompt, r.completion + std::string(zero_task::eos_text), encode);
    if (static_cast<index_t>(e.tokens.size()) <= context) out.push_back(std::move(e));
  }
  if (out.size() < records.size())
    std::printf("  %s: %zu of %zu records are longer than the model's context (%td tokens) and left out\n", what,
                records.size() - out.size(), records.size(), context);
  detail::require(!out.empty(), what, ": no record fits the model's context of ", context, " tokens");
  return out;
}

// Correct, strictly formatted completions of training prompts (the answer is
// read from the prompt's own problem: the generator is seeded per index).
std::vector<sft_record> sample_accepted(const pipeline_context& ctx, const transformer<float>& model, index_t prompts,
                                        index_t samples, std::uint64_t seed, rejection_sampling_stats& stats) {
  const zero_prompts source{ctx.task, seed};
  std::vector<std::string> answers, texts;
  for (index_t i = 0; i < prompts; ++i) {
    const grpo_prompt p = source.prompt(static_cast<std::uint64_t>(i));
    texts.push_back(p.text);
    answers.push_back(p.answers.at(0));
  }
  rejection_sampling_options o;
  o.samples_per_prompt = samples;
  o.max_new_tokens = ctx.grpo.max_completion_length;
  o.seed = data::mix64(seed ^ 0x72736d70ULL);
  o.eos_token_ids = {tokenizer::eos};
  o.pad_token_id = tokenizer::pad;
  o.drop_truncated = !ctx.s.rs_keep_truncated;
  const std::string& rule = ctx.s.rs_rule;
  const auto accept = [&](std::size_t i, std::string_view completion) {
    if (rule == "any") return true;
    const graded_completion g = grade(answers[i], completion);
    return rule == "format" ? g.format : g.format && g.correct;
  };
  std::vector<sft_record> kept = with_decoder(ctx.s, model.parameters(), [&](const auto& generate_batch) {
    return rejection_sample_with(generate_batch, std::span<const std::string>(texts), encode, decode, accept, o,
                                 &stats);
  });
  for (auto& r : kept) r.completion = valid_utf8(r.completion);  // "any" may keep bytes that are not UTF-8
  return kept;
}

// ---------------------------------------------------------------- the pipeline for one seed

struct seed_outcome {
  std::size_t dataset_size = 0, trace_count = 0;
};

seed_outcome run_seed(const pipeline_context& ctx, const transformer<float>& teacher_base,
                      const transformer<float>& student_base, std::uint64_t seed) {
  const pipeline_settings& s = ctx.s;
  const fs::path root = fs::path(s.output_dir) / ("seed-" + std::to_string(seed));
  seed_outcome out;
  std::printf("---- seed %llu (%s)\n", static_cast<unsigned long long>(seed), root.string().c_str());
  const auto stage = [&](const char* key, const char* label, transformer<float>& model,
                         const std::function<long long(transformer<float>&)>& work) {
    run_stage(ctx, root / key, label, model, work);
  };

  // R1-Zero: the teacher base, GRPO.
  transformer<float> zero = teacher_base;
  stage("r1_zero", "R1-Zero (GRPO)", zero,
        [&](transformer<float>& m) { return grpo_stage(ctx, m, s.rl_steps, seed, root / "r1_zero"); });

  // R1: cold start, reasoning RL, rejection sampling, SFT from the base, RL again.
  transformer<float> r1 = teacher_base;
  stage("r1_cold_start", "R1 cold-start SFT", r1, [&](transformer<float>& m) {
    const zero_task task(ctx.task);
    zero_task_generator gen(ctx.task, data::mix64(seed ^ 0x636f6c64ULL), data::split::train);
    std::vector<pretrain_example> examples;
    for (index_t i = 0; i < s.cold_start_examples; ++i) {
      const zero_problem p = gen.next();
      examples.push_back(sft_tokenize(p.prompt, task.worked_completion(p), encode));
    }
    return sft_stage(s, m, examples, s.cold_start_epochs, 1e-3, seed);
  });
  stage("r1_rl", "R1 reasoning RL (GRPO)", r1,
        [&](transformer<float>& m) { return grpo_stage(ctx, m, s.r1_rl_steps, seed, root / "r1_rl"); });
  const index_t context = teacher_base.config().max_position_embeddings;
  const fs::path dataset_path = root / "r1_rejection_sampled.jsonl";
  if (!fs::exists(dataset_path)) {
    rejection_sampling_stats rs;
    std::vector<sft_record> kept =
        sample_accepted(ctx, r1, s.rs_prompts, s.rs_samples, data::mix64(seed ^ 0x7273ULL), rs);
    detail::require(!kept.empty(), "rejection sampling kept no completion (", rs.summary(),
                    "): the reasoning-RL model solves none of the prompts; train it longer");
    // General data: the corpus's practice packs, plain text without the template.
    zero_corpus corpus(ctx.task, 0.0, data::mix64(seed ^ 0x67656eULL), 1.0, 9);
    std::vector<sft_record> general;
    const auto wanted = static_cast<std::size_t>(std::llround(s.general_fraction * static_cast<double>(kept.size())));
    while (general.size() < wanted) {
      corpus_example e = corpus.next();
      // the practice pack lacks an end-of-text token: tokenized() appends one to every completion
      general.push_back({"", e.text, "general"});
    }
    const std::vector<sft_record> dataset = mix_in(std::move(kept), general, s.general_fraction, seed);
    const std::string note = rs.summary() + "; with " + std::to_string(general.size()) +
                             " general examples, a dataset of " + std::to_string(dataset.size());
    fs::create_directories(root);
    write_file_atomically((root / "r1_rejection_sampled.txt").string(), note + "\n");  // for the report
    write_sft_jsonl(dataset_path.string(), dataset);
    std::printf("[%6.0f s] %s -> %s\n", ctx.elapsed(), note.c_str(), dataset_path.string().c_str());
  }
  const std::vector<sft_record> dataset = read_sft_jsonl(dataset_path.string());
  out.dataset_size = dataset.size();
  transformer<float> r1b = teacher_base;
  stage("r1_sft2", "R1 SFT on rejection-sampled data", r1b,
        [&](transformer<float>& m) {
          return sft_stage(s, m, tokenized(dataset, context, "R1's SFT data"), s.sft2_epochs, 1e-3, seed);
        });
  stage("r1_final", "R1 second RL stage (GRPO)", r1b,
        [&](transformer<float>& m) {
          return grpo_stage(ctx, m, s.r1_rl2_steps, seed, root / "r1_final", s.r1_rl2_overlong);
        });

  // The student: RL alone, and distilled from the final R1 teacher on its traces.
  transformer<float> student_rl = student_base;
  stage("student_rl", "student: GRPO alone", student_rl,
        [&](transformer<float>& m) { return grpo_stage(ctx, m, s.student_steps, seed, root / "student_rl"); });
  const index_t sequences = s.student_steps * ctx.grpo.per_device_train_batch_size;  // the GRPO run's budget
  const fs::path traces_path = root / "teacher_traces.jsonl";
  if (!fs::exists(traces_path)) {
    // Traces on other prompts than the rejection-sampling stage's, one sample per
    // prompt kept at most; enough prompts that the budget sees each trace a few times.
    rejection_sampling_stats ts;
    const index_t prompts = std::max<index_t>(s.rs_prompts, sequences / 8);
    std::vector<sft_record> traces = sample_accepted(ctx, r1b, prompts, 1, data::mix64(seed ^ 0x74726163ULL), ts);
    detail::require(!traces.empty(), "the teacher solved none of the trace prompts (", ts.summary(), ")");
    fs::create_directories(root);
    write_file_atomically((root / "teacher_traces.txt").string(), ts.summary() + "\n");  // for the report
    write_sft_jsonl(traces_path.string(), traces);
    std::printf("[%6.0f s] teacher traces: %s -> %s\n", ctx.elapsed(), ts.summary().c_str(),
                traces_path.string().c_str());
  }
  const index_t student_context = std::min(context, student_base.config().max_position_embeddings);
  const std::vector<pretrain_example> traces =
      tokenized(read_sft_jsonl(traces_path.string()), student_context, "teacher traces");
  out.trace_count = traces.size();
  const pretrain_config budget = packed_sft_config(s.student_steps, ctx.grpo.per_device_train_batch_size, s.distill_lr);
  transformer<float> student_sft = student_base;
  stage("student_seq_distill", "student: SFT on teacher traces", student_sft, [&](transformer<float>& m) {
    train_on_device(s, m, [&](auto& on) { return supervised_fine_tune(on, traces, budget, seed); });
    return static_cast<long long>(budget.steps);
  });
  transformer<float> student_kd = student_base;
  transformer<float> teacher = r1b;
  const logit_distillation_config kd{distill_divergence_from_name(s.divergence), 1.0};
  stage("student_logit_kd", "student: logit distillation", student_kd, [&](transformer<float>& m) {
    epoch_sampler source(traces, seed);
#ifdef LMRL_R1_PIPELINE_CUDA
    if (s.device == "cuda") {
      lc::transformer_gpu gpu_teacher(teacher.parameters());
      gpu_teacher.precision = lc::gemm_precision_from_name(s.gpu_precision);
      train_on_gpu(s, m, [&](lc::transformer_gpu_policy& gpu) {
        return lc::distill(gpu, gpu_teacher, source, budget, kd);
      });
      return static_cast<long long>(budget.steps);
    }
#endif
    distill(m, teacher, source, budget, kd);
    return static_cast<long long>(budget.steps);
  });
  return out;
}

// ---------------------------------------------------------------- the report

struct arm {
  const char* key;
  const char* label;
};
const arm arms[] = {
    {"teacher_base", "teacher base (pretrained)"},
    {"r1_zero", "R1-Zero: GRPO"},
    {"r1_cold_start", "R1: cold-start SFT"},
    {"r1_rl", "R1: + reasoning RL"},
    {"r1_sft2", "R1: SFT on rejection-sampled data (from the base)"},
    {"r1_final", "R1: + second RL stage"},
    {"student_base", "student base (pretrained)"},
    {"student_rl", "student: GRPO alone"},
    {"student_seq_distill", "student: SFT on R1's traces"},
    {"student_logit_kd", "student: logit distillation from R1"},
};

std::string mean_spread(const std::vector<double>& xs, double scale, const char* format) {
  double mean = 0;
  for (double x : xs) mean += x;
  mean /= static_cast<double>(xs.size());
  double var = 0;
  for (double x : xs) var += (x - mean) * (x - mean);
  const double sd = xs.size() > 1 ? std::sqrt(var / static_cast<double>(xs.size() - 1)) : 0.0;
  char buf[96];
  std::snprintf(buf, sizeof buf, format, scale * mean, scale * sd);
  return buf;
}

void write_report(const pipeline_context& ctx) {
  const pipeline_settings& s = ctx.s;
  // Every seed directory in seed order, its stages, and the bases' evaluations.
  std::vector<fs::path> seed_dirs;
  for (const auto& entry : fs::directory_iterator(s.output_dir))
    if (entry.path().filename().string().rfind("seed-", 0) == 0) seed_dirs.push_back(entry.path());
  const auto seed_number = [](const fs::path& p) { return std::stoull(p.filename().string().substr(5)); };
  std::sort(seed_dirs.begin(), seed_dirs.end(),
            [&](const fs::path& a, const fs::path& b) { return seed_number(a) < seed_number(b); });
  std::vector<std::string> seeds;
  std::vector<std::map<std::string, stage_outcome>> per_seed;  // stage key -> outcome, per seed
  std::map<std::string, std::vector<stage_outcome>> by_arm;
  for (const fs::path& dir : seed_dirs) {
    seeds.push_back(dir.filename().string().substr(5));
    per_seed.emplace_back();
    for (const arm& a : arms)
      if (auto o = read_stage(dir / a.key)) {
        by_arm[a.key].push_back(*o);
        per_seed.back()[a.key] = *o;
      }
  }
  for (const char* base : {"teacher_base", "student_base"})
    if (auto o = read_stage(fs::path(s.output_dir) / "bases" / base)) by_arm[base].push_back(*o);

  std::string md = "# r1_pipeline report\n\n";
  md += "Seeds: " + std::to_string(seeds.size()) + " (";
  for (std::size_t i = 0; i < seeds.size(); ++i) md += (i ? ", " : "") + seeds[i];
  md += "); the bases are pretrained once and shared by every seed. Held-out: " + std::to_string(ctx.heldout.size()) +
        " problems, greedy decoding. Mean ± sample standard deviation over the seeds that finished each stage.\n\n";
  md += "| stage | seeds | greedy pass@1 | format | thinks | length (tokens) | optimizer steps | stage seconds |\n";
  md += "|---|---|---|---|---|---|---|---|\n";
  for (const arm& a : arms) {
    const auto it = by_arm.find(a.key);
    if (it == by_arm.end()) continue;
    std::vector<double> acc, fmt, think, len, sec;
    long long steps = 0;
    for (const auto& o : it->second) {
      acc.push_back(o.eval.greedy.accuracy);
      fmt.push_back(o.eval.greedy.format);
      think.push_back(o.eval.greedy.think_rate);
      len.push_back(o.eval.greedy.mean_length);
      sec.push_back(o.seconds);
      steps = o.steps;
    }
    md += std::string("| ") + a.label + " | " + std::to_string(acc.size()) + " | " +
          mean_spread(acc, 100, "%.1f ± %.1f%%") + " | " + mean_spread(fmt, 100, "%.1f ± %.1f%%") + " | " +
          mean_spread(think, 100, "%.1f ± %.1f%%") + " | " + mean_spread(len, 1, "%.0f ± %.0f") + " | " +
          std::to_string(steps) + " | " + mean_spread(sec, 1, "%.0f ± %.0f") + " |\n";
  }
  // The claim: distillation against RL on the student, seed by seed (the seeds that finished all three arms).
  std::string rows;
  int compared = 0, seq_wins = 0, kd_wins = 0;
  for (std::size_t i = 0; i < per_seed.size(); ++i) {
    const auto& st = per_seed[i];
    if (!st.count("student_rl") || !st.count("student_seq_distill") || !st.count("student_logit_kd")) continue;
    const double rl = st.at("student_rl").eval.greedy.accuracy;
    const double seq = st.at("student_seq_distill").eval.greedy.accuracy;
    const double kd = st.at("student_logit_kd").eval.greedy.accuracy;
    char buf[160];
    std::snprintf(buf, sizeof buf, "| %s | %.1f%% | %.1f%% (%+.1f) | %.1f%% (%+.1f) |\n", seeds[i].c_str(), 100 * rl,
                  100 * seq, 100 * (seq - rl), 100 * kd, 100 * (kd - rl));
    rows += buf;
    ++compared;
    seq_wins += seq > rl;
    kd_wins += kd > rl;
  }
  if (compared > 0) {
    md += "\n## Distillation against RL on the student\n\nGreedy pass@1 on the held-out set, same budget (" +
          std::to_string(s.student_steps) + " optimizer steps of " + std::to_string(ctx.grpo.per_device_train_batch_size) +
          " sequences):\n\n| seed | GRPO alone | SFT on R1's traces | logit KD from R1 |\n|---|---|---|---|\n" + rows;
    md += "\nSFT on the teacher's traces beats RL alone on " + std::to_string(seq_wins) + " of " +
          std::to_string(compared) + " seeds, logit distillation on " + std::to_string(kd_wins) + " of " +
          std::to_string(compared) + ".\n";
  }
  // What rejection sampling kept and what the teacher's traces are.
  std::string datasets;
  for (std::size_t i = 0; i < seed_dirs.size(); ++i)
    for (const char* file : {"r1_rejection_sampled.txt", "teacher_traces.txt"})
      if (fs::exists(seed_dirs[i] / file)) {
        std::string text = detail::read_text_file((seed_dirs[i] / file).string());
        while (!text.empty() && text.back() == '\n') text.pop_back();
        datasets += "- seed " + seeds[i] + ", " + (file[0] == 'r' ? "R1's SFT data" : "teacher traces") + ": " + text + "\n";
      }
  if (!datasets.empty()) md += "\n## Datasets\n\n" + datasets;
  md += "\n## Sample completions (greedy, first held-out problems, first seed)\n";
  for (std::size_t p = 0; p < static_cast<std::size_t>(s.shown) && p < ctx.heldout.size(); ++p) {
    md += "\n### Problem " + ctx.heldout[p].expression + " = " + ctx.heldout[p].answer + "\n";
    for (const arm& a : arms) {
      const auto it = by_arm.find(a.key);
      if (it == by_arm.end() || it->second.front().samples.size() <= p) continue;
      md += std::string("\n") + a.label + ":\n\n```\n<think>" + it->second.front().samples[p] + "\n```\n";
    }
  }
  write_file_atomically((fs::path(s.output_dir) / "report.md").string(), md);
  std::printf("%s\nreport: %s/report.md\n", md.substr(0, md.find("\n## Sample")).c_str(), s.output_dir.c_str());
}

// ---------------------------------------------------------------- the bases

transformer<float> base_model(const pipeline_context& ctx, const std::string& given, const char* key,
                              const transformer_config& shape) {
  const fs::path dir = fs::path(ctx.s.output_dir) / "bases" / key;
  transformer<float> model = [&] {
    if (!given.empty()) return transformer<float>(load_hf_checkpoint<float>(given));
    if (fs::exists(dir / "config.json")) return transformer<float>(load_hf_checkpoint<float>(dir.string()));
    transformer<float> m(shape, ctx.grpo.seed);
    pretrain_config c;
    c.steps = ctx.s.pretrain_steps;
    c.batch_size = 32;
    c.lr = 3e-3;
    c.log_every = std::max<index_t>(1, c.steps / 10);
    zero_corpus corpus(ctx.task, 0.2, data::mix64(ctx.grpo.seed ^ 0x70726574ULL), 0.3, 9);  // grpo_zero's corpus
    std::printf("[%6.0f s] pretraining the %s (%zu parameters) for %td steps\n", ctx.elapsed(), key,
                m.parameters().values().size(), c.steps);
    std::fflush(stdout);
    const auto progress = [&](const pretrain_record& r) {
      std::printf("[%6.0f s]   %s step %5td  loss %.4f  %.0f tok/s\n", ctx.elapsed(), key, r.step, r.loss,
                  static_cast<double>(r.tokens) / r.seconds);
      std::fflush(stdout);
    };
    const pretrain_result r = train_on_device(ctx.s, m, [&](auto& on) {
      return pretrain(on, [&] { return corpus_pretrain_example(corpus.next()); }, c, progress,
                      {(dir.parent_path() / (std::string(key) + "_pretrain")).string(), 500});
    });
    detail::require(!r.stopped, "stopped during pretraining; run the same command again to resume");
    fs::remove_all(dir.parent_path() / (std::string(key) + "_pretrain"));
    return m;
  }();
  if (!read_stage(dir)) {
    const auto t0 = std::chrono::steady_clock::now();
    const stage_outcome o = evaluate_stage(ctx, model, 0, 0);
    fs::create_directories(dir);
    if (!fs::exists(dir / "config.json")) save_hf_checkpoint(model.parameters(), dir.string());
    write_file_atomically((dir / "stage.json").string(), stage_json(o));
    std::printf("[%6.0f s] %-34s %zu parameters, greedy pass@1 %s, thinks %s (eval %.0f s)\n", ctx.elapsed(), key,
                model.parameters().values().size(), percent(o.eval.greedy.accuracy).c_str(),
                percent(o.eval.greedy.think_rate).c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return model;
}

}  // namespace

int main(int argc, char** argv) try {
  pipeline_context ctx;
  ctx.grpo = default_grpo_config();
  ctx.grpo.seed = 42;  // the bases' seed (grpo_zero's default); the stages take --seeds
  ctx.grpo.reward_weights = {1.0, 0.1, 0.1};  // R1's rules: accuracy, format, language consistency
  const auto positional = apply_grpo_config_flags(
      ctx.grpo, argc, argv, [&](std::string_view name, std::optional<std::string_view> value) {
        if (name == "output_dir") return flag_use::not_mine;
        detail::require(value.has_value() || name == "output_dir", "--", name, " needs a value");
        return value && apply_setting(ctx.s, name, *value) ? flag_use::used_value : flag_use::not_mine;
      });
  detail::require(positional.empty(), "unexpected argument \"", positional.empty() ? "" : positional[0],
                  "\" (flags are --key value)");
  if (ctx.grpo.output_dir != default_grpo_config().output_dir) ctx.s.output_dir = ctx.grpo.output_dir;
  ctx.grpo.validate();
  detail::require(ctx.grpo.reward_weights.size() == 3, "reward_weights has ", ctx.grpo.reward_weights.size(),
                  " values; the RL stages have three rewards: accuracy, format, language consistency");
  ctx.s.student.validate();
  check_gpu_precision_applies(ctx.s.device, ctx.s.gpu_precision);
#ifdef LMRL_R1_PIPELINE_CUDA
  if (ctx.s.device == "cuda" && !ctx.s.report_only) lc::use_device_of_rank(0, "--device cuda");
#endif
  fs::create_directories(ctx.s.output_dir);
  require_writable_directory(ctx.s.output_dir);

  ctx.task.operands = 10;  // grpo_zero's task
  ctx.task.digits = 1;
  ctx.task.step_format = "remaining";
  ctx.task.system = "";
  ctx.task.validate();
  ctx.heldout = zero_held_out(ctx.task, static_cast<std::size_t>(ctx.s.heldout));
  for (const auto& p : ctx.heldout) ctx.heldout_prompts.push_back(encode(p.prompt));
  if (ctx.s.report_only) {
    write_report(ctx);
    return 0;
  }
  install_stop_handlers();

  const transformer<float> teacher_base = base_model(ctx, ctx.s.teacher_base, "teacher_base", default_zero_model());
  const transformer<float> student_base = base_model(ctx, ctx.s.student_base, "student_base", ctx.s.student);
  for (std::uint64_t seed : ctx.s.seeds) {
    const seed_outcome o = run_seed(ctx, teacher_base, student_base, seed);
    std::printf("seed %llu: rejection-sampled dataset %zu examples, %zu teacher traces\n",
                static_cast<unsigned long long>(seed), o.dataset_size, o.trace_count);
  }
  write_report(ctx);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "r1_pipeline: %s\n", e.what());
  return 1;
}
