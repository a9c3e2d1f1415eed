// weighted_sum: per-component values into caller storage, TRL's nansum total,
// backends bit-identical, bad input.
#include "lmrl/reward/weighted_sum.hpp"

#include <Eigen/Core>
#include <cmath>
#include <string>
#include <vector>
#include <xtensor/xtensor.hpp>

#include "lmrl/reward.hpp"
#include "lmrl/tensor/eigen.hpp"
#include "lmrl/tensor/xtensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {
// A user's lambda is a rule: NaN when the completion is empty ("missing").
const auto length_bonus = [](const reward_context& ctx) {
  return ctx.completion.empty() ? std::nan("") : 0.01 * static_cast<double>(ctx.completion.size());
};
const auto always_nan = [](const reward_context&) { return std::nan(""); };

struct batch_fixture {
  std::vector<std::string> gold{"42"};
  std::vector<std::string> texts{"<think>\nsix times seven\n</think>\n<answer>\n42\n</answer>",
                                 "<think>guess</think><answer>41</answer>", "", "\\boxed{42}"};
  std::vector<reward_context> batch;
  batch_fixture() {
    for (const auto& t : texts) {
      reward_context ctx;
      ctx.prompt = "What is six times seven?";
      ctx.completion = t;
      ctx.gold_answers = gold;
      ctx.completion_tokens = static_cast<std::int64_t>(t.size());
      batch.push_back(ctx);
    }
  }
};
}  // namespace

static_assert(RewardRule<decltype(length_bonus)>);
static_assert(RewardRule<weighted_sum<accuracy, format_strict>>);  // a sum is itself a rule

TEST_CASE("weighted_sum: components and the weighted total, by hand") {
  batch_fixture f;
  const weighted_sum sum({1.0, 0.5, 2.0}, accuracy{}, format_strict{}, length_bonus);
  dense<double, 2> c({4, 3});
  dense<double, 1> t({4});
  sum.evaluate(f.batch, c.view(), t.view());
  // Row 0: correct (1), strict format (1), 54 bytes -> 0.54: 1*1 + 0.5*1 + 2*0.54 = 2.58.
  REQUIRE(f.texts[0].size() == 54);
  CHECK(c(0, 0) == 1.0);
  CHECK(c(0, 1) == 1.0);
  CHECK(c(0, 2) == 0.01 * 54);
  CHECK(t(0) == 1.0 + 0.5 + 2.0 * (0.01 * 54));
  CHECK(t(0) == doctest::Approx(2.58));
  // Row 1: wrong (0), soft-only format (0), 39 bytes -> 0.39: 2 * 0.39 = 0.78.
  REQUIRE(f.texts[1].size() == 39);
  CHECK(c(1, 0) == 0.0);
  CHECK(t(1) == 2.0 * (0.01 * 39));
  // Row 2: empty completion: accuracy 0 (no answer), format 0, length NaN -> nansum 0.
  CHECK(std::isnan(c(2, 2)));
  CHECK(t(2) == 0.0);
  // Row 3: correct, no format, 10 bytes -> 1 + 2 * 0.1 = 1.2.
  CHECK(t(3) == 1.0 + 2.0 * (0.01 * 10));
  CHECK(sum(f.batch[0]) == t(0));  // the single-completion call agrees
}

TEST_CASE("weighted_sum: all components NaN gives NaN (TRL's unscorable completion)") {
  batch_fixture f;
  const weighted_sum sum(always_nan, length_bonus);
  CHECK(sum.weights() == std::array<double, 2>{1.0, 1.0});
  CHECK(std::isnan(sum(f.batch[2])));       // both NaN
  CHECK(sum(f.batch[3]) == 0.01 * 10);      // one NaN skipped
  std::vector<reward_context> none;
  dense<double, 2> c({0, 2});
  dense<double, 1> t({0});
  sum.evaluate(none, c.view(), t.view());   // an empty batch is fine
}

TEST_CASE("weighted_sum: Eigen and xtensor outputs are bit-identical, float and double") {
  batch_fixture f;
  const weighted_sum sum({0.3, 0.7, 1.1, 0.9}, accuracy{}, tag_count{}, language_consistency{}, length_bonus);
  dense<double, 2> c({4, 4});
  dense<double, 1> t({4});
  sum.evaluate(f.batch, c.view(), t.view());
  Eigen::MatrixXd ec(4, 4);
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> er(4, 4);
  Eigen::VectorXd et(4);
  sum.evaluate(f.batch, ec, et);
  Eigen::VectorXd et2(4);
  sum.evaluate(f.batch, er, et2);
  xt::xtensor<double, 2> xc = xt::zeros<double>({4, 4});
  xt::xtensor<double, 1> xtot = xt::zeros<double>({4});
  sum.evaluate(f.batch, xc, xtot);
  xt::xtensor<float, 2> fc = xt::zeros<float>({4, 4});
  xt::xtensor<float, 1> ft = xt::zeros<float>({4});
  sum.evaluate(f.batch, fc, ft);
  Eigen::MatrixXf efc(4, 4);
  Eigen::VectorXf eft(4);
  sum.evaluate(f.batch, efc, eft);
  auto same = [](double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; };
  for (int i = 0; i < 4; ++i) {
    CHECK(same(t(i), et(i)));
    CHECK(same(t(i), et2(i)));
    CHECK(same(t(i), xtot(i)));
    CHECK(same(ft(i), eft(i)));
    CHECK(same(static_cast<float>(t(i)), ft(i)));
    for (int k = 0; k < 4; ++k) {
      CHECK(same(c(i, k), ec(i, k)));
      CHECK(same(c(i, k), er(i, k)));
      CHECK(same(c(i, k), xc(i, k)));
      CHECK(same(fc(i, k), efc(i, k)));
    }
  }
  // Permuting the batch permutes the rows.
  std::vector<reward_context> reversed(f.batch.rbegin(), f.batch.rend());
  dense<double, 2> rc({4, 4});
  dense<double, 1> rt({4});
  sum.evaluate(reversed, rc.view(), rt.view());
  for (int i = 0; i < 4; ++i) CHECK(same(rt(i), t(3 - i)));
}

TEST_CASE("weighted_sum: bad input is an lmrl::error naming the argument") {
  batch_fixture f;
  const weighted_sum sum(accuracy{}, format_soft{});
  dense<double, 2> c({3, 2});
  dense<double, 1> t({4});
  CHECK_THROWS_WITH_AS(sum.evaluate(f.batch, c.view(), t.view()), doctest::Contains("components has shape [3 x 2]"),
                       error);
  dense<double, 2> c2({4, 2});
  dense<double, 1> t2({3});
  CHECK_THROWS_WITH_AS(sum.evaluate(f.batch, c2.view(), t2.view()), doctest::Contains("totals has shape [3]"), error);
  CHECK_THROWS_WITH_AS(weighted_sum({INFINITY}, accuracy{}), doctest::Contains("weights[0] = inf"), error);
  const auto infinite = [](const reward_context&) { return INFINITY; };
  const weighted_sum bad(accuracy{}, infinite);
  dense<double, 1> t4({4});
  dense<double, 2> c4({4, 2});
  CHECK_THROWS_WITH_AS(bad.evaluate(f.batch, c4.view(), t4.view()),
                       doctest::Contains("rule 1 returned inf (infinite) for completion 0"), error);
}
