// The GPU transformer as the trainer's policy, critic and rollout generator:
// the twins of transformer_policy, transformer_critic, transformer_shared_critic
// and transformer_rollouts (train/transformer_policy.hpp) for
// lmrl::cuda::transformer_gpu, so grpo_trainer and ppo_trainer run their
// forward and backward passes and their generation on the GPU unchanged.
//
//   lmrl::cuda::transformer_gpu_policy policy(std::move(host_parameters));
//   lmrl::cuda::transformer_gpu_rollouts rollouts({eos}, pad);
//   lmrl::grpo_trainer trainer(config, policy, rollouts, rewards, prompts, options);
//   auto critic = lmrl::cuda::transformer_gpu_critic::from_policy(policy.host_parameters());   // PPO
//   lmrl::ppo_trainer ppo(config, policy, critic, rollouts, rewards, prompts, options);
//
// The trainer's contract is host memory: TrainablePolicy's parameters() and
// gradients() are spans the trainer clips, steps with AdamW and swaps with the
// reference weights. So in this first version the master parameters live on
// the host, and the policy moves them:
//   log_probs    uploads the host parameters (the trainer may have changed them
//                since the last call: an optimizer step, the reference swap; with
//                parameter_uploads::when_changed only after it said so through
//                parameters_changed()), the batch, runs transformer_gpu::log_probs,
//                downloads logp and entropy;
//   backward     uploads dL/dlogp (and dL/dentropy) and runs transformer_gpu::backward,
//                which ADDS into the device gradient;
//   gradients    the device gradient, the sum since zero_grad, downloaded into the
//                host copy when a backward ran since the last download (so a step
//                of several micro-batches downloads it once, when the trainer asks);
//   values, backward_values (the critics) likewise;
//   rollouts     upload the parameters (as log_probs does), then generate on the GPU
//                (model/generate.cuh).
// Cost: one parameter upload per log_probs call and per rollout round (every_call)
// or per change (when_changed: one per optimizer step, two per reference swap), one
// gradient download per optimizer step: 4 bytes per parameter each (110 MB at the
// small preset, 2 GB at the Qwen2.5-0.5B shapes: roughly 0.1 to 0.2 s each way
// over PCIe from pageable memory, an estimate, not measured).
//
// parameter_uploads::device_steps removes the per-step moves: the trainers
// (grpo_trainer, pretrain and what runs on it: SFT, distill) see a
// DeviceSteppedModel (train/optimizer_step.hpp) and take the step on the
// device: the gradient's norm (train/clip_grad.cuh), clipping, AdamW
// (train/adamw.cuh) on the device buffers, the moments (8 bytes a parameter)
// on the device too; so is the trainer's reference copy (train/reference_copy.hpp:
// 4 more bytes a parameter), whose swaps and sync_ref_model mix-ups run there.
// What still crosses: the host copy of the parameters when someone reads
// parameters() after a step (a checkpoint, the ranks' parameter check), the
// moments and the reference when a checkpoint is written or read, and the
// gradient when several ranks sum it over a communicator that reduces host
// memory only (MPI); one that reduces device memory (NCCL: split_communicator
// of dist/communicator.hpp) sums it in place (device_gradients).
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
#include "lmrl/train/adamw.cuh"
#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.cuh"
#include "lmrl/train/grpo_trainer.hpp"
#include "lmrl/train/optimizer_step.hpp"
#include "lmrl/train/reference_copy.cuh"
#include "lmrl/train/reference_copy.hpp"
#include "lmrl/train/rollout_generation.hpp"

