// Supervised fine-tuning on prompt-completion examples: the cold-start stage
// of DeepSeek-R1 (a small set of long, readable worked solutions in the
// think/answer format), the second SFT on rejection-sampled data, and
// sequence-level distillation (a student trained on a teacher's traces).
//
//   L = -(1 / N) sum over completion tokens of log p(x_t | x_<t)
//
// over each batch, the prompt's tokens conditioning but never counted (TRL's
// completion_only_loss; N = the batch's completion tokens). It is pretrain()'s
// loop and loss: the same clipping, AdamW, warmup + cosine schedule,
// length-grouped micro-batches or packing, and resumable checkpoints; this
// header adds the dataset side: tokenized examples drawn in epochs, each
// epoch a fresh seeded shuffle (so the order is a function of the seed and
// the step alone, and a resumed run continues where it stopped).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/data/random.hpp"
#include "lmrl/error.hpp"
#include "lmrl/train/pretrain.hpp"

namespace lmrl {

// One SFT example as token ids: the loss covers tokens[prompt_length:].
// The prompt and the completion are encoded separately and concatenated (as
// TRL does for prompt-completion data), so a tokenizer that would merge
// across the boundary cannot move it.
inline pretrain_example sft_tokenize(std::string_view prompt, std::string_view completion,
                                     const std::function<std::vector<std::int32_t>(std::string_view)>& encode) {
  pretrain_example e;
  e.tokens = encode(prompt);
  e.loss_from = e.tokens.size();
  const std::vector<std::int32_t> c = encode(completion);
  detail::require(!c.empty(), "sft_tokenize: the completion \"", completion.substr(0, 40), "\" encodes to no token");
  e.tokens.insert(e.tokens.end(), c.begin(), c.end());
  return e;
}

// Draws a dataset's examples in epochs: each epoch visits every example once,
// in a shuffle seeded by (seed, epoch).
class epoch_sampler {
 public:
  epoch_sampler(std::vector<pretrain_example> examples, std::uint64_t seed)
      : examples_(std::move(examples)), seed_(seed) {
    detail::require(!examples_.empty(), "epoch_sampler: the dataset is empty");
  }

  pretrain_example operator()() {
    if (next_ == order_.size()) shuffle();
    return examples_[order_[next_++]];
  }

  std::size_t size() const { return examples_.size(); }
  std::uint64_t epoch() const { return epoch_; }  // epochs started so far

 private:
  void shuffle() {
    order_.resize(examples_.size());
    for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
    data::task_rng gen(data::mix64(seed_ ^ (0x9e3779b97f4a7c15ULL * (epoch_ + 1))));
    for (std::size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[data::uniform_below(gen, i)]);
    ++epoch_;
    next_ = 0;
  }

  std::vector<pretrain_example> examples_;
  std::uint64_t seed_;
  std::uint64_t epoch_ = 0;
  std::vector<std::size_t> order_;
  std::size_t next_ = 0;
};

// The steps that cover `epochs` passes over `examples` examples in batches of batch_size (rounded up).
inline index_t sft_steps_for_epochs(double epochs, std::size_t examples, index_t batch_size) {
  detail::require(epochs > 0, "sft_steps_for_epochs: epochs = ", epochs, " must be > 0");
  detail::require(batch_size >= 1, "sft_steps_for_epochs: batch_size = ", batch_size, " must be >= 1");
  const double steps = epochs * static_cast<double>(examples) / static_cast<double>(batch_size);
  return std::max<index_t>(1, static_cast<index_t>(std::ceil(steps - 1e-9)));
}

// Fine-tunes `model` (the transformer, or any PretrainableModel: the GPU policy) on `examples`
// (completion-only loss) for config.steps steps.
template <PretrainableModel Model>
pretrain_result supervised_fine_tune(Model& model, std::vector<pretrain_example> examples,
                                     const pretrain_config& config, std::uint64_t seed,
                                     const std::function<void(const pretrain_record&)>& on_log = {},
                                     const pretrain_checkpointing& checkpointing = {}) {
  for (std::size_t i = 0; i < examples.size(); ++i)
    detail::require(examples[i].tokens.size() > std::max<std::size_t>(1, examples[i].loss_from),
                    "supervised_fine_tune: example ", i, " has ", examples[i].tokens.size(),
                    " tokens and its completion starts at ", examples[i].loss_from, ": nothing to learn");
  epoch_sampler source(std::move(examples), seed);
  return pretrain(model, source, config, on_log, checkpointing);
}

}  // namespace lmrl
