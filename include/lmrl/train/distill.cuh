// Logit-level distillation on the GPU: train/distill.hpp's
// logit_distillation_loss with a transformer_gpu student and teacher (read
// distill.hpp for the loss). The same micro-batches and weights; per
// micro-batch the teacher's final hidden states stay on the device ([tokens x
// d_teacher]), and inside the student's logit_loss_backward each chunk of
// output rows gets the teacher's logits for the same rows (hidden rows t - 1
// gathered, times its lm_head) and cuda::distillation_kl writes the student's
// gradient, scaled by each token's weight / the marked-token count. No
// [tokens x vocab] array of either model beyond one chunk.
//
//   double loss = lmrl::cuda::logit_distillation_loss(student, teacher, batch, config, true);
//   // student.gradients() += d loss / d parameters (device buffer)
//
//   lmrl::cuda::distill(student_policy, teacher, next, pretrain_config, distillation);
//   // distill.hpp's distill(): pretrain()'s loop (clipping, AdamW on the host master parameters, schedule,
//   // checkpoints) with this loss, the student a transformer_gpu_policy
//
// The two models run at their own precision (transformer_gpu::precision). Each
// chunk synchronizes the stream once to read its n divergences back (the loss
// is a host double, summed in the CPU's order).
//
// Status: compiled (CUDA 13), NOT yet run on a GPU; tests/cuda/test_generate.cu
// compares it with the CPU's logit_distillation_loss.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#include "lmrl/cuda/check.cuh"
#include "lmrl/cuda/launch.cuh"
#include "lmrl/cuda/device_array.cuh"
#include "lmrl/cuda/distill.cuh"
#include "lmrl/model/transformer.cuh"
#include "lmrl/train/distill.hpp"
#include "lmrl/train/pretrain.hpp"

namespace lmrl::cuda {

namespace distill_train_detail {

// hidden_out[k, :] = hidden[rows[k] - 1, :], weight_out[k] = weight[rows[k]] and scale_out[k] = that * scale,
// for k < n.
template <class T>
__global__ void gather_teacher_rows_kernel(const T* hidden, index_t d, const index_t* rows, index_t n,
                                           const T* weight, T scale, T* hidden_out, T* weight_out, T* scale_out) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n * d; e += step) {
    const index_t k = e / d, j = e % d;
    hidden_out[e] = hidden[(rows[k] - 1) * d + j];
    if (j == 0) weight_out[k] = weight[rows[k]], scale_out[k] = weight[rows[k]] * scale;
  }
}

}  // namespace distill_train_detail

