// Math answer equivalence: is a predicted final answer equal to the gold one?
//
// Both answers are normalized (LaTeX wrappers, spacing commands, units,
// "x = ..." stripped) and parsed into exact rationals where possible:
// integers with thousands separators, signs, decimals, a/b, \frac{a}{b}
// (\dfrac, \tfrac, \frac12), percentages. Arithmetic is on 128-bit integers
// with overflow checks; an integer too long for 128 bits is compared by its
// digits, anything else that overflows falls back to double. Answers that are
// not numbers are compared as normalized strings.
//
// The defaults reproduce HF math-verify's verify() on numbers (see
// docs/rewards.md and tests/data/math_equivalence.txt): when either side is
// written with a decimal point both are rounded to float_rounding = 6 decimal
// places (so 0.333333 == 1/3), otherwise the rationals must be equal; "50%"
// equals 0.5 and 1/2, and equals 50 when both numerals are integers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <string_view>

#include "lmrl/reward/extract.hpp"

namespace lmrl {

// How "X%" compares with a number.
enum class percent_rule {
  math_verify,  // X% == X/100; also X% == X when both numerals are integers (math-verify's get_pct_val)
  fraction,     // X% == X/100 only
  number,       // X% == X only (the sign is dropped)
  either,       // X% == X/100 or X% == X
};

struct math_equal_options {
  percent_rule percent = percent_rule::math_verify;  // math-verify's behaviour
  int float_rounding = 6;           // math-verify verify(float_rounding=6); negative: compare decimals exactly
  double relative_tolerance = 0;    // > 0: also equal when |a-b| <= tol * max(|a|, |b|) (in double)
  bool strip_units = true;          // "5 cm", "5\text{ cm}" -> 5 (TRL/open-r1: NormalizationConfig(units=True))
  bool strip_assignment = true;     // "x = 7" -> 7 (math-verify unwraps an equation when the gold is a value)
};

namespace detail {

__extension__ typedef __int128 int128;

// std::numeric_limits<__int128> is only specialized in GNU mode, so spell the bound out.
inline constexpr int128 int128_max = ((static_cast<int128>(1) << 126) - 1) * 2 + 1;
inline constexpr int128 int128_min = -int128_max - 1;

inline bool mul_ok(int128 a, int128 b, int128& out) { return !__builtin_mul_overflow(a, b, &out); }
inline bool add_ok(int128 a, int128 b, int128& out) { return !__builtin_add_overflow(a, b, &out); }

inline int128 gcd128(int128 a, int128 b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b != 0) {
    const int128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

inline bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// A parsed number: an exact rational num/den (den > 0, reduced), an integer
// too long for 128 bits kept as its digits, or a double.
struct math_value {
  enum class kind_t { rational, big_integer, real };
  kind_t kind = kind_t::rational;
  int128 num = 0, den = 1;
  std::string digits;  // big_integer: no leading zeros
  bool negative = false;
  double approx = 0;

  static math_value real(double x) {
    math_value v;
    v.kind = kind_t::real;
    v.approx = x;
    return v;
  }
  static math_value rational(int128 n, int128 d) {  // d != 0
    math_value v;
    if (d < 0) {
      if (n == int128_min || d == int128_min)
        return real(static_cast<double>(n) / static_cast<double>(d));
      n = -n;
      d = -d;
    }
    const int128 g = gcd128(n, d);
    v.num = g > 1 ? n / g : n;
    v.den = g > 1 ? d / g : d;
    v.approx = static_cast<double>(v.num) / static_cast<double>(v.den);
    return v;
  }
  double to_double() const { return approx; }
};

inline math_value negate(math_value v) {
  switch (v.kind) {
    case math_value::kind_t::rational:
      if (v.num == int128_min) return math_value::real(-v.approx);
      v.num = -v.num;
      break;
    case math_value::kind_t::big_integer: v.negative = !v.negative; break;
    case math_value::kind_t::real: break;
  }
  v.approx = -v.approx;
  return v;
}

inline std::optional<math_value> divide(const math_value& a, const math_value& b) {
  if (b.approx == 0 && b.kind != math_value::kind_t::big_integer) return std::nullopt;  // 1/0 is no number
  if (a.kind == math_value::kind_t::rational && b.kind == math_value::kind_t::rational) {
    int128 n, d;
    if (mul_ok(a.num, b.den, n) && mul_ok(a.den, b.num, d)) return math_value::rational(n, d);
  }
  return math_value::real(a.approx / b.approx);
}

}  // namespace detail

// A number as written: its value (the numeral, before any '%'), whether it was
// written with a decimal point, with a '%', and whether the numeral is a plain integer.
struct math_number {
  detail::math_value value;
  bool decimal = false;
  bool percent = false;
  bool integer_numeral = false;
};

namespace detail {

class number_parser {
 public:
  explicit number_parser(std::string_view s) : s_(s) {}

