// Loss aggregation: how a per-token loss l[i, t] becomes the scalar an
// optimizer step minimizes.
//
// Every mode is linear, L = sum_{i,t} w[i, t] l[i, t], so a mode is just its
// weights w (0 where masked), and dL/dl = w. The normalizers come from
// batch_totals, which describe the WHOLE optimizer step (all micro-batches of
// the gradient-accumulation window, all data-parallel ranks): then the sum of
// the micro-batch losses (and gradients) equals the loss of the one big batch,
// whatever the split (the TRL #3021 trap). A total left at 0 means "this
// micro-batch alone" and the normalizer is counted from the mask.
//
//   mode (struct)              TRL loss_type   verl loss_agg_mode          w[i, t] / m[i, t]
//   token_sum                  -               token-sum                   1
//   token_mean                 bnpo            token-mean (default)        1 / N
//   dapo                       dapo            token-mean + batch_num_tokens 1 / N
//   seq_mean_token_mean        grpo (default)  seq-mean-token-mean         1 / (S |o_i|)
//   seq_mean_token_sum         luspo           seq-mean-token-sum          1 / S
//   seq_mean_token_sum_norm    dr_grpo         seq-mean-token-sum-norm     1 / (S L)
//
// N = totals.active_tokens (or the active tokens of the mask), S =
// totals.sequences (or the rows of the mask; verl counts only non-empty rows,
// see count_empty_sequences), L = max_completion_length (or the mask's columns,
// verl's loss_scale_factor = None). Under DDP gradient averaging over R ranks,
// multiply the loss by R (verl's dp_size factor); TRL's division by the number
// of accumulation steps is what totals replace.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>

#include "lmrl/error.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

namespace detail {

// Counts of one micro-batch's mask, checking that it holds only 0 and 1.
struct mask_counts {
  index_t rows = 0;
  index_t nonempty_rows = 0;
  index_t active_tokens = 0;
};

template <class T>
mask_counts count_mask(const char* function, matrix_view<const T> mask) {
  mask_counts c;
  c.rows = mask.shape[0];
  for (index_t i = 0; i < mask.shape[0]; ++i) {
    index_t n = 0;
    for (index_t t = 0; t < mask.shape[1]; ++t) {
      const T m = mask(i, t);
      if (!(m == T(0) || m == T(1)))
        fail(function, ": mask(", i, ", ", t, ") = ", static_cast<double>(m), " but a mask holds only 0 or 1");
      n += m != T(0);
    }
    c.active_tokens += n;
    c.nonempty_rows += n > 0;
  }
  return c;
}

template <class T>
void check_weights_args(const char* function, matrix_view<const T> mask, batch_totals totals, matrix_view<T> w) {
  require_same_shape(function, "mask", mask, "w", w);
  require(totals.sequences >= 0 && totals.active_tokens >= 0, function, ": batch_totals must not be negative, got ",
          "sequences = ", totals.sequences, ", active_tokens = ", totals.active_tokens);
}

// w[i, t] = m[i, t] * row_scale(i) * scale, written for every position.
template <class T, class RowScale>
void write_weights(matrix_view<const T> mask, matrix_view<T> w, RowScale row_scale) {
  for (index_t i = 0; i < mask.shape[0]; ++i) {
    const T s = static_cast<T>(row_scale(i));
    for (index_t t = 0; t < mask.shape[1]; ++t) w(i, t) = mask(i, t) != T(0) ? s : T(0);
  }
}

template <class T>
index_t row_active(matrix_view<const T> mask, index_t i) {
  index_t n = 0;
  for (index_t t = 0; t < mask.shape[1]; ++t) n += mask(i, t) != T(0);
  return n;
}

// The token normalizer N: the step's active tokens, or this micro-batch's.
inline double token_normalizer(const char* function, const mask_counts& c, batch_totals totals) {
  if (totals.active_tokens == 0) return static_cast<double>(c.active_tokens);
  require(totals.active_tokens >= c.active_tokens, function, ": totals.active_tokens = ", totals.active_tokens,
          " is less than the ", c.active_tokens, " active tokens of this micro-batch");
  return static_cast<double>(totals.active_tokens);
}

// The sequence normalizer S: the step's sequences, or this micro-batch's rows
// (all of them as TRL counts, or the non-empty ones as verl counts).
inline double sequence_normalizer(const char* function, const mask_counts& c, batch_totals totals,
                                  bool count_empty_sequences) {
  if (totals.sequences == 0) return static_cast<double>(count_empty_sequences ? c.rows : c.nonempty_rows);
  require(totals.sequences >= c.rows, function, ": totals.sequences = ", totals.sequences, " is less than the ",
          c.rows, " sequences of this micro-batch");
  return static_cast<double>(totals.sequences);
}

inline double inverse_or_zero(double n) { return n > 0 ? 1.0 / n : 0.0; }

}  // namespace detail

