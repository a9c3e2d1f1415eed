// Entropy terms of the policy loss.
//
// entropy_bonus: l[i,t] = -entropy_coeff * H[i,t] on active tokens, and
// dl/dH[i,t] = -entropy_coeff, for the caller to add to the policy loss before
// aggregation and to send back through its entropy computation (a policy
// objective's backward gives only d/dlogp). verl subtracts
// entropy_coeff * agg_loss(H) with the policy loss's aggregation mode, which is
// what aggregating this per-token loss gives; TRL (entropy_coef) always takes the
// token mean over the (entropy-masked) active tokens.
//
// top_entropy_mask: TRL top_entropy_quantile ("Beyond the 80/20 rule",
// arXiv 2506.01939): keep only tokens whose entropy is at least the
// (1 - top_entropy_quantile) quantile of the active tokens' entropies, the
// quantile taken as torch.quantile does (linear interpolation between order
// statistics, position q (n - 1)). Ties with the threshold are kept; 1 keeps
// every active token, 0 only those at the maximum; no active token gives an
// all-zero mask (TRL get_high_entropy_mask).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <limits>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/rl/inputs.hpp"
#include "lmrl/rl/objectives/common.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl {

namespace detail {
template <Real T>
void check_entropy_args(const char* function, const matrix_view<const T>& entropy, const matrix_view<const T>& mask) {
  if (entropy.data == nullptr && !mask.empty())
    fail(function, ": entropy is not given (empty view) but mask has shape ", mask);
  require_same_shape(function, "mask", mask, "entropy", entropy);
  require_mask(function, "mask", mask);
  require_finite_where(function, "entropy", entropy, mask);
}

// torch.lerp as torch computes it: from the nearer end.
inline double torch_lerp(double start, double end, double weight) {
  return weight < 0.5 ? start + weight * (end - start) : end - (end - start) * (1 - weight);
}
}  // namespace detail

// Writes the per-token bonus loss and its derivative with respect to the
// entropy (both 0 where masked); returns the mean entropy of active tokens.
template <Real T>
double entropy_bonus(matrix_view<const T> entropy, matrix_view<const T> mask, double entropy_coeff,
                     matrix_view<T> per_token_loss, matrix_view<T> dloss_dentropy) {
  constexpr const char* fn = "entropy_bonus";
  detail::check_entropy_args(fn, entropy, mask);
  detail::require(std::isfinite(entropy_coeff), fn, ": entropy_coeff = ", entropy_coeff, " is not finite");
  detail::require_given_like(fn, "per_token_loss", per_token_loss, "entropy", entropy);
  detail::require_given_like(fn, "dloss_dentropy", dloss_dentropy, "entropy", entropy);
  double sum = 0;
  index_t n = 0;
  for (index_t i = 0; i < entropy.shape[0]; ++i)
    for (index_t t = 0; t < entropy.shape[1]; ++t) {
      if (mask(i, t) == 0) {
        per_token_loss(i, t) = T(0);
        dloss_dentropy(i, t) = T(0);
        continue;
      }
      const double h = static_cast<double>(entropy(i, t));
      per_token_loss(i, t) = static_cast<T>(-entropy_coeff * h);
      dloss_dentropy(i, t) = static_cast<T>(-entropy_coeff);
      sum += h;
      ++n;
    }
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

// From a batch: uses in.entropy and in.mask (entropy must be given).
template <Real T>
double entropy_bonus(const policy_inputs<T>& in, double entropy_coeff, matrix_view<T> per_token_loss,
                     matrix_view<T> dloss_dentropy) {
  return entropy_bonus(in.entropy, in.mask, entropy_coeff, per_token_loss, dloss_dentropy);
}

// Any backend arrays.
template <Array2D H, Array2D M, WritableArray2D L, WritableArray2D D>
  requires Real<element_t<H, 2>> && std::same_as<element_t<H, 2>, element_t<M, 2>> &&
           std::same_as<element_t<H, 2>, element_t<L, 2>> && std::same_as<element_t<H, 2>, element_t<D, 2>>
double entropy_bonus(const H& entropy, const M& mask, double entropy_coeff, L&& per_token_loss, D&& dloss_dentropy) {
  using T = element_t<H, 2>;
  return entropy_bonus(matrix_view<const T>(lmrl::view<2>(entropy)), matrix_view<const T>(lmrl::view<2>(mask)),
                       entropy_coeff, lmrl::view<2>(per_token_loss), lmrl::view<2>(dloss_dentropy));
}

// The entropy threshold: torch.quantile(active entropies, 1 - top_entropy_quantile).
template <Real T>
double entropy_threshold(matrix_view<const T> entropy, matrix_view<const T> mask, double top_entropy_quantile) {
  constexpr const char* fn = "top_entropy_mask";
  detail::check_entropy_args(fn, entropy, mask);
  detail::require_in_range(fn, "top_entropy_quantile", top_entropy_quantile, 0.0, 1.0, "[0, 1]");
  std::vector<double> values;
  for (index_t i = 0; i < entropy.shape[0]; ++i)
    for (index_t t = 0; t < entropy.shape[1]; ++t)
      if (mask(i, t) != 0) values.push_back(static_cast<double>(entropy(i, t)));
  if (values.empty()) return std::numeric_limits<double>::infinity();
  const double q = 1 - top_entropy_quantile;
  const double rank = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(rank));
  const auto above = std::min(static_cast<std::size_t>(std::ceil(rank)), values.size() - 1);
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(below), values.end());
  const double lo = values[below];
  const double hi = above == below ? lo
                                   : *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(below) + 1,
                                                       values.end());
  return detail::torch_lerp(lo, hi, rank - static_cast<double>(below));
}

