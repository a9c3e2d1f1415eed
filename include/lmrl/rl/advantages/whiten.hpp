// Masked whitening over the active tokens of a batch (verl masked_mean,
// masked_var, masked_whiten), used by REINFORCE++, REINFORCE++-baseline, GAE
// and GDPO's token-level option:
//
//   mean = sum m x / sum m,   var = sum m (x - mean)^2 / (sum m - 1)   (or / sum m, biased)
//   out  = (x - mean) / sqrt(var + 1e-8)   (+ mean when shift_mean is false), 0 where masked
#pragma once

#include <cmath>

#include "lmrl/error.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// verl's constant inside the square root of masked_whiten.
inline constexpr double whiten_epsilon = 1e-8;

namespace detail {

struct masked_moments_t {
  index_t count = 0;
  double mean = 0;
  double squares = 0;  // sum of (x - mean)^2
};

// Moments of x over active tokens of the rows for which row_ok(i) holds.
template <class T, class M, class RowOk>
masked_moments_t masked_moments(matrix_view<const T> x, matrix_view<const M> mask, RowOk row_ok) {
  masked_moments_t m;
  double sum = 0;
  for (index_t i = 0; i < x.shape[0]; ++i) {
    if (!row_ok(i)) continue;
    for (index_t t = 0; t < x.shape[1]; ++t)
      if (mask(i, t) != 0) {
        sum += x(i, t);
        ++m.count;
      }
  }
  if (m.count == 0) return m;
  m.mean = sum / static_cast<double>(m.count);
  for (index_t i = 0; i < x.shape[0]; ++i) {
    if (!row_ok(i)) continue;
    for (index_t t = 0; t < x.shape[1]; ++t)
      if (mask(i, t) != 0) m.squares += (x(i, t) - m.mean) * (x(i, t) - m.mean);
  }
  return m;
}

// The whitening of the rows for which row_ok(i) holds; other rows and masked
// tokens get 0. out may alias x (each element is read before it is written).
template <class T, class RowOk>
void masked_whiten_rows(const char* function, matrix_view<const T> x, matrix_view<const T> mask, matrix_view<T> out,
                        bool shift_mean, bool unbiased, RowOk row_ok) {
  const masked_moments_t m = masked_moments(x, mask, row_ok);
  const index_t needed = unbiased ? 2 : 1;
  if (m.count < needed)
    fail(function, ": whitening needs at least ", needed, " active tokens (", unbiased ? "unbiased" : "biased",
         " variance) but the mask ", mask, " has ", m.count);
  const double variance = m.squares / static_cast<double>(unbiased ? m.count - 1 : m.count);
  const double inv_std = 1.0 / std::sqrt(variance + whiten_epsilon);
  const double add_back = shift_mean ? 0.0 : m.mean;
  for (index_t i = 0; i < x.shape[0]; ++i) {
    const bool ok = row_ok(i);
    for (index_t t = 0; t < x.shape[1]; ++t)
      out(i, t) = ok && mask(i, t) != 0 ? static_cast<T>((x(i, t) - m.mean) * inv_std + add_back) : T(0);
  }
}

template <class T>
void require_whiten_args(const char* function, matrix_view<const T> x, matrix_view<const T> mask,
                         matrix_view<T> out) {
  require_same_shape(function, "x", x, "mask", mask);
  require_same_shape(function, "x", x, "out", out);
  require_mask(function, "mask", mask);
  require_finite_where(function, "x", x, mask);
}

}  // namespace detail

// Mean of x over active tokens (verl masked_mean; verl adds 1e-8 to the token
// count, lmrl divides by the count itself). Throws when no token is active.
template <Real T>
double masked_mean(matrix_view<const T> x, matrix_view<const T> mask) {
  detail::require_same_shape("masked_mean", "x", x, "mask", mask);
  const auto m = detail::masked_moments(x, mask, [](index_t) { return true; });
  detail::require(m.count > 0, "masked_mean: the mask ", mask, " has no active token");
  return m.mean;
}

// Variance of x over active tokens (verl masked_var); unbiased by default, as verl.
template <Real T>
double masked_var(matrix_view<const T> x, matrix_view<const T> mask, bool unbiased = true) {
  detail::require_same_shape("masked_var", "x", x, "mask", mask);
  const auto m = detail::masked_moments(x, mask, [](index_t) { return true; });
  const index_t needed = unbiased ? 2 : 1;
  detail::require(m.count >= needed, "masked_var: needs at least ", needed, " active tokens but the mask ", mask,
                  " has ", m.count);
  return m.squares / static_cast<double>(unbiased ? m.count - 1 : m.count);
}

// out = (x - mean) / sqrt(var + 1e-8) on active tokens, 0 where masked
// (verl masked_whiten followed by * mask). shift_mean = false adds the mean
// back (verl's option): only the scale changes.
template <Real T>
void masked_whiten(matrix_view<const T> x, matrix_view<const T> mask, matrix_view<T> out, bool shift_mean = true,
                   bool unbiased = true) {
  detail::require_whiten_args("masked_whiten", x, mask, out);
  detail::masked_whiten_rows("masked_whiten", x, mask, out, shift_mean, unbiased, [](index_t) { return true; });
}

template <Array2D X, Array2D M>
  requires Real<element_t<X, 2>> && std::same_as<element_t<X, 2>, element_t<M, 2>>
double masked_mean(const X& x, const M& mask) {
  using T = element_t<X, 2>;
  return masked_mean<T>(matrix_view<const T>(view<2>(x)), matrix_view<const T>(view<2>(mask)));
}

template <Array2D X, Array2D M>
  requires Real<element_t<X, 2>> && std::same_as<element_t<X, 2>, element_t<M, 2>>
double masked_var(const X& x, const M& mask, bool unbiased = true) {
  using T = element_t<X, 2>;
  return masked_var<T>(matrix_view<const T>(view<2>(x)), matrix_view<const T>(view<2>(mask)), unbiased);
}

template <Array2D X, Array2D M, WritableArray2D O>
  requires Real<element_t<O, 2>> && std::same_as<element_t<X, 2>, element_t<O, 2>> &&
           std::same_as<element_t<M, 2>, element_t<O, 2>>
void masked_whiten(const X& x, const M& mask, O&& out, bool shift_mean = true, bool unbiased = true) {
  using T = element_t<O, 2>;
  masked_whiten<T>(matrix_view<const T>(view<2>(x)), matrix_view<const T>(view<2>(mask)), view<2>(out), shift_mean,
                   unbiased);
}

// Convenience: a new array of x's family.
template <Array2D X, Array2D M>
  requires Real<element_t<X, 2>> && std::same_as<element_t<X, 2>, element_t<M, 2>>
auto masked_whiten(const X& x, const M& mask, bool shift_mean = true, bool unbiased = true) {
  using T = element_t<X, 2>;
  const auto v = view<2>(x);
  auto out = make_like<X, T, 2>(v.shape);
  masked_whiten<T>(matrix_view<const T>(v), matrix_view<const T>(view<2>(mask)), view<2>(out), shift_mean, unbiased);
  return out;
}

}  // namespace lmrl
