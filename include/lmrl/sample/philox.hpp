// Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw,
// "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), as shipped in
// Random123, cuRAND (curand_init / curand_Philox4x32_10), JAX and PyTorch.
//
// A pure function of a 128-bit counter and a 64-bit key: no state, so draw
// number d of token p of sequence s is computed directly, in any order, on any
// thread, on the CPU or (later) in a CUDA kernel, with the same bits. The
// round function uses only integer arithmetic on std::uint32_t/std::uint64_t
// (no library calls) and every function is constexpr, so a __device__ build
// reuses this file as it is (LMRL_HOST_DEVICE expands to __host__ __device__
// under nvcc).
//
// counter_rng names the counter words after what a sampler needs:
//
//   key     = {seed low 32 bits, seed high 32 bits}
//   counter = {draw, position, sequence low 32 bits, sequence high 32 bits}
//
// and turns one Philox block into a uniform number in [0, 1): a double takes
// the top 53 bits of (word0, word1), a float the top 24 bits of word0 — the
// same leading bits, so the float draw is the double draw truncated.
#pragma once

#include <cstdint>

#include "lmrl/tensor/concepts.hpp"

#ifndef LMRL_HOST_DEVICE
#if defined(__CUDACC__)
#define LMRL_HOST_DEVICE __host__ __device__
#else
#define LMRL_HOST_DEVICE
#endif
#endif

namespace lmrl {

// Four 32-bit words: a Philox counter, or one block of output.
struct philox4x32_block {
  std::uint32_t v[4] = {0, 0, 0, 0};
  friend constexpr bool operator==(const philox4x32_block&, const philox4x32_block&) = default;
};

// The 64-bit Philox4x32 key.
struct philox4x32_key {
  std::uint32_t v[2] = {0, 0};
};

namespace detail {

// Multipliers and Weyl key increments of Philox4x32 (Random123 philox.h).
inline constexpr std::uint32_t philox_m0 = 0xD2511F53u;
inline constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t philox_w1 = 0xBB67AE85u;  // sqrt(3) - 1

// One round: two 32x32 -> 64-bit products, their halves mixed with the other
// two words and the round key.
LMRL_HOST_DEVICE constexpr philox4x32_block philox4x32_round(philox4x32_block c, philox4x32_key k) {
  const std::uint64_t p0 = static_cast<std::uint64_t>(philox_m0) * c.v[0];
  const std::uint64_t p1 = static_cast<std::uint64_t>(philox_m1) * c.v[2];
  const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
  const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
  philox4x32_block out;
  out.v[0] = hi1 ^ c.v[1] ^ k.v[0];
  out.v[1] = lo1;
  out.v[2] = hi0 ^ c.v[3] ^ k.v[1];
  out.v[3] = lo0;
  return out;
}

}  // namespace detail

// Philox4x32 with R rounds (R = 10 is the standard, crush-resistant choice;
// R = 7 is the fastest one Random123 still calls safe).
template <int Rounds = 10>
LMRL_HOST_DEVICE constexpr philox4x32_block philox4x32(philox4x32_block counter, philox4x32_key key) {
  static_assert(Rounds >= 1 && Rounds <= 16, "Philox4x32 is defined for 1..16 rounds");
  for (int r = 0; r < Rounds; ++r) {
    if (r > 0) {  // the key is bumped before every round but the first
      key.v[0] += detail::philox_w0;
      key.v[1] += detail::philox_w1;
    }
    counter = detail::philox4x32_round(counter, key);
  }
  return counter;
}

LMRL_HOST_DEVICE constexpr philox4x32_block philox4x32_10(philox4x32_block counter, philox4x32_key key) {
  return philox4x32<10>(counter, key);
}

// A uniform float in [0, 1) from the top 24 bits of a word: k / 2^24.
LMRL_HOST_DEVICE constexpr float uniform_float_from_bits(std::uint32_t word) {
  return static_cast<float>(word >> 8) * 0x1p-24f;
}

// A uniform double in [0, 1) from the top 53 bits of (high, low): k / 2^53.
LMRL_HOST_DEVICE constexpr double uniform_double_from_bits(std::uint32_t high, std::uint32_t low) {
  const std::uint64_t k = (static_cast<std::uint64_t>(high) << 21) | (low >> 11);
  return static_cast<double>(k) * 0x1p-53;
}

// Uniform draws addressed by (seed, sequence, position, draw): a sequence's
// tokens depend only on these, whatever the batch order or thread count.
class counter_rng {
 public:
  constexpr counter_rng() = default;
  LMRL_HOST_DEVICE constexpr explicit counter_rng(std::uint64_t seed)
      : key_{{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)}} {}

  LMRL_HOST_DEVICE constexpr std::uint64_t seed() const {
    return static_cast<std::uint64_t>(key_.v[0]) | (static_cast<std::uint64_t>(key_.v[1]) << 32);
  }

  // The raw Philox block behind draw `draw` of token `position` of `sequence`.
  LMRL_HOST_DEVICE constexpr philox4x32_block block(std::uint64_t sequence, std::uint32_t position,
                                                    std::uint32_t draw = 0) const {
    philox4x32_block counter;
    counter.v[0] = draw;
    counter.v[1] = position;
    counter.v[2] = static_cast<std::uint32_t>(sequence);
    counter.v[3] = static_cast<std::uint32_t>(sequence >> 32);
    return philox4x32_10(counter, key_);
  }

  LMRL_HOST_DEVICE constexpr double uniform_double(std::uint64_t sequence, std::uint32_t position,
                                                   std::uint32_t draw = 0) const {
    const philox4x32_block b = block(sequence, position, draw);
    return uniform_double_from_bits(b.v[0], b.v[1]);
  }

  LMRL_HOST_DEVICE constexpr float uniform_float(std::uint64_t sequence, std::uint32_t position,
                                                 std::uint32_t draw = 0) const {
    return uniform_float_from_bits(block(sequence, position, draw).v[0]);
  }

  // uniform<float> or uniform<double>.
  template <Real T>
  LMRL_HOST_DEVICE constexpr T uniform(std::uint64_t sequence, std::uint32_t position, std::uint32_t draw = 0) const {
    if constexpr (sizeof(T) == sizeof(float)) {
      return uniform_float(sequence, position, draw);
    } else {
      return uniform_double(sequence, position, draw);
    }
  }

 private:
  philox4x32_key key_{};
};

}  // namespace lmrl
