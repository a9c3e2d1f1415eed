// Exact rational numbers over int64 with overflow detection, for the task
// verifiers: 7 / 2 * 2 is exactly 7, and a product that would overflow is
// reported instead of wrapping. Portable C++ (no __int128): magnitudes are kept
// within +-(2^63 - 1) and every step is checked.
#pragma once

#include <cstdint>
#include <numeric>
#include <optional>
#include <ostream>
#include <string>

namespace lmrl::data {

// Always normalized: den > 0 and gcd(|num|, den) == 1.
struct rational {
  std::int64_t num = 0;
  std::int64_t den = 1;

  friend bool operator==(const rational&, const rational&) = default;
  bool is_integer() const { return den == 1; }
  double to_double() const { return static_cast<double>(num) / static_cast<double>(den); }
  std::string to_string() const {
    return den == 1 ? std::to_string(num) : std::to_string(num) + "/" + std::to_string(den);
  }
  friend std::ostream& operator<<(std::ostream& out, const rational& r) { return out << r.to_string(); }
};

namespace internal {

inline constexpr std::int64_t rational_max = INT64_MAX;  // INT64_MIN is excluded so that negation is safe

inline std::optional<std::int64_t> checked_mul(std::int64_t a, std::int64_t b) {
  if (a == 0 || b == 0) return 0;
  const std::int64_t abs_a = a < 0 ? -a : a, abs_b = b < 0 ? -b : b;
  if (abs_a > rational_max / abs_b) return std::nullopt;
  return a * b;
}

inline std::optional<std::int64_t> checked_add(std::int64_t a, std::int64_t b) {
  if (b > 0 && a > rational_max - b) return std::nullopt;
  if (b < 0 && a < -rational_max - b) return std::nullopt;
  return a + b;
}

inline std::int64_t abs64(std::int64_t a) { return a < 0 ? -a : a; }

// Normalizes num/den (den != 0, both within range).
inline rational normalized(std::int64_t num, std::int64_t den) {
  if (den < 0) num = -num, den = -den;
  const std::int64_t g = std::gcd(abs64(num), den);
  if (g > 1) num /= g, den /= g;
  return {num, den};
}

}  // namespace internal

inline rational integer(std::int64_t n) { return {n, 1}; }

// Each returns nullopt on overflow; divide also on a zero divisor (a caller
// that must tell the two apart checks the divisor first).
inline std::optional<rational> add(rational a, rational b) {
  // a.num/a.den + b.num/b.den over the denominator lcm(a.den, b.den).
  const std::int64_t g = std::gcd(a.den, b.den);
  const auto left = internal::checked_mul(a.num, b.den / g);
  const auto right = internal::checked_mul(b.num, a.den / g);
  const auto den = internal::checked_mul(a.den / g, b.den);
  if (!left || !right || !den) return std::nullopt;
  const auto num = internal::checked_add(*left, *right);
  if (!num) return std::nullopt;
  return internal::normalized(*num, *den);
}

inline std::optional<rational> negate(rational a) { return rational{-a.num, a.den}; }

inline std::optional<rational> subtract(rational a, rational b) { return add(a, rational{-b.num, b.den}); }

inline std::optional<rational> multiply(rational a, rational b) {
  // Cross-reduce first so that the result is normalized and overflows only if it must.
  const std::int64_t g1 = std::gcd(internal::abs64(a.num), b.den);
  const std::int64_t g2 = std::gcd(internal::abs64(b.num), a.den);
  if (a.num == 0 || b.num == 0) return rational{0, 1};
  const auto num = internal::checked_mul(a.num / g1, b.num / g2);
  const auto den = internal::checked_mul(a.den / g2, b.den / g1);
  if (!num || !den) return std::nullopt;
  return rational{*num, *den};
}

inline std::optional<rational> divide(rational a, rational b) {
  if (b.num == 0) return std::nullopt;
  return multiply(a, internal::normalized(b.den, b.num));
}

}  // namespace lmrl::data