namespace lmrl::cuda {

// When the GPU policies copy the host parameters to the device before a pass or a rollout round.
enum class parameter_uploads {
  every_call,    // each time: right whoever changed the parameters, and how (the default)
  when_changed,  // the first time and after parameters_changed() only: a caller that changes parameters()
                 // must say so, as lmrl's trainers and pretrain() do (rl/policy.hpp: parameters_changed)
  device_steps,  // when_changed, and the master parameters, the gradient and AdamW's moments stay on the
                 // device: the trainers' optimizer steps run there (train/optimizer_step.hpp); parameters()
                 // and host_parameters() download the device's values first when a step moved them
};

namespace gpu_policy_detail {

// A transformer_gpu whose master parameters, and a copy of whose gradient,
// live on the host, with the staging that moves a token_batch and per-position
// [B x T] matrices between the two: what the policy and the critics share.
class mirrored_model {
 public:
  mirrored_model(transformer_parameters<float> parameters, cudaStream_t stream, parameter_uploads uploads)
      : host_(std::move(parameters)),
        gpu_(std::make_unique<transformer_gpu>(host_, stream)),  // the parameters uploaded once here
        grad_(host_.values().size(), 0.0f),
        uploads_(uploads) {}

  // The host parameters, downloaded first when a device step moved the device's past them.
  transformer_parameters<float>& host() {
    sync_host();
    return host_;
  }
  const transformer_parameters<float>& host() const {
    sync_host();
    return host_;
  }
  transformer_gpu& gpu() { return *gpu_; }
  // The device gradient (the sum since zero_grad), downloaded first when a backward ran since the last call.
  // Unlike the CPU policy's, the span is a snapshot: read gradients() again after a backward (a span kept
  // from before it still shows the old values).
  std::span<float> gradients() {
    if (gradients_behind_) {
      gpu_->download_gradients(grad_);
    } else if (host_zero_pending_) {
      std::fill(grad_.begin(), grad_.end(), 0.0f);
    }
    gradients_behind_ = host_zero_pending_ = false;
    return grad_;
  }

  // The device gradient is zeroed now, the host copy when it is next read: a trainer zeroes once a
  // mini-batch, and filling 2 GB (the 0.5B shapes) that a device step never reads would cost more than it.
  void zero_grad() {
    gpu_->zero_grad();
    gradients_behind_ = false;
    host_zero_pending_ = true;
  }
  void upload_parameters() {
    sync_host();  // the device's values are the newer ones: nothing to send that it lacks
    gpu_->upload_parameters(host_.values());
    device_behind_ = false;
  }
  // The host parameters changed: the device copy is behind until the next upload.
  void parameters_changed() { device_behind_ = true; }
  // Uploads the parameters unless parameter_uploads::when_changed says the device copy is current.
  void sync_parameters() {
    if (uploads_ == parameter_uploads::every_call || device_behind_) upload_parameters();
  }
  // A backward added into the device gradient: the host copy is behind until gradients() is called.
  void gradients_changed() { gradients_behind_ = true; }

