// Format rules: strict, the exact open-r1 regex, soft, and tag counting.
#include "lmrl/reward/format.hpp"

#include "support/testing.hpp"

using namespace lmrl;

static_assert(RewardRule<format_strict> && RewardRule<format_soft> && RewardRule<tag_count>);
static_assert(ExplainingRewardRule<format_strict> && !ExplainingRewardRule<tag_count>);

namespace {
constexpr const char* good = "<think>\nreason\n</think>\n<answer>\n42\n</answer>";
}

TEST_CASE("strict format: the open-r1 layout, each tag once, only whitespace after") {
  CHECK(is_strict_format(good));
  CHECK(is_strict_format(std::string(good) + "\n  \n"));
  CHECK(is_strict_format("<think>\n\n</think>\n<answer>\n\n</answer>"));      // empty bodies
  CHECK_FALSE(is_strict_format("<think>\n</think>\n<answer>\n42\n</answer>"));  // the newlines may not be shared
  CHECK_FALSE(is_strict_format(std::string(good) + "\nmore text"));
  CHECK_FALSE(is_strict_format(" <think>\nreason\n</think>\n<answer>\n42\n</answer>"));
  CHECK_FALSE(is_strict_format("<think>\na\n</think>\n<think>\nb\n</think>\n<answer>\n42\n</answer>"));
  CHECK_FALSE(is_strict_format("<think>reason</think><answer>42</answer>"));    // newlines required
  CHECK_FALSE(is_strict_format("<answer>\n42\n</answer>\n<think>\nreason\n</think>"));
  CHECK_FALSE(is_strict_format(""));
  CHECK_FALSE(is_strict_format("<think>\nreason\n</think>\n<answer>\n42"));
}

TEST_CASE("is_open_r1_format reproduces the regex, including its MULTILINE and repeated-tag quirks") {
  CHECK(is_open_r1_format(good));
  CHECK(is_open_r1_format(std::string(good) + "\nmore text"));  // '$' matches before a newline
  CHECK_FALSE(is_open_r1_format(std::string(good) + " more"));
  CHECK(is_open_r1_format("<think>\na\n</think>\n<think>\nb\n</think>\n<answer>\n42\n</answer>"));
  CHECK(is_open_r1_format(std::string(good) + "\nx "));
  CHECK_FALSE(is_open_r1_format("<think>\n</think>\n<answer>\n42\n</answer>"));
  CHECK_FALSE(is_open_r1_format("<think>reason</think><answer>42</answer>"));
}

TEST_CASE("prompt_ends_with_think: the completion starts inside the think block") {
  CHECK(is_strict_format("reason\n</think>\n<answer>\n42\n</answer>", true));
  CHECK(is_strict_format("\nreason\n</think>\n<answer>\n42\n</answer>", true));  // template ended "<think>"
  CHECK_FALSE(is_strict_format(good, true));  // a second <think>
  CHECK(is_soft_format("r</think> <answer>4</answer>", true));
  CHECK(tag_count_score("reason\n</think>\n<answer>\n42\n</answer>", true) == 1.0);
  const format_strict rule{true};
  reward_context ctx;
  ctx.completion = "reason\n</think>\n<answer>\n42\n</answer>";
  CHECK(rule(ctx) == 1.0);
}

TEST_CASE("soft format: anchored at the start, tags in order, anything after") {
  CHECK(is_soft_format("<think>x</think><answer>y</answer>"));
  CHECK(is_soft_format("<think>x</think> \n <answer>y</answer> trailing"));
  CHECK(is_soft_format("<think>a</think>b</think><answer>y</answer>"));  // the second </think> works
  CHECK_FALSE(is_soft_format("<think>x</think> text <answer>y</answer>"));
  CHECK_FALSE(is_soft_format(" <think>x</think><answer>y</answer>"));  // re.match anchors at the start
  CHECK_FALSE(is_soft_format("<think>x</think><answer>y"));
  CHECK_FALSE(is_soft_format("<answer>y</answer><think>x</think>"));
  CHECK_FALSE(is_soft_format(""));
}

TEST_CASE("tag_count: 0.25 per tag string seen exactly once") {
  CHECK(tag_count_score(good) == 1.0);
  CHECK(tag_count_score("<think>\nx") == 0.25);
  // "\n</think>\n" twice (non-overlapping) -> that tag earns nothing: 1 - 0.25.
  CHECK(tag_count_score("<think>\na\n</think>\nb\n</think>\n<answer>\n42\n</answer>") == 0.75);
  // Overlapping occurrences count once, as Python's str.count: "\n</think>\n</think>\n" holds one.
  CHECK(tag_count_score("<think>\n\n</think>\n</think>\n") == 0.5);
  CHECK(tag_count_score("") == 0.0);
  CHECK(tag_count_score("<think></think><answer></answer>") == 0.0);
}

TEST_CASE("format rules explain themselves") {
  reward_context ctx;
  ctx.completion = "no tags";
  CHECK(explain(format_strict{}, ctx).value == 0.0);
  CHECK(std::string(explain(format_strict{}, ctx).reason) == "strict format broken");
  CHECK(std::string(explain(format_soft{}, ctx).reason) == "tags missing or out of order");
  CHECK(std::string(explain(tag_count{}, ctx).reason).empty());
  ctx.completion = good;
  CHECK(format_strict{}(ctx) == 1.0);
  CHECK(format_soft{}(ctx) == 1.0);
}