  // The whole string as one number (percent allowed), or nullopt.
  std::optional<math_number> full() {
    i_ = 0;
    auto n = signed_number(true);
    if (!n || i_ != s_.size()) return std::nullopt;
    return n;
  }
  // A number at the start; `rest` gets what follows it.
  std::optional<math_number> prefix(std::string_view& rest) {
    i_ = 0;
    auto n = signed_number(true);
    if (n) rest = s_.substr(i_);
    return n;
  }

 private:
  bool starts(std::string_view p) const { return s_.substr(i_, p.size()) == p; }
  bool digit_at(std::size_t k) const { return k < s_.size() && is_digit(s_[k]); }

  std::optional<math_number> signed_number(bool allow_percent) {
    bool negative = false;
    if (i_ < s_.size() && (s_[i_] == '-' || s_[i_] == '+')) negative = s_[i_++] == '-';
    std::optional<math_number> n;
    if (starts("\\frac")) {
      i_ += 5;
      auto num = frac_argument();
      if (!num) return std::nullopt;
      auto den = frac_argument();
      if (!den) return std::nullopt;
      auto q = divide(num->value, den->value);
      if (!q) return std::nullopt;
      n = math_number{*q, num->decimal || den->decimal, false, false};
    } else {
      n = numeral();
      if (!n) return std::nullopt;
      if (i_ < s_.size() && s_[i_] == '/') {  // a/b, the denominator may carry a sign
        const std::size_t save = i_++;
        bool den_negative = false;
        if (i_ < s_.size() && (s_[i_] == '-' || s_[i_] == '+')) den_negative = s_[i_++] == '-';
        auto den = numeral();
        if (!den) {
          i_ = save;
        } else {
          auto q = divide(n->value, den_negative ? negate(den->value) : den->value);
          if (!q) return std::nullopt;
          n = math_number{*q, n->decimal || den->decimal, false, false};
        }
      }
    }
    if (negative) n->value = negate(n->value);
    if (allow_percent) {
      if (starts("\\%")) {
        i_ += 2;
        n->percent = true;
      } else if (starts("%")) {
        i_ += 1;
        n->percent = true;
      }
    }
    return n;
  }

  // {signed number} or a single digit (\frac12).
  std::optional<math_number> frac_argument() {
    if (digit_at(i_)) {
      math_number n;
      n.value = math_value::rational(s_[i_++] - '0', 1);
      n.integer_numeral = true;
      return n;
    }
    if (i_ >= s_.size() || s_[i_] != '{') return std::nullopt;
    const std::size_t close = matching_brace(s_, i_);
    if (close == std::string_view::npos) return std::nullopt;
    number_parser inner(s_.substr(i_ + 1, close - i_ - 1));
    auto n = inner.full();
    i_ = close + 1;
    if (!n || n->percent) return std::nullopt;
    return n;
  }