  // ---- the optimizer step on the device (parameter_uploads::device_steps; train/optimizer_step.hpp)
  bool steps_on_device() const { return uploads_ == parameter_uploads::device_steps; }
  double gradient_norm() { return cuda::l2_norm(gpu_->gradients(), size(), norm_scratch_, gpu_->stream()); }
  // The host gradient was written (an all-reduce summed it over ranks): the device takes it.
  void host_gradients_changed() {
    lmrl::detail::require(!gradients_behind_, "lmrl::cuda::transformer_gpu_policy::host_gradients_changed: a "
                          "backward ran since gradients() was read, so the host copy is not the one to keep");
    const std::span<const float> host = gradients();  // zeroed first if a zero_grad is pending
    LMRL_CUDA_CHECK(cudaMemcpyAsync(gpu_->gradients(), host.data(), host.size() * sizeof(float),
                                    cudaMemcpyHostToDevice, gpu_->stream()));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));
  }
  // The device gradient lent to a collective that sums it in place (NCCL; train/optimizer_step.hpp's
  // DeviceGradientModel): the stream's work on it done first; the host copy is behind afterwards.
  std::span<float> device_gradients() {
    require_device_steps("device_gradients");
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));  // the collective runs on a stream of its own
    gradients_behind_ = true;
    return {gpu_->gradients(), size()};
  }
  // gradient *= clip_coef (when < 1), then AdamW at lr with the optimizer's settings, numbered
  // optimizer.step_count() + 1. The device's moments are the optimizer's own when they come from its
  // last steps here (or a push); otherwise the optimizer's host moments are uploaded first.
  void device_step(const adamw<float>& optimizer, float clip_coef, double lr) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::device_step";
    require_device_steps("device_step");
    require_optimizer_size(optimizer, f);
    sync_parameters();  // a change made on the host goes first
    if (moments_owner_ != &optimizer || moments_step_ != optimizer.step_count()) push_optimizer_state(optimizer);
    const auto n = static_cast<index_t>(size());
    if (clip_coef < 1.0f) cuda::scale_gradients(gpu_->gradients(), n, clip_coef, gpu_->stream());
    adamw_update<float>(gpu_->parameters(), gpu_->gradients(), moments_.data(), moments_.data() + size(), n,
                        optimizer.step_count() + 1, lr, optimizer.config(), optimizer.segments(), gpu_->stream());
    gpu_->parameters_changed();  // the bf16 / FP8 copies of the weights are made again at the next pass
    moments_step_ = optimizer.step_count() + 1;
    host_behind_ = true;
    if (clip_coef < 1.0f) gradients_behind_ = true;  // a later gradients() shows the clipped values, as the CPU's
  }
  // The device's moments into the optimizer (before a checkpoint is written); nothing to do before the
  // first device step, when the optimizer's own are the current ones.
  void pull_optimizer_state(adamw<float>& optimizer) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::pull_optimizer_state";
    if (moments_owner_ != &optimizer) return;
    require_optimizer_size(optimizer, f);
    lmrl::detail::require(moments_step_ == optimizer.step_count(), f, ": the device's moments are at step ",
                          moments_step_, " but the optimizer counts ", optimizer.step_count());
    std::vector<float> state(2 * size());
    LMRL_CUDA_CHECK(cudaMemcpyAsync(state.data(), moments_.data(), state.size() * sizeof(float),
                                    cudaMemcpyDeviceToHost, gpu_->stream()));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));
    optimizer.load_state(optimizer.step_count(), std::span<const float>(state));
  }
  // The optimizer's moments onto the device (after a checkpoint was read into it).
  void push_optimizer_state(const adamw<float>& optimizer) {
    require_optimizer_size(optimizer, "lmrl::cuda::transformer_gpu_policy::push_optimizer_state");
    if (moments_.size() != 2 * size()) moments_ = device_array<float>(2 * size(), gpu_->stream());
    moments_.copy_from_host(optimizer.state());
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));  // the host state may change when this returns
    moments_owner_ = &optimizer;
    moments_step_ = optimizer.step_count();
  }

  // ---- the reference beside the parameters (device_steps; train/reference_copy.hpp's DeviceReferenceModel)
  // The copy := the parameters now, on the device (4 bytes a parameter more there).
  void hold_reference() {
    require_device_steps("hold_reference");
    sync_parameters();
    cuda::grow(reference_, size(), gpu_->stream(), false);
    LMRL_CUDA_CHECK(cudaMemcpyAsync(reference_.data(), std::as_const(*gpu_).parameters(), size() * sizeof(float),
                                    cudaMemcpyDeviceToDevice, gpu_->stream()));
    reference_held_ = true;
  }
  // The parameters and the copy trade places on the device: the next passes compute with the reference.
  void swap_reference() {
    require_reference("swap_reference");
    sync_parameters();  // a change made on the host goes first
    cuda::swap_values(gpu_->parameters(), reference_.data(), static_cast<index_t>(size()), gpu_->stream());
    host_behind_ = true;
  }
  // The copy := alpha * parameters + (1 - alpha) * copy (TRL's sync_ref_model), on the device.
  void mixup_reference(float alpha) {
    require_reference("mixup_reference");
    sync_parameters();
    cuda::mixup_reference(reference_.data(), std::as_const(*gpu_).parameters(), alpha,
                          static_cast<index_t>(size()), gpu_->stream());
  }
  // The copy into host memory (a checkpoint is written).
  void pull_reference(std::span<float> out) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::pull_reference";
    require_reference("pull_reference");
    lmrl::detail::require(out.size() == size(), f, ": out has ", out.size(), " values for ", size(), " parameters");
    LMRL_CUDA_CHECK(cudaMemcpyAsync(out.data(), reference_.data(), size() * sizeof(float), cudaMemcpyDeviceToHost,
                                    gpu_->stream()));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));
  }
  // Host values into the copy (a checkpoint was read).
  void push_reference(std::span<const float> values) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::push_reference";
    require_device_steps("push_reference");
    lmrl::detail::require(values.size() == size(), f, ": ", values.size(), " values for ", size(), " parameters");
    cuda::grow(reference_, size(), gpu_->stream(), false);
    LMRL_CUDA_CHECK(cudaMemcpyAsync(reference_.data(), values.data(), size() * sizeof(float), cudaMemcpyHostToDevice,
                                    gpu_->stream()));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));  // values may change when this returns
    reference_held_ = true;
  }

  // The parameters, then the batch's ids and mask: tokens() and mask() on the device; B() x T() remembered
  // for the backward that follows.
  void upload_batch(const token_batch<float>& batch, const char* f) {
    const index_t B = batch.tokens.shape[0], T = batch.tokens.shape[1];
    lmrl::detail::require(batch.attention_mask.shape[0] == B && batch.attention_mask.shape[1] == T, f,
                          ": attention_mask is ", batch.attention_mask.shape[0], " x ", batch.attention_mask.shape[1],
                          " but tokens are ", B, " x ", T);
    sync_parameters();
    const auto n = static_cast<std::size_t>(B * T);
    B_ = T_ = 0;  // until the batch below is complete (a throw leaves no batch to run a backward on)
    host_tokens_.resize(n);
    host_mask_.resize(n);
    for (index_t i = 0; i < B; ++i)
      for (index_t t = 0; t < T; ++t) {
        host_tokens_[static_cast<std::size_t>(i * T + t)] = batch.tokens(i, t);
        host_mask_[static_cast<std::size_t>(i * T + t)] = batch.attention_mask(i, t);
      }
    copy_in(tokens_, host_tokens_);
    copy_in(mask_, host_mask_);
    B_ = B;
    T_ = T;
  }
  const std::int32_t* tokens() const { return tokens_.data(); }
  const float* mask() const { return mask_.data(); }
  index_t B() const { return B_; }
  index_t T() const { return T_; }

  // The backward's batch must be the forward's: its shape, its mask, and its ids where the mask is not 0
  // (as the CPU transformer checks; the device still holds the forward's activations, not this batch's).
  void require_same_batch(const token_batch<float>& batch, const char* f) const {
    lmrl::detail::require(batch.tokens.shape[0] == B_ && batch.tokens.shape[1] == T_ &&
                              batch.attention_mask.shape == batch.tokens.shape,
                          f, ": the batch is ", batch.tokens.shape[0], " x ", batch.tokens.shape[1],
                          " but the last forward call's was ", B_, " x ", T_);
    for (index_t i = 0; i < B_; ++i)
      for (index_t t = 0; t < T_; ++t) {
        const auto r = static_cast<std::size_t>(i * T_ + t);
        const float m = batch.attention_mask(i, t);
        if (m != host_mask_[r] || (m != 0.0f && batch.tokens(i, t) != host_tokens_[r]))
          lmrl::detail::fail(f, ": the batch differs at (", i, ", ", t,
                             ") from the last forward call's; backward needs the same batch");
      }
  }
  void require_shape(const char* f, const char* name, const std::array<index_t, 2>& shape) const {
    lmrl::detail::require(shape[0] == B_ && shape[1] == T_, f, ": ", name, " is ", shape[0], " x ", shape[1],
                          " but the batch is ", B_, " x ", T_);
  }

  // A device [B x T] buffer (`slot` of a few, grown to fit), written by a pass and read back by download.
  float* device_matrix_buffer(int slot) {
    auto& a = buffers_[static_cast<std::size_t>(slot)];
    grow(a, static_cast<std::size_t>(B_ * T_));
    return a.data();
  }
  // m [B x T] (any strides) into buffer `slot`, contiguous.
  const float* upload_matrix(int slot, matrix_view<const float> m) {
    std::vector<float> v(static_cast<std::size_t>(m.shape[0] * m.shape[1]));
    for (index_t i = 0; i < m.shape[0]; ++i)
      for (index_t t = 0; t < m.shape[1]; ++t) v[static_cast<std::size_t>(i * m.shape[1] + t)] = m(i, t);
    copy_in(buffers_[static_cast<std::size_t>(slot)], v);
    return buffers_[static_cast<std::size_t>(slot)].data();
  }
  // Buffer `slot` into out [B x T] (any strides), after the stream's work.
  void download_matrix(int slot, matrix_view<float> out) {
    staging_.resize(static_cast<std::size_t>(B_ * T_));
    LMRL_CUDA_CHECK(cudaMemcpyAsync(staging_.data(), buffers_[static_cast<std::size_t>(slot)].data(),
                                    staging_.size() * sizeof(float), cudaMemcpyDeviceToHost, gpu_->stream()));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));
    for (index_t i = 0; i < out.shape[0]; ++i)
      for (index_t t = 0; t < out.shape[1]; ++t) out(i, t) = staging_[static_cast<std::size_t>(i * out.shape[1] + t)];
  }

 private:
  template <class U>
  void grow(device_array<U>& a, std::size_t n) {
    cuda::grow(a, n, gpu_->stream(), false);  // every use writes before it reads
  }
  template <class U>
  void copy_in(device_array<U>& dst, const std::vector<U>& values) {
    grow(dst, values.size());
    LMRL_CUDA_CHECK(cudaMemcpyAsync(dst.data(), values.data(), values.size() * sizeof(U), cudaMemcpyHostToDevice,
                                    gpu_->stream()));
    LMRL_CUDA_CHECK(cudaStreamSynchronize(gpu_->stream()));  // values die when the caller returns
  }

  std::size_t size() const { return grad_.size(); }
  void require_device_steps(const char* what) const {
    lmrl::detail::require(steps_on_device(), "lmrl::cuda::transformer_gpu_policy::", what, ": the policy was made ",
                          "with parameter_uploads other than device_steps, so its master parameters are the host's");
  }
  void require_reference(const char* what) const {
    require_device_steps(what);
    lmrl::detail::require(reference_held_, "lmrl::cuda::transformer_gpu_policy::", what,
                          ": no reference is held on the device (hold_reference or push_reference first)");
  }
  void require_optimizer_size(const adamw<float>& optimizer, const char* f) const {
    lmrl::detail::require(static_cast<std::size_t>(optimizer.size()) == size(), f, ": the optimizer was made for ",
                          optimizer.size(), " parameters but the model has ", size());
  }
  // A device step moved the parameters: the host copy follows before anyone reads it.
  void sync_host() const {
    if (!host_behind_) return;
    gpu_->download_parameters(host_.values());
    host_behind_ = false;
  }

  mutable transformer_parameters<float> host_;  // mutable: a const read downloads the device's newer values
  mutable bool host_behind_ = false;            // the device's values moved (a step, a swap) since the download
  std::unique_ptr<transformer_gpu> gpu_;  // behind a pointer: a decoder holds its address, which a move keeps
  device_array<float> moments_;           // device_steps: AdamW's exp_avg then exp_avg_sq, 2 x size()
  // The optimizer whose state moments_ holds, as of its step count (two optimizers stepping one policy in
  // turn at equal counts would share moments: lmrl's trainers never do; a checkpoint load pushes explicitly).
  const adamw<float>* moments_owner_ = nullptr;
  std::int64_t moments_step_ = 0;
  device_array<double> norm_scratch_;
  device_array<float> reference_;  // device_steps with a reference: pi_ref's parameters, or the policy's while
  bool reference_held_ = false;    // swapped in
  std::vector<float> grad_;
  bool gradients_behind_ = false;  // a backward ran since grad_ was downloaded
  bool host_zero_pending_ = false;  // zero_grad ran and grad_ was not zeroed yet
  parameter_uploads uploads_;
  bool device_behind_ = false;  // parameters_changed() since the last upload
  index_t B_ = 0, T_ = 0;
  device_array<std::int32_t> tokens_;
  device_array<float> mask_;
  std::vector<std::int32_t> host_tokens_;  // the last forward's batch, for the backward's check
  std::vector<float> host_mask_;
  std::array<device_array<float>, 2> buffers_;
  std::vector<float> staging_;
};

}  // namespace gpu_policy_detail

