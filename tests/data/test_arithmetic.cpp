// Arithmetic problems: recorded output for a seed, answers recomputed by an
// independent evaluator, knobs respected, train and test never overlap.
#include "lmrl/data/arithmetic.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <vector>

#include "support/testing.hpp"

using namespace lmrl::data;

namespace {

// An independent evaluator for the test: shunting-yard over long long, with
// '*' and 'x' for times (not the library's recursive descent over rationals).
long long shunting_yard(const std::string& text) {
  std::vector<long long> values;
  std::vector<char> ops;
  auto prec = [](char op) { return op == '*' ? 2 : op == '(' ? 0 : 1; };
  auto reduce = [&] {
    const long long b = values.back();
    values.pop_back();
    const long long a = values.back();
    values.pop_back();
    const char op = ops.back();
    ops.pop_back();
    values.push_back(op == '+' ? a + b : op == '-' ? a - b : a * b);
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      long long v = 0;
      while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) v = v * 10 + (text[i++] - '0');
      --i;
      values.push_back(v);
    } else if (c == '(') {
      ops.push_back('(');
    } else if (c == ')') {
      while (ops.back() != '(') reduce();
      ops.pop_back();
    } else if (c == '+' || c == '-' || c == '*' || c == 'x') {
      const char op = c == 'x' ? '*' : c;
      while (!ops.empty() && ops.back() != '(' && prec(ops.back()) >= prec(op)) reduce();
      ops.push_back(op);
    }
  }
  while (!ops.empty()) reduce();
  return values.back();
}

std::vector<std::string> literals(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (const char c : text + " ") {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      cur += c;
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  return out;
}

int max_nesting(const std::string& text) {
  int depth = 0, deepest = 0;
  for (const char c : text) {
    depth += c == '(' ? 1 : c == ')' ? -1 : 0;
    deepest = depth > deepest ? depth : deepest;
  }
  return deepest;
}

}  // namespace

TEST_CASE("a seed names the same problems: recorded output") {
  arithmetic_generator g({}, 42);
  const auto p = g.take(5);
  // Recorded once; a change here means every seed's problems changed.
  CHECK(p[0].prompt == "What is 950 * 6?");
  CHECK(p[0].answer == "5700");
  CHECK(p[0].solution == "950 * 6 = 5700");
  CHECK(p[1].expression == "2 + 35");
  CHECK(p[2].expression == "925 - 49 - 9");
  CHECK(p[2].answer == "867");  // 925 - 49 = 876, 876 - 9 = 867
  CHECK(p[2].solution == "925 - 49 = 876, 876 - 9 = 867");
  CHECK(p[4].expression == "32 * (95 + 996)");
  CHECK(p[4].answer == "34912");  // 95 + 996 = 1091, 32 * 1091 = 34912
  CHECK(p[4].solution == "95 + 996 = 1091, 32 * 1091 = 34912");
  CHECK(p[4].key == "32 * (95 + 996)");

  arithmetic_generator again({}, 42), other({}, 43);
  const auto q = again.take(5), r = other.take(5);
  int same = 0;
  for (std::size_t k = 0; k < 5; ++k) {
    CHECK(q[k].prompt == p[k].prompt);
    CHECK(q[k].solution == p[k].solution);
    same += r[k].prompt == p[k].prompt;
  }
  CHECK(same < 5);
}

TEST_CASE("answers are right: recomputed by an independent evaluator") {
  arithmetic_options o;
  o.max_operands = 5;
  o.max_digits = 3;
  o.max_paren_depth = 2;
  o.paren_probability = 0.6;
  o.allow_negative = true;
  o.times_symbol = "x";
  arithmetic_generator g(o, 9);
  int with_parens = 0, negative = 0;
  for (int k = 0; k < 3000; ++k) {
    const auto p = g.next();
    INFO(p.expression);
    CHECK(std::to_string(shunting_yard(p.expression)) == p.answer);
    CHECK(p.prompt == "What is " + p.expression + "?");
    // The last worked step ends with the answer; one step per operator.
    CHECK(p.solution.ends_with("= " + p.answer));
    const auto operands = literals(p.expression).size();
    CHECK(static_cast<std::size_t>(std::count(p.solution.begin(), p.solution.end(), '=')) == operands - 1);
    CHECK(p.key.find('x') == std::string::npos);  // the key is canonical ('*'), whatever the display symbol
    with_parens += p.expression.find('(') != std::string::npos;
    negative += p.answer[0] == '-';
  }
  CHECK(with_parens > 300);
  CHECK(negative > 100);
}

