// grpo_config: every hyper-parameter of the GRPO trainer, under the names of
// TRL's GRPOConfig / transformers' TrainingArguments, with TRL 1.16's defaults,
// plus lmrl's extensions (objective, advantage and KL estimator by name, DAPO
// dynamic sampling, overlong filtering).
//
// Set from a JSON file (an object of key: value) and from command-line flags
// (--key=value or --key value). An unknown key is an error naming it and the
// closest known key; a value out of range is an error naming the key, the value
// and the allowed range. Optional keys (epsilon_high, delta, min_p,
// steps_per_generation) accept "None"/null for "unset", as in TRL.
//
// Counting: one trainer step = one generation round of
// per_device_train_batch_size * steps_per_generation completions, which is
// walked num_iterations times in mini-batches of per_device_train_batch_size *
// gradient_accumulation_steps completions (one optimizer step each, made of
// gradient_accumulation_steps micro-batches). With TRL's defaults
// (steps_per_generation = gradient_accumulation_steps, num_iterations = 1) a
// trainer step is one optimizer step, as in TRL.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

struct grpo_config {
  // ------------------------------------------------ optimization (TrainingArguments)
  double learning_rate = 1e-6;                 // TRL GRPOConfig 1e-6
  index_t per_device_train_batch_size = 8;     // completions per micro-batch; TRL 8
  index_t gradient_accumulation_steps = 1;     // HF 1
  std::optional<index_t> steps_per_generation;  // TRL None (= gradient_accumulation_steps)
  index_t max_steps = 500;                      // HF -1 (epochs); lmrl counts steps only, so a positive default
  double warmup_ratio = 0.0;                    // HF 0.0
  index_t warmup_steps = 0;                     // HF 0 (wins over warmup_ratio when > 0)
  std::string lr_scheduler_type = "linear";     // HF "linear"
  double weight_decay = 0.0;                    // HF 0.0
  double adam_beta1 = 0.9;                      // HF 0.9
  double adam_beta2 = 0.999;                    // HF 0.999
  double adam_epsilon = 1e-8;                   // HF 1e-8
  double max_grad_norm = 1.0;                   // HF 1.0 (0 = no clipping)
  std::uint64_t seed = 42;                      // HF 42
  index_t logging_steps = 10;                   // TRL GRPOConfig 10 (HF 500)
  index_t save_steps = 500;                     // HF 500 (0 = never)
  index_t eval_steps = 0;                       // HF None = 0 (never)
  std::string output_dir = "trainer_output";   // TRL "trainer_output"

  // ------------------------------------------------ generation
  index_t num_generations = 8;            // TRL 8 (the group size G)
  index_t max_prompt_length = 512;        // TRL 512
  index_t max_completion_length = 512;    // TRL 1.16: 512 (earlier versions 256)
  double temperature = 1.0;               // TRL 1.0
  double top_p = 1.0;                     // TRL 1.0
  index_t top_k = 0;                      // TRL 0 (off)
  std::optional<double> min_p;            // TRL None (off)

  // ------------------------------------------------ loss
  double beta = 0.0;                             // TRL 0.0 (no reference model)
  index_t num_iterations = 1;                    // TRL 1 (mu)
  double epsilon = 0.2;                          // TRL 0.2 (epsilon_low)
  std::optional<double> epsilon_high;            // TRL None (= epsilon)
  std::optional<double> delta;                   // TRL None (INTELLECT-2 upper clip off)
  std::string importance_sampling_level = "token";  // TRL "token" ("sequence" = GSPO)
  std::string scale_rewards = "group";           // TRL "group" ("batch", "none")
  std::string loss_type = "dapo";                // TRL 1.16 "dapo"
  bool mask_truncated_completions = false;       // TRL False
  bool sync_ref_model = false;                   // TRL False
  double ref_model_mixup_alpha = 0.6;            // TRL 0.6
  index_t ref_model_sync_steps = 512;            // TRL 512
  double top_entropy_quantile = 1.0;             // TRL 1.0 (all tokens)
  // Rollout correction (rl/rollout_correction.hpp) when the sampler is another
  // engine than the trainer (a quantized copy): the trainer recomputes log pi_old
  // and weights each token's objective by pi_old / pi_rollout, truncated or masked.
  // TRL defaults to true but applies it only with vLLM; lmrl's sampler is the
  // trainer's own model unless told otherwise, so it is off unless asked for.
  bool vllm_importance_sampling_correction = false;
  std::string vllm_importance_sampling_mode = "sequence_mask";  // TRL; or token_truncate, token_mask, sequence_truncate
  double vllm_importance_sampling_cap = 3.0;                    // TRL 3.0: truncate at / mask above C
  double entropy_coef = 0.0;                     // entropy bonus; TRL/verl 0
  std::vector<double> reward_weights;            // TRL None (all 1)
  std::vector<std::string> reward_funcs;         // names of the reward rules (the example resolves them)