class transformer_gpu_policy {
 public:
  using value_type = float;

  explicit transformer_gpu_policy(transformer_parameters<float> parameters, cudaStream_t stream = nullptr,
                                  parameter_uploads uploads = parameter_uploads::every_call)
      : m_(std::move(parameters), stream, uploads) {}

  // The master parameters on the host (the trainer's optimizer steps them) and the model on the device.
  transformer_parameters<float>& host_parameters() { return m_.host(); }
  const transformer_parameters<float>& host_parameters() const { return m_.host(); }
  transformer_gpu& gpu() { return m_.gpu(); }

  std::span<float> parameters() { return m_.host().values(); }
  std::span<float> gradients() { return m_.gradients(); }
  void zero_grad() { m_.zero_grad(); }

  // The host parameters onto the device now (a caller that changed them and reads the device model directly
  // calls it); log_probs, values and the rollouts upload them as `parameter_uploads` says.
  void upload_parameters() { m_.upload_parameters(); }
  // The host parameters changed (trainers call it: rl/policy.hpp's parameters_changed).
  void parameters_changed() { m_.parameters_changed(); }
  // Uploads the parameters unless parameter_uploads::when_changed knows the device copy is current.
  void sync_parameters() { m_.sync_parameters(); }
  // A caller that ran a backward on gpu() directly (train/distill.cuh) says so: gradients() downloads next.
  void gradients_changed() { m_.gradients_changed(); }

