// The bundled transformer as the trainer's policy and rollout generator.
//
//   transformer_policy<T>    TrainablePolicy: log-probs, backward, and the one
//                            flat parameter / gradient buffer of the model
//   transformer_rollouts<T>  RolloutGenerator: KV-cache generation (generate.hpp)
//                            with the policy's current weights; stops on the
//                            end-of-sequence ids
//   transformer_critic<T>    ValueModel (PPO): the transformer with a value head,
//                            its own weights (from the policy's, value head 0)
//   transformer_shared_critic<T>  ValueModel on the policy's own trunk: the
//                            policy carries the value head (with_value_head)
//
// The adapter is thin on purpose: a user's own model needs the same few
// members (see rl/policy.hpp and the concepts at the top of grpo_trainer.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "lmrl/model/generate.hpp"
#include "lmrl/model/transformer.hpp"
#include "lmrl/rl/policy.hpp"
#include "lmrl/sample/philox.hpp"
#include "lmrl/train/grpo_trainer.hpp"
#include "lmrl/train/rollout_generation.hpp"

namespace lmrl {

template <Real T>
class transformer_policy {
 public:
  using value_type = T;

  explicit transformer_policy(transformer<T> model) : model_(std::move(model)) {}

  transformer<T>& model() { return model_; }
  const transformer<T>& model() const { return model_; }

  std::span<T> parameters() { return model_.parameters().values(); }
  std::span<T> gradients() { return model_.gradients(); }
  void zero_grad() { model_.zero_grad(); }

  void log_probs(const token_batch<T>& batch, matrix_view<T> logp, matrix_view<T> entropy) {
    model_.log_probs(batch, logp, entropy);
  }
  void backward(const token_batch<T>& batch, matrix_view<const T> grad_logp, matrix_view<const T> grad_entropy) {
    model_.backward(batch, grad_logp, grad_entropy);
  }

 private:
  transformer<T> model_;
};

template <Real T>
class transformer_critic {
 public:
  using value_type = T;

  explicit transformer_critic(transformer<T> model) : model_(std::move(model)) {
    detail::require(model_.config().value_head, "transformer_critic: the model has no value head ",
                    "(transformer_config::value_head is false)");
  }

  // The critic PPO starts from (OpenRLHF and TRL start it from a pretrained
  // model): the policy's weights, tensor by tensor, and a value head of zeros,
  // so that V = 0 (no baseline) until the first update.
  static transformer_critic from_policy(const transformer_parameters<T>& policy) {
    return transformer_critic(transformer<T>(with_value_head(policy)));
  }

  transformer<T>& model() { return model_; }
  const transformer<T>& model() const { return model_; }

  std::span<T> parameters() { return model_.parameters().values(); }
  std::span<T> gradients() { return model_.gradients(); }
  void zero_grad() { model_.zero_grad(); }
  void values(const token_batch<T>& batch, matrix_view<T> out) { model_.values(batch, out); }
  void backward_values(const token_batch<T>& batch, matrix_view<const T> grad) { model_.backward_values(batch, grad); }

 private:
  transformer<T> model_;
};

// PPO's critic on the policy's own trunk (a shared trunk): the policy model
// carries the value head, the value loss's gradient flows into the policy's
// gradient buffer, and the policy's optimizer takes one step on the joint loss
// pg + vf_coef * vf (TRL's single loss). It has no weights of its own, so it
// costs no memory beyond the head, and a second forward pass per micro-batch.
template <Real T>
class transformer_shared_critic {
 public:
  using value_type = T;

  explicit transformer_shared_critic(transformer_policy<T>& policy) : policy_(&policy) {
    detail::require(policy.model().config().value_head, "transformer_shared_critic: the policy has no value head ",
                    "(build it from with_value_head(parameters))");
  }

  std::span<T> parameters() { return {}; }
  std::span<T> gradients() { return {}; }
  void zero_grad() {}  // the policy's gradients are the trainer's to clear
  void values(const token_batch<T>& batch, matrix_view<T> out) { policy_->model().values(batch, out); }
  void backward_values(const token_batch<T>& batch, matrix_view<const T> grad) {
    policy_->model().backward_values(batch, grad);
  }

 private:
  transformer_policy<T>* policy_;
};

template <Real T>
class transformer_rollouts {
 public:
  explicit transformer_rollouts(std::vector<std::int32_t> eos_token_ids, std::int32_t pad_token_id = 0)
      : eos_(std::move(eos_token_ids)), pad_(pad_token_id) {}

  // Generate from rounded (quantized) weights: cached_decoder::set_weight_rounding,
  // re-applied after every optimizer step; the policy trains in full precision.
  // Pair it with recompute_old_logprobs, so that the trainer's own log-probs are
  // the old ones and the gap to the sampler's is logged (rollout/logp_gap_*).
  void set_weight_rounding(typename cached_decoder<T>::weight_rounding rounding) {
    rounding_ = std::move(rounding);
    if (decoder_) decoder_->set_weight_rounding(rounding_);
  }

  // Generate from integer-quantized weights: cached_decoder::set_weight_format
  // (q8_0, q4_0 or int8 weights, Q8_0 activations, integer kernels), re-quantized
  // from the parameters after every optimizer step.
  void set_weight_format(std::optional<integer_format> format) {
    format_ = format;
    if (decoder_) decoder_->set_weight_format(format_);
  }

  // Generate with a quantized kv cache (model/kv_cache.hpp: q8_0 or q4_0 rows).
  void set_kv_format(kv_format format) {
    kv_format_ = format;
    if (decoder_) decoder_->set_kv_format(format);
  }

  rollout_batch<T> operator()(transformer_policy<T>& policy, std::span<const std::vector<std::int32_t>> prompts,
                              const rollout_request& request) {
    const transformer_parameters<T>& params = policy.model().parameters();
    // The decoder keeps a packed (or quantized) copy of the weights: rebuilt for
    // another model; generate() re-reads it, so after every optimizer step.
    if (!decoder_ || source_ != &params) {
      decoder_ = std::make_unique<cached_decoder<T>>(params);
      if (rounding_) decoder_->set_weight_rounding(rounding_);
      decoder_->set_kv_format(kv_format_);
      if (format_) decoder_->set_weight_format(format_);
      source_ = &params;
    }
    return to_rollout_batch(generate(*decoder_, prompts, rollout_generation_options(request, eos_, pad_),
                                     counter_rng(request.seed)));
  }

 private:
  std::vector<std::int32_t> eos_;
  std::int32_t pad_;
  std::unique_ptr<cached_decoder<T>> decoder_;
  const transformer_parameters<T>* source_ = nullptr;
  typename cached_decoder<T>::weight_rounding rounding_;
  kv_format kv_format_ = kv_format::f32;
  std::optional<integer_format> format_;
};

static_assert(TrainablePolicy<transformer_policy<float>>);
static_assert(RolloutGenerator<transformer_rollouts<float>, transformer_policy<float>>);
static_assert(ValueModel<transformer_critic<float>>);
static_assert(ValueModel<transformer_shared_critic<float>>);

}  // namespace lmrl
