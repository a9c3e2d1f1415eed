// The accuracy rule: extraction + math_equal, gold lists, missing gold.
#include "lmrl/reward/accuracy.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl;

static_assert(ExplainingRewardRule<accuracy>);

TEST_CASE("accuracy: 1 when the extracted answer matches any gold answer") {
  const std::vector<std::string> gold{"\\frac{1}{3}"};
  reward_context ctx;
  ctx.gold_answers = gold;
  ctx.completion = "My answer is \\boxed{\\frac{1}{3}}";  // TRL's accuracy_reward example
  CHECK(accuracy{}(ctx) == 1.0);
  ctx.completion = "My answer is \\boxed{\\frac{1}{2}}";
  CHECK(accuracy{}(ctx) == 0.0);
  CHECK(std::string(accuracy{}.evaluate(ctx).reason) == "wrong answer");
  ctx.completion = "<think>0.5?</think><answer>0.333333</answer>";
  CHECK(accuracy{}(ctx) == 1.0);
  ctx.completion = "I don't know";
  CHECK(accuracy{}(ctx) == 0.0);
  CHECK(std::string(accuracy{}.evaluate(ctx).reason) == "no answer extracted");
  ctx.completion = "<answer></answer>";  // an empty answer is wrong, not missing
  CHECK(accuracy{}(ctx) == 0.0);
  CHECK(std::string(accuracy{}.evaluate(ctx).reason) == "wrong answer");
  const std::vector<std::string> golds{"12", "twelve"};
  ctx.gold_answers = golds;
  ctx.completion = "<answer>twelve</answer>";
  CHECK(accuracy{}(ctx) == 1.0);
  ctx.completion = "#### 1,2";  // gsm8k line "12" after comma removal
  CHECK(accuracy{}(ctx) == 1.0);
}

TEST_CASE("accuracy: no gold gives NaN, exact matching and sources are options") {
  reward_context ctx;
  ctx.completion = "\\boxed{3}";
  CHECK(std::isnan(accuracy{}(ctx)));
  const std::vector<std::string> gold{"3"};
  ctx.gold_answers = gold;
  accuracy exact;
  exact.match = answer_match::exact;
  ctx.completion = "\\boxed{3.0}";
  CHECK(accuracy{}(ctx) == 1.0);
  CHECK(exact(ctx) == 0.0);
  accuracy last;
  last.source = answer_source::last_number;
  ctx.completion = "so it is 3.";
  CHECK(accuracy{}(ctx) == 0.0);
  CHECK(last(ctx) == 1.0);
  ctx.completion = "\xFF\xFE garbage \\boxed{";  // malformed: no answer, no crash
  CHECK(accuracy{}(ctx) == 0.0);
}