  // train/optimizer_step.hpp's DeviceSteppedModel: with parameter_uploads::device_steps the trainers'
  // clipping and AdamW run on the device buffers (see mirrored_model).
  bool steps_on_device() const { return m_.steps_on_device(); }
  double gradient_norm() { return m_.gradient_norm(); }
  void device_step(const adamw<float>& optimizer, float clip_coef, double lr) {
    m_.device_step(optimizer, clip_coef, lr);
  }
  void pull_optimizer_state(adamw<float>& optimizer) { m_.pull_optimizer_state(optimizer); }
  void push_optimizer_state(const adamw<float>& optimizer) { m_.push_optimizer_state(optimizer); }
  void host_gradients_changed() { m_.host_gradients_changed(); }
  std::span<float> device_gradients() { return m_.device_gradients(); }
  // train/reference_copy.hpp's DeviceReferenceModel: with device_steps the trainer's reference stays beside
  // the parameters, and its swaps and mix-ups run on the device (see mirrored_model).
  void hold_reference() { m_.hold_reference(); }
  void swap_reference() { m_.swap_reference(); }
  void mixup_reference(float alpha) { m_.mixup_reference(alpha); }
  void pull_reference(std::span<float> out) { m_.pull_reference(out); }
  void push_reference(std::span<const float> values) { m_.push_reference(values); }