  // Unsigned: digits with optional thousands separators (1,234,567), an
  // optional decimal part; ".5" is a numeral, "5." is not consumed past '5'.
  std::optional<math_number> numeral() {
    std::string digits;
    std::size_t k = i_;
    while (digit_at(k)) digits += s_[k++];
    if (!digits.empty() && digits.size() <= 3) {  // thousands groups: ",ddd" not followed by a digit
      while (k < s_.size() && s_[k] == ',' && digit_at(k + 1) && digit_at(k + 2) && digit_at(k + 3) &&
             !digit_at(k + 4)) {
        digits.append(s_.substr(k + 1, 3));
        k += 4;
      }
    }
    std::size_t fraction_digits = 0;
    bool decimal = false;
    if (k < s_.size() && s_[k] == '.' && digit_at(k + 1)) {
      decimal = true;
      ++k;
      while (digit_at(k)) {
        digits += s_[k++];
        ++fraction_digits;
      }
    }
    if (digits.empty()) return std::nullopt;
    i_ = k;
    math_number n;
    n.decimal = decimal;
    n.integer_numeral = !decimal;
    int128 value = 0;
    bool fits = true;
    for (char c : digits) fits = fits && mul_ok(value, 10, value) && add_ok(value, c - '0', value);
    int128 scale = 1;
    for (std::size_t f = 0; f < fraction_digits && fits; ++f) fits = mul_ok(scale, 10, scale);
    if (fits) {
      n.value = math_value::rational(value, scale);
    } else if (!decimal) {
      const std::size_t first = digits.find_first_not_of('0');
      n.value.kind = math_value::kind_t::big_integer;
      n.value.digits = first == std::string::npos ? "0" : digits.substr(first);
      n.value.approx = std::strtod(n.value.digits.c_str(), nullptr);
    } else {
      std::string text = digits.substr(0, digits.size() - fraction_digits) + "." +
                         digits.substr(digits.size() - fraction_digits);
      n.value = math_value::real(std::strtod(text.c_str(), nullptr));
    }
    return n;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

// Builds the result in a new string rather than with std::string::replace,
// whose inlined copy GCC 12 misreports under -Wrestrict (GCC bug 105329).
inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(s.size());
  std::size_t begin = 0;
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, begin)) {
    out.append(s, begin, at - begin);
    out.append(to);
    begin = at + from.size();
  }
  out.append(s, begin, std::string::npos);
  s = std::move(out);
}

// Removes a LaTeX command (e.g. "\left") when it is not the prefix of a longer
// command name ("\leftarrow" stays).
inline void remove_command(std::string& s, std::string_view command) {
  for (std::size_t at = s.find(command); at != std::string::npos; at = s.find(command, at)) {
    const std::size_t end = at + command.size();
    if (end < s.size() && is_alpha(s[end])) {
      ++at;
      continue;
    }
    s.erase(at, command.size());
  }
}

// s with one whole-string wrapper removed, or nullopt when it has none.
inline std::optional<std::string_view> unwrap_once(std::string_view s) {
  auto between = [&](std::string_view open, std::string_view close) -> std::optional<std::string_view> {
    if (s.size() >= open.size() + close.size() && s.substr(0, open.size()) == open &&
        s.substr(s.size() - close.size()) == close)
      return s.substr(open.size(), s.size() - open.size() - close.size());
    return std::nullopt;
  };
  if (auto x = between("$$", "$$")) return x;
  if (auto x = between("$", "$")) return x;
  if (auto x = between("\\(", "\\)")) return x;
  if (auto x = between("\\[", "\\]")) return x;
  for (std::string_view command : {"\\boxed", "\\fbox", "\\text", "\\textbf", "\\mathrm", "\\mathbf", "\\mbox", ""}) {
    if (s.size() > command.size() + 1 && s.substr(0, command.size()) == command && s[command.size()] == '{' &&
        matching_brace(s, command.size()) == s.size() - 1)
      return s.substr(command.size() + 1, s.size() - command.size() - 2);
  }
  // (x) around a single value; a tuple (a,b) keeps its parentheses.
  if (s.size() >= 2 && s.front() == '(' && s.back() == ')' && s.find(',') == std::string_view::npos) {
    int depth = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      depth += s[i] == '(' ? 1 : s[i] == ')' ? -1 : 0;
      if (depth == 0 && i + 1 < s.size()) return std::nullopt;  // "(a)+(b)"
    }
    return s.substr(1, s.size() - 2);
  }
  return std::nullopt;
}

// A unit after a number: \text{...}/\mathrm{...}/\mbox{...} groups, or a word
// of two or more letters ("cm", "apples", "m^2"). A single letter is not a
// unit ("5x" is an expression, not 5).
inline bool is_unit(std::string_view rest) {
  if (rest.empty()) return false;
  std::size_t letters = 0;
  std::size_t i = 0;
  bool group = false;
  while (i < rest.size()) {
    bool matched = false;
    for (std::string_view command : {"\\text", "\\mathrm", "\\mbox"}) {
      if (rest.substr(i, command.size()) == command && i + command.size() < rest.size() &&
          rest[i + command.size()] == '{') {
        const std::size_t close = matching_brace(rest, i + command.size());
        if (close == std::string_view::npos) return false;
        for (std::size_t k = i + command.size() + 1; k < close; ++k)
          if (!(is_alpha(rest[k]) || is_space(rest[k]) || rest[k] == '.' || rest[k] == '/' || rest[k] == '^' ||
                is_digit(rest[k])))
            return false;
        group = true;
        i = close + 1;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    const char c = rest[i];
    if (is_alpha(c)) {
      ++letters;
    } else if (c == '^' || c == '/' || c == '.') {
      if (letters == 0 && !group) return false;
    } else if (is_digit(c)) {
      if (i == 0 || rest[i - 1] != '^') return false;
    } else {
      return false;
    }
    ++i;
  }
  return group || letters >= 2;
}

}  // namespace detail

// The answer with wrappers, spacing and (optionally) units and "x =" removed,
// and no whitespace: the form both the number parser and the string
// comparison see. "$\boxed{\dfrac{1}{2}}$." gives "\frac{1}{2}".
inline std::string normalize_answer(std::string_view answer, const math_equal_options& options = {}) {
  std::string s(detail::trim(answer));
  for (std::string_view spacing : {"\\!", "\\,", "\\;", "\\:", "\\ ", "~"}) detail::replace_all(s, spacing, "");
  detail::remove_command(s, "\\qquad");
  detail::remove_command(s, "\\quad");
  detail::replace_all(s, "{,}", ",");
  detail::replace_all(s, "\\dfrac", "\\frac");
  detail::replace_all(s, "\\tfrac", "\\frac");
  detail::remove_command(s, "\\left");
  detail::remove_command(s, "\\right");
  detail::remove_command(s, "\\displaystyle");
  if (options.strip_units) {
    for (std::string_view degree : {"^{\\circ}", "^\\circ", "\xC2\xB0"}) detail::replace_all(s, degree, "");
  }
  std::string_view v = s;
  for (bool changed = true; changed;) {
    changed = false;
    const std::size_t before = v.size();
    v = detail::trim(v);
    if (v.size() > 1 && v.back() == '.') v.remove_suffix(1);
    if (v.substr(0, 2) == "\\$") v.remove_prefix(2);  // currency
    if (auto inner = detail::unwrap_once(v)) v = *inner;
    if (options.strip_assignment && v.size() > 2 && detail::is_alpha(v[0])) {
      std::size_t k = 1;
      while (k < v.size() && detail::is_space(v[k])) ++k;
      if (k < v.size() && v[k] == '=' && (k + 1 >= v.size() || v[k + 1] != '=') && k + 1 < v.size())
        v.remove_prefix(k + 1);
    }
    changed = v.size() != before;
  }
  std::string out;
  out.reserve(v.size());
  for (char c : v)
    if (!detail::is_space(c)) out += c;
  return out;
}

// The answer as a number, or nullopt when it is not one (an expression, a
// tuple, text, 1/0).
inline std::optional<math_number> parse_math_number(std::string_view answer, const math_equal_options& options = {}) {
  const std::string s = normalize_answer(answer, options);
  detail::number_parser parser(s);
  if (auto n = parser.full()) return n;
  if (options.strip_units) {
    std::string_view rest;
    detail::number_parser prefix(s);
    auto n = prefix.prefix(rest);
    if (n && detail::is_unit(rest)) return n;
  }
  return std::nullopt;
}

namespace detail {

// round-half-even(x * 10^places) for an exact rational, or nullopt on overflow.
inline std::optional<int128> round_scaled(const math_value& x, int places) {
  int128 m = x.num;
  for (int k = 0; k < places; ++k)
    if (!mul_ok(m, 10, m)) return std::nullopt;
  int128 q = m / x.den, r = m % x.den;
  if (r < 0) {
    r += x.den;
    q -= 1;
  }
  const int128 other = x.den - r;  // compare r with den - r: no 2r overflow
  if (r > other) return q + 1;
  if (r == other) return (q % 2 != 0) ? q + 1 : q;
  return q;
}

inline bool values_equal(const math_value& a, const math_value& b, bool decimal, const math_equal_options& o) {
  using kind = math_value::kind_t;
  if (o.relative_tolerance > 0) {
    const double x = a.approx, y = b.approx;
    if (std::abs(x - y) <= o.relative_tolerance * std::max(std::abs(x), std::abs(y))) return true;
  }
  if (a.kind == kind::big_integer && b.kind == kind::big_integer)
    return a.digits == b.digits && (a.negative == b.negative || a.digits == "0");
  if (a.kind == kind::rational && b.kind == kind::rational) {
    if (decimal && o.float_rounding >= 0) {
      auto ra = round_scaled(a, o.float_rounding), rb = round_scaled(b, o.float_rounding);
      if (ra && rb) return *ra == *rb;
    } else {
      return a.num == b.num && a.den == b.den;
    }
  }
  if (decimal && o.float_rounding >= 0) {
    const double scale = std::pow(10.0, o.float_rounding);
    return std::nearbyint(a.approx * scale) == std::nearbyint(b.approx * scale);
  }
  return a.approx == b.approx;
}

inline math_value percent_fraction(const math_value& x) {
  static const math_value hundred = math_value::rational(100, 1);
  return *divide(x, hundred);
}

}  // namespace detail

// Two parsed numbers compare equal under the options' percent and rounding rules.
inline bool numbers_equal(const math_number& gold, const math_number& pred, const math_equal_options& options = {}) {
  const bool decimal = gold.decimal || pred.decimal;
  auto as_fraction = [](const math_number& n) { return n.percent ? detail::percent_fraction(n.value) : n.value; };
  switch (options.percent) {
    case percent_rule::fraction:
      return detail::values_equal(as_fraction(gold), as_fraction(pred), decimal, options);
    case percent_rule::number:
      return detail::values_equal(gold.value, pred.value, decimal, options);
    case percent_rule::either:
      if (detail::values_equal(gold.value, pred.value, decimal, options)) return true;
      return detail::values_equal(as_fraction(gold), as_fraction(pred), decimal, options) ||
             detail::values_equal(as_fraction(gold), pred.value, decimal, options) ||
             detail::values_equal(gold.value, as_fraction(pred), decimal, options);
    case percent_rule::math_verify:
      if ((gold.percent || pred.percent) && gold.integer_numeral && pred.integer_numeral &&
          detail::values_equal(gold.value, pred.value, false, options))
        return true;
      return detail::values_equal(as_fraction(gold), as_fraction(pred), decimal, options);
  }
  return false;
}

// The math equivalence rule: numbers by value, anything else by normalized
// string (both non-empty). A number never equals a non-number.
inline bool math_equal(std::string_view gold, std::string_view pred, const math_equal_options& options = {}) {
  const auto g = parse_math_number(gold, options);
  const auto p = parse_math_number(pred, options);
  if (g && p) return numbers_equal(*g, *p, options);
  if (g || p) return false;
  const std::string a = normalize_answer(gold, options), b = normalize_answer(pred, options);
  return !a.empty() && a == b;
}

// Plain exact string match after trimming surrounding whitespace ("" == "").
inline bool exact_match(std::string_view gold, std::string_view pred) {
  return detail::trim(gold) == detail::trim(pred);
}

}  // namespace lmrl
