// Length shaping: DAPO soft overlong punishment, cosine length reward,
// n-gram repetition penalty. Expected values computed by hand in comments.
#include "lmrl/reward/length.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl;

static_assert(RewardRule<soft_overlong> && RewardRule<cosine_length> && RewardRule<repetition_penalty>);

TEST_CASE("soft_overlong_punishment: 0, linear inside the cache, -1 beyond (TRL's example)") {
  // L_max = 100, L_cache = 20: free up to 80; 90 -> (80 - 90) / 20 = -0.5; 100 -> -1; 101 -> -1.
  CHECK(soft_overlong_punishment(50, 100, 20) == 0.0);
  CHECK(soft_overlong_punishment(80, 100, 20) == 0.0);
  CHECK(soft_overlong_punishment(81, 100, 20) == -0.05);
  CHECK(soft_overlong_punishment(90, 100, 20) == -0.5);
  CHECK(soft_overlong_punishment(100, 100, 20) == -1.0);
  CHECK(soft_overlong_punishment(101, 100, 20) == -1.0);
  CHECK(soft_overlong_punishment(100, 100, 0) == 0.0);  // no cache: a hard limit
  CHECK(soft_overlong_punishment(101, 100, 0) == -1.0);
  CHECK_THROWS_WITH_AS(soft_overlong_punishment(1, 100, 101), doctest::Contains("soft_punish_cache = 101"), error);
  CHECK_THROWS_WITH_AS(soft_overlong_punishment(1, 0, 0), doctest::Contains("max_completion_length = 0"), error);
  CHECK_THROWS_WITH_AS(soft_overlong_punishment(-1, 10, 2), doctest::Contains("length = -1"), error);
  reward_context ctx;
  CHECK(std::isnan(soft_overlong{100, 20}(ctx)));  // token count unknown
  ctx.completion_tokens = 90;
  CHECK(soft_overlong{100, 20}(ctx) == -0.5);
  CHECK(std::string(soft_overlong{100, 20}.evaluate(ctx).reason) == "inside the soft cache");
}

TEST_CASE("cosine_scaled_reward: TRL's example and the clamp") {
  // |y| = 50, L = 100: cos(pi/2) = 0 -> midpoint. Correct: 0.5 + 0.5*0.5*1 = 0.75; wrong: -0.5 + 0.5*(-0.5)*1 = -0.75.
  CHECK(cosine_scaled_reward(50, true, {100}) == doctest::Approx(0.75).epsilon(1e-15));
  CHECK(cosine_scaled_reward(50, false, {100}) == doctest::Approx(-0.75).epsilon(1e-15));
  CHECK(cosine_scaled_reward(0, true, {100}) == 1.0);     // cos 0 = 1: max_value_correct
  CHECK(cosine_scaled_reward(0, false, {100}) == -1.0);   // shortest wrong is penalized most: min_value_wrong
  CHECK(cosine_scaled_reward(100, true, {100}) == doctest::Approx(0.5));
  CHECK(cosine_scaled_reward(100, false, {100}) == doctest::Approx(-0.5));
  CHECK(cosine_scaled_reward(200, true, {100}) == doctest::Approx(0.5));  // clamped at progress 1
  cosine_length_options unclamped{100};
  unclamped.clamp = false;  // open-r1: progress 2, cos(2 pi) = 1 -> back to 1.0
  CHECK(cosine_scaled_reward(200, true, unclamped) == doctest::Approx(1.0));
  CHECK_THROWS_AS(cosine_scaled_reward(1, true, {0}), error);
}

TEST_CASE("cosine_length rule uses accuracy and the token count") {
  const std::vector<std::string> gold{"\\frac{1}{3}"};
  reward_context ctx;
  ctx.gold_answers = gold;
  ctx.completion = "\\boxed{\\frac{1}{3}}";
  ctx.completion_tokens = 50;
  const cosine_length rule{{100}};
  CHECK(rule(ctx) == doctest::Approx(0.75));
  ctx.completion = "\\boxed{\\frac{1}{2}}";
  CHECK(rule(ctx) == doctest::Approx(-0.75));
  ctx.gold_answers = {};
  CHECK(std::isnan(rule(ctx)));  // no gold: abstain, as TRL
  cosine_length chars{{100}};
  chars.unit = length_unit::characters;
  ctx.gold_answers = gold;
  ctx.completion_tokens = -1;
  CHECK(std::isnan(rule(ctx)));
  REQUIRE(ctx.completion.size() == 19);  // \boxed{ (7) \frac (5) {1} (3) {2} (3) } (1)
  CHECK(chars(ctx) == cosine_scaled_reward(19, false, {100}));
}

TEST_CASE("repetition penalty: TRL's token example and open-r1's words") {
  // ids [1,2,3,4], n = 2: 3 bigrams all unique -> 0. [5,5,5,5,5]: 4 bigrams, 1 unique -> (1 - 1/4) * -1 = -0.75.
  CHECK(repetition_penalty_of(std::vector<int>{1, 2, 3, 4}, 2, -1.0) == 0.0);
  CHECK(repetition_penalty_of(std::vector<int>{5, 5, 5, 5, 5}, 2, -1.0) == -0.75);
  CHECK(repetition_penalty_of(std::vector<int>{1}, 2, -1.0) == 0.0);  // fewer items than n
  const std::vector<std::int64_t> ids{5, 5, 5, 5, 5};
  reward_context ctx;
  ctx.completion_ids = ids;
  CHECK(repetition_penalty{2, -1.0, length_unit::tokens}(ctx) == -0.75);
  // Words, lowercased: "a b a B a b" -> trigrams (a b a) (b a b) (a b a) (b a b): 2 unique of 4,
  // (1 - 2/4) * -0.5 = -0.25.
  ctx.completion = "a b a B a b";
  CHECK(repetition_penalty{3, -0.5}(ctx) == -0.25);
  ctx.completion = "all words differ here";
  CHECK(repetition_penalty{}(ctx) == 0.0);
  ctx.completion = "";
  CHECK(repetition_penalty{}(ctx) == 0.0);
  CHECK_THROWS_WITH_AS(repetition_penalty_of(std::vector<int>{1}, 2, 0.5), doctest::Contains("should not be positive"),
                       error);
  CHECK_THROWS_AS(repetition_penalty_of(std::vector<int>{1}, 0, -1.0), error);
  CHECK(lowercase_words("  Hello\tWORLD \n x ") == std::vector<std::string>{"hello", "world", "x"});
}