  // ------------------------------------------------ lmrl extensions
  std::string objective = "ppo";               // rl/objectives/by_name.hpp ("ppo" is TRL's GRPO loss)
  std::string advantage_estimator = "grpo";    // grpo, rloo, dr_grpo (grpo with scale none)
  std::string kl_estimator = "k3";             // rl/kl.hpp names; TRL uses k3 unclamped
  bool dynamic_sampling = false;               // DAPO: drop groups with equal rewards and refill
  index_t max_refill_rounds = 4;               // DAPO/verl max_num_gen_batches - 1
  bool overlong_filtering = false;             // DAPO: truncated completions get no loss (= mask_truncated_completions)
  bool recompute_old_logprobs = false;         // recompute log pi_old even when num_iterations == 1
  index_t log_completions_steps = 0;           // log sample completions every N steps (0 = never)
  index_t num_completions_to_print = 2;        // TRL 2 (with log_completions)
  index_t num_prompts_for_eval = 0;            // unused by the trainer; for examples

  // ------------------------------------------------ PPO with a critic, KL in the reward (TRL PPOConfig, verl)
  double kl_coef = 0.0;                        // per-token KL penalty in the reward (TRL PPOConfig 0.05; 0 = off)
  std::string kl_penalty = "k1";               // its estimator (verl algorithm.kl_penalty "kl" = k1; TRL "k1")
  std::string kl_ctrl_type = "fixed";          // verl kl_ctrl.type: "fixed" or "adaptive" (Ziegler et al.)
  double kl_target = 0.1;                      // verl kl_ctrl.target_kl (adaptive)
  double kl_horizon = 10000;                   // verl kl_ctrl.horizon (adaptive)
  double gamma = 1.0;                          // TRL PPOConfig 1.0 (GAE, REINFORCE++)
  double lam = 0.95;                           // TRL PPOConfig 0.95 (GAE)
  double vf_coef = 0.1;                        // TRL PPOConfig 0.1: value loss weight
  double cliprange_value = 0.2;                // TRL PPOConfig 0.2 (verl critic.cliprange_value 0.5)
  std::optional<double> critic_learning_rate;  // None = learning_rate (OpenRLHF critic_learning_rate)
  index_t critic_warmup = 0;                   // verl trainer.critic_warmup: steps that train the critic only

  // Derived values.
  index_t generation_steps() const { return steps_per_generation.value_or(gradient_accumulation_steps); }
  index_t generation_batch_size() const { return per_device_train_batch_size * generation_steps(); }
  index_t prompts_per_step() const { return generation_batch_size() / num_generations; }
  index_t mini_batch_size() const { return per_device_train_batch_size * gradient_accumulation_steps; }
  index_t optimizer_steps_per_step() const {
    return num_iterations * (generation_steps() / gradient_accumulation_steps);
  }
  index_t total_optimizer_steps() const { return max_steps * optimizer_steps_per_step(); }
  index_t warmup_optimizer_steps() const {
    return warmup_steps > 0 ? warmup_steps
                            : static_cast<index_t>(std::ceil(warmup_ratio * static_cast<double>(total_optimizer_steps())));
  }
  double epsilon_low() const { return epsilon; }
  double epsilon_high_value() const { return epsilon_high.value_or(epsilon); }
  bool masks_truncated() const { return mask_truncated_completions || overlong_filtering; }

  void validate() const;
};

