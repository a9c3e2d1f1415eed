// Logit-level distillation: a student's next-token distribution pulled toward
// a teacher's, token by token, over the whole vocabulary (the teacher and the
// student share the tokenizer, so their logit rows line up). With
// p = softmax(teacher / tau) and q = softmax(student / tau):
//
//   forward KL  KL(p || q) = sum_v p_v (log p_v - log q_v)   dKL/dz_v = (q_v - p_v) / tau
//   reverse KL  KL(q || p) = sum_v q_v (log q_v - log p_v)   dKL/dz_v = q_v (log q_v - log p_v - KL) / tau
//
// z the student's logits. Forward KL is classic knowledge distillation
// (Hinton et al. 2015) and TRL GKD's beta = 0; it makes the student cover
// every token the teacher gives mass to. Reverse KL (TRL GKD's beta = 1,
// MiniLLM) is mode-seeking: the student may drop the teacher's small modes.
// As in TRL's generalized_jsd_loss, both sides are divided by the temperature
// and the result is not multiplied by tau^2.
//
// Streamed over the vocabulary with rl/kl_exact.hpp's online log-sum-exp
// state: one pass for the value, one more for the gradient; no
// vocabulary-sized temporary. Rows are tokens (pass only the active ones).
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>

#include "lmrl/error.hpp"
#include "lmrl/rl/kl_exact.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

enum class distill_divergence { forward_kl, reverse_kl };

// "forward_kl" or "reverse_kl" (an lmrl::error names the allowed values otherwise).
inline distill_divergence distill_divergence_from_name(std::string_view name) {
  if (name == "forward_kl") return distill_divergence::forward_kl;
  if (name == "reverse_kl") return distill_divergence::reverse_kl;
  detail::fail("distill_divergence: \"", name, "\" is not a divergence; allowed: forward_kl, reverse_kl");
}

inline const char* distill_divergence_name(distill_divergence d) {
  return d == distill_divergence::forward_kl ? "forward_kl" : "reverse_kl";
}

// kl[r] = the divergence between the teacher's and the student's row r; when
// grad_student_logits is not empty, also d kl[r] / d student_logits[r, v].
template <Real T>
void distillation_kl(matrix_view<const T> student_logits, matrix_view<const T> teacher_logits,
                     distill_divergence divergence, vector_view<T> kl, matrix_view<T> grad_student_logits = {},
                     double temperature = 1.0) {
  constexpr const char* fn = "lmrl::distillation_kl";
  if (divergence == distill_divergence::reverse_kl) {  // KL(q || p): the student is the first argument
    exact_kl<T>(student_logits, teacher_logits, kl, grad_student_logits, temperature);
    return;
  }
  detail::require_same_shape(fn, "student_logits", student_logits, "teacher_logits", teacher_logits);
  detail::require_extent(fn, "kl", kl, 0, student_logits.shape[0], "the number of rows of student_logits");
  const bool want_gradient = grad_student_logits.data != nullptr;
  if (want_gradient)
    detail::require_same_shape(fn, "student_logits", student_logits, "grad_student_logits", grad_student_logits);
  detail::require(std::isfinite(temperature) && temperature > 0, fn, ": temperature = ", temperature,
                  " must be positive and finite");
  detail::require(student_logits.shape[1] > 0, fn, ": student_logits of shape ", student_logits,
                  " has an empty vocabulary");
  const index_t rows = student_logits.shape[0], vocab = student_logits.shape[1];
  const double inv_t = 1.0 / temperature;
  for (index_t r = 0; r < rows; ++r) {
    detail::exact_kl_row_state st;  // a = teacher / tau (p), b = student / tau (q)
    for (index_t v = 0; v < vocab; ++v) {
      const double a = static_cast<double>(teacher_logits(r, v));
      const double b = static_cast<double>(student_logits(r, v));
      if (!std::isfinite(a) || !std::isfinite(b))
        detail::fail(fn, ": logits at row ", r, ", column ", v, " are not finite (student ", b, ", teacher ", a, ")");
      st.add(a * inv_t, b * inv_t);
    }
    const double log_sa = std::log(st.sa), log_sb = std::log(st.sb);
    kl(r) = static_cast<T>(std::max(0.0, st.s / st.sa - log_sa + log_sb));  // >= 0 up to rounding
    if (!want_gradient) continue;
    for (index_t v = 0; v < vocab; ++v) {
      const double p = std::exp(static_cast<double>(teacher_logits(r, v)) * inv_t - st.ma - log_sa);
      const double q = std::exp(static_cast<double>(student_logits(r, v)) * inv_t - st.mb - log_sb);
      grad_student_logits(r, v) = static_cast<T>((q - p) * inv_t);
    }
  }
}

// Any backend, into caller storage.
template <Array2D S, Array2D P, WritableArray1D K>
void distillation_kl(const S& student_logits, const P& teacher_logits, distill_divergence divergence, K&& kl,
                     double temperature = 1.0) {
  using T = element_t<S, 2>;
  distillation_kl<T>(view<2>(student_logits), view<2>(teacher_logits), divergence, view<1>(kl), matrix_view<T>{},
                     temperature);
}

template <Array2D S, Array2D P, WritableArray1D K, WritableArray2D G>
void distillation_kl(const S& student_logits, const P& teacher_logits, distill_divergence divergence, K&& kl,
                     G&& grad_student_logits, double temperature = 1.0) {
  using T = element_t<S, 2>;
  distillation_kl<T>(view<2>(student_logits), view<2>(teacher_logits), divergence, view<1>(kl),
                     view<2>(grad_student_logits), temperature);
}

}  // namespace lmrl
