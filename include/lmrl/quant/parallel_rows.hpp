// The rows of a matrix quantized in parallel (quantized_matrix, int8_rows): each
// row is independent, so
//
//   for_row_ranges(rows, values, f)   calls f(first, last) on consecutive ranges
//                                     of rows that together cover [0, rows)
//
// over OpenMP threads when the build has OpenMP and the matrix has at least
// parallel_rows_min_values values (a smaller one does not pay for waking the
// threads), else f(0, rows) on the calling thread. f quantizes its rows in
// order; the bytes do not depend on the number of threads. The ranges are
// several per thread, handed out as threads come free, so that a core busy
// with other work holds up less of the matrix.
//
// No exception leaves an OpenMP thread: a range stops at its first row that
// throws and keeps that exception; after the loop the one of the lowest range
// is rethrown. That is the error of the lowest row that has one, the error the
// serial loop raises, whatever the number of threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <vector>

#include "lmrl/tensor/view.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lmrl::detail {

inline constexpr std::size_t parallel_rows_min_values = std::size_t{1} << 16;

template <class F>
void for_row_ranges(index_t rows, [[maybe_unused]] std::size_t values, F&& f) {
#if defined(_OPENMP)
  const index_t threads = omp_get_max_threads();
  if (threads > 1 && rows > 1 && values >= parallel_rows_min_values) {
    const index_t ranges = std::min(rows, 8 * threads);
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(ranges));
#pragma omp parallel for schedule(dynamic, 1)
    for (index_t k = 0; k < ranges; ++k) {
      try {
        f(rows * k / ranges, rows * (k + 1) / ranges);
      } catch (...) {
        errors[static_cast<std::size_t>(k)] = std::current_exception();
      }
    }
    for (const std::exception_ptr& e : errors)
      if (e) std::rethrow_exception(e);
    return;
  }
#endif
  f(index_t{0}, rows);
}

}  // namespace lmrl::detail
