// Countdown: reach a target from given numbers with + - * / and parentheses,
// using each number at most once (or exactly once, as TinyZero does).
//
// The generator draws the numbers, combines them with a random expression and
// takes its value as the target, so every problem is solvable and carries one
// solution. The verifier parses a proposed equation with the safe parser of
// expression.hpp over exact rationals (no eval, no floating point), checks the
// numbers it uses against the given multiset, and says why it rejects.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lmrl/data/expression.hpp"
#include "lmrl/data/placeholders.hpp"
#include "lmrl/data/random.hpp"
#include "lmrl/data/split.hpp"
#include "lmrl/error.hpp"

namespace lmrl::data {

// Defaults follow TinyZero (examples/data_preprocess/countdown.py and the
// Countdown-Tasks-3to4 data it trains on): 3 to 4 numbers in [1, 100], each used
// exactly once, targets up to 1000, its prompt text.
struct countdown_options {
  int min_numbers = 3;
  int max_numbers = 4;
  std::int64_t min_number = 1;
  std::int64_t max_number = 100;
  std::int64_t min_target = 1;
  std::int64_t max_target = 1000;
  bool use_each_exactly_once = true;  // false: a solution may leave numbers unused
  std::string operators = "+-*/";     // operators the generated solution may use
  bool integer_intermediates = true;  // the generated solution divides only exactly
  std::string prompt_template =
      "Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
      "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. "
      "And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>.";
  int max_attempts = 100000;
};

struct countdown_problem {
  std::vector<std::int64_t> numbers;  // in the order shown
  std::int64_t target = 0;
  bool use_each_exactly_once = true;
  std::string prompt;
  std::string solution;  // one equation that reaches the target, e.g. "(55 - 36) * 7 - 19"
  std::string key;       // sorted numbers and target: decides the split

