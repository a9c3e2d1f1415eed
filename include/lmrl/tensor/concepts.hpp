// Tensor concepts: what an algorithm needs from a 1-, 2- or 3-D array.
//
// An array type X takes part by specializing lmrl::backend<X> with
//
//   template <std::size_t N> static strided_view<E, N> view(X& x);   // no copy
//   template <class U, std::size_t N> static auto make(std::array<index_t, N>);
//
// view() exposes the elements (E is const for read-only arrays); make() builds
// a new owning array of the same family, used by the convenience overloads
// that return their result. Adapters live in tensor/span.hpp, tensor/eigen.hpp
// and tensor/xtensor.hpp; a user's own array type needs only its own
// specialization — no base class, no registration.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <type_traits>

#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl {

template <class X, class Enable = void>
struct backend;  // specialized per array family

template <class X>
using backend_of = backend<std::remove_cvref_t<X>>;

// A strided_view is its own backend (views into caller storage are the
// lowest-level way to call every algorithm).
template <class T, std::size_t N>
struct backend<strided_view<T, N>> {
  template <std::size_t M>
    requires(M == N)
  static strided_view<T, N> view(const strided_view<T, N>& x) {
    return x;
  }
  template <class U, std::size_t M>
  static dense<U, M> make(std::array<index_t, M> shape) {
    return dense<U, M>(shape);
  }
};

template <class T, std::size_t N>
struct backend<dense<T, N>> {
  template <std::size_t M>
    requires(M == N)
  static strided_view<T, N> view(dense<T, N>& x) {
    return x.view();
  }
  template <std::size_t M>
    requires(M == N)
  static strided_view<const T, N> view(const dense<T, N>& x) {
    return x.view();
  }
  template <class U, std::size_t M>
  static dense<U, M> make(std::array<index_t, M> shape) {
    return dense<U, M>(shape);
  }
};


// view<N>(x): the strided view of any supported array. Arrays whose rank is
// only known at run time (xt::xarray) are checked there.
template <std::size_t N, class X>
auto view(X&& x) -> decltype(backend_of<X>::template view<N>(x)) {
  return backend_of<X>::template view<N>(x);
}

template <class X, std::size_t N>
concept ArrayOfRank = requires(X& x) {
  { lmrl::view<N>(x) };
} && std::is_arithmetic_v<typename decltype(lmrl::view<N>(std::declval<X&>()))::value_type>;

template <class X>
concept Array1D = ArrayOfRank<X, 1>;
template <class X>
concept Array2D = ArrayOfRank<X, 2>;
template <class X>
concept Array3D = ArrayOfRank<X, 3>;

// The element type of an array, without const.
template <class X, std::size_t N>
using element_t = typename decltype(lmrl::view<N>(std::declval<X&>()))::value_type;

// Arrays an algorithm may write its output into.
template <class X, std::size_t N>
concept WritableArrayOfRank =
    ArrayOfRank<X, N> &&
    !std::is_const_v<typename decltype(lmrl::view<N>(std::declval<X&>()))::element_type>;

template <class X>
concept WritableArray1D = WritableArrayOfRank<X, 1>;
template <class X>
concept WritableArray2D = WritableArrayOfRank<X, 2>;
template <class X>
concept WritableArray3D = WritableArrayOfRank<X, 3>;

// Floating-point element types the algorithms are written for.
template <class T>
concept Real = std::same_as<T, float> || std::same_as<T, double>;

// make_like<X, U, N>(shape): a new array of X's family holding U, zero-filled.
template <class X, class U, std::size_t N>
auto make_like(std::array<index_t, N> shape) {
  return backend_of<X>::template make<U, N>(shape);
}

template <class X, class U, std::size_t N>
using owning_t = decltype(make_like<X, U, N>(std::array<index_t, N>{}));

}  // namespace lmrl
