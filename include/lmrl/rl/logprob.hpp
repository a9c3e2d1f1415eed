// Fused log-probability and entropy of the sampled tokens, straight from the
// logits, without materializing the log-softmax.
//
// For each row r (one position of one sequence) with logits x[r, 0..V),
// target id y_r and temperature tau (TRL divides the logits by the sampling
// temperature before log_softmax), with z = x / tau:
//
//   lse_r     = log sum_v exp(z_v)
//   logp_r    = z_{y_r} - lse_r                       (log pi(y_r))
//   entropy_r = -sum_v p_v log p_v = lse_r - sum_v p_v z_v,   p_v = exp(z_v - lse_r)
//
// computed in ONE pass over the vocabulary: the row is read in L1-sized chunks;
// each chunk's max, then its sums sum exp(z - m_c) and sum exp(z - m_c)(z - m_c)
// (for the entropy), are merged into running double accumulators with the
// online log-sum-exp rule. Nothing proportional to rows x vocab (nor vocab) is
// allocated. The backward pass, given dL/dlogp and dL/dentropy per row, writes
//
//   dL/dx_v = [ g_logp (1[v = y] - p_v) - g_H p_v (log p_v + H) ] / tau
//
// in one more pass (reads the logits once, writes the gradient once).
//
// Numerics: the inner loops are branch-free over 16 independent lanes so that
// the compiler vectorizes them without -ffast-math, with a polynomial exp
// (detail::exp_nonpositive; float: Cephes, ~2 ulp; double: degree-13 Taylor,
// ~2 ulp). Lanes accumulate in the element type over one chunk (<= 2048
// terms), chunks merge in double; results match a two-pass double log-softmax
// to ~1e-6 relative (float) / ~1e-13 (double). Stable for logits of +-1e4.
// Rows run in parallel under OpenMP when the user compiles with -fopenmp.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <type_traits>

#include "lmrl/error.hpp"
#include "lmrl/tensor/fast_exp.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

