// Per-group statistics of sequence scores, and the checks and the broadcast
// every outcome-reward estimator shares (GRPO, RLOO, OPO, GPG, pass@k,
// REINFORCE++-baseline, GDPO).
//
// A group is a run of group_size consecutive sequences of one prompt. A NaN
// score means "missing" (TRL: every reward function returned None): it is left
// out of every statistic and its sequence gets zero advantage. +-inf is an error.
#pragma once

#include <cmath>
#include <limits>

#include "lmrl/error.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

template <class T>
bool is_missing(T score) {
  return std::isnan(score);
}

// Statistics of the non-missing scores of one group, accumulated in double.
struct group_moments {
  index_t count = 0;      // non-missing scores
  double sum = 0;
  double mean = 0;        // 0 when count == 0
  double variance = 0;    // sum (r - mean)^2 / (count - 1) (unbiased) or / count; 0 when undefined
  bool uniform = true;    // all non-missing scores equal (true when count <= 1): no learning signal
  double std() const { return std::sqrt(variance); }
};

// Moments of scores[first, first + size). unbiased: Bessel's correction, as
// torch.std (TRL nanstd, verl, OpenRLHF); otherwise the population variance.
template <class T>
group_moments moments_of_group(vector_view<const T> scores, index_t first, index_t size, bool unbiased = true) {
  group_moments m;
  double first_value = 0;
  for (index_t i = first; i < first + size; ++i) {
    const T r = scores(i);
    if (is_missing(r)) continue;
    if (m.count == 0) first_value = r;
    if (static_cast<double>(r) != first_value) m.uniform = false;
    m.sum += r;
    ++m.count;
  }
  if (m.count == 0) return m;
  m.mean = m.sum / static_cast<double>(m.count);
  const index_t dof = unbiased ? m.count - 1 : m.count;
  if (dof <= 0) return m;
  double squares = 0;
  for (index_t i = first; i < first + size; ++i) {
    const T r = scores(i);
    if (!is_missing(r)) squares += (r - m.mean) * (r - m.mean);
  }
  m.variance = squares / static_cast<double>(dof);
  return m;
}

namespace detail {

// Scores may be NaN (missing) but not +-inf. Returns the number of missing scores.
template <class T>
index_t require_scores(const char* function, const char* name, vector_view<const T> scores) {
  index_t missing = 0;
  for (index_t i = 0; i < scores.shape[0]; ++i) {
    const T r = scores(i);
    if (is_missing(r)) {
      ++missing;
    } else if (!std::isfinite(r)) {
      fail(function, ": ", name, "(", i, ") = ", static_cast<double>(r),
           " is infinite (a missing score is NaN; an infinite one is an error)");
    }
  }
  return missing;
}

inline void require_epsilon(const char* function, const char* name, double epsilon) {
  if (!(epsilon >= 0) || !std::isfinite(epsilon))
    fail(function, ": ", name, " = ", epsilon, " must be finite and >= 0");
}

// The checks of the per-token (struct) form: scores [B], mask [B x T] of 0/1,
// out [B x T], group_size dividing B.
template <class T>
index_t require_outcome_inputs(const char* function, const advantage_inputs<T>& in, matrix_view<T> out) {
  require(in.scores.data != nullptr || in.scores.shape[0] == 0, function, ": scores are not given");
  require_extent(function, "scores", in.scores, 0, in.mask.shape[0], "the number of rows of mask");
  require_same_shape(function, "mask", in.mask, "out", out);
  require_mask(function, "mask", in.mask);
  require_group_size(function, in.mask.shape[0], in.group_size);
  return require_scores(function, "scores", in.scores);
}

// out(i, t) = a where token t of sequence i is active, 0 where it is masked.
template <class T>
void broadcast_row(index_t i, double a, matrix_view<const T> mask, matrix_view<T> out) {
  for (index_t t = 0; t < out.shape[1]; ++t) out(i, t) = mask(i, t) != 0 ? static_cast<T>(a) : T(0);
}

}  // namespace detail
}  // namespace lmrl
