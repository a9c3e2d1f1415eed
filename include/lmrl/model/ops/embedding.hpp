// Token embedding: a row gather from the table, and its scatter-add backward.
//
// API:
//   embedding_forward(table [vocab x d], ids [n], row_mask [n] or empty, out [n x d])
//       out[r, :] = table[ids[r], :]; rows whose mask is 0 get zeros and their
//       id is not read (padding may hold any id).
//   embedding_backward(grad_out [n x d], ids [n], row_mask [n] or empty, grad_table [vocab x d])
//       grad_table[ids[r], :] += grad_out[r, :] for every unmasked row, in row
//       order (deterministic; rows sharing an id add up).
// Ids out of [0, vocab) are an lmrl::error naming the row and the id.
#pragma once

#include <cstdint>
#include <span>
#include <type_traits>

#include "lmrl/error.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::ops {

namespace detail {
template <class T>
bool row_active(vector_view<const T> mask, index_t r) {
  return mask.data == nullptr || mask.size() == 0 || mask(r) != T(0);
}
}  // namespace detail

template <class T>
void embedding_forward(matrix_view<const std::type_identity_t<T>> table, std::span<const std::int32_t> ids,
                       vector_view<const std::type_identity_t<T>> row_mask, matrix_view<T> out) {
  const char* f = "embedding_forward";
  const index_t n = static_cast<index_t>(ids.size()), vocab = table.shape[0], d = table.shape[1];
  lmrl::detail::require(out.shape[0] == n && out.shape[1] == d, f, ": out has shape ", out, " but ", n,
                        " ids of a table ", table, " need [", n, " x ", d, "]");
  lmrl::detail::require(row_mask.size() == 0 || row_mask.shape[0] == n, f, ": row_mask has ", row_mask.shape[0],
                        " elements but there are ", n, " ids");
  for (index_t r = 0; r < n; ++r) {
    if (!detail::row_active<T>(row_mask, r)) {
      for (index_t j = 0; j < d; ++j) out(r, j) = T(0);
      continue;
    }
    const std::int32_t id = ids[static_cast<std::size_t>(r)];
    if (id < 0 || id >= vocab) lmrl::detail::fail(f, ": ids[", r, "] = ", id, " is out of range for a vocabulary of ", vocab);
    for (index_t j = 0; j < d; ++j) out(r, j) = table(id, j);
  }
}

template <class T>
void embedding_backward(matrix_view<const std::type_identity_t<T>> grad_out, std::span<const std::int32_t> ids,
                        vector_view<const std::type_identity_t<T>> row_mask, matrix_view<T> grad_table) {
  const char* f = "embedding_backward";
  const index_t n = static_cast<index_t>(ids.size()), vocab = grad_table.shape[0], d = grad_table.shape[1];
  lmrl::detail::require(grad_out.shape[0] == n && grad_out.shape[1] == d, f, ": grad_out has shape ", grad_out,
                        " but ", n, " ids of a table ", grad_table, " need [", n, " x ", d, "]");
  lmrl::detail::require(row_mask.size() == 0 || row_mask.shape[0] == n, f, ": row_mask has ", row_mask.shape[0],
                        " elements but there are ", n, " ids");
  for (index_t r = 0; r < n; ++r) {
    if (!detail::row_active<T>(row_mask, r)) continue;
    const std::int32_t id = ids[static_cast<std::size_t>(r)];
    if (id < 0 || id >= vocab) lmrl::detail::fail(f, ": ids[", r, "] = ", id, " is out of range for a vocabulary of ", vocab);
    for (index_t j = 0; j < d; ++j) grad_table(id, j) += grad_out(r, j);
  }
}

}  // namespace lmrl::ops
