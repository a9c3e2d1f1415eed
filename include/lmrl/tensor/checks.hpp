// Argument checks shared by every algorithm. Each failure is an lmrl::error
// that names the function, the argument and the sizes involved.
#pragma once

#include <cmath>
#include <cstddef>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::detail {

template <class A, std::size_t N, class B>
void require_same_shape(const char* function, const char* name_a, const strided_view<A, N>& a,
                        const char* name_b, const strided_view<B, N>& b) {
  if (a.shape != b.shape) fail(function, ": ", name_b, " has shape ", b, " but ", name_a, " has shape ", a);
}

template <class A, std::size_t N>
void require_extent(const char* function, const char* name, const strided_view<A, N>& a, std::size_t dim,
                    index_t expected, const char* expected_what) {
  if (a.shape[dim] != expected)
    fail(function, ": ", name, " has extent ", a.shape[dim], " in dimension ", dim, " but ", expected_what, " is ",
         expected);
}

// Every element of a 0/1 mask is exactly 0 or 1.
template <class M>
void require_mask(const char* function, const char* name, const strided_view<M, 2>& mask) {
  for (index_t i = 0; i < mask.shape[0]; ++i)
    for (index_t j = 0; j < mask.shape[1]; ++j) {
      const auto m = mask(i, j);
      if (!(m == 0 || m == 1))
        fail(function, ": ", name, "(", i, ", ", j, ") = ", static_cast<double>(m), " but a mask holds only 0 or 1");
    }
}

template <class M>
index_t count_active(const strided_view<M, 2>& mask) {
  index_t n = 0;
  for (index_t i = 0; i < mask.shape[0]; ++i)
    for (index_t j = 0; j < mask.shape[1]; ++j) n += mask(i, j) != 0;
  return n;
}

// Finite on every active position (inactive ones may hold anything, even NaN).
template <class T, class M>
void require_finite_where(const char* function, const char* name, const strided_view<T, 2>& x,
                          const strided_view<M, 2>& mask) {
  for (index_t i = 0; i < x.shape[0]; ++i)
    for (index_t j = 0; j < x.shape[1]; ++j)
      if (mask(i, j) != 0 && !std::isfinite(static_cast<double>(x(i, j))))
        fail(function, ": ", name, "(", i, ", ", j, ") = ", static_cast<double>(x(i, j)),
             " is not finite at an active position");
}

inline void require_group_size(const char* function, index_t rows, index_t group_size) {
  if (group_size <= 0) fail(function, ": group_size = ", group_size, " must be positive");
  if (rows % group_size != 0)
    fail(function, ": ", rows, " sequences do not divide into groups of group_size = ", group_size);
}

}  // namespace lmrl::detail
