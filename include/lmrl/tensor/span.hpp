// Adapters for the standard library: std::vector<T> and std::span<T> are 1-D
// arrays. Results of the convenience overloads come back as std::vector (1-D)
// or lmrl::dense (2-D, 3-D).
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <vector>

#include "lmrl/tensor/concepts.hpp"

namespace lmrl {

template <class T, class A>
struct backend<std::vector<T, A>> {
  template <std::size_t M>
    requires(M == 1)
  static strided_view<T, 1> view(std::vector<T, A>& x) {
    return {x.data(), {static_cast<index_t>(x.size())}};
  }
  template <std::size_t M>
    requires(M == 1)
  static strided_view<const T, 1> view(const std::vector<T, A>& x) {
    return {x.data(), {static_cast<index_t>(x.size())}};
  }
  template <class U, std::size_t M>
  static auto make(std::array<index_t, M> shape) {
    if constexpr (M == 1) {
      return std::vector<U>(static_cast<std::size_t>(shape[0]));
    } else {
      return dense<U, M>(shape);
    }
  }
};

template <class T, std::size_t Extent>
struct backend<std::span<T, Extent>> {
  template <std::size_t M>
    requires(M == 1)
  static strided_view<T, 1> view(const std::span<T, Extent>& x) {
    return {x.data(), {static_cast<index_t>(x.size())}};
  }
  template <class U, std::size_t M>
  static auto make(std::array<index_t, M> shape) {
    return backend<std::vector<U>>::template make<U, M>(shape);
  }
};

}  // namespace lmrl
