// OpenMP thread counts for tests that check a result does not depend on them.
#pragma once

#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace lmrl::testing {

// 1 and 2 where the build has OpenMP, else the one thread.
inline std::vector<int> thread_counts() {
#if defined(_OPENMP)
  return {1, 2};
#else
  return {1};
#endif
}

// The threads of the following parallel regions (nothing without OpenMP).
inline void set_threads([[maybe_unused]] int n) {
#if defined(_OPENMP)
  omp_set_num_threads(n);
#endif
}

// Puts back the thread count that was in force when it was made.
class restore_threads {
 public:
  restore_threads() {
#if defined(_OPENMP)
    threads_ = omp_get_max_threads();
#endif
  }
  restore_threads(const restore_threads&) = delete;
  restore_threads& operator=(const restore_threads&) = delete;
  ~restore_threads() { set_threads(threads_); }

 private:
  int threads_ = 1;
};

}  // namespace lmrl::testing
