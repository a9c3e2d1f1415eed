// strided_view<T, N>: the one array type every algorithm is written against.
//
// A pointer, N extents and N strides (in elements). Every backend adapter
// (Eigen, xtensor, std::span/std::vector, device memory) turns its arrays into
// one of these without copying, so an algorithm is written once, runs the same
// instructions on every backend and gives bit-identical results.
#pragma once

#include <array>
#include <cstddef>
#include <ostream>
#include <type_traits>

namespace lmrl {

using index_t = std::ptrdiff_t;

template <class T, std::size_t N>
struct strided_view {
  static_assert(N >= 1 && N <= 3, "lmrl arrays have 1, 2 or 3 dimensions");
  using value_type = std::remove_const_t<T>;
  using element_type = T;
  static constexpr std::size_t rank = N;

  T* data = nullptr;
  std::array<index_t, N> shape{};
  std::array<index_t, N> stride{};

  constexpr strided_view() = default;
  constexpr strided_view(T* d, std::array<index_t, N> s, std::array<index_t, N> st)
      : data(d), shape(s), stride(st) {}
  // Contiguous row-major array of the given shape.
  constexpr strided_view(T* d, std::array<index_t, N> s) : data(d), shape(s) {
    index_t step = 1;
    for (std::size_t k = N; k-- > 0;) {
      stride[k] = step;
      step *= s[k];
    }
  }

  // A view of const elements converts implicitly from a mutable one.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  constexpr strided_view(const strided_view<U, N>& other)  // NOLINT(google-explicit-constructor)
      : data(other.data), shape(other.shape), stride(other.stride) {}

  constexpr index_t extent(std::size_t k) const { return shape[k]; }
  constexpr index_t size() const {
    index_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  constexpr bool empty() const { return size() == 0; }

  constexpr T& operator()(index_t i) const requires(N == 1) { return data[i * stride[0]]; }
  constexpr T& operator()(index_t i, index_t j) const requires(N == 2) {
    return data[i * stride[0] + j * stride[1]];
  }
  constexpr T& operator()(index_t i, index_t j, index_t k) const requires(N == 3) {
    return data[i * stride[0] + j * stride[1] + k * stride[2]];
  }

  // Row i of a matrix as a 1-D view.
  constexpr strided_view<T, 1> row(index_t i) const requires(N == 2) {
    return {data + i * stride[0], {shape[1]}, {stride[1]}};
  }
  // Pointer to row i when rows are contiguous (stride[1] == 1).
  constexpr T* row_data(index_t i) const requires(N == 2) { return data + i * stride[0]; }
  // Rows [first, first + count) of a matrix.
  constexpr strided_view rows(index_t first, index_t count) const requires(N == 2) {
    return {data + first * stride[0], {count, shape[1]}, stride};
  }

  // True when the elements are laid out row-major without gaps.
  constexpr bool is_contiguous() const {
    index_t step = 1;
    for (std::size_t k = N; k-- > 0;) {
      if (shape[k] != 1 && stride[k] != step) return false;
      step *= shape[k];
    }
    return true;
  }
};

template <class T>
using vector_view = strided_view<T, 1>;
template <class T>
using matrix_view = strided_view<T, 2>;
template <class T>
using cube_view = strided_view<T, 3>;

template <class T, std::size_t N>
std::ostream& operator<<(std::ostream& out, const strided_view<T, N>& v) {
  out << '[';
  for (std::size_t k = 0; k < N; ++k) out << (k ? " x " : "") << v.shape[k];
  return out << ']';
}

}  // namespace lmrl
