// Rollout correction: importance weights for the mismatch between the rollout
// engine that sampled the tokens (vLLM, bf16, ...) and the trainer's own
// log-probs of the same policy (TRL vllm_importance_sampling_*, verl
// rollout_is / TIS / IcePop).
//
//   token level:     w[i, t] = exp(old_logp[i, t] - rollout_logp[i, t])
//   sequence level:  w[i, t] = exp(sum_{active u} (old_logp[i, u] - rollout_logp[i, u]))
//   truncate:        w <- clamp(w, clip_min, clip_max)
//   mask:            w <- 0 where w < clip_min or w > clip_max
//
// The weights multiply the per-token policy loss and carry no gradient: they
// depend only on old_logp and rollout_logp, never on the policy's logp.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "lmrl/error.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

enum class rollout_is_level { token, sequence };
enum class rollout_is_mode { truncate, mask };

// What the weights looked like (before batch normalization), as TRL and verl log them.
struct rollout_correction_stats {
  index_t active_tokens = 0;
  index_t sequences = 0;            // sequences with at least one active token
  double weight_mean = 0;           // over active tokens (verl rollout_is_mean; TRL token-level mean)
  double weight_min = 0;            // over active tokens
  double weight_max = 0;
  double sequence_weight_mean = 0;  // sequence level: mean over sequences of their weight (TRL sequence-level mean)
  double fraction_high = 0;         // active tokens whose raw weight was above clip_max
  double fraction_low = 0;          // active tokens whose raw weight was below clip_min
  double fraction_truncated = 0;    // active tokens whose weight was clamped (truncate mode)
  double fraction_masked = 0;       // active tokens whose weight was set to 0 (mask mode)
  double logp_diff_mean = 0;        // mean |old_logp - rollout_logp| over active tokens (TRL sampling_logp_difference)
  double logp_diff_max = 0;
  double batch_norm_factor = 1;     // what the weights were divided by (verl rollout_is_batch_normalize)
};

struct rollout_correction {
  rollout_is_level level = rollout_is_level::sequence;  // TRL vllm_importance_sampling_mode "sequence_mask"
  rollout_is_mode mode = rollout_is_mode::mask;         // TRL default (verl's default, TIS, is truncate)
  double clip_max = 3.0;   // TRL vllm_importance_sampling_clip_max (verl rollout_is_threshold: 2.0); inf = none
  double clip_min = 0.0;   // TRL vllm_importance_sampling_clip_min = None; 0 means no lower bound
  double log_ratio_bound = std::numeric_limits<double>::infinity();  // verl SAFETY_BOUND = 20; TRL none
  bool batch_normalize = false;  // verl rollout_is_batch_normalize: divide by the mean weight

  // TRL: mode is "token_truncate", "token_mask", "sequence_truncate" or "sequence_mask".
  static rollout_correction trl(std::string_view mode, double clip_max = 3.0, double clip_min = 0.0) {
    rollout_correction c;
    if (mode == "token_truncate") {
      c.level = rollout_is_level::token, c.mode = rollout_is_mode::truncate;
    } else if (mode == "token_mask") {
      c.level = rollout_is_level::token, c.mode = rollout_is_mode::mask;
    } else if (mode == "sequence_truncate") {
      c.level = rollout_is_level::sequence, c.mode = rollout_is_mode::truncate;
    } else if (mode == "sequence_mask") {
      c.level = rollout_is_level::sequence, c.mode = rollout_is_mode::mask;
    } else {
      detail::fail("lmrl::rollout_correction::trl: unknown vllm_importance_sampling_mode '", std::string(mode),
                   "'; allowed: token_truncate, token_mask, sequence_truncate, sequence_mask");
    }
    c.clip_max = clip_max;
    c.clip_min = clip_min;
    c.validate();
    return c;
  }

