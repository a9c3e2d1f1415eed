// The accuracy rule: extract the completion's final answer and compare it with
// the gold answer(s). 1 when any gold answer matches, 0 when none does or no
// answer is found, NaN when the context carries no gold answer (TRL's
// accuracy_reward returns None when the gold cannot be parsed).
#pragma once

#include <cmath>
#include <optional>
#include <string>

#include "lmrl/reward/extract.hpp"
#include "lmrl/reward/math_equal.hpp"
#include "lmrl/reward/rule.hpp"

namespace lmrl {

enum class answer_match {
  math,   // math_equal (numbers by value, LaTeX normalized)
  exact,  // exact_match (strings equal after trimming)
};

struct accuracy {
  answer_source source = answer_source::automatic;
  answer_match match = answer_match::math;
  math_equal_options options{};

  reward_outcome evaluate(const reward_context& ctx) const {
    if (ctx.gold_answers.empty()) return {std::nan(""), "no gold answer"};
    const std::optional<std::string> answer = extract_answer(ctx.completion, source);
    if (!answer) return {0.0, "no answer extracted"};
    for (const std::string& gold : ctx.gold_answers) {
      const bool equal = match == answer_match::exact ? exact_match(gold, *answer) : math_equal(gold, *answer, options);
      if (equal) return {1.0, "correct"};
    }
    return {0.0, "wrong answer"};
  }
  double operator()(const reward_context& ctx) const { return evaluate(ctx).value; }
};

}  // namespace lmrl
