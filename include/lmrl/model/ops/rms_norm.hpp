// RMSNorm as Hugging Face's Qwen2RMSNorm / LlamaRMSNorm computes it:
//
//   r_i = 1 / sqrt(mean_j x[i, j]^2 + eps)        (the mean summed in double)
//   y[i, j] = w_j * (x[i, j] * r_i)
//
// API (rows contiguous or strided; n rows of width d):
//   rms_norm_forward(x [n x d], w [d], eps, y [n x d], inv_rms [n] or empty)
//       y may alias x (in place); inv_rms keeps r_i for the backward pass.
//   rms_norm_backward(x [n x d], w [d], inv_rms [n], grad_y [n x d], grad_x [n x d], grad_w [d] or empty)
//       grad_x += dL/dx, grad_w += dL/dw (ACCUMULATED: the residual stream
//       already holds the gradient of the skip path):
//         g_j = w_j dy_j,  dL/dx_j = r (g_j - x_j r^2 mean_k(g_k x_k)),
//         dL/dw_j = sum_i dy[i, j] x[i, j] r_i.
// Rows run in parallel under OpenMP; grad_w sums rows in row order, so the
// result does not depend on the thread count.
#pragma once

#include <cmath>
#include <type_traits>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::ops {

template <class T>
void rms_norm_forward(matrix_view<const std::type_identity_t<T>> x, vector_view<const std::type_identity_t<T>> w,
                      double eps, matrix_view<T> y, vector_view<T> inv_rms) {
  const char* f = "rms_norm_forward";
  const index_t n = x.shape[0], d = x.shape[1];
  lmrl::detail::require(w.shape[0] == d, f, ": weight has ", w.shape[0], " elements but x ", x, " has ", d,
                        " columns");
  lmrl::detail::require(y.shape == x.shape, f, ": y has shape ", y, " but x has shape ", x);
  const bool keep = inv_rms.data != nullptr && inv_rms.size() > 0;
  lmrl::detail::require(!keep || inv_rms.shape[0] == n, f, ": inv_rms has ", inv_rms.shape[0], " elements but x has ",
                        n, " rows");
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index_t i = 0; i < n; ++i) {
    double sum = 0;
    for (index_t j = 0; j < d; ++j) sum += static_cast<double>(x(i, j)) * x(i, j);
    const T r = static_cast<T>(1.0 / std::sqrt(sum / static_cast<double>(d) + eps));
    for (index_t j = 0; j < d; ++j) y(i, j) = w(j) * (x(i, j) * r);
    if (keep) inv_rms(i) = r;
  }
}

template <class T>
void rms_norm_backward(matrix_view<const std::type_identity_t<T>> x, vector_view<const std::type_identity_t<T>> w,
                       vector_view<const std::type_identity_t<T>> inv_rms,
                       matrix_view<const std::type_identity_t<T>> grad_y, matrix_view<T> grad_x,
                       vector_view<T> grad_w) {
  const char* f = "rms_norm_backward";
  const index_t n = x.shape[0], d = x.shape[1];
  lmrl::detail::require(w.shape[0] == d, f, ": weight has ", w.shape[0], " elements but x ", x, " has ", d,
                        " columns");
  lmrl::detail::require(inv_rms.shape[0] == n, f, ": inv_rms has ", inv_rms.shape[0], " elements but x has ", n,
                        " rows");
  lmrl::detail::require(grad_y.shape == x.shape, f, ": grad_y has shape ", grad_y, " but x has shape ", x);
  lmrl::detail::require(grad_x.shape == x.shape, f, ": grad_x has shape ", grad_x, " but x has shape ", x);
  const bool want_w = grad_w.data != nullptr && grad_w.size() > 0;
  lmrl::detail::require(!want_w || grad_w.shape[0] == d, f, ": grad_w has ", grad_w.shape[0], " elements but x has ",
                        d, " columns");
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index_t i = 0; i < n; ++i) {
    const T r = inv_rms(i);
    double dot = 0;  // sum_k w_k dy_k x_k
    for (index_t j = 0; j < d; ++j) dot += static_cast<double>(w(j) * grad_y(i, j)) * x(i, j);
    const T c = static_cast<T>(dot / static_cast<double>(d)) * r * r;
    for (index_t j = 0; j < d; ++j) grad_x(i, j) += r * (w(j) * grad_y(i, j) - x(i, j) * c);
  }
  if (!want_w) return;
  thread_local std::vector<double> sums;  // grows once, then reused: no allocation per call
  sums.assign(static_cast<std::size_t>(d), 0.0);
  for (index_t i = 0; i < n; ++i) {
    const T r = inv_rms(i);
    for (index_t j = 0; j < d; ++j) sums[static_cast<std::size_t>(j)] += static_cast<double>(grad_y(i, j)) * (x(i, j) * r);
  }
  for (index_t j = 0; j < d; ++j) grad_w(j) += static_cast<T>(sums[static_cast<std::size_t>(j)]);
}

}  // namespace lmrl::ops