// Writes the 0/1 mask of kept tokens into out; returns how many are kept.
template <Real T>
index_t top_entropy_mask(matrix_view<const T> entropy, matrix_view<const T> mask, double top_entropy_quantile,
                         matrix_view<T> out) {
  const double threshold = entropy_threshold(entropy, mask, top_entropy_quantile);
  detail::require_given_like("top_entropy_mask", "out", out, "entropy", entropy);
  index_t kept = 0;
  for (index_t i = 0; i < entropy.shape[0]; ++i)
    for (index_t t = 0; t < entropy.shape[1]; ++t) {
      const bool keep = mask(i, t) != 0 && static_cast<double>(entropy(i, t)) >= threshold;
      out(i, t) = keep ? T(1) : T(0);
      kept += keep;
    }
  return kept;
}

template <Real T>
index_t top_entropy_mask(const policy_inputs<T>& in, double top_entropy_quantile, matrix_view<T> out) {
  return top_entropy_mask(in.entropy, in.mask, top_entropy_quantile, out);
}

template <Array2D H, Array2D M, WritableArray2D O>
  requires Real<element_t<H, 2>> && std::same_as<element_t<H, 2>, element_t<M, 2>> &&
           std::same_as<element_t<H, 2>, element_t<O, 2>>
index_t top_entropy_mask(const H& entropy, const M& mask, double top_entropy_quantile, O&& out) {
  using T = element_t<H, 2>;
  return top_entropy_mask(matrix_view<const T>(lmrl::view<2>(entropy)), matrix_view<const T>(lmrl::view<2>(mask)),
                          top_entropy_quantile, lmrl::view<2>(out));
}

// Convenience: the mask as a new array of entropy's backend family.
template <Array2D H, Array2D M>
  requires Real<element_t<H, 2>> && std::same_as<element_t<H, 2>, element_t<M, 2>>
auto top_entropy_mask(const H& entropy, const M& mask, double top_entropy_quantile) {
  using T = element_t<H, 2>;
  const matrix_view<const T> h = lmrl::view<2>(entropy);
  auto out = make_like<H, T, 2>(h.shape);
  top_entropy_mask(h, matrix_view<const T>(lmrl::view<2>(mask)), top_entropy_quantile, lmrl::view<2>(out));
  return out;
}

}  // namespace lmrl
