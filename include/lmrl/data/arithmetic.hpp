// Multi-digit arithmetic problems (+, -, *, with parentheses), generated
// deterministically from a seed, with a gold answer and a worked solution.
//
// An expression is a chain of items joined by operators drawn from
// `operators`, parsed with the usual precedence (* before + and -, left to
// right); an item is a number or, while the parenthesis budget lasts, a
// parenthesized sub-chain of at least two operands. So max_paren_depth = 0
// gives "23 + 45 * 17 - 8" and larger values give "(23 + 45) * (17 - (8 + 2))".
// Only the parentheses the structure needs are shown: a group whose removal
// would not change the tree ("(925 - 49) - 9") is written without them.
// Division is not offered: the answers are integers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lmrl/data/expression.hpp"
#include "lmrl/data/placeholders.hpp"
#include "lmrl/data/random.hpp"
#include "lmrl/data/split.hpp"
#include "lmrl/error.hpp"

namespace lmrl::data {

struct arithmetic_options {
  int min_digits = 1;               // digits of each operand, drawn uniformly in [min_digits, max_digits]
  int max_digits = 3;
  int min_operands = 2;             // operands per problem, drawn uniformly in [min_operands, max_operands]
  int max_operands = 3;
  std::string operators = "+-*";    // any non-empty subset of "+-*"
  int max_paren_depth = 1;          // 0: no parentheses
  double paren_probability = 0.3;   // chance that an item is a parenthesized group while the budget lasts
  bool allow_negative = false;      // false: every intermediate result and the answer are >= 0
  std::string times_symbol = "*";   // how '*' is written in the prompt and the solution ("x", "\u00d7", ...)
  std::string prompt_template = "What is {expression}?";  // placeholders: {expression}
  int max_attempts = 100000;        // draws before giving up on constraints that are too tight
};

struct arithmetic_problem {
  std::string expression;  // as shown, e.g. "23 + 45 * 2"
  std::string prompt;      // the prompt template filled in
  std::string answer;      // gold answer, e.g. "113"
  std::string solution;    // worked steps, e.g. "45 * 2 = 90, 23 + 90 = 113"
  std::string key;         // canonical text ('*' for times) that decides the split
};

inline void check_arithmetic_options(const arithmetic_options& o) {
  const char* f = "arithmetic_generator";
  lmrl::detail::require(o.min_digits >= 1 && o.min_digits <= o.max_digits && o.max_digits <= 18, f,
                        ": digits range [", o.min_digits, ", ", o.max_digits, "] must satisfy 1 <= min <= max <= 18");
  lmrl::detail::require(o.min_operands >= 2 && o.min_operands <= o.max_operands && o.max_operands <= 64, f,
                        ": operands range [", o.min_operands, ", ", o.max_operands,
                        "] must satisfy 2 <= min <= max <= 64");
  lmrl::detail::require(!o.operators.empty(), f, ": operators is empty");
  for (const char c : o.operators)
    lmrl::detail::require(c == '+' || c == '-' || c == '*', f, ": operator '", c, "' in \"", o.operators,
                          "\" is not one of + - *");
  const bool times = o.operators.find('*') != std::string::npos;
  // A product of all operands must fit in int64, or most draws would overflow.
  lmrl::detail::require(!times || o.max_digits * o.max_operands <= 18, f, ": with '*', max_digits * max_operands = ",
                        o.max_digits * o.max_operands, " must be at most 18 so that answers fit in 64 bits");
  lmrl::detail::require(o.max_paren_depth >= 0, f, ": max_paren_depth = ", o.max_paren_depth, " is negative");
  lmrl::detail::require(o.paren_probability >= 0 && o.paren_probability <= 1, f, ": paren_probability = ",
                        o.paren_probability, " is not in [0, 1]");
  lmrl::detail::require(o.max_attempts >= 1, f, ": max_attempts = ", o.max_attempts, " must be positive");
  require_placeholders(o.prompt_template, {"expression"}, "arithmetic_generator: prompt_template");
}

// Draws problems of one split. Two generators with the same options, seed and
// split give the same problems on every platform.
class arithmetic_generator {
 public:
  arithmetic_generator(arithmetic_options options, std::uint64_t seed, split which = split::train,
                       split_options split_opts = {})
      : options_(std::move(options)), rng_(seed), which_(which), split_(split_opts) {
    check_arithmetic_options(options_);
    check_split_options("arithmetic_generator", split_);
  }

