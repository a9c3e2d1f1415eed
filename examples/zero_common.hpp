// What grpo_zero and r1_pipeline share: the byte tokenizer glue, the training
// prompts, grading and held-out evaluation on the sums task (train/task.hpp),
// the GRPO defaults of the miniature, and the base model's pretraining corpus.
#pragma once

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/model/config.hpp"
#include "lmrl/model/tokenizer/byte_tokenizer.hpp"
#include "lmrl/reward/accuracy.hpp"
#include "lmrl/reward/format.hpp"
#include "lmrl/train/evaluate.hpp"
#include "lmrl/train/grpo_config.hpp"
#include "lmrl/train/grpo_trainer.hpp"
#include "lmrl/train/pretrain.hpp"
#include "lmrl/train/task.hpp"

namespace lmrl::zero {

using tokenizer = byte_tokenizer;

// grpo_zero's model: d 128, 4 layers, 0.8M parameters.
inline transformer_config default_zero_model() {
  transformer_config c;
  c.vocab_size = tokenizer::vocab_size;
  c.hidden_size = 128;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.intermediate_size = 344;
  c.max_position_embeddings = 256;
  return c;
}

// GRPO defaults of this example (TRL's where the miniature allows them).
inline grpo_config default_grpo_config() {
  grpo_config c;
  c.output_dir = "runs/grpo_zero";
  c.learning_rate = 1e-4;  // a 0.8M-parameter model moves with far larger steps than TRL's 1e-6 for 7B
  c.adam_beta2 = 0.99;
  c.lr_scheduler_type = "constant_with_warmup";
  c.warmup_steps = 5;
  c.max_steps = 40;
  c.num_generations = 8;
  c.per_device_train_batch_size = 128;  // 16 prompts x 8 completions, one optimizer step per generation
  c.max_prompt_length = 128;
  c.max_completion_length = 200;
  c.temperature = 1.0;
  c.beta = 0.0;
  c.loss_type = "dapo";
  c.reward_weights = {1.0, 0.1};  // accuracy, strict format
  c.logging_steps = 10;
  c.save_steps = 20;
  c.eval_steps = 10;
  c.log_completions_steps = 20;
  return c;
}

// ---------------------------------------------------------------- task glue

inline std::vector<std::int32_t> encode(std::string_view text) { return tokenizer::encode(text); }
// The completion's text without its end-of-text token (TRL decodes with
// skip_special_tokens; here the think/answer tags are special tokens too, so
// only EOS and padding are dropped).
inline std::string decode(std::span<const std::int32_t> ids) {
  while (!ids.empty() && (ids.back() == tokenizer::eos || ids.back() == tokenizer::pad)) ids = ids.first(ids.size() - 1);
  return tokenizer::decode(ids);
}

// Training prompts by index: prompt i is a function of (seed, i) alone.
struct zero_prompts {
  zero_task_options task;
  std::uint64_t seed = 0;
  grpo_prompt prompt(std::uint64_t i) const {
    zero_task_generator gen(task, data::mix64(seed ^ (0x9e3779b97f4a7c15ULL * (i + 1))), data::split::train);
    const zero_problem p = gen.next();
    return {p.prompt, {p.answer}};
  }
};

inline graded_completion grade(const std::string& answer, std::string_view completion) {
  const std::string gold[] = {answer};
  reward_context ctx;
  ctx.completion = completion;
  ctx.gold_answers = gold;
  graded_completion g;
  g.correct = accuracy{answer_source::answer_tag}(ctx) == 1.0;
  g.format = is_strict_format(completion, true);
  g.thinks = completion_thinks(completion);
  return g;
}
inline graded_completion grade(const zero_problem& p, std::string_view completion) { return grade(p.answer, completion); }

// The trainer options both examples use: the byte tokenizer, these reward names, accuracy first.
inline grpo_trainer_options trainer_options(std::vector<std::string> reward_names) {
  grpo_trainer_options o;
  o.reward_names = std::move(reward_names);
  o.accuracy_component = 0;
  o.encode = encode;
  o.decode = decode;
  return o;
}

// Held-out evaluation with a batched generator (evaluate_with: generate_batch(prompts, generation_options,
// counter_rng) -> generation_result<float>, the CPU's or the GPU's decoder); with greedy_texts, also the greedy
// completions' texts of the first greedy_texts->size() problems (evaluate_with grades the greedy completion of
// each problem before any sampled one).
template <class Generate>
evaluation_result evaluate_on(Generate&& generate_batch, const std::vector<zero_problem>& problems,
                              const std::vector<std::vector<std::int32_t>>& prompts, const grpo_config& c,
                              index_t samples, std::vector<std::string>* greedy_texts = nullptr) {
  evaluation_options o;
  o.max_new_tokens = c.max_completion_length;
  o.samples = samples;
  o.pass_k = std::max<index_t>(1, samples);
  o.seed = data::mix64(c.seed ^ 0x6576616cULL);
  o.eos_token_ids = {tokenizer::eos};
  o.pad_token_id = tokenizer::pad;
  return evaluate_with<float>(
      generate_batch, std::span<const std::vector<std::int32_t>>(prompts),
      [&, graded = std::vector<bool>(problems.size(), false)](std::size_t i, std::span<const std::int32_t> ids) mutable {
        const std::string text = decode(ids);
        if (greedy_texts && i < greedy_texts->size() && !graded[i]) (*greedy_texts)[i] = text;
        graded[i] = true;
        return grade(problems[i], text);
      },
      o);
}

// evaluate_on with the CPU decoder over `params`.
inline evaluation_result evaluate(const transformer_parameters<float>& params, const std::vector<zero_problem>& problems,
                                  const std::vector<std::vector<std::int32_t>>& prompts, const grpo_config& c,
                                  index_t samples, std::vector<std::string>* greedy_texts = nullptr) {
  cached_decoder<float> decoder(params);
  return evaluate_on(
      [&](std::span<const std::vector<std::int32_t>> batch, const generation_options& o, const counter_rng& rng) {
        return generate(decoder, batch, o, rng);
      },
      problems, prompts, c, samples, greedy_texts);
}

inline std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * x);
  return buf;
}