// The mean divergence over the batch's marked tokens; its gradient is ADDED to the student's device gradient
// buffer when `backward` (left as it was otherwise; the teacher's is never touched).
inline double logit_distillation_loss(transformer_gpu& student, transformer_gpu& teacher,
                                      const std::vector<pretrain_example>& batch,
                                      const logit_distillation_config& config, bool backward,
                                      const batch_layout& layout = {}) {
  const char* f = "cuda::logit_distillation_loss";
  lmrl::detail::require(student.config().vocab_size == teacher.config().vocab_size, f, ": the student's vocabulary has ",
                        student.config().vocab_size, " tokens, the teacher's ", teacher.config().vocab_size,
                        " (logit distillation needs a shared tokenizer)");
  lmrl::detail::require(student.stream() == teacher.stream(), f,
                        ": the student and the teacher must run on one stream (each chunk uses both)");
  lmrl::detail::require(config.temperature > 0 && std::isfinite(config.temperature), f, ": temperature = ",
                        config.temperature, " must be positive and finite");
  const double count = lmrl::detail::marked_tokens(batch, f);
  const cudaStream_t stream = student.stream();
  const index_t V = student.config().vocab_size, dt = teacher.config().hidden_size;
  // Without `backward` the gradient still runs (logit_loss_backward always does), on a saved buffer.
  device_array<float> saved;
  if (!backward) {
    saved = device_array<float>(student.size(), stream);
    LMRL_CUDA_CHECK(cudaMemcpyAsync(saved.data(), student.gradients(), saved.bytes(), cudaMemcpyDeviceToDevice, stream));
  }
  const float scale = static_cast<float>(1.0 / count);
  device_array<float> teacher_hidden, gathered, teacher_logits, row_weight, row_scale, kl, weight_dev, attention_dev;
  device_array<std::int32_t> tokens_dev;
  std::vector<float> kl_host, weight_host;
  double sum = 0;
  for (const auto& rows : lmrl::detail::micro_batches(batch, layout)) {
    const lmrl::detail::example_batch<float> eb(batch, rows);
    const index_t B = eb.tokens.shape()[0], L = eb.tokens.shape()[1];
    const auto N = static_cast<std::size_t>(B * L);
    grow(tokens_dev, N, stream), grow(attention_dev, N, stream), grow(weight_dev, N, stream);
    LMRL_CUDA_CHECK(cudaMemcpyAsync(tokens_dev.data(), eb.tokens.data(), N * sizeof(std::int32_t),
                                    cudaMemcpyHostToDevice, stream));
    LMRL_CUDA_CHECK(cudaMemcpyAsync(attention_dev.data(), eb.attention.data(), N * sizeof(float),
                                    cudaMemcpyHostToDevice, stream));
    LMRL_CUDA_CHECK(cudaMemcpyAsync(weight_dev.data(), eb.weight.data(), N * sizeof(float), cudaMemcpyHostToDevice,
                                    stream));
    grow(teacher_hidden, N * static_cast<std::size_t>(dt), stream);
    teacher.hidden_states(tokens_dev.data(), attention_dev.data(), B, L, teacher_hidden.data());
    const auto loss_fn = [&](const index_t* out_rows, index_t n, device_matrix<const float> logits,
                             device_matrix<float> grad) {
      const auto un = static_cast<std::size_t>(n);
      grow(gathered, un * static_cast<std::size_t>(dt), stream), grow(teacher_logits, un * static_cast<std::size_t>(V), stream);
      grow(row_weight, un, stream), grow(row_scale, un, stream), grow(kl, un, stream);
      cuda::launch(distill_train_detail::gather_teacher_rows_kernel<float>, transformer_detail::glue_blocks(n * dt),
          transformer_detail::glue_threads, 0, stream, teacher_hidden.data(), dt, out_rows, n, weight_dev.data(), scale,
          gathered.data(), row_weight.data(), row_scale.data());
      LMRL_CUDA_CHECK_LAUNCH("distill_train_detail::gather_teacher_rows_kernel");
      teacher.project_logits({gathered.data(), n, dt}, {teacher_logits.data(), n, V});
      distillation_kl(logits.data, logits.ld, teacher_logits.data(), V, n, V, config.divergence, config.temperature,
                      kl.data(), grad.data, grad.ld, row_scale.data(), stream);
      kl_host.resize(un), weight_host.resize(un);
      LMRL_CUDA_CHECK(cudaMemcpyAsync(kl_host.data(), kl.data(), un * sizeof(float), cudaMemcpyDeviceToHost, stream));
      LMRL_CUDA_CHECK(cudaMemcpyAsync(weight_host.data(), row_weight.data(), un * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream));
      LMRL_CUDA_CHECK(cudaStreamSynchronize(stream));
      double part = 0;  // sum of weight * divergence, in row order as on the CPU
      for (std::size_t k = 0; k < un; ++k) part += static_cast<double>(weight_host[k]) * static_cast<double>(kl_host[k]);
      return part;
    };
    sum += student.logit_loss_backward(tokens_dev.data(), attention_dev.data(), B, L, loss_fn);
  }
  if (!backward)
    LMRL_CUDA_CHECK(cudaMemcpyAsync(student.gradients(), saved.data(), saved.bytes(), cudaMemcpyDeviceToDevice, stream));
  LMRL_CUDA_CHECK(cudaStreamSynchronize(stream));  // `saved` and the host staging die here
  return sum / count;
}

// What distill() needs of its student: pretrain()'s model whose passes run on a transformer_gpu it
// exposes, told when the device copy must catch up with the master parameters and when a backward ran on
// the device behind its back. transformer_gpu_policy (train/transformer_gpu_policy.cuh) is one; naming
// it here would pull the decoder into every unit that distills.
template <class P>
concept gpu_student = PretrainableModel<P> && requires(P& p) {
  { p.gpu() } -> std::same_as<transformer_gpu&>;
  p.sync_parameters();
  p.gradients_changed();
};

// Trains a GPU student toward a GPU teacher on examples from `next()` for config.steps steps: distill.hpp's
// distill() with the student's passes on the device (its master parameters and AdamW on the host, as
// pretrain() keeps them for any TrainablePolicy; the same checkpoints).
template <gpu_student Student, class Source>
  requires std::convertible_to<std::invoke_result_t<Source&>, pretrain_example>
pretrain_result distill(Student& student, transformer_gpu& teacher, Source&& next,
                        const pretrain_config& config, const logit_distillation_config& distillation,
                        const std::function<void(const pretrain_record&)>& on_log = {},
                        const pretrain_checkpointing& checkpointing = {}) {
  lmrl::detail::require(distillation.temperature > 0 && std::isfinite(distillation.temperature),
                        "cuda::distill: temperature = ", distillation.temperature, " must be positive and finite");
  return pretrain(student, std::forward<Source>(next), config, on_log, checkpointing,
                  [&](Student& model, const std::vector<pretrain_example>& batch,
                      const pretrain_config& c) {
                    model.sync_parameters();  // the optimizer's last step, where uploads are when_changed
                    const double loss = logit_distillation_loss(model.gpu(), teacher, batch, distillation, true,
                                                                batch_layout::of(c));
                    model.gradients_changed();
                    return loss;
                  });
}

}  // namespace lmrl::cuda
