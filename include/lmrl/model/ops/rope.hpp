// Rotary position embeddings in Hugging Face's rotate_half convention (Llama,
// Qwen2): a head vector x of even length hd is split into halves x1 = x[:hd/2],
// x2 = x[hd/2:] (NOT interleaved pairs), and with angle a_i = p * inv_freq_i,
//
//   inv_freq_i = 1 / theta^(2i / hd),  i < hd/2
//   y1 = x1 cos a - x2 sin a,   y2 = x2 cos a + x1 sin a.
//
// The backward pass is the inverse rotation (the transpose):
//   dx1 = dy1 cos a + dy2 sin a,   dx2 = dy2 cos a - dy1 sin a.
//
// API:
//   rope_table<T>(head_dim, max_positions, theta)      cos/sin for positions [0, max_positions)
//   rope_forward(table, x [n x heads*hd], positions [n], heads)    in place
//   rope_backward(table, g [n x heads*hd], positions [n], heads)   in place: g <- dL/dx from dL/dy
// A negative position marks a padded row, left unchanged.
//
// The table is computed as transformers computes it, in the element type:
// inv_freq = 1 / theta^(float(2i) / hd), angle = inv_freq * float(p), cos and
// sin of that angle (for T = float this matches its float32 cos/sin tables).
#pragma once

#include <cmath>
#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::ops {

template <class T>
class rope_table {
 public:
  rope_table() = default;
  rope_table(index_t head_dim, index_t max_positions, double theta)
      : half_(head_dim / 2), positions_(max_positions) {
    lmrl::detail::require(head_dim > 0 && head_dim % 2 == 0, "rope_table: head_dim = ", head_dim,
                          " must be positive and even");
    lmrl::detail::require(max_positions > 0, "rope_table: max_positions = ", max_positions, " must be positive");
    lmrl::detail::require(theta > 0, "rope_table: theta = ", theta, " must be positive");
    cos_.resize(static_cast<std::size_t>(half_ * positions_));
    sin_.resize(cos_.size());
    for (index_t i = 0; i < half_; ++i) {
      const T inv_freq = T(1) / std::pow(static_cast<T>(theta), static_cast<T>(2 * i) / static_cast<T>(head_dim));
      for (index_t p = 0; p < positions_; ++p) {
        const T angle = inv_freq * static_cast<T>(p);
        cos_[static_cast<std::size_t>(p * half_ + i)] = std::cos(angle);
        sin_[static_cast<std::size_t>(p * half_ + i)] = std::sin(angle);
      }
    }
  }
  index_t head_dim() const { return 2 * half_; }
  index_t max_positions() const { return positions_; }
  const T* cos(index_t p) const { return cos_.data() + p * half_; }
  const T* sin(index_t p) const { return sin_.data() + p * half_; }

 private:
  index_t half_ = 0, positions_ = 0;
  std::vector<T> cos_, sin_;
};

namespace detail {

template <class T, bool Inverse>
void rope_apply(const rope_table<T>& table, matrix_view<T> x, std::span<const index_t> positions, index_t heads,
                const char* f) {
  const index_t hd = table.head_dim(), half = hd / 2, n = x.shape[0];
  lmrl::detail::require(heads > 0 && x.shape[1] == heads * hd, f, ": x has shape ", x, " but ", heads,
                        " heads of head_dim ", hd, " need ", heads * hd, " columns");
  lmrl::detail::require(static_cast<index_t>(positions.size()) == n, f, ": positions has ", positions.size(),
                        " elements but x has ", n, " rows");
  lmrl::detail::require(x.shape[1] <= 1 || x.stride[1] == 1, f, ": x must have contiguous rows");
  for (index_t r = 0; r < n; ++r) {
    const index_t p = positions[static_cast<std::size_t>(r)];
    lmrl::detail::require(p < table.max_positions(), f, ": positions[", r, "] = ", p,
                          " is beyond the table's max_positions = ", table.max_positions());
  }
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (index_t r = 0; r < n; ++r) {
    const index_t p = positions[static_cast<std::size_t>(r)];
    if (p < 0) continue;
    const T* c = table.cos(p);
    const T* s = table.sin(p);
    for (index_t h = 0; h < heads; ++h) {
      T* v = x.row_data(r) + h * hd;
      for (index_t i = 0; i < half; ++i) {
        const T a = v[i], b = v[i + half];
        if constexpr (Inverse) {
          v[i] = a * c[i] + b * s[i];
          v[i + half] = b * c[i] - a * s[i];
        } else {
          v[i] = a * c[i] - b * s[i];
          v[i + half] = b * c[i] + a * s[i];
        }
      }
    }
  }
}

}  // namespace detail

template <class T>
void rope_forward(const rope_table<T>& table, matrix_view<T> x, std::span<const index_t> positions, index_t heads) {
  detail::rope_apply<T, false>(table, x, positions, heads, "rope_forward");
}

template <class T>
void rope_backward(const rope_table<T>& table, matrix_view<T> grad, std::span<const index_t> positions,
                   index_t heads) {
  detail::rope_apply<T, true>(table, grad, positions, heads, "rope_backward");
}

}  // namespace lmrl::ops
