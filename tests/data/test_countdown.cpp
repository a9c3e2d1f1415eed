// Countdown: recorded problems for a seed, every generated problem solvable
// (checked by the verifier and by an independent brute-force solver), the
// verifier's reasons, and the held-out split.
#include "lmrl/data/countdown.hpp"

#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl::data;

namespace {

// Independent solver for the test: every way of combining two of the values
// with + - * / (both orders) until one value is left, over fractions of long long.
struct frac {
  long long n, d;
};

bool reachable(std::vector<frac> values, long long target, bool exactly_once) {
  for (const frac& v : values)
    if (!exactly_once && v.n == target * v.d) return true;
  if (values.size() == 1) return values[0].n == target * values[0].d;
  for (std::size_t i = 0; i < values.size(); ++i)
    for (std::size_t j = 0; j < values.size(); ++j) {
      if (i == j) continue;
      const frac a = values[i], b = values[j];
      std::vector<frac> rest;
      for (std::size_t k = 0; k < values.size(); ++k)
        if (k != i && k != j) rest.push_back(values[k]);
      std::vector<frac> results{{a.n * b.d + b.n * a.d, a.d * b.d}, {a.n * b.d - b.n * a.d, a.d * b.d},
                                {a.n * b.n, a.d * b.d}};
      if (b.n != 0) results.push_back({a.n * b.d, a.d * b.n});
      for (frac r : results) {
        if (r.d < 0) r.n = -r.n, r.d = -r.d;
        const long long g = std::gcd(r.n < 0 ? -r.n : r.n, r.d);
        r.n /= g, r.d /= g;
        rest.push_back(r);
        if (reachable(rest, target, exactly_once)) return true;
        rest.pop_back();
      }
    }
  return false;
}

bool reachable(const std::vector<std::int64_t>& numbers, long long target, bool exactly_once) {
  std::vector<frac> values;
  for (const auto n : numbers) values.push_back({n, 1});
  return reachable(values, target, exactly_once);
}

}  // namespace

TEST_CASE("a seed names the same problems: recorded output") {
  countdown_generator g({}, 42);
  const auto p = g.take(3);
  CHECK(p[0].numbers == std::vector<std::int64_t>{95, 29, 16, 9});
  CHECK(p[0].target == 91);
  CHECK(p[0].solution == "9 + (95 + 16 - 29)");  // 95 + 16 = 111, 111 - 29 = 82, 9 + 82 = 91
  CHECK(p[0].key == "countdown [9, 16, 29, 95] -> 91");
  CHECK(p[1].numbers == std::vector<std::int64_t>{12, 84, 82, 54});
  CHECK(p[1].target == 208);  // 82 + (54 - 12) + 84 = 82 + 42 + 84
  CHECK(p[2].numbers == std::vector<std::int64_t>{83, 96, 90});
  CHECK(p[2].target == 269);
  CHECK(p[2].prompt ==
        "Using the numbers [83, 96, 90], create an equation that equals 269. You can use basic arithmetic "
        "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. "
        "And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.");
  countdown_generator again({}, 42);
  const auto q = again.take(3);
  for (std::size_t k = 0; k < 3; ++k) CHECK(q[k].prompt == p[k].prompt);
}

TEST_CASE("every generated problem is solvable, within the ranges asked for") {
  countdown_generator g({}, 7);
  int checked = 0, solver_checked = 0;
  std::set<std::size_t> sizes;
  std::set<char> ops_seen;
  for (int k = 0; k < 1500; ++k) {
    const auto p = g.next();
    INFO(p.key, " solution ", p.solution);
    const auto verdict = verify_countdown(p, p.solution);
    CHECK(verdict.correct());
    CHECK(verdict.reward() == 1.0);
    CHECK(p.target >= 1);
    CHECK(p.target <= 1000);
    sizes.insert(p.numbers.size());
    for (const auto n : p.numbers) CHECK((n >= 1 && n <= 100));
    // integer_intermediates: every step of the generated solution is an integer.
    const evaluation ev = evaluate(parse_expression(p.solution).expr);
    for (const auto& s : ev.steps) CHECK(s.result.is_integer());
    for (const char c : p.solution)
      if (c == '+' || c == '-' || c == '*' || c == '/') ops_seen.insert(c);
    if (k % 5 == 0) {  // the independent solver agrees (it is slower)
      CHECK(reachable(p.numbers, p.target, true));
      ++solver_checked;
    }
    ++checked;
  }
  CHECK(checked == 1500);
  CHECK(solver_checked == 300);
  CHECK(sizes == std::set<std::size_t>{3, 4});
  CHECK(ops_seen == std::set<char>{'+', '-', '*', '/'});
}

TEST_CASE("at-most-once problems: the solution may leave numbers out") {
  countdown_options o;
  o.use_each_exactly_once = false;
  o.min_numbers = o.max_numbers = 4;
  countdown_generator g(o, 3);
  int partial = 0;
  for (int k = 0; k < 500; ++k) {
    const auto p = g.next();
    CHECK_FALSE(p.use_each_exactly_once);
    CHECK(verify_countdown(p, p.solution).correct());
    CHECK(reachable(p.numbers, p.target, false));
    partial += number_literals(parse_expression(p.solution).expr).size() < 4;
  }
  CHECK(partial > 100);
}

