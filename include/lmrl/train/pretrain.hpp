// Next-token pretraining of the bundled transformer: the "base model" stage
// before R1-Zero's RL, on a corpus that a task generator writes.
//
// Each step draws batch_size examples from a source and minimizes the mean
// negative log-likelihood of the tokens marked for the loss (from `loss_from`
// on; TRL's SFT "completion only" when loss_from is the prompt length, plain
// language modelling when it is 0):
//
//   L = -(1 / N) sum_{i, t >= max(1, loss_from_i)} log p(x_{i,t} | x_{i,<t}),   N = number of such tokens
//
// so dL/dlogp = -1/N on those positions, which the transformer's backward
// turns into parameter gradients. Global-norm clipping, AdamW and a cosine
// schedule with warmup (down to min_lr_rate * lr) follow, as in the usual
// small-LM recipes (nanoGPT, llm.c).
//
// A batch mixes short examples (a direct answer) with long ones (a worked
// chain): padded to one length, most of its positions would be padding, so
// it runs as micro-batches of similar lengths (length_groups) whose gradients
// add up to the padded batch's. With `packing` (TRL's SFTConfig.packing),
// short examples share rows of up to max_length tokens instead: the row's
// attention mask numbers them, so each still attends only to itself
// (transformer.hpp), and the loss is the same. Checkpoints
// (pretrain_checkpointing) let a stopped run resume bit for bit.
//
// The loop (batches, clipping, AdamW, schedule, logging, checkpoints) takes
// any loss on a batch of examples: the SFT stages (sft.hpp) use it as it is,
// logit distillation (distill.hpp) passes its own. It trains any
// PretrainableModel: the bundled transformer, or a TrainablePolicy such as
// the GPU transformer's policy (train/transformer_gpu_policy.cuh), whose
// master parameters and gradient the loop clips and steps on the host.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/error.hpp"
#include "lmrl/model/transformer.hpp"
#include "lmrl/rl/policy.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/train/adamw.hpp"
#include "lmrl/train/checkpoint.hpp"
#include "lmrl/train/clip_grad.hpp"
#include "lmrl/train/optimizer_step.hpp"
#include "lmrl/train/schedule.hpp"
#include "lmrl/train/signals.hpp"

namespace lmrl {

// What pretrain() and next_token_loss() train: log-probs and their backward
// (rl/policy.hpp's Policy), one flat parameter buffer and its gradient buffer
// in host memory (backward adds into it), and zero_grad. transformer<T> is one
// (its parameters().values()); so is every TrainablePolicy. The step is
// train/optimizer_step.hpp's: on a DeviceSteppedModel it runs on the device.
template <class M>
concept PretrainableModel = Policy<M> && requires(M& m) {
  { detail::parameter_values(m) } -> std::same_as<std::span<typename M::value_type>>;
  { m.gradients() } -> std::same_as<std::span<typename M::value_type>>;
  { m.zero_grad() };
};

// One training sequence; the loss covers tokens[t] for t >= max(1, loss_from).
struct pretrain_example {
  std::vector<std::int32_t> tokens;
  std::size_t loss_from = 0;
};

struct pretrain_config {
  index_t steps = 1000;
  index_t batch_size = 64;
  double lr = 3e-3;
  double warmup_ratio = 0.05;
  double min_lr_rate = 0.1;   // the cosine ends at min_lr_rate * lr
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.95;
  double adam_epsilon = 1e-8;  // HF's default
  double max_grad_norm = 1.0;  // 0 = no clipping
  index_t log_every = 50;      // on_log every this many steps (and at the last)
  bool group_by_length = true;  // micro-batches of similar lengths (the same gradient, less padding)
  bool packing = false;         // several examples per row, up to max_length tokens (TRL SFTConfig.packing)
  index_t max_length = 1024;    // a packed row's capacity; a longer example gets a row of its own, whole