namespace detail {

inline std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

inline bool is_none(std::string_view s) { return s == "None" || s == "none" || s == "null" || s.empty(); }

template <class I>
I parse_integer(std::string_view key, std::string_view text) {
  I v{};
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  require(r.ec == std::errc() && r.ptr == text.data() + text.size(), "grpo_config: ", key, " = \"", text,
          "\" is not an integer");
  return v;
}

inline double parse_real(std::string_view key, std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  require(!s.empty() && end == s.c_str() + s.size(), "grpo_config: ", key, " = \"", text, "\" is not a number");
  return v;
}

inline bool parse_bool(std::string_view key, std::string_view text) {
  if (text == "true" || text == "True" || text == "1" || text.empty()) return true;
  if (text == "false" || text == "False" || text == "0") return false;
  fail("grpo_config: ", key, " = \"", text, "\" is not a boolean (true/false)");
}

inline std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    out.emplace_back(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

enum class field_kind { scalar, text, numbers, names };

// One key of the config: how to set it from text and how to print it.
struct config_field {
  std::string_view name;
  std::function<void(grpo_config&, std::string_view)> set;
  std::function<std::string(const grpo_config&)> get;
  bool is_flag = false;  // a boolean: "--key" alone means true
  field_kind kind = field_kind::scalar;
};

template <class M>
config_field make_field(std::string_view name, M grpo_config::*member) {
  config_field f;
  f.name = name;
  f.set = [name, member](grpo_config& c, std::string_view text) {
    auto& m = c.*member;
    using V = std::decay_t<decltype(m)>;
    if constexpr (std::is_same_v<V, bool>) {
      m = parse_bool(name, text);
    } else if constexpr (std::is_same_v<V, std::string>) {
      m = std::string(text);
    } else if constexpr (std::is_same_v<V, double>) {
      m = parse_real(name, text);
    } else if constexpr (std::is_same_v<V, std::optional<double>>) {
      if (is_none(text)) m.reset(); else m = parse_real(name, text);
    } else if constexpr (std::is_same_v<V, std::optional<index_t>>) {
      if (is_none(text)) m.reset(); else m = parse_integer<index_t>(name, text);
    } else if constexpr (std::is_same_v<V, std::vector<double>>) {
      m.clear();
      for (const auto& s : split_list(text)) m.push_back(parse_real(name, s));
    } else if constexpr (std::is_same_v<V, std::vector<std::string>>) {
      m = split_list(text);
    } else {
      m = parse_integer<V>(name, text);
    }
  };
  f.get = [member](const grpo_config& c) -> std::string {
    const auto& m = c.*member;
    using V = std::decay_t<decltype(m)>;
    if constexpr (std::is_same_v<V, bool>) {
      return m ? "true" : "false";
    } else if constexpr (std::is_same_v<V, std::string>) {
      return m;
    } else if constexpr (std::is_same_v<V, double>) {
      return json::number_text(m);
    } else if constexpr (std::is_same_v<V, std::optional<double>>) {
      return m ? json::number_text(*m) : "None";
    } else if constexpr (std::is_same_v<V, std::optional<index_t>>) {
      return m ? std::to_string(*m) : "None";
    } else if constexpr (std::is_same_v<V, std::vector<double>>) {
      std::string s;
      for (double v : m) {
        if (!s.empty()) s += ',';
        s += json::number_text(v);
      }
      return s;
    } else if constexpr (std::is_same_v<V, std::vector<std::string>>) {
      std::string s;
      for (const auto& v : m) {
        if (!s.empty()) s += ',';
        s += v;
      }
      return s;
    } else {
      return std::to_string(m);
    }
  };
  f.is_flag = std::is_same_v<M, bool>;
  if constexpr (std::is_same_v<M, std::string>) f.kind = field_kind::text;
  if constexpr (std::is_same_v<M, std::vector<double>>) f.kind = field_kind::numbers;
  if constexpr (std::is_same_v<M, std::vector<std::string>>) f.kind = field_kind::names;
  return f;
}

}  // namespace detail

// Every key, in the order of the struct.
inline const std::vector<detail::config_field>& grpo_config_fields() {
  using detail::make_field;
  using C = grpo_config;
  static const std::vector<detail::config_field> fields = {
      make_field("learning_rate", &C::learning_rate),
      make_field("per_device_train_batch_size", &C::per_device_train_batch_size),
      make_field("gradient_accumulation_steps", &C::gradient_accumulation_steps),
      make_field("steps_per_generation", &C::steps_per_generation),
      make_field("max_steps", &C::max_steps),
      make_field("warmup_ratio", &C::warmup_ratio),
      make_field("warmup_steps", &C::warmup_steps),
      make_field("lr_scheduler_type", &C::lr_scheduler_type),
      make_field("weight_decay", &C::weight_decay),
      make_field("adam_beta1", &C::adam_beta1),
      make_field("adam_beta2", &C::adam_beta2),
      make_field("adam_epsilon", &C::adam_epsilon),
      make_field("max_grad_norm", &C::max_grad_norm),
      make_field("seed", &C::seed),
      make_field("logging_steps", &C::logging_steps),
      make_field("save_steps", &C::save_steps),
      make_field("eval_steps", &C::eval_steps),
      make_field("output_dir", &C::output_dir),
      make_field("num_generations", &C::num_generations),
      make_field("max_prompt_length", &C::max_prompt_length),
      make_field("max_completion_length", &C::max_completion_length),
      make_field("temperature", &C::temperature),
      make_field("top_p", &C::top_p),
      make_field("top_k", &C::top_k),
      make_field("min_p", &C::min_p),
      make_field("beta", &C::beta),
      make_field("num_iterations", &C::num_iterations),
      make_field("epsilon", &C::epsilon),
      make_field("epsilon_high", &C::epsilon_high),
      make_field("delta", &C::delta),
      make_field("importance_sampling_level", &C::importance_sampling_level),
      make_field("scale_rewards", &C::scale_rewards),
      make_field("loss_type", &C::loss_type),
      make_field("mask_truncated_completions", &C::mask_truncated_completions),
      make_field("sync_ref_model", &C::sync_ref_model),
      make_field("ref_model_mixup_alpha", &C::ref_model_mixup_alpha),
      make_field("ref_model_sync_steps", &C::ref_model_sync_steps),
      make_field("top_entropy_quantile", &C::top_entropy_quantile),
      make_field("vllm_importance_sampling_correction", &C::vllm_importance_sampling_correction),
      make_field("vllm_importance_sampling_mode", &C::vllm_importance_sampling_mode),
      make_field("vllm_importance_sampling_cap", &C::vllm_importance_sampling_cap),
      make_field("entropy_coef", &C::entropy_coef),
      make_field("reward_weights", &C::reward_weights),
      make_field("reward_funcs", &C::reward_funcs),
      make_field("objective", &C::objective),
      make_field("advantage_estimator", &C::advantage_estimator),
      make_field("kl_estimator", &C::kl_estimator),
      make_field("dynamic_sampling", &C::dynamic_sampling),
      make_field("max_refill_rounds", &C::max_refill_rounds),
      make_field("overlong_filtering", &C::overlong_filtering),
      make_field("recompute_old_logprobs", &C::recompute_old_logprobs),
      make_field("log_completions_steps", &C::log_completions_steps),
      make_field("num_completions_to_print", &C::num_completions_to_print),
      make_field("num_prompts_for_eval", &C::num_prompts_for_eval),
      make_field("kl_coef", &C::kl_coef),
      make_field("kl_penalty", &C::kl_penalty),
      make_field("kl_ctrl_type", &C::kl_ctrl_type),
      make_field("kl_target", &C::kl_target),
      make_field("kl_horizon", &C::kl_horizon),
      make_field("gamma", &C::gamma),
      make_field("lam", &C::lam),
      make_field("vf_coef", &C::vf_coef),
      make_field("cliprange_value", &C::cliprange_value),
      make_field("critic_learning_rate", &C::critic_learning_rate),
      make_field("critic_warmup", &C::critic_warmup),
  };
  return fields;
}

// The known key closest to `key` (edit distance), for "did you mean" messages.
inline std::string closest_key(std::string_view key, const std::vector<std::string_view>& known) {
  std::string best;
  std::size_t best_d = std::numeric_limits<std::size_t>::max();
  for (auto k : known) {
    const std::size_t d = detail::edit_distance(key, k);
    if (d < best_d) {
      best_d = d;
      best = std::string(k);
    }
  }
  return best;
}

inline const detail::config_field* find_grpo_config_field(std::string_view key) {
  for (const auto& f : grpo_config_fields())
    if (f.name == key) return &f;
  return nullptr;
}

// Throws when the key is unknown, naming the closest known key.
inline const detail::config_field& grpo_config_field(std::string_view key, std::string_view where = "grpo_config") {
  if (const auto* f = find_grpo_config_field(key)) return *f;
  std::vector<std::string_view> names;
  for (const auto& f : grpo_config_fields()) names.push_back(f.name);
  detail::fail(where, ": unknown key \"", key, "\"; did you mean \"", closest_key(key, names), "\"?");
}

// Sets one key from its text form (does not validate the whole config).
inline void set_grpo_config_value(grpo_config& c, std::string_view key, std::string_view value) {
  grpo_config_field(key).set(c, value);
}

inline std::string get_grpo_config_value(const grpo_config& c, std::string_view key) {
  return grpo_config_field(key).get(c);
}

// The text form of a JSON value, as set_grpo_config_value reads it.
inline std::string json_value_text(const json::node& n) {
  switch (n.type()) {
    case json::kind::null: return "None";
    case json::kind::boolean: return n.as_bool() ? "true" : "false";
    case json::kind::string: return n.as_string();
    case json::kind::number: {
      const double d = n.as_double();
      if (std::floor(d) == d && std::fabs(d) < 9.0e15) return std::to_string(static_cast<std::int64_t>(d));
      return json::number_text(d);
    }
    case json::kind::array: {
      std::string s;
      for (std::size_t i = 0; i < n.size(); ++i) s += (i ? "," : "") + json_value_text(n[i]);
      return s;
    }
    case json::kind::object: break;
  }
  detail::fail(n.source(), ": ", n.path(), ": expected a number, string, boolean, null or array, got an object");
}

// Applies every member of a JSON object (the text of a config file).
inline void apply_grpo_config_json(grpo_config& c, std::string_view text, std::string_view source = "config.json") {
  const json::value doc = json::parse(text, source);
  const json::node root(doc, std::string(source));
  for (const auto& m : root.as_object()) {
    const auto& field = grpo_config_field(m.first, source);
    field.set(c, json_value_text(root.member_value(m)));
  }
}

inline void apply_grpo_config_file(grpo_config& c, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  detail::require(static_cast<bool>(in), "grpo_config: cannot open config file \"", path, "\"");
  std::ostringstream text;
  text << in.rdbuf();
  apply_grpo_config_json(c, text.str(), path);
}

// What a caller's flag handler did with a flag that is not a config key.
enum class flag_use { not_mine, used_alone, used_value };

// Applies --key=value and --key value flags ('-' in a key reads as '_').
// "--config file.json" applies a file's keys where the flag appears. A flag
// that is not a key goes to `other(name, value)` (value: after '=' or the next
// argument when it does not start with "--"), which says whether it took the
// flag alone, the flag with that value, or neither (then it is an error naming
// the closest key). Returns the arguments that are not flags, in order.
inline std::vector<std::string> apply_grpo_config_flags(
    grpo_config& c, int argc, const char* const* argv,
    const std::function<flag_use(std::string_view, std::optional<std::string_view>)>& other = {}) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      positional.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(2);
    std::string_view key = arg;
    std::optional<std::string_view> value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      key = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    std::string normalized(key);
    std::replace(normalized.begin(), normalized.end(), '-', '_');
    const bool next_is_value = i + 1 < argc && std::string_view(argv[i + 1]).substr(0, 2) != "--";
    if (normalized == "config") {
      if (!value) {
        detail::require(next_is_value, "grpo_config: --config needs a file name");
        value = argv[++i];
      }
      apply_grpo_config_file(c, std::string(*value));
      continue;
    }
    const auto* field = find_grpo_config_field(normalized);
    if (!field) {
      if (other) {
        std::optional<std::string_view> v = value;
        if (!v && next_is_value) v = std::string_view(argv[i + 1]);
        const flag_use use = other(normalized, v);
        if (use == flag_use::used_value && !value && v) ++i;
        if (use != flag_use::not_mine) continue;
      }
      grpo_config_field(normalized, "command line");  // throws with a suggestion
    }
    if (!value) {
      if (field->is_flag && !(next_is_value && (std::string_view(argv[i + 1]) == "true" ||
                                                std::string_view(argv[i + 1]) == "false"))) {
        value = "true";
      } else {
        detail::require(next_is_value, "grpo_config: --", normalized, " needs a value");
        value = argv[++i];
      }
    }
    field->set(c, *value);
  }
  return positional;
}

