// Arithmetic expressions over exact rationals: a tree, a safe recursive-descent
// parser (no eval), an evaluator that reports division by zero and overflow
// instead of crashing, a renderer with minimal parentheses, and the worked
// steps ("23 + 45 = 68, 68 + 17 = 85") used for solutions and SFT corpora.
//
// Grammar (whitespace anywhere between tokens):
//   expr   := term (('+' | '-') term)*
//   term   := factor (('*' | '/') factor)*          also 'x', 'X', U+00D7 for '*' and U+00F7 for '/'
//   factor := integer | '(' expr ')' | '-' factor   (unary minus only when allowed)
// Operators of one level associate to the left: 8 - 3 - 2 is (8 - 3) - 2.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/data/rational.hpp"
#include "lmrl/error.hpp"

namespace lmrl::data {

enum class expr_kind { number, binary, negate };

struct expr_node {
  expr_kind kind = expr_kind::number;
  char op = 0;                 // '+', '-', '*' or '/' for a binary node
  std::int64_t value = 0;      // for a number (non-negative literal)
  int left = -1;               // binary: left operand; negate: the operand
  int right = -1;              // binary: right operand
  bool parenthesized = false;  // written inside its own explicit parentheses
};

// Nodes live in one vector; children are indices into it.
struct expression {
  std::vector<expr_node> nodes;
  int root = -1;

  int add_number(std::int64_t v) {
    lmrl::detail::require(v >= 0, "expression::add_number: literal ", v, " is negative (use add_negate)");
    nodes.push_back({expr_kind::number, 0, v, -1, -1, false});
    return static_cast<int>(nodes.size()) - 1;
  }
  int add_binary(char op, int left, int right) {
    lmrl::detail::require(op == '+' || op == '-' || op == '*' || op == '/', "expression::add_binary: operator '", op,
                    "' is not one of + - * /");
    check_child("add_binary", left);
    check_child("add_binary", right);
    nodes.push_back({expr_kind::binary, op, 0, left, right, false});
    return static_cast<int>(nodes.size()) - 1;
  }
  int add_negate(int operand) {
    check_child("add_negate", operand);
    nodes.push_back({expr_kind::negate, '-', 0, operand, -1, false});
    return static_cast<int>(nodes.size()) - 1;
  }
  const expr_node& operator[](int i) const { return nodes[static_cast<std::size_t>(i)]; }
  expr_node& operator[](int i) { return nodes[static_cast<std::size_t>(i)]; }

 private:
  void check_child(const char* function, int i) const {
    lmrl::detail::require(i >= 0 && static_cast<std::size_t>(i) < nodes.size(), "expression::", function, ": child index ",
                    i, " is not a node (the expression has ", nodes.size(), " nodes)");
  }
};

// ---------------------------------------------------------------- parsing

struct parse_options {
  bool allow_unary_minus = false;  // Countdown allows only binary operations
  bool accept_times_signs = true;  // 'x', 'X', U+00D7 as '*' and U+00F7 as '/'
  std::size_t max_length = 4096;   // longer text is rejected before parsing
  int max_nesting = 64;            // deeper parentheses are rejected (bounded recursion)
  int max_digits = 18;             // a longer literal is rejected (it would not fit int64)
};

struct parse_result {
  bool ok = false;
  expression expr;         // the tree, when ok
  std::string error;       // why not, when !ok
  std::size_t position = 0;  // byte offset of the problem in the text, when !ok
};

namespace internal {

class expression_parser {
 public:
  expression_parser(std::string_view text, const parse_options& options) : text_(text), options_(options) {}

  parse_result run() {
    parse_result result;
    if (text_.size() > options_.max_length) {
      result.error = "expression is " + std::to_string(text_.size()) + " characters, more than max_length " +
                     std::to_string(options_.max_length);
      return result;
    }
    const int root = parse_expr();
    if (failed_) return failure(std::move(result));
    skip_space();
    if (pos_ != text_.size()) {
      fail_at("unexpected '" + std::string(1, text_[pos_]) + "' after a complete expression");
      return failure(std::move(result));
    }
    expr_.root = root;
    result.ok = true;
    result.expr = std::move(expr_);
    return result;
  }