  void validate() const {
    const char* f = "pretrain_config";
    detail::require(steps >= 0, f, ": steps = ", steps, " must be >= 0");
    detail::require(batch_size >= 1, f, ": batch_size = ", batch_size, " must be >= 1");
    detail::require(lr > 0 && std::isfinite(lr), f, ": lr = ", lr, " must be finite and > 0");
    detail::require(warmup_ratio >= 0 && warmup_ratio <= 1, f, ": warmup_ratio = ", warmup_ratio,
                    " must be in [0, 1]");
    detail::require(min_lr_rate >= 0 && min_lr_rate <= 1, f, ": min_lr_rate = ", min_lr_rate, " must be in [0, 1]");
    detail::require(max_grad_norm >= 0, f, ": max_grad_norm = ", max_grad_norm, " must be >= 0");
    detail::require(log_every >= 1, f, ": log_every = ", log_every, " must be >= 1");
    detail::require(max_length >= 1, f, ": max_length = ", max_length, " must be >= 1");
    adam().validate(f);
  }
  // The optimizer's settings (its learning rate the peak of the schedule).
  adamw_config adam() const { return {lr, adam_beta1, adam_beta2, adam_epsilon, weight_decay}; }
};

struct pretrain_record {
  index_t step = 0;         // 1-based
  double loss = 0;          // mean NLL of this step's batch
  double lr = 0;
  double grad_norm = 0;     // before clipping
  long long tokens = 0;     // the examples' tokens processed so far (padding not counted)
  double seconds = 0;       // wall time so far
};

// Splits examples of these lengths into micro-batches that minimize the
// padded positions plus `overhead` per micro-batch (what one more forward and
// backward call costs, in positions): the lengths sorted, then the best cut
// of the sorted order by dynamic programming. Each group lists indices into
// `lengths`, longest first; an infinite overhead gives one group. Exposed for tests.
inline std::vector<std::vector<std::size_t>> length_groups(std::span<const std::size_t> lengths,
                                                           double overhead = 512) {
  const std::size_t n = lengths.size();
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return lengths[a] > lengths[b]; });
  if (n == 0) return {};
  if (std::isinf(overhead)) return {order};
  // best[k]: least cost of the first k (longest) examples; a group order[j..k)
  // is padded to lengths[order[j]], its longest.
  std::vector<double> best(n + 1, 0.0);
  std::vector<std::size_t> cut(n + 1, 0);
  for (std::size_t k = 1; k <= n; ++k) {
    best[k] = std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < k; ++j) {
      const double cost = best[j] + overhead + static_cast<double>(k - j) * static_cast<double>(lengths[order[j]]);
      if (cost < best[k]) best[k] = cost, cut[k] = j;
    }
  }
  std::vector<std::vector<std::size_t>> groups;
  for (std::size_t k = n; k > 0; k = cut[k]) groups.emplace_back(order.begin() + cut[k], order.begin() + k);
  std::reverse(groups.begin(), groups.end());
  return groups;
}

// Packs examples of these lengths into rows of at most max_length tokens,
// first fit in order of decreasing length (the usual bin-packing heuristic;
// TRL packs with best fit decreasing). An example longer than max_length gets
// a row of its own: it is never cut. Each row lists indices into `lengths`.
inline std::vector<std::vector<std::size_t>> pack_sequences(std::span<const std::size_t> lengths,
                                                            std::size_t max_length) {
  std::vector<std::size_t> order(lengths.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return lengths[a] > lengths[b]; });
  std::vector<std::vector<std::size_t>> rows;
  std::vector<std::size_t> used;
  for (std::size_t i : order) {
    std::size_t r = 0;
    while (r < rows.size() && used[r] + lengths[i] > max_length) ++r;
    if (r == rows.size()) rows.emplace_back(), used.push_back(0);
    rows[r].push_back(i);
    used[r] += lengths[i];
  }
  return rows;
}

namespace detail {

// Rows of a micro-batch: each row lists the examples it holds, in order.
using example_rows = std::vector<std::vector<std::size_t>>;

// The examples of `rows` as one right-padded batch. A row of several examples
// numbers them 1, 2, ... in the attention mask (packing). weight(i, t) is 1 on
// the tokens the loss covers: t >= max(1, loss_from) within each example.
template <Real T>
struct example_batch {
  dense<std::int32_t, 2> tokens;
  dense<T, 2> attention, weight;