TEST_CASE("the verifier's verdicts and reasons") {
  const std::vector<std::int64_t> nums{3, 5, 7};
  auto verdict = [&](std::string_view eq, bool exactly = true) {
    return verify_countdown(nums, 22, eq, {exactly, {}});
  };
  CHECK(verdict("3 * 5 + 7").correct());  // 15 + 7 = 22
  CHECK(verdict("(7 + 3 * 5)").correct());
  CHECK(verdict("3 * 5 + 7").value == integer(22));

  auto v = verdict("3 * 5 + 7 = 22");
  CHECK(v.reason == countdown_reason::malformed);
  CHECK(v.detail.find("unexpected '='") != std::string::npos);
  CHECK(verdict("").reason == countdown_reason::malformed);
  CHECK(verdict("-3 + 5 * 7").reason == countdown_reason::malformed);  // unary minus is not a Countdown operation
  CHECK(verdict("3 ** 5").reason == countdown_reason::malformed);
  CHECK(verdict("__import__('os')").reason == countdown_reason::malformed);

  v = verdict("3 * 5 + 7 + 3");
  CHECK(v.reason == countdown_reason::uses_number_twice);
  CHECK(v.detail == "uses 3 2 times but it is given 1 time");
  CHECK(v.reward() == 0.0);

  v = verdict("3 * 5 + 8");
  CHECK(v.reason == countdown_reason::number_not_given);
  CHECK(v.detail == "uses 8, which is not among the numbers [3, 5, 7]");

  v = verdict("3 * 5");
  CHECK(v.reason == countdown_reason::unused_number);
  CHECK(v.detail == "does not use 7 (each number must be used exactly once)");
  v = verdict("3 * 5", false);  // at most once: 15 is simply the wrong value
  CHECK(v.reason == countdown_reason::wrong_value);
  CHECK(v.detail == "evaluates to 15, not the target 22");
  CHECK(v.value == integer(15));

  CHECK(verdict("3 + 5 + 7").reason == countdown_reason::wrong_value);  // 15

  // Division by zero with the right numbers: 5 / (3 - 3), numbers {3, 3, 5}.
  v = verify_countdown(std::vector<std::int64_t>{3, 3, 5}, 1, "5 / (3 - 3)");
  CHECK(v.reason == countdown_reason::divides_by_zero);
  CHECK(v.detail == "division by zero: 5 / 0");
  // A repeated given number may be used as often as it is given: 5 * 5 - 2 = 23.
  CHECK(verify_countdown(std::vector<std::int64_t>{5, 5, 2}, 23, "5 * 5 - 2").correct());
  // Exact rationals: 7 / 3 * 3 + 1 is exactly 8.
  CHECK(verify_countdown(std::vector<std::int64_t>{7, 3, 3, 1}, 8, "7 / 3 * 3 + 1").correct());
  // A fraction never equals an integer target: 7 / 2 = 7/2, target 3.
  v = verify_countdown(std::vector<std::int64_t>{7, 2}, 3, "7 / 2");
  CHECK(v.reason == countdown_reason::wrong_value);
  CHECK(v.detail == "evaluates to 7/2, not the target 3");
  // Overflow: 99999^4 is about 1e20 > 9.2e18.
  v = verify_countdown(std::vector<std::int64_t>{99999, 99999, 99999, 99999}, 1, "99999 * 99999 * 99999 * 99999");
  CHECK(v.reason == countdown_reason::overflow);

  CHECK(std::string(reason_name(countdown_reason::uses_number_twice)) == "uses_number_twice");
  CHECK(std::string(reason_name(countdown_reason::divides_by_zero)) == "divides_by_zero");
}

TEST_CASE("train and test problems never overlap") {
  // Small numbers and 3 per problem: many repeats within each split, none across.
  countdown_options o;
  o.min_numbers = o.max_numbers = 3;
  o.min_number = 1;
  o.max_number = 6;
  o.max_target = 50;
  countdown_generator train(o, 1, split::train), test(o, 2, split::test);
  std::set<std::string> train_keys, test_keys;
  for (int k = 0; k < 3000; ++k) train_keys.insert(train.next().key);
  for (int k = 0; k < 3000; ++k) test_keys.insert(test.next().key);
  int shared = 0;
  for (const auto& key : test_keys) shared += train_keys.count(key) > 0;
  CHECK(shared == 0);
  CHECK(test_keys.size() > 20);
  CHECK(train_keys.size() > 5 * test_keys.size());  // test_fraction 0.1
  // Reordered numbers are the same problem: the key sorts them.
  CHECK(countdown_problem::key_text({5, 1, 3}, 9) == countdown_problem::key_text({3, 5, 1}, 9));
}

TEST_CASE("bad options are errors naming the option") {
  countdown_options o;
  o.operators = "+^";
  CHECK_THROWS_WITH_AS(countdown_generator(o, 1), doctest::Contains("operator '^' in \"+^\""), lmrl::error);
  o = {};
  o.min_numbers = 1;
  CHECK_THROWS_WITH_AS(countdown_generator(o, 1), doctest::Contains("numbers count range [1, 4]"), lmrl::error);
  o = {};
  o.min_target = 10;
  o.max_target = 5;
  CHECK_THROWS_WITH_AS(countdown_generator(o, 1), doctest::Contains("target range [10, 5] is empty"), lmrl::error);
  o = {};
  o.prompt_template = "Reach {target}.";
  CHECK_THROWS_WITH_AS(countdown_generator(o, 1), doctest::Contains("has no {numbers} placeholder"), lmrl::error);
  o = {};
  o.min_target = o.max_target = 1000000;  // unreachable from numbers <= 100 with '+' only
  o.operators = "+";
  o.max_attempts = 100;
  CHECK_THROWS_WITH_AS(countdown_generator(o, 1).next(), doctest::Contains("no solvable problem"), lmrl::error);
}
