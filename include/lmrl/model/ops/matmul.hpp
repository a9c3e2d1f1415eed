// Matrix products of the transformer, through Eigen's GEMM.
//
// API (all views have contiguous rows: stride[1] == 1; row strides are free):
//
//   matmul_nt(a [m x k], b [n x k], c [m x n], accumulate)  c (+)= a . b^T
//   matmul_nn(a [m x k], b [k x n], c [m x n], accumulate)  c (+)= a . b
//   matmul_tn(a [k x m], b [k x n], c [m x n], accumulate)  c (+)= a^T . b
//   add_bias(c [m x n], bias [n])                            c[i, :] += bias
//   add_column_sums(g [m x n], bias_grad [n])                bias_grad += sum_i g[i, :]   (double sums)
//
// A Linear layer y = x . W^T + b with W stored as PyTorch stores it ([out x in],
// row-major) is matmul_nt(x, W, y) + add_bias; its backward is
// dx (+)= dy . W (matmul_nn), dW += dy^T . x (matmul_tn), db += column sums of dy.
//
// The views are wrapped in Eigen::Map (row-major, outer stride = the view's
// row stride), so nothing is copied; Eigen runs its GEMM on as many threads as
// OpenMP gives it when the program is compiled with -fopenmp.
#pragma once

#include <type_traits>

#include <Eigen/Core>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::ops {

namespace detail {

template <class T>
using row_major = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

template <class T>
void require_rows(const char* function, const char* name, const matrix_view<T>& m) {
  if (m.shape[1] > 1 && m.stride[1] != 1)
    lmrl::detail::fail(function, ": ", name, " must have contiguous rows but has strides [", m.stride[0], ", ",
                       m.stride[1], "]");
}

// An Eigen map over a view (no copy). Rows of length 1 may have any column stride.
template <class T>
auto map(const matrix_view<T>& m) {
  using M = std::conditional_t<std::is_const_v<T>, const row_major<T>, row_major<T>>;
  const index_t outer = m.shape[0] > 1 ? m.stride[0] : m.shape[1];
  return Eigen::Map<M, Eigen::Unaligned, Eigen::OuterStride<>>(m.data, m.shape[0], m.shape[1],
                                                                 Eigen::OuterStride<>(outer < 1 ? 1 : outer));
}

template <class C, class P>
void assign(C&& c, const P& product, bool accumulate) {
  if (accumulate)
    c.noalias() += product;
  else
    c.noalias() = product;
}

}  // namespace detail

// c (+)= a . b^T
template <class T>
void matmul_nt(matrix_view<const std::type_identity_t<T>> a, matrix_view<const std::type_identity_t<T>> b, matrix_view<T> c, bool accumulate = false) {
  const char* f = "matmul_nt";
  lmrl::detail::require(a.shape[1] == b.shape[1] && c.shape[0] == a.shape[0] && c.shape[1] == b.shape[0], f,
                        ": a ", a, " . b^T with b ", b, " does not fit c ", c);
  detail::require_rows(f, "a", a);
  detail::require_rows(f, "b", b);
  detail::require_rows(f, "c", c);
  if (c.size() == 0) return;
  detail::assign(detail::map(c), detail::map(a) * detail::map(b).transpose(), accumulate);
}

// c (+)= a . b
template <class T>
void matmul_nn(matrix_view<const std::type_identity_t<T>> a, matrix_view<const std::type_identity_t<T>> b, matrix_view<T> c, bool accumulate = false) {
  const char* f = "matmul_nn";
  lmrl::detail::require(a.shape[1] == b.shape[0] && c.shape[0] == a.shape[0] && c.shape[1] == b.shape[1], f,
                        ": a ", a, " . b with b ", b, " does not fit c ", c);
  detail::require_rows(f, "a", a);
  detail::require_rows(f, "b", b);
  detail::require_rows(f, "c", c);
  if (c.size() == 0) return;
  detail::assign(detail::map(c), detail::map(a) * detail::map(b), accumulate);
}

// c (+)= a^T . b
template <class T>
void matmul_tn(matrix_view<const std::type_identity_t<T>> a, matrix_view<const std::type_identity_t<T>> b, matrix_view<T> c, bool accumulate = false) {
  const char* f = "matmul_tn";
  lmrl::detail::require(a.shape[0] == b.shape[0] && c.shape[0] == a.shape[1] && c.shape[1] == b.shape[1], f,
                        ": a^T with a ", a, " . b with b ", b, " does not fit c ", c);
  detail::require_rows(f, "a", a);
  detail::require_rows(f, "b", b);
  detail::require_rows(f, "c", c);
  if (c.size() == 0) return;
  detail::assign(detail::map(c), detail::map(a).transpose() * detail::map(b), accumulate);
}

// c[i, :] += bias (an empty bias is no bias).
template <class T>
void add_bias(matrix_view<T> c, vector_view<const std::type_identity_t<T>> bias) {
  if (bias.data == nullptr || bias.size() == 0) return;
  lmrl::detail::require(bias.shape[0] == c.shape[1], "add_bias: bias has ", bias.shape[0],
                        " elements but the output has ", c.shape[1], " columns");
  for (index_t i = 0; i < c.shape[0]; ++i) {
    T* row = c.row_data(i);
    for (index_t j = 0; j < c.shape[1]; ++j) row[j] += bias(j);
  }
}

// bias_grad[j] += sum_i g[i, j], summed in double in row order (deterministic).
template <class T>
void add_column_sums(matrix_view<const std::type_identity_t<T>> g, vector_view<T> bias_grad) {
  if (bias_grad.data == nullptr || bias_grad.size() == 0) return;
  lmrl::detail::require(bias_grad.shape[0] == g.shape[1], "add_column_sums: bias_grad has ", bias_grad.shape[0],
                        " elements but the gradient has ", g.shape[1], " columns");
  const index_t n = g.shape[1];
  constexpr index_t block = 256;  // columns summed together: the accumulators stay in L1
  double acc[block];
  for (index_t j0 = 0; j0 < n; j0 += block) {
    const index_t w = n - j0 < block ? n - j0 : block;
    for (index_t j = 0; j < w; ++j) acc[j] = 0;
    for (index_t i = 0; i < g.shape[0]; ++i) {
      const T* row = g.row_data(i) + j0;
      for (index_t j = 0; j < w; ++j) acc[j] += row[j];
    }
    for (index_t j = 0; j < w; ++j) bias_grad(j0 + j) += static_cast<T>(acc[j]);
  }
}

}  // namespace lmrl::ops
