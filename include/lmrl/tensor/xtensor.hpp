// xtensor adapter: xt::xtensor, xt::xarray, their adaptors (xt::adapt) and
// strided views that expose their memory (has_data_interface) are lmrl arrays
// without a copy, in either layout. An xarray's rank is checked at run time.
#pragma once

#include <array>
#include <cstddef>
#include <type_traits>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xutils.hpp>

#include "lmrl/error.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl {
namespace detail {
template <class X>
concept XtensorDirect = xt::is_xexpression<X>::value && xt::has_data_interface<X>::value;

template <class X>
concept XtensorStaticRank = requires { std::tuple_size<typename X::shape_type>::value; };
}  // namespace detail

template <class X>
struct backend<X, std::enable_if_t<detail::XtensorDirect<X>>> {
  template <std::size_t N, class Y>
    requires(!detail::XtensorStaticRank<X> || std::tuple_size<typename X::shape_type>::value == N)
  static auto view(Y& x) {
    using E = std::remove_pointer_t<decltype(x.data())>;
    detail::require(x.dimension() == N, "lmrl: an xtensor array of rank ", x.dimension(),
                    " was given where rank ", N, " is needed");
    std::array<index_t, N> shape{};
    std::array<index_t, N> stride{};
    for (std::size_t k = 0; k < N; ++k) {
      shape[k] = static_cast<index_t>(x.shape()[k]);
      stride[k] = static_cast<index_t>(x.strides()[k]);
    }
    return strided_view<E, N>(x.data() + x.data_offset(), shape, stride);
  }

  // New results are xt::xtensor (static rank) or xt::xarray (dynamic rank).
  template <class U, std::size_t N>
  static auto make(std::array<index_t, N> shape) {
    std::array<std::size_t, N> s{};
    for (std::size_t k = 0; k < N; ++k) s[k] = static_cast<std::size_t>(shape[k]);
    if constexpr (detail::XtensorStaticRank<X>) {
      return xt::xtensor<U, N>(s, U(0));
    } else {
      return xt::xarray<U>(s, U(0));
    }
  }
};

}  // namespace lmrl