namespace detail {

inline constexpr index_t logprob_lanes = 16;    // independent accumulators: the compiler maps them to SIMD lanes
inline constexpr index_t logprob_chunk = 2048;  // elements per chunk: 8 KiB of float logits, stays in L1

// lse and entropy of one row of logits (contiguous), temperature 1 / inv_tau.
template <class T, bool WithEntropy>
void softmax_row(const T* x, index_t vocab, T inv_tau, double& lse, double& entropy) {
  constexpr index_t L = logprob_lanes;
  constexpr T lowest = -std::numeric_limits<T>::infinity();
  constexpr T floor = std::is_same_v<T, float> ? T(-87) : T(-708);
  double M = 0, S = 0, E = 0;  // running max of z, sum exp(z - M), sum exp(z - M)(z - M)
  bool merged = false;           // a chunk with a finite max has been merged
  for (index_t c0 = 0; c0 < vocab; c0 += logprob_chunk) {
    const index_t n = std::min(logprob_chunk, vocab - c0);
    const T* xc = x + c0;
    const index_t body = n - n % L;
    // 1. max of the chunk
    std::array<T, L> mx;
    mx.fill(lowest);
    for (index_t v = 0; v < body; v += L)
      for (index_t l = 0; l < L; ++l) mx[l] = xc[v + l] > mx[l] ? xc[v + l] : mx[l];
    T cmax = lowest;
    for (index_t l = 0; l < L; ++l) cmax = mx[l] > cmax ? mx[l] : cmax;
    for (index_t v = body; v < n; ++v) cmax = xc[v] > cmax ? xc[v] : cmax;
    const T zm = cmax * inv_tau;
    if (zm == lowest) continue;  // a chunk of -inf logits adds nothing (and -inf - -inf would be NaN)
    // 2. sums of the chunk relative to its max
    std::array<T, L> s{}, e{};
    for (index_t v = 0; v < body; v += L)
      for (index_t l = 0; l < L; ++l) {
        T d = xc[v + l] * inv_tau - zm;
        d = d < floor ? floor : d;
        const T p = exp_nonpositive(d);
        s[l] += p;
        if constexpr (WithEntropy) e[l] += p * d;
      }
    double cs = 0, ce = 0;
    for (index_t l = 0; l < L; ++l) {
      cs += s[l];
      ce += e[l];
    }
    for (index_t v = body; v < n; ++v) {
      T d = xc[v] * inv_tau - zm;
      d = d < floor ? floor : d;
      const T p = exp_nonpositive(d);
      cs += p;
      if constexpr (WithEntropy) ce += static_cast<double>(p) * d;
    }
    // 3. merge into the running sums (online log-sum-exp)
    const double czm = zm;
    if (!merged) {
      merged = true;
      M = czm;
      S = cs;
      E = ce;
    } else if (czm > M) {
      const double a = std::exp(M - czm);
      E = a * (E + (M - czm) * S) + ce;
      S = a * S + cs;
      M = czm;
    } else {
      const double b = std::exp(czm - M);
      E += b * (ce + (czm - M) * cs);
      S += b * cs;
    }
  }
  const double log_s = std::log(S);  // -inf when every logit is -inf: lse -inf, entropy and log-probs NaN
  lse = M + log_s;
  if constexpr (WithEntropy) entropy = log_s - E / S;
}

// dL/dx of one row: out[v] = (-(a + b (lp_v + H)) p_v) / tau, out[y] += a / tau.
// lse comes as hi + lo (lo = the part of a double lse that T cannot hold):
// z - hi is exact near the max, so log p keeps T's precision even at |z| ~ 1e4.
template <class T>
void softmax_row_backward(const T* __restrict x, index_t vocab, T inv_tau, T lse_hi, T lse_lo, T entropy, T a, T b,
                          index_t target, T* __restrict out) {  // __restrict: lets -O2 vectorize without a runtime check
  constexpr T floor = std::is_same_v<T, float> ? T(-87) : T(-708);
  const T a_tau = a * inv_tau, b_tau = b * inv_tau;
  const T c = a_tau + b_tau * entropy;  // coefficient of p_v that does not depend on v
  auto grad = [=](T xv) {
    T lp = (xv * inv_tau - lse_hi) - lse_lo;
    lp = lp < floor ? floor : lp;
    return -(c + b_tau * lp) * exp_nonpositive(lp);
  };
  constexpr index_t L = logprob_lanes;
  const index_t body = vocab - vocab % L;
  for (index_t v = 0; v < body; v += L)
    for (index_t l = 0; l < L; ++l) out[v + l] = grad(x[v + l]);
  for (index_t v = body; v < vocab; ++v) out[v] = grad(x[v]);
  out[target] += a_tau;
}

template <class V>
bool logprob_given(const V& v) {
  return v.data != nullptr && v.size() > 0;
}

template <class T>
void require_rows_contiguous(const char* function, const char* name, const matrix_view<T>& m) {
  if (m.shape[1] > 1 && m.stride[1] != 1)
    fail(function, ": ", name, " must have contiguous rows (stride 1 along the vocabulary) but has strides [",
         m.stride[0], ", ", m.stride[1], "]; copy it to a row-major array first");
}

template <class V>
void require_optional_rows(const char* function, const char* name, const V& v, index_t rows) {
  if (logprob_given(v) && v.shape[0] != rows)
    fail(function, ": ", name, " has ", v.shape[0], " elements but logits has ", rows, " rows");
}

template <class A, class B>
void require_same_shape_2d(const char* function, const matrix_view<A>& logits, const matrix_view<B>& g) {
  if (logits.shape != g.shape)
    fail(function, ": grad_logits has shape ", g, " but logits has shape ", logits);
}

template <class Id>
void check_targets(const char* function, std::span<const Id> targets, index_t rows, index_t vocab) {
  if (static_cast<index_t>(targets.size()) != rows)
    fail(function, ": targets has ", targets.size(), " ids but logits has ", rows, " rows");
  for (index_t r = 0; r < rows; ++r) {
    const auto id = static_cast<std::int64_t>(targets[static_cast<std::size_t>(r)]);
    if (id < 0 || id >= vocab)
      fail(function, ": targets[", r, "] = ", id, " is out of range for a vocabulary of ", vocab, " tokens");
  }
}

inline void check_temperature(const char* function, double temperature) {
  if (!(temperature > 0) || !std::isfinite(temperature))
    fail(function, ": temperature = ", temperature, " must be positive and finite");
}

template <class T, class Id, class S>
void logprob_forward(matrix_view<const T> logits, std::span<const Id> targets, double temperature,
                     vector_view<T> logp, vector_view<T> entropy, vector_view<S> lse) {
  const char* f = "logprob_forward";
  const index_t rows = logits.shape[0], vocab = logits.shape[1];
  require(vocab > 0, f, ": logits has an empty vocabulary (shape ", logits, ")");
  require_rows_contiguous(f, "logits", logits);
  check_temperature(f, temperature);
  check_targets(f, targets, rows, vocab);
  require(logp.shape[0] == rows, f, ": logp has ", logp.shape[0], " elements but logits has ", rows, " rows");
  require_optional_rows(f, "entropy", entropy, rows);
  require_optional_rows(f, "lse", lse, rows);
  const T inv_tau = static_cast<T>(1.0 / temperature);
  const bool want_entropy = logprob_given(entropy), want_lse = logprob_given(lse);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index_t r = 0; r < rows; ++r) {
    const T* x = logits.row_data(r);
    double row_lse = 0, row_entropy = 0;
    if (want_entropy)
      softmax_row<T, true>(x, vocab, inv_tau, row_lse, row_entropy);
    else
      softmax_row<T, false>(x, vocab, inv_tau, row_lse, row_entropy);
    const index_t y = static_cast<index_t>(targets[static_cast<std::size_t>(r)]);
    const double z_target = static_cast<T>(x[y] * inv_tau);  // z as the loops see it
    logp(r) = static_cast<T>(z_target - row_lse);
    if (want_entropy) entropy(r) = static_cast<T>(row_entropy);
    if (want_lse) lse(r) = static_cast<S>(row_lse);
  }
}

