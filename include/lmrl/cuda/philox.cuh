// Philox4x32-10 in device code: the very functions of sample/philox.hpp.
//
// sample/philox.hpp was written for this: every function there is constexpr,
// uses only 32/64-bit integer arithmetic and the two exact conversions
// k * 2^-24 (float) and k * 2^-53 (double), and is marked LMRL_HOST_DEVICE,
// which expands to __host__ __device__ under nvcc. So there is no second copy
// to drift: a kernel calls lmrl::counter_rng / lmrl::philox4x32_10 and gets the
// bits the CPU gets for the same (seed, sequence, position, draw) —
//
//   key     = {seed low 32 bits, seed high 32 bits}
//   counter = {draw, position, sequence low 32 bits, sequence high 32 bits}
//   uniform_double = top 53 bits of (word0, word1) * 2^-53, in [0, 1)
//
// tests/cuda/test_sample.cu checks device against host bit for bit (and both
// against Random123's known-answer vectors). This header only adds a device
// helper for the common "one uniform per (sequence, position)" draw, named in
// lmrl::cuda so kernels read alike.
#pragma once

#include <cstdint>

#include "lmrl/sample/philox.hpp"

namespace lmrl::cuda {

using lmrl::counter_rng;
using lmrl::philox4x32_block;
using lmrl::philox4x32_key;

// The uniform double generate() draws for token `position` of `sequence`
// (model/generate.hpp: rng.uniform_double(first_sequence + b, t)).
LMRL_HOST_DEVICE constexpr double uniform_double(const counter_rng& rng, std::uint64_t sequence,
                                                 std::uint32_t position, std::uint32_t draw = 0) {
  return rng.uniform_double(sequence, position, draw);
}

}  // namespace lmrl::cuda