  // verl: rollout_is is "token" or "sequence"; rollout_is_threshold is "upper"
  // (TIS: clamp from above only) or "lower_upper" (IcePop: 0 outside
  // [lower, upper]); log-ratios are clamped to +-20 before exp.
  static rollout_correction verl(std::string_view rollout_is = "sequence", std::string_view threshold = "2.0",
                                 bool batch_normalize = false) {
    constexpr const char* fn = "lmrl::rollout_correction::verl";
    rollout_correction c;
    if (rollout_is == "token") {
      c.level = rollout_is_level::token;
    } else if (rollout_is == "sequence") {
      c.level = rollout_is_level::sequence;
    } else {
      detail::fail(fn, ": unknown rollout_is '", std::string(rollout_is), "'; allowed: token, sequence");
    }
    const auto parse = [&](std::string_view text) {
      double x = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
      if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        detail::fail(fn, ": invalid rollout_is_threshold '", std::string(threshold), "'");
      return x;
    };
    const auto underscore = threshold.find('_');
    if (underscore == std::string_view::npos) {
      c.mode = rollout_is_mode::truncate;
      c.clip_max = parse(threshold);
      c.clip_min = 0;
    } else {
      c.mode = rollout_is_mode::mask;
      c.clip_min = parse(threshold.substr(0, underscore));
      c.clip_max = parse(threshold.substr(underscore + 1));
      detail::require(c.clip_min > 0, fn, ": rollout_is_threshold lower bound ", c.clip_min, " must be positive");
    }
    c.log_ratio_bound = 20;
    c.batch_normalize = batch_normalize;
    c.validate();
    return c;
  }

  void validate() const {
    constexpr const char* fn = "lmrl::rollout_correction";
    detail::require(clip_max > 0, fn, ": clip_max = ", clip_max, " must be positive");
    detail::require(clip_min >= 0 && std::isfinite(clip_min), fn, ": clip_min = ", clip_min,
                    " must be finite and non-negative (0 = no lower bound)");
    detail::require(clip_min <= clip_max, fn, ": clip_min = ", clip_min, " exceeds clip_max = ", clip_max);
    detail::require(log_ratio_bound > 0, fn, ": log_ratio_bound = ", log_ratio_bound, " must be positive");
  }

