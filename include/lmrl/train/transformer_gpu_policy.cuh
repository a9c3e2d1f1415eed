// The GPU transformer as the trainer's policy and rollout generator: the twins
// of transformer_policy and transformer_rollouts (train/transformer_policy.hpp)
// for lmrl::cuda::transformer_gpu, so grpo_trainer (and the trainers built on
// the same concepts) run their forward and backward passes and their
// generation on the GPU without a change.
//
//   lmrl::cuda::transformer_gpu_policy policy(std::move(host_parameters));
//   lmrl::cuda::transformer_gpu_rollouts rollouts({eos}, pad);
//   lmrl::grpo_trainer trainer(config, policy, rollouts, rewards, prompts, options);
//
// The trainer's contract is host memory: TrainablePolicy's parameters() and
// gradients() are spans the trainer clips, steps with AdamW and swaps with the
// reference weights. So in this first version the master parameters live on
// the host, and the policy moves them:
//   log_probs    uploads the host parameters (the trainer may have changed them
//                since the last call: an optimizer step, the reference swap),
//                the batch, runs transformer_gpu::log_probs, downloads logp and
//                entropy;
//   backward     uploads dL/dlogp (and dL/dentropy), runs transformer_gpu::backward
//                (which ADDS into the device gradient) and downloads the whole
//                device gradient into gradients(): both hold the sum since zero_grad;
//   rollouts     upload the parameters, then generate on the GPU (model/generate.cuh).
// Cost: one parameter upload per log_probs call and per rollout round, one
// gradient download per backward: 4 bytes per parameter each (110 MB at the
// small preset, 2 GB at the Qwen2.5-0.5B shapes: tens of milliseconds over
// PCIe). A device-resident optimizer (train/adamw.cuh) with device clipping
// removes them; the trainer then needs a device parameter buffer in its
// concept, which it does not have yet.
//
// Numerics: those of transformer_gpu and cuda::generate (float rounding away
// from the CPU's; see model/transformer.cuh and model/generate.cuh).
// Status: compiled (CUDA 13, sm_80 and sm_90), NOT yet run on a GPU.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/error.hpp"
#include "lmrl/model/generate.cuh"
#include "lmrl/model/parameters.hpp"
#include "lmrl/model/transformer.cuh"
#include "lmrl/rl/policy.hpp"
#include "lmrl/sample/philox.hpp"
#include "lmrl/train/grpo_trainer.hpp"
#include "lmrl/train/rollout_generation.hpp"

namespace lmrl::cuda {

class transformer_gpu_policy {
 public:
  using value_type = float;

  explicit transformer_gpu_policy(transformer_parameters<float> parameters, cudaStream_t stream = nullptr)
      : host_(std::move(parameters)),
        gpu_(std::make_unique<transformer_gpu>(host_, stream)),
        grad_(host_.values().size(), 0.0f) {}

  // The master parameters on the host (the trainer's optimizer steps them) and the model on the device.
  transformer_parameters<float>& host_parameters() { return host_; }
  const transformer_parameters<float>& host_parameters() const { return host_; }
  transformer_gpu& gpu() { return *gpu_; }

  std::span<float> parameters() { return host_.values(); }
  std::span<float> gradients() { return grad_; }
  void zero_grad() {
    gpu_->zero_grad();
    std::fill(grad_.begin(), grad_.end(), 0.0f);
  }

  // The host parameters onto the device (log_probs and the rollouts call it; a caller that changed the
  // parameters and reads the device model directly calls it too).
  void upload_parameters() { gpu_->upload_parameters(host_.values()); }