// The whole config as a JSON object (in the order of the struct), for logs and checkpoints.
inline std::string grpo_config_json(const grpo_config& c) {
  std::string out = "{";
  for (const auto& f : grpo_config_fields()) {
    out += out.size() == 1 ? "\n  " : ",\n  ";
    out += json::quoted(f.name) + ": ";
    const std::string v = f.get(c);
    if (f.kind == detail::field_kind::text) {
      out += json::quoted(v);
    } else if (f.kind == detail::field_kind::names) {
      std::string list;
      for (const auto& s : detail::split_list(v)) list += (list.empty() ? "" : ", ") + json::quoted(s);
      out += "[" + list + "]";
    } else if (f.kind == detail::field_kind::numbers) {
      out += "[" + v + "]";
    } else {
      out += v == "None" ? "null" : v;
    }
  }
  return out + "\n}\n";
}

namespace detail {

inline void require_range(const char* key, double v, double lo, double hi, const char* range) {
  require(std::isfinite(v) && v >= lo && v <= hi, "grpo_config: ", key, " = ", v, " is out of range; allowed ", range);
}

inline void require_one_of(const char* key, const std::string& v, std::initializer_list<std::string_view> allowed) {
  for (auto a : allowed)
    if (v == a) return;
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  fail("grpo_config: ", key, " = \"", v, "\" is not allowed; allowed values: ", list);
}

}  // namespace detail