// ---------------------------------------------------------------- the modes

// L = sum of the loss over active tokens (verl "token-sum").
struct token_sum {
  template <Real T>
  void weights(matrix_view<const T> mask, batch_totals totals, matrix_view<T> w) const {
    detail::check_weights_args("token_sum::weights", mask, totals, w);
    detail::count_mask("token_sum::weights", mask);
    detail::write_weights(mask, w, [](index_t) { return 1.0; });
  }
};

// L = sum l / N, N = active tokens of the step (verl "token-mean", its default;
// TRL "bnpo" when totals are 0: TRL normalizes each micro-batch by its own
// tokens, which is not split-invariant). An all-masked batch gives w = 0 (TRL
// clamps the count to 1).
struct token_mean {
  template <Real T>
  void weights(matrix_view<const T> mask, batch_totals totals, matrix_view<T> w) const {
    const char* f = "token_mean::weights";
    detail::check_weights_args(f, mask, totals, w);
    const auto c = detail::count_mask(f, mask);
    const double inv = detail::inverse_or_zero(detail::token_normalizer(f, c, totals));
    detail::write_weights(mask, w, [&](index_t) { return inv; });
  }
};

// TRL "dapo": L = sum l / N with N the active tokens of the whole generation
// batch of the step (TRL's num_items_in_batch / processes * accumulation steps /
// steps_per_generation). The same weights as token_mean: the difference in TRL
// is only where N comes from, here totals.active_tokens.
struct dapo {
  template <Real T>
  void weights(matrix_view<const T> mask, batch_totals totals, matrix_view<T> w) const {
    const char* f = "dapo::weights";
    detail::check_weights_args(f, mask, totals, w);
    const auto c = detail::count_mask(f, mask);
    const double inv = detail::inverse_or_zero(detail::token_normalizer(f, c, totals));
    detail::write_weights(mask, w, [&](index_t) { return inv; });
  }
};

// L = (1/S) sum_i (1/|o_i|) sum_t l[i, t]: the mean over sequences of each
// sequence's token mean (TRL "grpo", its default; verl "seq-mean-token-mean").
struct seq_mean_token_mean {
  bool count_empty_sequences = true;  // TRL: fully masked rows count in S; verl: they do not (totals == 0 only)
  template <Real T>
  void weights(matrix_view<const T> mask, batch_totals totals, matrix_view<T> w) const {
    const char* f = "seq_mean_token_mean::weights";
    detail::check_weights_args(f, mask, totals, w);
    const auto c = detail::count_mask(f, mask);
    const double inv_s = detail::inverse_or_zero(detail::sequence_normalizer(f, c, totals, count_empty_sequences));
    detail::write_weights(mask, w, [&](index_t i) {
      return inv_s * detail::inverse_or_zero(static_cast<double>(detail::row_active(mask, i)));
    });
  }
};

// L = (1/S) sum_i sum_t l[i, t] (verl "seq-mean-token-sum"; TRL "luspo", the
// length-unbiased sequence loss: (per_token_loss * mask).sum(-1).mean()).
struct seq_mean_token_sum {
  bool count_empty_sequences = true;  // TRL counts fully masked rows in S; verl does not (totals == 0 only)
  template <Real T>
  void weights(matrix_view<const T> mask, batch_totals totals, matrix_view<T> w) const {
    const char* f = "seq_mean_token_sum::weights";
    detail::check_weights_args(f, mask, totals, w);
    const auto c = detail::count_mask(f, mask);
    const double inv_s = detail::inverse_or_zero(detail::sequence_normalizer(f, c, totals, count_empty_sequences));
    detail::write_weights(mask, w, [&](index_t) { return inv_s; });
  }
};

