// Length shaping: DAPO's soft overlong punishment, the cosine length reward
// scaled by correctness, and the n-gram repetition penalty (Demystifying Long
// CoT, Appendix C).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/reward/accuracy.hpp"
#include "lmrl/reward/rule.hpp"

namespace lmrl {

// DAPO Eq. 13, as TRL's get_soft_overlong_punishment:
//   0                                   if |y| <= L_max - L_cache
//   ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
//   -1                                  if |y| > L_max
inline double soft_overlong_punishment(std::int64_t length, std::int64_t max_completion_length,
                                       std::int64_t soft_punish_cache) {
  detail::require(max_completion_length > 0, "soft_overlong_punishment: max_completion_length = ",
                  max_completion_length, " must be positive");
  detail::require(soft_punish_cache >= 0 && soft_punish_cache <= max_completion_length,
                  "soft_overlong_punishment: soft_punish_cache = ", soft_punish_cache,
                  " must lie in [0, max_completion_length = ", max_completion_length, "]");
  detail::require(length >= 0, "soft_overlong_punishment: length = ", length, " is negative");
  const std::int64_t expected = max_completion_length - soft_punish_cache;
  if (length <= expected) return 0.0;
  if (length <= max_completion_length)
    return static_cast<double>(expected - length) / static_cast<double>(soft_punish_cache);
  return -1.0;
}

struct soft_overlong {
  std::int64_t max_completion_length = 20480;  // DAPO paper: L_max = 20480
  std::int64_t soft_punish_cache = 4096;       // DAPO paper: L_cache = 4096
  reward_outcome evaluate(const reward_context& ctx) const {
    if (ctx.completion_tokens < 0) return {std::nan(""), "completion token count unknown"};
    const double r = soft_overlong_punishment(ctx.completion_tokens, max_completion_length, soft_punish_cache);
    return {r, r == 0 ? "within length" : r == -1 ? "over max_completion_length" : "inside the soft cache"};
  }
  double operator()(const reward_context& ctx) const { return evaluate(ctx).value; }
};

// Cosine schedule of "Demystifying Long CoT" (TRL/open-r1 get_cosine_scaled_reward):
//   r = v_min + (v_max - v_min) (1 + cos(pi * progress)) / 2,  progress = |y| / L_max
// with (v_min, v_max) = (min_value_correct, max_value_correct) when correct and
// (max_value_wrong, min_value_wrong) when wrong. TRL clamps progress to 1 (cos is
// periodic); open-r1 does not (clamp = false).
struct cosine_length_options {
  std::int64_t max_len = 1000;       // open-r1's default
  double min_value_wrong = -1.0;     // TRL/open-r1 defaults
  double max_value_wrong = -0.5;
  double min_value_correct = 0.5;
  double max_value_correct = 1.0;
  bool clamp = true;                 // TRL
};

inline double cosine_scaled_reward(std::int64_t length, bool correct, const cosine_length_options& o = {}) {
  detail::require(o.max_len > 0, "cosine_scaled_reward: max_len = ", o.max_len, " must be positive");
  detail::require(length >= 0, "cosine_scaled_reward: length = ", length, " is negative");
  double progress = static_cast<double>(length) / static_cast<double>(o.max_len);
  if (o.clamp) progress = std::min(progress, 1.0);
  const double cosine = std::cos(progress * std::numbers::pi);
  const double lo = correct ? o.min_value_correct : o.max_value_wrong;
  const double hi = correct ? o.max_value_correct : o.min_value_wrong;
  return lo + 0.5 * (hi - lo) * (1.0 + cosine);
}

enum class length_unit {
  tokens,      // ctx.completion_tokens (TRL)
  characters,  // bytes of ctx.completion (open-r1's len(content), for ASCII text)
};

struct cosine_length {
  cosine_length_options options{};
  accuracy correctness{};
  length_unit unit = length_unit::tokens;
  reward_outcome evaluate(const reward_context& ctx) const {
    const reward_outcome correct = correctness.evaluate(ctx);
    if (std::isnan(correct.value)) return correct;
    const std::int64_t length =
        unit == length_unit::tokens ? ctx.completion_tokens : static_cast<std::int64_t>(ctx.completion.size());
    if (length < 0) return {std::nan(""), "completion token count unknown"};
    return {cosine_scaled_reward(length, correct.value == 1.0, options), correct.reason};
  }
  double operator()(const reward_context& ctx) const { return evaluate(ctx).value; }
};

// (1 - unique n-grams / n-grams) * max_penalty, 0 when there are fewer than
// ngram_size items. Items are compared with ==.
template <class Item>
double repetition_penalty_of(const std::vector<Item>& items, int ngram_size, double max_penalty) {
  detail::require(ngram_size > 0, "repetition_penalty: ngram_size = ", ngram_size, " must be positive");
  detail::require(max_penalty <= 0, "repetition_penalty: max_penalty = ", max_penalty, " should not be positive");
  const std::size_t n = static_cast<std::size_t>(ngram_size);
  if (items.size() < n) return 0.0;
  std::set<std::vector<Item>> unique;
  const std::size_t total = items.size() - n + 1;
  for (std::size_t i = 0; i < total; ++i) unique.emplace(items.begin() + i, items.begin() + i + n);
  const double scaling = 1.0 - static_cast<double>(unique.size()) / static_cast<double>(total);
  return scaling == 0 ? 0.0 : scaling * max_penalty;
}

// open-r1's words: text.lower().split(), with ASCII lowercasing and ASCII whitespace.
inline std::vector<std::string> lowercase_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text) {
    if (detail::is_space(c)) {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else {
      word += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

struct repetition_penalty {
  int ngram_size = 3;         // TRL's default
  double max_penalty = -1.0;  // TRL's default
  length_unit unit = length_unit::characters;  // characters: n-grams of words (open-r1); tokens: of completion_ids (TRL)
  double operator()(const reward_context& ctx) const {
    if (unit == length_unit::tokens) {
      const std::vector<std::int64_t> ids(ctx.completion_ids.begin(), ctx.completion_ids.end());
      return repetition_penalty_of(ids, ngram_size, max_penalty);
    }
    return repetition_penalty_of(lowercase_words(ctx.completion), ngram_size, max_penalty);
  }
};

}  // namespace lmrl
