// Logit-level distillation of a teacher into a student that shares its
// tokenizer (teacher and student may differ in size). On each batch of
// sequences (a teacher's traces, say) the student minimizes the mean, over the
// tokens its loss covers (from loss_from on, as in SFT), of a divergence
// between the two next-token distributions (rl/distill.hpp):
//
//   L = (1 / N) sum_{marked tokens t} D( p_teacher(. | x_<t), p_student(. | x_<t) )
//
// Streamed: the teacher's final hidden states for the micro-batch are kept
// ([tokens x d_teacher], like any activation), and its logits are made one
// chunk of rows at a time, next to the student's chunk, inside the student's
// output layer (transformer::logit_loss_backward). No [tokens x vocab] array
// of either model exists at once beyond one chunk.
//
// distill() runs pretrain()'s loop (clipping, AdamW, schedule, checkpoints)
// with this loss; the teacher is never updated.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/ops/matmul.hpp"
#include "lmrl/model/transformer.hpp"
#include "lmrl/rl/distill.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/train/pretrain.hpp"

namespace lmrl {

struct logit_distillation_config {
  distill_divergence divergence = distill_divergence::forward_kl;  // TRL GKD beta = 0
  double temperature = 1.0;  // both distributions are softmax(logits / temperature)
};

namespace detail {

// Adds d/d(student) of scale * sum_{marked} D over one micro-batch; returns sum_{marked} D.
template <Real T>
double micro_batch_distillation(transformer<T>& student, transformer<T>& teacher,
                                const std::vector<pretrain_example>& batch, const example_rows& rows,
                                const logit_distillation_config& config, T scale) {
  const example_batch<T> eb(batch, rows);
  const token_batch<T> tb = eb.view();
  const index_t B = eb.weight.shape()[0], L = eb.weight.shape()[1], V = student.config().vocab_size,
                dt = teacher.config().hidden_size;
  dense<T, 2> teacher_hidden({B * L, dt});
  teacher.hidden_states(tb, teacher_hidden.view());
  dense<T, 2> gathered, teacher_logits;
  std::vector<T> kl;
  const auto loss_fn = [&](std::span<const index_t> out_rows, matrix_view<const T> logits, matrix_view<T> grad) {
    const auto n = static_cast<index_t>(out_rows.size());
    if (gathered.shape()[0] != n) {
      gathered = dense<T, 2>({n, dt});
      teacher_logits = dense<T, 2>({n, V});
    }
    for (index_t k = 0; k < n; ++k) {  // the teacher's hidden state at t - 1 predicts token t, as the student's does
      const index_t src = out_rows[static_cast<std::size_t>(k)] - 1;
      for (index_t j = 0; j < dt; ++j) gathered(k, j) = teacher_hidden(src, j);
    }
    ops::matmul_nt<T>(matrix_view<const T>(gathered.view()), teacher.parameters().weights().lm_head,
                      teacher_logits.view());
    kl.resize(static_cast<std::size_t>(n));
    distillation_kl<T>(logits, matrix_view<const T>(teacher_logits.view()), config.divergence,
                       vector_view<T>(kl.data(), {n}), grad, config.temperature);
    double sum = 0;
    for (index_t k = 0; k < n; ++k) {
      const index_t r = out_rows[static_cast<std::size_t>(k)];
      const T w = eb.weight(r / L, r % L);
      sum += static_cast<double>(w) * static_cast<double>(kl[static_cast<std::size_t>(k)]);
      const T g = w * scale;
      for (index_t v = 0; v < V; ++v) grad(k, v) *= g;
    }
    return sum;
  };
  return student.logit_loss_backward(tb, loss_fn);
}

}  // namespace detail

// The mean divergence over the batch's marked tokens; its gradient is ADDED to
// the student's when `backward` (the teacher's gradients are left alone).
template <Real T>
double logit_distillation_loss(transformer<T>& student, transformer<T>& teacher,
                               const std::vector<pretrain_example>& batch, const logit_distillation_config& config,
                               bool backward, const batch_layout& layout = {}) {
  const char* f = "logit_distillation_loss";
  detail::require(student.config().vocab_size == teacher.config().vocab_size, f, ": the student's vocabulary has ",
                  student.config().vocab_size, " tokens, the teacher's ", teacher.config().vocab_size,
                  " (logit distillation needs a shared tokenizer)");
  const double count = detail::marked_tokens(batch, f);
  // Without `backward` the gradient still runs (logit_loss_backward always does) into a scratch copy.
  const std::vector<T> saved = backward ? std::vector<T>{} : std::vector<T>(student.gradients().begin(),
                                                                              student.gradients().end());
  const T scale = static_cast<T>(1.0 / count);
  double sum = 0;
  for (const auto& rows : detail::micro_batches(batch, layout))
    sum += detail::micro_batch_distillation(student, teacher, batch, rows, config, scale);
  if (!backward) std::copy(saved.begin(), saved.end(), student.gradients().begin());
  return sum / count;
}

// Trains `student` toward `teacher` on examples from `next()` for config.steps steps.
template <Real T, class Source>
  requires std::convertible_to<std::invoke_result_t<Source&>, pretrain_example>
pretrain_result distill(transformer<T>& student, transformer<T>& teacher, Source&& next,
                        const pretrain_config& config, const logit_distillation_config& distillation,
                        const std::function<void(const pretrain_record&)>& on_log = {},
                        const pretrain_checkpointing& checkpointing = {}) {
  detail::require(distillation.temperature > 0 && std::isfinite(distillation.temperature),
                  "distill: temperature = ", distillation.temperature, " must be positive and finite");
  return pretrain(student, std::forward<Source>(next), config, on_log, checkpointing,
                  [&](transformer<T>& model, const std::vector<pretrain_example>& batch, const pretrain_config& c) {
                    return logit_distillation_loss(model, teacher, batch, distillation, true, batch_layout::of(c));
                  });
}

}  // namespace lmrl
