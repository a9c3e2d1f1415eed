// Global gradient-norm clipping as torch.nn.utils.clip_grad_norm_ (norm_type 2):
//
//   total_norm = sqrt(sum_i g_i^2)                       over the whole buffer
//   clip_coef  = min(1, max_norm / (total_norm + 1e-6))
//   g         <- g * clip_coef                           (also when clip_coef == 1, as torch)
//
// and returns the norm before clipping. The sum of squares is accumulated in
// double in a fixed order that does not depend on the number of threads: the
// buffer is cut into a fixed number of chunks (set by its length only), each
// chunk summed over eight interleaved lanes, the chunk sums added in order.
// So the result is the same bits with and without OpenMP.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <span>

#include "lmrl/error.hpp"
#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

namespace detail {

// Sum of squares of x[0, n) in double over eight interleaved lanes, combined
// pairwise in a fixed order.
template <Real T>
double sum_of_squares_serial(const T* x, index_t n) {
  constexpr index_t lanes = 8;
  std::array<double, lanes> acc{};
  index_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (index_t l = 0; l < lanes; ++l) {
      const double xi = static_cast<double>(x[i + l]);
      acc[l] += xi * xi;
    }
  for (index_t l = 0; i < n; ++i, ++l) {
    const double xi = static_cast<double>(x[i]);
    acc[l] += xi * xi;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace detail

// sqrt(sum of squares) of a contiguous buffer, accumulated in double. The
// same bits for any number of threads.
template <Real T>
double l2_norm(std::span<const T> x) {
  constexpr index_t chunks = 64;    // fixed: the order of the reduction depends on the length only
  constexpr index_t small = 1 << 15;  // below this, one chunk and no threads
  const index_t n = static_cast<index_t>(x.size());
  if (n < small) return std::sqrt(detail::sum_of_squares_serial(x.data(), n));
  std::array<double, chunks> partial{};
  const index_t per_chunk = (n + chunks - 1) / chunks;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index_t c = 0; c < chunks; ++c) {
    const index_t begin = std::min(n, c * per_chunk);
    const index_t end = std::min(n, begin + per_chunk);
    partial[static_cast<std::size_t>(c)] = detail::sum_of_squares_serial(x.data() + begin, end - begin);
  }
  double total = 0;
  for (double p : partial) total += p;
  return std::sqrt(total);
}

// Any contiguous 1-D array (Eigen vector, xtensor, std::vector).
template <class X>
  requires(Array1D<X> && Real<element_t<X, 1>>)
double l2_norm(const X& x) {
  const auto v = view<1>(x);
  detail::require(v.shape[0] <= 1 || v.stride[0] == 1, "l2_norm: x has stride ", v.stride[0],
                  " but a contiguous buffer is needed");
  return l2_norm(std::span<const element_t<X, 1>>(v.data, static_cast<std::size_t>(v.shape[0])));
}

// Multiplies every gradient by factor (element type arithmetic, as torch's g.mul_).
template <Real T>
void scale_gradients(std::span<T> grads, T factor) {
  T* const g = grads.data();
  const index_t n = static_cast<index_t>(grads.size());
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (n >= (index_t{1} << 16))
#endif
  for (index_t i = 0; i < n; ++i) g[i] = g[i] * factor;
}

// torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=2,
// error_if_nonfinite): clips in place, returns the total norm before clipping.
// With error_if_nonfinite=false (torch's default) a NaN/inf norm scales the
// gradients anyway, as torch does (NaN stays NaN; an inf norm zeroes the finite ones).
// The factor clip_grad_norm scales by: max_norm / (norm + 1e-6), at most 1 (NaN stays NaN, as torch.clamp).
inline double clip_coefficient(double total_norm, double max_norm) {
  const double clip_coef = max_norm / (total_norm + 1e-6);
  return std::isnan(clip_coef) ? clip_coef : std::min(clip_coef, 1.0);
}

template <Real T>
double clip_grad_norm(std::span<T> grads, double max_norm, bool error_if_nonfinite = false) {
  detail::require(max_norm > 0 && !std::isnan(max_norm), "clip_grad_norm: max_norm = ", max_norm,
                  " must be > 0");
  const double total_norm = l2_norm(std::span<const T>(grads));
  if (error_if_nonfinite && !std::isfinite(total_norm))
    detail::fail("clip_grad_norm: the total L2 norm of the ", grads.size(), " gradients is ", total_norm,
                 " (not finite), so it cannot be clipped; pass error_if_nonfinite = false to scale by it anyway");
  scale_gradients(grads, static_cast<T>(clip_coefficient(total_norm, max_norm)));
  return total_norm;
}

// Any contiguous 1-D array (Eigen vector, xtensor, std::vector).
template <class G>
  requires(WritableArray1D<G> && Real<element_t<G, 1>>)
double clip_grad_norm(G&& grads, double max_norm, bool error_if_nonfinite = false) {
  using T = element_t<G, 1>;
  const auto v = view<1>(grads);
  detail::require(v.shape[0] <= 1 || v.stride[0] == 1, "clip_grad_norm: grads has stride ", v.stride[0],
                  " but a contiguous buffer is needed");
  return clip_grad_norm(std::span<T>(v.data, static_cast<std::size_t>(v.shape[0])), max_norm, error_if_nonfinite);
}

}  // namespace lmrl