  // "[19, 36, 55, 7]", as Python prints a list (the TinyZero prompt shows it so).
  static std::string list_text(std::span<const std::int64_t> numbers) {
    std::string s = "[";
    for (std::size_t k = 0; k < numbers.size(); ++k) s += (k ? ", " : "") + std::to_string(numbers[k]);
    return s + "]";
  }
  static std::string key_text(std::vector<std::int64_t> numbers, std::int64_t target) {
    std::sort(numbers.begin(), numbers.end());
    return "countdown " + list_text(numbers) + " -> " + std::to_string(target);
  }
};

// ---------------------------------------------------------------- verifier

enum class countdown_reason {
  correct,
  malformed,          // not an expression of integers, + - * / and parentheses
  divides_by_zero,
  overflow,           // an intermediate value does not fit in 64 bits
  uses_number_twice,  // a given number is used more times than it is given
  number_not_given,   // a number that is not among the given ones
  unused_number,      // a given number is left out (exactly-once rule only)
  wrong_value,
};

inline const char* reason_name(countdown_reason r) {
  switch (r) {
    case countdown_reason::correct: return "correct";
    case countdown_reason::malformed: return "malformed";
    case countdown_reason::divides_by_zero: return "divides_by_zero";
    case countdown_reason::overflow: return "overflow";
    case countdown_reason::uses_number_twice: return "uses_number_twice";
    case countdown_reason::number_not_given: return "number_not_given";
    case countdown_reason::unused_number: return "unused_number";
    case countdown_reason::wrong_value: return "wrong_value";
  }
  return "unknown";
}

struct countdown_verdict {
  countdown_reason reason = countdown_reason::malformed;
  std::string detail;  // human-readable, e.g. "uses 7 2 times but it is given 1 time"
  rational value;      // the equation's value, when it could be computed
  bool correct() const { return reason == countdown_reason::correct; }
  double reward() const { return correct() ? 1.0 : 0.0; }
};

struct countdown_rules {
  bool use_each_exactly_once = true;  // TinyZero: the sorted numbers used equal the sorted numbers given
  parse_options parse{};              // unary minus off: the game has only binary operations
};

// Checks, in this order: the text parses; every number used is given, and no
// more often than given; (exactly-once) every given number is used; the value
// can be computed (no division by zero, no overflow); it equals the target.
// Never throws for bad equations: every failure is a verdict with a reason.
inline countdown_verdict verify_countdown(std::span<const std::int64_t> numbers, std::int64_t target,
                                          std::string_view equation, const countdown_rules& rules = {}) {
  countdown_verdict v;
  const parse_result parsed = parse_expression(equation, rules.parse);
  if (!parsed.ok) {
    v.reason = countdown_reason::malformed;
    v.detail = parsed.error;
    return v;
  }
  std::vector<std::int64_t> given(numbers.begin(), numbers.end());
  std::vector<std::int64_t> used = number_literals(parsed.expr);
  std::sort(given.begin(), given.end());
  std::sort(used.begin(), used.end());
  auto count = [](const std::vector<std::int64_t>& xs, std::int64_t x) {
    return std::upper_bound(xs.begin(), xs.end(), x) - std::lower_bound(xs.begin(), xs.end(), x);
  };
  for (std::size_t k = 0; k < used.size(); ++k) {
    if (k > 0 && used[k] == used[k - 1]) continue;
    const auto have = count(given, used[k]), want = count(used, used[k]);
    if (have == 0) {
      v.reason = countdown_reason::number_not_given;
      v.detail = "uses " + std::to_string(used[k]) + ", which is not among the numbers " +
                 countdown_problem::list_text(numbers);
      return v;
    }
    if (want > have) {
      v.reason = countdown_reason::uses_number_twice;
      v.detail = "uses " + std::to_string(used[k]) + " " + std::to_string(want) + " times but it is given " +
                 std::to_string(have) + (have == 1 ? " time" : " times");
      return v;
    }
  }
  if (rules.use_each_exactly_once && used.size() != given.size()) {
    for (std::size_t k = 0; k < given.size(); ++k) {
      if (k > 0 && given[k] == given[k - 1]) continue;
      if (count(used, given[k]) < count(given, given[k])) {
        v.reason = countdown_reason::unused_number;
        v.detail = "does not use " + std::to_string(given[k]) + " (each number must be used exactly once)";
        return v;
      }
    }
  }
  const evaluation ev = evaluate(parsed.expr);
  if (!ev.ok()) {
    v.reason = ev.error == eval_error::divide_by_zero ? countdown_reason::divides_by_zero : countdown_reason::overflow;
    v.detail = ev.message;
    return v;
  }
  v.value = ev.value;
  if (!(ev.value == integer(target))) {
    v.reason = countdown_reason::wrong_value;
    v.detail = "evaluates to " + ev.value.to_string() + ", not the target " + std::to_string(target);
    return v;
  }
  v.reason = countdown_reason::correct;
  return v;
}

inline countdown_verdict verify_countdown(const countdown_problem& problem, std::string_view equation,
                                          parse_options parse = {}) {
  return verify_countdown(problem.numbers, problem.target, equation, {problem.use_each_exactly_once, parse});
}

// ---------------------------------------------------------------- generator

inline void check_countdown_options(const countdown_options& o) {
  const char* f = "countdown_generator";
  lmrl::detail::require(o.min_numbers >= 2 && o.min_numbers <= o.max_numbers && o.max_numbers <= 16, f,
                        ": numbers count range [", o.min_numbers, ", ", o.max_numbers,
                        "] must satisfy 2 <= min <= max <= 16");
  lmrl::detail::require(o.min_number >= 0 && o.min_number <= o.max_number && o.max_number <= 1000000000, f,
                        ": number range [", o.min_number, ", ", o.max_number,
                        "] must satisfy 0 <= min <= max <= 1e9");
  lmrl::detail::require(o.min_target <= o.max_target, f, ": target range [", o.min_target, ", ", o.max_target,
                        "] is empty");
  lmrl::detail::require(!o.operators.empty(), f, ": operators is empty");
  for (const char c : o.operators)
    lmrl::detail::require(c == '+' || c == '-' || c == '*' || c == '/', f, ": operator '", c, "' in \"",
                          o.operators, "\" is not one of + - * /");
  lmrl::detail::require(o.max_attempts >= 1, f, ": max_attempts = ", o.max_attempts, " must be positive");
  require_placeholders(o.prompt_template, {"numbers", "target"}, "countdown_generator: prompt_template");
}

// Draws solvable problems of one split; same options, seed and split give the
// same problems on every platform.
class countdown_generator {
 public:
  countdown_generator(countdown_options options, std::uint64_t seed, split which = split::train,
                      split_options split_opts = {})
      : options_(std::move(options)), rng_(seed), which_(which), split_(split_opts) {
    check_countdown_options(options_);
    check_split_options("countdown_generator", split_);
  }

