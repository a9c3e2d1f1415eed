// SwiGLU, the gated activation of Qwen2/Llama's MLP:
//
//   down_proj( silu(gate_proj(x)) * up_proj(x) ),   silu(g) = g sigmoid(g)
//
// This header is the elementwise middle; the projections are matmul.hpp.
//   swiglu_forward(gate [n x f], up [n x f], out [n x f])      out = silu(gate) * up
//   swiglu_backward(gate, up, grad_out, grad_gate, grad_up)    (overwritten)
//       with s = sigmoid(g):  d silu / dg = s (1 + g (1 - s)),
//       grad_gate = grad_out * up * s (1 + g (1 - s)),  grad_up = grad_out * silu(g).
// Rows run in parallel under OpenMP. Float rows with unit stride go through
// Eigen's vectorized exp in fixed chunks of 16 columns (a few ulp from
// std::exp), the last m % 16 columns through std::exp: which path a value
// takes depends on its column alone, never on where its row sits in memory,
// so a row gives the same bits batched or alone. Doubles take the scalar loop.
#pragma once

#include <Eigen/Core>
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

inline constexpr index_t swiglu_chunk = 16;
using swiglu_chunk_array = Eigen::Array<float, swiglu_chunk, 1>;

// out = silu(g) * u over one contiguous row of m floats.
inline void swiglu_forward_row(const float* g, const float* u, float* out, index_t m) {
  using in = Eigen::Map<const swiglu_chunk_array>;
  index_t j = 0;
  for (; j + swiglu_chunk <= m; j += swiglu_chunk) {
    const in gc(g + j), uc(u + j);
    Eigen::Map<swiglu_chunk_array>(out + j) = gc / (1.0f + (-gc).exp()) * uc;
  }
  for (; j < m; ++j) out[j] = g[j] * sigmoid(g[j]) * u[j];
}

// grad_up = dy silu(g), grad_gate = dy u s (1 + g (1 - s)) over one contiguous row.
inline void swiglu_backward_row(const float* g, const float* u, const float* dy, float* grad_gate, float* grad_up,
                                index_t m) {
  using in = Eigen::Map<const swiglu_chunk_array>;
  index_t j = 0;
  for (; j + swiglu_chunk <= m; j += swiglu_chunk) {
    const in gc(g + j), uc(u + j), dyc(dy + j);
    const swiglu_chunk_array sc = 1.0f / (1.0f + (-gc).exp());
    Eigen::Map<swiglu_chunk_array>(grad_up + j) = dyc * gc * sc;
    Eigen::Map<swiglu_chunk_array>(grad_gate + j) = dyc * uc * sc * (1.0f + gc * (1.0f - sc));
  }
  for (; j < m; ++j) {
    const float s = sigmoid(g[j]);
    grad_up[j] = dy[j] * g[j] * s;
    grad_gate[j] = dy[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
  }
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
  for (index_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      if (gate.stride[1] == 1 && up.stride[1] == 1 && out.stride[1] == 1) {
        detail::swiglu_forward_row(&gate(i, 0), &up(i, 0), &out(i, 0), m);
        continue;
      }
    }
    for (index_t j = 0; j < m; ++j) {
      const T g = gate(i, j);
      out(i, j) = g * detail::sigmoid(g) * up(i, j);
    }
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
  for (index_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>) {
      if (gate.stride[1] == 1 && up.stride[1] == 1 && grad_out.stride[1] == 1 && grad_gate.stride[1] == 1 &&
          grad_up.stride[1] == 1) {
        detail::swiglu_backward_row(&gate(i, 0), &up(i, 0), &grad_out(i, 0), &grad_gate(i, 0), &grad_up(i, 0), m);
        continue;
      }
    }
    for (index_t j = 0; j < m; ++j) {
      const T g = gate(i, j), u = up(i, j), dy = grad_out(i, j);
      const T s = detail::sigmoid(g);
      grad_up(i, j) = dy * g * s;
      grad_gate(i, j) = dy * u * s * (T(1) + g * (T(1) - s));
    }
  }
}

}  // namespace lmrl::ops