  arithmetic_problem next() {
    for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
      expression e;
      const int operands = static_cast<int>(uniform_int(rng_, options_.min_operands, options_.max_operands));
      e.root = chain(e, operands, options_.max_paren_depth);
      drop_redundant_parentheses(e);  // "(925 - 49) - 9" is shown as "925 - 49 - 9"
      const evaluation ev = evaluate(e);
      if (!ev.ok()) continue;  // overflow: draw again
      if (!options_.allow_negative && !non_negative(ev)) continue;
      std::string key = render(e);
      if (split_of(key, split_) != which_) continue;
      arithmetic_problem p;
      p.expression = render(e, {options_.times_symbol, "/", true});
      p.prompt = fill_placeholders(options_.prompt_template, {{"expression", p.expression}},
                                   "arithmetic_generator: prompt_template");
      p.answer = ev.value.to_string();
      step_format format;
      format.times = options_.times_symbol;
      p.solution = worked_steps(ev, format);
      p.key = std::move(key);
      return p;
    }
    lmrl::detail::fail("arithmetic_generator: no problem met the constraints in max_attempts = ",
                       options_.max_attempts, " draws (allow_negative = ", options_.allow_negative,
                       ", operators \"", options_.operators, "\")");
  }

  std::vector<arithmetic_problem> take(std::size_t count) {
    std::vector<arithmetic_problem> out;
    out.reserve(count);
    for (std::size_t k = 0; k < count; ++k) out.push_back(next());
    return out;
  }

  const arithmetic_options& options() const { return options_; }

 private:
  static bool non_negative(const evaluation& ev) {
    for (const auto& s : ev.steps)
      if (s.result.num < 0) return false;
    return ev.value.num >= 0;
  }

  int number(expression& e) {
    const int digits = static_cast<int>(uniform_int(rng_, options_.min_digits, options_.max_digits));
    std::int64_t lo = 1;
    for (int d = 1; d < digits; ++d) lo *= 10;
    const std::int64_t hi = lo * 10 - 1;
    return e.add_number(uniform_int(rng_, lo, hi));
  }

  // A chain of items holding `operands` numbers in all, parsed with precedence.
  int chain(expression& e, int operands, int depth_left) {
    std::vector<int> items;
    int remaining = operands;
    while (remaining > 0) {
      // A group may not be the whole chain (that would be a redundant pair of parentheses).
      const int largest_group = items.empty() ? remaining - 1 : remaining;
      if (depth_left > 0 && largest_group >= 2 && bernoulli(rng_, options_.paren_probability)) {
        const int size = static_cast<int>(uniform_int(rng_, 2, largest_group));
        const int group = chain(e, size, depth_left - 1);
        e[group].parenthesized = true;
        items.push_back(group);
        remaining -= size;
      } else {
        items.push_back(number(e));
        remaining -= 1;
      }
    }
    std::vector<char> ops(items.size() - 1);
    for (auto& op : ops) op = options_.operators[uniform_below(rng_, options_.operators.size())];
    // Precedence: fold products into terms, then terms into a left-to-right sum.
    int sum = -1;
    char pending = 0;
    int term = items[0];
    for (std::size_t k = 1; k < items.size(); ++k) {
      if (ops[k - 1] == '*') {
        term = e.add_binary('*', term, items[k]);
      } else {
        sum = sum < 0 ? term : e.add_binary(pending, sum, term);
        pending = ops[k - 1];
        term = items[k];
      }
    }
    return sum < 0 ? term : e.add_binary(pending, sum, term);
  }

  arithmetic_options options_;
  task_rng rng_;
  split which_;
  split_options split_;
};

}  // namespace lmrl::data
