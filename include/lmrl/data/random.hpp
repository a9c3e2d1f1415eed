// Platform-independent random draws for the task generators.
//
// std::mt19937_64's output sequence is fixed by the C++ standard, but the
// std::*_distribution classes are not: the same seed gives different numbers on
// libstdc++, libc++ and MSVC. The generators therefore draw only through these
// functions, which are written here once (rejection sampling, no floating point
// except in bernoulli, whose comparison is exact on IEEE doubles), so a seed
// names the same problems on every platform.
#pragma once

#include <cstdint>
#include <concepts>
#include <random>

#include "lmrl/error.hpp"

namespace lmrl::data {

using task_rng = std::mt19937_64;

// Any engine whose draws are uniform over all 64-bit values (std::mt19937_64,
// or a scripted engine in a test).
template <class E>
concept Engine64 = requires(E& e) {
  { e() } -> std::convertible_to<std::uint64_t>;
} && E::min() == 0 && E::max() == UINT64_MAX;

// Uniform integer in [0, n), unbiased: values below 2^64 mod n are rejected so
// that the accepted range is a whole number of copies of [0, n).
template <Engine64 E>
std::uint64_t uniform_below(E& rng, std::uint64_t n) {
  lmrl::detail::require(n > 0, "uniform_below: n is 0");
  const std::uint64_t threshold = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    const std::uint64_t x = static_cast<std::uint64_t>(rng());
    if (x >= threshold) return x % n;
  }
}

// Uniform integer in [lo, hi] (both included).
template <Engine64 E>
std::int64_t uniform_int(E& rng, std::int64_t lo, std::int64_t hi) {
  lmrl::detail::require(lo <= hi, "uniform_int: lo = ", lo, " is greater than hi = ", hi);
  const std::uint64_t span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
  const std::uint64_t draw = span == UINT64_MAX ? static_cast<std::uint64_t>(rng()) : uniform_below(rng, span + 1);
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + draw);
}

// True with probability p: a 53-bit uniform in [0, 1) compared with p.
template <Engine64 E>
bool bernoulli(E& rng, double p) {
  const double u = static_cast<double>(static_cast<std::uint64_t>(rng()) >> 11) * 0x1.0p-53;
  return u < p;
}

// SplitMix64 finalizer: a bijective 64-bit mix, used to derive independent
// seeds and to hash problem keys.
inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace lmrl::data