  // weights[i, t] on active tokens, 0 where masked. A NaN rollout_logp at an
  // active token means the engine gave none: its log-ratio counts as 0 (TRL).
  template <Real T>
  rollout_correction_stats weights(matrix_view<const T> old_logp, matrix_view<const T> rollout_logp,
                                   matrix_view<const T> mask, matrix_view<T> out) const {
    constexpr const char* fn = "lmrl::rollout_correction::weights";
    validate();
    detail::require_same_shape(fn, "old_logp", old_logp, "rollout_logp", rollout_logp);
    detail::require_same_shape(fn, "old_logp", old_logp, "mask", mask);
    detail::require_same_shape(fn, "old_logp", old_logp, "out", out);
    detail::require_mask(fn, "mask", mask);
    detail::require_finite_where(fn, "old_logp", old_logp, mask);
    const index_t rows = old_logp.shape[0];
    const index_t cols = old_logp.shape[1];

    // The log-ratio of an active token, NaN (missing) counted as 0.
    const auto log_ratio = [&](index_t i, index_t t) {
      const double r = static_cast<double>(rollout_logp(i, t));
      if (std::isnan(r)) return 0.0;
      if (!std::isfinite(r))
        detail::fail(fn, ": rollout_logp(", i, ", ", t, ") = ", r, " is infinite at an active position");
      return static_cast<double>(old_logp(i, t)) - r;
    };
    // Truncate or mask a raw weight, counting what happened.
    rollout_correction_stats st;
    index_t high = 0, low = 0, changed = 0;
    const auto bound = [&](double w, index_t count) {
      const bool is_high = w > clip_max, is_low = w < clip_min;
      high += is_high * count;
      low += is_low * count;
      if (!is_high && !is_low) return w;
      changed += count;
      if (mode == rollout_is_mode::mask) return 0.0;
      return std::clamp(w, clip_min, clip_max);
    };

    double weight_sum = 0, sequence_weight_sum = 0, diff_sum = 0;
    st.weight_min = std::numeric_limits<double>::infinity();
    st.weight_max = -std::numeric_limits<double>::infinity();
    for (index_t i = 0; i < rows; ++i) {
      index_t n = 0;
      double sum = 0;
      for (index_t t = 0; t < cols; ++t) {
        if (mask(i, t) == 0) continue;
        const double d = log_ratio(i, t);
        sum += d;
        ++n;
        diff_sum += std::abs(d);
        st.logp_diff_max = std::max(st.logp_diff_max, std::abs(d));
      }
      st.active_tokens += n;
      if (n > 0) ++st.sequences;
      double sequence_weight = 0;
      if (level == rollout_is_level::sequence && n > 0) {
        sequence_weight = bound(std::exp(std::clamp(sum, -log_ratio_bound, log_ratio_bound)), n);
        sequence_weight_sum += sequence_weight;
      }
      for (index_t t = 0; t < cols; ++t) {
        if (mask(i, t) == 0) {
          out(i, t) = T(0);
          continue;
        }
        const double w = level == rollout_is_level::sequence
                             ? sequence_weight
                             : bound(std::exp(std::clamp(log_ratio(i, t), -log_ratio_bound, log_ratio_bound)), 1);
        out(i, t) = static_cast<T>(w);
        weight_sum += w;
        st.weight_min = std::min(st.weight_min, w);
        st.weight_max = std::max(st.weight_max, w);
      }
    }
    if (st.active_tokens == 0) {
      st.weight_min = st.weight_max = 0;
      return st;
    }
    const double n = static_cast<double>(st.active_tokens);
    st.weight_mean = weight_sum / n;
    st.sequence_weight_mean =
        level == rollout_is_level::sequence ? sequence_weight_sum / static_cast<double>(st.sequences) : st.weight_mean;
    st.fraction_high = static_cast<double>(high) / n;
    st.fraction_low = static_cast<double>(low) / n;
    (mode == rollout_is_mode::mask ? st.fraction_masked : st.fraction_truncated) = static_cast<double>(changed) / n;
    st.logp_diff_mean = diff_sum / n;

    if (batch_normalize) {
      // verl: token level divides by the mean over tokens, sequence level by
      // the mean over sequences; skipped when that mean is <= 1e-8.
      const double mean = level == rollout_is_level::sequence ? st.sequence_weight_mean : st.weight_mean;
      if (mean > 1e-8) {
        st.batch_norm_factor = mean;
        for (index_t i = 0; i < rows; ++i)
          for (index_t t = 0; t < cols; ++t)
            if (mask(i, t) != 0) out(i, t) = static_cast<T>(static_cast<double>(out(i, t)) / mean);
      }
    }
    return st;
  }

  // Any backend, into caller storage.
  template <Array2D O, Array2D R, Array2D M, WritableArray2D W>
  rollout_correction_stats weights(const O& old_logp, const R& rollout_logp, const M& mask, W&& out) const {
    using T = element_t<O, 2>;
    const matrix_view<const T> o = view<2>(old_logp), r = view<2>(rollout_logp), m = view<2>(mask);
    const matrix_view<T> w = view<2>(out);
    return weights<T>(o, r, m, w);
  }

  // Convenience: {weights as a new array of old_logp's family, stats}.
  template <Array2D O, Array2D R, Array2D M>
  auto weights(const O& old_logp, const R& rollout_logp, const M& mask) const {
    using T = element_t<O, 2>;
    const matrix_view<const T> o = view<2>(old_logp), r = view<2>(rollout_logp), m = view<2>(mask);
    auto out = make_like<O, T, 2>(o.shape);
    const matrix_view<T> w = view<2>(out);
    const rollout_correction_stats st = weights<T>(o, r, m, w);
    return std::pair<decltype(out), rollout_correction_stats>(std::move(out), st);
  }
};

}  // namespace lmrl