template <class T, class Id, class S>
void logprob_backward(matrix_view<const T> logits, std::span<const Id> targets, double temperature,
                      vector_view<const S> lse, vector_view<const T> entropy, vector_view<const T> grad_logp,
                      vector_view<const T> grad_entropy, matrix_view<T> grad_logits) {
  const char* f = "logprob_backward";
  const index_t rows = logits.shape[0], vocab = logits.shape[1];
  require(vocab > 0, f, ": logits has an empty vocabulary (shape ", logits, ")");
  require_rows_contiguous(f, "logits", logits);
  require_same_shape_2d(f, logits, grad_logits);
  require_rows_contiguous(f, "grad_logits", grad_logits);
  {
    const auto* lo = static_cast<const void*>(logits.data);
    const auto* hi = static_cast<const void*>(logits.data + (rows - 1) * logits.stride[0] + vocab);
    const auto* g = static_cast<const void*>(grad_logits.data);
    const auto* g_hi = static_cast<const void*>(grad_logits.data + (rows - 1) * grad_logits.stride[0] + vocab);
    require(rows == 0 || std::less<>{}(g_hi, lo) || g_hi == lo || !std::less<>{}(g, hi), f,
            ": grad_logits overlaps logits; write the gradient into separate storage");
  }
  check_temperature(f, temperature);
  check_targets(f, targets, rows, vocab);
  require(lse.shape[0] == rows && lse.data != nullptr, f, ": lse has ", lse.shape[0],
          " elements but logits has ", rows, " rows (pass the lse written by logprob_forward)");
  require_optional_rows(f, "grad_logp", grad_logp, rows);
  require_optional_rows(f, "grad_entropy", grad_entropy, rows);
  const bool has_gl = logprob_given(grad_logp), has_ge = logprob_given(grad_entropy);
  if (has_ge)
    require(logprob_given(entropy) && entropy.shape[0] == rows, f, ": grad_entropy is given, so entropy needs ", rows,
            " elements (from logprob_forward) but has ", entropy.shape[0]);
  const T inv_tau = static_cast<T>(1.0 / temperature);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index_t r = 0; r < rows; ++r) {
    const T a = has_gl ? grad_logp(r) : T(0);
    const T b = has_ge ? grad_entropy(r) : T(0);
    const T h = has_ge ? entropy(r) : T(0);
    const double l = lse(r);
    const T hi = static_cast<T>(l);
    const T lo = static_cast<T>(l - static_cast<double>(hi));
    softmax_row_backward<T>(logits.row_data(r), vocab, inv_tau, hi, lo, h, a, b,
                            static_cast<index_t>(targets[static_cast<std::size_t>(r)]), grad_logits.row_data(r));
  }
}

}  // namespace detail

// ---------------------------------------------------------------- public API

// Forward: logp [rows] (required), entropy [rows] and lse [rows] (pass an empty
// array to skip either; lse is what the backward pass needs) from logits
// [rows x vocab] with contiguous rows. Ids are int32 or int64. lse may be
// double for float logits: the backward pass then keeps full float precision
// of log p even for |logits| ~ 1e4 (a float lse costs |lse| * 6e-8 of it).
template <Array2D L, WritableArray1D P, WritableArray1D H, WritableArray1D S>
  requires Real<element_t<L, 2>> && std::same_as<element_t<L, 2>, element_t<P, 1>> &&
           std::same_as<element_t<L, 2>, element_t<H, 1>> &&
           (std::same_as<element_t<L, 2>, element_t<S, 1>> || std::same_as<double, element_t<S, 1>>)