  void log_probs(const token_batch<float>& batch, matrix_view<float> logp, matrix_view<float> entropy) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::log_probs";
    const index_t B = batch.tokens.shape[0], T = batch.tokens.shape[1];
    lmrl::detail::require(batch.attention_mask.shape[0] == B && batch.attention_mask.shape[1] == T, f,
                          ": attention_mask is ", batch.attention_mask.shape[0], " x ", batch.attention_mask.shape[1],
                          " but tokens are ", B, " x ", T);
    require_shape(f, "logp", logp.shape, B, T);
    const bool want_entropy = entropy.data != nullptr;
    if (want_entropy) require_shape(f, "entropy", entropy.shape, B, T);
    upload_parameters();
    const auto n = static_cast<std::size_t>(B * T);
    std::vector<std::int32_t> tokens(n);
    std::vector<float> mask(n);
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t) {
        tokens[static_cast<std::size_t>(i * T + t)] = batch.tokens(i, t);
        mask[static_cast<std::size_t>(i * T + t)] = batch.attention_mask(i, t);
      }
    grow(tokens_, n);
    grow(mask_, n);
    grow(logp_, n);
    grow(entropy_, n);
    copy_in(tokens_, tokens);
    copy_in(mask_, mask);
    gpu_->log_probs(tokens_.data(), mask_.data(), B, T, logp_.data(), want_entropy ? entropy_.data() : nullptr);
    copy_out(logp_, n, logp);
    if (want_entropy) copy_out(entropy_, n, entropy);
    B_ = B;
    T_ = T;
  }

  void backward(const token_batch<float>& batch, matrix_view<const float> grad_logp,
                matrix_view<const float> grad_entropy) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::backward";
    lmrl::detail::require(batch.tokens.shape[0] == B_ && batch.tokens.shape[1] == T_, f, ": the batch is ",
                          batch.tokens.shape[0], " x ", batch.tokens.shape[1], " but the last log_probs call's was ",
                          B_, " x ", T_);
    const bool with_logp = grad_logp.data != nullptr, with_entropy = grad_entropy.data != nullptr;
    if (with_logp) require_shape(f, "grad_logp", grad_logp.shape, B_, T_);
    if (with_entropy) require_shape(f, "grad_entropy", grad_entropy.shape, B_, T_);
    const auto n = static_cast<std::size_t>(B_ * T_);
    grow(grad_logp_, n);
    grow(grad_entropy_, n);
    if (with_logp) copy_in(grad_logp_, contiguous(grad_logp));
    if (with_entropy) copy_in(grad_entropy_, contiguous(grad_entropy));
    gpu_->backward(with_logp ? grad_logp_.data() : nullptr, with_entropy ? grad_entropy_.data() : nullptr);
    gpu_->download_gradients(grad_);
  }

 private:
  static void require_shape(const char* f, const char* name, const std::array<index_t, 2>& shape, index_t B,
                            index_t T) {
    lmrl::detail::require(shape[0] == B && shape[1] == T, f, ": ", name, " is ", shape[0], " x ", shape[1],
                          " but the batch is ", B, " x ", T);
  }
  static std::vector<float> contiguous(matrix_view<const float> m) {
    std::vector<float> out(static_cast<std::size_t>(m.shape[0] * m.shape[1]));
    for (index_t i = 0; i < m.shape[0]; ++i)
      for (index_t t = 0; t < m.shape[1]; ++t) out[static_cast<std::size_t>(i * m.shape[1] + t)] = m(i, t);
    return out;
  }
  template <class U>
  void grow(device_array<U>& a, std::size_t n) {
    if (a.size() < n) a = device_array<U>(n, gpu_->stream());
  }
  template <class U>
  void copy_in(device_array<U>& dst, const std::vector<U>& values) {
    LMRL_CUDA_CHECK(cudaMemcpyAsync(dst.data(), values.data(), values.size() * sizeof(U), cudaMemcpyHostToDevice,
                                    gpu_->stream()));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));  // values may die when the caller returns
  }
  void copy_out(const device_array<float>& src, std::size_t n, matrix_view<float> out) {
    staging_.resize(n);
    LMRL_CUDA_CHECK(cudaMemcpyAsync(staging_.data(), src.data(), n * sizeof(float), cudaMemcpyDeviceToHost,
                                    gpu_->stream()));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));
    for (index_t i = 0; i < out.shape[0]; ++i)
      for (index_t t = 0; t < out.shape[1]; ++t) out(i, t) = staging_[static_cast<std::size_t>(i * out.shape[1] + t)];
  }

  transformer_parameters<float> host_;
  std::unique_ptr<transformer_gpu> gpu_;  // behind a pointer: a decoder holds its address, which a move of the policy keeps
  std::vector<float> grad_;
  index_t B_ = 0, T_ = 0;  // the last log_probs batch
  device_array<std::int32_t> tokens_;
  device_array<float> mask_, logp_, entropy_, grad_logp_, grad_entropy_;
  std::vector<float> staging_;
};

// RolloutGenerator: G completions per prompt on the GPU from the policy's current parameters, stopping on
// the end-of-sequence ids. The decoder (its cache, its work buffers) is kept from round to round.
class transformer_gpu_rollouts {
 public:
  explicit transformer_gpu_rollouts(std::vector<std::int32_t> eos_token_ids, std::int32_t pad_token_id = 0)
      : eos_(std::move(eos_token_ids)), pad_(pad_token_id) {}

  rollout_batch<float> operator()(transformer_gpu_policy& policy, std::span<const std::vector<std::int32_t>> prompts,
                                  const rollout_request& request) {
    policy.upload_parameters();
    if (!decoder_ || source_ != &policy.gpu()) {
      decoder_ = std::make_unique<cached_decoder_gpu>(policy.gpu());
      source_ = &policy.gpu();
    }
    return to_rollout_batch(generate(*decoder_, prompts, rollout_generation_options(request, eos_, pad_),
                                     counter_rng(request.seed)));
  }

 private:
  std::vector<std::int32_t> eos_;
  std::int32_t pad_;
  std::unique_ptr<cached_decoder_gpu> decoder_;
  const transformer_gpu* source_ = nullptr;
};

static_assert(TrainablePolicy<transformer_gpu_policy>);
static_assert(RolloutGenerator<transformer_gpu_rollouts, transformer_gpu_policy>);

}  // namespace lmrl::cuda
