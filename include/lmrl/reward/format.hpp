// Format rules: is the <think>...</think><answer>...</answer> layout kept?
//
// Three checks, each also a RewardRule (1 or 0; tag_count gives 0..1):
//  - strict: open-r1's format_reward layout
//      ^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$
//    made strict: each of the four tags exactly once, nothing but whitespace
//    after </answer>. (open-r1 compiles the regex with re.MULTILINE, so its '$'
//    also matches before any newline and "...</answer>\nmore text" passes,
//    and its lazy .*? lets tags repeat; is_open_r1_format reproduces the regex
//    exactly, quirks included.)
//  - soft: open-r1's soft format, re.match(r"<think>.*?</think>\s*<answer>.*?</answer>",
//    DOTALL): starts with <think>, then </think>, whitespace, <answer>, and a
//    later </answer>; anything may follow.
//  - tag_count: open-r1's tag_count_reward, 0.25 for each of "<think>\n",
//    "\n</think>\n", "\n<answer>\n", "\n</answer>" occurring exactly once
//    (non-overlapping counts, as Python's str.count).
// prompt_ends_with_think: the R1 prompt template already ends with "<think>"
// (or "<think>\n"), so the completion starts inside the think block. The
// checks then see "<think>" + completion when the completion starts with a
// newline, and "<think>\n" + completion otherwise.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "lmrl/reward/extract.hpp"
#include "lmrl/reward/rule.hpp"

namespace lmrl {

namespace detail {

// Non-overlapping count, as Python's str.count.
inline std::size_t count_occurrences(std::string_view text, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

// The text the format checks see (see prompt_ends_with_think above).
inline std::string with_think_prefix(std::string_view completion, bool prompt_ends_with_think) {
  if (!prompt_ends_with_think) return std::string(completion);
  std::string text = (!completion.empty() && completion.front() == '\n') ? "<think>" : "<think>\n";
  text += completion;
  return text;
}

constexpr std::string_view think_open = "<think>\n";
constexpr std::string_view think_to_answer = "\n</think>\n<answer>\n";
constexpr std::string_view answer_close = "\n</answer>";

}  // namespace detail

// The strict layout (see the header comment).
inline bool is_strict_format(std::string_view completion, bool prompt_ends_with_think = false) {
  using namespace detail;
  const std::string owned = with_think_prefix(completion, prompt_ends_with_think);
  std::string_view t = owned;
  for (std::string_view tag : {"<think>", "</think>", "<answer>", "</answer>"})
    if (count_occurrences(t, tag) != 1) return false;
  if (t.substr(0, think_open.size()) != think_open) return false;
  const std::size_t middle = t.find(think_to_answer, think_open.size());
  if (middle == std::string_view::npos) return false;
  std::string_view body = owned;  // only whitespace may follow </answer>
  while (!body.empty() && is_space(body.back())) body.remove_suffix(1);
  if (body.size() < answer_close.size()) return false;
  const std::size_t close = body.size() - answer_close.size();
  return body.substr(close) == answer_close && close >= middle + think_to_answer.size();
}

// open-r1's format_reward regex, re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$",
// text, re.DOTALL | re.MULTILINE), reproduced exactly.
inline bool is_open_r1_format(std::string_view completion, bool prompt_ends_with_think = false) {
  using namespace detail;
  const std::string owned = with_think_prefix(completion, prompt_ends_with_think);
  const std::string_view t = owned;
  if (t.substr(0, think_open.size()) != think_open) return false;
  const std::size_t middle = t.find(think_to_answer, think_open.size());  // the earliest leaves the most room
  if (middle == std::string_view::npos) return false;
  for (std::size_t at = t.find(answer_close, middle + think_to_answer.size()); at != std::string_view::npos;
       at = t.find(answer_close, at + 1)) {
    const std::size_t end = at + answer_close.size();
    if (end == t.size() || t[end] == '\n') return true;  // '$' under MULTILINE
  }
  return false;
}

// open-r1's soft format (see the header comment).
inline bool is_soft_format(std::string_view completion, bool prompt_ends_with_think = false) {
  const std::string owned = prompt_ends_with_think ? "<think>" + std::string(completion) : std::string(completion);
  const std::string_view t = owned;
  constexpr std::string_view open = "<think>", close = "</think>", answer = "<answer>", answer_end = "</answer>";
  if (t.substr(0, open.size()) != open) return false;
  for (std::size_t at = t.find(close, open.size()); at != std::string_view::npos; at = t.find(close, at + 1)) {
    std::size_t k = at + close.size();
    while (k < t.size() && detail::is_space(t[k])) ++k;
    if (t.substr(k, answer.size()) == answer && t.find(answer_end, k + answer.size()) != std::string_view::npos)
      return true;
  }
  return false;
}

// open-r1's tag_count_reward: 0.25 per tag string occurring exactly once.
inline double tag_count_score(std::string_view completion, bool prompt_ends_with_think = false) {
  const std::string owned = detail::with_think_prefix(completion, prompt_ends_with_think);
  double score = 0;
  for (std::string_view tag : {"<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>"})
    if (detail::count_occurrences(owned, tag) == 1) score += 0.25;
  return score;
}

// --- the rules ---------------------------------------------------------------

struct format_strict {
  bool prompt_ends_with_think = false;
  reward_outcome evaluate(const reward_context& ctx) const {
    return is_strict_format(ctx.completion, prompt_ends_with_think) ? reward_outcome{1.0, "format kept"}
                                                                    : reward_outcome{0.0, "strict format broken"};
  }
  double operator()(const reward_context& ctx) const { return evaluate(ctx).value; }
};

struct format_soft {
  bool prompt_ends_with_think = false;
  reward_outcome evaluate(const reward_context& ctx) const {
    return is_soft_format(ctx.completion, prompt_ends_with_think) ? reward_outcome{1.0, "tags present in order"}
                                                                  : reward_outcome{0.0, "tags missing or out of order"};
  }
  double operator()(const reward_context& ctx) const { return evaluate(ctx).value; }
};

struct tag_count {
  bool prompt_ends_with_think = false;
  double operator()(const reward_context& ctx) const { return tag_count_score(ctx.completion, prompt_ends_with_think); }
};

}  // namespace lmrl
