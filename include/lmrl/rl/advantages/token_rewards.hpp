// Token-level rewards from sequence scores: the score of a sequence sits on its
// last active token, 0 elsewhere, as verl's reward managers place it
// (token_level_scores[i, valid_response_length - 1] = score). Used by the
// struct forms of REINFORCE++, ReMax and GAE when no token_rewards are given.
#pragma once

#include "lmrl/rl/advantages/group_stats.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// Index of the last active token of row i, or -1 when the row is empty.
template <class T>
index_t last_active_token(matrix_view<const T> mask, index_t i) {
  for (index_t t = mask.shape[1]; t-- > 0;)
    if (mask(i, t) != 0) return t;
  return -1;
}

// out[i, last active token of i] = scores[i], 0 elsewhere. A missing (NaN)
// score becomes 0 (the caller leaves the row out of its statistics).
template <class T>
void scores_on_last_token(vector_view<const T> scores, matrix_view<const T> mask, matrix_view<T> out) {
  for (index_t i = 0; i < out.shape[0]; ++i) {
    const index_t last = last_active_token(mask, i);
    for (index_t t = 0; t < out.shape[1]; ++t)
      out(i, t) = t == last && !is_missing(scores(i)) ? scores(i) : T(0);
  }
}

}  // namespace lmrl
