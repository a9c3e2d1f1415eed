// Exact KL(p || q) between two full next-token distributions given as logit
// rows, p = softmax(z_policy / temperature), q = softmax(z_ref / temperature):
//
//   KL = sum_v p_v (log p_v - log q_v)
//   dKL/dz_v = p_v (log p_v - log q_v - KL) / temperature
//
// Streamed over the vocabulary: one pass keeps running maxima and sums
// (online log-sum-exp) and the running p-weighted log-ratio, so no
// vocabulary-sized temporary is made; a second pass writes the gradient when
// it is asked for. Stable for logits of any finite size (tested at +-1e4).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "lmrl/error.hpp"
#include "lmrl/tensor/checks.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

namespace detail {

// The running state of one row. With a_v = z_policy / temperature,
// b_v = z_ref / temperature and running maxima ma, mb:
//   sa = sum_v exp(a_v - ma),  sb = sum_v exp(b_v - mb),
//   s  = sum_v exp(a_v - ma) ((a_v - ma) - (b_v - mb)).
// Then log p_v - log q_v = (a_v - ma) - (b_v - mb) - log sa + log sb and
// KL = s / sa - log sa + log sb; every term stays O(1) whatever the logits'
// size (the shifted log-ratio is taken before it is weighted, which avoids
// subtracting two large log-sum-exps).
struct exact_kl_row_state {
  double ma = -std::numeric_limits<double>::infinity();
  double mb = -std::numeric_limits<double>::infinity();
  double sa = 0, sb = 0, s = 0;

  void add(double a, double b) {
    if (a > ma) {
      // Rescale to the new maximum: exp factors shrink by exp(ma - a), and each
      // earlier shifted log-ratio (a_u - ma) grows by (ma - a).
      const double scale = sa == 0 ? 0.0 : std::exp(ma - a);
      s = sa == 0 ? 0.0 : scale * (s + (ma - a) * sa);
      sa *= scale;
      ma = a;
    }
    if (b > mb) {
      // Earlier shifted log-ratios -(b_u - mb) grow by (b - mb).
      if (sa != 0) s += (b - mb) * sa;
      sb = sb == 0 ? 0.0 : sb * std::exp(mb - b);
      mb = b;
    }
    const double ea = std::exp(a - ma);
    sa += ea;
    sb += std::exp(b - mb);
    s += ea * ((a - ma) - (b - mb));
  }
};

}  // namespace detail

// kl[r] = KL(softmax(policy_logits[r] / temperature) || softmax(ref_logits[r] / temperature))
// for every row r; when grad_policy_logits is not empty, also dKL[r]/dz_policy[r, v].
// Rows are tokens (flatten [B x T x V] to [B*T x V] and pass only active rows).
template <Real T>
void exact_kl(matrix_view<const T> policy_logits, matrix_view<const T> ref_logits, vector_view<T> kl,
              matrix_view<T> grad_policy_logits = {}, double temperature = 1.0) {
  constexpr const char* fn = "lmrl::exact_kl";
  detail::require_same_shape(fn, "policy_logits", policy_logits, "ref_logits", ref_logits);
  detail::require_extent(fn, "kl", kl, 0, policy_logits.shape[0], "the number of rows of policy_logits");
  const bool want_gradient = grad_policy_logits.data != nullptr;
  if (want_gradient)
    detail::require_same_shape(fn, "policy_logits", policy_logits, "grad_policy_logits", grad_policy_logits);
  detail::require(std::isfinite(temperature) && temperature > 0, fn, ": temperature = ", temperature,
                  " must be positive and finite");
  detail::require(policy_logits.shape[1] > 0, fn, ": policy_logits of shape ", policy_logits,
                  " has an empty vocabulary");
  const index_t rows = policy_logits.shape[0];
  const index_t vocab = policy_logits.shape[1];
  const double inv_t = 1.0 / temperature;

  for (index_t r = 0; r < rows; ++r) {
    detail::exact_kl_row_state st;
    for (index_t v = 0; v < vocab; ++v) {
      const double z = static_cast<double>(policy_logits(r, v));
      const double w = static_cast<double>(ref_logits(r, v));
      if (!std::isfinite(z) || !std::isfinite(w))
        detail::fail(fn, ": logits at row ", r, ", column ", v, " are not finite (policy ", z, ", ref ", w, ")");
      st.add(z * inv_t, w * inv_t);
    }
    const double log_sa = std::log(st.sa);
    const double log_sb = std::log(st.sb);
    // KL >= 0 in exact arithmetic; rounding can leave -1e-17 for equal rows.
    const double value = std::max(0.0, st.s / st.sa - log_sa + log_sb);
    kl(r) = static_cast<T>(value);
    if (!want_gradient) continue;
    for (index_t v = 0; v < vocab; ++v) {
      const double a = static_cast<double>(policy_logits(r, v)) * inv_t;
      const double b = static_cast<double>(ref_logits(r, v)) * inv_t;
      const double log_p = (a - st.ma) - log_sa;
      const double log_q = (b - st.mb) - log_sb;
      grad_policy_logits(r, v) = static_cast<T>(std::exp(log_p) * (log_p - log_q - value) * inv_t);
    }
  }
}

// Any backend, into caller storage.
template <Array2D P, Array2D Q, WritableArray1D K>
void exact_kl(const P& policy_logits, const Q& ref_logits, K&& kl, double temperature = 1.0) {
  using T = element_t<P, 2>;
  exact_kl<T>(view<2>(policy_logits), view<2>(ref_logits), view<1>(kl), matrix_view<T>{}, temperature);
}

template <Array2D P, Array2D Q, WritableArray1D K, WritableArray2D G>
void exact_kl(const P& policy_logits, const Q& ref_logits, K&& kl, G&& grad_policy_logits,
              double temperature = 1.0) {
  using T = element_t<P, 2>;
  exact_kl<T>(view<2>(policy_logits), view<2>(ref_logits), view<1>(kl), view<2>(grad_policy_logits), temperature);
}

// Convenience: the per-row KL as a new 1-D array of policy_logits' family.
template <Array2D P, Array2D Q>
auto exact_kl(const P& policy_logits, const Q& ref_logits, double temperature = 1.0) {
  using T = element_t<P, 2>;
  const auto pv = view<2>(policy_logits);
  auto out = make_like<P, T, 1>({pv.shape[0]});
  exact_kl<T>(pv, view<2>(ref_logits), view<1>(out), matrix_view<T>{}, temperature);
  return out;
}

}  // namespace lmrl