// L = sum l / (S L_max): a constant normalizer, no length bias (TRL "dr_grpo",
// Dr. GRPO; verl "seq-mean-token-sum-norm" with loss_scale_factor = L_max).
struct seq_mean_token_sum_norm {
  index_t max_completion_length = 0;  // TRL max_completion_length (default 256 there); 0 = the mask's columns (verl)
  bool count_empty_sequences = true;  // TRL counts fully masked rows in S; verl does not (totals == 0 only)
  template <Real T>
  void weights(matrix_view<const T> mask, batch_totals totals, matrix_view<T> w) const {
    const char* f = "seq_mean_token_sum_norm::weights";
    detail::check_weights_args(f, mask, totals, w);
    detail::require(max_completion_length >= 0, f, ": max_completion_length = ", max_completion_length,
                    " must not be negative");
    const auto c = detail::count_mask(f, mask);
    const double horizon = static_cast<double>(max_completion_length > 0 ? max_completion_length : mask.shape[1]);
    const double inv =
        detail::inverse_or_zero(detail::sequence_normalizer(f, c, totals, count_empty_sequences) * horizon);
    detail::write_weights(mask, w, [&](index_t) { return inv; });
  }
};

// TRL "luspo" is seq_mean_token_sum with TRL's counting.
using luspo = seq_mean_token_sum;
// TRL names.
using bnpo = token_mean;
using grpo_loss = seq_mean_token_mean;
using dr_grpo = seq_mean_token_sum_norm;

static_assert(LossAggregation<token_sum, float> && LossAggregation<token_mean, double>);
static_assert(LossAggregation<dapo, float> && LossAggregation<seq_mean_token_mean, double>);
static_assert(LossAggregation<seq_mean_token_sum, float> && LossAggregation<seq_mean_token_sum_norm, double>);

// ---------------------------------------------------------------- run-time choice

// A mode chosen by name at run time, by TRL's loss_type or verl's loss_agg_mode:
// "token-mean", "bnpo", "dapo", "token-sum", "seq-mean-token-mean", "grpo",
// "seq-mean-token-sum", "luspo", "seq-mean-token-sum-norm", "dr_grpo". verl
// names count only non-empty rows when totals.sequences is 0, TRL names count
// every row.
class loss_aggregation {
 public:
  enum class mode { token_sum, token_mean, dapo, seq_mean_token_mean, seq_mean_token_sum, seq_mean_token_sum_norm };

  loss_aggregation() = default;  // token-mean, verl's default
  explicit loss_aggregation(std::string_view name, index_t max_completion_length = 0)
      : max_completion_length_(max_completion_length) {
    detail::require(max_completion_length >= 0, "loss_aggregation: max_completion_length = ", max_completion_length,
                    " must not be negative");
    struct entry {
      std::string_view name;
      mode m;
      bool count_empty;
    };
    static constexpr std::array<entry, 10> table{{
        {"token-mean", mode::token_mean, false},
        {"bnpo", mode::token_mean, true},
        {"dapo", mode::dapo, true},
        {"token-sum", mode::token_sum, false},
        {"seq-mean-token-mean", mode::seq_mean_token_mean, false},
        {"grpo", mode::seq_mean_token_mean, true},
        {"seq-mean-token-sum", mode::seq_mean_token_sum, false},
        {"luspo", mode::seq_mean_token_sum, true},
        {"seq-mean-token-sum-norm", mode::seq_mean_token_sum_norm, false},
        {"dr_grpo", mode::seq_mean_token_sum_norm, true},
    }};
    for (const auto& e : table)
      if (e.name == name) {
        mode_ = e.m;
        count_empty_sequences_ = e.count_empty;
        name_ = e.name;
        return;
      }
    std::string known;
    for (const auto& e : table) known += (known.empty() ? "" : ", ") + std::string(e.name);
    detail::fail("loss_aggregation: unknown mode \"", name, "\"; known modes: ", known);
  }