inline void print_evaluation(const char* label, const evaluation_result& e) {
  std::printf("%s (%td held-out problems): greedy pass@1 %s, format %s, thinks %s (accuracy thinking %s, direct %s), "
              "length %.1f",
              label, e.problems, percent(e.greedy.accuracy).c_str(), percent(e.greedy.format).c_str(),
              percent(e.greedy.think_rate).c_str(), percent(e.greedy.accuracy_thinking).c_str(),
              percent(e.greedy.accuracy_direct).c_str(), e.greedy.mean_length);
  if (e.k > 0)
    std::printf("; sampled pass@1 %s, pass@%td %s, thinks %s (accuracy thinking %s, direct %s)",
                percent(e.sampled.accuracy).c_str(), e.k, percent(e.pass_at_k).c_str(),
                percent(e.sampled.think_rate).c_str(), percent(e.sampled.accuracy_thinking).c_str(),
                percent(e.sampled.accuracy_direct).c_str());
  std::printf("\n");
  std::fflush(stdout);
}

inline std::string evaluation_json(const evaluation_result& e) {
  std::ostringstream s;
  const auto stats = [&](const completion_stats& c) {
    s << "{\"accuracy\": " << c.accuracy << ", \"format\": " << c.format << ", \"think_rate\": " << c.think_rate
      << ", \"accuracy_thinking\": " << c.accuracy_thinking << ", \"accuracy_direct\": " << c.accuracy_direct
      << ", \"mean_length\": " << c.mean_length << "}";
  };
  s << "{\"problems\": " << e.problems << ", \"greedy\": ";
  stats(e.greedy);
  s << ", \"sampled\": ";
  stats(e.sampled);
  s << ", \"pass_at_k\": " << e.pass_at_k << ", \"k\": " << e.k << "}";
  return s.str();
}

// A pretraining example of the corpus: the loss starts at the completion (0 for a practice pack).
inline pretrain_example corpus_pretrain_example(const corpus_example& e) {
  // The byte tokenizer encodes prompt and completion independently, so the
  // loss (completion only) starts at the prompt's length.
  pretrain_example x;
  const std::string_view text = e.text;
  x.tokens = encode(text.substr(0, e.completion_offset));
  x.loss_from = x.tokens.size();
  tokenizer::encode(text.substr(e.completion_offset), x.tokens);
  return x;
}

// Whether this is a program's nvcc build (grpo_zero_cuda.cu and r1_pipeline_cuda.cu include the .cpp), or
// the same compiled against the CPU emulator of tests/emulator/.
#if defined(__CUDACC__) || defined(LMRL_CUDA_EMULATOR)
inline constexpr bool cuda_build = true;
#else
inline constexpr bool cuda_build = false;
#endif

// --device and --gpu_precision as grpo_zero and r1_pipeline read them. A program compiled without CUDA
// refuses --device cuda, naming its nvcc build, PROGRAM_cuda.
inline void check_device_flag(std::string_view device, std::string_view program) {
  detail::require(device == "cpu" || device == "cuda", "--device = \"", device,
                  "\" is not allowed; allowed: cpu, cuda");
  detail::require(device == "cpu" || cuda_build, "--device cuda: this ", program, " was compiled without CUDA; run ",
                  program, "_cuda (built beside it where CMake finds nvcc)");
}
inline void check_gpu_precision_flag(std::string_view precision) {
  detail::require(precision == "fp32" || precision == "tf32" || precision == "bf16" || precision == "fp8",
                  "--gpu_precision = \"", precision, "\" is not allowed; allowed: fp32, tf32, bf16, fp8");
}
// After every flag: a precision other than fp32 names the GPU's arithmetic, so it needs --device cuda.
inline void check_gpu_precision_applies(std::string_view device, std::string_view precision) {
  detail::require(device == "cuda" || precision == "fp32", "--gpu_precision ", precision,
                  " applies to --device cuda only (the CPU model computes in float32)");
}

}  // namespace lmrl::zero
