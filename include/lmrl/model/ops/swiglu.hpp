// SwiGLU, the gated activation of Qwen2/Llama's MLP:
//
//   down_proj( silu(gate_proj(x)) * up_proj(x) ),   silu(g) = g sigmoid(g)
//
// This header is the elementwise middle; the projections are matmul.hpp.
//   swiglu_forward(gate [n x f], up [n x f], out [n x f])      out = silu(gate) * up
//   swiglu_backward(gate, up, grad_out, grad_gate, grad_up)    (overwritten)
//       with s = sigmoid(g):  d silu / dg = s (1 + g (1 - s)),
//       grad_gate = grad_out * up * s (1 + g (1 - s)),  grad_up = grad_out * silu(g).
// Rows run in parallel under OpenMP.
#pragma once

#include <cmath>
#include <type_traits>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::ops {

namespace detail {
template <class T>
T sigmoid(T g) {
  return T(1) / (T(1) + std::exp(-g));
}
}  // namespace detail

template <class T>
void swiglu_forward(matrix_view<const std::type_identity_t<T>> gate, matrix_view<const std::type_identity_t<T>> up,
                    matrix_view<T> out) {
  const char* f = "swiglu_forward";
  lmrl::detail::require(up.shape == gate.shape, f, ": up has shape ", up, " but gate has shape ", gate);
  lmrl::detail::require(out.shape == gate.shape, f, ": out has shape ", out, " but gate has shape ", gate);
  const index_t n = gate.shape[0], m = gate.shape[1];
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j) {
      const T g = gate(i, j);
      out(i, j) = g * detail::sigmoid(g) * up(i, j);
    }
}

template <class T>
void swiglu_backward(matrix_view<const std::type_identity_t<T>> gate, matrix_view<const std::type_identity_t<T>> up,
                     matrix_view<const std::type_identity_t<T>> grad_out, matrix_view<T> grad_gate,
                     matrix_view<T> grad_up) {
  const char* f = "swiglu_backward";
  lmrl::detail::require(up.shape == gate.shape, f, ": up has shape ", up, " but gate has shape ", gate);
  lmrl::detail::require(grad_out.shape == gate.shape, f, ": grad_out has shape ", grad_out, " but gate has shape ",
                        gate);
  lmrl::detail::require(grad_gate.shape == gate.shape && grad_up.shape == gate.shape, f, ": grad_gate ", grad_gate,
                        " and grad_up ", grad_up, " must have gate's shape ", gate);
  const index_t n = gate.shape[0], m = gate.shape[1];
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < m; ++j) {
      const T g = gate(i, j), u = up(i, j), dy = grad_out(i, j);
      const T s = detail::sigmoid(g);
      grad_up(i, j) = dy * g * s;
      grad_gate(i, j) = dy * u * s * (T(1) + g * (T(1) - s));
    }
}

}  // namespace lmrl::ops
