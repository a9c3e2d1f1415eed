// reward_context and the RewardRule concept: what every reward rule sees and
// what it gives back.
//
// A rule is any callable value taking a const reward_context& and returning a
// double; a user's lambda is a rule. NaN means "missing" (TRL's None): the
// rule has no opinion on this completion (for example the gold answer is
// absent), and weighted_sum skips it. A rule may also explain itself: a member
// evaluate(ctx) returning reward_outcome{value, reason}; explain() calls it
// when present.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace lmrl {

// Everything a rule may look at for one completion. All members are views:
// the caller keeps the text alive while rules run.
struct reward_context {
  std::string_view prompt;                       // the prompt text (language rules use it)
  std::string_view completion;                   // the generated text
  std::span<const std::string> gold_answers{};   // accepted answers; empty when the task has none
  std::int64_t completion_tokens = -1;           // |y| in tokens; -1 when unknown
  bool truncated = false;                        // generation stopped at max_completion_length
  std::span<const std::int64_t> completion_ids{};  // token ids, for token-level rules; may be empty
};

// A value with a reason, for logging why a completion got its reward. The
// reason is a string literal (static storage), so returning it never allocates.
struct reward_outcome {
  double value = 0;
  const char* reason = "";
};

template <class R>
concept RewardRule = std::copy_constructible<R> && requires(const R& rule, const reward_context& ctx) {
  { rule(ctx) } -> std::convertible_to<double>;
};

template <class R>
concept ExplainingRewardRule = RewardRule<R> && requires(const R& rule, const reward_context& ctx) {
  { rule.evaluate(ctx) } -> std::same_as<reward_outcome>;
};

// The value of a rule with its reason ("" for rules that give none).
template <RewardRule R>
reward_outcome explain(const R& rule, const reward_context& ctx) {
  if constexpr (ExplainingRewardRule<R>)
    return rule.evaluate(ctx);
  else
    return {static_cast<double>(rule(ctx)), ""};
}

}  // namespace lmrl