  void log_probs(const token_batch<float>& batch, matrix_view<float> logp, matrix_view<float> entropy) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::log_probs";
    m_.upload_batch(batch, f);
    m_.require_shape(f, "logp", logp.shape);
    const bool want_entropy = entropy.data != nullptr;
    if (want_entropy) m_.require_shape(f, "entropy", entropy.shape);
    float* logp_dev = m_.device_matrix_buffer(0);
    float* entropy_dev = want_entropy ? m_.device_matrix_buffer(1) : nullptr;
    m_.gpu().log_probs(m_.tokens(), m_.mask(), m_.B(), m_.T(), logp_dev, entropy_dev);
    m_.download_matrix(0, logp);
    if (want_entropy) m_.download_matrix(1, entropy);
  }

  void backward(const token_batch<float>& batch, matrix_view<const float> grad_logp,
                matrix_view<const float> grad_entropy) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::backward";
    m_.require_same_batch(batch, f);
    const bool with_logp = grad_logp.data != nullptr, with_entropy = grad_entropy.data != nullptr;
    if (with_logp) m_.require_shape(f, "grad_logp", grad_logp.shape);
    if (with_entropy) m_.require_shape(f, "grad_entropy", grad_entropy.shape);
    const float* gl = with_logp ? m_.upload_matrix(0, grad_logp) : nullptr;
    const float* ge = with_entropy ? m_.upload_matrix(1, grad_entropy) : nullptr;
    m_.gpu().backward(gl, ge);
    m_.gradients_changed();
  }

  // PPO's shared trunk (transformer_gpu_shared_critic): values and their backward on this model.
  void values(const token_batch<float>& batch, matrix_view<float> out) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::values";
    m_.upload_batch(batch, f);
    m_.require_shape(f, "out", out.shape);
    m_.gpu().values(m_.tokens(), m_.mask(), m_.B(), m_.T(), m_.device_matrix_buffer(0));
    m_.download_matrix(0, out);
  }
  void backward_values(const token_batch<float>& batch, matrix_view<const float> grad) {
    const char* f = "lmrl::cuda::transformer_gpu_policy::backward_values";
    m_.require_same_batch(batch, f);
    m_.require_shape(f, "grad_values", grad.shape);
    m_.gpu().backward_values(m_.upload_matrix(0, grad));
    m_.gradients_changed();
  }

 private:
  gpu_policy_detail::mirrored_model m_;
};

