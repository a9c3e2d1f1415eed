// The safe expression parser, the exact evaluator, the renderer and the
// worked steps.
#include "lmrl/data/expression.hpp"

#include <string>
#include <vector>

#include "lmrl/data/random.hpp"
#include "support/testing.hpp"

using namespace lmrl::data;

namespace {

expression parsed(std::string_view text, const parse_options& o = {}) {
  parse_result r = parse_expression(text, o);
  INFO("text: ", text, " error: ", r.error);
  REQUIRE(r.ok);
  return r.expr;
}

rational value_of(std::string_view text, const parse_options& o = {}) {
  const evaluation ev = evaluate(parsed(text, o));
  INFO("text: ", text, " error: ", ev.message);
  REQUIRE(ev.ok());
  return ev.value;
}

std::string parse_error(std::string_view text, const parse_options& o = {}) {
  const parse_result r = parse_expression(text, o);
  CHECK_FALSE(r.ok);
  return r.error;
}

}  // namespace

TEST_CASE("precedence, left associativity and parentheses") {
  CHECK(value_of("2 + 3 * 4") == integer(14));     // 3 * 4 = 12 first
  CHECK(value_of("(2 + 3) * 4") == integer(20));
  CHECK(value_of("8 - 3 - 2") == integer(3));      // (8 - 3) - 2, not 8 - 1
  CHECK(value_of("8 - (3 - 2)") == integer(7));
  CHECK(value_of("8 / 4 / 2") == integer(1));      // (8 / 4) / 2
  CHECK(value_of("7 / 2") == rational{7, 2});
  CHECK(value_of("7 / 2 * 2") == integer(7));      // exact: no rounding on the way
  CHECK(value_of("  12\t+\n7 ") == integer(19));
  CHECK(value_of("2x3") == integer(6));
  CHECK(value_of("2 \xC3\x97 3 \xC3\xB7 4") == rational{3, 2});  // U+00D7, U+00F7
  CHECK(value_of("007 + 1") == integer(8));        // leading zeros read as the integer
  CHECK(value_of("((((5))))") == integer(5));
}

TEST_CASE("worked steps list each operation in evaluation order") {
  // The task's example: a sum of three 2-digit numbers.
  CHECK(worked_steps(evaluate(parsed("23 + 45 + 17"))) == "23 + 45 = 68, 68 + 17 = 85");
  // Left operand first: 12 + 7 = 19, 3 - 1 = 2, 19 * 2 = 38.
  CHECK(worked_steps(evaluate(parsed("(12 + 7) * (3 - 1)"))) == "12 + 7 = 19, 3 - 1 = 2, 19 * 2 = 38");
  // Products before sums: 45 * 2 = 90, then 23 + 90 = 113.
  CHECK(worked_steps(evaluate(parsed("23 + 45 * 2"))) == "45 * 2 = 90, 23 + 90 = 113");
  // Fractions and negatives: 3 - 10 = -7, -7 / 2 = -7/2.
  step_format f;
  f.times = "x";
  f.separator = "\n";
  CHECK(worked_steps(evaluate(parsed("(3 - 10) / 2")), f) == "3 - 10 = -7\n-7 / 2 = -7/2");
  CHECK(worked_steps(evaluate(parsed("4 * 5")), f) == "4 x 5 = 20");
  CHECK(worked_steps(evaluate(parsed("42"))).empty());
  const evaluation ev = evaluate(parsed("6 / 4"));
  REQUIRE(ev.steps.size() == 1);
  CHECK(ev.steps[0].result == rational{3, 2});
  CHECK(format_step(ev.steps[0]) == "6 / 4 = 3/2");
}

TEST_CASE("number literals come out in the order they are written") {
  CHECK(number_literals(parsed("(25 - 5) * 3 + 100 / 4")) == std::vector<std::int64_t>{25, 5, 3, 100, 4});
  CHECK(number_literals(parsed("7")) == std::vector<std::int64_t>{7});
}

TEST_CASE("malformed text is a parse error with the position, never a throw") {
  CHECK(parse_error("").find("expected a number or '(' but the text ended at character 0") != std::string::npos);
  CHECK(parse_error("2 +").find("text ended at character 3") != std::string::npos);
  CHECK(parse_error("2 3").find("unexpected '3' after a complete expression at character 2") != std::string::npos);
  CHECK(parse_error("(2 + 3").find("expected ')' at character 6") != std::string::npos);
  CHECK(parse_error("2 + 3)").find("unexpected ')'") != std::string::npos);
  CHECK(parse_error("abc").find("found 'a'") != std::string::npos);
  CHECK(parse_error("2.5 + 1").find("decimal point") != std::string::npos);
  CHECK(parse_error("1,000").find("decimal point or separator") != std::string::npos);
  CHECK(parse_error("2 ** 3").find("found '*'") != std::string::npos);
  CHECK(parse_error("-3 + 5").find("unary minus is not allowed at character 0") != std::string::npos);
  CHECK(parse_error("4 = 4").find("unexpected '='") != std::string::npos);
  CHECK(parse_error("1234567890123456789").find("longer than 18 digits") != std::string::npos);
  CHECK(parse_error(std::string(100, '(') + "1" + std::string(100, ')')).find("max_nesting 64") !=
        std::string::npos);
  parse_options strict;
  strict.accept_times_signs = false;
  CHECK(parse_error("2 x 3", strict).find("unexpected 'x'") != std::string::npos);
  parse_options shortest;
  shortest.max_length = 4;
  CHECK(parse_error("1 + 2", shortest).find("5 characters, more than max_length 4") != std::string::npos);
  const parse_result r = parse_expression("1 + )");
  CHECK(r.position == 4);
}