  example_batch(const std::vector<pretrain_example>& batch, const example_rows& rows) {
    index_t L = 1;
    for (const auto& row : rows) {
      std::size_t n = 0;
      for (std::size_t e : row) n += batch[e].tokens.size();
      L = std::max<index_t>(L, static_cast<index_t>(n));
    }
    const auto B = static_cast<index_t>(rows.size());
    tokens = dense<std::int32_t, 2>({B, L});
    attention = dense<T, 2>({B, L});
    weight = dense<T, 2>({B, L});
    for (index_t i = 0; i < B; ++i) {
      index_t col = 0;
      T number = T(0);
      for (std::size_t e : rows[static_cast<std::size_t>(i)]) {
        const pretrain_example& x = batch[e];
        number += T(1);
        for (std::size_t t = 0; t < x.tokens.size(); ++t, ++col) {
          tokens(i, col) = x.tokens[t];
          attention(i, col) = number;
          if (t >= 1 && t >= x.loss_from) weight(i, col) = T(1);
        }
      }
    }
  }
  token_batch<T> view() const { return {tokens.view(), attention.view()}; }
};

// Sum over the examples of `rows` of weight * log p of their marked tokens, and
// (when scale != 0) backward of scale * that sum.
template <PretrainableModel Model, class T = typename Model::value_type>
double padded_nll(Model& model, const std::vector<pretrain_example>& batch, const example_rows& rows, T scale) {
  example_batch<T> eb(batch, rows);
  auto& weight = eb.weight;
  const index_t B = weight.shape()[0], L = weight.shape()[1];
  dense<T, 2> logp({B, L});
  const token_batch<T> tb = eb.view();
  model.log_probs(tb, logp.view(), matrix_view<T>{});
  double nll = 0;
  for (index_t i = 0; i < B; ++i)
    for (index_t t = 0; t < L; ++t) nll -= static_cast<double>(weight(i, t)) * static_cast<double>(logp(i, t));
  if (scale != T(0)) {
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < L; ++t) weight(i, t) *= scale;
    model.backward(tb, weight.view(), matrix_view<const T>{});
  }
  return nll;
}

}  // namespace detail

// What one more micro-batch costs, in padded positions (the forward and
// backward calls' fixed work): length_groups' default overhead.
inline constexpr double micro_batch_overhead = 512;

// How a batch runs: micro-batches of similar lengths (the overhead of one
// more micro-batch in padded positions; infinite = one padded batch), and
// optionally packed rows of at most pack_length tokens (0 = one example per row).
struct batch_layout {
  double overhead = micro_batch_overhead;
  std::size_t pack_length = 0;

  static batch_layout of(const pretrain_config& c) {
    return {c.group_by_length ? micro_batch_overhead : std::numeric_limits<double>::infinity(),
            c.packing ? static_cast<std::size_t>(c.max_length) : 0};
  }
};

namespace detail {

// Checks the batch and counts the tokens its loss covers (t >= max(1, loss_from)).
inline double marked_tokens(const std::vector<pretrain_example>& batch, const char* f) {
  detail::require(!batch.empty(), f, ": empty batch");
  double count = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const pretrain_example& e = batch[i];
    detail::require(!e.tokens.empty(), f, ": example ", i, " has no tokens");
    const std::size_t from = std::max<std::size_t>(1, e.loss_from);
    if (e.tokens.size() > from) count += static_cast<double>(e.tokens.size() - from);
  }
  detail::require(count > 0, f, ": no token of the batch is marked for the loss");
  return count;
}

// The batch's micro-batches: rows (one example each, or packed), grouped by length.
inline std::vector<example_rows> micro_batches(const std::vector<pretrain_example>& batch, const batch_layout& layout) {
  std::vector<std::size_t> lengths;
  for (const auto& e : batch) lengths.push_back(e.tokens.size());
  example_rows rows;
  if (layout.pack_length > 0) {
    rows = pack_sequences(lengths, layout.pack_length);
  } else {
    for (std::size_t i = 0; i < batch.size(); ++i) rows.push_back({i});
  }
  std::vector<std::size_t> row_lengths;
  for (const auto& row : rows) {
    std::size_t n = 0;
    for (std::size_t e : row) n += lengths[e];
    row_lengths.push_back(n);
  }
  std::vector<example_rows> out;
  for (const auto& group : length_groups(row_lengths, layout.overhead)) {
    example_rows micro;
    for (std::size_t r : group) micro.push_back(rows[r]);
    out.push_back(std::move(micro));
  }
  return out;
}

}  // namespace detail

// Mean NLL and (when `backward`) its gradient, added to the model's, for one
// batch; returns the loss. It runs as the micro-batches of `layout`; the
// loss is the same for every layout up to rounding. Exposed for tests.
template <PretrainableModel Model>
double next_token_loss(Model& model, const std::vector<pretrain_example>& batch, bool backward,
                       const batch_layout& layout = {}) {
  using T = typename Model::value_type;
  const double count = detail::marked_tokens(batch, "next_token_loss");
  const T scale = backward ? static_cast<T>(-1.0 / count) : T(0);
  double nll = 0;
  for (const auto& rows : detail::micro_batches(batch, layout)) nll += detail::padded_nll(model, batch, rows, scale);
  return nll / count;
}

