// rounded(x): x, rounded to double here, so that the compiler cannot fuse the
// product that produced it with a following addition into one fma.
//
// GCC contracts a * b + c into an fma by default in C++ (-ffp-contract=fast)
// wherever the target has one (-march=native). Python rounds a * b first; to
// give the same bits as transformers and torch, the few scalar formulas of the
// train/ layer that add to a product pass the product through rounded().
#pragma once

namespace lmrl::detail {

inline double rounded(double x) {
  volatile double stored = x;  // a store and a load: the value is the rounded double
  return stored;
}

}  // namespace lmrl::detail