TEST_CASE("unary minus, when allowed") {
  parse_options o;
  o.allow_unary_minus = true;
  CHECK(value_of("-3 + 5", o) == integer(2));
  CHECK(value_of("-(2 + 3) * 2", o) == integer(-10));
  CHECK(value_of("4 - -1", o) == integer(5));
  CHECK(render(parsed("-(2 + 3)", o)) == "-(2 + 3)");
  CHECK(number_literals(parsed("-(2 + 3)", o)) == std::vector<std::int64_t>{2, 3});
}

TEST_CASE("division by zero and overflow are evaluation errors with a message") {
  const evaluation zero = evaluate(parsed("5 / (3 - 3)"));
  CHECK(zero.error == eval_error::divide_by_zero);
  CHECK(zero.message == "division by zero: 5 / 0");
  const evaluation big = evaluate(parsed("999999999999 * 999999999999"));
  CHECK(big.error == eval_error::overflow);
  CHECK(big.message.find("does not fit in 64 bits") != std::string::npos);
  CHECK_THROWS_WITH_AS(worked_steps(zero), doctest::Contains("worked_steps: the evaluation failed"), lmrl::error);
  CHECK_THROWS_WITH_AS(evaluate(expression{}), doctest::Contains("evaluate: the expression is empty"), lmrl::error);
}

TEST_CASE("render writes explicit parentheses and the ones the tree needs") {
  CHECK(render(parsed("(8 - 3) - 2")) == "(8 - 3) - 2");  // kept as written
  expression e = parsed("(8 - 3) - 2");
  drop_redundant_parentheses(e);
  CHECK(render(e) == "8 - 3 - 2");
  e = parsed("((2 + 3)) * (4 * 5)");
  drop_redundant_parentheses(e);
  CHECK(render(e) == "(2 + 3) * (4 * 5)");  // a right operand of equal precedence keeps its tree shape
  e = parsed("8 - (3 - 2)");
  drop_redundant_parentheses(e);
  CHECK(render(e) == "8 - (3 - 2)");
  CHECK(render(parsed("2*3+4"), {"x", ":", false}) == "2x3+4");
  CHECK(render(parsed("6 / 3"), {"x", "\xC3\xB7", true}) == "6 \xC3\xB7 3");
  CHECK(paren_depth(parsed("1 + 2")) == 0);
  CHECK(paren_depth(parsed("(1 + (2 - 3)) * 4")) == 2);
  CHECK(paren_depth(parsed("(7)")) == 1);
}

TEST_CASE("the builder checks its arguments") {
  expression e;
  const int a = e.add_number(2);
  CHECK_THROWS_WITH_AS(e.add_binary('^', a, a), doctest::Contains("operator '^' is not one of + - * /"), lmrl::error);
  CHECK_THROWS_WITH_AS(e.add_binary('+', a, 5), doctest::Contains("child index 5 is not a node"), lmrl::error);
  CHECK_THROWS_WITH_AS(e.add_number(-1), doctest::Contains("literal -1 is negative"), lmrl::error);
}

TEST_CASE("render then parse gives back the tree: same text, same value, same steps") {
  task_rng rng(3);
  for (int trial = 0; trial < 500; ++trial) {
    expression e;
    std::vector<int> pool;
    const int leaves = static_cast<int>(uniform_int(rng, 1, 7));
    for (int k = 0; k < leaves; ++k) pool.push_back(e.add_number(uniform_int(rng, 0, 30)));
    while (pool.size() > 1) {  // combine two random subtrees until one is left
      const auto i = uniform_below(rng, pool.size());
      const int left = pool[i];
      pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(i));
      const auto j = uniform_below(rng, pool.size());
      const int right = pool[j];
      pool[j] = e.add_binary("+-*/"[uniform_below(rng, 4)], left, right);
    }
    e.root = pool[0];
    const std::string text = render(e);
    const expression back = parsed(text);
    CHECK(render(back) == text);
    const evaluation a = evaluate(e), b = evaluate(back);
    CHECK(a.error == b.error);
    if (a.ok() && b.ok()) {
      CHECK(a.value == b.value);
      CHECK(worked_steps(a) == worked_steps(b));
    }
  }
}