// The loss pretrain() minimizes by default: next_token_loss with the config's layout.
struct next_token_objective {
  template <PretrainableModel Model>
  double operator()(Model& model, const std::vector<pretrain_example>& batch, const pretrain_config& config) const {
    return next_token_loss(model, batch, true, batch_layout::of(config));
  }
};

// Where pretrain() keeps checkpoints, so that Ctrl-C (or a kill) does not
// lose the pretraining: dir/checkpoint-<step>/ holds the parameters, the
// AdamW state and pretrain_state.json (step, tokens, the records so far);
// dir/latest names the newest (atomically, see checkpoint.hpp).
struct pretrain_checkpointing {
  std::string dir;         // empty: no checkpoints, and Ctrl-C does not stop pretraining
  index_t save_steps = 0;  // also a checkpoint every this many steps (0: only when stopped)
};

struct pretrain_result {
  std::vector<pretrain_record> records;  // all logged steps, those before a resume included
  index_t resumed_from = 0;              // the step a checkpoint restored (0: a fresh start)
  bool stopped = false;                  // Ctrl-C / SIGTERM: checkpoint saved at the last step done
};

namespace detail {

// What pretrain_state.json holds besides the tensors.
struct pretrain_state {
  index_t step = 0;
  index_t batch_size = 0;
  long long tokens = 0;
  double seconds = 0;
  std::vector<pretrain_record> records;
};

template <Real T>
void save_pretrain_checkpoint(const std::string& dir, const pretrain_state& state, std::span<const T> params,
                              const adamw<T>& optimizer) {
  checkpoint_writer w(dir, state.step);
  write_model_and_optimizer<T>(w, params, optimizer);
  std::string text = "{\"step\": " + std::to_string(state.step) + ", \"batch_size\": " +
                     std::to_string(state.batch_size) + ", \"tokens\": " + std::to_string(state.tokens) +
                     ", \"seconds\": " + json::number_text(state.seconds) + ", \"records\": [";
  for (std::size_t i = 0; i < state.records.size(); ++i) {
    const pretrain_record& r = state.records[i];
    text += (i ? ", [" : "[") + std::to_string(r.step);
    for (double v : {r.loss, r.lr, r.grad_norm}) text += ", " + json::number_text(v);
    text += ", " + std::to_string(r.tokens) + ", " + json::number_text(r.seconds) + "]";
  }
  w.write_file("pretrain_state.json", text + "]}\n");
  w.commit(1);
}

// Reads pretrain_state.json of checkpoint `dir` (its tensors: read_model_and_optimizer).
inline pretrain_state read_pretrain_state(const std::string& dir) {
  const std::string path = dir + "/pretrain_state.json";
  const json::value doc = json::parse(read_text_file(path), path);
  const json::node root(doc, path);
  pretrain_state state;
  state.step = static_cast<index_t>(root.at("step").as_int64());
  state.batch_size = static_cast<index_t>(root.at("batch_size").as_int64());
  state.tokens = root.at("tokens").as_int64();
  state.seconds = root.at("seconds").as_double();
  const json::node records = root.at("records");
  for (std::size_t i = 0; i < records.size(); ++i) {
    const json::node r = records[i];
    state.records.push_back({static_cast<index_t>(r[0].as_int64()), r[1].as_double(), r[2].as_double(),
                             r[3].as_double(), r[4].as_int64(), r[5].as_double()});
  }
  return state;
}

}  // namespace detail

// Trains `model` for config.steps steps on examples from `next()`, minimizing
// loss(model, batch, config) (which adds the batch loss's gradient to the
// model's and returns the loss; default: the mean next-token NLL). Throws
// lmrl::error when the loss or the gradient norm stops being finite (the
// parameters are not updated by that step).
//
// With checkpointing.dir set it resumes from the latest checkpoint there:
// parameters, optimizer state and step are restored and the first
// step * batch_size examples of `next()` are drawn and dropped, so a source
// that is a deterministic stream (grpo_zero's corpus is) continues where the
// stopped run was, and the result is bit for bit that of a run never stopped.
// Between steps it checks stop_requested() (signals.hpp) and then saves and
// returns with `stopped` set.
template <PretrainableModel Model, class Source, class Loss = next_token_objective>
  requires std::convertible_to<std::invoke_result_t<Source&>, pretrain_example> &&
           std::convertible_to<std::invoke_result_t<Loss&, Model&, const std::vector<pretrain_example>&,
                                                    const pretrain_config&>,
                               double>
