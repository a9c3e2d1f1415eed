// Eigen adapter: every dense Eigen expression with direct memory access
// (Matrix, Array, Map, Ref, Block of those, either storage order) is an lmrl
// array without a copy. Compile-time vectors are 1-D; everything is 2-D.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cstddef>
#include <type_traits>

#include "lmrl/tensor/concepts.hpp"

namespace lmrl {
namespace detail {
template <class X>
concept EigenDirect = std::is_base_of_v<Eigen::DenseBase<X>, X> &&
                      ((Eigen::internal::traits<X>::Flags & Eigen::DirectAccessBit) != 0);
}  // namespace detail

template <class X>
struct backend<X, std::enable_if_t<detail::EigenDirect<X>>> {
  template <std::size_t N, class Y>
    requires(N == 2 || (N == 1 && bool(X::IsVectorAtCompileTime)))
  static auto view(Y& x) {
    using E = std::remove_pointer_t<decltype(x.data())>;
    if constexpr (N == 1) {
      return strided_view<E, 1>(x.data(), {static_cast<index_t>(x.size())},
                                {static_cast<index_t>(x.innerStride())});
    } else {
      const auto inner = static_cast<index_t>(x.innerStride());
      const auto outer = static_cast<index_t>(x.outerStride());
      const std::array<index_t, 2> stride =
          X::IsRowMajor ? std::array<index_t, 2>{outer, inner} : std::array<index_t, 2>{inner, outer};
      return strided_view<E, 2>(x.data(), {static_cast<index_t>(x.rows()), static_cast<index_t>(x.cols())},
                                stride);
    }
  }

  // New results are plain Eigen objects of the same kind (Matrix or Array).
  template <class U, std::size_t N>
  static auto make(std::array<index_t, N> shape) {
    constexpr bool is_array = std::is_base_of_v<Eigen::ArrayBase<X>, X>;
    if constexpr (N == 1) {
      using R = std::conditional_t<is_array, Eigen::Array<U, Eigen::Dynamic, 1>, Eigen::Matrix<U, Eigen::Dynamic, 1>>;
      return R(R::Zero(shape[0]));
    } else if constexpr (N == 2) {
      using R = std::conditional_t<is_array, Eigen::Array<U, Eigen::Dynamic, Eigen::Dynamic>,
                                   Eigen::Matrix<U, Eigen::Dynamic, Eigen::Dynamic>>;
      return R(R::Zero(shape[0], shape[1]));
    } else {
      return dense<U, N>(shape);
    }
  }
};

}  // namespace lmrl