 private:
  parse_result failure(parse_result result) {
    result.error = error_;
    result.position = error_pos_;
    return result;
  }
  void fail_at(std::string why) {
    if (failed_) return;
    failed_ = true;
    error_ = std::move(why) + " at character " + std::to_string(pos_);
    error_pos_ = pos_;
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r'))
      ++pos_;
  }
  // The operator at the cursor among `ops` (after normalizing the times signs), or 0; advances past it.
  char take_operator(bool multiplicative) {
    skip_space();
    if (pos_ >= text_.size()) return 0;
    const char c = text_[pos_];
    if (!multiplicative && (c == '+' || c == '-')) return ++pos_, c;
    if (!multiplicative) return 0;
    if (c == '*' || c == '/') return ++pos_, c;
    if (options_.accept_times_signs) {
      if (c == 'x' || c == 'X') return ++pos_, '*';
      const std::string_view rest = text_.substr(pos_);
      if (rest.starts_with("\xC3\x97")) return pos_ += 2, '*';  // U+00D7 multiplication sign
      if (rest.starts_with("\xC3\xB7")) return pos_ += 2, '/';  // U+00F7 division sign
    }
    return 0;
  }
  int parse_expr() {
    int left = parse_term();
    while (!failed_) {
      const char op = take_operator(false);
      if (op == 0) break;
      const int right = parse_term();
      if (failed_) break;
      left = expr_.add_binary(op, left, right);
    }
    return left;
  }
  int parse_term() {
    int left = parse_factor();
    while (!failed_) {
      const char op = take_operator(true);
      if (op == 0) break;
      const int right = parse_factor();
      if (failed_) break;
      left = expr_.add_binary(op, left, right);
    }
    return left;
  }
  int parse_factor() {
    skip_space();
    if (pos_ >= text_.size()) return fail_at("expected a number or '(' but the text ended"), -1;
    const char c = text_[pos_];
    if (c >= '0' && c <= '9') {
      const std::size_t start = pos_;
      std::int64_t value = 0;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        if (static_cast<int>(pos_ - start) >= options_.max_digits) {
          pos_ = start;
          return fail_at("number longer than " + std::to_string(options_.max_digits) + " digits"), -1;
        }
        value = value * 10 + (text_[pos_] - '0');
        ++pos_;
      }
      if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == ','))
        return fail_at("decimal point or separator inside a number (only integers are allowed)"), -1;
      return expr_.add_number(value);
    }
    if (c == '(') {
      if (depth_ >= options_.max_nesting)
        return fail_at("parentheses nested deeper than max_nesting " + std::to_string(options_.max_nesting)), -1;
      ++pos_;
      ++depth_;
      const int inner = parse_expr();
      --depth_;
      if (failed_) return -1;
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != ')') return fail_at("expected ')'"), -1;
      ++pos_;
      expr_[inner].parenthesized = true;
      return inner;
    }
    if (c == '-' && options_.allow_unary_minus) {
      if (depth_ >= options_.max_nesting) return fail_at("unary minus nested too deep"), -1;
      ++pos_;
      ++depth_;
      const int operand = parse_factor();
      --depth_;
      if (failed_) return -1;
      return expr_.add_negate(operand);
    }
    if (c == '-') return fail_at("unary minus is not allowed"), -1;
    return fail_at("expected a number or '(' but found '" + std::string(1, c) + "'"), -1;
  }

  std::string_view text_;
  const parse_options& options_;
  expression expr_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  bool failed_ = false;
  std::string error_;
  std::size_t error_pos_ = 0;
};

}  // namespace internal

// Parses text into a tree; never throws on bad text (the reason is in the result).
inline parse_result parse_expression(std::string_view text, const parse_options& options = {}) {
  return internal::expression_parser(text, options).run();
}

// ---------------------------------------------------------------- evaluation

enum class eval_error { none, divide_by_zero, overflow };

// One binary operation of the evaluation, in the order it is carried out.
struct expr_step {
  rational left;
  char op = '+';
  rational right;
  rational result;
};

struct evaluation {
  eval_error error = eval_error::none;
  rational value;                // when ok
  std::vector<expr_step> steps;  // binary operations in evaluation order (left operand first)
  std::string message;           // when !ok
  bool ok() const { return error == eval_error::none; }
};

namespace internal {

inline std::optional<rational> evaluate_node(const expression& e, int i, evaluation& out) {
  const expr_node& n = e[i];
  if (n.kind == expr_kind::number) return integer(n.value);
  if (n.kind == expr_kind::negate) {
    const auto v = evaluate_node(e, n.left, out);
    if (!v) return std::nullopt;
    return negate(*v);
  }
  const auto a = evaluate_node(e, n.left, out);
  if (!a) return std::nullopt;
  const auto b = evaluate_node(e, n.right, out);
  if (!b) return std::nullopt;
  std::optional<rational> r;
  switch (n.op) {
    case '+': r = add(*a, *b); break;
    case '-': r = subtract(*a, *b); break;
    case '*': r = multiply(*a, *b); break;
    default:
      if (b->num == 0) {
        out.error = eval_error::divide_by_zero;
        out.message = "division by zero: " + a->to_string() + " / " + b->to_string();
        return std::nullopt;
      }
      r = divide(*a, *b);
  }
  if (!r) {
    out.error = eval_error::overflow;
    out.message = "overflow: " + a->to_string() + " " + n.op + " " + b->to_string() + " does not fit in 64 bits";
    return std::nullopt;
  }
  out.steps.push_back({*a, n.op, *b, *r});
  return r;
}

}  // namespace internal

inline evaluation evaluate(const expression& e) {
  lmrl::detail::require(e.root >= 0, "evaluate: the expression is empty");
  evaluation out;
  const auto v = internal::evaluate_node(e, e.root, out);
  if (v) out.value = *v;
  return out;
}