  mode kind() const { return mode_; }
  std::string_view name() const { return name_; }
  bool count_empty_sequences() const { return count_empty_sequences_; }
  index_t max_completion_length() const { return max_completion_length_; }

  template <Real T>
  void weights(matrix_view<const T> mask, batch_totals totals, matrix_view<T> w) const {
    switch (mode_) {
      case mode::token_sum: return token_sum{}.weights(mask, totals, w);
      case mode::token_mean: return token_mean{}.weights(mask, totals, w);
      case mode::dapo: return dapo{}.weights(mask, totals, w);
      case mode::seq_mean_token_mean: return seq_mean_token_mean{count_empty_sequences_}.weights(mask, totals, w);
      case mode::seq_mean_token_sum: return seq_mean_token_sum{count_empty_sequences_}.weights(mask, totals, w);
      case mode::seq_mean_token_sum_norm:
        return seq_mean_token_sum_norm{max_completion_length_, count_empty_sequences_}.weights(mask, totals, w);
    }
  }

 private:
  mode mode_ = mode::token_mean;
  bool count_empty_sequences_ = false;
  index_t max_completion_length_ = 0;
  std::string_view name_ = "token-mean";
};

static_assert(LossAggregation<loss_aggregation, float> && LossAggregation<loss_aggregation, double>);

// ---------------------------------------------------------------- applying weights

// L = sum w[i, t] l[i, t] over the positions where w != 0 (a masked position may
// hold anything in l, even NaN), accumulated in double.
template <Real T>
double aggregate(matrix_view<const T> loss, matrix_view<const T> w) {
  detail::require_same_shape("aggregate", "w", w, "loss", loss);
  double total = 0;
  for (index_t i = 0; i < loss.shape[0]; ++i)
    for (index_t t = 0; t < loss.shape[1]; ++t) {
      const T wi = w(i, t);
      if (wi != T(0)) total += static_cast<double>(wi) * static_cast<double>(loss(i, t));
    }
  return total;
}

template <Array2D L, Array2D W>
  requires Real<element_t<L, 2>> && std::same_as<element_t<L, 2>, element_t<W, 2>>
double aggregate(const L& loss, const W& w) {
  using T = element_t<L, 2>;
  return aggregate<T>(matrix_view<const T>(lmrl::view<2>(loss)), matrix_view<const T>(lmrl::view<2>(w)));
}

// Writes the weights of a mode into caller storage of any backend.
template <class A, Array2D M, WritableArray2D W>
  requires Real<element_t<M, 2>> && std::same_as<element_t<M, 2>, element_t<W, 2>> &&
           LossAggregation<A, element_t<M, 2>>
void aggregation_weights(const A& mode, const M& mask, batch_totals totals, W&& w) {
  using T = element_t<M, 2>;
  mode.weights(matrix_view<const T>(lmrl::view<2>(mask)), totals, lmrl::view<2>(w));
}

// Convenience: the weights as a new array of the mask's backend family.
template <class A, Array2D M>
  requires Real<element_t<M, 2>> && LossAggregation<A, element_t<M, 2>>
auto aggregation_weights(const A& mode, const M& mask, batch_totals totals = {}) {
  using T = element_t<M, 2>;
  const matrix_view<const T> m = lmrl::view<2>(mask);
  auto w = make_like<M, T, 2>(m.shape);
  mode.weights(m, totals, lmrl::view<2>(w));
  return w;
}

// Convenience: L for a loss and its mask (allocates the weights).
template <class A, Array2D L, Array2D M>
  requires Real<element_t<L, 2>> && std::same_as<element_t<L, 2>, element_t<M, 2>> &&
           LossAggregation<A, element_t<L, 2>>
double aggregate(const A& mode, const L& loss, const M& mask, batch_totals totals = {}) {
  using T = element_t<L, 2>;
  const matrix_view<const T> m = lmrl::view<2>(mask);
  dense<T, 2> w(m.shape);
  mode.weights(m, totals, w.view());
  return aggregate<T>(matrix_view<const T>(lmrl::view<2>(loss)), matrix_view<const T>(w.view()));
}

}  // namespace lmrl