inline void grpo_config::validate() const {
  using detail::require;
  using detail::require_range;
  constexpr double inf = std::numeric_limits<double>::max();
  require_range("learning_rate", learning_rate, 0, 1, "[0, 1]");
  require_range("per_device_train_batch_size", static_cast<double>(per_device_train_batch_size), 1, 1e9, "[1, 1e9]");
  require_range("gradient_accumulation_steps", static_cast<double>(gradient_accumulation_steps), 1, 1e6, "[1, 1e6]");
  if (steps_per_generation)
    require_range("steps_per_generation", static_cast<double>(*steps_per_generation), 1, 1e6, "[1, 1e6]");
  require(generation_steps() % gradient_accumulation_steps == 0, "grpo_config: steps_per_generation = ",
          generation_steps(), " must be a multiple of gradient_accumulation_steps = ", gradient_accumulation_steps);
  require_range("max_steps", static_cast<double>(max_steps), 1, 1e12, "[1, 1e12]");
  require_range("warmup_ratio", warmup_ratio, 0, 1, "[0, 1]");
  require_range("warmup_steps", static_cast<double>(warmup_steps), 0, 1e12, "[0, 1e12]");
  detail::require_one_of("lr_scheduler_type", lr_scheduler_type,
                         {"linear", "cosine", "constant", "constant_with_warmup"});
  require_range("weight_decay", weight_decay, 0, 1, "[0, 1]");
  require_range("adam_beta1", adam_beta1, 0, 0.999999, "[0, 1)");
  require_range("adam_beta2", adam_beta2, 0, 0.999999999, "[0, 1)");
  require_range("adam_epsilon", adam_epsilon, 1e-30, 1, "(0, 1]");
  require_range("max_grad_norm", max_grad_norm, 0, inf, "[0, inf) (0 = no clipping)");
  require_range("logging_steps", static_cast<double>(logging_steps), 1, 1e12, "[1, 1e12]");
  require_range("save_steps", static_cast<double>(save_steps), 0, 1e12, "[0, 1e12] (0 = never)");
  require_range("eval_steps", static_cast<double>(eval_steps), 0, 1e12, "[0, 1e12] (0 = never)");
  require(!output_dir.empty(), "grpo_config: output_dir is empty");
  require_range("num_generations", static_cast<double>(num_generations), 2, 1e6,
                "[2, 1e6] (GRPO needs at least 2 completions per prompt)");
  require(generation_batch_size() % num_generations == 0, "grpo_config: the generation batch ",
          "(per_device_train_batch_size * steps_per_generation = ", generation_batch_size(),
          ") must be a multiple of num_generations = ", num_generations);
  require_range("max_prompt_length", static_cast<double>(max_prompt_length), 1, 1e9, "[1, 1e9]");
  require_range("max_completion_length", static_cast<double>(max_completion_length), 1, 1e9, "[1, 1e9]");
  require_range("temperature", temperature, 1e-6, 100, "(0, 100]");
  require_range("top_p", top_p, 1e-9, 1, "(0, 1]");
  require_range("top_k", static_cast<double>(top_k), 0, 1e9, "[0, 1e9] (0 = off)");
  if (min_p) require_range("min_p", *min_p, 0, 0.999999, "[0, 1)");
  require_range("beta", beta, 0, 1e6, "[0, 1e6]");
  require_range("num_iterations", static_cast<double>(num_iterations), 1, 1000, "[1, 1000]");
  require_range("epsilon", epsilon, 0, 1, "[0, 1]");
  if (epsilon_high) require_range("epsilon_high", *epsilon_high, 0, inf, "[0, inf)");
  if (delta) require_range("delta", *delta, 1, inf, "(1, inf) (TRL: > 1 + epsilon)");
  detail::require_one_of("importance_sampling_level", importance_sampling_level, {"token", "sequence"});
  detail::require_one_of("vllm_importance_sampling_mode", vllm_importance_sampling_mode,
                         {"token_truncate", "token_mask", "sequence_truncate", "sequence_mask"});
  require_range("vllm_importance_sampling_cap", vllm_importance_sampling_cap, 1e-12, 1e300, "(0, inf)");
  detail::require_one_of("scale_rewards", scale_rewards, {"group", "batch", "none", "true", "false"});
  detail::require_one_of("loss_type", loss_type,
                         {"grpo", "bnpo", "dr_grpo", "dapo", "luspo", "token-mean", "token-sum", "seq-mean-token-mean",
                          "seq-mean-token-sum", "seq-mean-token-sum-norm"});
  require_range("ref_model_mixup_alpha", ref_model_mixup_alpha, 0, 1, "[0, 1]");
  require_range("ref_model_sync_steps", static_cast<double>(ref_model_sync_steps), 1, 1e12, "[1, 1e12]");
  require_range("top_entropy_quantile", top_entropy_quantile, 0, 1, "[0, 1]");
  require_range("entropy_coef", entropy_coef, -1e6, 1e6, "[-1e6, 1e6]");
  for (std::size_t k = 0; k < reward_weights.size(); ++k)
    require(std::isfinite(reward_weights[k]), "grpo_config: reward_weights[", k, "] = ", reward_weights[k],
            " is not finite");
  if (!reward_weights.empty() && !reward_funcs.empty())
    require(reward_weights.size() == reward_funcs.size(), "grpo_config: reward_weights has ", reward_weights.size(),
            " entries but reward_funcs has ", reward_funcs.size());
  detail::require_one_of("objective", objective,
                         {"ppo", "vanilla", "grpo", "gspo", "gspo_token", "gmpo", "geo_mean", "cispo", "sapo",
                          "clip_cov", "kl_cov", "reinforce", "gpg"});
  detail::require_one_of("advantage_estimator", advantage_estimator,
                         {"grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae"});
  detail::require_one_of("kl_estimator", kl_estimator,
                         {"kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "kl+", "k1+", "abs+", "low_var_kl+",
                          "k3+"});
  require_range("max_refill_rounds", static_cast<double>(max_refill_rounds), 0, 1000, "[0, 1000]");
  require_range("kl_coef", kl_coef, 0, 1e6, "[0, 1e6] (0 = no KL in the reward)");
  detail::require_one_of("kl_penalty", kl_penalty,
                         {"kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"});
  detail::require_one_of("kl_ctrl_type", kl_ctrl_type, {"fixed", "adaptive"});
  require_range("kl_target", kl_target, 1e-12, 1e6, "(0, 1e6]");
  require_range("kl_horizon", kl_horizon, 1, 1e12, "[1, 1e12]");
  require_range("gamma", gamma, 0, 1, "[0, 1]");
  require_range("lam", lam, 0, 1, "[0, 1]");
  require_range("vf_coef", vf_coef, 1e-12, 1e6, "(0, 1e6]");
  require_range("cliprange_value", cliprange_value, 1e-12, inf, "(0, inf) (a huge value: no clipping)");
  if (critic_learning_rate) require_range("critic_learning_rate", *critic_learning_rate, 0, 1, "[0, 1]");
  require_range("critic_warmup", static_cast<double>(critic_warmup), 0, 1e12, "[0, 1e12]");
  require_range("log_completions_steps", static_cast<double>(log_completions_steps), 0, 1e12, "[0, 1e12]");
  require_range("num_completions_to_print", static_cast<double>(num_completions_to_print), 0, 1e6, "[0, 1e6]");
}

}  // namespace lmrl