void logprob_forward(const L& logits, std::span<const std::int32_t> targets, double temperature, P&& logp,
                     H&& entropy, S&& lse) {
  using T = element_t<L, 2>;
  detail::logprob_forward<T, std::int32_t, element_t<S, 1>>(lmrl::view<2>(logits), targets, temperature, lmrl::view<1>(logp),
                                           lmrl::view<1>(entropy), lmrl::view<1>(lse));
}

template <Array2D L, WritableArray1D P, WritableArray1D H, WritableArray1D S>
  requires Real<element_t<L, 2>> && std::same_as<element_t<L, 2>, element_t<P, 1>> &&
           std::same_as<element_t<L, 2>, element_t<H, 1>> &&
           (std::same_as<element_t<L, 2>, element_t<S, 1>> || std::same_as<double, element_t<S, 1>>)
void logprob_forward(const L& logits, std::span<const std::int64_t> targets, double temperature, P&& logp,
                     H&& entropy, S&& lse) {
  using T = element_t<L, 2>;
  detail::logprob_forward<T, std::int64_t, element_t<S, 1>>(lmrl::view<2>(logits), targets, temperature, lmrl::view<1>(logp),
                                           lmrl::view<1>(entropy), lmrl::view<1>(lse));
}

// The three per-row results, as arrays of the logits' backend family.
template <class V, class D>
struct logprob_result {
  V logp;     // log pi(target) under the tempered distribution
  V entropy;  // entropy of the tempered distribution
  D lse;      // log-sum-exp of logits / temperature, in double, for logprob_backward
};

// Convenience: allocates the three results (1-D arrays of the logits' family).
template <Array2D L, class Ids>
  requires Real<element_t<L, 2>>
auto logprob_forward(const L& logits, const Ids& targets, double temperature = 1.0) {
  using T = element_t<L, 2>;
  const index_t rows = lmrl::view<2>(logits).shape[0];
  using V = owning_t<L, T, 1>;
  using D = owning_t<L, double, 1>;
  logprob_result<V, D> out{make_like<L, T, 1>({rows}), make_like<L, T, 1>({rows}), make_like<L, double, 1>({rows})};
  logprob_forward(logits, std::span(targets), temperature, out.logp, out.entropy, out.lse);
  return out;
}

// Backward: dL/dlogits [rows x vocab] (contiguous rows, overwritten) from
// dL/dlogp and dL/dentropy [rows] (either may be empty); lse from the forward
// pass, and entropy when dL/dentropy is given.
template <Array2D L, Array1D S, Array1D H, Array1D GP, Array1D GH, WritableArray2D D>
  requires Real<element_t<L, 2>> && std::same_as<element_t<L, 2>, element_t<D, 2>> &&
           (std::same_as<element_t<L, 2>, element_t<S, 1>> || std::same_as<double, element_t<S, 1>>)
void logprob_backward(const L& logits, std::span<const std::int32_t> targets, double temperature, const S& lse,
                      const H& entropy, const GP& grad_logp, const GH& grad_entropy, D&& grad_logits) {
  using T = element_t<L, 2>;
  detail::logprob_backward<T, std::int32_t, element_t<S, 1>>(lmrl::view<2>(logits), targets, temperature, lmrl::view<1>(lse),
                                            lmrl::view<1>(entropy), lmrl::view<1>(grad_logp),
                                            lmrl::view<1>(grad_entropy), lmrl::view<2>(grad_logits));
}

template <Array2D L, Array1D S, Array1D H, Array1D GP, Array1D GH, WritableArray2D D>
  requires Real<element_t<L, 2>> && std::same_as<element_t<L, 2>, element_t<D, 2>> &&
           (std::same_as<element_t<L, 2>, element_t<S, 1>> || std::same_as<double, element_t<S, 1>>)
void logprob_backward(const L& logits, std::span<const std::int64_t> targets, double temperature, const S& lse,
                      const H& entropy, const GP& grad_logp, const GH& grad_entropy, D&& grad_logits) {
  using T = element_t<L, 2>;
  detail::logprob_backward<T, std::int64_t, element_t<S, 1>>(lmrl::view<2>(logits), targets, temperature, lmrl::view<1>(lse),
                                            lmrl::view<1>(entropy), lmrl::view<1>(grad_logp),
                                            lmrl::view<1>(grad_entropy), lmrl::view<2>(grad_logits));
}

}  // namespace lmrl
