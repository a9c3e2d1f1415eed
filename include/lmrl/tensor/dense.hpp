// lmrl::dense<T, N>: a small owning, row-major N-D array, for callers who hold
// only views or spans and want a result back, and for the tests.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

// An owning, row-major, zero-initialized N-D array.
template <class T, std::size_t N>
class dense {
 public:
  dense() = default;
  explicit dense(std::array<index_t, N> shape) : shape_(shape), values_(count(shape)) {}

  strided_view<T, N> view() { return {values_.data(), shape_}; }
  strided_view<const T, N> view() const { return {values_.data(), shape_}; }
  const std::array<index_t, N>& shape() const { return shape_; }
  T* data() { return values_.data(); }
  const T* data() const { return values_.data(); }
  index_t size() const { return static_cast<index_t>(values_.size()); }

  template <class... I>
  T& operator()(I... i) { return view()(static_cast<index_t>(i)...); }
  template <class... I>
  const T& operator()(I... i) const { return view()(static_cast<index_t>(i)...); }

 private:
  static std::size_t count(const std::array<index_t, N>& shape) {
    std::size_t n = 1;
    for (auto s : shape) {
      detail::require(s >= 0, "lmrl::dense: negative extent ", s);
      n *= static_cast<std::size_t>(s);
    }
    return n;
  }
  std::array<index_t, N> shape_{};
  std::vector<T> values_;
};

}  // namespace lmrl