  countdown_problem next() {
    for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
      const auto n = static_cast<std::size_t>(uniform_int(rng_, options_.min_numbers, options_.max_numbers));
      std::vector<std::int64_t> numbers(n);
      for (auto& x : numbers) x = uniform_int(rng_, options_.min_number, options_.max_number);
      // The solution uses all numbers (exactly once) or a random subset of at least two, in random order.
      std::vector<std::int64_t> order = numbers;
      for (std::size_t k = order.size(); k > 1; --k) std::swap(order[k - 1], order[uniform_below(rng_, k)]);
      if (!options_.use_each_exactly_once)
        order.resize(static_cast<std::size_t>(uniform_int(rng_, 2, static_cast<std::int64_t>(n))));
      expression e;
      e.root = random_tree(e, order, 0, order.size());
      const evaluation ev = evaluate(e);
      if (!ev.ok() || !ev.value.is_integer()) continue;
      if (ev.value.num < options_.min_target || ev.value.num > options_.max_target) continue;
      if (options_.integer_intermediates && !all_integer(ev)) continue;
      std::string key = countdown_problem::key_text(numbers, ev.value.num);
      if (split_of(key, split_) != which_) continue;
      countdown_problem p;
      p.target = ev.value.num;
      p.use_each_exactly_once = options_.use_each_exactly_once;
      p.prompt = fill_placeholders(options_.prompt_template,
                                   {{"numbers", countdown_problem::list_text(numbers)},
                                    {"target", std::to_string(p.target)}},
                                   "countdown_generator: prompt_template");
      p.numbers = std::move(numbers);
      p.solution = render(e);
      p.key = std::move(key);
      return p;
    }
    lmrl::detail::fail("countdown_generator: no solvable problem with a target in [", options_.min_target, ", ",
                       options_.max_target, "] in max_attempts = ", options_.max_attempts, " draws");
  }

  std::vector<countdown_problem> take(std::size_t count) {
    std::vector<countdown_problem> out;
    out.reserve(count);
    for (std::size_t k = 0; k < count; ++k) out.push_back(next());
    return out;
  }

  const countdown_options& options() const { return options_; }

 private:
  static bool all_integer(const evaluation& ev) {
    for (const auto& s : ev.steps)
      if (!s.result.is_integer()) return false;
    return true;
  }

  // A uniformly random split point at every level over order[lo, hi).
  int random_tree(expression& e, const std::vector<std::int64_t>& order, std::size_t lo, std::size_t hi) {
    if (hi - lo == 1) return e.add_number(order[lo]);
    const std::size_t mid = lo + 1 + uniform_below(rng_, hi - lo - 1);
    const int left = random_tree(e, order, lo, mid);
    const int right = random_tree(e, order, mid, hi);
    const char op = options_.operators[uniform_below(rng_, options_.operators.size())];
    return e.add_binary(op, left, right);
  }

  countdown_options options_;
  task_rng rng_;
  split which_;
  split_options split_;
};

}  // namespace lmrl::data