// PPO's critic with weights of its own on the GPU (the twin of transformer_critic): a transformer_gpu
// with a value head, host master parameters, the same moves as the policy's.
class transformer_gpu_critic {
 public:
  using value_type = float;

  explicit transformer_gpu_critic(transformer_parameters<float> parameters, cudaStream_t stream = nullptr,
                                  parameter_uploads uploads = parameter_uploads::every_call)
      : policy_(require_head(std::move(parameters)), stream, uploads) {}

  // The policy's weights with a value head of zeros (V = 0 until the first update), as on the CPU.
  static transformer_gpu_critic from_policy(const transformer_parameters<float>& policy,
                                            cudaStream_t stream = nullptr,
                                            parameter_uploads uploads = parameter_uploads::every_call) {
    return transformer_gpu_critic(with_value_head(policy), stream, uploads);
  }

  transformer_parameters<float>& host_parameters() { return policy_.host_parameters(); }
  // The device model (its precision, its buffers).
  transformer_gpu& gpu() { return policy_.gpu(); }
  std::span<float> parameters() { return policy_.parameters(); }
  std::span<float> gradients() { return policy_.gradients(); }
  void zero_grad() { policy_.zero_grad(); }
  void parameters_changed() { policy_.parameters_changed(); }
  bool steps_on_device() const { return policy_.steps_on_device(); }
  double gradient_norm() { return policy_.gradient_norm(); }
  void device_step(const adamw<float>& optimizer, float clip_coef, double lr) {
    policy_.device_step(optimizer, clip_coef, lr);
  }
  void pull_optimizer_state(adamw<float>& optimizer) { policy_.pull_optimizer_state(optimizer); }
  void push_optimizer_state(const adamw<float>& optimizer) { policy_.push_optimizer_state(optimizer); }
  void host_gradients_changed() { policy_.host_gradients_changed(); }
  std::span<float> device_gradients() { return policy_.device_gradients(); }
  void values(const token_batch<float>& batch, matrix_view<float> out) { policy_.values(batch, out); }
  void backward_values(const token_batch<float>& batch, matrix_view<const float> grad) {
    policy_.backward_values(batch, grad);
  }

 private:
  static transformer_parameters<float> require_head(transformer_parameters<float> p) {
    lmrl::detail::require(p.config().value_head, "lmrl::cuda::transformer_gpu_critic: the model has no value head ",
                          "(transformer_config::value_head is false)");
    return p;
  }
  transformer_gpu_policy policy_;  // the same moves; only values / backward_values are used
};

// PPO's critic on the GPU policy's own trunk (the twin of transformer_shared_critic): no weights of its
// own; the value loss's gradient lands in the policy's gradient buffer.
class transformer_gpu_shared_critic {
 public:
  using value_type = float;

  explicit transformer_gpu_shared_critic(transformer_gpu_policy& policy) : policy_(&policy) {
    lmrl::detail::require(policy.host_parameters().config().value_head,
                          "lmrl::cuda::transformer_gpu_shared_critic: the policy has no value head ",
                          "(build it from with_value_head(parameters))");
  }