TEST_CASE("knobs: digits, operand count, operators, parenthesis depth, sign") {
  arithmetic_options o;
  o.min_digits = 2;
  o.max_digits = 3;
  o.min_operands = 3;
  o.max_operands = 4;
  o.operators = "+-";
  o.max_paren_depth = 1;
  o.paren_probability = 1.0;
  arithmetic_generator g(o, 5);
  std::set<std::size_t> counts;
  for (int k = 0; k < 2000; ++k) {
    const auto p = g.next();
    INFO(p.expression);
    const auto nums = literals(p.expression);
    counts.insert(nums.size());
    for (const auto& n : nums) {
      CHECK(n.size() >= 2);
      CHECK(n.size() <= 3);
      CHECK(n[0] != '0');
    }
    CHECK(p.expression.find('*') == std::string::npos);
    CHECK(max_nesting(p.expression) <= 1);
    // allow_negative = false: no step result and no answer is negative.
    CHECK(p.solution.find("= -") == std::string::npos);
    CHECK(p.answer[0] != '-');
  }
  CHECK(counts == std::set<std::size_t>{3, 4});

  o.max_paren_depth = 0;
  arithmetic_generator flat(o, 5);
  for (int k = 0; k < 500; ++k) CHECK(flat.next().expression.find('(') == std::string::npos);

  arithmetic_options only_times;
  only_times.operators = "*";
  only_times.min_operands = only_times.max_operands = 2;
  only_times.min_digits = only_times.max_digits = 1;
  only_times.prompt_template = "Compute {expression}. Answer:";
  const auto p = arithmetic_generator(only_times, 1).next();
  CHECK(p.prompt == "Compute " + p.expression + ". Answer:");
  CHECK(p.expression.size() == 5);  // "d * d"
}

TEST_CASE("train and test problems never overlap") {
  // 1-digit operands, 2 operands, + - *: only 9 * 9 * 3 = 243 expressions, so
  // thousands of draws from each split cover nearly all of them.
  arithmetic_options o;
  o.min_digits = o.max_digits = 1;
  o.min_operands = o.max_operands = 2;
  o.allow_negative = true;
  split_options half{0.3, 11};
  arithmetic_generator train(o, 1, split::train, half), test(o, 2, split::test, half);
  std::set<std::string> train_keys, test_keys;
  for (int k = 0; k < 4000; ++k) train_keys.insert(train.next().key);
  for (int k = 0; k < 4000; ++k) test_keys.insert(test.next().key);
  int shared = 0;
  for (const auto& key : test_keys) shared += train_keys.count(key) > 0;
  CHECK(shared == 0);
  CHECK(train_keys.size() + test_keys.size() == 243);  // together they cover every expression
  CHECK(test_keys.size() > 40);                         // about 0.3 * 243 = 73
  CHECK(test_keys.size() < 110);
  for (const auto& key : test_keys) CHECK(split_of(key, half) == split::test);
}

TEST_CASE("bad options are errors naming the option") {
  arithmetic_options o;
  o.operators = "+/";
  CHECK_THROWS_WITH_AS(arithmetic_generator(o, 1), doctest::Contains("operator '/' in \"+/\" is not one of + - *"),
                       lmrl::error);
  o = {};
  o.max_digits = 7;
  o.max_operands = 3;
  CHECK_THROWS_WITH_AS(arithmetic_generator(o, 1), doctest::Contains("max_digits * max_operands = 21"), lmrl::error);
  o = {};
  o.min_operands = 1;
  CHECK_THROWS_WITH_AS(arithmetic_generator(o, 1), doctest::Contains("operands range [1, 3]"), lmrl::error);
  o = {};
  o.min_digits = 4;
  CHECK_THROWS_WITH_AS(arithmetic_generator(o, 1), doctest::Contains("digits range [4, 3]"), lmrl::error);
  o = {};
  o.prompt_template = "What is it?";
  CHECK_THROWS_WITH_AS(arithmetic_generator(o, 1), doctest::Contains("has no {expression} placeholder"), lmrl::error);
  o = {};
  CHECK_THROWS_WITH_AS(arithmetic_generator(o, 1, split::test, {1.5, 0}),
                       doctest::Contains("test_fraction = 1.5"), lmrl::error);
  // Constraints that cannot be met give up with a message, not an endless loop:
  // "a - b - c - ..." of twelve 1-digit operands, left to right, is at most 9 - 11 * 1 < 0.
  o = {};
  o.operators = "-";
  o.min_digits = o.max_digits = 1;
  o.min_operands = o.max_operands = 12;
  o.max_paren_depth = 0;
  o.max_attempts = 200;
  CHECK_THROWS_WITH_AS(arithmetic_generator(o, 1).next(), doctest::Contains("no problem met the constraints"),
                       lmrl::error);
}