pretrain_result pretrain(Model& model, Source&& next, const pretrain_config& config,
                         const std::function<void(const pretrain_record&)>& on_log = {},
                         const pretrain_checkpointing& checkpointing = {}, Loss loss_of = {}) {
  using T = typename Model::value_type;
  config.validate();
  detail::require(checkpointing.save_steps >= 0, "pretrain: save_steps = ", checkpointing.save_steps,
                  " must be >= 0");
  const adamw_config ac = config.adam();
  adamw<T> optimizer(static_cast<index_t>(detail::parameter_values(model).size()), ac);
  lr_schedule schedule;
  schedule.type = lr_schedule::kind::cosine_with_min_lr;
  schedule.num_training_steps = config.steps;
  schedule.num_warmup_steps = warmup_steps_for(config.warmup_ratio, config.steps);
  schedule.min_lr_rate = config.min_lr_rate;

  pretrain_result result;
  long long tokens = 0;
  double seconds_before = 0;  // wall time of the runs before a resume
  const bool checkpoints = !checkpointing.dir.empty();
  if (checkpoints) {
    require_writable_directory(checkpointing.dir, "pretraining checkpoint directory");
    if (const auto dir = latest_checkpoint(checkpointing.dir, "pretrain_state.json")) {
      detail::pretrain_state saved = detail::read_pretrain_state(*dir);
      detail::require(saved.step <= config.steps, "pretrain: the checkpoint in ", *dir, " is at step ", saved.step,
                      ", past steps = ", config.steps);
      detail::require(saved.batch_size == config.batch_size, "pretrain: the checkpoint in ", *dir,
                      " was made with batch_size = ", saved.batch_size, ", this run has ", config.batch_size,
                      " (its example stream would not line up)");
      read_model_and_optimizer<T>(*dir, detail::parameter_values(model), optimizer, saved.step);
      parameters_changed(model);
      push_optimizer_state(model, optimizer);
      result.resumed_from = saved.step;
      result.records = std::move(saved.records);
      tokens = saved.tokens;
      seconds_before = saved.seconds;
      for (long long k = 0; k < static_cast<long long>(saved.step) * config.batch_size; ++k)
        static_cast<void>(next());
    }
  }

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const auto seconds = [&] { return seconds_before + std::chrono::duration<double>(clock::now() - t0).count(); };
  const auto save = [&](index_t steps_done) {
    pull_optimizer_state(model, optimizer);  // a device-stepped model's moments (its parameters come with them)
    detail::save_pretrain_checkpoint<T>(checkpointing.dir,
                                        {steps_done, config.batch_size, tokens, seconds(), result.records},
                                        std::span<const T>(detail::parameter_values(model)), optimizer);
  };
  std::vector<pretrain_example> batch;
  for (index_t step = result.resumed_from; step < config.steps; ++step) {
    if (checkpoints && stop_requested()) {
      save(step);
      result.stopped = true;
      return result;
    }
    batch.clear();
    for (index_t k = 0; k < config.batch_size; ++k) {
      batch.push_back(next());
      tokens += static_cast<long long>(batch.back().tokens.size());
    }
    model.zero_grad();
    const double loss = loss_of(model, batch, config);
    const double norm = gradient_norm(model);
    detail::require(std::isfinite(loss) && std::isfinite(norm), "pretrain: step ", step + 1, ": loss ", loss,
                    ", gradient norm ", norm, " (not finite); stopping before the update");
    const double lr = schedule.lr(config.lr, step);
    clip_and_step(model, optimizer, norm, config.max_grad_norm, lr);
    if ((step + 1) % config.log_every == 0 || step + 1 == config.steps) {
      pretrain_record r{step + 1, loss, lr, norm, tokens, seconds()};
      result.records.push_back(r);
      if (on_log) on_log(r);
    }
    if (checkpoints && checkpointing.save_steps > 0 && (step + 1) % checkpointing.save_steps == 0 &&
        step + 1 < config.steps)
      save(step + 1);
  }
  return result;
}

}  // namespace lmrl