  std::span<float> parameters() { return {}; }
  std::span<float> gradients() { return {}; }
  void zero_grad() {}  // the policy's gradients are the trainer's to clear
  void values(const token_batch<float>& batch, matrix_view<float> out) { policy_->values(batch, out); }
  void backward_values(const token_batch<float>& batch, matrix_view<const float> grad) {
    policy_->backward_values(batch, grad);
  }

 private:
  transformer_gpu_policy* policy_;
};

// RolloutGenerator: G completions per prompt on the GPU from the policy's current parameters, stopping on
// the end-of-sequence ids. The decoder (its cache, its work buffers) is kept from round to round;
// `decoder` says how it runs (decoder_gpu_options: CUDA graphs for the decode steps).
class transformer_gpu_rollouts {
 public:
  explicit transformer_gpu_rollouts(std::vector<std::int32_t> eos_token_ids, std::int32_t pad_token_id = 0,
                                    decoder_gpu_options decoder = {})
      : eos_(std::move(eos_token_ids)), pad_(pad_token_id), decoder_options_(decoder) {}

  // Generate with a quantized KV cache (q8_0 or q4_0 rows: cached_decoder_gpu::set_kv_format), as
  // transformer_rollouts::set_kv_format on the CPU.
  void set_kv_format(kv_format format) {
    kv_format_ = format;
    if (decoder_) decoder_->set_kv_format(format);
  }
  // Generate from rounded or integer weights (cached_decoder_gpu::set_weight_rounding / set_weight_format),
  // as transformer_rollouts' twins on the CPU: the decoder rounds again after every optimizer step.
  void set_weight_rounding(cached_decoder_gpu::weight_rounding rounding) {
    rounding_ = std::move(rounding);
    if (decoder_) decoder_->set_weight_rounding(rounding_);
  }
  void set_weight_format(std::optional<integer_format> format) {
    weight_format_ = format;
    if (decoder_) decoder_->set_weight_format(weight_format_);
  }

  rollout_batch<float> operator()(transformer_gpu_policy& policy, std::span<const std::vector<std::int32_t>> prompts,
                                  const rollout_request& request) {
    policy.sync_parameters();
    if (!decoder_ || source_ != &policy.gpu() || source_serial_ != policy.gpu().serial()) {
      decoder_ = std::make_unique<cached_decoder_gpu>(policy.gpu(), decoder_options_);
      source_ = &policy.gpu();
      source_serial_ = policy.gpu().serial();
      decoder_->set_kv_format(kv_format_);
      if (rounding_) decoder_->set_weight_rounding(rounding_);
      if (weight_format_) decoder_->set_weight_format(weight_format_);
    }
    return to_rollout_batch(generate(*decoder_, prompts, rollout_generation_options(request, eos_, pad_),
                                     counter_rng(request.seed)));
  }

 private:
  std::vector<std::int32_t> eos_;
  std::int32_t pad_;
  decoder_gpu_options decoder_options_;
  kv_format kv_format_ = kv_format::f32;
  cached_decoder_gpu::weight_rounding rounding_;
  std::optional<integer_format> weight_format_;
  std::unique_ptr<cached_decoder_gpu> decoder_;
  // The model decoder_ was built on: its address, and its serial (a new policy's model can be allocated
  // where a destroyed one was).
  const transformer_gpu* source_ = nullptr;
  std::uint64_t source_serial_ = 0;
};

static_assert(TrainablePolicy<transformer_gpu_policy>);
static_assert(DeviceSteppedModel<transformer_gpu_policy>);
static_assert(DeviceReferenceModel<transformer_gpu_policy>);
static_assert(DeviceGradientModel<transformer_gpu_policy>);
static_assert(DeviceGradientModel<transformer_gpu_critic>);
static_assert(DeviceSteppedModel<transformer_gpu_critic>);
static_assert(RolloutGenerator<transformer_gpu_rollouts, transformer_gpu_policy>);
static_assert(ValueModel<transformer_gpu_critic>);
static_assert(ValueModel<transformer_gpu_shared_critic>);

}  // namespace lmrl::cuda