// The integer literals of the expression, in the order they are written.
inline std::vector<std::int64_t> number_literals(const expression& e) {
  std::vector<std::int64_t> out;
  if (e.root < 0) return out;
  std::vector<int> stack{e.root};
  while (!stack.empty()) {
    const expr_node& n = e[stack.back()];
    stack.pop_back();
    if (n.kind == expr_kind::number) out.push_back(n.value);
    if (n.right >= 0) stack.push_back(n.right);  // right pushed first so that left is visited first
    if (n.left >= 0) stack.push_back(n.left);
  }
  return out;
}

// ---------------------------------------------------------------- rendering

struct render_options {
  std::string times = "*";   // e.g. "x" or "\u00d7" for display
  std::string divide = "/";
  bool spaces = true;        // "2 + 3" rather than "2+3"
};

namespace internal {

inline int precedence(const expr_node& n) {
  if (n.kind != expr_kind::binary) return 3;
  return n.op == '+' || n.op == '-' ? 1 : 2;
}

// Parentheses are written where the text was parenthesized, and where the tree
// needs them: a lower-precedence left operand, or a right operand of lower or
// equal precedence (so that parsing the text gives back the same tree).
inline bool needs_parentheses(const expression& e, int parent, int child, bool is_right) {
  const expr_node& c = e[child];
  if (c.parenthesized) return true;
  const expr_node& p = e[parent];
  if (p.kind == expr_kind::negate) return c.kind != expr_kind::number;
  if (c.kind != expr_kind::binary) return false;
  return is_right ? precedence(c) <= precedence(p) : precedence(c) < precedence(p);
}

inline void render_node(const expression& e, int i, const render_options& o, std::string& out) {
  const expr_node& n = e[i];
  auto child = [&](int c, bool is_right) {
    const bool paren = needs_parentheses(e, i, c, is_right);
    if (paren) out += '(';
    // The child's own flag was already honoured here, so render its inside plainly.
    render_node(e, c, o, out);
    if (paren) out += ')';
  };
  if (n.kind == expr_kind::number) {
    out += std::to_string(n.value);
  } else if (n.kind == expr_kind::negate) {
    out += '-';
    child(n.left, false);
  } else {
    child(n.left, false);
    const std::string op = n.op == '*' ? o.times : n.op == '/' ? o.divide : std::string(1, n.op);
    out += o.spaces ? " " + op + " " : op;
    child(n.right, true);
  }
}

inline int paren_depth_node(const expression& e, int i) {
  const expr_node& n = e[i];
  int depth = 0;
  for (const int c : {n.left, n.right})
    if (c >= 0) {
      const int d = paren_depth_node(e, c) + (needs_parentheses(e, i, c, c == n.right) ? 1 : 0);
      depth = d > depth ? d : depth;
    }
  return depth;
}

}  // namespace internal

// The expression as text. A root that was parenthesized keeps its parentheses.
inline std::string render(const expression& e, const render_options& options = {}) {
  lmrl::detail::require(e.root >= 0, "render: the expression is empty");
  std::string out;
  const bool paren = e[e.root].parenthesized;
  if (paren) out += '(';
  internal::render_node(e, e.root, options, out);
  if (paren) out += ')';
  return out;
}

// Clears the explicit-parentheses flag wherever the tree does not need it, so
// that render() writes only the parentheses the structure requires:
// "(925 - 49) - 9" becomes "925 - 49 - 9".
inline void drop_redundant_parentheses(expression& e) {
  for (auto& n : e.nodes) n.parenthesized = false;
}

// Deepest nesting of parentheses in render(e).
inline int paren_depth(const expression& e) {
  lmrl::detail::require(e.root >= 0, "paren_depth: the expression is empty");
  return internal::paren_depth_node(e, e.root) + (e[e.root].parenthesized ? 1 : 0);
}

// ---------------------------------------------------------------- worked steps

struct step_format {
  std::string times = "*";
  std::string divide = "/";
  std::string equals = " = ";
  std::string separator = ", ";
};

// One line per binary operation, e.g. "23 + 45 = 68"; fractions as "7/2", negatives as "-8".
inline std::string format_step(const expr_step& s, const step_format& f = {}) {
  const std::string op = s.op == '*' ? f.times : s.op == '/' ? f.divide : std::string(1, s.op);
  return s.left.to_string() + " " + op + " " + s.right.to_string() + f.equals + s.result.to_string();
}

// "23 + 45 = 68, 68 + 17 = 85": every operation of the evaluation in order.
inline std::string worked_steps(const evaluation& ev, const step_format& f = {}) {
  lmrl::detail::require(ev.ok(), "worked_steps: the evaluation failed: ", ev.message);
  std::string out;
  for (std::size_t k = 0; k < ev.steps.size(); ++k) {
    if (k > 0) out += f.separator;
    out += format_step(ev.steps[k], f);
  }
  return out;
}

}  // namespace lmrl::data
